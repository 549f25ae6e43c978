//! Replacing Karpenter nodes, one planned batch per unit. The plan names the
//! nodes of each batch (sorted, `batch_size` at a time), so the journal and
//! `status` say which nodes a unit replaces; the family's `finish` unit
//! replaces old nodes that appeared after planning and puts back the
//! NodePool limits the batches raised.

use std::collections::BTreeSet;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use serde::{Deserialize, Serialize};

use super::limits::{RaisedLimits, RecordsRaises, cores, ensure_headroom, headroom, merge_raised, restore_limits};
use super::{DrainSettings, Env, Gone, Raise, Settle, kube, nodes, wait_nodes_gone, wait_settled};
use crate::engine::{Action, After, Change, OutputOf, Produces, StepCtx, StepError, StepPlan, Unit, UnitCtx};
use crate::k8s::crds::NodeClaim;
use crate::k8s::ops::{self, DrainReport};
use crate::k8s::snapshot::{NODEPOOL_LABEL, NodeSummary};
use crate::k8s::{KubeError, list_all};
use crate::steps::ids;
use crate::verify::Expectations;

/// What every unit of the family knows: which NodePools, how to drain,
/// what a migrated node looks like.
#[derive(Debug, Clone)]
pub struct Replacement {
    pub node_pools: Vec<String>,
    pub drain: DrainSettings,
    pub expect: Expectations,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReplacedNode {
    pub name: String,
    pub nodeclaim: Option<String>,
    pub evicted: usize,
}

/// What a replacing unit leaves for its next attempt: the nodes it has
/// replaced (they may be gone by then) and the NodePool limits it raised.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ReplaceCheckpoint {
    pub replaced: Vec<ReplacedNode>,
    pub raised_limits: RaisedLimits,
}

impl RecordsRaises for ReplaceCheckpoint {
    fn raised(&mut self) -> &mut RaisedLimits {
        &mut self.raised_limits
    }
}

/// What one batch did.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BatchOutput {
    pub replaced: Vec<ReplacedNode>,
    pub raised_limits: RaisedLimits,
}

/// What the family did last: nodes replaced after the planned batches, the
/// nodes the NodePools have now.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReplaceKarpenterNodesOutputs {
    pub replaced: Vec<ReplacedNode>,
    pub nodes_now: Vec<String>,
}

/// The id of batch `number` (from 1).
pub fn batch_id(number: usize) -> String {
    format!("{}/batch-{number}", ids::REPLACE_KARPENTER_NODES)
}

/// The id of the family's last unit.
pub fn finish_id() -> String {
    format!("{}/finish", ids::REPLACE_KARPENTER_NODES)
}

/// The recorded outputs of batches `1..=count`.
fn batch_outputs(ctx: &StepCtx<'_>, count: usize) -> Result<Vec<BatchOutput>, StepError> {
    let mut out = Vec::with_capacity(count);
    for k in 1..=count {
        if let Some(o) = ctx.output(&OutputOf::<ReplaceBatch>::named(batch_id(k)))? {
            out.push(o);
        }
    }
    Ok(out)
}

impl Replacement {
    fn selector(&self) -> String {
        format!("{NODEPOOL_LABEL} in ({})", self.node_pools.join(","))
    }

