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

/// The seed (with room) plus a Windows managed node group of one t3.large.
fn with_windows() -> podnet_sandbox::Scenario {
    let mut s = seed_with_room();
    s.node_groups.push(podnet_sandbox::scenario::NodeGroupSpec {
        name: "podnet-demo-windows".into(),
        instance_type: "t3.large".into(),
        size: 1,
        min_size: Some(1),
        max_size: Some(2),
        zones: Some(vec!["ap-northeast-2a".into()]),
        launch_template: true,
        ami_type: "WINDOWS_CORE_2022_x86_64".into(),
        user_data: None,
    });
    s
}

fn windows_nodes(sb: &podnet_sandbox::Sandbox) -> Vec<Value> {
    kubectl_json(sb, &["get", "nodes", "-l", "kubernetes.io/os=windows"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn windows_nodes_stop_the_plan_before_any_change_unless_the_plan_leaves_them() {
    let sb = start(with_windows());
    let dir = tempfile::tempdir().expect("tempdir");
    let before = windows_nodes(&sb);
    assert_eq!(before.len(), 1, "the scenario's Windows node");
    let windows_node = before[0]["metadata"]["name"].as_str().unwrap_or("?").to_string();
    assert_eq!(before[0]["spec"]["taints"][0]["key"], "os", "{:#}", before[0]);
    let on_it = kubectl_json(
        &sb,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector",
            &format!("spec.nodeName={windows_node}"),
        ],
    );
    assert_eq!(on_it["items"], serde_json::json!([]), "Linux pods on the Windows node");
    sb.clear_calls();

    // Refused: exit 1, the node and its group named with the fix, nothing changed.
    let plan = repo().join(SEED_PLAN);
    let o = podnet(&sb, dir.path(), &plan, &["plan"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("nodes.windows"), "{out}");
    assert!(
        out.contains(&format!("node group podnet-demo-windows ({windows_node})")),
        "{out}"
    );
    assert!(out.contains("replacement.windows = \"leave\""), "{out}");
    let o = podnet(&sb, dir.path(), &plan, &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "apply refuses too: {}", text(&o));
    assert_eq!(
        all_mutations(&sb),
        Vec::<String>::new(),
        "a refused plan changed something"
    );

    // Left: the Linux nodes migrate, the Windows node is neither changed nor replaced.
    let seed_plan = std::fs::read_to_string(&plan).expect("seed plan");
    let plan = write_plan(
        dir.path(),
        "leave.toml",
        &seed_plan.replace("[replacement]\n", "[replacement]\nwindows = \"leave\"\n"),
    );
    let (code, doc) = plan_json(&sb, dir.path(), &plan);
    assert_eq!(code, 2, "{doc:#}");
    let o = podnet(&sb, dir.path(), &plan, &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let after = windows_nodes(&sb);
    assert_eq!(after.len(), 1, "{after:#?}");
    let n = &after[0];
    assert_eq!(
        n["metadata"]["name"],
        windows_node.as_str(),
        "the Windows node was replaced"
    );
    assert!(label(n, "vpc.amazonaws.com/eniConfig").is_none(), "{n:#}");
    assert_ne!(n["spec"]["unschedulable"], true, "the Windows node was cordoned");
    let linux = kubectl_json(&sb, &["get", "nodes", "-l", "kubernetes.io/os=linux"]);
    for n in linux["items"].as_array().expect("nodes") {
        assert_eq!(
            label(n, "vpc.amazonaws.com/eniConfig"),
            label(n, "topology.kubernetes.io/zone"),
            "{}",
            n["metadata"]["name"]
        );
    }
    let o = podnet(&sb, dir.path(), &plan, &["verify"]);
    assert_eq!(o.status.code(), Some(0), "verify: {}", text(&o));
}

const BOTTLEROCKET: &str = "[settings.kubernetes]\napi-server = \"https://EXAMPLE.gr7.ap-northeast-2.eks.amazonaws.com\"\ncluster-certificate = \"LS0tLS1CRUdJTg==\"\ncluster-name = \"podnet-demo\"\n\n[settings.kubernetes.node-labels]\n\"team\" = \"batch\"\n";

const NODEADM: &str = "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"MIMEBOUNDARY\"\n\n--MIMEBOUNDARY\nContent-Transfer-Encoding: 7bit\nContent-Type: application/node.eks.aws\n\n---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    apiServerEndpoint: https://EXAMPLE.gr7.ap-northeast-2.eks.amazonaws.com\n    certificateAuthority: LS0tLS1CRUdJTg==\n    cidr: 172.20.0.0/16\n    name: podnet-demo\n  kubelet:\n    flags:\n      - --node-labels=team=web\n\n--MIMEBOUNDARY\nContent-Type: text/x-shellscript\n\n#!/bin/bash\necho custom\n\n--MIMEBOUNDARY--\n";

/// The seed (with room) plus two managed node groups on custom AMIs: a
/// Bottlerocket t3.large and an AL2023 t3.medium, whose user data set no
/// max pods (the AMI's default, blind to custom networking: 35 and 17).
fn with_custom_amis() -> podnet_sandbox::Scenario {
    let mut s = seed_with_room();
    for (name, itype, zone, user_data) in [
        ("podnet-demo-bottlerocket", "t3.large", "ap-northeast-2a", BOTTLEROCKET),
        ("podnet-demo-al2023", "t3.medium", "ap-northeast-2c", NODEADM),
    ] {
        s.node_groups.push(podnet_sandbox::scenario::NodeGroupSpec {
            name: name.into(),
            instance_type: itype.into(),
            size: 1,
            min_size: Some(1),
            max_size: Some(2),
            zones: Some(vec![zone.into()]),
            launch_template: true,
            ami_type: "CUSTOM".into(),
            user_data: Some(user_data.into()),
        });
    }
    s
}

/// Each version's user data (decoded) of a node group's launch template,
/// oldest first, read with the AWS CLI.
fn user_data_versions(sb: &podnet_sandbox::Sandbox, group: &str) -> Vec<String> {
    let ng = aws_json(
        sb,
        &[
            "eks",
            "describe-nodegroup",
            "--cluster-name",
            "podnet-demo",
            "--nodegroup-name",
            group,
        ],
    );
    let id = ng["nodegroup"]["launchTemplate"]["id"]
        .as_str()
        .expect("launch template id")
        .to_string();
    template_versions(sb, &id)
}

#[test]
fn custom_ami_node_groups_get_max_pods_in_their_user_data() {
    let sb = start(with_custom_amis());
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = repo().join(SEED_PLAN);
    let capacity = |group: &str| -> Vec<String> {
        let nodes = kubectl_json(
            &sb,
            &["get", "nodes", "-l", &format!("eks.amazonaws.com/nodegroup={group}")],
        );
        nodes["items"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| n["status"]["capacity"]["pods"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    assert_eq!(capacity("podnet-demo-bottlerocket"), ["35"], "the AMI's default before");
    assert_eq!(capacity("podnet-demo-al2023"), ["17"]);

    let (code, doc) = plan_json(&sb, dir.path(), &plan);
    assert_eq!(code, 2, "{doc:#}");
    let roll = doc["steps"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .find(|s| s["step"] == "roll-node-groups/podnet-demo-bottlerocket")
        })
        .expect("the Bottlerocket group is rolled")
        .to_string();
    assert!(roll.contains("user_data.max_pods (Bottlerocket)"), "{roll}");

    let o = podnet(&sb, dir.path(), &plan, &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Custom networking: t3.large (3 − 1) × (12 − 1) + 2 = 24, t3.medium 12.
    assert_eq!(capacity("podnet-demo-bottlerocket"), ["24"]);
    assert_eq!(capacity("podnet-demo-al2023"), ["12"]);
    for (group, want) in [
        ("podnet-demo-bottlerocket", vec!["max-pods = 24"]),
        ("podnet-demo-al2023", vec!["    config:", "      maxPods: 12"]),
    ] {
        let versions = user_data_versions(&sb, group);
        assert_eq!(versions.len(), 2, "{group}: {versions:#?}");
        let (added, removed) = line_diff(&versions[0], &versions[1]);
        assert_eq!(added, want, "{group}");
        assert!(removed.is_empty(), "{group}: {removed:?}");
    }
    let pods = kubectl_json(&sb, &["get", "pods", "-A"]);
    for p in pods["items"].as_array().expect("pods") {
        let name = format!("{}/{}", p["metadata"]["namespace"], p["metadata"]["name"]);
        assert_ne!(p["status"]["phase"], "Pending", "{name} is stuck: {}", p["status"]);
    }
    let o = podnet(&sb, dir.path(), &plan, &["verify"]);
    assert_eq!(o.status.code(), Some(0), "verify: {}", text(&o));
}
