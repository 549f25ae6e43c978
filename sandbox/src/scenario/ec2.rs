//! Seeding EC2 through moto's API with aws-sdk-ec2, talking to moto directly
//! (not through the audit proxy, so none of this shows in the call log): the
//! VPC, subnets, gateway, route tables, endpoints, security groups, launch
//! templates, node instances and the ENIs and secondary addresses that hold
//! pod IPs. Every address handed to moto was chosen by the sandbox's IPAM.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::error::DisplayErrorContext;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, InstanceType, IpPermission, IpRange, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateSpecification, PrivateIpAddressSpecification, RequestLaunchTemplateData, ResourceType, Tag,
    TagSpecification, UserIdGroupPair, VpcEndpointType,
};
use futures::future::try_join_all;

use super::{Scenario, World, ZoneInfo, zone_id};
use crate::ipam::{Ipam, SubnetPool};

/// A failure while seeding.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("EC2 (moto) {what}: {detail}")]
    Ec2 { what: String, detail: String },
    #[error("IP accounting: {0}")]
    Ipam(#[from] crate::ipam::IpamError),
    #[error("placement: {0}")]
    Placement(#[from] super::placement::PlacementError),
    #[error("Kubernetes object: {0}")]
    Kube(#[from] crate::kube::ApiError),
    #[error("EKS: {0}")]
    Eks(#[from] crate::eks::EksError),
    #[error("{0}")]
    Other(String),
}

fn ec2_err<E: std::error::Error>(what: &str, e: E) -> SeedError {
    SeedError::Ec2 {
        what: what.to_string(),
        detail: DisplayErrorContext(e).to_string(),
    }
}

fn missing(what: &str) -> SeedError {
    SeedError::Ec2 {
        what: what.to_string(),
        detail: "moto's answer lacked the id".into(),
    }
}

/// A client for moto, with the scenario's region and dummy credentials.
pub fn moto_client(endpoint: &str, region: &str) -> Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "podnet-sandbox"))
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(conf)
}

fn tags(rt: ResourceType, kv: &[(&str, &str)]) -> TagSpecification {
    let mut b = TagSpecification::builder().resource_type(rt);
    for (k, v) in kv {
        b = b.tags(Tag::builder().key(*k).value(*v).build());
    }
    b.build()
}

fn tcp(from: i32, to: i32) -> aws_sdk_ec2::types::builders::IpPermissionBuilder {
    IpPermission::builder().ip_protocol("tcp").from_port(from).to_port(to)
}

fn cidr(c: &str, desc: &str) -> IpRange {
    IpRange::builder().cidr_ip(c).description(desc).build()
}

fn group(id: &str, desc: &str) -> UserIdGroupPair {
    UserIdGroupPair::builder().group_id(id).description(desc).build()
}

/// A made-up id for resources the scenario keeps out of moto.
pub fn fake_id(prefix: &str) -> String {
    let hex: String = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &hex[..17])
}

/// The AL2023 EKS-optimized AMI id used for nodes (one of moto's images).
pub const AMI_ID: &str = "ami-06e9e3574a0459db2";

/// Create the network of a scenario; returns the world without nodes.
pub async fn network(c: &Client, s: &Scenario, account: &str) -> Result<World, SeedError> {
    let cl = s.cluster.as_str();
    let vpc_id = create_vpc(c, s).await?;
    // Subnets, all at once.
    let cluster_tag = format!("kubernetes.io/cluster/{cl}");
    let zones = create_subnets(c, s, &vpc_id, &cluster_tag).await?;
    // Internet gateway and route tables.
    let (igw, route_tables) = create_routing(c, s, &vpc_id, &zones).await?;
    // Security groups.
    let sgs = create_security_groups(c, s, &vpc_id, &cluster_tag).await?;
    // Endpoints: interface ones in the private subnets, S3 as a gateway.
    let endpoints = create_endpoints(c, s, &vpc_id, &zones, &sgs, &route_tables).await?;
    Ok(World {
        cluster: s.cluster.clone(),
        region: s.region.clone(),
        account: account.to_string(),
        vpc_id,
        vpc_cidr: s.vpc_cidr,
        zones,
        security_groups: sgs,
        route_tables,
        internet_gateway: igw,
        vpc_endpoints: endpoints,
        launch_templates: BTreeMap::new(),
        ami_id: AMI_ID.to_string(),
        nodes: Vec::new(),
    })
}