    /// Nodes of the NodePools not yet on custom networking, by name.
    async fn old_nodes(&self, client: &kube::Client) -> Result<Vec<NodeSummary>, StepError> {
        let mut v: Vec<NodeSummary> = nodes(client, &self.selector())
            .await?
            .into_iter()
            .filter(|n| n.on_vpc_cni() && !self.expect.node_is_migrated(n))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    fn replace_change(n: &NodeSummary, because: Option<&str>) -> Change {
        let zone_type = format!(
            "{} {}",
            n.zone.as_deref().unwrap_or("?"),
            n.instance_type.as_deref().unwrap_or("?")
        );
        Change::new(Action::Replace, "karpenter_node", &n.name)
            .attr(
                "capacity.pods",
                Some(serde_json::json!(n.capacity_pods)),
                After::KnownAfterApply,
            )
            .because(match because {
                Some(b) => format!("{zone_type}; {b}"),
                None => zone_type,
            })
    }

    /// The NodePool limits a replacement would have to raise now.
    async fn limit_changes(&self, client: &kube::Client) -> Result<Vec<Change>, StepError> {
        let mut changes = Vec::new();
        for np in &self.node_pools {
            let (h, _) = headroom(client, np).await?;
            if let Some(to) = h.raise_to() {
                changes.push(
                    Change::new(Action::Update, "nodepool_limit", np)
                        .attr(
                            "limits.cpu",
                            Some(serde_json::json!(cores(h.limit.unwrap_or(0)))),
                            After::Known(serde_json::json!(cores(to))),
                        )
                        .because(format!(
                            "at {} of its cpu limit, Karpenter could not launch a replacement; put back after the last node if the migrated nodes fit in it",
                            cores(h.used)
                        )),
                );
            }
        }
        Ok(changes)
    }

    /// Cordons, drains and deletes the NodeClaims of `batch`, then waits for
    /// the replacements; each replaced node is checkpointed.
    async fn replace(
        &self,
        env: &Env,
        step: &str,
        ctx: &mut UnitCtx<'_, '_, ReplaceCheckpoint>,
        batch: Vec<NodeSummary>,
        old: &[NodeSummary],
        earlier: &RaisedLimits,
    ) -> Result<(), StepError> {
        let client = kube(env)?.clone();
        ensure_headroom(env, step, &self.node_pools, earlier, ctx, &client).await?;
        let mut live = Vec::with_capacity(batch.len());
        for n in batch {
            match ops::cordon(&client, &n.name).await {
                Ok(()) => live.push(n),
                // Gone between the list and the cordon: Karpenter finished
                // terminating it (a NodeClaim deleted by an earlier,
                // interrupted attempt). Nothing left to drain.
                Err(e) if e.is_not_found() => env.status(step, &format!("{} is already gone", n.name)),
                Err(e) => return Err(e.into()),
            }
        }
        if live.is_empty() {
            return Ok(());
        }
        let policy = self.drain.policy(env.waits.poll);
        let mut reports: Vec<(NodeSummary, DrainReport)> = Vec::new();
        for n in &live {
            let progress = |m: String| env.status(step, &m);
            reports.push((n.clone(), ops::drain(&client, &n.name, &policy, &progress).await?));
        }
        let mut names = Vec::new();
        for (n, report) in reports {
            let claim = delete_nodeclaim(&client, &n).await?;
            names.push(n.name.clone());
            let done = ReplacedNode {
                name: n.name.clone(),
                nodeclaim: claim,
                evicted: report.evicted.len(),
            };
            ctx.save(|c| c.replaced.push(done))?;
        }
        let words = Gone {
            after: "their NodeClaims were deleted",
            hint: "check Karpenter's logs for termination errors, then run `podnet resume`",
            waiting: &|left| format!("waiting for Karpenter to terminate {left}"),
        };
        wait_nodes_gone(env, step, &names, words).await?;
        let old_names: BTreeSet<String> = old.iter().map(|n| n.name.clone()).collect();
        let settle = Settle {
            selector: self.selector(),
            old: &old_names,
            expect: &self.expect,
            timeout: env.waits.replacement_settle,
        };
        let raise = Raise {
            pools: &self.node_pools,
            earlier,
            ctx,
        };
        wait_settled(env, step, settle, Some(raise)).await?;
        Ok(())
    }
}

/// Deletes the node's NodeClaim (Karpenter then drains nothing more and
/// terminates the instance); without one, the Node itself.
async fn delete_nodeclaim(client: &kube::Client, node: &NodeSummary) -> Result<Option<String>, StepError> {
    let api: Api<NodeClaim> = Api::all(client.clone());
    let claims = list_all(&api, &ListParams::default(), "NodeClaims").await?;
    let claim = claims.iter().find(|c| {
        c.status.as_ref().is_some_and(|st| {
            st.node_name.as_deref() == Some(node.name.as_str())
                || (node.provider_id.is_some() && st.provider_id.as_deref() == node.provider_id.as_deref())
        })
    });
    match claim {
        Some(c) => {
            let name = c.name_any();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(KubeError::from_kube(format!("delete NodeClaim {name}"), e).into()),
            }
            Ok(Some(name))
        }
        None => {
            // No NodeClaim (a node Karpenter adopted?): deleting the Node
            // lets Karpenter's finalizer terminate the instance. Only "it is
            // already gone" counts as done; a refusal is an error.
            let nodes: Api<Node> = Api::all(client.clone());
            match nodes.delete(&node.name, &DeleteParams::default()).await {
                Ok(_) => Ok(None),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
                Err(e) => Err(KubeError::from_kube(format!("delete node {}", node.name), e).into()),
            }
        }
    }
}

