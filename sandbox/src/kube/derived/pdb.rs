//! PodDisruptionBudget status: the disruption controller's arithmetic
//! (k8s.io/kubernetes `pkg/controller/disruption/disruption.go`) for
//! expectedPods, currentHealthy, desiredHealthy and disruptionsAllowed,
//! with percentages scaled by the pods' controllers' replica counts
//! (<https://kubernetes.io/docs/tasks/run-application/configure-pdb/>).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::pods::{controller_of, deleting, labels_of, pod_ready};
use super::status::{condition, scaled, set_status};
use crate::kube::resources::{DAEMONSET, DEPLOYMENT, PDB, POD, REPLICASET};
use crate::kube::selectors::LabelSelector;
use crate::kube::store::{Inner, Key, Stored, meta_str};

/// A PDB's selector; a missing or empty one matches nothing (as eviction
/// treats it).
pub(crate) fn pdb_selector(pdb: &Value) -> Option<LabelSelector> {
    let sel = LabelSelector::from_json(pdb.pointer("/spec/selector")?).ok()?;
    (!sel.is_empty()).then_some(sel)
}

/// The replica count a pod's controller wants (for percentage budgets).
fn expected_scale(inner: &Inner, ns: &str, pods: &[&Arc<Stored>]) -> i64 {
    let mut seen = BTreeSet::new();
    let mut total = 0i64;
    for p in pods {
        match controller_of(&p.value) {
            Some((kind, name, uid)) => {
                if !seen.insert(uid) {
                    continue;
                }
                match kind.as_str() {
                    "ReplicaSet" => {
                        let Some(rs) = inner.get(REPLICASET, ns, &name) else {
                            continue;
                        };
                        let dep = controller_of(&rs.value)
                            .filter(|(k, _, _)| k == "Deployment")
                            .and_then(|(_, dn, _)| inner.get(DEPLOYMENT, ns, &dn));
                        let src = dep.as_ref().unwrap_or(&rs);
                        total += src.value.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
                    }
                    "DaemonSet" => {
                        total += inner
                            .get(DAEMONSET, ns, &name)
                            .and_then(|d| {
                                d.value
                                    .pointer("/status/desiredNumberScheduled")
                                    .and_then(Value::as_i64)
                            })
                            .unwrap_or(0);
                    }
                    _ => total += 1,
                }
            }
            None => total += 1,
        }
    }
    total
}

/// The disruption controller's computation for one PDB.
fn pdb_status(inner: &Inner, pdb: &Value) -> Value {
    let ns = meta_str(pdb, "namespace");
    let old = pdb.get("status");
    let pods: Vec<&Arc<Stored>> = match pdb_selector(pdb) {
        Some(sel) => inner
            .iter_ns(POD, Some(ns))
            .filter(|p| sel.matches(labels_of(&p.value)))
            .collect(),
        None => Vec::new(),
    };
    let disrupted: Map<String, Value> = old
        .and_then(|s| s.get("disruptedPods"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(name, _)| pods.iter().any(|p| p.name() == name.as_str() && !deleting(&p.value)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let healthy = pods
        .iter()
        .filter(|p| pod_ready(&p.value) && !deleting(&p.value) && !disrupted.contains_key(p.name()))
        .count() as i64;
    let (expected, desired) = match (pdb.pointer("/spec/minAvailable"), pdb.pointer("/spec/maxUnavailable")) {
        (Some(Value::Number(n)), _) => (pods.len() as i64, n.as_i64().unwrap_or(0)),
        (Some(pct @ Value::String(_)), _) => {
            let e = expected_scale(inner, ns, &pods);
            (e, scaled(pct, e, true))
        }
        (None, Some(mu)) => {
            let e = expected_scale(inner, ns, &pods);
            (e, (e - scaled(mu, e, true)).max(0))
        }
        _ => (pods.len() as i64, 1),
    };
    let allowed = (healthy - desired).max(0);
    let generation = pdb.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
    let mut status = json!({
        "observedGeneration": generation,
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [condition(
            old,
            "DisruptionAllowed",
            allowed > 0,
            if allowed > 0 { "SufficientPods" } else { "InsufficientPods" },
            "",
            Some(("observedGeneration", json!(generation))),
        )],
    });
    if !disrupted.is_empty() {
        status["disruptedPods"] = Value::Object(disrupted);
    }
    status
}

pub(crate) fn recompute_pdb(inner: &mut Inner, key: &Key) {
    let Some(pdb) = inner.tables[PDB].objects.get(key).cloned() else {
        return;
    };
    let status = pdb_status(inner, &pdb.value);
    set_status(inner, PDB, key, status);
}

pub(crate) fn recompute_pdbs_in(inner: &mut Inner, ns: &str, pods: &[&Value]) {
    let keys: Vec<Key> = inner
        .iter_ns(PDB, Some(ns))
        .filter(|pdb| {
            pods.is_empty() || pdb_selector(&pdb.value).is_some_and(|s| pods.iter().any(|p| s.matches(labels_of(p))))
        })
        .map(|p| (ns.to_string(), p.name().to_string()))
        .collect();
    for k in keys {
        recompute_pdb(inner, &k);
    }
}