/// The VPC, with DNS support and hostnames on.
async fn create_vpc(c: &Client, s: &Scenario) -> Result<String, SeedError> {
    let cl = s.cluster.as_str();
    let vpc_name = format!("{cl}-vpc");
    let vpc = c
        .create_vpc()
        .cidr_block(s.vpc_cidr.to_string())
        .tag_specifications(tags(ResourceType::Vpc, &[("Name", &vpc_name)]))
        .send()
        .await
        .map_err(|e| ec2_err("CreateVpc", e))?;
    let vpc_id = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .ok_or_else(|| missing("CreateVpc"))?
        .to_string();
    for (support, hostnames) in [(true, false), (false, true)] {
        let mut req = c.modify_vpc_attribute().vpc_id(&vpc_id);
        if support {
            req = req.enable_dns_support(AttributeBooleanValue::builder().value(true).build());
        }
        if hostnames {
            req = req.enable_dns_hostnames(AttributeBooleanValue::builder().value(true).build());
        }
        req.send().await.map_err(|e| ec2_err("ModifyVpcAttribute", e))?;
    }
    Ok(vpc_id)
}

/// Each zone's public, private and RDS subnets, tagged for the load
/// balancer controller and Karpenter's discovery.
async fn create_subnets(c: &Client, s: &Scenario, vpc_id: &str, cluster_tag: &str) -> Result<Vec<ZoneInfo>, SeedError> {
    let cl = s.cluster.as_str();
    let mut subnet_reqs = Vec::new();
    for z in &s.zones {
        let suffix = z.name.chars().last().unwrap_or('a');
        if let Some(p) = z.public {
            let name = format!("{cl}-public-{suffix}");
            subnet_reqs.push((
                z.name.clone(),
                "public",
                p,
                vec![
                    ("Name".to_string(), name),
                    ("kubernetes.io/role/elb".to_string(), "1".to_string()),
                ],
            ));
        }
        let name = format!("{cl}-private-{suffix}");
        subnet_reqs.push((
            z.name.clone(),
            "private",
            z.private,
            vec![
                ("Name".to_string(), name),
                ("karpenter.sh/discovery".to_string(), cl.to_string()),
                ("kubernetes.io/role/internal-elb".to_string(), "1".to_string()),
                (cluster_tag.to_string(), "shared".to_string()),
            ],
        ));
        if let Some(r) = z.rds {
            let name = format!("{cl}-rds-{suffix}");
            subnet_reqs.push((z.name.clone(), "rds", r, vec![("Name".to_string(), name)]));
        }
    }
    let created = try_join_all(subnet_reqs.iter().map(|(zone, role, net, kv)| {
        let kv: Vec<(&str, &str)> = kv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let req = c
            .create_subnet()
            .vpc_id(vpc_id)
            .cidr_block(net.to_string())
            .availability_zone(zone)
            .tag_specifications(tags(ResourceType::Subnet, &kv));
        async move {
            let out = req.send().await.map_err(|e| ec2_err("CreateSubnet", e))?;
            let id = out
                .subnet()
                .and_then(|s| s.subnet_id())
                .ok_or_else(|| missing("CreateSubnet"))?
                .to_string();
            Ok::<_, SeedError>((zone.clone(), *role, id))
        }
    }))
    .await?;
    let find = |zone: &str, role: &str| {
        created
            .iter()
            .find(|(z, r, _)| z == zone && *r == role)
            .map(|(_, _, id)| id.clone())
    };
    let zones: Vec<ZoneInfo> = s
        .zones
        .iter()
        .map(|z| ZoneInfo {
            name: z.name.clone(),
            zone_id: zone_id(&z.name),
            public_subnet: find(&z.name, "public"),
            private_subnet: find(&z.name, "private").unwrap_or_default(),
            rds_subnet: find(&z.name, "rds"),
            private_cidr: z.private,
        })
        .collect();
    Ok(zones)
}