/// `replace-karpenter-nodes/batch-N`: the nodes the plan put in batch N.
pub struct ReplaceBatch {
    id: String,
    number: usize,
    batches: usize,
    nodes: Vec<String>,
    replacement: Replacement,
}

impl ReplaceBatch {
    pub fn new(number: usize, batches: usize, nodes: Vec<String>, replacement: Replacement) -> Self {
        ReplaceBatch {
            id: batch_id(number),
            number,
            batches,
            nodes,
            replacement,
        }
    }

    /// The old nodes now that this batch planned to replace.
    fn mine(&self, old: &[NodeSummary]) -> Vec<NodeSummary> {
        old.iter().filter(|n| self.nodes.contains(&n.name)).cloned().collect()
    }
}

impl Produces for ReplaceBatch {
    type Output = BatchOutput;
}

#[async_trait]
impl Unit<Env> for ReplaceBatch {
    type Checkpoint = ReplaceCheckpoint;

    fn id(&self) -> &str {
        &self.id
    }

    fn describe(&self) -> String {
        format!(
            "replace {} (batch {} of {}, NodePool(s) {})",
            self.nodes.join(", "),
            self.number,
            self.batches,
            self.replacement.node_pools.join(", ")
        )
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let client = kube(env)?;
        let mut plan = StepPlan::new(&self.id, self.describe());
        let mine = self.mine(&self.replacement.old_nodes(client).await?);
        if mine.is_empty() {
            return Ok(plan.note("its nodes are replaced or gone"));
        }
        for n in &mine {
            plan = plan.with(Replacement::replace_change(n, None));
        }
        if self.number == 1 {
            for c in self.replacement.limit_changes(client).await? {
                plan = plan.with(c);
            }
        }
        Ok(plan.note("replacements: Karpenter launches them for the evicted (pending) pods, with custom networking"))
    }

    async fn apply(&self, env: &Env, ctx: &mut UnitCtx<'_, '_, ReplaceCheckpoint>) -> Result<BatchOutput, StepError> {
        let client = kube(env)?.clone();
        let earlier = batch_outputs(ctx, self.number - 1)?;
        let raised_before = merge_raised(earlier.iter().map(|o| &o.raised_limits));
        let old = self.replacement.old_nodes(&client).await?;
        let mine = self.mine(&old);
        if !mine.is_empty() {
            let done: Vec<&ReplacedNode> = earlier
                .iter()
                .flat_map(|o| &o.replaced)
                .chain(&ctx.checkpoint().replaced)
                .collect();
            env.status(
                &self.id,
                &format!(
                    "{} of {} node(s) replaced, {} pod(s) moved; next: {}",
                    done.len(),
                    done.len() + old.len(),
                    done.iter().map(|r| r.evicted).sum::<usize>(),
                    mine.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            );
            self.replacement
                .replace(env, &self.id, ctx, mine, &old, &raised_before)
                .await?;
        }
        let c = ctx.checkpoint();
        Ok(BatchOutput {
            replaced: c.replaced.clone(),
            raised_limits: c.raised_limits.clone(),
        })
    }
}

/// `replace-karpenter-nodes/finish`: old nodes the plan did not know (the
/// pools grew since), in batches; then the NodePool limits put back.
pub struct FinishReplacement {
    id: String,
    batches: usize,
    planned: BTreeSet<String>,
    replacement: Replacement,
}

impl FinishReplacement {
    pub fn new(batches: &[Vec<String>], replacement: Replacement) -> Self {
        FinishReplacement {
            id: finish_id(),
            batches: batches.len(),
            planned: batches.iter().flatten().cloned().collect(),
            replacement,
        }
    }

