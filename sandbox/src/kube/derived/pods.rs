//! Pod and node predicates the derived statuses and the controllers share:
//! readiness (the `Ready` condition), phase, the controller ownerReference
//! (<https://kubernetes.io/docs/concepts/overview/working-with-objects/owners-dependents/>),
//! and whether a node satisfies a pod's `nodeSelector` and required node
//! affinity (<https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/>).

use serde_json::{Map, Value};

use crate::kube::selectors::{LabelSelector, Op, Requirement};

/// Is the pod Ready (condition `Ready=True`)?
pub fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

pub(crate) fn pod_phase(pod: &Value) -> &str {
    pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn terminal(pod: &Value) -> bool {
    matches!(pod_phase(pod), "Succeeded" | "Failed")
}

pub(crate) fn deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some()
}

/// The controller ownerReference (kind, name, uid) of an object.
pub fn controller_of(v: &Value) -> Option<(String, String, String)> {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|o| {
            let s = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            (s("kind"), s("name"), s("uid"))
        })
}

pub(crate) fn labels_of(v: &Value) -> Option<&Map<String, Value>> {
    v.pointer("/metadata/labels").and_then(Value::as_object)
}

fn node_term_matches(node_labels: Option<&Map<String, Value>>, term: &Value) -> bool {
    let exprs = term
        .get("matchExpressions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    exprs.iter().all(|e| {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("").to_string();
        let values: Vec<String> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let op = match e.get("operator").and_then(Value::as_str) {
            Some("In") => Op::In,
            Some("NotIn") => Op::NotIn,
            Some("Exists") => Op::Exists,
            Some("DoesNotExist") => Op::DoesNotExist,
            Some("Gt") => Op::GreaterThan,
            Some("Lt") => Op::LessThan,
            _ => return false,
        };
        LabelSelector {
            requirements: vec![Requirement { key, op, values }],
        }
        .matches(node_labels)
    })
}

/// Does a node satisfy a pod spec's `nodeSelector` and required node
/// affinity? (Taints are the scheduler's concern, not the DaemonSet count's:
/// DaemonSet pods tolerate what EKS's system DaemonSets tolerate.)
pub fn node_selected(node: &Value, pod_spec: &Value) -> bool {
    let labels = labels_of(node);
    if let Some(sel) = pod_spec.get("nodeSelector").and_then(Value::as_object) {
        for (k, v) in sel {
            if labels.and_then(|l| l.get(k)) != Some(v) {
                return false;
            }
        }
    }
    match pod_spec.pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms") {
        Some(Value::Array(terms)) if !terms.is_empty() => terms.iter().any(|t| node_term_matches(labels, t)),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn node_selection() {
        let node =
            json!({"metadata": {"labels": {"kubernetes.io/os": "linux", "eks.amazonaws.com/compute-type": "ec2"}}});
        let spec = json!({
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "eks.amazonaws.com/compute-type", "operator": "NotIn", "values": ["fargate", "hybrid"]}
                ]}]}}}
        });
        assert!(node_selected(&node, &spec));
        let fargate =
            json!({"metadata": {"labels": {"kubernetes.io/os": "linux", "eks.amazonaws.com/compute-type": "fargate"}}});
        assert!(!node_selected(&fargate, &spec));
        let windows = json!({"metadata": {"labels": {"kubernetes.io/os": "windows"}}});
        assert!(!node_selected(&windows, &spec));
    }
}
