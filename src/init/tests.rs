//! `podnet init` on the hand-built reference discovery: what it decides, and
//! that what it writes is a valid plan that leaves nothing to decide.

use crate::aws::ec2::{Route, RuleSource};
use crate::k8s::snapshot::{KarpenterController, KarpenterSnapshot};
use crate::planner::tests::seed::{net, rule, seed, sg};
use crate::planner::{self, Severity};
use crate::spec::{self, Overrides, PodSubnetPlan};

use super::*;

fn written(d: &Discovery) -> (String, Spec) {
    let draft = draft("podnet-demo", "ap-northeast-2", d).expect("a draft");
    let text = render(&draft);
    let spec = spec::parse(&text, &Overrides::default()).unwrap_or_else(|p| panic!("{p:#?}\n{text}"));
    (text, spec)
}

/// The text with wrapped comments joined, to search for a sentence.
fn unwrapped(text: &str) -> String {
    text.replace("\n# ", " ")
}

fn with_karpenter(mut d: Discovery) -> Discovery {
    d.kube.karpenter = Some(KarpenterSnapshot {
        controller: Some(KarpenterController {
            namespace: "karpenter".into(),
            deployment: "karpenter".into(),
            container: "controller".into(),
            replicas: 2,
            ready_replicas: 2,
            reserved_enis: None,
            helm_managed: true,
            helm_release: Some("karpenter".into()),
            nodes: vec![],
            has_pdb: true,
        }),
        ..KarpenterSnapshot::default()
    });
    d
}

#[test]
fn the_seed_gets_the_default_block_two_subnets_and_both_service_groups() {
    let d = seed();
    let (text, spec) = written(&d);
    assert_eq!(spec.secondary_cidr, net("100.64.0.0/16"));
    let PodSubnetPlan::Explicit { subnets } = &spec.pod_subnets else {
        panic!("explicit subnets: {text}")
    };
    let got: Vec<(String, String)> = subnets
        .iter()
        .map(|s| (s.availability_zone.clone(), s.cidr.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            ("ap-northeast-2a".to_string(), "100.64.0.0/17".to_string()),
            ("ap-northeast-2c".to_string(), "100.64.128.0/17".to_string())
        ]
    );
    let groups: Vec<String> = spec
        .security_group_patches
        .iter()
        .map(|p| format!("{:?}", p.target))
        .collect();
    assert_eq!(groups.len(), 2, "{groups:?}\n{text}");
    assert!(
        text.contains("group_name = \"podnet-demo-rds\"\nprotocol = \"tcp\"\nports = 3306\n"),
        "{text}"
    );
    assert!(
        text.contains("group_name = \"podnet-demo-vpce\"\nprotocol = \"tcp\"\nports = 443\n"),
        "{text}"
    );
    assert!(
        unwrapped(&text)
            .contains("admits tcp 3306 from 10.255.11.0/24 (the node subnet subnet-a11 in ap-northeast-2a)"),
        "{text}"
    );
    // The load balancer's 0.0.0.0/0 is not a node-subnet rule.
    assert!(!text.contains("podnet-demo-lb"), "{text}");
}

#[test]
fn planning_the_written_file_leaves_no_decision_open() {
    let d = seed();
    let (_, spec) = written(&d);
    let p = planner::plan(&spec, &d);
    assert!(!p.has_errors(), "{:#?}", p.findings);
    assert!(
        p.suggestions.iter().all(|s| s.planned || s.done),
        "{:#?}",
        p.suggestions
    );
    let warnings: Vec<&str> = p
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .map(|f| f.id.as_str())
        .collect();
    assert!(
        !warnings
            .iter()
            .any(|w| w.starts_with("sg.") || w.starts_with("subnets.")),
        "{warnings:?}"
    );
}

#[test]
fn every_section_and_default_of_the_example_is_written() {
    let (text, spec) = written(&seed());
    for section in [
        "[cluster]",
        "[network]",
        "[pod_subnets]",
        "[eniconfig]",
        "[vpc_cni]",
        "[karpenter]",
        "[replacement]",
        "[waits]",
        "[control_plane]",
    ] {
        assert_eq!(text.matches(&format!("\n{section}\n")).count(), 1, "{section}:\n{text}");
    }
    let defaults = base_spec("podnet-demo", "ap-northeast-2", None).unwrap();
    assert_eq!(spec.waits, defaults.waits);
    assert_eq!(spec.replacement, defaults.replacement);
    assert_eq!(spec.vpc_cni, defaults.vpc_cni);
    assert!(text.contains("# This cluster's security group: sg-cluster."), "{text}");
    // The example's sample tags and sample patch are not copied.
    assert!(!text.contains("cost-center") && !text.contains("my-cluster"), "{text}");
}

#[test]
fn a_route_to_the_default_block_moves_the_choice_to_the_next_free_one() {
    let mut d = seed();
    d.route_tables[0].routes.push(Route {
        destination: Some(net("100.64.0.0/16")),
        destination_prefix_list: None,
        target: "tgw-1".into(),
    });
    let c = choose_cidr(&d);
    assert_eq!(c.block, net("100.65.0.0/16"));
    assert!(c.why.contains("tgw-1"), "{}", c.why);
    let (text, spec) = written(&d);
    assert_eq!(spec.secondary_cidr, net("100.65.0.0/16"));
    assert!(text.contains("secondary_cidr = \"100.65.0.0/16\""), "{text}");
}

