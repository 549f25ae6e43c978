//! An in-memory [`Ec2Api`] for step contract tests: one VPC with its CIDR
//! associations, subnets, route tables and security groups, refusing what
//! EC2 refuses with EC2's codes (`InvalidSubnet.Conflict`,
//! `InvalidPermission.Duplicate`, `Resource.AlreadyAssociated`,
//! `DependencyViolation` for a subnet that still holds ENIs,
//! `InvalidCidrBlock.InUse` for a block that still holds subnets), a CIDR
//! association `associating` (or `disassociating`) until it has been
//! described once (EC2 answers that first), and one injectable fault: call number N fails with
//! a 503 either before its effect or after it (the answer lost on the way
//! back, the case idempotency is for).

use std::sync::Mutex;

use async_trait::async_trait;
use ipnet::Ipv4Net;

use crate::aws::AwsError;
use crate::aws::ec2::{
    CidrAssociation, DryRun, Ec2Api, IngressRule, LaunchTemplateVersionData, NetworkInterfaceInfo, NewIngress,
    Permission, RouteTableAssociation, RouteTableInfo, RuleSource, SecurityGroupInfo, SubnetInfo, Tags,
    VpcEndpointInfo, VpcInfo,
};
use crate::capacity::InstanceInfo;
use crate::error_class::ErrorClass;
use crate::network::overlaps;

/// What the fake EC2 holds; compared whole between runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    pub vpc: VpcInfo,
    pub subnets: Vec<SubnetInfo>,
    pub route_tables: Vec<RouteTableInfo>,
    pub groups: Vec<SecurityGroupInfo>,
    pub enis: Vec<NetworkInterfaceInfo>,
    next_id: u32,
}

/// Call `at` (counted from 0) fails; `lost` makes it fail after its effect.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub at: usize,
    pub lost: bool,
}

pub struct FakeEc2 {
    world: Mutex<World>,
    calls: Mutex<Vec<&'static str>>,
    mutations: Mutex<usize>,
    fault: Mutex<Option<Fault>>,
}

pub const VPC: &str = "vpc-0fake";

impl FakeEc2 {
    /// A VPC like the reference scenario's: 10.255.0.0/16, a node subnet and
    /// its own route table in each of two AZs, a main table, and the groups
    /// the security-group patches name.
    pub fn seed() -> FakeEc2 {
        let net = |s: &str| s.parse::<Ipv4Net>().expect("test CIDR");
        let subnet = |id: &str, cidr: &str, az: &str| SubnetInfo {
            id: id.into(),
            vpc_id: VPC.into(),
            cidr: net(cidr),
            availability_zone: az.into(),
            availability_zone_id: format!("apne2-{az}"),
            available_ips: 0,
            tags: Tags::new(),
        };
        let table = |id: &str, subnet: Option<&str>, main: bool| RouteTableInfo {
            id: id.into(),
            associations: vec![RouteTableAssociation {
                id: format!("rtbassoc-{id}"),
                subnet_id: subnet.map(str::to_string),
                main,
            }],
            routes: vec![],
            tags: Tags::new(),
        };
        let group = |id: &str, name: &str| SecurityGroupInfo {
            id: id.into(),
            name: name.into(),
            description: name.into(),
            vpc_id: VPC.into(),
            tags: Tags::new(),
            ingress: vec![IngressRule {
                rule_id: Some(format!("sgr-{id}-node")),
                protocol: "tcp".into(),
                from_port: Some(443),
                to_port: Some(443),
                source: RuleSource::Cidr(net("10.255.0.0/16")),
                description: None,
            }],
        };
        let world = World {
            vpc: VpcInfo {
                id: VPC.into(),
                primary_cidr: net("10.255.0.0/16"),
                cidr_associations: vec![CidrAssociation {
                    association_id: "vpc-cidr-assoc-primary".into(),
                    cidr: net("10.255.0.0/16"),
                    state: "associated".into(),
                }],
                has_ipv6: false,
            },
            subnets: vec![
                subnet("subnet-a", "10.255.11.0/24", "ap-northeast-2a"),
                subnet("subnet-c", "10.255.12.0/24", "ap-northeast-2c"),
            ],
            route_tables: vec![
                table("rtb-main", None, true),
                table("rtb-a", Some("subnet-a"), false),
                table("rtb-c", Some("subnet-c"), false),
            ],
            groups: vec![group("sg-rds", "rds"), group("sg-vpce", "vpce")],
            enis: vec![],
            next_id: 0,
        };
        FakeEc2 {
            world: Mutex::new(world),
            calls: Mutex::new(Vec::new()),
            mutations: Mutex::new(0),
            fault: Mutex::new(None),
        }
    }

