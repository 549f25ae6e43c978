//! The workload controllers of kube-controller-manager, reduced to what a
//! migration exercises:
//! - Deployments: a ReplicaSet per pod template (named by its hash), rolled
//!   with the strategy's `maxSurge`/`maxUnavailable`;
//! - ReplicaSets: create or delete pods to match `spec.replicas` (an
//!   evicted pod comes back, Pending, for the scheduler);
//! - DaemonSets: one pod per eligible node, bound directly, replaced when
//!   the template generation changes;
//! - pod GC: pods bound to nodes that no longer exist are deleted.
//!
//! Replica counts in `status` are derived by the store itself
//! (`kube::derived`), so these controllers only create and delete.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};

use super::events::Source;
use super::{Ctx, edit, is_deleting, label, pod_active, s};
use crate::kube::derived::{controller_of, node_selected, pod_ready};
use crate::kube::resources::{DAEMONSET, DEPLOYMENT, NODE, POD, REPLICASET};
use crate::kube::{DeleteOptions, Stored, WriteOptions};
use crate::scenario::objects;
use crate::workloads::{Owner, suffix, template_hash};

pub fn reconcile(ctx: &Ctx) {
    let pods = ctx.list(POD);
    let nodes: BTreeMap<String, Arc<Stored>> = ctx.list(NODE).into_iter().map(|n| (n.name().to_string(), n)).collect();
    gc(ctx, &pods, &nodes);
    deployments(ctx, &pods);
    let pods = ctx.list(POD);
    replicasets(ctx, &pods);
    daemonsets(ctx, &pods, &nodes);
}

fn gc(ctx: &Ctx, pods: &[Arc<Stored>], nodes: &BTreeMap<String, Arc<Stored>>) {
    for p in pods {
        let n = s(&p.value, "/spec/nodeName");
        if !n.is_empty() && !nodes.contains_key(n) {
            let _ = ctx
                .store
                .delete(POD, p.namespace(), p.name(), &DeleteOptions::default());
            ctx.events.forget(p.uid());
        }
    }
}

fn owned<'a>(pods: &'a [Arc<Stored>], uid: &str) -> Vec<&'a Arc<Stored>> {
    pods.iter()
        .filter(|p| controller_of(&p.value).is_some_and(|(_, _, u)| u == uid))
        .collect()
}

/// An int-or-percent of `total` (percentages round up for surge, down for
/// unavailability, as the deployment controller does).
fn scaled(v: Option<&Value>, total: i64, default: &str, round_up: bool) -> i64 {
    crate::kube::derived::scaled(v.unwrap_or(&json!(default)), total, round_up)
}

fn replicas(v: &Value) -> i64 {
    v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
}

fn set_replicas(ctx: &Ctx, rs: &Stored, n: i64) {
    let _ = edit(&ctx.store, REPLICASET, rs.namespace(), rs.name(), |v| {
        v["spec"]["replicas"] = json!(n);
    });
}

