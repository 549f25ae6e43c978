//! The eviction subresource and PodDisruptionBudgets: 201 on success, 429
//! with the apiserver's message when a PDB forbids, 500 when two PDBs select
//! the pod, the body variants clients send, dry runs, and PDB status kept
//! current as pods come and go.
//!
//! The cluster is frozen (no controllers): these tests read exact PDB
//! figures right after an eviction, before a ReplicaSet would replace the
//! pod, and place pods the kubelet model would otherwise start.

mod common;

use common::{get, http, send_json};
use podnet_sandbox::Sandbox;
use podnet_sandbox::kube::resources::{NAMESPACE, PDB, POD};
use podnet_sandbox::workloads::{Owner, Placement, pod_from_template};
use serde_json::{Value, json};

fn eviction(name: &str, api_version: Option<&str>) -> Value {
    let mut v = json!({"metadata": {"name": name, "namespace": "default"}});
    if let Some(av) = api_version {
        v["apiVersion"] = json!(av);
        v["kind"] = json!("Eviction");
    }
    v
}

fn evict(sb: &Sandbox, ns: &str, name: &str, body: &Value) -> common::Resp {
    send_json(
        sb,
        "POST",
        &format!("/api/v1/namespaces/{ns}/pods/{name}/eviction"),
        "application/json",
        body,
    )
}