    /// Changes the world before a run (what someone else already did).
    pub fn edit(&self, f: impl FnOnce(&mut World)) {
        f(&mut self.world.lock().expect("world"));
    }

    pub fn world(&self) -> World {
        self.world.lock().expect("world").clone()
    }

    pub fn calls(&self) -> usize {
        self.calls.lock().expect("calls").len()
    }

    pub fn mutations(&self) -> usize {
        *self.mutations.lock().expect("mutations")
    }

    pub fn fail(&self, fault: Fault) {
        *self.fault.lock().expect("fault") = Some(fault);
    }

    /// Counts the call; fails it now if the fault is here and not "lost".
    /// Returns whether the answer is to be lost after the effect.
    fn enter(&self, op: &'static str) -> Result<bool, AwsError> {
        let mut calls = self.calls.lock().expect("calls");
        let n = calls.len();
        calls.push(op);
        match *self.fault.lock().expect("fault") {
            Some(f) if f.at == n && !f.lost => Err(unavailable(op)),
            Some(f) => Ok(f.at == n),
            None => Ok(false),
        }
    }

    /// The answer to a call whose effect is done.
    fn answer<T>(&self, op: &'static str, lost: bool, value: T) -> Result<T, AwsError> {
        if lost { Err(unavailable(op)) } else { Ok(value) }
    }

    fn mutate<T>(
        &self,
        op: &'static str,
        effect: impl FnOnce(&mut World) -> Result<T, AwsError>,
    ) -> Result<T, AwsError> {
        let lost = self.enter(op)?;
        let value = effect(&mut self.world.lock().expect("world"))?;
        *self.mutations.lock().expect("mutations") += 1;
        self.answer(op, lost, value)
    }

    fn read<T>(&self, op: &'static str, read: impl FnOnce(&mut World) -> T) -> Result<T, AwsError> {
        let lost = self.enter(op)?;
        let value = read(&mut self.world.lock().expect("world"));
        self.answer(op, lost, value)
    }
}

fn unavailable(op: &'static str) -> AwsError {
    AwsError {
        class: ErrorClass::Transient,
        service: "ec2",
        operation: op,
        resource: None,
        code: Some("Unavailable".into()),
        message: "injected fault".into(),
        status: Some(503),
    }
}

fn refused(op: &'static str, class: ErrorClass, code: &str) -> AwsError {
    AwsError {
        class,
        service: "ec2",
        operation: op,
        resource: None,
        code: Some(code.into()),
        message: format!("{code} (fake EC2)"),
        status: Some(400),
    }
}

impl World {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:04}", self.next_id)
    }
}

#[async_trait]
impl Ec2Api for FakeEc2 {
    async fn describe_vpc(&self, _vpc_id: &str) -> Result<VpcInfo, AwsError> {
        self.read("DescribeVpcs", |w| {
            let seen = w.vpc.clone();
            for a in &mut w.vpc.cidr_associations {
                if a.state == "associating" {
                    a.state = "associated".into();
                }
            }
            // A disassociated block leaves the VPC's list once it is done.
            w.vpc.cidr_associations.retain(|a| a.state != "disassociating");
            seen
        })
    }