fn deployments(ctx: &Ctx, pods: &[Arc<Stored>]) {
    let all_rs = ctx.list(REPLICASET);
    for d in ctx.list(DEPLOYMENT) {
        if is_deleting(&d.value) {
            continue;
        }
        let template = d.value.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&template);
        let mine: Vec<&Arc<Stored>> = all_rs
            .iter()
            .filter(|r| controller_of(&r.value).is_some_and(|(_, _, u)| u == d.uid()))
            .collect();
        let current = mine
            .iter()
            .find(|r| label(&r.value, "pod-template-hash") == Some(hash.as_str()))
            .copied()
            .cloned();
        let current = match current {
            Some(c) => c,
            None => {
                let revision = mine
                    .iter()
                    .filter_map(|r| {
                        r.value
                            .pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
                            .and_then(Value::as_str)
                            .and_then(|x| x.parse::<i64>().ok())
                    })
                    .max()
                    .unwrap_or(0)
                    + 1;
                let mut rs = objects::replicaset(&d.value, &hash, &crate::kube::ops::now_rfc3339());
                rs["spec"]["replicas"] = json!(0);
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!(revision.to_string());
                if let Some(m) = rs.as_object_mut() {
                    m.remove("status");
                }
                if let Some(m) = rs["metadata"].as_object_mut() {
                    m.remove("uid");
                    m.remove("creationTimestamp");
                }
                match ctx
                    .store
                    .create(REPLICASET, d.namespace(), rs, &WriteOptions::internal())
                {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("creating the ReplicaSet of {}/{}: {e}", d.namespace(), d.name());
                        continue;
                    }
                }
            }
        };
        let want = replicas(&d.value);
        let old: Vec<&&Arc<Stored>> = mine.iter().filter(|r| r.uid() != current.uid()).collect();
        let old_total: i64 = old.iter().map(|r| replicas(&r.value)).sum();
        if old_total == 0 {
            if replicas(&current.value) != want {
                set_replicas(ctx, &current, want);
            }
            continue;
        }
        let strategy = d.value.pointer("/spec/strategy/rollingUpdate");
        let surge = scaled(strategy.and_then(|s| s.get("maxSurge")), want, "25%", true);
        let mut unavailable = scaled(strategy.and_then(|s| s.get("maxUnavailable")), want, "25%", false);
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        let cur_n = replicas(&current.value);
        let up_to = (want + surge - old_total).min(want).max(cur_n);
        if up_to != cur_n {
            set_replicas(ctx, &current, up_to);
        }
        let ready: i64 = mine
            .iter()
            .map(|r| owned(pods, r.uid()).iter().filter(|p| pod_ready(&p.value)).count() as i64)
            .sum();
        let mut can_remove = ready - (want - unavailable);
        for r in old {
            let n = replicas(&r.value);
            if n == 0 {
                continue;
            }
            // Pods that are not ready cost no availability to remove.
            let unready = owned(pods, r.uid()).iter().filter(|p| !pod_ready(&p.value)).count() as i64;
            let take = (unready + can_remove.max(0)).min(n);
            if take > 0 {
                set_replicas(ctx, r, n - take);
                can_remove -= (take - unready).max(0);
            }
        }
    }
}

fn replicasets(ctx: &Ctx, pods: &[Arc<Stored>]) {
    for rs in ctx.list(REPLICASET) {
        if is_deleting(&rs.value) {
            continue;
        }
        let want = replicas(&rs.value).max(0) as usize;
        let mine: Vec<&Arc<Stored>> = owned(pods, rs.uid())
            .into_iter()
            .filter(|p| pod_active(&p.value))
            .collect();
        if mine.len() < want {
            let template = rs.value.pointer("/spec/template").cloned().unwrap_or(json!({}));
            let owner = Owner::of(&rs.value);
            for _ in mine.len()..want {
                let name = format!("{}-{}", rs.name(), suffix(&uuid::Uuid::new_v4().to_string()));
                let pod = pending_pod(&template, &owner, &name, rs.namespace(), &[]);
                if let Err(e) = ctx.store.create(POD, rs.namespace(), pod, &WriteOptions::internal()) {
                    tracing::debug!("creating pod {name}: {e}");
                    // The ReplicaSet controller's event, as `kubectl describe rs` shows it.
                    if e.code != 409 {
                        let msg = format!("Error creating: {}", e.message);
                        ctx.events
                            .emit(ctx, &rs.value, true, "FailedCreate", &msg, Source::ReplicaSetController);
                    }
                }
            }
        } else if mine.len() > want {
            // Unscheduled first, then not ready, then the youngest.
            let mut victims = mine.clone();
            victims.sort_by_key(|p| {
                (
                    !s(&p.value, "/spec/nodeName").is_empty(),
                    pod_ready(&p.value),
                    std::cmp::Reverse(s(&p.value, "/metadata/creationTimestamp").to_string()),
                )
            });
            for p in victims.into_iter().take(mine.len() - want) {
                let _ = ctx
                    .store
                    .delete(POD, p.namespace(), p.name(), &DeleteOptions::default());
                ctx.events.forget(p.uid());
            }
        }
    }
}

