//! Planner rules on a hand-built discovery of the reference scenario.

mod karpenter;
mod node_groups;
pub(crate) mod seed;
mod self_managed;

use serde_json::json;

use super::*;
use crate::aws::ec2::*;
use crate::spec::{self, Overrides};
use seed::*;

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