    async fn describe_subnets(&self, _vpc_id: &str) -> Result<Vec<SubnetInfo>, AwsError> {
        self.read("DescribeSubnets", |w| w.subnets.clone())
    }

    async fn describe_route_tables(&self, _vpc_id: &str) -> Result<Vec<RouteTableInfo>, AwsError> {
        self.read("DescribeRouteTables", |w| w.route_tables.clone())
    }

    async fn describe_security_groups(&self, _vpc_id: &str) -> Result<Vec<SecurityGroupInfo>, AwsError> {
        self.read("DescribeSecurityGroups", |w| w.groups.clone())
    }

    async fn describe_vpc_endpoints(&self, _vpc_id: &str) -> Result<Vec<VpcEndpointInfo>, AwsError> {
        self.read("DescribeVpcEndpoints", |_| Vec::new())
    }

    async fn describe_instance_types(&self, _types: &[String]) -> Result<Vec<InstanceInfo>, AwsError> {
        self.read("DescribeInstanceTypes", |_| Vec::new())
    }

    async fn associate_vpc_cidr_block(&self, _vpc_id: &str, cidr: Ipv4Net) -> Result<CidrAssociation, AwsError> {
        const OP: &str = "AssociateVpcCidrBlock";
        self.mutate(OP, |w| {
            if w.vpc
                .cidr_associations
                .iter()
                .any(|a| a.is_live() && overlaps(&a.cidr, &cidr))
            {
                return Err(refused(OP, ErrorClass::Conflict, "InvalidVpc.Range"));
            }
            let a = CidrAssociation {
                association_id: w.id("vpc-cidr-assoc"),
                cidr,
                state: "associating".into(),
            };
            w.vpc.cidr_associations.push(a.clone());
            Ok(a)
        })
    }

    async fn authorize_ingress(&self, group_id: &str, rule: &NewIngress) -> Result<Vec<String>, AwsError> {
        const OP: &str = "AuthorizeSecurityGroupIngress";
        self.mutate(OP, |w| {
            let g = w
                .groups
                .iter()
                .position(|g| g.id == group_id)
                .ok_or_else(|| refused(OP, ErrorClass::NotFound, "InvalidGroup.NotFound"))?;
            let source = RuleSource::Cidr(rule.cidr);
            let same = |r: &IngressRule| {
                (&r.protocol, r.from_port, r.to_port, &r.source)
                    == (&rule.protocol, rule.from_port, rule.to_port, &source)
            };
            if w.groups[g].ingress.iter().any(same) {
                return Err(refused(OP, ErrorClass::Conflict, "InvalidPermission.Duplicate"));
            }
            let id = w.id("sgr");
            w.groups[g].ingress.push(IngressRule {
                rule_id: Some(id.clone()),
                protocol: rule.protocol.clone(),
                from_port: rule.from_port,
                to_port: rule.to_port,
                source,
                description: Some(rule.description.clone()),
            });
            Ok(vec![id])
        })
    }

    async fn create_subnet(&self, vpc_id: &str, az: &str, cidr: Ipv4Net, tags: &Tags) -> Result<SubnetInfo, AwsError> {
        const OP: &str = "CreateSubnet";
        self.mutate(OP, |w| {
            if w.subnets.iter().any(|s| overlaps(&s.cidr, &cidr)) {
                return Err(refused(OP, ErrorClass::Conflict, "InvalidSubnet.Conflict"));
            }
            let s = SubnetInfo {
                id: w.id("subnet"),
                vpc_id: vpc_id.into(),
                cidr,
                availability_zone: az.into(),
                availability_zone_id: format!("apne2-{az}"),
                available_ips: 251,
                tags: tags.clone(),
            };
            w.subnets.push(s.clone());
            Ok(s)
        })
    }

