//! The scenario's workloads: Deployments with the ReplicaSet their
//! controller made (named by `pod-template-hash`,
//! <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#pod-template-hash-label>),
//! PodDisruptionBudgets, and the cpu/memory requests the scheduler sums.

use serde_json::{Value, json};

use crate::scenario::{cpu_millis, mem_mib};

/// A Deployment with its pod template and the PDB-friendly labels.
#[allow(clippy::too_many_arguments)]
pub fn deployment(
    name: &str,
    ns: &str,
    replicas: u32,
    labels: Value,
    selector: Value,
    pod_spec: Value,
    annotations: Value,
    created: &str,
) -> Value {
    let mut ann = annotations;
    ann["deployment.kubernetes.io/revision"] = json!("1");
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": ann, "creationTimestamp": created},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "template": {"metadata": {"labels": selector}, "spec": pod_spec}
        }
    })
}

/// The ReplicaSet a Deployment's controller made for its template.
pub fn replicaset(dep: &Value, hash: &str, created: &str) -> Value {
    let s = |p: &str| dep.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let name = s("/metadata/name");
    let mut template = dep.pointer("/spec/template").cloned().unwrap_or(json!({}));
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let mut selector = dep.pointer("/spec/selector/matchLabels").cloned().unwrap_or(json!({}));
    selector["pod-template-hash"] = json!(hash);
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{name}-{hash}"),
            "namespace": s("/metadata/namespace"),
            "labels": selector.clone(),
            "annotations": {
                "deployment.kubernetes.io/desired-replicas": dep.pointer("/spec/replicas").cloned().unwrap_or(json!(1)).to_string(),
                "deployment.kubernetes.io/max-replicas": "0",
                "deployment.kubernetes.io/revision": "1",
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                "uid": s("/metadata/uid"), "controller": true, "blockOwnerDeletion": true}],
            "creationTimestamp": created,
        },
        "spec": {
            "replicas": dep.pointer("/spec/replicas").cloned().unwrap_or(json!(1)),
            "selector": {"matchLabels": selector},
            "template": template,
        }
    })
}

pub fn pdb(
    name: &str,
    ns: &str,
    selector: Value,
    min_available: Option<Value>,
    max_unavailable: Option<Value>,
    labels: Value,
    created: &str,
) -> Value {
    let mut spec = json!({"selector": {"matchLabels": selector}});
    if let Some(m) = min_available {
        spec["minAvailable"] = m;
    }
    if let Some(m) = max_unavailable {
        spec["maxUnavailable"] = m;
    }
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "creationTimestamp": created},
        "spec": spec,
    })
}

pub fn workload_pod_spec(image: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "containers": [{
            "name": "app",
            "image": image,
            "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
            "resources": {"requests": {"cpu": cpu, "memory": memory}},
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
        }],
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app": image.rsplit('/').next().unwrap_or("app").split(':').next().unwrap_or("app")}}}],
    })
}

/// cpu/memory requests of a pod spec (sum over containers).
pub fn requests(pod_spec: &Value) -> (u32, u64) {
    let mut cpu = 0;
    let mut mem = 0;
    for c in pod_spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(q) = c.pointer("/resources/requests/cpu").and_then(Value::as_str) {
            cpu += cpu_millis(q).unwrap_or(0);
        }
        if let Some(q) = c.pointer("/resources/requests/memory").and_then(Value::as_str) {
            mem += mem_mib(q).unwrap_or(0);
        }
    }
    (cpu, mem)
}
