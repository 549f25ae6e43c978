//! Status that the real cluster's controllers derive from pods, kept current
//! synchronously inside each write: PodDisruptionBudget status (the
//! disruption controller's arithmetic), ReplicaSet, Deployment and DaemonSet
//! replica counts; and the eviction subresource, which checks and decrements
//! a PDB the way the apiserver does.
//!
//! Pod creation and deletion by controllers (ReplicaSet recreation, the
//! DaemonSet controller) are the next sandbox issue's business; this module
//! only derives numbers from whatever pods exist, so those controllers need
//! not maintain status themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::ops::{DeleteOptions, delete_locked, now_rfc3339};
use super::resources::{self, DAEMONSET, DEPLOYMENT, NODE, PDB, POD, REPLICASET};
use super::selectors::{LabelSelector, Op, Requirement};
use super::status::{ApiError, success_status};
use super::store::{Inner, Key, Store, Stored, meta_str};

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

fn pod_phase(pod: &Value) -> &str {
    pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("")
}

fn terminal(pod: &Value) -> bool {
    matches!(pod_phase(pod), "Succeeded" | "Failed")
}

fn deleting(v: &Value) -> bool {
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

fn labels_of(v: &Value) -> Option<&Map<String, Value>> {
    v.pointer("/metadata/labels").and_then(Value::as_object)
}

/// A PDB's selector; a missing or empty one matches nothing (as eviction
/// treats it).
fn pdb_selector(pdb: &Value) -> Option<LabelSelector> {
    let sel = LabelSelector::from_json(pdb.pointer("/spec/selector")?).ok()?;
    (!sel.is_empty()).then_some(sel)
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

/// Commit a new status if it differs; returns whether it changed.
fn set_status(inner: &mut Inner, rt: usize, key: &Key, status: Value) -> bool {
    let Some(cur) = inner.tables[rt].objects.get(key).cloned() else {
        return false;
    };
    if cur.value.get("status") == Some(&status) {
        return false;
    }
    let mut v = cur.value.clone();
    v["status"] = status;
    inner.commit(rt, key.clone(), Some(v), None);
    true
}

fn condition(
    old_status: Option<&Value>,
    ctype: &str,
    status: bool,
    reason: &str,
    message: &str,
    extra: Option<(&str, Value)>,
) -> Value {
    let status_s = if status { "True" } else { "False" };
    let prev = old_status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(ctype)));
    let same = prev.is_some_and(|p| {
        p.get("status").and_then(Value::as_str) == Some(status_s)
            && p.get("reason").and_then(Value::as_str) == Some(reason)
    });
    let stamp = |k: &str| {
        prev.filter(|_| same)
            .and_then(|p| p.get(k).cloned())
            .unwrap_or_else(|| json!(now_rfc3339()))
    };
    let mut c = json!({
        "type": ctype,
        "status": status_s,
        "reason": reason,
        "message": message,
        "lastTransitionTime": stamp("lastTransitionTime"),
    });
    if let Some((k, v)) = extra {
        c[k] = v;
    }
    c
}

/// An int-or-percent of `total` (rounded up or down).
pub(crate) fn scaled(v: &Value, total: i64, round_up: bool) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => {
            let pct = s.trim_end_matches('%').parse::<f64>().unwrap_or(0.0);
            let x = pct * total as f64 / 100.0;
            if round_up { x.ceil() as i64 } else { x.floor() as i64 }
        }
        _ => 0,
    }
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

fn recompute_pdb(inner: &mut Inner, key: &Key) {
    let Some(pdb) = inner.tables[PDB].objects.get(key).cloned() else {
        return;
    };
    let status = pdb_status(inner, &pdb.value);
    set_status(inner, PDB, key, status);
}