    async fn associate_route_table(&self, route_table_id: &str, subnet_id: &str) -> Result<String, AwsError> {
        const OP: &str = "AssociateRouteTable";
        self.mutate(OP, |w| {
            if w.route_tables.iter().any(|rt| rt.association_for(subnet_id).is_some()) {
                return Err(refused(OP, ErrorClass::Conflict, "Resource.AlreadyAssociated"));
            }
            let id = w.id("rtbassoc");
            let rt = w
                .route_tables
                .iter_mut()
                .find(|rt| rt.id == route_table_id)
                .ok_or_else(|| refused(OP, ErrorClass::NotFound, "InvalidRouteTableID.NotFound"))?;
            rt.associations.push(RouteTableAssociation {
                id: id.clone(),
                subnet_id: Some(subnet_id.into()),
                main: false,
            });
            Ok(id)
        })
    }

    async fn replace_route_table_association(
        &self,
        association_id: &str,
        route_table_id: &str,
    ) -> Result<String, AwsError> {
        const OP: &str = "ReplaceRouteTableAssociation";
        self.mutate(OP, |w| {
            let subnet = w
                .route_tables
                .iter_mut()
                .find_map(|rt| {
                    let i = rt.associations.iter().position(|a| a.id == association_id)?;
                    Some(rt.associations.remove(i).subnet_id)
                })
                .ok_or_else(|| refused(OP, ErrorClass::NotFound, "InvalidAssociationID.NotFound"))?;
            let id = w.id("rtbassoc");
            let rt = w
                .route_tables
                .iter_mut()
                .find(|rt| rt.id == route_table_id)
                .ok_or_else(|| refused(OP, ErrorClass::NotFound, "InvalidRouteTableID.NotFound"))?;
            rt.associations.push(RouteTableAssociation {
                id: id.clone(),
                subnet_id: subnet,
                main: false,
            });
            Ok(id)
        })
    }

    async fn create_tags(&self, resource_id: &str, tags: &Tags) -> Result<(), AwsError> {
        const OP: &str = "CreateTags";
        self.mutate(OP, |w| {
            let s = w
                .subnets
                .iter_mut()
                .find(|s| s.id == resource_id)
                .ok_or_else(|| refused(OP, ErrorClass::NotFound, "InvalidID"))?;
            s.tags.extend(tags.clone());
            Ok(())
        })
    }

    async fn create_launch_template_version(
        &self,
        _launch_template_id: &str,
        _source_version: &str,
        _description: &str,
        _client_token: &str,
        _user_data: Option<&str>,
    ) -> Result<String, AwsError> {
        Err(refused(
            "CreateLaunchTemplateVersion",
            ErrorClass::Invalid,
            "NotModelled",
        ))
    }

    async fn launch_template_user_data(
        &self,
        _launch_template_id: &str,
        _version: &str,
    ) -> Result<LaunchTemplateVersionData, AwsError> {
        Err(refused(
            "DescribeLaunchTemplateVersions",
            ErrorClass::Invalid,
            "NotModelled",
        ))
    }

    async fn launch_template_id(&self, _name: &str) -> Result<String, AwsError> {
        Err(refused("DescribeLaunchTemplates", ErrorClass::Invalid, "NotModelled"))
    }

    async fn describe_network_interfaces(&self, subnet_ids: &[String]) -> Result<Vec<NetworkInterfaceInfo>, AwsError> {
        self.read("DescribeNetworkInterfaces", |w| {
            w.enis
                .iter()
                .filter(|e| subnet_ids.contains(&e.subnet_id))
                .cloned()
                .collect()
        })
    }

    async fn delete_network_interface(&self, eni_id: &str) -> Result<(), AwsError> {
        const OP: &str = "DeleteNetworkInterface";
        self.mutate(OP, |w| {
            let i = w
                .enis
                .iter()
                .position(|e| e.id == eni_id)
                .ok_or_else(|| refused(OP, ErrorClass::NotFound, "InvalidNetworkInterfaceID.NotFound"))?;
            if w.enis[i].attached_to.is_some() {
                return Err(refused(OP, ErrorClass::Invalid, "InvalidParameterValue"));
            }
            w.enis.remove(i);
            Ok(())
        })
    }

