//! Replacing self-managed node groups, through their Auto Scaling groups:
//!
//! - `roll-self-managed/<group>/launch-template`
//!   ([`PointSelfManagedGroup`]): a new version of the group's launch
//!   template whose user data sets the planned max pods (its token and
//!   number journaled), then `UpdateAutoScalingGroup` pointing the group at
//!   it. Only instances launched afterwards use it. On a rollback the group
//!   is pointed back at the version the apply started from.
//! - `roll-self-managed/<group>/batch-N` ([`ReplaceSelfManagedBatch`]): the
//!   batch's old nodes cordoned and drained (PDBs honoured), each instance
//!   terminated with `ShouldDecrementDesiredCapacity=false` so the group
//!   launches a replacement from the version it names, then a wait until
//!   the group is back at its desired capacity with every instance's node
//!   Ready, on its ENIConfig, with the planned `capacity.pods`, and nothing
//!   pending. A replacement holds fewer pods than the node it replaces, so
//!   the pods it no longer holds may go to Karpenter: a NodePool limit that
//!   would stop that is raised (original checkpointed) and put back by
//!   `roll-node-groups/finish`, which runs after these units. Each terminated instance is checkpointed; a node is "old"
//!   while it lacks the ENIConfig label, so a resumed batch finds exactly
//!   what it has left.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::limits::{RaisedLimits, RecordsRaises, merge_raised};
use super::node_groups::{RollNodeGroup, edited_user_data};
use super::{
    DrainSettings, Env, Gone, Raise, Settle, UserDataPlan, kube, new_node_problems, nodes, wait_nodes_gone,
    wait_settled,
};
use crate::aws::autoscaling::AsgInfo;
use crate::aws::eks::LaunchTemplateRef;
use crate::discovery::instance_id;
use crate::engine::{
    Action, After, Change, ErrorClass, OutputOf, Produces, StepCtx, StepError, StepPlan, Unit, UnitCtx,
};
use crate::k8s::ops;
use crate::k8s::snapshot::NodeSummary;
use crate::steps::ids;
use crate::userdata;
use crate::verify::Expectations;

/// Nodes in no managed node group, no NodePool and not on Fargate.
pub const SELF_MANAGED_SELECTOR: &str =
    "!eks.amazonaws.com/nodegroup,!karpenter.sh/nodepool,eks.amazonaws.com/compute-type notin (fargate)";

/// A self-managed group to replace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfManagedRoll {
    /// The Auto Scaling group.
    pub group: String,
    /// The group's launch template as it named it at plan time (the
    /// version as written: `$Latest`, `$Default` or a number). On a
    /// rollback: the version to point the group back at.
    pub launch_template: LaunchTemplateRef,
    /// The user data edit (`None` on a rollback: no new version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<UserDataPlan>,
    /// The group's nodes at plan time, sorted, `batch_size` a batch.
    pub batches: Vec<Vec<String>>,
}

pub fn point_id(group: &str) -> String {
    format!("{}/{group}/launch-template", ids::ROLL_SELF_MANAGED)
}

pub fn batch_id(group: &str, n: usize) -> String {
    format!("{}/{group}/batch-{n}", ids::ROLL_SELF_MANAGED)
}

async fn describe(env: &Env, group: &str) -> Result<AsgInfo, StepError> {
    env.aws
        .autoscaling
        .describe_groups(&[group.to_string()])
        .await?
        .into_iter()
        .find(|g| g.name == group)
        .ok_or_else(|| {
            StepError::new(ErrorClass::NotFound, format!("Auto Scaling group {group} is gone"))
                .hint("the plan names a group that no longer exists: plan again")
        })
}

/// The launch template version the group now uses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PointedGroup {
    pub group: String,
    pub launch_template_id: String,
    /// The version the group named before this unit.
    pub version_before: Option<String>,
    pub version: String,
}

/// What an interrupted launch template unit leaves: the version the group
/// named before it (recorded before any change), the new version's token
/// before the call and its number after.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct PointCheckpoint {
    pub version_before: Option<String>,
    pub launch_template_token: Option<String>,
    pub launch_template_version: Option<String>,
}

/// `roll-self-managed/<group>/launch-template`.
pub struct PointSelfManagedGroup {
    id: String,
    roll: SelfManagedRoll,
}

