//! Node replacement. Existing nodes never switch to custom networking; only
//! nodes launched after it was enabled do, so every node is replaced. The
//! work is planned as units the size of one side effect, so the journal,
//! `status` and `resume` name the one in flight:
//!
//! - `replace-karpenter-nodes/batch-N` ([`karpenter::ReplaceBatch`]): the
//!   Karpenter nodes the plan put in batch N: cordon, drain with kubectl's
//!   semantics (PDBs honoured), delete the NodeClaim, and wait until the
//!   replacements Karpenter launches for the evicted (now pending) pods are
//!   Ready on their ENIConfig with the expected `capacity.pods`. A node is
//!   "old" while it lacks the eniConfig label, so a resumed batch finds
//!   exactly the nodes it has left; each finished node is also checkpointed.
//! - `replace-karpenter-nodes/finish` ([`karpenter::FinishReplacement`]):
//!   old nodes that appeared after planning, then the NodePool limits put
//!   back ([`limits`]).
//! - `roll-node-groups/<name>` ([`node_groups::RollNodeGroup`]): a new launch
//!   template version (so EKS recomputes max pods), `UpdateNodegroupVersion`
//!   with a journaled request token and update id, progress from
//!   `DescribeUpdate`, then the new nodes' `capacity.pods` checked; and
//!   `roll-node-groups/finish` puts back the limits those rolls raised.
//! - `roll-self-managed/<group>/…` ([`self_managed`]): a self-managed
//!   group's new launch template version and the group pointed at it, then
//!   its old instances terminated a batch at a time for replacements.

pub mod karpenter;
pub mod limits;
pub mod node_groups;
pub mod self_managed;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::Env;
use crate::engine::{ErrorClass, StepError, UnitCtx};
use crate::k8s::ops::DrainPolicy;
use crate::k8s::snapshot::NodeSummary;
use crate::k8s::{self, KubeError, list_all};
use crate::verify::Expectations;
use limits::{RaisedLimits, RecordsRaises, ensure_headroom};

pub use karpenter::{BatchOutput, FinishReplacement, ReplaceBatch, ReplaceKarpenterNodesOutputs, ReplacedNode};
pub use node_groups::{FinishRolls, NodeGroupRoll, RollNodeGroup, RolledNodeGroup, UserDataPlan};
pub use self_managed::{PointSelfManagedGroup, ReplaceSelfManagedBatch, SelfManagedRoll};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainSettings {
    pub batch_size: u32,
    pub drain_timeout_secs: u64,
    pub evict_emptydir: bool,
    pub evict_unmanaged: bool,
    pub pdb_bypass_after_timeout: bool,
    /// NodePool → the most of its nodes replaced at once (its disruption
    /// budget, when below `batch_size`). Absent from older plans.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub pool_batch: std::collections::BTreeMap<String, u32>,
}

impl DrainSettings {
    /// How many of `pool`'s nodes go in one batch.
    pub fn batch_for(&self, pool: Option<&str>) -> usize {
        let budget = pool.and_then(|p| self.pool_batch.get(p)).copied().unwrap_or(u32::MAX);
        self.batch_size.min(budget).max(1) as usize
    }
}

impl DrainSettings {
    fn policy(&self, poll: Duration) -> DrainPolicy {
        DrainPolicy {
            evict_emptydir: self.evict_emptydir,
            evict_unmanaged: self.evict_unmanaged,
            bypass_pdbs_after_timeout: self.pdb_bypass_after_timeout,
            timeout: Duration::from_secs(self.drain_timeout_secs),
            poll,
        }
    }
}

fn kube(env: &Env) -> Result<&kube::Client, StepError> {
    env.kube
        .as_ref()
        .ok_or_else(|| StepError::failed("no Kubernetes client"))
}

async fn nodes(client: &kube::Client, selector: &str) -> Result<Vec<NodeSummary>, KubeError> {
    let api: Api<Node> = Api::all(client.clone());
    let lp = if selector.is_empty() {
        ListParams::default()
    } else {
        ListParams::default().labels(selector)
    };
    Ok(list_all(&api, &lp, &format!("nodes {selector}"))
        .await?
        .iter()
        .map(k8s::snapshot::node_summary)
        .collect())
}

/// Pending pods the replacement must absorb: unscheduled ones, and ones
/// stuck on a node already running custom networking. A pod stuck on a node
/// not yet replaced (`stale`: its subnet ran out, the reason for the
/// migration) moves when that node's turn comes, so it must not hold up the
/// batches before it.
async fn pending_pods(client: &kube::Client, stale: &BTreeSet<String>) -> Result<Vec<String>, KubeError> {
    let api: Api<Pod> = Api::all(client.clone());
    let lp = ListParams::default().fields("status.phase=Pending");
    Ok(list_all(&api, &lp, "pending pods")
        .await?
        .iter()
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_none_or(|n| !stale.contains(n))
        })
        .map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()))
        .collect())
}

