//! Issue 16's cluster with every kind of node at once — a self-managed
//! AL2023 group, a self-managed AL2 group, a Bottlerocket managed group on
//! a custom AMI, two NodePools on two EC2NodeClasses (one with a static
//! maxPods) — and the vpc-cni configuration in YAML with keys beside `env`.
//! It migrates end to end, judged with kubectl, the AWS CLI and the
//! sandbox's Auto Scaling, never through podnet's report: every node
//! reports the custom-networking `capacity.pods` for its type, no pod is
//! stuck, each new launch template version's user data differs from the
//! old only in max pods, the configuration is still YAML with every key.

mod common;

use std::collections::BTreeMap;

use common::*;
use podnet_sandbox::scenario::{KarpenterNodes, NodeGroupSpec, PoolSpec, SelfManagedGroupSpec};
use serde_json::Value;

const BOTTLEROCKET: &str = "[settings.kubernetes]\napi-server = \"https://EXAMPLE.gr7.ap-northeast-2.eks.amazonaws.com\"\ncluster-certificate = \"LS0tLS1CRUdJTg==\"\ncluster-name = \"podnet-demo\"\n\n[settings.kubernetes.node-labels]\n\"team\" = \"batch\"\n";

const YAML: &str =
    "env:\n  WARM_IP_TARGET: \"2\"\n  MINIMUM_IP_TARGET: \"4\"\ninit:\n  env:\n    DISABLE_TCP_EARLY_DEMUX: \"true\"\n";

fn everything() -> podnet_sandbox::Scenario {
    let mut s = seed_with_room();
    s.vpc_cni.configuration_values = Some(YAML.into());
    for (name, family, itype, zone) in [
        ("legacy-al2023", "AL2023", "t3.medium", "ap-northeast-2a"),
        ("legacy-al2", "AL2", "m5.large", "ap-northeast-2c"),
    ] {
        s.self_managed_groups.push(SelfManagedGroupSpec {
            name: name.into(),
            instance_type: itype.into(),
            size: 1,
            min_size: Some(1),
            max_size: Some(2),
            zones: Some(vec![zone.into()]),
            ami_family: family.into(),
            user_data: None,
        });
    }
    s.node_groups.push(NodeGroupSpec {
        name: "podnet-demo-bottlerocket".into(),
        instance_type: "t3.large".into(),
        size: 1,
        min_size: Some(1),
        max_size: Some(2),
        zones: Some(vec!["ap-northeast-2a".into()]),
        launch_template: true,
        ami_type: "CUSTOM".into(),
        user_data: Some(BOTTLEROCKET.into()),
    });
    let k = s.karpenter.as_mut().expect("the seed runs Karpenter");
    k.pools.push(PoolSpec {
        nodepool: "batch".into(),
        nodeclass: "static".into(),
        instance_types: vec!["m5.large".into()],
        limits_cpu: "8".into(),
        limits_memory: "32Gi".into(),
        max_pods: Some(29),
        budget: "1".into(),
        nodes: vec![KarpenterNodes {
            instance_type: "m5.large".into(),
            zone: "ap-northeast-2c".into(),
            count: 1,
        }],
    });
    s
}

fn label<'a>(n: &'a Value, key: &str) -> Option<&'a str> {
    n["metadata"]["labels"][key].as_str()
}