impl PointSelfManagedGroup {
    pub fn new(roll: SelfManagedRoll) -> Self {
        PointSelfManagedGroup {
            id: point_id(&roll.group),
            roll,
        }
    }

    async fn template_id(&self, env: &Env) -> Result<String, StepError> {
        let lt = &self.roll.launch_template;
        match (&lt.id, &lt.name) {
            (Some(id), _) => Ok(id.clone()),
            (None, Some(name)) => Ok(env.aws.ec2.launch_template_id(name).await?),
            (None, None) => Err(StepError::failed(format!(
                "Auto Scaling group {} has a launch template without id or name",
                self.roll.group
            ))),
        }
    }

    /// The group's current version already sets the planned max pods (an
    /// earlier apply, or someone else, did this unit's work).
    async fn already_set(&self, env: &Env, id: &str, current: &str, u: &UserDataPlan) -> Result<bool, StepError> {
        use base64::Engine as _;
        let data = env.aws.ec2.launch_template_user_data(id, current).await?;
        let text = data
            .user_data
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
            .and_then(|d| String::from_utf8(d).ok());
        Ok(text.is_some_and(|t| userdata::read_max_pods(&t, u.family).ok().flatten() == Some(u.max_pods)))
    }

    /// The version to point the group at: the rollback's, an earlier
    /// attempt's, the group's own when it already sets max pods, or new.
    async fn target(
        &self,
        env: &Env,
        ctx: &mut UnitCtx<'_, '_, PointCheckpoint>,
        id: &str,
        current: Option<&str>,
    ) -> Result<String, StepError> {
        let Some(u) = &self.roll.user_data else {
            return self.roll.launch_template.version.clone().ok_or_else(|| {
                StepError::failed(format!("no launch template version to put {} back on", self.roll.group))
            });
        };
        if let Some(v) = ctx.checkpoint().launch_template_version.clone() {
            return Ok(v);
        }
        if let Some(cur) = current
            && self.already_set(env, id, cur, u).await?
        {
            let v = env.aws.ec2.launch_template_user_data(id, cur).await?.version;
            ctx.save(|c| c.launch_template_version = Some(v.clone()))?;
            return Ok(v);
        }
        let data = edited_user_data(env, id, u).await?;
        let token = ctx.once(|c| &mut c.launch_template_token, || uuid::Uuid::new_v4().to_string())?;
        env.status(
            &self.id,
            &format!("new launch template version for {}", self.roll.group),
        );
        let v = env
            .aws
            .ec2
            .create_launch_template_version(
                id,
                &u.source_version,
                "podnet: nodes under VPC CNI custom networking",
                &token,
                Some(&data),
            )
            .await?;
        ctx.save(|c| c.launch_template_version = Some(v.clone()))?;
        Ok(v)
    }
}

impl Produces for PointSelfManagedGroup {
    type Output = PointedGroup;
}

#[async_trait]
impl Unit<Env> for PointSelfManagedGroup {
    type Checkpoint = PointCheckpoint;

    fn id(&self) -> &str {
        &self.id
    }

    fn describe(&self) -> String {
        match &self.roll.user_data {
            Some(u) => format!(
                "new launch template version for self-managed group {} (max pods {})",
                self.roll.group, u.max_pods
            ),
            None => format!(
                "point self-managed group {} back at its launch template version {}",
                self.roll.group,
                self.roll.launch_template.version.as_deref().unwrap_or("?")
            ),
        }
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let plan = StepPlan::new(&self.id, self.describe());
        let g = describe(env, &self.roll.group).await?;
        let current = g.launch_template.as_ref().and_then(|t| t.version.clone());
        let id = self.template_id(env).await?;
        let mut c = Change::new(Action::Update, "aws_autoscaling_group", &self.roll.group);
        match &self.roll.user_data {
            Some(u) => {
                if let Some(cur) = &current
                    && self.already_set(env, &id, cur, u).await?
                {
                    return Ok(plan.with(
                        Change::new(Action::NoOp, "aws_autoscaling_group", &self.roll.group).because(format!(
                            "its launch template version {cur} already sets max pods {}",
                            u.max_pods
                        )),
                    ));
                }
                c = c
                    .attr(
                        "launch_template.version",
                        Some(serde_json::json!(current)),
                        After::KnownAfterApply,
                    )
                    .change(format!("user_data.max_pods ({})", u.family), u.before, u.max_pods)
                    .because(format!(
                        "a new version of {id} from version {}; instances launched from then on get it",
                        u.source_version
                    ));
            }
            None => {
                let want = self.roll.launch_template.version.clone();
                if current == want {
                    return Ok(plan.note("the group already names that version"));
                }
                c = c.change("launch_template.version", current, want);
            }
        }
        Ok(plan.with(c))
    }