/// The internet gateway and one route table per subnet role, associated
/// with the zones' subnets: the gateway's id and the tables by role.
async fn create_routing(
    c: &Client,
    s: &Scenario,
    vpc_id: &str,
    zones: &[ZoneInfo],
) -> Result<(String, BTreeMap<String, String>), SeedError> {
    let cl = s.cluster.as_str();
    let igw = c
        .create_internet_gateway()
        .tag_specifications(tags(ResourceType::InternetGateway, &[("Name", &format!("{cl}-igw"))]))
        .send()
        .await
        .map_err(|e| ec2_err("CreateInternetGateway", e))?
        .internet_gateway()
        .and_then(|g| g.internet_gateway_id())
        .ok_or_else(|| missing("CreateInternetGateway"))?
        .to_string();
    c.attach_internet_gateway()
        .internet_gateway_id(&igw)
        .vpc_id(vpc_id)
        .send()
        .await
        .map_err(|e| ec2_err("AttachInternetGateway", e))?;
    let mut route_tables = BTreeMap::new();
    for role in ["public", "private", "rds"] {
        let has = zones.iter().any(|z| match role {
            "public" => z.public_subnet.is_some(),
            "rds" => z.rds_subnet.is_some(),
            _ => true,
        });
        if !has {
            continue;
        }
        let rt = c
            .create_route_table()
            .vpc_id(vpc_id)
            .tag_specifications(tags(ResourceType::RouteTable, &[("Name", &format!("{cl}-{role}"))]))
            .send()
            .await
            .map_err(|e| ec2_err("CreateRouteTable", e))?
            .route_table()
            .and_then(|r| r.route_table_id())
            .ok_or_else(|| missing("CreateRouteTable"))?
            .to_string();
        route_tables.insert(role.to_string(), rt);
    }
    if let Some(rt) = route_tables.get("public") {
        c.create_route()
            .route_table_id(rt)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(&igw)
            .send()
            .await
            .map_err(|e| ec2_err("CreateRoute", e))?;
    }
    let mut assoc = Vec::new();
    for z in zones {
        for (role, subnet) in [
            ("public", z.public_subnet.clone()),
            ("private", Some(z.private_subnet.clone())),
            ("rds", z.rds_subnet.clone()),
        ] {
            if let (Some(sn), Some(rt)) = (subnet, route_tables.get(role)) {
                assoc.push(c.associate_route_table().route_table_id(rt).subnet_id(sn).send());
            }
        }
    }
    try_join_all(assoc)
        .await
        .map_err(|e| ec2_err("AssociateRouteTable", e))?;
    Ok((igw, route_tables))
}

/// The security groups by role, with their ingress rules.
async fn create_security_groups(
    c: &Client,
    s: &Scenario,
    vpc_id: &str,
    cluster_tag: &str,
) -> Result<BTreeMap<String, String>, SeedError> {
    let cl = s.cluster.as_str();
    let mut sgs = BTreeMap::new();
    for (role, desc) in [
        ("lb", "Internet-facing load balancer"),
        ("node", "EKS nodes"),
        ("rds", "RDS MySQL"),
        ("cluster", "EKS cluster (control plane)"),
        ("vpce", "VPC interface endpoints"),
    ] {
        let name = format!("{cl}-{role}");
        let mut kv = vec![("Name", name.as_str())];
        if role == "node" {
            kv.push(("karpenter.sh/discovery", cl));
        }
        if role == "cluster" {
            kv.push((cluster_tag, "owned"));
        }
        let id = c
            .create_security_group()
            .group_name(&name)
            .description(desc)
            .vpc_id(vpc_id)
            .tag_specifications(tags(ResourceType::SecurityGroup, &kv))
            .send()
            .await
            .map_err(|e| ec2_err("CreateSecurityGroup", e))?
            .group_id()
            .ok_or_else(|| missing("CreateSecurityGroup"))?
            .to_string();
        sgs.insert(role.to_string(), id);
    }
    let rules = ingress_rules(s, &sgs);
    try_join_all(rules.into_iter().map(|(g, p)| {
        c.authorize_security_group_ingress()
            .group_id(g)
            .ip_permissions(p)
            .send()
    }))
    .await
    .map_err(|e| ec2_err("AuthorizeSecurityGroupIngress", e))?;
    Ok(sgs)
}

