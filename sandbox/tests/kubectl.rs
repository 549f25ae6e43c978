//! kubectl (from `$KUBECTL` or `PATH`; CI may use Debian's 1.20) against the
//! sandbox, asserting on its output: `get` with Table columns, `-o wide`,
//! `-o json`, custom resources, `apply`, `cordon`, `drain` through the
//! eviction API and PDBs, `uncordon` and `scale`.

mod common;

use common::kubectl;
use podnet_sandbox::kube::ListOptions;
use podnet_sandbox::kube::resources::POD;
use serde_json::Value;

fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn get_tables_wide_and_json() {
    let sb = common::sandbox_no_moto();
    let r = kubectl(&sb, &["get", "nodes", "-L", "topology.kubernetes.io/zone"]);
    assert!(r.ok, "{}", r.stderr);
    let t = rows(&r.stdout);
    assert_eq!(t[0], ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "ZONE"]);
    assert_eq!(t.len(), 7);
    for row in &t[1..] {
        assert!(row[0].starts_with("ip-10-255-1"), "{row:?}");
        assert_eq!(row[1], "Ready");
        assert_eq!(row[2], "<none>");
        assert!(row[4].starts_with("v1.31."));
    }
    let zones: std::collections::BTreeSet<&str> = t[1..].iter().map(|r| r[5].as_str()).collect();
    assert_eq!(
        zones.into_iter().collect::<Vec<_>>(),
        ["ap-northeast-2a", "ap-northeast-2c"]
    );

    let r = kubectl(&sb, &["get", "pods", "-A", "-o", "wide"]);
    assert!(r.ok, "{}", r.stderr);
    let t = rows(&r.stdout);
    assert_eq!(
        t[0][..8],
        ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    );
    assert_eq!(t.len(), 131);
    let example: Vec<&Vec<String>> = t.iter().filter(|r| r[1].starts_with("example-service-")).collect();
    assert_eq!(example.len(), 110);
    for r in example {
        assert_eq!(r[3], "Running");
        assert!(
            r[6].starts_with("10.255.11.") || r[6].starts_with("10.255.12."),
            "{r:?}"
        );
        assert!(r[7].starts_with("ip-10-255-1"), "{r:?}");
    }

    let r = kubectl(&sb, &["get", "pods", "-n", "kube-system", "-o", "json"]);
    assert!(r.ok, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["kind"], "List");
    assert_eq!(v["items"].as_array().unwrap().len(), 20);
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["status"]["podIP"].is_string())
    );

    let r = kubectl(&sb, &["get", "deploy,ds,pdb", "-n", "kube-system"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout.contains("deployment.apps/karpenter") && r.stdout.contains("2/2"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("daemonset.apps/aws-node"), "{}", r.stdout);

    let r = kubectl(&sb, &["get", "nodeclaims"]);
    assert!(r.ok, "{}", r.stderr);
    let t = rows(&r.stdout);
    assert_eq!(t[0], ["NAME", "TYPE", "CAPACITY", "ZONE", "NODE", "READY", "AGE"]);
    assert_eq!(t.len(), 5);
}

#[test]
fn apply_an_eniconfig() {
    let sb = common::sandbox_no_moto();
    let r = kubectl(&sb, &["get", "eniconfigs"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stderr.contains("No resources found"), "{}", r.stderr);
    let file = sb.state_dir().join("eniconfig.yaml");
    let manifest = |subnet: &str| {
        format!(
            "apiVersion: crd.k8s.amazonaws.com/v1alpha1\nkind: ENIConfig\nmetadata:\n  name: ap-northeast-2a\nspec:\n  subnet: {subnet}\n  securityGroups:\n  - {}\n",
            sb.world().security_groups["cluster"]
        )
    };
    // kubectl < 1.27 validates against /openapi/v2, which is not served
    let mut apply = vec!["apply", "-f", file.to_str().unwrap()];
    if common::kubectl_minor() < 27 {
        apply.push("--validate=false");
    }
    std::fs::write(&file, manifest("subnet-0aaaaaaaaaaaaaaaa")).unwrap();
    let r = kubectl(&sb, &apply);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("eniconfig.crd.k8s.amazonaws.com/ap-northeast-2a created"),
        "{}",
        r.stdout
    );
    let r = kubectl(&sb, &apply);
    assert!(r.stdout.contains("unchanged"), "{}", r.stdout);
    std::fs::write(&file, manifest("subnet-0bbbbbbbbbbbbbbbb")).unwrap();
    let r = kubectl(&sb, &apply);
    assert!(r.stdout.contains("configured"), "{} {}", r.stdout, r.stderr);
    let r = kubectl(&sb, &["get", "eniconfigs"]);
    let t = rows(&r.stdout);
    assert_eq!(t[0], ["NAME", "AGE"]);
    assert_eq!(t[1][0], "ap-northeast-2a");
    let r = kubectl(
        &sb,
        &["get", "eniconfig", "ap-northeast-2a", "-o", "jsonpath={.spec.subnet}"],
    );
    assert_eq!(r.stdout, "subnet-0bbbbbbbbbbbbbbbb");
}

#[test]
fn cordon_drain_uncordon() {
    let sb = common::sandbox_no_moto();
    let node = sb
        .world()
        .nodes
        .iter()
        .find(|n| n.nodeclaim.is_some() && n.instance_type == "t3.large")
        .unwrap()
        .name
        .clone();
    let before = sb.store().pods_on_node(&node).len();
    assert!(before > 20);

    let r = kubectl(&sb, &["cordon", &node]);
    assert!(r.ok && r.stdout.contains("cordoned"), "{} {}", r.stdout, r.stderr);
    let r = kubectl(&sb, &["get", "node", &node]);
    assert!(r.stdout.contains("Ready,SchedulingDisabled"), "{}", r.stdout);

    let r = kubectl(
        &sb,
        &[
            "drain",
            &node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=120s",
        ],
    );
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    // kubectl 1.20 ends with "node/X evicted", later versions with "drained"
    assert!(
        r.stdout.contains(&format!("node/{node} drained")) || r.stdout.contains(&format!("node/{node} evicted")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("evicted"), "{}", r.stdout);
    let left = sb.store().pods_on_node(&node);
    assert_eq!(left.len(), 2);
    for p in &left {
        assert_eq!(
            p.value["metadata"]["ownerReferences"][0]["kind"],
            "DaemonSet",
            "{}",
            p.name()
        );
    }
    let r = kubectl(
        &sb,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector",
            &format!("spec.nodeName={node}"),
        ],
    );
    let names: Vec<String> = rows(&r.stdout)[1..].iter().map(|r| r[1].clone()).collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("aws-node-") || n.starts_with("kube-proxy-")),
        "{names:?}"
    );

    let r = kubectl(&sb, &["uncordon", &node]);
    assert!(r.ok && r.stdout.contains("uncordoned"), "{}", r.stdout);
    let r = kubectl(&sb, &["get", "node", &node, "-o", "jsonpath={.spec.unschedulable}"]);
    assert_eq!(r.stdout, "");
}

