//! Many NodePools on many EC2NodeClasses: each class's static maxPods fits
//! its smallest instance type, each NodePool is replaced within its own
//! disruption budget; and the node kinds custom networking cannot serve.

use serde_json::{Value, json};

use super::super::*;
use super::seed::*;
use crate::capacity::InstanceTable;
use crate::k8s::snapshot::{KarpenterController, NodeClassSummary, NodePoolSummary};
use crate::spec::model::{NotMigrated, SelfManagedPolicy};

/// The seed plan with changes made to it.
pub(super) fn spec_with(change: impl FnOnce(&mut Spec)) -> Spec {
    let mut spec = seed_spec();
    change(&mut spec);
    spec
}

fn pool(name: &str, class: &str, types: &[&str], budgets: Value) -> NodePoolSummary {
    let mut requirements = vec![json!({"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]})];
    if !types.is_empty() {
        requirements.push(json!({"key": "node.kubernetes.io/instance-type", "operator": "In", "values": types}));
    }
    NodePoolSummary {
        name: name.into(),
        node_class: Some(class.into()),
        requirements,
        budgets: budgets.as_array().cloned().unwrap_or_default(),
        limits: Default::default(),
    }
}

fn class(name: &str, max_pods: Option<u32>) -> NodeClassSummary {
    NodeClassSummary {
        name: name.into(),
        subnet_selector_terms: vec![json!({"tags": {"karpenter.sh/discovery": "podnet-demo"}})],
        kubelet_max_pods: max_pods,
        security_group_selector_terms: vec![],
    }
}

/// The seed with two NodePools: `default` (t3.medium, t3.large) on class
/// `default` without a static maxPods, and `batch` (t3.large, m5.large) on
/// class `static` with `kubelet.maxPods = 29`, four nodes each.
fn two_pools(budget_default: Value, budget_batch: Value) -> Discovery {
    let mut d = seed();
    d.instance_types.insert(
        "m5.large".into(),
        InstanceTable::embedded().get("m5.large").unwrap().clone(),
    );
    let k = d.kube.karpenter.as_mut().unwrap();
    k.controller = Some(KarpenterController {
        namespace: "kube-system".into(),
        deployment: "karpenter".into(),
        container: "controller".into(),
        replicas: 2,
        ready_replicas: 2,
        reserved_enis: None,
        helm_managed: true,
        helm_release: Some("karpenter".into()),
        nodes: vec![],
        has_pdb: true,
    });
    k.nodepools = vec![
        pool("default", "default", &["t3.medium", "t3.large"], budget_default),
        pool("batch", "static", &["t3.large", "m5.large"], budget_batch),
    ];
    k.nodeclasses = vec![class("default", None), class("static", Some(29))];
    d.kube.nodes.retain(|n| n.nodepool.is_none());
    for (i, az) in [
        "ap-northeast-2a",
        "ap-northeast-2c",
        "ap-northeast-2a",
        "ap-northeast-2c",
    ]
    .iter()
    .enumerate()
    {
        d.kube.nodes.push(node(
            &format!("kp-{i}"),
            az,
            &format!("10.255.11.{}", 20 + i),
            "t3.large",
            None,
            Some("default"),
        ));
        d.kube.nodes.push(node(
            &format!("bt-{i}"),
            az,
            &format!("10.255.12.{}", 20 + i),
            "m5.large",
            None,
            Some("batch"),
        ));
    }
    d
}

fn ids(p: &Planned) -> Vec<&str> {
    p.findings.iter().map(|f| f.id.as_str()).collect()
}

#[test]
fn a_static_max_pods_is_lowered_to_what_the_smallest_type_holds() {
    let d = two_pools(json!([]), json!([]));
    let p = plan(&seed_spec(), &d);
    let k = p.inputs.karpenter.as_ref().expect("karpenter inputs");
    // m5.large under custom networking: (3 - 1) × (10 - 1) + 2 = 20; t3.large 24.
    assert_eq!(k.class_max_pods, [("static".to_string(), 20)].into());
    let x = p.inputs.expect.karpenter.as_ref().unwrap();
    assert_eq!(x.pool_classes["batch"], "static");
    let bt = d.kube.nodes.iter().find(|n| n.name == "bt-0").unwrap();
    let kp = d.kube.nodes.iter().find(|n| n.name == "kp-0").unwrap();
    assert_eq!(p.inputs.expect.expected_pods(bt), Some(20));
    // A class without a static value: Karpenter sizes the type from RESERVED_ENIS.
    assert_eq!(p.inputs.expect.expected_pods(kp), Some(24));
    assert!(!p.has_errors(), "{:#?}", p.findings);
}

#[test]
fn a_static_max_pods_lower_than_the_fit_is_kept() {
    let mut d = two_pools(json!([]), json!([]));
    d.kube.karpenter.as_mut().unwrap().nodeclasses[1].kubelet_max_pods = Some(15);
    let p = plan(&seed_spec(), &d);
    assert_eq!(p.inputs.karpenter.unwrap().class_max_pods["static"], 15);
}

#[test]
fn a_planned_max_pods_above_a_class_fit_is_refused() {
    let d = two_pools(json!([]), json!([]));
    let p = plan(&spec_with(|s| s.karpenter.max_pods = Some(22)), &d);
    let refused: Vec<&Finding> = p
        .findings
        .iter()
        .filter(|f| f.id == "karpenter.max-pods-too-high")
        .collect();
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert!(refused[0].reason.contains("EC2NodeClass default") && refused[0].reason.contains("t3.medium holds 12"));
    assert!(refused[1].reason.contains("EC2NodeClass static") && refused[1].reason.contains("m5.large holds 20"));
    assert!(refused[1].fix.contains("at most 20"), "{}", refused[1].fix);
    // Where it applies only: class `default` holds 12 on its smallest type.
    let p = plan(
        &spec_with(|s| {
            s.karpenter.max_pods = Some(12);
            s.karpenter.node_classes = vec!["default".into()];
        }),
        &d,
    );
    assert!(!p.has_errors(), "{:#?}", p.findings);
    let k = p.inputs.karpenter.unwrap();
    assert_eq!(k.class_max_pods["default"], 12);
    assert_eq!(
        k.class_max_pods["static"], 20,
        "the static class still fits its smallest type"
    );
}

#[test]
fn a_static_max_pods_without_known_types_is_refused() {
    let mut d = two_pools(json!([]), json!([]));
    d.kube.karpenter.as_mut().unwrap().nodepools[1] = pool("batch", "static", &[], json!([]));
    let p = plan(&seed_spec(), &d);
    let f = p
        .findings
        .iter()
        .find(|f| f.id == "karpenter.static-max-pods")
        .expect("refused");
    assert!(f.reason.contains("NodePool batch"), "{}", f.reason);
    assert!(f.fix.contains("remove spec.kubelet.maxPods"), "{}", f.fix);
}

#[test]
fn each_node_pool_is_replaced_in_batches_within_its_own_budget() {
    // default: 50% of 4 → 2 at a time; batch: "1". An empty reasons list
    // means every reason.
    let d = two_pools(json!([{"nodes": "50%"}]), json!([{"nodes": "1"}]));
    let p = plan(&spec_with(|s| s.replacement.batch_size = 3), &d);
    assert_eq!(
        p.inputs.karpenter_batches,
        [
            vec!["bt-0"],
            vec!["bt-1"],
            vec!["bt-2"],
            vec!["bt-3"],
            vec!["kp-0", "kp-1"],
            vec!["kp-2", "kp-3"]
        ]
    );
    // 10% of 4 rounds up to 1, as Karpenter rounds; a budget for another
    // reason does not apply to a replacement.
    let d = two_pools(
        json!([]),
        json!([{"nodes": "0", "reasons": ["Underutilized"]}, {"nodes": "75%"}]),
    );
    let p = plan(&spec_with(|s| s.replacement.batch_size = 5), &d);
    assert_eq!(p.inputs.karpenter_batches[0], ["bt-0", "bt-1", "bt-2"]);
    assert_eq!(p.inputs.karpenter_batches[2], ["kp-0"]);
    // The finish unit keeps to the same sizes for nodes the plan did not know.
    assert_eq!(
        p.inputs.drain.pool_batch,
        [("batch".to_string(), 3), ("default".to_string(), 1)].into()
    );
    assert_eq!(p.inputs.drain.batch_for(Some("default")), 1);
    assert_eq!(p.inputs.drain.batch_for(None), 5);
}

#[test]
fn a_budget_that_allows_nothing_is_named() {
    // An empty reasons list means every reason (Karpenter: len(reasons) == 0).
    let d = two_pools(
        json!([{"nodes": "0", "reasons": []}]),
        json!([{"nodes": "0", "schedule": "0 9 * * mon-fri", "duration": "8h"}, {"nodes": "2"}]),
    );
    let p = plan(&spec_with(|s| s.replacement.batch_size = 4), &d);
    let f = p
        .findings
        .iter()
        .find(|f| f.id == "karpenter.budget-blocks")
        .expect("blocked");
    assert!(f.reason.contains("NodePool default"), "{}", f.reason);
    let w = p
        .findings
        .iter()
        .find(|f| f.id == "karpenter.budget-window")
        .expect("window");
    assert!(
        w.reason.contains("NodePool batch") && w.reason.contains("0 9 * * mon-fri"),
        "{}",
        w.reason
    );
    assert_eq!(p.inputs.karpenter_batches[0], ["bt-0", "bt-1"]);
}

#[test]
fn windows_nodes_are_refused_unless_the_plan_leaves_them() {
    let mut d = seed();
    d.kube.nodes[0].os = "windows".into();
    let p = plan(&seed_spec(), &d);
    let f = p.findings.iter().find(|f| f.id == "nodes.windows").expect("refused");
    assert_eq!(f.severity, Severity::Error);
    assert!(f.reason.contains("node group system (ng-a)"), "{}", f.reason);
    assert!(f.fix.contains("replacement.windows = \"leave\""), "{}", f.fix);
    let p = plan(&spec_with(|s| s.replacement.windows = NotMigrated::Leave), &d);
    let f = p.findings.iter().find(|f| f.id == "nodes.windows").expect("named");
    assert_eq!(f.severity, Severity::Warning);
    assert!(!p.has_errors(), "{:#?}", p.findings);
}

#[test]
fn a_windows_node_group_is_never_rolled() {
    let mut d = seed();
    d.nodegroups[0].ami_type = Some("WINDOWS_CORE_2022_x86_64".into());
    let p = plan(&spec_with(|s| s.replacement.windows = NotMigrated::Leave), &d);
    assert!(p.inputs.node_groups.is_empty(), "{:?}", p.inputs.node_groups);
}

#[test]
fn fargate_security_groups_for_pods_and_overrides() {
    let mut d = seed();
    d.kube.nodes[0]
        .labels
        .insert("eks.amazonaws.com/compute-type".into(), "fargate".into());
    d.kube.nodes[1].eniconfig_annotation = Some("custom".into());
    d.kube.nodes[2].eniconfig_annotation = Some("ap-northeast-2a".into());
    d.kube
        .aws_node
        .as_mut()
        .unwrap()
        .env
        .insert("ENABLE_POD_ENI".into(), "true".into());
    let p = plan(&seed_spec(), &d);
    let got = ids(&p);
    for want in ["nodes.fargate", "nodes.pod-security-groups"] {
        assert!(got.contains(&want), "{want} missing: {got:?}");
    }
    let by_sev = |sev: Severity| {
        p.findings
            .iter()
            .find(|f| f.id == "nodes.eniconfig-override" && f.severity == sev)
            .map(|f| f.reason.clone())
            .unwrap_or_default()
    };
    assert!(by_sev(Severity::Error).contains("=custom)"), "{:#?}", p.findings);
    assert!(
        by_sev(Severity::Warning).contains("=ap-northeast-2a)"),
        "{:#?}",
        p.findings
    );
}

#[test]
fn self_managed_nodes_podnet_cannot_replace_are_refused_unless_the_plan_leaves_them() {
    let mut d = seed();
    d.kube.nodes[0].nodegroup = None;
    d.kube.nodes[0].provider_id = Some("aws:///ap-northeast-2a/i-0abc".into());
    d.kube.nodes[0]
        .labels
        .insert("alpha.eksctl.io/nodegroup-name".into(), "legacy".into());
    // Replaced by default, but its instance is in no Auto Scaling group.
    let p = plan(&seed_spec(), &d);
    let f = p
        .findings
        .iter()
        .find(|f| f.id == "self-managed.no-group")
        .expect("refused");
    assert_eq!(f.severity, Severity::Error);
    assert!(f.reason.contains("ng-a"), "{}", f.reason);
    assert!(f.fix.contains("replacement.self_managed = \"leave\""), "{}", f.fix);
    let p = plan(
        &spec_with(|s| s.replacement.self_managed = SelfManagedPolicy::Leave),
        &d,
    );
    assert!(!p.has_errors(), "{:#?}", p.findings);
    assert!(p.inputs.expect.leave_self_managed);
    // Fargate nodes are not self-managed: they are not on the VPC CNI.
    let mut d = seed();
    d.kube.nodes[0].nodegroup = None;
    d.kube.nodes[0]
        .labels
        .insert("eks.amazonaws.com/compute-type".into(), "fargate".into());
    assert!(
        !plan(&seed_spec(), &d)
            .findings
            .iter()
            .any(|f| f.id.starts_with("self-managed.") || f.id == "nodes.self-managed")
    );
}
