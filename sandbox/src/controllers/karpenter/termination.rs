//! Termination: a deleted NodeClaim (or Karpenter Node) is tainted
//! `karpenter.sh/disrupted:NoSchedule`, its pods are evicted through their
//! PodDisruptionBudgets (DaemonSet pods stay), then the instance is
//! terminated and the `karpenter.sh/termination` finalizer removed
//! (<https://karpenter.sh/docs/concepts/disruption/#termination-controller>).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::pool::{DISRUPTED_TAINT, FINALIZER};
use crate::controllers::events::Source;
use crate::controllers::launch;
use crate::controllers::{Ctx, add_taint, edit, is_daemon_pod, is_deleting, label, pod_active, s};
use crate::kube::resources::{NODE, NODECLAIM};
use crate::kube::{DeleteOptions, Stored};

pub(super) async fn terminate(
    ctx: &Ctx,
    claims: &[Arc<Stored>],
    nodes: &BTreeMap<String, Arc<Stored>>,
    pods: &[Arc<Stored>],
) {
    // A deleted Karpenter Node takes its NodeClaim with it.
    for n in nodes.values() {
        if !is_deleting(&n.value) || label(&n.value, "karpenter.sh/nodepool").is_none() {
            continue;
        }
        let claim = claims.iter().find(|c| s(&c.value, "/status/nodeName") == n.name());
        match claim {
            Some(c) if !is_deleting(&c.value) => {
                let _ = ctx.store.delete(NODECLAIM, "", c.name(), &DeleteOptions::default());
            }
            Some(_) => {}
            None => drain_then_terminate(ctx, n, pods, None).await,
        }
    }
    for c in claims.iter().filter(|c| is_deleting(&c.value)) {
        let node = s(&c.value, "/status/nodeName").to_string();
        if ctx.launches.booting().contains(&node) {
            continue;
        }
        match nodes.get(&node) {
            Some(n) => drain_then_terminate(ctx, n, pods, Some(c)).await,
            None => {
                launch::terminate(ctx, &node).await;
                remove_finalizer(ctx, c);
            }
        }
    }
}

pub(super) fn remove_finalizer(ctx: &Ctx, c: &Stored) {
    let _ = edit(&ctx.store, NODECLAIM, "", c.name(), |v| {
        if let Some(f) = v.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) {
            f.retain(|x| x != FINALIZER);
        }
    });
}

async fn drain_then_terminate(ctx: &Ctx, node: &Stored, pods: &[Arc<Stored>], claim: Option<&Arc<Stored>>) {
    let _ = edit(&ctx.store, NODE, "", node.name(), |n| add_taint(n, DISRUPTED_TAINT));
    let left: Vec<&Arc<Stored>> = pods
        .iter()
        .filter(|p| s(&p.value, "/spec/nodeName") == node.name() && pod_active(&p.value) && !is_daemon_pod(&p.value))
        .collect();
    for p in &left {
        if let Err(e) = crate::controllers::evict(&ctx.store, p.namespace(), p.name()) {
            if e.code == 429 {
                ctx.events.emit(
                    ctx,
                    &p.value,
                    true,
                    "FailedDraining",
                    &format!("Failed to evict pod, {}", e.message),
                    Source::Karpenter,
                );
            }
        } else {
            ctx.events.emit(
                ctx,
                &p.value,
                false,
                "Evicted",
                "Evicted pod: Disrupting Node",
                Source::Karpenter,
            );
        }
    }
    if !left.is_empty() {
        return;
    }
    launch::terminate(ctx, node.name()).await;
    if let Some(c) = claim {
        remove_finalizer(ctx, c);
    }
}
