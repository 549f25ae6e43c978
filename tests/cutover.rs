//! The whole seed migration by the podnet binary against a sandbox that
//! behaves (scheduling, VPC CNI IP assignment, Karpenter, node group
//! rollouts): uninterrupted, and killed with SIGKILL at journal points then
//! resumed. The end state is read with kubectl, the AWS CLI and moto's own
//! client, never through podnet.

mod common;

use std::collections::BTreeMap;

use common::*;
use podnet_sandbox::{Sandbox, Scenario, Service};
use serde_json::Value;

fn seed() -> (Sandbox, tempfile::TempDir) {
    (start(Scenario::seed()), tempfile::tempdir().expect("tempdir"))
}

fn env_of(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .filter_map(|e| Some((e["name"].as_str()?.to_string(), e["value"].as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything the "done when" lists, checked with independent
/// clients, plus: nothing created twice, one addon update, no node left
/// cordoned, `podnet verify` passes and `podnet plan` has nothing left to do.
fn assert_migrated(sb: &Sandbox, state: &std::path::Path, before: &Ec2State) {
    let plan = repo().join(SEED_PLAN);

    // Pods: every running pod that is not hostNetwork has a 100.64 address,
    // and none is left pending.
    let pods = kubectl_json(sb, &["get", "pods", "-A"]);
    let pods = pods["items"].as_array().expect("pods");
    let mut on_pod_cidr = 0;
    for p in pods {
        let name = format!("{}/{}", p["metadata"]["namespace"], p["metadata"]["name"]);
        let phase = p["status"]["phase"].as_str().unwrap_or("");
        assert_ne!(phase, "Pending", "{name} is still pending: {}", p["status"]);
        if phase != "Running" || p["spec"]["hostNetwork"] == true {
            continue;
        }
        let ip = p["status"]["podIP"].as_str().unwrap_or("");
        assert!(ip.starts_with("100.64."), "{name} runs on {ip}");
        on_pod_cidr += 1;
    }
    assert!(on_pod_cidr >= 100, "only {on_pod_cidr} pods on the pod CIDR");

    // Nodes: on their zone's ENIConfig, schedulable, with custom-networking max pods.
    let nodes = kubectl_json(sb, &["get", "nodes"]);
    let nodes = nodes["items"].as_array().expect("nodes");
    assert!(nodes.len() >= 6, "{} nodes", nodes.len());
    for n in nodes {
        let name = n["metadata"]["name"].as_str().unwrap_or("?");
        let labels = &n["metadata"]["labels"];
        assert_eq!(
            labels["vpc.amazonaws.com/eniConfig"], labels["topology.kubernetes.io/zone"],
            "{name} is not on its zone's ENIConfig: {labels}"
        );
        let want = match labels["node.kubernetes.io/instance-type"].as_str() {
            Some("t3.medium") => "12",
            Some("t3.large") => "24",
            other => panic!("{name}: unexpected instance type {other:?}"),
        };
        assert_eq!(n["status"]["capacity"]["pods"], want, "{name} capacity.pods");
        assert_ne!(n["spec"]["unschedulable"], true, "{name} left cordoned");
    }

    // ENIConfigs: one per AZ, on the pod subnets moto holds.
    let ec2 = ec2_state(sb);
    let eniconfigs = kubectl_json(sb, &["get", "eniconfigs.crd.k8s.amazonaws.com"]);
    let mut got: Vec<(String, String)> = eniconfigs["items"]
        .as_array()
        .expect("eniconfigs")
        .iter()
        .map(|e| {
            (
                e["metadata"]["name"].as_str().unwrap_or("").to_string(),
                e["spec"]["subnet"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("ap-northeast-2a".to_string(), subnet(&ec2, "100.64.1.0/24").id.clone()),
            ("ap-northeast-2c".to_string(), subnet(&ec2, "100.64.2.0/24").id.clone()),
        ]
    );

    // The addon: custom networking merged into the existing configuration.
    let addon = aws_json(
        sb,
        &[
            "eks",
            "describe-addon",
            "--cluster-name",
            "podnet-demo",
            "--addon-name",
            "vpc-cni",
        ],
    );
    let values: Value = serde_json::from_str(addon["addon"]["configurationValues"].as_str().expect("values"))
        .expect("configurationValues is JSON");
    for key in [
        "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG",
        "ENI_CONFIG_LABEL_DEF",
        "WARM_IP_TARGET",
        "MINIMUM_IP_TARGET",
    ] {
        assert!(values["env"][key].is_string(), "{key} missing from {values}");
    }
    assert_eq!(values["env"]["AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG"], "true");
    assert_eq!(values["env"]["ENI_CONFIG_LABEL_DEF"], "topology.kubernetes.io/zone");

    // Karpenter: RESERVED_ENIS=1 on the controller.
    let karpenter = kubectl_json(sb, &["-n", "kube-system", "get", "deployment", "karpenter"]);
    let containers = karpenter["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert!(
        containers
            .iter()
            .any(|c| env_of(c).get("RESERVED_ENIS").map(String::as_str) == Some("1")),
        "RESERVED_ENIS=1 not set: {containers:?}"
    );

    // Nothing created twice: one association, two subnets, two rules.
    let associations: Vec<_> = ec2.cidrs.iter().filter(|(c, _)| c == "100.64.0.0/16").collect();
    assert_eq!(associations.len(), 1, "{:?}", ec2.cidrs);
    let new_subnets: Vec<&str> = ec2
        .subnets
        .iter()
        .filter(|s| !before.subnets.iter().any(|b| b.id == s.id))
        .map(|s| s.cidr.as_str())
        .collect();
    assert_eq!(new_subnets, ["100.64.1.0/24", "100.64.2.0/24"]);
    let new_rules: Vec<&String> = ec2.sg_rules.iter().filter(|r| !before.sg_rules.contains(r)).collect();
    assert_eq!(new_rules.len(), 2, "{new_rules:#?}");

    // One addon update, however often podnet was killed.
    let updates: Vec<_> = sb
        .mutating_calls(Service::Eks)
        .into_iter()
        .filter(|c| c.action == "UpdateAddon" && c.status < 300)
        .collect();
    assert_eq!(updates.len(), 1, "UpdateAddon calls: {updates:#?}");

    let o = podnet(sb, state, &plan, &["verify"]);
    assert_eq!(o.status.code(), Some(0), "verify: {}", text(&o));
    let o = podnet(sb, state, &plan, &["plan"]);
    assert_eq!(o.status.code(), Some(0), "plan after the migration: {}", text(&o));
}

#[test]
fn the_seed_migration_in_one_apply() {
    let (sb, dir) = seed();
    let before = ec2_state(&sb);
    let plan = repo().join(SEED_PLAN);
    let o = podnet(&sb, dir.path(), &plan, &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("verify"), "apply ends with verify: {out}");
    assert_migrated(&sb, dir.path(), &before);
}

/// Kills podnet at `points` in turn (one per run), resumes after each, and
/// finishes with a resume that is not killed.
fn killed_and_resumed(points: &[&str]) {
    let (sb, dir) = seed();
    let before = ec2_state(&sb);
    let plan = repo().join(SEED_PLAN);
    for (i, point) in points.iter().enumerate() {
        let cmd: &[&str] = if i == 0 {
            &["apply", "--auto-approve"]
        } else {
            &["resume", "--auto-approve"]
        };
        let o = podnet_with_env(&sb, dir.path(), &plan, cmd, &[("PODNET_CRASH_AT", point)]);
        assert_eq!(
            o.status.code(),
            None,
            "podnet was to be killed at {point}: {}",
            text(&o)
        );
        assert!(
            text(&o).contains(&format!("killing this process (SIGKILL) after {point}")),
            "{}",
            text(&o)
        );
        // Killed: the lock is left behind, and status says the migration is unfinished.
        let s = podnet(&sb, dir.path(), &plan, &["status"]);
        assert!(
            String::from_utf8_lossy(&s.stdout).contains("resume"),
            "status after a kill: {}",
            text(&s)
        );
    }
    let o = podnet(&sb, dir.path(), &plan, &["resume", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_migrated(&sb, dir.path(), &before);
}

#[test]
fn killed_during_the_cidr_wait_and_after_the_subnets_then_resumed() {
    killed_and_resumed(&["associate-cidr:progress:association-id", "create-pod-subnets:succeeded"]);
}

#[test]
fn killed_during_the_addon_update_and_mid_drain_then_resumed() {
    killed_and_resumed(&[
        "enable-custom-networking:progress:update-id",
        "replace-karpenter-nodes:progress:replaced",
    ]);
}