/// What is still wrong with the new nodes; a wrong capacity is an error at
/// once, since it does not fix itself.
fn new_node_problems(fresh: &[&NodeSummary], expect: &Expectations) -> Result<Vec<String>, StepError> {
    let mut problems = Vec::new();
    for n in fresh {
        if !n.ready {
            problems.push(format!("{} is not Ready", n.name));
        } else if !expect.node_is_migrated(n) {
            problems.push(expect.mode_problem(n));
        } else if let Some(want) = expect.expected_pods(n)
            && n.capacity_pods != Some(want)
        {
            return Err(StepError::new(
                    ErrorClass::Failed,
                    format!(
                        "new node {} ({}) reports capacity.pods {} but the planned networking gives it {want}",
                        n.name,
                        n.instance_type.as_deref().unwrap_or("?"),
                        n.capacity_pods.map(|c| c.to_string()).unwrap_or_else(|| "unset".into())
                    ),
                )
                .hint("pods on it would stick on IP assignment: check Karpenter's RESERVED_ENIS (or the node group's max pods), then run `podnet resume`"));
        }
    }
    Ok(problems)
}

/// What a wait may raise when pods stay pending with every new node up:
/// smaller max pods mean more nodes than before, and a NodePool limit may
/// forbid them.
pub(super) struct Raise<'r, 'c, 'a, C> {
    pub pools: &'r [String],
    /// Originals earlier units recorded.
    pub earlier: &'r RaisedLimits,
    pub ctx: &'r mut UnitCtx<'c, 'a, C>,
}

/// What a replacement waits for.
pub(super) struct Settle<'x> {
    pub selector: String,
    /// Nodes that were old when the unit began (not replacements).
    pub old: &'x BTreeSet<String>,
    pub expect: &'x Expectations,
    pub timeout: Duration,
}

/// Waits until nothing is pending and every node of the selector that is
/// not old is Ready, on its ENIConfig, with the expected capacity.
async fn wait_settled<C: RecordsRaises>(
    env: &Env,
    step: &str,
    settle: Settle<'_>,
    mut raise: Option<Raise<'_, '_, '_, C>>,
) -> Result<Vec<String>, StepError> {
    let client = kube(env)?;
    let deadline = Instant::now() + settle.timeout;
    let mut waits = 0u32;
    loop {
        let all = nodes(client, &settle.selector).await?;
        let fresh: Vec<&NodeSummary> = all.iter().filter(|n| !settle.old.contains(&n.name)).collect();
        let problems = new_node_problems(&fresh, settle.expect)?;
        let stale: BTreeSet<String> = nodes(client, "")
            .await?
            .into_iter()
            .filter(|n| !settle.expect.node_is_migrated(n))
            .map(|n| n.name)
            .collect();
        let pending = pending_pods(client, &stale).await?;
        if problems.is_empty() && pending.is_empty() {
            return Ok(fresh.iter().map(|n| n.name.clone()).collect());
        }
        waits += 1;
        if waits.is_multiple_of(5)
            && problems.is_empty()
            && let Some(r) = raise.as_mut()
        {
            ensure_headroom(env, step, r.pools, r.earlier, r.ctx, client).await?;
        }
        if Instant::now() >= deadline {
            return Err(not_settled(settle.timeout, problems, &pending));
        }
        env.status(
            step,
            &format!(
                "{} new node(s), {} pending pod(s), waiting for replacements",
                fresh.len(),
                pending.len()
            ),
        );
        tokio::time::sleep(env.waits.poll).await;
    }
}

/// How a wait for removed nodes words its timeout and progress.
pub(super) struct Gone<'a> {
    /// "their NodeClaims were deleted": what should have removed them.
    pub after: &'a str,
    pub hint: &'a str,
    /// The status line for the nodes still there.
    pub waiting: &'a (dyn Fn(&str) -> String + Sync),
}

/// Waits until none of `names` is a Node any more (`waits.replacement_settle`
/// at most).
pub(super) async fn wait_nodes_gone(env: &Env, step: &str, names: &[String], words: Gone<'_>) -> Result<(), StepError> {
    let api: Api<Node> = Api::all(kube(env)?.clone());
    let deadline = Instant::now() + env.waits.replacement_settle;
    loop {
        let mut left = Vec::new();
        for n in names {
            if k8s::with_retry(&format!("get node {n}"), || api.get_opt(n))
                .await?
                .is_some()
            {
                left.push(n.clone());
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StepError::new(
                ErrorClass::Timeout,
                format!("nodes {} are still there after {}", left.join(", "), words.after),
            )
            .hint(words.hint));
        }
        env.status(step, &(words.waiting)(&left.join(", ")));
        tokio::time::sleep(env.waits.poll).await;
    }
}

fn not_settled(timeout: Duration, mut why: Vec<String>, pending: &[String]) -> StepError {
    if !pending.is_empty() {
        why.push(format!(
            "{} pod(s) pending: {}",
            pending.len(),
            pending.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    StepError::new(
        ErrorClass::Timeout,
        format!(
            "replacement capacity did not settle in {}s: {}",
            timeout.as_secs(),
            why.join("; ")
        ),
    )
    .hint("check why pods are pending (`kubectl get events`); fix it, then run `podnet resume`")
}