fn example_pods(sb: &Sandbox) -> Vec<String> {
    get(
        sb,
        "/api/v1/namespaces/default/pods?labelSelector=app%3Dexample-service",
    )
    .json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn pdb_status(sb: &Sandbox, ns: &str, name: &str) -> Value {
    get(
        sb,
        &format!("/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{name}"),
    )
    .json()["status"]
        .clone()
}

/// Three Ready pods `app=guarded` in namespace `ev` (plus `extra` more).
fn guarded(sb: &Sandbox, phase: &str, ready: bool, name: &str) {
    let api = sb.store().dyn_api(POD);
    let t = json!({"metadata": {"labels": {"app": "guarded"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
    let owner = Owner {
        api_version: "v1".into(),
        kind: "None".into(),
        name: "none".into(),
        uid: "u".into(),
    };
    let node = &sb.world().nodes[0];
    let mut p = pod_from_template(
        &t,
        &owner,
        name,
        "ev",
        &[],
        &Placement {
            node: &node.name,
            node_ip: node.ip,
            pod_ip: Some(node.ip),
            created: "2024-01-01T00:00:00Z",
        },
    );
    p["metadata"].as_object_mut().unwrap().remove("ownerReferences");
    p["status"]["phase"] = json!(phase);
    if !ready {
        p["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
    }
    api.create(p).unwrap();
}

fn setup_guarded(sb: &Sandbox) {
    sb.store()
        .dyn_api(NAMESPACE)
        .create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ev"}}))
        .unwrap();
    for i in 0..3 {
        guarded(sb, "Running", true, &format!("g{i}"));
    }
    sb.store()
        .dyn_api(PDB)
        .create(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "guarded", "namespace": "ev"},
            "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "guarded"}}}}))
        .unwrap();
}

#[test]
fn eviction_succeeds_within_the_budget() {
    let sb = common::sandbox_frozen();
    let before = pdb_status(&sb, "default", "example-service");
    assert_eq!(before["disruptionsAllowed"], 33);
    assert_eq!(before["currentHealthy"], 110);
    assert_eq!(before["desiredHealthy"], 77);
    assert_eq!(before["expectedPods"], 110);
    let pods = example_pods(&sb);
    let r = evict(&sb, "default", &pods[0], &eviction(&pods[0], Some("policy/v1")));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
    );
    assert_eq!(
        get(&sb, &format!("/api/v1/namespaces/default/pods/{}", pods[0])).status,
        404
    );
    let after = pdb_status(&sb, "default", "example-service");
    assert_eq!(after["disruptionsAllowed"], 32);
    assert_eq!(after["currentHealthy"], 109);

    // kubectl 1.20 sends a v1beta1-shaped body; kube-rs sends no apiVersion/kind
    assert_eq!(
        evict(&sb, "default", &pods[1], &eviction(&pods[1], Some("policy/v1beta1"))).status,
        201
    );
    assert_eq!(evict(&sb, "default", &pods[2], &eviction(&pods[2], None)).status, 201);
    assert_eq!(pdb_status(&sb, "default", "example-service")["disruptionsAllowed"], 30);

    let r = evict(&sb, "default", &pods[3], &eviction("someone-else", None));
    assert_eq!(r.status, 400);
    let r = evict(&sb, "default", "missing", &eviction("missing", None));
    assert_eq!(r.status, 404);

    // a dry run changes nothing
    let r = send_json(
        &sb,
        "POST",
        &format!("/api/v1/namespaces/default/pods/{}/eviction?dryRun=All", pods[3]),
        "application/json",
        &eviction(&pods[3], Some("policy/v1")),
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        get(&sb, &format!("/api/v1/namespaces/default/pods/{}", pods[3])).status,
        200
    );
    assert_eq!(pdb_status(&sb, "default", "example-service")["disruptionsAllowed"], 30);
}

#[test]
fn a_pdb_at_its_minimum_answers_429() {
    let sb = common::sandbox_frozen();
    setup_guarded(&sb);
    let st = pdb_status(&sb, "ev", "guarded");
    assert_eq!(st["disruptionsAllowed"], 0);
    assert_eq!(st["currentHealthy"], 3);
    assert_eq!(st["desiredHealthy"], 3);
    assert_eq!(st["conditions"][0]["type"], "DisruptionAllowed");
    assert_eq!(st["conditions"][0]["status"], "False");
    assert_eq!(st["conditions"][0]["reason"], "InsufficientPods");
    let r = evict(
        &sb,
        "ev",
        "g0",
        &json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "g0", "namespace": "ev"}}),
    );
    assert_eq!(r.status, 429);
    assert_eq!(
        r.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Cannot evict pod as it would violate the pod's disruption budget.",
            "reason": "TooManyRequests",
            "details": {"causes": [{"reason": "DisruptionBudget", "message": "The disruption budget guarded needs 3 healthy pods and has 3 currently"}]},
            "code": 429})
    );
    assert_eq!(get(&sb, "/api/v1/namespaces/ev/pods/g0").status, 200);

    // a Pending pod is evicted whatever the budget says
    guarded(&sb, "Pending", false, "pending");
    assert_eq!(
        evict(&sb, "ev", "pending", &json!({"metadata": {"name": "pending"}})).status,
        201
    );

    // deleting a pod directly updates the budget's status
    http(&sb, "DELETE", "/api/v1/namespaces/ev/pods/g2", &[], None);
    let st = pdb_status(&sb, "ev", "guarded");
    assert_eq!(st["currentHealthy"], 2);
    assert_eq!(st["disruptionsAllowed"], 0);

    // lowering the minimum lets one go
    send_json(
        &sb,
        "PATCH",
        "/apis/policy/v1/namespaces/ev/poddisruptionbudgets/guarded",
        "application/merge-patch+json",
        &json!({"spec": {"minAvailable": 1}}),
    );
    let st = pdb_status(&sb, "ev", "guarded");
    assert_eq!(st["disruptionsAllowed"], 1);
    assert_eq!(st["observedGeneration"], 2);
    assert_eq!(st["conditions"][0]["reason"], "SufficientPods");
    assert_eq!(evict(&sb, "ev", "g1", &json!({"metadata": {"name": "g1"}})).status, 201);
    assert_eq!(evict(&sb, "ev", "g0", &json!({"metadata": {"name": "g0"}})).status, 429);
}

#[test]
fn two_pdbs_over_one_pod_answer_500() {
    let sb = common::sandbox_frozen();
    setup_guarded(&sb);
    sb.store()
        .dyn_api(PDB)
        .create(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "guarded-too", "namespace": "ev"},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}}))
        .unwrap();
    let r = evict(
        &sb,
        "ev",
        "g0",
        &json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "g0"}}),
    );
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            "code": 500})
    );
}

#[test]
fn unready_pods_leave_the_budget_alone() {
    let sb = common::sandbox_frozen();
    setup_guarded(&sb);
    send_json(
        &sb,
        "PATCH",
        "/apis/policy/v1/namespaces/ev/poddisruptionbudgets/guarded",
        "application/merge-patch+json",
        &json!({"spec": {"minAvailable": 2}}),
    );
    guarded(&sb, "Running", false, "sick");
    assert_eq!(pdb_status(&sb, "ev", "guarded")["disruptionsAllowed"], 1);
    assert_eq!(
        evict(&sb, "ev", "sick", &json!({"metadata": {"name": "sick"}})).status,
        201
    );
    assert_eq!(pdb_status(&sb, "ev", "guarded")["disruptionsAllowed"], 1);
}
