//! Planner rules on a hand-built discovery of the reference scenario.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::aws::ec2::*;
use crate::aws::eks::*;
use crate::capacity::InstanceTable;
use crate::discovery::Discovery;
use crate::k8s::snapshot::*;
use crate::spec::{self, Overrides};

fn net(s: &str) -> ipnet::Ipv4Net {
    s.parse().unwrap()
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn subnet(id: &str, cidr: &str, az: &str, t: &[(&str, &str)]) -> SubnetInfo {
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

fn rule(proto: &str, from: i32, to: i32, source: RuleSource) -> IngressRule {
    IngressRule {
        rule_id: None,
        protocol: proto.into(),
        from_port: Some(from),
        to_port: Some(to),
        source,
        description: None,
    }
}

fn sg(id: &str, name: &str, ingress: Vec<IngressRule>) -> SecurityGroupInfo {
    SecurityGroupInfo {
        id: id.into(),
        name: name.into(),
        description: String::new(),
        vpc_id: "vpc-1".into(),
        tags: Tags::new(),
        ingress,
    }
}

fn node(name: &str, az: &str, ip: &str, itype: &str, ng: Option<&str>, np: Option<&str>) -> NodeSummary {
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
    }
}

fn pod(ns: &str, name: &str, node: &str, app: &str) -> PodSummary {
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
fn seed() -> Discovery {
    let private = [("karpenter.sh/discovery", "podnet-demo")];
    let mut d = Discovery {
        cluster: ClusterInfo {
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
        },
        vpc: VpcInfo {
            id: "vpc-1".into(),
            primary_cidr: net("10.255.0.0/16"),
            cidr_associations: vec![CidrAssociation {
                association_id: "vpc-cidr-assoc-1".into(),
                cidr: net("10.255.0.0/16"),
                state: "associated".into(),
            }],
            has_ipv6: false,
        },
        subnets: vec![
            subnet("subnet-a1", "10.255.1.0/24", "ap-northeast-2a", &[]),
            subnet("subnet-c2", "10.255.2.0/24", "ap-northeast-2c", &[]),
            subnet("subnet-a11", "10.255.11.0/24", "ap-northeast-2a", &private),
            subnet("subnet-c12", "10.255.12.0/24", "ap-northeast-2c", &private),
            subnet("subnet-a21", "10.255.21.0/24", "ap-northeast-2a", &[]),
            subnet("subnet-c22", "10.255.22.0/24", "ap-northeast-2c", &[]),
        ],
        route_tables: vec![
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
        ],
        security_groups: vec![
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
        ],
        endpoints: vec![],
        nodegroups: vec![NodegroupInfo {
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
        }],
        addon: Some(AddonInfo {
            name: "vpc-cni".into(),
            version: "v1.19.2-eksbuild.1".into(),
            status: "ACTIVE".into(),
            configuration_values: Some(r#"{"env":{"WARM_IP_TARGET":"2","MINIMUM_IP_TARGET":"4"}}"#.into()),
        }),
        instance_types: BTreeMap::new(),
        instance_types_from_table: vec![],
        kube: KubeSnapshot::default(),
    };
    for t in ["t3.medium", "t3.large"] {
        d.instance_types
            .insert(t.into(), InstanceTable::embedded().get(t).unwrap().clone());
    }
    d.kube.nodes = vec![
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
    ];
    for i in 0..30 {
        let n = if i % 2 == 0 { "kp-a" } else { "kp-c" };
        d.kube.pods.push(pod("default", &format!("web-{i}"), n, "web"));
    }
    d.kube.pdbs.push(PdbSummary {
        namespace: "default".into(),
        name: "web".into(),
        selector: serde_json::from_value(json!({"matchLabels": {"app": "web"}})).ok(),
        disruptions_allowed: 1,
        current_healthy: 30,
        desired_healthy: 29,
        expected_pods: 30,
    });
    d.kube.karpenter = Some(KarpenterSnapshot {
        controller: None,
        nodepools: vec![],
        nodeclasses: vec![NodeClassSummary {
            name: "default".into(),
            subnet_selector_terms: vec![json!({"tags": {"karpenter.sh/discovery": "podnet-demo"}})],
            kubelet_max_pods: None,
            spec: json!({"securityGroupSelectorTerms": [{"tags": {"karpenter.sh/discovery": "podnet-demo"}}]}),
        }],
        nodeclaims: vec![],
    });
    d.kube.aws_node = Some(AwsNodeSummary {
        namespace: "kube-system".into(),
        image: Some("602401143452.dkr.ecr.ap-northeast-2.amazonaws.com/amazon-k8s-cni:v1.19.2-eksbuild.1".into()),
        env: [("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG".to_string(), "false".to_string())].into(),
        desired: 4,
        updated: 4,
        ready: 4,
    });
    d
}

fn seed_spec() -> Spec {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/plans/seed-ap-northeast-2.toml")).unwrap();
    spec::parse(&text, &Overrides::default()).unwrap()
}

fn auto_spec(extra: &str) -> Spec {
    spec::parse(
        &format!("[cluster]\nname = \"podnet-demo\"\nregion = \"ap-northeast-2\"\n{extra}"),
        &Overrides::default(),
    )
    .unwrap()
}

fn ids(p: &Planned) -> Vec<&str> {
    p.findings.iter().map(|f| f.id.as_str()).collect()
}

#[test]
fn seed_plan_resolves_the_reference_scenario() {
    let p = plan(&seed_spec(), &seed());
    assert!(!p.has_errors(), "{:#?}", p.findings);
    let subnets: Vec<(&str, String, &str)> = p
        .inputs
        .pod_subnets
        .iter()
        .map(|s| {
            (
                s.availability_zone.as_str(),
                s.cidr.to_string(),
                s.route_table_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        subnets,
        [
            ("ap-northeast-2a", "100.64.1.0/24".to_string(), "rtb-private"),
            ("ap-northeast-2c", "100.64.2.0/24".to_string(), "rtb-private")
        ]
    );
    let t = &p.inputs.pod_subnets[0].tags;
    assert_eq!(t["Name"], "podnet-demo-pods-2a");
    assert_eq!(t["podnet.io/cluster"], "podnet-demo");
    assert_eq!(t["kubernetes.io/role/cni"], "1");
    assert!(!t.contains_key("karpenter.sh/discovery"));
    let patches: Vec<(&str, Option<i32>)> = p
        .inputs
        .security_group_patches
        .iter()
        .map(|s| (s.group_id.as_str(), s.from_port))
        .collect();
    assert_eq!(patches, [("sg-rds", Some(3306)), ("sg-vpce", Some(443))]);
    assert!(
        p.inputs
            .security_group_patches
            .iter()
            .all(|s| s.cidr == net("100.64.0.0/16"))
    );
}

#[test]
fn suggestions_are_the_groups_admitting_node_subnets() {
    let p = plan(&auto_spec(""), &seed());
    let s: Vec<(&str, &str, bool)> = p
        .suggestions
        .iter()
        .map(|s| (s.group_name.as_str(), s.ports.as_str(), s.planned))
        .collect();
    assert_eq!(
        s,
        [
            ("podnet-demo-rds", "tcp 3306", false),
            ("podnet-demo-vpce", "tcp 443", false)
        ]
    );
    let p = plan(&seed_spec(), &seed());
    assert!(p.suggestions.iter().all(|s| s.planned), "{:?}", p.suggestions);
}

#[test]
fn auto_sizing_splits_over_node_zones() {
    let p = plan(&auto_spec(""), &seed());
    let c: Vec<String> = p
        .inputs
        .pod_subnets
        .iter()
        .map(|s| format!("{} {}", s.availability_zone, s.cidr))
        .collect();
    assert_eq!(c, ["ap-northeast-2a 100.64.0.0/17", "ap-northeast-2c 100.64.128.0/17"]);
    // A third AZ with nodes: /18s.
    let mut d = seed();
    d.subnets
        .push(subnet("subnet-b13", "10.255.13.0/24", "ap-northeast-2b", &[]));
    d.nodegroups[0].subnets.push("subnet-b13".into());
    let p = plan(&auto_spec(""), &d);
    assert_eq!(p.inputs.pod_subnets.len(), 3);
    assert!(p.inputs.pod_subnets.iter().all(|s| s.cidr.prefix_len() == 18));
    // subnet-b13 has no explicit association: it uses the main table, and so does its pod subnet.
    assert_eq!(p.inputs.pod_subnets[1].route_table_id, "rtb-main");
}

#[test]
fn refused_secondary_cidrs_are_errors() {
    for (block, id) in [
        ("198.19.0.0/16", "cidr.restricted"),
        ("10.255.128.0/17", "cidr.overlap"),
        ("10.255.0.0/16", "cidr.is-primary"),
    ] {
        let p = plan(
            &auto_spec(&format!("[network]\nsecondary_cidr = \"{block}\"\n")),
            &seed(),
        );
        assert!(ids(&p).contains(&id), "{block}: {:?}", ids(&p));
        assert!(p.has_errors());
        assert_eq!(p.findings[0].severity, Severity::Error, "errors come first");
    }
    let mut d = seed();
    for i in 0..4 {
        d.vpc.cidr_associations.push(CidrAssociation {
            association_id: format!("a{i}"),
            cidr: net(&format!("100.{}.0.0/16", 65 + i)),
            state: "associated".into(),
        });
    }
    let p = plan(&auto_spec(""), &d);
    assert!(ids(&p).contains(&"cidr.quota"), "{:?}", ids(&p));
    // Already associated: no CIDR finding at all.
    let mut d = seed();
    d.vpc.cidr_associations.push(CidrAssociation {
        association_id: "a9".into(),
        cidr: net("100.64.0.0/16"),
        state: "associated".into(),
    });
    let p = plan(&seed_spec(), &d);
    assert!(!ids(&p).iter().any(|i| i.starts_with("cidr.")), "{:?}", ids(&p));
}

#[test]
fn cluster_and_node_refusals() {
    let mut d = seed();
    d.cluster.ip_family = "ipv6".into();
    d.cluster.auto_mode = true;
    d.kube.nodes[0].os = "windows".into();
    d.kube.nodes[1].eniconfig_annotation = Some("custom".into());
    let p = plan(&seed_spec(), &d);
    let got = ids(&p);
    for want in [
        "cluster.ipv6",
        "cluster.auto-mode",
        "nodes.windows",
        "nodes.eniconfig-override",
    ] {
        assert!(got.contains(&want), "{want} missing: {got:?}");
    }
}

#[test]
fn a_zone_with_nodes_needs_a_pod_subnet() {
    let spec = spec::parse(
        "[cluster]\nname = \"podnet-demo\"\nregion = \"ap-northeast-2\"\n[pod_subnets]\nsizing = \"explicit\"\n\
         [[pod_subnets.subnet]]\navailability_zone = \"ap-northeast-2a\"\ncidr = \"100.64.1.0/24\"\n",
        &Overrides::default(),
    )
    .unwrap();
    let p = plan(&spec, &seed());
    let f = p
        .findings
        .iter()
        .find(|f| f.id == "subnets.az-without-pod-subnet")
        .expect("finding");
    assert!(f.reason.contains("ap-northeast-2c"));
}

#[test]
fn nodeclass_selecting_pod_subnets_is_an_error() {
    let p = plan(&auto_spec("[pod_subnets]\ntags = { tier = \"pods\" }\n"), &seed());
    assert!(!ids(&p).contains(&"karpenter.nodeclass-selects-pod-subnets"));
    let mut d = seed();
    d.kube.karpenter.as_mut().unwrap().nodeclasses[0]
        .subnet_selector_terms
        .push(json!({"tags": {"tier": "*"}}));
    let p = plan(&auto_spec("[pod_subnets]\ntags = { tier = \"pods\" }\n"), &d);
    assert!(
        ids(&p).contains(&"karpenter.nodeclass-selects-pod-subnets"),
        "{:?}",
        ids(&p)
    );
}

#[test]
fn cni_version_checks() {
    let mut d = seed();
    d.addon.as_mut().unwrap().version = "v1.8.0-eksbuild.1".into();
    let p = plan(&auto_spec("[vpc_cni]\nprefix_delegation = true\n"), &d);
    assert!(ids(&p).contains(&"cni.prefix-delegation"), "{:?}", ids(&p));
    let p = plan(&auto_spec(""), &seed());
    assert!(ids(&p).contains(&"cni.eniconfig-required"));
    let mut d = seed();
    d.addon.as_mut().unwrap().configuration_values =
        Some(r#"{"env":{"AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG":"true"}}"#.into());
    let p = plan(&auto_spec(""), &d);
    assert!(ids(&p).contains(&"cni.custom-networking-half-on"), "{:?}", ids(&p));
}

#[test]
fn pdb_allowing_no_disruption_is_reported() {
    let mut d = seed();
    d.kube.pdbs[0].disruptions_allowed = 0;
    let p = plan(&seed_spec(), &d);
    let f = p
        .findings
        .iter()
        .find(|f| f.id == "pdb.zero-disruptions")
        .expect("finding");
    assert!(
        f.reason.contains("default/web") && f.reason.contains("30 pod(s)"),
        "{}",
        f.reason
    );
}

#[test]
fn sg_patch_targets_must_exist() {
    let p = plan(
        &auto_spec(
            "[[security_group_patch]]\ngroup_name = \"nope\"\nports = 1\n[[security_group_patch]]\ngroup_id = \"sg-0123456789abcdef0\"\nports = 2\n",
        ),
        &seed(),
    );
    assert_eq!(
        p.findings.iter().filter(|f| f.id == "sg-patch.target-missing").count(),
        2
    );
}

#[test]
fn eniconfig_security_group_is_checked() {
    // The seed's cluster SG only admits the node SG on 443.
    let p = plan(&seed_spec(), &seed());
    let f = p
        .findings
        .iter()
        .find(|f| f.id == "eniconfig.sg-admits")
        .expect("finding");
    assert!(f.reason.contains("sg-cluster"));
    let mut d = seed();
    d.security_groups[0].ingress.push(IngressRule {
        rule_id: None,
        protocol: "-1".into(),
        from_port: None,
        to_port: None,
        source: RuleSource::Group("sg-cluster".into()),
        description: None,
    });
    let p = plan(&seed_spec(), &d);
    assert!(!ids(&p).contains(&"eniconfig.sg-admits"), "{:?}", p.findings);
}

#[test]
fn capacity_report() {
    let p = plan(&seed_spec(), &seed());
    let c = &p.capacity;
    let z: Vec<(&str, u64, Option<&str>, u64)> = c
        .zones
        .iter()
        .map(|z| (z.zone.as_str(), z.shared_usable, z.pod_subnet.as_deref(), z.pod_usable))
        .collect();
    assert_eq!(
        z,
        [
            ("ap-northeast-2a", 251, Some("100.64.1.0/24"), 251),
            ("ap-northeast-2c", 251, Some("100.64.2.0/24"), 251)
        ]
    );
    let m = c
        .instance_types
        .iter()
        .find(|t| t.instance_type == "t3.medium")
        .unwrap();
    assert_eq!(
        (m.eks_before, m.eks_after, m.karpenter_unreserved, m.karpenter_reserved),
        (17, 12, 17, 12)
    );
    let l = c.instance_types.iter().find(|t| t.instance_type == "t3.large").unwrap();
    assert_eq!((l.eks_before, l.eks_after, l.karpenter_reserved), (35, 24, 24));
    assert_eq!(c.nodes_to_replace.len(), 4);
    // 30 pods on two t3.large: 2 × (24 − 2) = 44 after, enough.
    let pool = c.groups.iter().find(|g| g.kind == "node-pool").unwrap();
    assert_eq!((pool.pods, pool.capacity_after, pool.extra_nodes), (30, 44, 0));
    // 60 pods need 1 more t3.large.
    let mut d = seed();
    for i in 30..60 {
        d.kube.pods.push(pod(
            "default",
            &format!("web-{i}"),
            if i % 2 == 0 { "kp-a" } else { "kp-c" },
            "web",
        ));
    }
    let p = plan(&seed_spec(), &d);
    let pool = p.capacity.groups.iter().find(|g| g.kind == "node-pool").unwrap();
    assert_eq!(pool.extra_nodes, 1);
    assert!(ids(&p).contains(&"capacity.more-nodes"));
}