/// The ingress rules between the security groups (and from the internet
/// and the service subnets).
fn ingress_rules(s: &Scenario, sgs: &BTreeMap<String, String>) -> Vec<(String, IpPermission)> {
    let sg = |r: &str| sgs.get(r).cloned().unwrap_or_default();
    let private_cidrs: Vec<String> = s.zones.iter().map(|z| z.private.to_string()).collect();
    vec![
        (
            sg("lb"),
            tcp(80, 80)
                .ip_ranges(cidr("0.0.0.0/0", "HTTP from the internet"))
                .build(),
        ),
        (
            sg("lb"),
            tcp(443, 443)
                .ip_ranges(cidr("0.0.0.0/0", "HTTPS from the internet"))
                .build(),
        ),
        (
            sg("node"),
            tcp(30000, 32767)
                .user_id_group_pairs(group(&sg("lb"), "NodePorts from the load balancer"))
                .build(),
        ),
        (
            sg("node"),
            tcp(443, 443)
                .user_id_group_pairs(group(&sg("cluster"), "Control plane to webhooks"))
                .build(),
        ),
        (
            sg("node"),
            tcp(10250, 10250)
                .user_id_group_pairs(group(&sg("cluster"), "Control plane to kubelet"))
                .build(),
        ),
        (
            sg("cluster"),
            tcp(443, 443)
                .user_id_group_pairs(group(&sg("node"), "Nodes to the API server"))
                .build(),
        ),
        // What EKS gives the cluster security group it creates: all traffic
        // among its members (control plane, managed nodes).
        (
            sg("cluster"),
            IpPermission::builder()
                .ip_protocol("-1")
                .user_id_group_pairs(group(&sg("cluster"), "EKS cluster security group: all traffic within"))
                .build(),
        ),
        (sg("rds"), {
            let mut b = tcp(3306, 3306);
            for c in &private_cidrs {
                b = b.ip_ranges(cidr(c, "MySQL from the service subnets"));
            }
            b.build()
        }),
        (sg("vpce"), {
            let mut b = tcp(443, 443);
            for c in &private_cidrs {
                b = b.ip_ranges(cidr(c, "HTTPS from the service subnets"));
            }
            b.build()
        }),
    ]
}

/// The VPC endpoints: interface ones in the private subnets, S3 as a
/// gateway on the private route table.
async fn create_endpoints(
    c: &Client,
    s: &Scenario,
    vpc_id: &str,
    zones: &[ZoneInfo],
    sgs: &BTreeMap<String, String>,
    route_tables: &BTreeMap<String, String>,
) -> Result<Vec<String>, SeedError> {
    let cl = s.cluster.as_str();
    let sg = |r: &str| sgs.get(r).cloned().unwrap_or_default();
    // Endpoints: interface ones in the private subnets, S3 as a gateway.
    let private_subnets: Vec<String> = zones.iter().map(|z| z.private_subnet.clone()).collect();
    let mut endpoints = Vec::new();
    for svc in &s.endpoints.interface {
        let name = format!("com.amazonaws.{}.{svc}", s.region);
        let out = c
            .create_vpc_endpoint()
            .vpc_id(vpc_id)
            .service_name(&name)
            .vpc_endpoint_type(VpcEndpointType::Interface)
            .set_subnet_ids(Some(private_subnets.clone()))
            .security_group_ids(sg("vpce"))
            .private_dns_enabled(true)
            .tag_specifications(tags(ResourceType::VpcEndpoint, &[("Name", &format!("{cl}-{svc}"))]))
            .send()
            .await
            .map_err(|e| ec2_err("CreateVpcEndpoint", e))?;
        if let Some(id) = out.vpc_endpoint().and_then(|v| v.vpc_endpoint_id()) {
            endpoints.push(id.to_string());
        }
    }
    if s.endpoints.s3_gateway
        && let Some(rt) = route_tables.get("private")
    {
        let out = c
            .create_vpc_endpoint()
            .vpc_id(vpc_id)
            .service_name(format!("com.amazonaws.{}.s3", s.region))
            .vpc_endpoint_type(VpcEndpointType::Gateway)
            .route_table_ids(rt)
            .tag_specifications(tags(ResourceType::VpcEndpoint, &[("Name", &format!("{cl}-s3"))]))
            .send()
            .await
            .map_err(|e| ec2_err("CreateVpcEndpoint", e))?;
        if let Some(id) = out.vpc_endpoint().and_then(|v| v.vpc_endpoint_id()) {
            endpoints.push(id.to_string());
        }
    }
    Ok(endpoints)
}