#[test]
fn a_cluster_with_every_kind_of_node_migrates_end_to_end() {
    let sb = start(everything());
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = repo().join(SEED_PLAN);
    let before = kubectl_json(&sb, &["get", "nodes"]);
    let old: Vec<String> = before["items"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let groups = aws_json(&sb, &["autoscaling", "describe-auto-scaling-groups"]);
    let templates: BTreeMap<String, String> = groups["AutoScalingGroups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["AutoScalingGroupName"].as_str().unwrap_or("?").to_string(),
                g["LaunchTemplate"]["LaunchTemplateId"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(templates.len(), 2, "{groups:#}");

    let (code, doc) = plan_json(&sb, dir.path(), &plan);
    assert_eq!(code, 2, "changes pending, no error: {doc:#}");
    let steps: Vec<&str> = doc["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    for g in templates.keys() {
        assert!(
            steps.contains(&format!("roll-self-managed/{g}/launch-template").as_str()),
            "{steps:?}"
        );
    }

    let o = podnet(&sb, dir.path(), &plan, &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Every node new, on its zone's ENIConfig, with what its kind and type
    // hold under custom networking.
    let nodes = kubectl_json(&sb, &["get", "nodes"]);
    for n in nodes["items"].as_array().expect("nodes") {
        let name = n["metadata"]["name"].as_str().unwrap_or("?");
        assert!(!old.contains(&name.to_string()), "{name} was not replaced");
        assert_eq!(
            label(n, "vpc.amazonaws.com/eniConfig"),
            label(n, "topology.kubernetes.io/zone"),
            "{name}"
        );
        let want = match (
            label(n, "karpenter.sh/nodepool"),
            label(n, "node.kubernetes.io/instance-type"),
        ) {
            // The static class lowered to what an m5.large holds:
            // (3 − 1) × (10 − 1) + 2 = 20.
            (Some("batch"), _) => "20",
            (_, Some("t3.medium")) => "12",
            (_, Some("t3.large")) => "24",
            (_, Some("m5.large")) => "20",
            other => panic!("{name}: unexpected node {other:?}"),
        };
        assert_eq!(n["status"]["capacity"]["pods"], want, "{name} capacity.pods");
    }
    let pods = kubectl_json(&sb, &["get", "pods", "-A"]);
    for p in pods["items"].as_array().expect("pods") {
        let name = format!("{}/{}", p["metadata"]["namespace"], p["metadata"]["name"]);
        assert_eq!(p["status"]["phase"], "Running", "{name} is stuck: {}", p["status"]);
    }

    // Each self-managed group runs its instances from a new version whose
    // user data differs only in max pods.
    let groups = aws_json(&sb, &["autoscaling", "describe-auto-scaling-groups"]);
    for g in groups["AutoScalingGroups"].as_array().expect("groups") {
        let name = g["AutoScalingGroupName"].as_str().unwrap_or("?");
        let vs = template_versions(&sb, &templates[name]);
        assert_eq!(vs.len(), 2, "{name}: {vs:#?}");
        assert_eq!(g["LaunchTemplate"]["Version"], "2", "{name}");
        for i in g["Instances"].as_array().expect("instances") {
            assert_eq!(i["LaunchTemplate"]["Version"], "2", "{name}: {i}");
            assert_eq!(i["LifecycleState"], "InService", "{name}: {i}");
        }
        let (added, removed) = line_diff(&vs[0], &vs[1]);
        if name.contains("al2023") {
            assert!(added.iter().any(|l| l.trim() == "maxPods: 12"), "{name}: {}", vs[1]);
            assert!(
                added.iter().all(|l| l.trim() == "maxPods: 12" || l.trim() == "config:"),
                "{name}: {added:?}"
            );
            assert!(removed.is_empty(), "{name}: {removed:?}");
        } else {
            assert_eq!(added.len(), 1, "{name}: {added:?}");
            assert_eq!(removed.len(), 1, "{name}: {removed:?}");
            // AL2: bootstrap.sh told to leave max pods to the kubelet flag.
            assert!(
                added[0].contains("--max-pods=20") && added[0].contains("--use-max-pods false"),
                "{name}: {}",
                added[0]
            );
            assert_eq!(
                added[0]
                    .replace(" --max-pods=20", "")
                    .replace(" --use-max-pods false", ""),
                removed[0],
                "{name}"
            );
        }
    }

    // The add-on configuration: still YAML, every key kept.
    let addon = aws_json(
        &sb,
        &[
            "eks",
            "describe-addon",
            "--cluster-name",
            "podnet-demo",
            "--addon-name",
            "vpc-cni",
        ],
    );
    let cv = addon["addon"]["configurationValues"]
        .as_str()
        .expect("configuration values");
    assert!(serde_json::from_str::<Value>(cv).is_err(), "still YAML, not JSON: {cv}");
    for key in [
        "WARM_IP_TARGET",
        "MINIMUM_IP_TARGET",
        "DISABLE_TCP_EARLY_DEMUX",
        "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG",
    ] {
        assert!(cv.contains(key), "{key} missing: {cv}");
    }

    let o = podnet(&sb, dir.path(), &plan, &["verify"]);
    assert_eq!(o.status.code(), Some(0), "verify: {}", text(&o));
}

/// The decoded user data of every version of `group`'s launch template and
/// the group's instances as (version, lifecycle), read with the AWS CLI.
fn group_state(sb: &podnet_sandbox::Sandbox, group_part: &str) -> (Vec<String>, Vec<(String, String)>, String) {
    let groups = aws_json(sb, &["autoscaling", "describe-auto-scaling-groups"]);
    let g = groups["AutoScalingGroups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| {
            g["AutoScalingGroupName"]
                .as_str()
                .is_some_and(|n| n.contains(group_part))
        })
        .expect("the group")
        .clone();
    let lt = g["LaunchTemplate"]["LaunchTemplateId"].as_str().unwrap_or("?");
    let instances = g["Instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| {
            (
                i["LaunchTemplate"]["Version"].as_str().unwrap_or("?").to_string(),
                i["LifecycleState"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    (
        template_versions(sb, lt),
        instances,
        g["LaunchTemplate"]["Version"].as_str().unwrap_or("?").to_string(),
    )
}

fn legacy_capacity(sb: &podnet_sandbox::Sandbox) -> Vec<(String, Option<String>)> {
    let nodes = kubectl_json(sb, &["get", "nodes", "-l", "alpha.eksctl.io/nodegroup-name=legacy"]);
    nodes["items"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["status"]["capacity"]["pods"].as_str().unwrap_or("?").to_string(),
                label(n, "vpc.amazonaws.com/eniConfig").map(str::to_string),
            )
        })
        .collect()
}

/// A self-managed AL2023 group of two t3.medium, replaced one at a time
/// under exactly the policy `podnet iam-policy --for apply` prints (Auto
/// Scaling's actions and `ec2:RunInstances` on the template included). A
/// refused `TerminateInstanceInAutoScalingGroup` stops the apply in its
/// batch; resume finishes with the one launch template version the first
/// attempt made. Rollback, under its own printed policy, points the group
/// back at version 1 and replaces the nodes again.
#[test]
fn a_self_managed_group_migrates_under_podnets_policy_resumes_and_rolls_back() {
    use podnet_sandbox::{Fault, Service};
    let mut s = seed_with_room();
    s.self_managed_groups.push(SelfManagedGroupSpec {
        name: "legacy".into(),
        instance_type: "t3.medium".into(),
        size: 2,
        min_size: Some(2),
        max_size: Some(3),
        zones: None,
        ami_family: "AL2023".into(),
        user_data: None,
    });
    let sb = start(s);
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = repo().join(SEED_PLAN);
    // The AL2023 AMI's default for a t3.medium, blind to custom networking.
    assert_eq!(legacy_capacity(&sb), vec![("17".to_string(), None); 2]);
    enforce_printed_policy(&sb, dir.path(), &plan, "apply");
    sb.inject_fault(Fault::new(
        Service::Autoscaling,
        "TerminateInstanceInAutoScalingGroup",
        1,
        400,
        "ValidationError",
    ));
    let o = podnet(&sb, dir.path(), &plan, &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("TerminateInstanceInAutoScalingGroup"), "{}", text(&o));
    let o = podnet(&sb, dir.path(), &plan, &["resume", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        denied_calls(&sb),
        Vec::<String>::new(),
        "the printed policy lacks an action"
    );
    let (vs, instances, version) = group_state(&sb, "legacy");
    assert_eq!(vs.len(), 2, "one new version, however many attempts: {vs:#?}");
    assert_eq!(version, "2");
    assert_eq!(
        instances,
        vec![("2".to_string(), "InService".to_string()); 2],
        "every instance from the new version"
    );
    // (3 − 1) × (6 − 1) + 2 = 12, on the zone's ENIConfig.
    for (pods, eniconfig) in legacy_capacity(&sb) {
        assert_eq!(pods, "12");
        assert!(eniconfig.is_some());
    }
    let o = podnet(&sb, dir.path(), &plan, &["verify"]);
    assert_eq!(o.status.code(), Some(0), "verify: {}", text(&o));

    enforce_printed_policy(&sb, dir.path(), &plan, "rollback");
    let o = podnet(&sb, dir.path(), &plan, &["rollback", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        denied_calls(&sb),
        Vec::<String>::new(),
        "the rollback policy lacks an action"
    );
    let (vs, instances, version) = group_state(&sb, "legacy");
    assert_eq!(
        (vs.len(), version.as_str()),
        (2, "1"),
        "back on the version the apply started from"
    );
    assert_eq!(instances, vec![("1".to_string(), "InService".to_string()); 2]);
    assert_eq!(legacy_capacity(&sb), vec![("17".to_string(), None); 2]);
}

/// The seed (with room) and one self-managed AL2023 group of two t3.medium.
fn legacy_only() -> podnet_sandbox::Scenario {
    let mut s = seed_with_room();
    s.self_managed_groups.push(SelfManagedGroupSpec {
        name: "legacy".into(),
        instance_type: "t3.medium".into(),
        size: 2,
        min_size: Some(2),
        max_size: Some(3),
        zones: None,
        ami_family: "AL2023".into(),
        user_data: None,
    });
    s
}

/// The group as a migration leaves it: one new launch template version,
/// the group on it, every instance launched from it, every node with the
/// custom-networking max pods on its ENIConfig.
fn assert_legacy_migrated(sb: &podnet_sandbox::Sandbox, what: &str) {
    let (vs, instances, version) = group_state(sb, "legacy");
    assert_eq!(vs.len(), 2, "{what}: one new version, however many attempts: {vs:#?}");
    assert_eq!(version, "2", "{what}");
    assert_eq!(instances, vec![("2".to_string(), "InService".to_string()); 2], "{what}");
    for (pods, eniconfig) in legacy_capacity(sb) {
        assert_eq!(pods, "12", "{what}");
        assert!(eniconfig.is_some(), "{what}");
    }
}

/// Killed (`PODNET_CRASH_AT`, SIGKILL) at each checkpoint of the group's
/// launch template unit and first batch — between a request token and the
/// version it made, after the version before the group is pointed at it,
/// after the batch's snapshot, after a termination — then resumed: the end
/// state is the clean run's, with no second launch template version.
#[test]
fn killed_at_each_self_managed_checkpoint_then_resumed() {
    let points: Vec<String> = {
        let sb = start(legacy_only());
        let dir = tempfile::tempdir().expect("tempdir");
        let o = podnet(&sb, dir.path(), &repo().join(SEED_PLAN), &["apply", "--auto-approve"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_legacy_migrated(&sb, "a clean run");
        let records = podnet::engine::journal::read(&dir.path().join("journal.jsonl")).expect("the journal");
        podnet::engine::crash::points_of(&records)
            .into_iter()
            .filter(|p| p.starts_with("roll-self-managed/") && p.contains(":progress:"))
            .filter(|p| p.contains("/launch-template:") || p.contains("/batch-1:"))
            // A NodePool limit raise depends on timing; the rest do not.
            .filter(|p| !p.contains("raised"))
            .collect()
    };
    assert!(points.len() >= 4, "{points:?}");
    for point in &points {
        eprintln!("self-managed crash: killing at {point}");
        let sb = start(legacy_only());
        let dir = tempfile::tempdir().expect("tempdir");
        let plan = repo().join(SEED_PLAN);
        let o = podnet_with_env(
            &sb,
            dir.path(),
            &plan,
            &["apply", "--auto-approve"],
            &[("PODNET_CRASH_AT", point)],
        );
        assert_eq!(o.status.code(), None, "not killed at {point}: {}", text(&o));
        let o = podnet(&sb, dir.path(), &plan, &["resume", "--auto-approve"]);
        assert_eq!(o.status.code(), Some(0), "after {point}: {}", text(&o));
        assert_legacy_migrated(&sb, point);
    }
}
