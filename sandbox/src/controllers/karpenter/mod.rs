//! Karpenter (v1 semantics), as far as a migration meets it.
//!
//! - **Provisioning:** pods the scheduler marked Unschedulable that a
//!   NodePool could host, beyond what NodeClaims still coming up will hold,
//!   get a new NodeClaim: the smallest of the NodePool's instance types that
//!   holds them (the largest otherwise), within the NodePool's cpu limit, in
//!   the zone with the fewest of its nodes; the subnet is the one matching
//!   the EC2NodeClass `subnetSelectorTerms` in that zone with the most free
//!   addresses. The instance is launched in moto and the Node registers
//!   after the boot delay.
//! - **Pod capacity** is Karpenter's: EC2NodeClass `kubelet.maxPods`, else
//!   `(ENIs − RESERVED_ENIS) × (IPv4 per ENI − 1) + 2`, `RESERVED_ENIS`
//!   read from the controller Deployment's env at launch time.
//! - **Termination:** a deleted NodeClaim (or Karpenter Node) is tainted
//!   `karpenter.sh/disrupted:NoSchedule`, its pods evicted through PDBs
//!   (DaemonSet pods stay), then the instance is terminated and the
//!   finalizers removed.
//! - Nothing happens while no Karpenter controller pod is ready.
//!
//! The pieces: `pool` (what is read off NodePools and NodeClaims),
//! `provision`, `termination` and `drift`; this module runs them in order
//! and keeps NodePool and NodeClaim status.

mod drift;
mod pool;
mod provision;
mod termination;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use crate::controllers::{Ctx, condition_true, edit, label, node_ready, pod_active, s};
use crate::kube::Stored;
use crate::kube::derived::pod_ready;
use crate::kube::resources::{NODE, NODECLAIM, NODEPOOL, POD};

pub use crate::scenario::objects::nodeclass_hash;
pub use pool::{DISRUPTED_TAINT, FINALIZER, HASH_ANNOTATION, REPLACEMENT_ANNOTATION, budget_nodes, reserved_enis};
use pool::{claim_cpu, claim_pods};

fn controller_up(pods: &[Arc<Stored>]) -> bool {
    pods.iter().any(|p| {
        label(&p.value, "app.kubernetes.io/name") == Some("karpenter") && pod_active(&p.value) && pod_ready(&p.value)
    })
}

pub async fn reconcile(ctx: &Ctx) {
    if ctx.scenario.karpenter.is_none() && ctx.list(NODEPOOL).is_empty() {
        return;
    }
    let pods = ctx.list(POD);
    if !controller_up(&pods) {
        return;
    }
    let nodes: BTreeMap<String, Arc<Stored>> = ctx.list(NODE).into_iter().map(|n| (n.name().to_string(), n)).collect();
    let claims = ctx.list(NODECLAIM);
    nodepool_status(ctx, &claims);
    progress_claims(ctx, &claims, &nodes);
    drift::drift(ctx, &claims, &nodes).await;
    termination::terminate(ctx, &claims, &nodes, &pods).await;
    provision::provision(ctx, &claims, &nodes, &pods).await;
}

/// NodePool `status.resources`: what its NodeClaims hold (what the limits
/// are checked against).
fn nodepool_status(ctx: &Ctx, claims: &[Arc<Stored>]) {
    for np in ctx.list(NODEPOOL) {
        let mine: Vec<&Arc<Stored>> = claims
            .iter()
            .filter(|c| label(&c.value, "karpenter.sh/nodepool") == Some(np.name()))
            .collect();
        let cpu: u32 = mine.iter().map(|c| claim_cpu(&c.value)).sum();
        let pods: i64 = mine.iter().map(|c| claim_pods(&c.value)).sum();
        let mem_ki: u64 = mine
            .iter()
            .filter_map(|c| {
                s(&c.value, "/status/capacity/memory")
                    .strip_suffix("Ki")
                    .and_then(|k| k.parse::<u64>().ok())
            })
            .sum();
        let cores = if cpu.is_multiple_of(1000) {
            (cpu / 1000).to_string()
        } else {
            format!("{cpu}m")
        };
        let want = json!({"cpu": cores, "memory": format!("{mem_ki}Ki"), "nodes": mine.len().to_string(), "pods": pods.to_string()});
        let same = ["cpu", "memory", "nodes", "pods"]
            .iter()
            .all(|k| np.value.pointer(&format!("/status/resources/{k}")) == want.get(*k));
        if !same {
            let _ = edit(&ctx.store, NODEPOOL, "", np.name(), |v| {
                for k in ["cpu", "memory", "nodes", "pods"] {
                    v["status"]["resources"][k] = want[k].clone();
                }
            });
        }
    }
}

fn progress_claims(ctx: &Ctx, claims: &[Arc<Stored>], nodes: &BTreeMap<String, Arc<Stored>>) {
    for c in claims {
        let node = s(&c.value, "/status/nodeName");
        let Some(n) = nodes.get(node) else { continue };
        // The node exists, so the NodeClaim is registered.
        let initialized = node_ready(&n.value);
        if !condition_true(&c.value, "Registered") || (initialized && !condition_true(&c.value, "Initialized")) {
            let now = crate::kube::ops::now_rfc3339();
            let _ = edit(&ctx.store, NODECLAIM, "", c.name(), |v| {
                let mut conds = vec![
                    json!({"type": "Launched", "status": "True", "reason": "Launched", "message": "", "lastTransitionTime": now}),
                ];
                conds.push(json!({"type": "Registered", "status": "True", "reason": "Registered", "message": "", "lastTransitionTime": now}));
                let st = if initialized { "True" } else { "Unknown" };
                conds.push(json!({"type": "Initialized", "status": st, "reason": if initialized {"Initialized"} else {"NotInitialized"}, "message": "", "lastTransitionTime": now}));
                conds.push(json!({"type": "Ready", "status": st, "reason": if initialized {"Ready"} else {"NotReady"}, "message": "", "lastTransitionTime": now}));
                v["status"]["conditions"] = json!(conds);
            });
        }
    }
}