/// A new pod from a template: Pending, unbound unless `node` is given.
pub fn pending_pod(template: &Value, owner: &Owner, name: &str, ns: &str, extra: &[(&str, String)]) -> Value {
    let now = crate::kube::ops::now_rfc3339();
    let mut pod = crate::workloads::pod_from_template(
        template,
        owner,
        name,
        ns,
        extra,
        &crate::workloads::Placement {
            node: "",
            node_ip: std::net::Ipv4Addr::UNSPECIFIED,
            pod_ip: None,
            created: &now,
        },
    );
    if let Some(spec) = pod["spec"].as_object_mut() {
        spec.remove("nodeName");
    }
    let (cpu, _) = objects::requests(&pod["spec"]);
    pod["status"] = json!({"phase": "Pending", "qosClass": if cpu > 0 { "Burstable" } else { "BestEffort" }});
    pod
}

fn daemonsets(ctx: &Ctx, pods: &[Arc<Stored>], nodes: &BTreeMap<String, Arc<Stored>>) {
    for ds in ctx.list(DAEMONSET) {
        if is_deleting(&ds.value) {
            continue;
        }
        let empty = json!({});
        let spec = ds.value.pointer("/spec/template/spec").unwrap_or(&empty);
        let generation = ds
            .value
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .to_string();
        let mine = owned(pods, ds.uid());
        let mut covered: BTreeSet<&str> = BTreeSet::new();
        for p in &mine {
            let node = s(&p.value, "/spec/nodeName");
            let stale = label(&p.value, "pod-template-generation") != Some(generation.as_str());
            let eligible = nodes.get(node).is_some_and(|n| node_selected(&n.value, spec));
            if !pod_active(&p.value) {
                continue;
            }
            if !eligible || (stale && !is_deleting(&p.value)) {
                let _ = ctx
                    .store
                    .delete(POD, p.namespace(), p.name(), &DeleteOptions::default());
                continue;
            }
            covered.insert(node);
        }
        let template = ds.value.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&template);
        let owner = Owner::of(&ds.value);
        for (name, node) in nodes {
            if covered.contains(name.as_str()) || is_deleting(&node.value) || !node_selected(&node.value, spec) {
                continue;
            }
            let pod_name = format!("{}-{}", ds.name(), suffix(&uuid::Uuid::new_v4().to_string()));
            let mut pod = pending_pod(
                &template,
                &owner,
                &pod_name,
                ds.namespace(),
                &[
                    ("controller-revision-hash", hash.clone()),
                    ("pod-template-generation", generation.clone()),
                ],
            );
            pod["spec"]["nodeName"] = json!(name);
            if let Err(e) = ctx.store.create(POD, ds.namespace(), pod, &WriteOptions::internal()) {
                tracing::debug!("creating pod {pod_name}: {e}");
                if e.code != 409 {
                    let msg = format!("Error creating: {}", e.message);
                    ctx.events
                        .emit(ctx, &ds.value, true, "FailedCreate", &msg, Source::DaemonSetController);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_int_or_percent() {
        // Integers are taken as they are.
        assert_eq!(scaled(Some(&json!(3)), 10, "25%", true), 3);
        assert_eq!(scaled(Some(&json!(0)), 10, "25%", false), 0);
        // Percentages round up for surge, down for unavailability.
        assert_eq!(scaled(Some(&json!("25%")), 10, "0%", true), 3);
        assert_eq!(scaled(Some(&json!("25%")), 10, "0%", false), 2);
        assert_eq!(scaled(Some(&json!("30%")), 110, "0%", false), 33);
        assert_eq!(scaled(Some(&json!("100%")), 7, "0%", true), 7);
        // The default applies when the field is absent: 25% of 2 replicas is
        // a surge of 1 and no unavailability.
        assert_eq!(scaled(None, 2, "25%", true), 1);
        assert_eq!(scaled(None, 2, "25%", false), 0);
        assert_eq!(scaled(None, 0, "25%", true), 0);
        // Nonsense counts as 0.
        assert_eq!(scaled(Some(&json!("lots")), 10, "25%", true), 0);
        assert_eq!(scaled(Some(&json!(null)), 10, "25%", true), 0);
    }
}