    async fn revoke_ingress(&self, group_id: &str, rule_ids: &[String]) -> Result<(), AwsError> {
        const OP: &str = "RevokeSecurityGroupIngress";
        self.mutate(OP, |w| {
            let g = w
                .groups
                .iter_mut()
                .find(|g| g.id == group_id)
                .ok_or_else(|| refused(OP, ErrorClass::NotFound, "InvalidGroup.NotFound"))?;
            let known = |id: &String| g.ingress.iter().any(|r| r.rule_id.as_ref() == Some(id));
            if !rule_ids.iter().all(known) {
                return Err(refused(OP, ErrorClass::NotFound, "InvalidSecurityGroupRuleId.NotFound"));
            }
            g.ingress
                .retain(|r| !r.rule_id.as_ref().is_some_and(|id| rule_ids.contains(id)));
            Ok(())
        })
    }

    async fn delete_subnet(&self, subnet_id: &str) -> Result<(), AwsError> {
        const OP: &str = "DeleteSubnet";
        self.mutate(OP, |w| {
            let i = w
                .subnets
                .iter()
                .position(|s| s.id == subnet_id)
                .ok_or_else(|| refused(OP, ErrorClass::NotFound, "InvalidSubnetID.NotFound"))?;
            if w.enis.iter().any(|e| e.subnet_id == subnet_id) {
                return Err(refused(OP, ErrorClass::Conflict, "DependencyViolation"));
            }
            w.subnets.remove(i);
            for rt in &mut w.route_tables {
                rt.associations.retain(|a| a.subnet_id.as_deref() != Some(subnet_id));
            }
            Ok(())
        })
    }

    async fn disassociate_vpc_cidr_block(&self, association_id: &str) -> Result<String, AwsError> {
        const OP: &str = "DisassociateVpcCidrBlock";
        self.mutate(OP, |w| {
            let a = w
                .vpc
                .cidr_associations
                .iter()
                .position(|a| a.association_id == association_id && a.is_live())
                .ok_or_else(|| refused(OP, ErrorClass::NotFound, "InvalidVpcCidrBlockAssociationID.NotFound"))?;
            let cidr = w.vpc.cidr_associations[a].cidr;
            if w.subnets.iter().any(|s| cidr.contains(&s.cidr)) {
                return Err(refused(OP, ErrorClass::Conflict, "InvalidCidrBlock.InUse"));
            }
            w.vpc.cidr_associations[a].state = "disassociating".into();
            Ok("disassociating".to_string())
        })
    }

    async fn delete_tags(&self, resource_id: &str, keys: &[String]) -> Result<(), AwsError> {
        const OP: &str = "DeleteTags";
        self.mutate(OP, |w| {
            let s = w
                .subnets
                .iter_mut()
                .find(|s| s.id == resource_id)
                .ok_or_else(|| refused(OP, ErrorClass::NotFound, "InvalidID"))?;
            s.tags.retain(|k, _| !keys.contains(k));
            Ok(())
        })
    }

    async fn disassociate_route_table(&self, association_id: &str) -> Result<(), AwsError> {
        const OP: &str = "DisassociateRouteTable";
        self.mutate(OP, |w| {
            for rt in &mut w.route_tables {
                if let Some(i) = rt.associations.iter().position(|a| a.id == association_id && !a.main) {
                    rt.associations.remove(i);
                    return Ok(());
                }
            }
            Err(refused(OP, ErrorClass::NotFound, "InvalidAssociationID.NotFound"))
        })
    }

    async fn dry_run(&self, _call: &DryRun) -> Result<Permission, AwsError> {
        self.read("DryRun", |_| Permission::Allowed)
    }
}