/// Register the scenario's subnets with the IPAM and reserve every address
/// moto already handed out in them (endpoint ENIs).
pub async fn sync_ipam(c: &Client, s: &Scenario, w: &World, ipam: &mut Ipam) -> Result<(), SeedError> {
    for (z, zi) in s.zones.iter().zip(&w.zones) {
        ipam.add_subnet(SubnetPool::new(&zi.private_subnet, z.private, &z.name));
        if let (Some(net), Some(id)) = (z.public, &zi.public_subnet) {
            ipam.add_subnet(SubnetPool::new(id, net, &z.name));
        }
        if let (Some(net), Some(id)) = (z.rds, &zi.rds_subnet) {
            ipam.add_subnet(SubnetPool::new(id, net, &z.name));
        }
    }
    let out = c
        .describe_network_interfaces()
        .filters(Filter::builder().name("vpc-id").values(&w.vpc_id).build())
        .send()
        .await
        .map_err(|e| ec2_err("DescribeNetworkInterfaces", e))?;
    for eni in out.network_interfaces() {
        let Some(sn) = eni.subnet_id() else { continue };
        for a in eni.private_ip_addresses() {
            let Some(ip) = a.private_ip_address().and_then(|x| x.parse::<Ipv4Addr>().ok()) else {
                continue;
            };
            let Ok(pool) = ipam.subnet_mut(sn) else { continue };
            if !pool.cidr.contains(&ip) {
                // moto gives endpoint ENIs random addresses outside their
                // subnet yet counts them against it; hold one address here
                // too so both agree on what is free.
                pool.allocate(1)?;
            } else if !pool.is_used(ip) {
                pool.reserve(ip)?;
            }
        }
    }
    Ok(())
}

/// ENIs holding addresses of other tenants of a subnet, and the RDS
/// instance's ENI.
pub async fn other_tenants(c: &Client, s: &Scenario, w: &World, ipam: &mut Ipam) -> Result<(), SeedError> {
    let mut reqs = Vec::new();
    for (z, zi) in s.zones.iter().zip(&w.zones) {
        if z.other_tenant_ips == 0 {
            continue;
        }
        let ips = ipam.subnet_mut(&zi.private_subnet)?.allocate(z.other_tenant_ips)?;
        for (i, chunk) in ips.chunks(30).enumerate() {
            let mut req = c
                .create_network_interface()
                .subnet_id(&zi.private_subnet)
                .description("Other services sharing this subnet (podnet-sandbox scenario: other_tenant_ips)")
                .tag_specifications(tags(
                    ResourceType::NetworkInterface,
                    &[
                        ("Name", &format!("other-tenant-{}-{i}", zi.name)),
                        ("podnet-sandbox/role", "other-tenant"),
                    ],
                ));
            for (j, ip) in chunk.iter().enumerate() {
                req = req.private_ip_addresses(
                    PrivateIpAddressSpecification::builder()
                        .private_ip_address(ip.to_string())
                        .primary(j == 0)
                        .build(),
                );
            }
            reqs.push(req.send());
        }
    }
    try_join_all(reqs)
        .await
        .map_err(|e| ec2_err("CreateNetworkInterface (other tenants)", e))?;
    if let Some(zi) = w.zones.iter().find(|z| z.rds_subnet.is_some())
        && let Some(sn) = &zi.rds_subnet
    {
        let ip = ipam.subnet_mut(sn)?.allocate(1)?;
        c.create_network_interface()
            .subnet_id(sn)
            .description("RDSNetworkInterface")
            .groups(w.security_groups.get("rds").cloned().unwrap_or_default())
            .private_ip_address(ip[0].to_string())
            .tag_specifications(tags(
                ResourceType::NetworkInterface,
                &[("Name", &format!("{}-mysql", w.cluster))],
            ))
            .send()
            .await
            .map_err(|e| ec2_err("CreateNetworkInterface (RDS)", e))?;
    }
    Ok(())
}

