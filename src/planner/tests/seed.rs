//! The reference scenario as discovery would see it (two AZs, a managed
//! node group and a Karpenter NodePool, 30 web pods under a PDB), built
//! section by section, and the builders of its parts.

use std::collections::BTreeMap;

use serde_json::json;

use crate::aws::ec2::*;
use crate::aws::eks::*;
use crate::capacity::InstanceTable;
use crate::discovery::Discovery;
use crate::k8s::snapshot::*;
use crate::spec::{self, Overrides, Spec};

pub(crate) fn net(s: &str) -> ipnet::Ipv4Net {
    s.parse().unwrap()
}

pub(crate) fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub(crate) fn subnet(id: &str, cidr: &str, az: &str, t: &[(&str, &str)]) -> SubnetInfo {
    SubnetInfo {
        id: id.into(),
        vpc_id: "vpc-1".into(),
        cidr: net(cidr),
        availability_zone: az.into(),
        availability_zone_id: String::new(),
        available_ips: 20,
        tags: tags(t),
    }
}

pub(crate) fn rule(proto: &str, from: i32, to: i32, source: RuleSource) -> IngressRule {
    IngressRule {
        rule_id: None,
        protocol: proto.into(),
        from_port: Some(from),
        to_port: Some(to),
        source,
        description: None,
    }
}

pub(crate) fn sg(id: &str, name: &str, ingress: Vec<IngressRule>) -> SecurityGroupInfo {
    SecurityGroupInfo {
        id: id.into(),
        name: name.into(),
        description: String::new(),
        vpc_id: "vpc-1".into(),
        tags: Tags::new(),
        ingress,
    }
}

pub(crate) fn node(name: &str, az: &str, ip: &str, itype: &str, ng: Option<&str>, np: Option<&str>) -> NodeSummary {
    NodeSummary {
        name: name.into(),
        zone: Some(az.into()),
        instance_type: Some(itype.into()),
        os: "linux".into(),
        internal_ip: Some(ip.into()),
        provider_id: None,
        capacity_pods: None,
        nodegroup: ng.map(str::to_string),
        nodepool: np.map(str::to_string),
        ready: true,
        unschedulable: false,
        eniconfig_label: None,
        eniconfig_annotation: None,
        external_eniconfig_label: None,
        labels: BTreeMap::new(),
        replace_mark: None,
    }
}

pub(crate) fn pod(ns: &str, name: &str, node: &str, app: &str) -> PodSummary {
    PodSummary {
        namespace: ns.into(),
        name: name.into(),
        uid: name.into(),
        node: Some(node.into()),
        ip: Some("10.255.11.50".into()),
        host_network: false,
        phase: "Running".into(),
        owner_kind: Some("ReplicaSet".into()),
        owner_name: Some(format!("{app}-abc")),
        has_emptydir: false,
        is_mirror: false,
        labels: [("app".to_string(), app.to_string())].into(),
    }
}

/// The reference scenario as discovery would see it.
pub(crate) fn seed() -> Discovery {
    let mut d = Discovery {
        cluster: seed_cluster(),
        vpc: seed_vpc(),
        subnets: seed_subnets(),
        route_tables: seed_route_tables(),
        security_groups: seed_security_groups(),
        endpoints: vec![],
        nodegroups: vec![seed_nodegroup()],
        addon: Some(seed_addon()),
        instance_types: BTreeMap::new(),
        instance_types_from_table: vec![],
        kube: seed_kube(),
        launch_template_user_data: Default::default(),
        self_managed: Default::default(),
    };
    for t in ["t3.medium", "t3.large"] {
        d.instance_types
            .insert(t.into(), InstanceTable::embedded().get(t).unwrap().clone());
    }
    d
}

