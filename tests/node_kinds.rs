//! Clusters with more kinds of node than the seed's: several Karpenter
//! NodePools on several EC2NodeClasses (one with a static
//! `kubelet.maxPods`), each replaced within its own disruption budget; and
//! Windows nodes, which `plan` refuses before anything changes. Judged with
//! kubectl and the sandbox's call log, never through podnet's report.

mod common;

use std::collections::BTreeMap;

use common::*;
use podnet_sandbox::scenario::{KarpenterNodes, PoolSpec};
use serde_json::Value;

/// The seed (with room in its subnets) plus a NodePool `batch` on its own
/// EC2NodeClass `static` with `kubelet.maxPods = 29` — what an m5.large holds
/// without custom networking, four more than it holds with it — budget "1";
/// the seed's NodePool allows half its nodes at once.
fn two_pools() -> podnet_sandbox::Scenario {
    let mut s = seed_with_room();
    let k = s.karpenter.as_mut().expect("the seed runs Karpenter");
    k.budget = "50%".into();
    k.pools.push(PoolSpec {
        nodepool: "batch".into(),
        nodeclass: "static".into(),
        instance_types: vec!["t3.large".into(), "m5.large".into()],
        limits_cpu: "8".into(),
        limits_memory: "32Gi".into(),
        max_pods: Some(29),
        budget: "1".into(),
        nodes: ["ap-northeast-2a", "ap-northeast-2c"]
            .into_iter()
            .map(|z| KarpenterNodes {
                instance_type: "m5.large".into(),
                zone: z.into(),
                count: 1,
            })
            .collect(),
    });
    s
}

fn label<'a>(n: &'a Value, key: &str) -> Option<&'a str> {
    n["metadata"]["labels"][key].as_str()
}

/// The node names of each planned `replace-karpenter-nodes/batch-N`.
fn planned_batches(doc: &Value) -> Vec<Vec<String>> {
    doc["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| {
            s["step"]
                .as_str()
                .is_some_and(|id| id.starts_with("replace-karpenter-nodes/batch-"))
        })
        .map(|s| {
            s["changes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["resource_type"] == "karpenter_node")
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .collect()
}

#[test]
fn many_node_pools_on_many_node_classes_migrate_each_within_its_own_budget() {
    let sb = start(two_pools());
    let dir = tempfile::tempdir().expect("tempdir");
    let seed_plan = std::fs::read_to_string(repo().join(SEED_PLAN)).expect("seed plan");
    assert!(
        seed_plan.contains("batch_size = 1"),
        "the seed plan drains one node at a time"
    );
    let plan = write_plan(
        dir.path(),
        "plan.toml",
        &seed_plan.replace("batch_size = 1", "batch_size = 3"),
    );

    // Before: which pool each Karpenter node is in.
    let nodes = kubectl_json(&sb, &["get", "nodes"]);
    let pool_of: BTreeMap<String, String> = nodes["items"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| {
            Some((
                n["metadata"]["name"].as_str()?.to_string(),
                label(n, "karpenter.sh/nodepool")?.to_string(),
            ))
        })
        .collect();
    assert_eq!(pool_of.values().filter(|p| *p == "batch").count(), 2, "{pool_of:?}");

    // The plan: each batch within one NodePool and its budget (batch: "1";
    // default: 50% of 4), the static class lowered to what an m5.large
    // holds under custom networking, (3 − 1) × (10 − 1) + 2 = 20.
    let (code, doc) = plan_json(&sb, dir.path(), &plan);
    assert_eq!(code, 2, "changes pending, no error: {doc:#}");
    let batches = planned_batches(&doc);
    let shape: Vec<(String, usize)> = batches
        .iter()
        .map(|b| {
            let pools: std::collections::BTreeSet<&String> = b.iter().map(|n| &pool_of[n]).collect();
            assert_eq!(pools.len(), 1, "a batch mixes NodePools: {b:?}");
            (pools.into_iter().next().cloned().unwrap_or_default(), b.len())
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("batch".to_string(), 1),
            ("batch".to_string(), 1),
            ("default".to_string(), 2),
            ("default".to_string(), 2)
        ],
        "{batches:?}"
    );
    let classes = doc["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["step"] == "configure-karpenter"))
        .expect("configure-karpenter")["changes"]
        .to_string();
    assert!(
        classes.contains("\"static\"") && classes.contains("spec.kubelet.maxPods"),
        "{classes}"
    );

    let o = podnet(&sb, dir.path(), &plan, &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // The classes as Karpenter reads them.
    let ncs = kubectl_json(&sb, &["get", "ec2nodeclasses.karpenter.k8s.aws"]);
    let max_pods: BTreeMap<&str, &Value> = ncs["items"]
        .as_array()
        .expect("classes")
        .iter()
        .map(|c| {
            (
                c["metadata"]["name"].as_str().unwrap_or("?"),
                &c["spec"]["kubelet"]["maxPods"],
            )
        })
        .collect();
    assert_eq!(max_pods["static"], 20, "{ncs:#}");
    assert!(
        max_pods["default"].is_null(),
        "podnet gave the default class a static maxPods: {ncs:#}"
    );

    // Every node on its zone's ENIConfig with what its kind holds; no old
    // node left; no pod stuck.
    let nodes = kubectl_json(&sb, &["get", "nodes"]);
    for n in nodes["items"].as_array().expect("nodes") {
        let name = n["metadata"]["name"].as_str().unwrap_or("?");
        assert!(!pool_of.contains_key(name), "{name} was not replaced");
        assert_eq!(
            label(n, "vpc.amazonaws.com/eniConfig"),
            label(n, "topology.kubernetes.io/zone"),
            "{name}"
        );
        let want = match (
            label(n, "karpenter.sh/nodepool"),
            label(n, "node.kubernetes.io/instance-type"),
        ) {
            (Some("batch"), _) => "20",
            (_, Some("t3.medium")) => "12",
            (_, Some("t3.large")) => "24",
            other => panic!("{name}: unexpected node {other:?}"),
        };
        assert_eq!(n["status"]["capacity"]["pods"], want, "{name} capacity.pods");
    }
    let pods = kubectl_json(&sb, &["get", "pods", "-A"]);
    for p in pods["items"].as_array().expect("pods") {
        let name = format!("{}/{}", p["metadata"]["namespace"], p["metadata"]["name"]);
        assert_ne!(p["status"]["phase"], "Pending", "{name} is stuck: {}", p["status"]);
        if p["status"]["phase"] == "Running" && p["spec"]["hostNetwork"] != true {
            let ip = p["status"]["podIP"].as_str().unwrap_or("");
            assert!(ip.starts_with("100.64."), "{name} runs on {ip}");
        }
    }
    let o = podnet(&sb, dir.path(), &plan, &["verify"]);
    assert_eq!(o.status.code(), Some(0), "verify: {}", text(&o));
}