    async fn apply(&self, env: &Env, ctx: &mut UnitCtx<'_, '_, PointCheckpoint>) -> Result<PointedGroup, StepError> {
        let g = describe(env, &self.roll.group).await?;
        let current = g.launch_template.as_ref().and_then(|t| t.version.clone());
        let id = self.template_id(env).await?;
        // "" records a group that named no version.
        let before = ctx.once(|c| &mut c.version_before, || current.clone().unwrap_or_default())?;
        let version = self.target(env, ctx, &id, current.as_deref()).await?;
        if current.as_deref() != Some(version.as_str()) {
            env.status(
                &self.id,
                &format!("pointing {} at launch template version {version}", self.roll.group),
            );
            env.aws
                .autoscaling
                .set_launch_template(&self.roll.group, &id, &version)
                .await?;
        }
        Ok(PointedGroup {
            group: self.roll.group.clone(),
            launch_template_id: id,
            version_before: Some(before).filter(|v| !v.is_empty()),
            version,
        })
    }
}

/// The group's instances when a batch first started.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub instances: BTreeSet<String>,
}

/// A node whose instance this unit terminated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminatedInstance {
    pub node: String,
    pub instance: String,
    pub evicted: usize,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SelfManagedCheckpoint {
    /// What existed when the batch first started, so a resumed batch still
    /// judges the replacements it brought (absent until then).
    pub before: Option<Snapshot>,
    pub terminated: Vec<TerminatedInstance>,
    /// NodePool limits raised for the pods the replacements no longer hold
    /// (custom networking gives a node fewer pods), originals first.
    pub raised_limits: RaisedLimits,
}