    fn unplanned(&self, old: Vec<NodeSummary>) -> Vec<NodeSummary> {
        old.into_iter().filter(|n| !self.planned.contains(&n.name)).collect()
    }
}

impl Produces for FinishReplacement {
    type Output = ReplaceKarpenterNodesOutputs;
}

#[async_trait]
impl Unit<Env> for FinishReplacement {
    type Checkpoint = ReplaceCheckpoint;

    fn id(&self) -> &str {
        &self.id
    }

    fn describe(&self) -> String {
        if self.replacement.node_pools.is_empty() {
            "replace Karpenter nodes (none selected)".into()
        } else {
            format!(
                "replace nodes of NodePool(s) {} the plan did not know, in batches of {}; put back raised NodePool limits",
                self.replacement.node_pools.join(", "),
                self.replacement.drain.batch_size
            )
        }
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let mut plan = StepPlan::new(&self.id, self.describe());
        if self.replacement.node_pools.is_empty() {
            return Ok(plan.note("no NodePool selected for replacement"));
        }
        let client = kube(env)?;
        let unplanned = self.unplanned(self.replacement.old_nodes(client).await?);
        for n in &unplanned {
            plan = plan.with(Replacement::replace_change(n, Some("not in the planned batches")));
        }
        if self.batches == 0 && !unplanned.is_empty() {
            for c in self.replacement.limit_changes(client).await? {
                plan = plan.with(c);
            }
        }
        Ok(plan)
    }

    async fn apply(
        &self,
        env: &Env,
        ctx: &mut UnitCtx<'_, '_, ReplaceCheckpoint>,
    ) -> Result<ReplaceKarpenterNodesOutputs, StepError> {
        let r = &self.replacement;
        if r.node_pools.is_empty() {
            return Ok(ReplaceKarpenterNodesOutputs::default());
        }
        let client = kube(env)?.clone();
        let batches = batch_outputs(ctx, self.batches)?;
        let raised_before = merge_raised(batches.iter().map(|o| &o.raised_limits));
        loop {
            let old = r.old_nodes(&client).await?;
            let Some(first) = old.first() else { break };
            // One NodePool at a time, within its budget, as the planned batches.
            let pool = first.nodepool.clone();
            let batch: Vec<NodeSummary> = old
                .iter()
                .filter(|n| n.nodepool == pool)
                .take(r.drain.batch_for(pool.as_deref()))
                .cloned()
                .collect();
            env.status(
                &self.id,
                &format!("{} old node(s) the plan did not know; next: {}", old.len(), first.name),
            );
            r.replace(env, &self.id, ctx, batch, &old, &raised_before).await?;
        }
        let raised = merge_raised([&raised_before, &ctx.checkpoint().raised_limits]);
        restore_limits(env, &self.id, &raised, &client).await?;
        Ok(ReplaceKarpenterNodesOutputs {
            replaced: ctx.checkpoint().replaced.clone(),
            nodes_now: nodes(&client, &r.selector())
                .await?
                .into_iter()
                .map(|n| n.name)
                .collect(),
        })
    }
}