fn recompute_pdbs_in(inner: &mut Inner, ns: &str, pods: &[&Value]) {
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

fn put_nonzero(m: &mut Map<String, Value>, k: &str, n: i64) {
    if n != 0 {
        m.insert(k.into(), json!(n));
    }
}

fn recompute_rs(inner: &mut Inner, key: &Key) {
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

fn recompute_deployment(inner: &mut Inner, key: &Key) {
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
    let hash = super::hash::template_hash(dep.value.pointer("/spec/template").unwrap_or(&Value::Null));
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

fn recompute_ds(inner: &mut Inner, key: &Key) {
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

fn keys_of(inner: &Inner, rt: usize) -> Vec<Key> {
    inner.tables[rt].objects.keys().cloned().collect()
}

/// Recompute every derived status (after bulk loading).
pub(crate) fn recompute_all(inner: &mut Inner) {
    for k in keys_of(inner, REPLICASET) {
        recompute_rs(inner, &k);
    }
    for k in keys_of(inner, DEPLOYMENT) {
        recompute_deployment(inner, &k);
    }
    for k in keys_of(inner, DAEMONSET) {
        recompute_ds(inner, &k);
    }
    for k in keys_of(inner, PDB) {
        recompute_pdb(inner, &k);
    }
}

/// Hook run after every committed write (outside bulk mode).
pub(crate) fn after_write(inner: &mut Inner, rt: usize, old: Option<&Arc<Stored>>, new: Option<&Arc<Stored>>) {
    if inner.bulk_depth > 0 {
        return;
    }
    let any = new.or(old);
    let Some(any) = any else { return };
    let ns = any.namespace().to_string();
    let spec_changed = match (old, new) {
        (Some(o), Some(n)) => o.value.get("spec") != n.value.get("spec"),
        _ => true,
    };
    match rt {
        POD => {
            let vals: Vec<&Value> = [old, new].into_iter().flatten().map(|s| &s.value).collect();
            let mut owners = BTreeMap::new();
            for v in &vals {
                if let Some((kind, name, _)) = controller_of(v) {
                    owners.insert((kind, name), ());
                }
            }
            for (kind, name) in owners.into_keys() {
                let key = (ns.clone(), name);
                match kind.as_str() {
                    "ReplicaSet" => recompute_rs(inner, &key),
                    "DaemonSet" => recompute_ds(inner, &key),
                    _ => {}
                }
            }
            let vals: Vec<Value> = vals.into_iter().cloned().collect();
            let refs: Vec<&Value> = vals.iter().collect();
            recompute_pdbs_in(inner, &ns, &refs);
        }
        PDB => {
            if let Some(n) = new
                && spec_changed
            {
                recompute_pdb(inner, &(ns, n.name().to_string()));
            }
        }
        REPLICASET if spec_changed => {
            if let Some(n) = new {
                recompute_rs(inner, &(ns.clone(), n.name().to_string()));
            } else if let Some((kind, name, _)) = old.and_then(|o| controller_of(&o.value))
                && kind == "Deployment"
            {
                recompute_deployment(inner, &(ns.clone(), name));
            }
            recompute_pdbs_in(inner, &ns, &[]);
        }
        DEPLOYMENT if spec_changed => {
            if let Some(n) = new {
                recompute_deployment(inner, &(ns.clone(), n.name().to_string()));
            }
            recompute_pdbs_in(inner, &ns, &[]);
        }
        DAEMONSET if spec_changed => {
            if let Some(n) = new {
                recompute_ds(inner, &(ns, n.name().to_string()));
            }
        }
        NODE => {
            let labels_changed = match (old, new) {
                (Some(o), Some(n)) => labels_of(&o.value) != labels_of(&n.value),
                _ => true,
            };
            if labels_changed {
                for k in keys_of(inner, DAEMONSET) {
                    recompute_ds(inner, &k);
                }
            }
        }
        _ => {}
    }
}

impl Store {
    /// The pod eviction subresource (`POST .../pods/NAME/eviction`), with the
    /// apiserver's PDB checks. Returns the success `Status` (code 201).
    pub fn evict(&self, ns: &str, name: &str, body: &Value, dry_run: bool) -> Result<Value, ApiError> {
        if let Some(kind) = body.get("kind").and_then(Value::as_str)
            && kind != "Eviction"
        {
            return Err(ApiError::bad_request(format!("not a Eviction object: {kind}")));
        }
        if let Some(av) = body.get("apiVersion").and_then(Value::as_str)
            && av != "policy/v1"
            && av != "policy/v1beta1"
        {
            return Err(ApiError::bad_request(format!("unsupported Eviction apiVersion {av}")));
        }
        if meta_str(body, "name") != name {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Eviction object",
            ));
        }
        let mut opts = body
            .get("deleteOptions")
            .map(DeleteOptions::from_json)
            .unwrap_or_default();
        opts.dry_run |= dry_run;
        let mut inner = self.write();
        let pod = inner
            .get(POD, ns, name)
            .ok_or_else(|| ApiError::not_found(resources::get(POD), name))?;
        let created = || success_status(201, None);
        let phase = pod_phase(&pod.value);
        if matches!(phase, "Succeeded" | "Failed" | "Pending") || deleting(&pod.value) {
            delete_locked(&mut inner, POD, ns, name, &opts)?;
            return Ok(created());
        }
        let pdbs: Vec<Arc<Stored>> = inner
            .iter_ns(PDB, Some(ns))
            .filter(|p| pdb_selector(&p.value).is_some_and(|s| s.matches(labels_of(&pod.value))))
            .cloned()
            .collect();
        if pdbs.len() > 1 {
            return Err(ApiError::multiple_pdbs());
        }
        if let Some(pdb) = pdbs.first() {
            let st = pdb.value.get("status").cloned().unwrap_or(json!({}));
            let num = |k: &str| st.get(k).and_then(Value::as_i64).unwrap_or(0);
            let unready_ok =
                !pod_ready(&pod.value) && num("currentHealthy") >= num("desiredHealthy") && num("desiredHealthy") > 0;
            if !unready_ok {
                let generation = pdb
                    .value
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                if num("observedGeneration") < generation {
                    return Err(ApiError::pdb_processing(pdb.name()));
                }
                let allowed = num("disruptionsAllowed");
                if allowed < 0 {
                    return Err(ApiError::new(
                        403,
                        "Forbidden",
                        format!(
                            "poddisruptionbudgets.policy \"{}\" is forbidden: pdb disruptions allowed is negative",
                            pdb.name()
                        ),
                    ));
                }
                if allowed == 0 {
                    return Err(ApiError::pdb_forbids(
                        pdb.name(),
                        num("desiredHealthy"),
                        num("currentHealthy"),
                    ));
                }
                if !opts.dry_run {
                    let mut st = st.clone();
                    st["disruptionsAllowed"] = json!(allowed - 1);
                    if st.get("disruptedPods").is_none() {
                        st["disruptedPods"] = json!({});
                    }
                    st["disruptedPods"][name] = json!(now_rfc3339());
                    let key = (ns.to_string(), pdb.name().to_string());
                    set_status(&mut inner, PDB, &key, st);
                }
            }
        }
        delete_locked(&mut inner, POD, ns, name, &opts)?;
        Ok(created())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_as_the_apiserver() {
        assert_eq!(scaled(&json!("10%"), 11, true), 2);
        assert_eq!(scaled(&json!("25%"), 10, false), 2);
        assert_eq!(scaled(&json!(3), 10, true), 3);
    }

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