fn seed_cluster() -> ClusterInfo {
    ClusterInfo {
        name: "podnet-demo".into(),
        version: "1.31".into(),
        status: "ACTIVE".into(),
        endpoint: None,
        certificate_authority: None,
        vpc_id: "vpc-1".into(),
        subnet_ids: vec!["subnet-a11".into(), "subnet-c12".into()],
        cluster_security_group_id: Some("sg-cluster".into()),
        security_group_ids: vec![],
        ip_family: "ipv4".into(),
        service_ipv4_cidr: Some("172.20.0.0/16".into()),
        auto_mode: false,
    }
}

fn seed_vpc() -> VpcInfo {
    VpcInfo {
        id: "vpc-1".into(),
        primary_cidr: net("10.255.0.0/16"),
        cidr_associations: vec![CidrAssociation {
            association_id: "vpc-cidr-assoc-1".into(),
            cidr: net("10.255.0.0/16"),
            state: "associated".into(),
        }],
        has_ipv6: false,
    }
}

fn seed_subnets() -> Vec<SubnetInfo> {
    let private = [("karpenter.sh/discovery", "podnet-demo")];
    vec![
        subnet("subnet-a1", "10.255.1.0/24", "ap-northeast-2a", &[]),
        subnet("subnet-c2", "10.255.2.0/24", "ap-northeast-2c", &[]),
        subnet("subnet-a11", "10.255.11.0/24", "ap-northeast-2a", &private),
        subnet("subnet-c12", "10.255.12.0/24", "ap-northeast-2c", &private),
        subnet("subnet-a21", "10.255.21.0/24", "ap-northeast-2a", &[]),
        subnet("subnet-c22", "10.255.22.0/24", "ap-northeast-2c", &[]),
    ]
}

fn seed_route_tables() -> Vec<RouteTableInfo> {
    vec![
        RouteTableInfo {
            id: "rtb-main".into(),
            associations: vec![RouteTableAssociation {
                id: "rtbassoc-m".into(),
                subnet_id: None,
                main: true,
            }],
            routes: vec![Route {
                destination: Some(net("10.255.0.0/16")),
                destination_prefix_list: None,
                target: "local".into(),
            }],
            tags: Tags::new(),
        },
        RouteTableInfo {
            id: "rtb-private".into(),
            associations: vec![
                RouteTableAssociation {
                    id: "a1".into(),
                    subnet_id: Some("subnet-a11".into()),
                    main: false,
                },
                RouteTableAssociation {
                    id: "a2".into(),
                    subnet_id: Some("subnet-c12".into()),
                    main: false,
                },
            ],
            routes: vec![Route {
                destination: None,
                destination_prefix_list: Some("pl-s3".into()),
                target: "vpce-s3".into(),
            }],
            tags: Tags::new(),
        },
    ]
}

fn seed_security_groups() -> Vec<SecurityGroupInfo> {
    vec![
        sg(
            "sg-cluster",
            "podnet-demo-cluster",
            vec![rule("tcp", 443, 443, RuleSource::Group("sg-node".into()))],
        ),
        sg(
            "sg-rds",
            "podnet-demo-rds",
            vec![
                rule("tcp", 3306, 3306, RuleSource::Cidr(net("10.255.11.0/24"))),
                rule("tcp", 3306, 3306, RuleSource::Cidr(net("10.255.12.0/24"))),
            ],
        ),
        sg(
            "sg-vpce",
            "podnet-demo-vpce",
            vec![
                rule("tcp", 443, 443, RuleSource::Cidr(net("10.255.11.0/24"))),
                rule("tcp", 443, 443, RuleSource::Cidr(net("10.255.12.0/24"))),
            ],
        ),
        sg(
            "sg-lb",
            "podnet-demo-lb",
            vec![rule("tcp", 80, 80, RuleSource::Cidr(net("0.0.0.0/0")))],
        ),
    ]
}