#[test]
fn an_associated_default_block_is_adopted() {
    let mut d = seed();
    d.vpc.cidr_associations.push(crate::aws::ec2::CidrAssociation {
        association_id: "vpc-cidr-assoc-2".into(),
        cidr: net("100.64.0.0/16"),
        state: "associated".into(),
    });
    let c = choose_cidr(&d);
    assert_eq!(c.block, net("100.64.0.0/16"));
    assert!(c.why.contains("already associated"), "{}", c.why);
}

#[test]
fn a_name_shared_by_two_groups_is_written_as_the_group_id() {
    let mut d = seed();
    for g in &mut d.security_groups {
        if g.id == "sg-rds" {
            g.id = "sg-0000aaaa".into();
        }
    }
    d.security_groups.push(sg(
        "sg-0000bbbb",
        "podnet-demo-rds",
        vec![rule("tcp", 5432, 5432, RuleSource::Cidr(net("10.255.0.0/16")))],
    ));
    let (text, spec) = written(&d);
    assert!(text.contains("group_id = \"sg-0000aaaa\""), "{text}");
    assert!(text.contains("group_id = \"sg-0000bbbb\""), "{text}");
    assert_eq!(spec.security_group_patches.len(), 3, "{text}");
    assert!(
        unwrapped(&text).contains(
            "10.255.0.0/16 (which holds the node subnets subnet-a11 10.255.11.0/24, subnet-c12 10.255.12.0/24)"
        ),
        "{text}"
    );
}

#[test]
fn karpenter_is_written_as_found() {
    let (text, spec) = written(&with_karpenter(seed()));
    assert!(
        text.contains("namespace = \"karpenter\"\ndeployment = \"karpenter\"\n"),
        "{text}"
    );
    assert_eq!(spec.karpenter.namespace.as_deref(), Some("karpenter"));
    assert!(
        unwrapped(&text).contains("Found: Deployment karpenter/karpenter with RESERVED_ENIS unset; NodePools none"),
        "{text}"
    );
    let (text, spec) = written(&seed());
    assert!(text.contains("# Found: no Karpenter controller"), "{text}");
    assert_eq!(spec.karpenter.namespace, None);
}

#[test]
fn comments_wrap_and_strings_are_quoted() {
    let c = render::comment(&"word ".repeat(40));
    assert!(c.lines().all(|l| l.starts_with("# ") && l.len() <= 80), "{c}");
    for raw in ["a\"b", "it's", "back\\slash", "new\nline"] {
        let v: toml::Value = toml::from_str(&format!("k = {}", toml_str(raw))).unwrap();
        assert_eq!(v["k"].as_str(), Some(raw));
    }
}

#[test]
fn without_node_subnets_the_file_stays_on_auto_sizing_and_validates() {
    let mut d = seed();
    d.nodegroups.clear();
    d.kube.nodes.clear();
    d.kube.karpenter = None;
    let (text, spec) = written(&d);
    assert_eq!(spec.pod_subnets, PodSubnetPlan::Auto, "{text}");
    assert!(text.contains("sizing = \"auto\""), "{text}");
}

#[test]
fn protocols_are_named_icmp_widened_and_covered_rules_left_out() {
    let mut d = seed();
    let node = || RuleSource::Cidr(net("10.255.11.0/24"));
    d.security_groups.push(sg(
        "sg-0000cccc",
        "mixed",
        vec![
            rule("6", 5432, 5432, node()),
            rule("17", 53, 53, node()),
            rule("1", 8, -1, node()),
            rule("icmp", 0, -1, node()),
            rule("50", -1, -1, node()),
        ],
    ));
    d.security_groups.push(sg(
        "sg-0000dddd",
        "wide",
        vec![rule("tcp", 443, 443, node()), rule("-1", -1, -1, node())],
    ));
    let (text, spec) = written(&d);
    let mixed: Vec<String> = spec
        .security_group_patches
        .iter()
        .filter(|p| format!("{:?}", p.target).contains("mixed"))
        .map(|p| format!("{:?} {:?}", p.protocol, p.ports))
        .collect();
    assert_eq!(
        mixed,
        ["Tcp Some((5432, 5432))", "Udp Some((53, 53))", "Icmp None"],
        "{text}"
    );
    let wide: Vec<String> = spec
        .security_group_patches
        .iter()
        .filter(|p| format!("{:?}", p.target).contains("wide"))
        .map(|p| format!("{:?}", p.protocol))
        .collect();
    assert_eq!(wide, ["All"], "all traffic covers tcp 443: {text}");
    assert!(unwrapped(&text).contains("admits IP protocol 50 from"), "{text}");
    let p = planner::plan(&spec, &d);
    assert!(
        p.suggestions.iter().all(|s| s.planned || s.done || s.protocol == "50"),
        "{:#?}",
        p.suggestions
    );
}

#[test]
fn another_block_of_shared_space_on_the_vpc_is_adopted() {
    let mut d = seed();
    d.vpc.cidr_associations.push(crate::aws::ec2::CidrAssociation {
        association_id: "vpc-cidr-assoc-3".into(),
        cidr: net("100.65.0.0/16"),
        state: "associated".into(),
    });
    assert_eq!(choose_cidr(&d).block, net("100.65.0.0/16"));
}

#[test]
fn the_default_block_is_the_specs_default() {
    assert_eq!(DEFAULT_BLOCK.to_string(), spec::model::DEFAULT_SECONDARY_CIDR);
    assert!(SHARED_SPACE.contains(&DEFAULT_BLOCK));
}
