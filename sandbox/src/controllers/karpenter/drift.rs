//! Drift: a NodeClaim whose EC2NodeClass spec changed since it launched
//! (its `karpenter.k8s.aws/ec2nodeclass-hash` annotation no longer matches)
//! is marked `Drifted`, then replaced within the NodePool's disruption
//! budget, the replacement launched and Ready before the drifted one is
//! deleted (<https://karpenter.sh/docs/concepts/disruption/#drift>).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::controllers::events::Source;
use crate::controllers::{Ctx, condition_true, edit, is_deleting, label, node_ready, s};
use crate::instance_types;
use crate::kube::resources::{EC2NODECLASS, NODECLAIM, NODEPOOL};
use crate::kube::{DeleteOptions, Stored};
use crate::scenario::objects::nodeclass_hash;

use super::pool::{HASH_ANNOTATION, REPLACEMENT_ANNOTATION, budget_nodes, reserved_enis};
use super::provision::{launch_claim, subnets_by_zone};

/// Drift: a NodeClaim whose EC2NodeClass spec changed since it launched is
/// marked `Drifted`, then replaced within the NodePool's disruption budget —
/// the replacement launched and Ready before the drifted one is deleted
/// (and drained by termination).
pub(super) async fn drift(ctx: &Ctx, claims: &[Arc<Stored>], nodes: &BTreeMap<String, Arc<Stored>>) {
    for np in ctx.list(NODEPOOL) {
        let class_name = s(&np.value, "/spec/template/spec/nodeClassRef/name").to_string();
        let Ok(nc) = ctx.store.get(EC2NODECLASS, "", &class_name) else {
            continue;
        };
        let hash = nodeclass_hash(&nc.value);
        let mine: Vec<&Arc<Stored>> = claims
            .iter()
            .filter(|c| label(&c.value, "karpenter.sh/nodepool") == Some(np.name()))
            .collect();
        let live: Vec<&&Arc<Stored>> = mine.iter().filter(|c| !is_deleting(&c.value)).collect();
        let drifted: Vec<&&Arc<Stored>> = live
            .iter()
            .filter(|c| {
                c.value
                    .pointer(&format!("/metadata/annotations/{}", HASH_ANNOTATION.replace('/', "~1")))
                    .and_then(Value::as_str)
                    .is_some_and(|h| h != hash)
            })
            .copied()
            .collect();
        mark_drifted(ctx, &drifted);
        let disrupting =
            mine.iter().filter(|c| is_deleting(&c.value)).count() + release_replaced(ctx, &drifted, claims, nodes);
        let budget = np
            .value
            .pointer("/spec/disruption/budgets")
            .and_then(Value::as_array)
            .and_then(|b| b.first())
            .map(|b| budget_nodes(s(b, "/nodes"), live.len()))
            .unwrap_or_else(|| budget_nodes("10%", live.len()));
        if disrupting >= budget {
            continue;
        }
        let Some(next) = drifted.iter().find(|c| replacement_of(c).is_none()) else {
            continue;
        };
        replace(ctx, &np, &nc, &class_name, next).await;
    }
}

fn mark_drifted(ctx: &Ctx, drifted: &[&&Arc<Stored>]) {
    for c in drifted {
        if !condition_true(&c.value, "Drifted") {
            let now = crate::kube::ops::now_rfc3339();
            let _ = edit(&ctx.store, NODECLAIM, "", c.name(), |v| {
                let mut conds = v
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                conds.retain(|x| x["type"] != "Drifted");
                conds.push(json!({"type": "Drifted", "status": "True", "reason": "NodeClassDrift",
                    "message": "NodeClass spec changed", "lastTransitionTime": now}));
                v["status"]["conditions"] = json!(conds);
            });
        }
    }
}

fn replacement_of(c: &Stored) -> Option<String> {
    c.value
        .pointer(&format!(
            "/metadata/annotations/{}",
            REPLACEMENT_ANNOTATION.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Replacements that are up let their drifted node go; a replacement that
/// vanished is forgotten. Returns how many drifted claims are being
/// replaced (they count against the budget).
fn release_replaced(
    ctx: &Ctx,
    drifted: &[&&Arc<Stored>],
    claims: &[Arc<Stored>],
    nodes: &BTreeMap<String, Arc<Stored>>,
) -> usize {
    let mut disrupting = 0;
    for c in drifted {
        let Some(r) = replacement_of(c) else { continue };
        disrupting += 1;
        match claims.iter().find(|x| x.name() == r) {
            None => {
                let _ = edit(&ctx.store, NODECLAIM, "", c.name(), |v| {
                    if let Some(a) = v.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
                        a.remove(REPLACEMENT_ANNOTATION);
                    }
                });
            }
            Some(x) => {
                let ready = nodes
                    .get(s(&x.value, "/status/nodeName"))
                    .is_some_and(|n| node_ready(&n.value));
                if ready {
                    ctx.events.emit(
                        ctx,
                        &c.value,
                        false,
                        "DisruptionTerminating",
                        &format!("Disrupting NodeClaim: Drifted, replaced by nodeclaim/{r}"),
                        Source::Karpenter,
                    );
                    let _ = ctx.store.delete(NODECLAIM, "", c.name(), &DeleteOptions::default());
                }
            }
        }
    }
    disrupting
}

/// Launch a claim like `next` (same type and zone) and remember it as
/// `next`'s replacement.
async fn replace(ctx: &Ctx, np: &Stored, nc: &Stored, class_name: &str, next: &Stored) {
    let zone = label(&next.value, "topology.kubernetes.io/zone")
        .unwrap_or("")
        .to_string();
    let itype = label(&next.value, "node.kubernetes.io/instance-type").unwrap_or("");
    let Some(t) = instance_types::lookup(itype) else {
        return;
    };
    let zones = subnets_by_zone(ctx, &nc.value).await;
    let Some(subnet) = zones.get(&zone).cloned() else {
        return;
    };
    let max_pods = nc
        .value
        .pointer("/spec/kubelet/maxPods")
        .and_then(Value::as_u64)
        .map(|m| m as u32)
        .unwrap_or_else(|| t.max_pods(reserved_enis(ctx), false));
    if let Some(name) = launch_claim(ctx, np, class_name, t, &zone, &subnet, max_pods).await {
        let _ = edit(&ctx.store, NODECLAIM, "", next.name(), |v| {
            v["metadata"]["annotations"][REPLACEMENT_ANNOTATION] = json!(name);
        });
    }
}