/// The launch template of a managed node group (as Terraform's eks module
/// makes one): node security group, IMDSv2, nodeadm user data.
pub async fn launch_template(c: &Client, w: &World, group: &str) -> Result<(String, String), SeedError> {
    let name = format!("{group}-20241104021139");
    let user_data = "TUlNRS1WZXJzaW9uOiAxLjAKQ29udGVudC1UeXBlOiBtdWx0aXBhcnQvbWl4ZWQ7IGJvdW5kYXJ5PSIvLyIKCi0tLy8KQ29udGVudC1UeXBlOiBhcHBsaWNhdGlvbi9ub2RlLmVrcy5hd3MKCi0tLQphcGlWZXJzaW9uOiBub2RlLmVrcy5hd3MvdjFhbHBoYTEKa2luZDogTm9kZUNvbmZpZwpzcGVjOgogIGNsdXN0ZXI6IHt9Ci0tLy8tLQo=";
    let out = c
        .create_launch_template()
        .launch_template_name(&name)
        .version_description("Managed by Terraform")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .security_group_ids(w.security_groups.get("node").cloned().unwrap_or_default())
                .user_data(user_data)
                .metadata_options(
                    LaunchTemplateInstanceMetadataOptionsRequest::builder()
                        .http_tokens(aws_sdk_ec2::types::LaunchTemplateHttpTokensState::Required)
                        .http_put_response_hop_limit(2)
                        .build(),
                )
                .build(),
        )
        .tag_specifications(tags(ResourceType::LaunchTemplate, &[("Name", &name)]))
        .send()
        .await
        .map_err(|e| ec2_err("CreateLaunchTemplate", e))?;
    let lt = out.launch_template().ok_or_else(|| missing("CreateLaunchTemplate"))?;
    Ok((
        lt.launch_template_id().unwrap_or_default().to_string(),
        lt.latest_version_number().unwrap_or(1).to_string(),
    ))
}

/// What a node needs from EC2.
pub struct NodeLaunch {
    pub zone: String,
    pub subnet_id: String,
    pub ip: Ipv4Addr,
    pub instance_type: String,
    pub tags: Vec<(String, String)>,
    pub launch_template: Option<(String, String)>,
}

