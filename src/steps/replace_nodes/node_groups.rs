//! Rolling EKS managed node groups, one unit per group: a new launch
//! template version (so EKS recomputes max pods for custom networking),
//! `UpdateNodegroupVersion` with a journaled request token and update id,
//! progress from `DescribeUpdate`, then the new nodes checked. The family's
//! `finish` unit puts back the NodePool limits the rolls raised (pods the
//! smaller managed nodes no longer hold may go to Karpenter).

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::limits::{RaisedLimits, RecordsRaises, merge_raised, restore_limits};
use super::{Env, Raise, Settle, kube, nodes, wait_settled};
use crate::aws::eks::{LaunchTemplateRef, UpdateInfo};
use crate::engine::{
    Action, After, Change, ErrorClass, OutputOf, Produces, StepCtx, StepError, StepPlan, Unit, UnitCtx,
};
use crate::k8s::snapshot::{NODEGROUP_LABEL, NodeSummary};
use crate::steps::ids;
use crate::userdata::{self, AmiFamily};
use crate::verify::Expectations;

/// A managed node group to roll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeGroupRoll {
    pub name: String,
    pub launch_template: Option<LaunchTemplateRef>,
    /// Max pods written into the new version's user data: for a custom
    /// AMI, EKS computes none (absent in plans that need no edit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<UserDataPlan>,
}

/// The user data edit of a roll, decided at plan time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDataPlan {
    pub family: AmiFamily,
    /// The source version by number: launch template versions never
    /// change, so apply edits exactly what plan read.
    pub source_version: String,
    pub max_pods: u32,
    /// Max pods the source version's user data sets (`None`: the AMI's own).
    pub before: Option<u32>,
}

/// What one roll did.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RolledNodeGroup {
    pub name: String,
    pub update_id: Option<String>,
    pub launch_template_version: Option<String>,
    pub nodes: Vec<String>,
    pub raised_limits: RaisedLimits,
}

/// What an interrupted roll leaves: each request token before its call,
/// each result after it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct RollCheckpoint {
    pub launch_template_token: Option<String>,
    pub launch_template_version: Option<String>,
    pub update_token: Option<String>,
    pub update_id: Option<String>,
    pub raised_limits: RaisedLimits,
}

impl RecordsRaises for RollCheckpoint {
    fn raised(&mut self) -> &mut RaisedLimits {
        &mut self.raised_limits
    }
}

pub fn roll_id(group: &str) -> String {
    format!("{}/{group}", ids::ROLL_NODE_GROUPS)
}

pub fn finish_id() -> String {
    format!("{}/finish", ids::ROLL_NODE_GROUPS)
}

/// What every roll knows besides its group.
#[derive(Debug, Clone)]
pub struct Rolls {
    pub cluster: String,
    /// Karpenter NodePools that may need headroom for the pods the smaller
    /// managed nodes no longer hold.
    pub node_pools: Vec<String>,
    pub expect: Expectations,
}

/// `roll-node-groups/<name>`.
pub struct RollNodeGroup {
    id: String,
    group: NodeGroupRoll,
    /// The groups rolled before this one (their raised limits count).
    earlier: Vec<String>,
    rolls: Rolls,
}

impl RollNodeGroup {
    pub fn new(group: NodeGroupRoll, earlier: Vec<String>, rolls: Rolls) -> Self {
        RollNodeGroup {
            id: roll_id(&group.name),
            group,
            earlier,
            rolls,
        }
    }

    async fn old_nodes(&self, client: &kube::Client) -> Result<Vec<NodeSummary>, StepError> {
        Ok(nodes(client, &format!("{NODEGROUP_LABEL}={}", self.group.name))
            .await?
            .into_iter()
            .filter(|n| !self.rolls.expect.node_is_migrated(n))
            .collect())
    }

    fn earlier_raised(&self, ctx: &StepCtx<'_>) -> Result<RaisedLimits, StepError> {
        let mut outs = Vec::new();
        for g in &self.earlier {
            if let Some(o) = ctx.output(&OutputOf::<RollNodeGroup>::named(roll_id(g)))? {
                outs.push(o.raised_limits);
            }
        }
        Ok(merge_raised(&outs))
    }

