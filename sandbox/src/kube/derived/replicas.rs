//! Replica counts of ReplicaSets, Deployments and DaemonSets derived from
//! the pods they own, as the ReplicaSet, deployment and DaemonSet
//! controllers report them (k8s.io/kubernetes `pkg/controller/replicaset`,
//! `pkg/controller/deployment/sync.go`, `pkg/controller/daemon`;
//! <https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#deployment-status>).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::pods::{controller_of, deleting, node_selected, pod_ready, terminal};
use super::status::{condition, put_nonzero, scaled, set_status};
use crate::kube::resources::{DAEMONSET, DEPLOYMENT, NODE, POD, REPLICASET};
use crate::kube::store::{Inner, Key, Stored};

fn owned_pods<'a>(inner: &'a Inner, uid: &str) -> Vec<&'a Arc<Stored>> {
    inner
        .by_owner
        .get(uid)
        .map(|deps| {
            deps.iter()
                .filter(|(rt, _)| *rt == POD)
                .filter_map(|(_, k)| inner.tables[POD].objects.get(k))
                .filter(|p| {
                    controller_of(&p.value).is_some_and(|(_, _, u)| u == uid)
                        && !terminal(&p.value)
                        && !deleting(&p.value)
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn recompute_rs(inner: &mut Inner, key: &Key) {
    let Some(rs) = inner.tables[REPLICASET].objects.get(key).cloned() else {
        return;
    };
    let pods = owned_pods(inner, rs.uid());
    let replicas = pods.len() as i64;
    let ready = pods.iter().filter(|p| pod_ready(&p.value)).count() as i64;
    let mut st = Map::new();
    st.insert("replicas".into(), json!(replicas));
    put_nonzero(&mut st, "fullyLabeledReplicas", replicas);
    put_nonzero(&mut st, "readyReplicas", ready);
    put_nonzero(&mut st, "availableReplicas", ready);
    st.insert(
        "observedGeneration".into(),
        rs.value.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
    );
    set_status(inner, REPLICASET, key, Value::Object(st));
    if let Some((kind, name, _)) = controller_of(&rs.value)
        && kind == "Deployment"
    {
        recompute_deployment(inner, &(key.0.clone(), name));
    }
}

fn revision(v: &Value) -> i64 {
    v.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn recompute_deployment(inner: &mut Inner, key: &Key) {
    let Some(dep) = inner.tables[DEPLOYMENT].objects.get(key).cloned() else {
        return;
    };
    let rss: Vec<Arc<Stored>> = inner
        .dependents(dep.uid())
        .into_iter()
        .filter(|(rt, _)| *rt == REPLICASET)
        .filter_map(|(_, k)| inner.tables[REPLICASET].objects.get(&k).cloned())
        .collect();
    let newest = rss.iter().max_by_key(|r| revision(&r.value));
    let sum = |f: &str| -> i64 {
        rss.iter()
            .map(|r| {
                r.value
                    .pointer(&format!("/status/{f}"))
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            })
            .sum()
    };
    let replicas = sum("replicas");
    let ready = sum("readyReplicas");
    let available = sum("availableReplicas");
    // Updated means "from the current template": until the deployment
    // controller has made that template's ReplicaSet, nothing is updated,
    // so a rollout is never reported done before it started.
    let hash = crate::kube::hash::template_hash(dep.value.pointer("/spec/template").unwrap_or(&Value::Null));
    let updated = rss
        .iter()
        .filter(|r| {
            r.value
                .pointer("/metadata/labels/pod-template-hash")
                .and_then(Value::as_str)
                == Some(hash.as_str())
        })
        .filter_map(|r| r.value.pointer("/status/replicas").and_then(Value::as_i64))
        .sum::<i64>();
    let spec_replicas = dep.value.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let max_unavailable = dep
        .value
        .pointer("/spec/strategy/rollingUpdate/maxUnavailable")
        .map(|v| scaled(v, spec_replicas, false))
        .unwrap_or_else(|| scaled(&json!("25%"), spec_replicas, false));
    let old = dep.value.get("status");
    let min_ok = available >= spec_replicas - max_unavailable;
    let mut st = Map::new();
    st.insert(
        "observedGeneration".into(),
        dep.value.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
    );
    put_nonzero(&mut st, "replicas", replicas);
    put_nonzero(&mut st, "updatedReplicas", updated);
    put_nonzero(&mut st, "readyReplicas", ready);
    put_nonzero(&mut st, "availableReplicas", available);
    put_nonzero(&mut st, "unavailableReplicas", (spec_replicas - available).max(0));
    let rs_name = newest.map(|r| r.name().to_string()).unwrap_or_default();
    let mut available_c = condition(
        old,
        "Available",
        min_ok,
        if min_ok {
            "MinimumReplicasAvailable"
        } else {
            "MinimumReplicasUnavailable"
        },
        if min_ok {
            "Deployment has minimum availability."
        } else {
            "Deployment does not have minimum availability."
        },
        None,
    );
    available_c["lastUpdateTime"] = available_c["lastTransitionTime"].clone();
    let mut progressing = condition(
        old,
        "Progressing",
        true,
        "NewReplicaSetAvailable",
        &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
        None,
    );
    progressing["lastUpdateTime"] = progressing["lastTransitionTime"].clone();
    st.insert("conditions".into(), json!([available_c, progressing]));
    set_status(inner, DEPLOYMENT, key, Value::Object(st));
}

pub(crate) fn recompute_ds(inner: &mut Inner, key: &Key) {
    let Some(ds) = inner.tables[DAEMONSET].objects.get(key).cloned() else {
        return;
    };
    let empty = json!({});
    let pod_spec = ds.value.pointer("/spec/template/spec").unwrap_or(&empty);
    let eligible: BTreeSet<&str> = inner.tables[NODE]
        .objects
        .values()
        .filter(|n| node_selected(&n.value, pod_spec))
        .map(|n| n.name())
        .collect();
    let generation = ds
        .value
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let pods = owned_pods(inner, ds.uid());
    let mut current = 0i64;
    let mut mis = 0i64;
    let mut ready = 0i64;
    let mut updated = 0i64;
    for p in &pods {
        let node = p.value.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
        if !eligible.contains(node) {
            mis += 1;
            continue;
        }
        current += 1;
        if pod_ready(&p.value) {
            ready += 1;
        }
        let gen_label = p
            .value
            .pointer("/metadata/labels/pod-template-generation")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<i64>().ok());
        if gen_label == Some(generation) {
            updated += 1;
        }
    }
    let desired = eligible.len() as i64;
    let mut st = Map::new();
    st.insert("currentNumberScheduled".into(), json!(current));
    st.insert("numberMisscheduled".into(), json!(mis));
    st.insert("desiredNumberScheduled".into(), json!(desired));
    st.insert("numberReady".into(), json!(ready));
    st.insert("observedGeneration".into(), json!(generation));
    put_nonzero(&mut st, "updatedNumberScheduled", updated);
    put_nonzero(&mut st, "numberAvailable", ready);
    put_nonzero(&mut st, "numberUnavailable", (desired - ready).max(0));
    set_status(inner, DAEMONSET, key, Value::Object(st));
}
