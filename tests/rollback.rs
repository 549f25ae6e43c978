//! `podnet rollback` by the podnet binary against a sandbox: the seed
//! migration applied, then undone. The end state is read with kubectl, the
//! AWS CLI and moto's own client, never through podnet, and compared with
//! the cluster as it was before the apply.

mod common;

use std::path::Path;

use std::collections::BTreeSet;

use common::*;
use podnet_sandbox::{Sandbox, Service};
use serde_json::Value;

/// The vpc-cni addon's configuration, key by key (none: `{}`).
fn addon_config(sb: &Sandbox) -> Value {
    let a = aws_json(
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
    match a["addon"]["configurationValues"].as_str().map(str::trim) {
        None | Some("") => serde_json::json!({}),
        Some(text) => serde_json::from_str(text)
            .or_else(|_| serde_saphyr::from_str(text))
            .expect("configuration values are JSON or YAML"),
    }
}

/// The configuration values exactly as EKS holds them.
fn addon_config_text(sb: &Sandbox) -> Option<String> {
    let a = aws_json(
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
    a["addon"]["configurationValues"].as_str().map(str::to_string)
}

/// The live CIDR blocks, without ones EC2 still lists as disassociated.
fn live(state: &Ec2State) -> Vec<(String, String)> {
    state
        .cidrs
        .iter()
        .filter(|(_, s)| s != "disassociated" && s != "disassociating")
        .cloned()
        .collect()
}

/// Everything the "done when" lists for a rollback, with
/// independent clients.
fn assert_rolled_back(sb: &Sandbox, before: &Ec2State, config_before: &Value) {
    let pods = kubectl_json(sb, &["get", "pods", "-A"]);
    let mut on_node_subnets = 0;
    for p in pods["items"].as_array().expect("pods") {
        let name = format!("{}/{}", p["metadata"]["namespace"], p["metadata"]["name"]);
        let phase = p["status"]["phase"].as_str().unwrap_or("");
        assert_ne!(phase, "Pending", "{name} is still pending: {}", p["status"]);
        if phase != "Running" {
            continue;
        }
        let ip = p["status"]["podIP"].as_str().unwrap_or("");
        assert!(ip.starts_with("10.255."), "{name} runs on {ip}");
        on_node_subnets += 1;
    }
    assert!(on_node_subnets >= 100, "only {on_node_subnets} pods running");

    let nodes = kubectl_json(sb, &["get", "nodes"]);
    for n in nodes["items"].as_array().expect("nodes") {
        let name = n["metadata"]["name"].as_str().unwrap_or("?");
        let labels = &n["metadata"]["labels"];
        assert!(
            labels.get("vpc.amazonaws.com/eniConfig").is_none(),
            "{name} still carries an eniConfig label: {labels}"
        );
        assert_ne!(n["spec"]["unschedulable"], true, "{name} left cordoned");
        assert!(
            n["metadata"]["annotations"].get("podnet.io/replace").is_none(),
            "{name} was marked for replacement and is still there"
        );
    }

    assert_eq!(
        &addon_config(sb),
        config_before,
        "the vpc-cni configuration, key by key"
    );
    let eniconfigs = kubectl_json(sb, &["get", "eniconfigs.crd.k8s.amazonaws.com"]);
    assert_eq!(eniconfigs["items"], serde_json::json!([]), "no ENIConfig is left");

    let after = ec2_state(sb);
    assert_eq!(live(&after), live(before), "only the VPC's own CIDR blocks");
    assert_eq!(after.subnets, before.subnets, "the subnets as before");
    assert_eq!(after.sg_rules, before.sg_rules, "the security group rules as before");
    let enis = aws_json(
        sb,
        &[
            "ec2",
            "describe-network-interfaces",
            "--filters",
            "Name=addresses.private-ip-address,Values=100.64.*",
        ],
    );
    assert_eq!(enis["NetworkInterfaces"], serde_json::json!([]), "no ENI in 100.64");
}

/// The IAM actions `podnet iam-policy --for <command>` allows.
fn policy_actions(sb: &Sandbox, state: &Path, plan: &Path, command: &str) -> BTreeSet<String> {
    let o = podnet(sb, state, plan, &["iam-policy", "--for", command, "--output", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).expect("the policy is JSON");
    doc["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

/// Every EC2 and EKS call the sandbox saw, as IAM actions.
fn called_actions(sb: &Sandbox) -> BTreeSet<String> {
    sb.calls()
        .into_iter()
        .filter_map(|c| match c.service {
            Service::Ec2 => Some(format!("ec2:{}", c.action)),
            Service::Eks => Some(format!("eks:{}", c.action)),
            _ => None,
        })
        .collect()
}

fn apply(sb: &Sandbox, state: &Path, plan: &Path) {
    let o = podnet(sb, state, plan, &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// Run under exactly the IAM policies `podnet iam-policy` prints: the
/// sandbox evaluates every EC2 and EKS call against the apply's policy,
/// then the rollback's.
#[test]
fn rollback_returns_the_seed_cluster_to_its_node_subnets() {
    let sb = start(seed_with_room());
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = repo().join(SEED_PLAN);
    let before = ec2_state(&sb);
    let config_before = addon_config(&sb);
    enforce_printed_policy(&sb, dir.path(), &plan, "apply");
    sb.clear_calls();
    apply(&sb, dir.path(), &plan);
    assert_eq!(
        denied_calls(&sb),
        Vec::<String>::new(),
        "the apply's policy allowed it all"
    );
    assert_ne!(addon_config(&sb), config_before, "the apply changed the vpc-cni");
    // Every call the apply made is in the policy `iam-policy --for apply` prints.
    let allowed = policy_actions(&sb, dir.path(), &plan, "apply");
    let called = called_actions(&sb);
    assert_eq!(
        called.difference(&allowed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "apply called outside its policy"
    );
    enforce_printed_policy(&sb, dir.path(), &plan, "rollback");
    sb.clear_calls();

    let o = podnet(&sb, dir.path(), &plan, &["plan", "--rollback"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // Settings first, stopped there: aws-node restarted with custom
    // networking off took the eniConfig label off every node (ipamd's
    // nodeInit), the nodes still run their pods on 100.64 addresses, and
    // podnet's mark says which nodes to replace.
    let o = podnet(
        &sb,
        dir.path(),
        &plan,
        &["rollback", "--auto-approve", "--stop-after", "restore-karpenter"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let nodes = kubectl_json(&sb, &["get", "nodes"]);
    for n in nodes["items"].as_array().expect("nodes") {
        let meta = &n["metadata"];
        assert!(meta["labels"].get("vpc.amazonaws.com/eniConfig").is_none(), "{meta}");
        assert_eq!(
            meta["annotations"]["podnet.io/replace"], "off-custom-networking",
            "{meta}"
        );
    }
    let pods = kubectl_json(&sb, &["get", "pods", "-A"]);
    assert!(
        pods["items"]
            .as_array()
            .expect("pods")
            .iter()
            .any(|p| p["status"]["podIP"]
                .as_str()
                .is_some_and(|ip| ip.starts_with("100.64."))),
        "pods keep their addresses until their node is replaced"
    );
    let o = podnet(&sb, dir.path(), &plan, &["rollback", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("Rollback complete"), "{}", text(&o));
    assert_eq!(
        denied_calls(&sb),
        Vec::<String>::new(),
        "the rollback's policy allowed it all"
    );
    // The end state is read with the admin's full rights again.
    sb.clear_iam_policies();
    assert_rolled_back(&sb, &before, &config_before);
    let allowed = policy_actions(&sb, dir.path(), &plan, "rollback");
    let called = called_actions(&sb);
    assert_eq!(
        called.difference(&allowed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "rollback called outside its policy"
    );
    for a in [
        "ec2:DeleteSubnet",
        "ec2:RevokeSecurityGroupIngress",
        "ec2:DisassociateVpcCidrBlock",
        "eks:UpdateAddon",
    ] {
        assert!(called.contains(a), "the rollback called {a}: {called:?}");
    }

    // The apply it undid cannot be resumed.
    let o = podnet(&sb, dir.path(), &plan, &["resume", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("was rolled back"), "{}", text(&o));

    // Again: nothing left to undo, so no call that changes anything.
    sb.clear_calls();
    let o = podnet(&sb, dir.path(), &plan, &["rollback", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("Nothing to roll back"), "{}", text(&o));
    assert_eq!(
        all_mutations(&sb),
        Vec::<String>::new(),
        "a second rollback changes nothing"
    );
}

/// Kills `podnet rollback` at `points` in turn (one per run), continues it
/// after each (with `rollback`, or `resume`, alternately), and ends with a
/// run that is not killed.
#[test]
fn rollback_killed_at_a_spread_of_journal_points_and_continued() {
    let points = [
        "restore-vpc-cni:progress:update-id",
        "replace-karpenter-nodes:progress:replaced",
        "remove-eniconfigs:succeeded",
        "delete-pod-subnet-enis:started",
        "disassociate-cidr:started",
    ];
    let sb = start(seed_with_room());
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = repo().join(SEED_PLAN);
    let before = ec2_state(&sb);
    let config_before = addon_config(&sb);
    apply(&sb, dir.path(), &plan);
    for (i, point) in points.iter().enumerate() {
        let cmd: &[&str] = if i % 2 == 0 {
            &["rollback", "--auto-approve"]
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
        // Status shows the rollback in flight and how to continue it.
        let st = podnet(&sb, dir.path(), &plan, &["status"]);
        let st_out = String::from_utf8_lossy(&st.stdout).to_string();
        assert!(
            st_out.contains("Rollback: ") && st_out.contains("Continue the rollback with `podnet rollback`"),
            "{st_out}"
        );
        // An apply is refused while the rollback is unfinished.
        let a = podnet(&sb, dir.path(), &plan, &["apply", "--auto-approve"]);
        assert_eq!(a.status.code(), Some(1), "{}", text(&a));
        assert!(
            text(&a).contains("rollback of this cluster is unfinished"),
            "{}",
            text(&a)
        );
    }
    let o = podnet(&sb, dir.path(), &plan, &["rollback", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("Continuing the rollback"), "{}", text(&o));
    assert_rolled_back(&sb, &before, &config_before);
}

/// A vpc-cni configuration written in YAML, as console and `file://`
/// users write it, with keys beside `env`: the apply adds custom
/// networking and writes YAML back with every user key; the rollback
/// gives back the very text it found.
#[test]
fn a_yaml_configuration_stays_yaml_through_apply_and_rollback() {
    let yaml = "env:\n  WARM_IP_TARGET: \"2\"\n  MINIMUM_IP_TARGET: \"4\"\ninit:\n  env:\n    DISABLE_TCP_EARLY_DEMUX: \"true\"\n";
    let mut scenario = seed_with_room();
    scenario.vpc_cni.configuration_values = Some(yaml.to_string());
    let sb = start(scenario);
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = repo().join(SEED_PLAN);
    assert_eq!(addon_config_text(&sb).as_deref(), Some(yaml));
    let o = podnet(&sb, dir.path(), &plan, &["plan"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    apply(&sb, dir.path(), &plan);
    let after = addon_config_text(&sb).expect("configuration values");
    assert!(
        serde_json::from_str::<Value>(&after).is_err(),
        "still YAML, not JSON: {after}"
    );
    let v = addon_config(&sb);
    assert_eq!(v["env"]["AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG"], "true", "{after}");
    assert_eq!(v["env"]["WARM_IP_TARGET"], "2", "{after}");
    assert_eq!(v["init"]["env"]["DISABLE_TCP_EARLY_DEMUX"], "true", "{after}");
    let o = podnet(&sb, dir.path(), &plan, &["rollback", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(addon_config_text(&sb).as_deref(), Some(yaml), "the text as it was");
}