    /// The launch template version the update moves to: made once, its
    /// token and number journaled.
    async fn launch_template(
        &self,
        env: &Env,
        ctx: &mut UnitCtx<'_, '_, RollCheckpoint>,
    ) -> Result<Option<LaunchTemplateRef>, StepError> {
        let Some(lt) = &self.group.launch_template else {
            return Ok(None);
        };
        let version = match ctx.checkpoint().launch_template_version.clone() {
            Some(v) => v,
            None => {
                let id = match (&lt.id, &lt.name) {
                    (Some(id), _) => id.clone(),
                    (None, Some(name)) => env.aws.ec2.launch_template_id(name).await?,
                    (None, None) => {
                        return Err(StepError::failed(format!(
                            "node group {} has a launch template without id or name",
                            self.group.name
                        )));
                    }
                };
                let (source, user_data) = match &self.group.user_data {
                    Some(u) => (u.source_version.clone(), Some(edited_user_data(env, &id, u).await?)),
                    None => (lt.version.clone().unwrap_or_else(|| "$Default".into()), None),
                };
                let token = ctx.once(|c| &mut c.launch_template_token, || uuid::Uuid::new_v4().to_string())?;
                env.status(
                    &self.id,
                    &format!("new launch template version for {}", self.group.name),
                );
                let v = env
                    .aws
                    .ec2
                    .create_launch_template_version(
                        &id,
                        &source,
                        "podnet: nodes under VPC CNI custom networking",
                        &token,
                        user_data.as_deref(),
                    )
                    .await?;
                ctx.save(|c| c.launch_template_version = Some(v.clone()))?;
                v
            }
        };
        Ok(Some(LaunchTemplateRef {
            id: lt.id.clone(),
            name: lt.name.clone(),
            version: Some(version),
        }))
    }

    /// The update this unit started (or starts now), if any old node is left.
    async fn start_update(
        &self,
        env: &Env,
        ctx: &mut UnitCtx<'_, '_, RollCheckpoint>,
        client: &kube::Client,
    ) -> Result<Option<String>, StepError> {
        if let Some(id) = ctx.checkpoint().update_id.clone() {
            return Ok(Some(id));
        }
        if self.old_nodes(client).await?.is_empty() {
            return Ok(None);
        }
        let lt = self.launch_template(env, ctx).await?;
        let token = ctx.once(|c| &mut c.update_token, || uuid::Uuid::new_v4().to_string())?;
        env.status(&self.id, &format!("starting the rolling update of {}", self.group.name));
        let u = env
            .aws
            .eks
            .update_nodegroup_version(&self.rolls.cluster, &self.group.name, lt.as_ref(), false, &token)
            .await?;
        ctx.save(|c| c.update_id = Some(u.id.clone()))?;
        Ok(Some(u.id))
    }

    fn update_failed(&self, id: &str, u: &UpdateInfo) -> StepError {
        let errs: Vec<String> = u
            .errors
            .iter()
            .map(|e| format!("{}: {} ({})", e.code, e.message, e.resource_ids.join(", ")))
            .collect();
        let eviction = u.errors.iter().any(|e| e.code == "PodEvictionFailure");
        StepError::new(
            if eviction {
                ErrorClass::Blocked
            } else {
                ErrorClass::Failed
            },
            format!(
                "the rolling update {id} of {} {}: {}",
                self.group.name,
                u.status.to_lowercase(),
                errs.join("; ")
            ),
        )
        .hint(if eviction {
            "pods could not be evicted within 15 minutes (a PodDisruptionBudget?); fix it, then run `podnet resume`"
        } else {
            "see `aws eks describe-update`; fix the cause, then run `podnet resume`"
        })
    }

    /// Follows the update to its end (`waits.node_group_update` at most).
    async fn follow_update(&self, env: &Env, client: &kube::Client, id: &str) -> Result<(), StepError> {
        let name = &self.group.name;
        let deadline = Instant::now() + env.waits.node_group_update;
        loop {
            let u = env
                .aws
                .eks
                .describe_update(&self.rolls.cluster, id, Some(name), None)
                .await?;
            match u.status.as_str() {
                "Successful" => return Ok(()),
                "Failed" | "Cancelled" => return Err(self.update_failed(id, &u)),
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(StepError::new(
                    ErrorClass::Timeout,
                    format!(
                        "the rolling update {id} of {name} is still {} after {}",
                        u.status,
                        humantime::format_duration(env.waits.node_group_update)
                    ),
                )
                .hint("run `podnet resume` to keep waiting (or raise waits.node_group_update in the plan file)"));
            }
            let old = self.old_nodes(client).await.map(|v| v.len()).unwrap_or(0);
            env.status(
                &self.id,
                &format!("{name}: update {id} {}, {old} old node(s) left", u.status),
            );
            tokio::time::sleep(env.waits.poll).await;
        }
    }
}

impl Produces for RollNodeGroup {
    type Output = RolledNodeGroup;
}

#[async_trait]
impl Unit<Env> for RollNodeGroup {
    type Checkpoint = RollCheckpoint;

    fn id(&self) -> &str {
        &self.id
    }

    fn describe(&self) -> String {
        format!("roll managed node group {}", self.group.name)
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let plan = StepPlan::new(&self.id, self.describe());
        let old = self.old_nodes(kube(env)?).await?;
        let name = &self.group.name;
        if old.is_empty() {
            return Ok(plan.with(
                Change::new(Action::NoOp, "aws_eks_node_group", name).because("every node runs custom networking"),
            ));
        }
        let mut c = Change::new(Action::Update, "aws_eks_node_group", name);
        if let Some(lt) = &self.group.launch_template {
            c = c.attr(
                "launch_template.version",
                Some(serde_json::json!(lt.version)),
                After::KnownAfterApply,
            );
        }
        if let Some(u) = &self.group.user_data {
            c = c.change(format!("user_data.max_pods ({})", u.family), u.before, u.max_pods);
        }
        Ok(plan.with(c.because(format!(
            "rolling update replaces {}",
            old.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
        ))))
    }