fn seed_nodegroup() -> NodegroupInfo {
    NodegroupInfo {
        name: "system".into(),
        status: "ACTIVE".into(),
        version: Some("1.31".into()),
        release_version: None,
        instance_types: vec!["t3.medium".into()],
        ami_type: Some("AL2023_x86_64_STANDARD".into()),
        capacity_type: Some("ON_DEMAND".into()),
        subnets: vec!["subnet-a11".into(), "subnet-c12".into()],
        min_size: 2,
        max_size: 3,
        desired_size: 2,
        launch_template: None,
        labels: BTreeMap::new(),
        autoscaling_groups: vec![],
        max_unavailable: Some(1),
        max_unavailable_percentage: None,
        arn: Some("arn:aws:eks:ap-northeast-2:123456789012:nodegroup/podnet-demo/system/0a1b".into()),
    }
}

fn seed_addon() -> AddonInfo {
    AddonInfo {
        name: "vpc-cni".into(),
        version: "v1.19.2-eksbuild.1".into(),
        status: "ACTIVE".into(),
        configuration_values: Some(r#"{"env":{"WARM_IP_TARGET":"2","MINIMUM_IP_TARGET":"4"}}"#.into()),
        arn: Some("arn:aws:eks:ap-northeast-2:123456789012:addon/podnet-demo/vpc-cni/2c3d".into()),
    }
}

/// Nodes, the web pods and their PDB, Karpenter and aws-node.
fn seed_kube() -> KubeSnapshot {
    let mut k = KubeSnapshot {
        nodes: seed_nodes(),
        pdbs: vec![PdbSummary {
            namespace: "default".into(),
            name: "web".into(),
            selector: serde_json::from_value(json!({"matchLabels": {"app": "web"}})).ok(),
            disruptions_allowed: 1,
            current_healthy: 30,
            desired_healthy: 29,
            expected_pods: 30,
        }],
        karpenter: Some(seed_karpenter()),
        aws_node: Some(seed_aws_node()),
        ..Default::default()
    };
    for i in 0..30 {
        let n = if i % 2 == 0 { "kp-a" } else { "kp-c" };
        k.pods.push(pod("default", &format!("web-{i}"), n, "web"));
    }
    k
}

/// Two managed nodes (node group `system`) and two Karpenter nodes, one of
/// each per AZ.
fn seed_nodes() -> Vec<NodeSummary> {
    vec![
        node(
            "ng-a",
            "ap-northeast-2a",
            "10.255.11.10",
            "t3.medium",
            Some("system"),
            None,
        ),
        node(
            "ng-c",
            "ap-northeast-2c",
            "10.255.12.10",
            "t3.medium",
            Some("system"),
            None,
        ),
        node(
            "kp-a",
            "ap-northeast-2a",
            "10.255.11.20",
            "t3.large",
            None,
            Some("default"),
        ),
        node(
            "kp-c",
            "ap-northeast-2c",
            "10.255.12.20",
            "t3.large",
            None,
            Some("default"),
        ),
    ]
}

fn seed_karpenter() -> KarpenterSnapshot {
    KarpenterSnapshot {
        controller: None,
        nodepools: vec![],
        nodeclasses: vec![NodeClassSummary {
            name: "default".into(),
            subnet_selector_terms: vec![json!({"tags": {"karpenter.sh/discovery": "podnet-demo"}})],
            kubelet_max_pods: None,
            security_group_selector_terms: vec![json!({"tags": {"karpenter.sh/discovery": "podnet-demo"}})],
        }],
        nodeclaims: vec![],
    }
}

fn seed_aws_node() -> AwsNodeSummary {
    AwsNodeSummary {
        namespace: "kube-system".into(),
        image: Some("602401143452.dkr.ecr.ap-northeast-2.amazonaws.com/amazon-k8s-cni:v1.19.2-eksbuild.1".into()),
        env: [("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG".to_string(), "false".to_string())].into(),
        desired: 4,
        updated: 4,
        ready: 4,
    }
}

pub(crate) fn seed_spec() -> Spec {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/plans/seed-ap-northeast-2.toml")).unwrap();
    spec::parse(&text, &Overrides::default()).unwrap()
}