/// Launch one instance per node with its chosen private address; returns
/// (instance id, primary ENI id) per node.
pub async fn launch_nodes(c: &Client, w: &World, nodes: &[NodeLaunch]) -> Result<Vec<(String, String)>, SeedError> {
    let node_sg = w.security_groups.get("node").cloned().unwrap_or_default();
    // One at a time: moto answered concurrent RunInstances with an occasional
    // HTTP 500 under load.
    let launches: Vec<_> = nodes
        .iter()
        .map(|n| {
            let kv: Vec<(&str, &str)> = n.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut req = c
                .run_instances()
                .image_id(&w.ami_id)
                .instance_type(InstanceType::from(n.instance_type.as_str()))
                .min_count(1)
                .max_count(1)
                .subnet_id(&n.subnet_id)
                .private_ip_address(n.ip.to_string())
                .security_group_ids(&node_sg)
                .tag_specifications(tags(ResourceType::Instance, &kv));
            if let Some((id, v)) = &n.launch_template {
                req = req.launch_template(
                    LaunchTemplateSpecification::builder()
                        .launch_template_id(id)
                        .version(v)
                        .build(),
                );
            }
            async move {
                let out = req.send().await.map_err(|e| ec2_err("RunInstances", e))?;
                let inst = out.instances().first().ok_or_else(|| missing("RunInstances"))?;
                let id = inst.instance_id().ok_or_else(|| missing("RunInstances"))?.to_string();
                let eni = inst
                    .network_interfaces()
                    .first()
                    .and_then(|e| e.network_interface_id())
                    .unwrap_or_default()
                    .to_string();
                Ok::<_, SeedError>((id, eni))
            }
        })
        .collect();
    let mut out = Vec::with_capacity(launches.len());
    for l in launches {
        out.push(l.await?);
    }
    Ok(out)
}

/// The ENI work of one node: secondaries on the primary ENI, and further
/// ENIs (primary + secondaries) to create and attach.
pub struct NodeEniPlan {
    pub instance_id: String,
    pub subnet_id: String,
    pub primary_eni: String,
    pub primary_secondaries: Vec<Ipv4Addr>,
    /// (device index, primary address, secondary addresses)
    pub extra: Vec<(u32, Ipv4Addr, Vec<Ipv4Addr>)>,
    pub cluster: String,
}

/// Mirror nodes' ENI layouts into moto; returns the extra ENI ids per node.
pub async fn attach_enis(c: &Client, w: &World, plans: &[NodeEniPlan]) -> Result<Vec<Vec<String>>, SeedError> {
    let node_sg = w.security_groups.get("node").cloned().unwrap_or_default();
    try_join_all(plans.iter().map(|p| {
        let node_sg = node_sg.clone();
        async move {
            if !p.primary_secondaries.is_empty() {
                let mut req = c.assign_private_ip_addresses().network_interface_id(&p.primary_eni);
                for ip in &p.primary_secondaries {
                    req = req.private_ip_addresses(ip.to_string());
                }
                req.send().await.map_err(|e| ec2_err("AssignPrivateIpAddresses", e))?;
            }
            let mut ids = Vec::new();
            for (dev, primary, secs) in &p.extra {
                let mut req = c
                    .create_network_interface()
                    .subnet_id(&p.subnet_id)
                    .groups(&node_sg)
                    .description(format!("aws-K8S-{}", p.instance_id))
                    .private_ip_addresses(
                        PrivateIpAddressSpecification::builder()
                            .private_ip_address(primary.to_string())
                            .primary(true)
                            .build(),
                    )
                    .tag_specifications(tags(
                        ResourceType::NetworkInterface,
                        &[
                            ("cluster.k8s.amazonaws.com/name", &p.cluster),
                            ("node.k8s.amazonaws.com/instance_id", &p.instance_id),
                        ],
                    ));
                for ip in secs {
                    req = req.private_ip_addresses(
                        PrivateIpAddressSpecification::builder()
                            .private_ip_address(ip.to_string())
                            .primary(false)
                            .build(),
                    );
                }
                let eni = req
                    .send()
                    .await
                    .map_err(|e| ec2_err("CreateNetworkInterface", e))?
                    .network_interface()
                    .and_then(|n| n.network_interface_id())
                    .ok_or_else(|| missing("CreateNetworkInterface"))?
                    .to_string();
                c.attach_network_interface()
                    .network_interface_id(&eni)
                    .instance_id(&p.instance_id)
                    .device_index(*dev as i32)
                    .send()
                    .await
                    .map_err(|e| ec2_err("AttachNetworkInterface", e))?;
                ids.push(eni);
            }
            Ok::<_, SeedError>(ids)
        }
    }))
    .await
}