    async fn apply(&self, env: &Env, ctx: &mut UnitCtx<'_, '_, RollCheckpoint>) -> Result<RolledNodeGroup, StepError> {
        let client = kube(env)?.clone();
        let name = &self.group.name;
        let update_id = self.start_update(env, ctx, &client).await?;
        if let Some(id) = &update_id {
            self.follow_update(env, &client, id).await?;
        }
        let old: BTreeSet<String> = self.old_nodes(&client).await?.into_iter().map(|n| n.name).collect();
        if !old.is_empty() {
            return Err(StepError::new(
                ErrorClass::Failed,
                format!(
                    "after the update of {name}, nodes still run without custom networking: {}",
                    old.into_iter().collect::<Vec<_>>().join(", ")
                ),
            )
            .hint(
                "check the node group's launch template and the vpc-cni addon configuration, then run `podnet resume`",
            ));
        }
        let earlier = self.earlier_raised(ctx)?;
        let settle = Settle {
            selector: format!("{NODEGROUP_LABEL}={name}"),
            old: &BTreeSet::new(),
            expect: &self.rolls.expect,
            timeout: env.waits.replacement_settle,
        };
        let raise = Raise {
            pools: &self.rolls.node_pools,
            earlier: &earlier,
            ctx: &mut *ctx,
        };
        let nodes = wait_settled(env, &self.id, settle, Some(raise)).await?;
        let c = ctx.checkpoint();
        Ok(RolledNodeGroup {
            name: name.clone(),
            update_id,
            launch_template_version: c.launch_template_version.clone(),
            nodes,
            raised_limits: c.raised_limits.clone(),
        })
    }
}

/// The source version's user data with max pods set as planned, base64
/// as EC2 takes it. The edit is pure, so a retry makes the same bytes.
pub(super) async fn edited_user_data(env: &Env, id: &str, u: &UserDataPlan) -> Result<String, StepError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let data = env
        .aws
        .ec2
        .launch_template_user_data(id, &u.source_version)
        .await?
        .user_data;
    let text = data
        .and_then(|d| b64.decode(d).ok())
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or_else(|| {
            StepError::failed(format!(
                "launch template {id} version {} has no readable user data",
                u.source_version
            ))
        })?;
    let e = userdata::set_max_pods(&text, u.family, u.max_pods).map_err(|e| {
        StepError::failed(format!(
            "launch template {id} version {}: {e}: {}",
            u.source_version,
            e.lines.join(" | ")
        ))
    })?;
    Ok(b64.encode(e.user_data))
}

/// `roll-node-groups/finish`: the NodePool limits the rolls raised, put back
/// where the migrated nodes fit.
pub struct FinishRolls {
    id: String,
    groups: Vec<String>,
    /// `roll-self-managed/<group>/batch-N` units, whose raised limits are
    /// put back too.
    self_managed_batches: Vec<String>,
}

impl FinishRolls {
    pub fn new(groups: Vec<String>, self_managed_batches: Vec<String>) -> Self {
        FinishRolls {
            id: finish_id(),
            groups,
            self_managed_batches,
        }
    }
}

/// The limits the finish put back or left raised, by NodePool.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FinishRollsOutput {
    pub raised_limits: RaisedLimits,
}

impl Produces for FinishRolls {
    type Output = FinishRollsOutput;
}

#[async_trait]
impl Unit<Env> for FinishRolls {
    type Checkpoint = ();

    fn id(&self) -> &str {
        &self.id
    }

    fn describe(&self) -> String {
        if self.groups.is_empty() && self.self_managed_batches.is_empty() {
            "roll managed node groups (none selected)".into()
        } else {
            "put back NodePool limits the node group rolls raised".into()
        }
    }

    async fn observe(&self, _env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let plan = StepPlan::new(&self.id, self.describe());
        Ok(if self.groups.is_empty() && self.self_managed_batches.is_empty() {
            plan.note("no managed node group selected")
        } else {
            plan
        })
    }

    async fn apply(&self, env: &Env, ctx: &mut UnitCtx<'_, '_, ()>) -> Result<FinishRollsOutput, StepError> {
        let mut outs = Vec::new();
        for g in &self.groups {
            if let Some(o) = ctx.output(&OutputOf::<RollNodeGroup>::named(roll_id(g)))? {
                outs.push(o.raised_limits);
            }
        }
        for id in &self.self_managed_batches {
            let of = OutputOf::<super::self_managed::ReplaceSelfManagedBatch>::named(id.clone());
            if let Some(o) = ctx.output(&of)? {
                outs.push(o.raised_limits);
            }
        }
        let raised = merge_raised(&outs);
        if let Some(client) = env.kube.as_ref() {
            restore_limits(env, &self.id, &raised, client).await?;
        }
        Ok(FinishRollsOutput { raised_limits: raised })
    }
}