#[test]
fn drain_waits_on_a_pdb() {
    let sb = common::sandbox_no_moto();
    let r = kubectl(
        &sb,
        &[
            "patch",
            "pdb",
            "example-service",
            "--type=merge",
            "-p",
            r#"{"spec":{"maxUnavailable":0}}"#,
        ],
    );
    assert!(r.ok, "{}", r.stderr);
    let r = kubectl(&sb, &["get", "pdb", "example-service"]);
    assert_eq!(rows(&r.stdout)[1][3], "0");
    let node = sb
        .world()
        .nodes
        .iter()
        .find(|n| n.nodeclaim.is_some())
        .unwrap()
        .name
        .clone();
    let r = kubectl(
        &sb,
        &[
            "drain",
            &node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=3s",
        ],
    );
    assert!(!r.ok);
    assert!(
        r.stderr
            .contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{}",
        r.stderr
    );
    let still = sb
        .store()
        .list(POD, Some("default"), &ListOptions::default())
        .unwrap()
        .items
        .len();
    assert_eq!(still, 110);
}

#[test]
fn scale_a_deployment() {
    let sb = common::sandbox_no_moto();
    let r = kubectl(&sb, &["scale", "deploy", "example-service", "--replicas=120"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout.contains("deployment.apps/example-service scaled"),
        "{}",
        r.stdout
    );
    let r = kubectl(
        &sb,
        &["get", "deploy", "example-service", "-o", "jsonpath={.spec.replicas}"],
    );
    assert_eq!(r.stdout, "120");
    // The controllers create, schedule and start the ten new pods (Karpenter
    // nodes have room for them): READY catches up with the new count.
    let mut ready = String::new();
    common::wait_until("example-service 120/120 ready", || {
        let r = kubectl(&sb, &["get", "deploy", "example-service"]);
        ready = rows(&r.stdout)
            .get(1)
            .and_then(|r| r.get(1))
            .cloned()
            .unwrap_or_default();
        ready == "120/120"
    });
    assert_eq!(ready, "120/120");
}