impl RecordsRaises for SelfManagedCheckpoint {
    fn raised(&mut self) -> &mut RaisedLimits {
        &mut self.raised_limits
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SelfManagedBatchOutput {
    pub terminated: Vec<TerminatedInstance>,
    /// The group's nodes once the batch settled.
    pub nodes: Vec<String>,
    #[serde(default)]
    pub raised_limits: RaisedLimits,
}

/// What every self-managed batch knows besides its group: how to drain,
/// what a migrated node looks like, the NodePools that may need headroom
/// for displaced pods, and the units before it whose raised limits count.
#[derive(Debug, Clone)]
pub struct SelfManagedRolls {
    pub drain: DrainSettings,
    pub expect: Expectations,
    pub node_pools: Vec<String>,
    /// `roll-node-groups/<name>` units before the self-managed ones.
    pub node_group_rolls: Vec<String>,
}

/// `roll-self-managed/<group>/batch-N`.
pub struct ReplaceSelfManagedBatch {
    id: String,
    group: String,
    number: usize,
    batches: usize,
    nodes: Vec<String>,
    drain: DrainSettings,
    expect: Expectations,
    node_pools: Vec<String>,
    node_group_rolls: Vec<String>,
    /// Self-managed batch units before this one.
    earlier: Vec<String>,
}

impl ReplaceSelfManagedBatch {
    pub fn new(roll: &SelfManagedRoll, number: usize, earlier: Vec<String>, rolls: &SelfManagedRolls) -> Self {
        ReplaceSelfManagedBatch {
            id: batch_id(&roll.group, number),
            group: roll.group.clone(),
            number,
            batches: roll.batches.len(),
            nodes: roll.batches.get(number - 1).cloned().unwrap_or_default(),
            drain: rolls.drain.clone(),
            expect: rolls.expect.clone(),
            node_pools: rolls.node_pools.clone(),
            node_group_rolls: rolls.node_group_rolls.clone(),
            earlier,
        }
    }

    /// The limits earlier units raised (their originals come first).
    fn earlier_raised(&self, ctx: &UnitCtx<'_, '_, SelfManagedCheckpoint>) -> Result<RaisedLimits, StepError> {
        let mut outs = Vec::new();
        for id in &self.node_group_rolls {
            if let Some(o) = ctx.output(&OutputOf::<RollNodeGroup>::named(id.clone()))? {
                outs.push(o.raised_limits);
            }
        }
        for id in &self.earlier {
            if let Some(o) = ctx.output(&OutputOf::<ReplaceSelfManagedBatch>::named(id.clone()))? {
                outs.push(o.raised_limits);
            }
        }
        Ok(merge_raised(&outs))
    }

    /// This batch's nodes not yet as planned.
    async fn old(&self, client: &kube::Client) -> Result<Vec<NodeSummary>, StepError> {
        Ok(nodes(client, SELF_MANAGED_SELECTOR)
            .await?
            .into_iter()
            .filter(|n| self.nodes.contains(&n.name) && !self.expect.node_is_migrated(n))
            .collect())
    }

    /// Cordons and drains the nodes, then terminates their instances with
    /// replacements; each termination is checkpointed.
    async fn replace(
        &self,
        env: &Env,
        ctx: &mut UnitCtx<'_, '_, SelfManagedCheckpoint>,
        old: Vec<NodeSummary>,
    ) -> Result<(), StepError> {
        let client = kube(env)?.clone();
        let mut live = Vec::new();
        for n in old {
            match ops::cordon(&client, &n.name).await {
                Ok(()) => live.push(n),
                Err(e) if e.is_not_found() => env.status(&self.id, &format!("{} is already gone", n.name)),
                Err(e) => return Err(e.into()),
            }
        }
        let policy = self.drain.policy(env.waits.poll);
        for n in live {
            let progress = |m: String| env.status(&self.id, &m);
            let report = ops::drain(&client, &n.name, &policy, &progress).await?;
            let Some(instance) = n.provider_id.as_deref().and_then(instance_id).map(str::to_string) else {
                return Err(StepError::failed(format!(
                    "node {} has no EC2 instance id in its providerID",
                    n.name
                )));
            };
            if ctx.checkpoint().terminated.iter().any(|t| t.instance == instance) {
                continue;
            }
            // Observe first: an instance an earlier attempt terminated is
            // already out of the group (or on its way).
            let member = env
                .aws
                .autoscaling
                .instance_groups(std::slice::from_ref(&instance))
                .await?;
            if member.iter().any(|m| m.is_live()) {
                env.status(
                    &self.id,
                    &format!("terminating {instance} ({}) in {}", n.name, self.group),
                );
                env.aws.autoscaling.terminate_with_replacement(&instance).await?;
            }
            let done = TerminatedInstance {
                node: n.name.clone(),
                instance,
                evicted: report.evicted.len(),
            };
            ctx.save(|c| c.terminated.push(done))?;
        }
        Ok(())
    }

    /// Waits until the group is back at its desired capacity, without the
    /// terminated instances, each replacement's node Ready and as planned.
    async fn wait_replaced(
        &self,
        env: &Env,
        gone: &BTreeSet<String>,
        before: &Snapshot,
    ) -> Result<Vec<String>, StepError> {
        let client = kube(env)?;
        let deadline = Instant::now() + env.waits.replacement_settle;
        loop {
            let g = describe(env, &self.group).await?;
            let all = nodes(client, SELF_MANAGED_SELECTOR).await?;
            let mut problems = Vec::new();
            let live: Vec<_> = g.live_instances().collect();
            if let Some(left) = live.iter().find(|i| gone.contains(&i.instance_id)) {
                problems.push(format!("{} is still in service", left.instance_id));
            }
            if (live.len() as u32) < g.desired_capacity {
                problems.push(format!(
                    "{} of {} instance(s) in service",
                    live.len(),
                    g.desired_capacity
                ));
            }
            // Only replacements are judged: instances there before the
            // batch (old ones of later batches, or one that never joined)
            // are not this batch's to fix.
            let mut replacements: Vec<&NodeSummary> = Vec::new();
            for i in live.iter().filter(|i| !before.instances.contains(&i.instance_id)) {
                match all
                    .iter()
                    .find(|n| n.provider_id.as_deref().and_then(instance_id) == Some(i.instance_id.as_str()))
                {
                    Some(n) => replacements.push(n),
                    None => problems.push(format!("{} has not registered a node", i.instance_id)),
                }
            }
            problems.extend(new_node_problems(&replacements, &self.expect)?);
            if problems.is_empty() {
                return Ok(replacements.iter().map(|n| n.name.clone()).collect());
            }
            if Instant::now() >= deadline {
                return Err(StepError::new(
                    ErrorClass::Timeout,
                    format!(
                        "self-managed group {} did not replace its instances in {}s: {}",
                        self.group,
                        env.waits.replacement_settle.as_secs(),
                        problems.join("; ")
                    ),
                )
                .hint("check the group's activity (`aws autoscaling describe-scaling-activity`) and the new nodes' kubelet, then run `podnet resume`"));
            }
            env.status(
                &self.id,
                &format!("waiting for {}: {}", self.group, problems.join("; ")),
            );
            tokio::time::sleep(env.waits.poll).await;
        }
    }
}

impl Produces for ReplaceSelfManagedBatch {
    type Output = SelfManagedBatchOutput;
}

#[async_trait]
impl Unit<Env> for ReplaceSelfManagedBatch {
    type Checkpoint = SelfManagedCheckpoint;

    fn id(&self) -> &str {
        &self.id
    }

    fn describe(&self) -> String {
        format!(
            "replace {} (batch {} of {}, self-managed group {})",
            self.nodes.join(", "),
            self.number,
            self.batches,
            self.group
        )
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let mut plan = StepPlan::new(&self.id, self.describe());
        let old = self.old(kube(env)?).await?;
        if old.is_empty() {
            return Ok(plan.note("its nodes are replaced or gone"));
        }
        for n in &old {
            plan = plan.with(
                Change::new(Action::Replace, "self_managed_node", &n.name)
                    .attr(
                        "capacity.pods",
                        Some(serde_json::json!(n.capacity_pods)),
                        After::KnownAfterApply,
                    )
                    .because(format!(
                        "{} {}; terminated in {} with a replacement",
                        n.zone.as_deref().unwrap_or("?"),
                        n.instance_type.as_deref().unwrap_or("?"),
                        self.group
                    )),
            );
        }
        Ok(plan.note("replacements: the Auto Scaling group launches them from the new launch template version"))
    }

    async fn apply(
        &self,
        env: &Env,
        ctx: &mut UnitCtx<'_, '_, SelfManagedCheckpoint>,
    ) -> Result<SelfManagedBatchOutput, StepError> {
        let client = kube(env)?.clone();
        let before = match ctx.checkpoint().before.clone() {
            Some(b) => b,
            None => {
                let b = Snapshot {
                    instances: describe(env, &self.group)
                        .await?
                        .instances
                        .into_iter()
                        .map(|i| i.instance_id)
                        .collect(),
                };
                ctx.save(|c| c.before = Some(b.clone()))?;
                b
            }
        };
        let old = self.old(&client).await?;
        if !old.is_empty() {
            env.status(
                &self.id,
                &format!(
                    "replacing {}",
                    old.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            );
            self.replace(env, ctx, old).await?;
        }
        let terminated = ctx.checkpoint().terminated.clone();
        let names: Vec<String> = terminated.iter().map(|t| t.node.clone()).collect();
        let words = Gone {
            after: "their instances were terminated",
            hint: "check the instances in EC2 and the cloud controller, then run `podnet resume`",
            waiting: &|left| format!("waiting for {left} to go"),
        };
        wait_nodes_gone(env, &self.id, &names, words).await?;
        let gone: BTreeSet<String> = terminated.iter().map(|t| t.instance.clone()).collect();
        let replacements = self.wait_replaced(env, &gone, &before).await?;
        // Pending pods are awaited with every other node counted old, so
        // only this group's replacements are judged (a cluster autoscaler
        // scaling another group meanwhile is not this batch's concern).
        let others: BTreeSet<String> = nodes(&client, "")
            .await?
            .into_iter()
            .map(|n| n.name)
            .filter(|n| !replacements.contains(n))
            .collect();
        let settle = Settle {
            selector: SELF_MANAGED_SELECTOR.to_string(),
            old: &others,
            expect: &self.expect,
            timeout: env.waits.replacement_settle,
        };
        let earlier = self.earlier_raised(ctx)?;
        let raise = Raise {
            pools: &self.node_pools,
            earlier: &earlier,
            ctx: &mut *ctx,
        };
        let fresh = wait_settled(env, &self.id, settle, Some(raise)).await?;
        Ok(SelfManagedBatchOutput {
            terminated,
            nodes: fresh,
            raised_limits: ctx.checkpoint().raised_limits.clone(),
        })
    }
}
