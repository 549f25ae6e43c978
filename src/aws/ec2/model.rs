//! What podnet reads from and writes to EC2, in its own small types: a
//! VPC and its CIDR associations, subnets, route tables, security groups and
//! their ingress rules, VPC endpoints. Plain data (serialisable, so plans
//! and journals can hold it), with the few rules that read it (a live
//! association, a rule covering a port range).

use std::collections::BTreeMap;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CidrAssociation {
    pub association_id: String,
    pub cidr: Ipv4Net,
    /// `associating`, `associated`, `disassociating`, `disassociated`, `failing`, `failed`.
    pub state: String,
}

impl CidrAssociation {
    /// Counts against the quota and blocks overlapping blocks.
    pub fn is_live(&self) -> bool {
        matches!(self.state.as_str(), "associating" | "associated")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcInfo {
    pub id: String,
    pub primary_cidr: Ipv4Net,
    pub cidr_associations: Vec<CidrAssociation>,
    pub has_ipv6: bool,
}

impl VpcInfo {
    /// Every live IPv4 block, the primary included.
    pub fn live_cidrs(&self) -> Vec<Ipv4Net> {
        let mut v: Vec<Ipv4Net> = self
            .cidr_associations
            .iter()
            .filter(|a| a.is_live())
            .map(|a| a.cidr)
            .collect();
        if !v.contains(&self.primary_cidr) {
            v.insert(0, self.primary_cidr);
        }
        v
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetInfo {
    pub id: String,
    pub vpc_id: String,
    pub cidr: Ipv4Net,
    pub availability_zone: String,
    pub availability_zone_id: String,
    pub available_ips: u64,
    pub tags: Tags,
}

impl SubnetInfo {
    pub fn name(&self) -> Option<&str> {
        self.tags.get("Name").map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTableAssociation {
    pub id: String,
    pub subnet_id: Option<String>,
    pub main: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// IPv4 destination; `None` for prefix-list or IPv6 routes.
    pub destination: Option<Ipv4Net>,
    pub destination_prefix_list: Option<String>,
    /// `local`, `igw-…`, `nat-…`, `tgw-…`, `vpce-…`, `pcx-…`, …
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTableInfo {
    pub id: String,
    pub associations: Vec<RouteTableAssociation>,
    pub routes: Vec<Route>,
    pub tags: Tags,
}

impl RouteTableInfo {
    pub fn is_main(&self) -> bool {
        self.associations.iter().any(|a| a.main)
    }

    pub fn association_for(&self, subnet_id: &str) -> Option<&RouteTableAssociation> {
        self.associations
            .iter()
            .find(|a| a.subnet_id.as_deref() == Some(subnet_id))
    }
}

/// Where an ingress rule admits traffic from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "kebab-case")]
pub enum RuleSource {
    Cidr(Ipv4Net),
    Group(String),
    PrefixList(String),
    Ipv6(String),
}

/// One ingress rule, one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressRule {
    /// `sgr-…` when known.
    pub rule_id: Option<String>,
    /// `tcp`, `udp`, `icmp`, `-1` (all).
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub source: RuleSource,
    pub description: Option<String>,
}

impl IngressRule {
    /// Whether the rule admits `protocol` on every port of `from..=to`.
    pub fn covers(&self, protocol: &str, from: Option<i32>, to: Option<i32>) -> bool {
        if self.protocol == "-1" {
            return true;
        }
        if protocol_name(&self.protocol) != protocol_name(protocol) {
            return false;
        }
        match (self.from_port, self.to_port, from, to) {
            (_, _, None, None) => {
                self.from_port.is_none() || (self.from_port == Some(0) && self.to_port == Some(65535))
            }
            (Some(a), Some(b), Some(f), Some(t)) => (a == -1 && b == -1) || (a <= f && t <= b),
            (None, None, _, _) => true,
            _ => false,
        }
    }
}

/// An `IpProtocol` by name where EC2 has one: rules created with a protocol
/// number (`6`, `17`, `1`) may be listed with it (moto does).
pub fn protocol_name(p: &str) -> &str {
    match p {
        "6" => "tcp",
        "17" => "udp",
        "1" => "icmp",
        other => other,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupInfo {
    pub id: String,
    pub name: String,
    pub description: String,
    pub vpc_id: String,
    pub tags: Tags,
    pub ingress: Vec<IngressRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcEndpointInfo {
    pub id: String,
    pub service_name: String,
    /// `Interface` or `Gateway`.
    pub kind: String,
    pub security_group_ids: Vec<String>,
    pub subnet_ids: Vec<String>,
    pub route_table_ids: Vec<String>,
}

/// An ingress rule to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewIngress {
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub cidr: Ipv4Net,
    pub description: String,
}

/// A change asked of EC2 with `DryRun=true`: EC2 checks the caller's
/// permission for it and answers without acting (`DryRunOperation` when
/// allowed, `UnauthorizedOperation` when not; EC2 API Reference, Common
/// parameters). `AssociateVpcCidrBlock` takes no `DryRun`, so it is not here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DryRun {
    AuthorizeIngress {
        group_id: String,
        rule: NewIngress,
    },
    CreateSubnet {
        vpc_id: String,
        az: String,
        cidr: Ipv4Net,
        tags: Tags,
    },
    CreateTags {
        resource_id: String,
        tags: Tags,
    },
    AssociateRouteTable {
        route_table_id: String,
        subnet_id: String,
    },
}

impl DryRun {
    /// The API operation it asks about.
    pub fn operation(&self) -> &'static str {
        match self {
            DryRun::AuthorizeIngress { .. } => "AuthorizeSecurityGroupIngress",
            DryRun::CreateSubnet { .. } => "CreateSubnet",
            DryRun::CreateTags { .. } => "CreateTags",
            DryRun::AssociateRouteTable { .. } => "AssociateRouteTable",
        }
    }
}

/// EC2's answer to a dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    Allowed,
    /// Denied, with EC2's message (often an encoded authorization message).
    Denied(String),
}

/// A network interface in a subnet podnet is about to delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterfaceInfo {
    pub id: String,
    pub subnet_id: String,
    /// `available`, `in-use`, `attaching`, `detaching`, …
    pub status: String,
    pub description: String,
    /// The instance it is attached to, if any.
    pub attached_to: Option<String>,
    /// `interface` for the ones the VPC CNI makes.
    pub interface_type: String,
    /// Made by an AWS service for itself (a load balancer, a NAT gateway).
    pub requester_managed: bool,
    pub tags: Tags,
}

/// How the VPC CNI marks the ENIs it makes: `eniDescriptionPrefix`,
/// `eniNodeTagKey` and `eniClusterTagKey` in amazon-vpc-cni-k8s
/// `pkg/awsutils/awsutils.go`.
pub const CNI_ENI_DESCRIPTION_PREFIX: &str = "aws-K8S-";
pub const CNI_ENI_NODE_TAG: &str = "node.k8s.amazonaws.com/instance_id";
pub const CNI_ENI_CLUSTER_TAG: &str = "cluster.k8s.amazonaws.com/name";

impl NetworkInterfaceInfo {
    /// Whether this is an ENI the VPC CNI made for `cluster` that no
    /// instance holds any more: the only kind a rollback may delete. Each
    /// mark is required (the CNI's description and node tag, the cluster
    /// tag naming no other cluster, detached, an ordinary interface no AWS
    /// service manages), so a guess never deletes someone's interface.
    pub fn is_detached_cni_eni(&self, cluster: &str) -> bool {
        self.status == "available"
            && self.attached_to.is_none()
            && !self.requester_managed
            && self.interface_type == "interface"
            && self.description.starts_with(CNI_ENI_DESCRIPTION_PREFIX)
            && self.tags.contains_key(CNI_ENI_NODE_TAG)
            && self.tags.get(CNI_ENI_CLUSTER_TAG).is_none_or(|c| c == cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(protocol: &str, from: Option<i32>, to: Option<i32>) -> IngressRule {
        IngressRule {
            rule_id: None,
            protocol: protocol.into(),
            from_port: from,
            to_port: to,
            source: RuleSource::Cidr("10.0.0.0/24".parse().unwrap()),
            description: None,
        }
    }

    fn eni() -> NetworkInterfaceInfo {
        NetworkInterfaceInfo {
            id: "eni-1".into(),
            subnet_id: "subnet-1".into(),
            status: "available".into(),
            description: "aws-K8S-i-0abc".into(),
            attached_to: None,
            interface_type: "interface".into(),
            requester_managed: false,
            tags: [
                (CNI_ENI_NODE_TAG.to_string(), "i-0abc".to_string()),
                (CNI_ENI_CLUSTER_TAG.to_string(), "prod".to_string()),
            ]
            .into(),
        }
    }

    #[test]
    fn only_a_detached_cni_eni_of_this_cluster_is_deletable() {
        assert!(eni().is_detached_cni_eni("prod"));
        assert!(!eni().is_detached_cni_eni("other"));
        let untagged_cluster = NetworkInterfaceInfo {
            tags: [(CNI_ENI_NODE_TAG.to_string(), "i-0abc".to_string())].into(),
            ..eni()
        };
        assert!(untagged_cluster.is_detached_cni_eni("prod"));
        let variants = [
            NetworkInterfaceInfo {
                status: "in-use".into(),
                attached_to: Some("i-0abc".into()),
                ..eni()
            },
            NetworkInterfaceInfo {
                attached_to: Some("i-0abc".into()),
                ..eni()
            },
            NetworkInterfaceInfo {
                description: "ELB app/prod/123".into(),
                ..eni()
            },
            NetworkInterfaceInfo {
                requester_managed: true,
                ..eni()
            },
            NetworkInterfaceInfo {
                interface_type: "efa".into(),
                ..eni()
            },
            NetworkInterfaceInfo {
                tags: Tags::new(),
                ..eni()
            },
        ];
        for v in variants {
            assert!(!v.is_detached_cni_eni("prod"), "{v:?}");
        }
    }

    #[test]
    fn coverage_of_rules() {
        assert!(rule("-1", None, None).covers("tcp", Some(3306), Some(3306)));
        assert!(rule("tcp", Some(0), Some(65535)).covers("tcp", Some(3306), Some(3306)));
        assert!(rule("tcp", Some(3306), Some(3306)).covers("tcp", Some(3306), Some(3306)));
        assert!(!rule("tcp", Some(3306), Some(3306)).covers("tcp", Some(3300), Some(3310)));
        assert!(!rule("udp", Some(53), Some(53)).covers("tcp", Some(53), Some(53)));
        assert!(rule("icmp", Some(-1), Some(-1)).covers("icmp", Some(8), Some(0)));
    }
}

/// What podnet reads of a launch template version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchTemplateVersionData {
    /// The version, by number.
    pub version: String,
    /// `UserData`, base64 as EC2 keeps it.
    pub user_data: Option<String>,
    /// `InstanceType`, when the template sets it (the node group then lists none).
    pub instance_type: Option<String>,
}
