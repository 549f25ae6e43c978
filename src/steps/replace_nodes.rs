//! Node replacement. Existing nodes never switch to custom networking; only
//! nodes launched after it was enabled do, so every node is replaced.
//!
//! - replace-karpenter-nodes: batch by batch, cordon, drain with kubectl's
//!   semantics (PDBs honoured), delete the NodeClaim, and wait until the
//!   replacements Karpenter launches for the evicted (now pending) pods are
//!   Ready on their ENIConfig with the expected `capacity.pods`. A node is
//!   "old" while it lacks the eniConfig label, so a resumed run finds exactly
//!   the nodes left; each finished node is also checkpointed.
//! - roll-node-groups: per managed node group, a new launch template version
//!   (so EKS recomputes max pods), `UpdateNodegroupVersion` with a journaled
//!   request token and update id, progress from `DescribeUpdate`, then the
//!   new nodes' `capacity.pods` checked.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Env, ids};
use crate::aws::eks::LaunchTemplateRef;
use crate::engine::{Action, After, Change, ErrorClass, Outputs, Step, StepCtx, StepError, StepPlan};
use crate::k8s::ops::{self, DrainPolicy, DrainReport};
use crate::k8s::snapshot::{NODEGROUP_LABEL, NODEPOOL_LABEL, NodeSummary};
use crate::k8s::{self, KubeError, list_all, with_retry};
use crate::verify::Expectations;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainSettings {
    pub batch_size: u32,
    pub drain_timeout_secs: u64,
    pub evict_emptydir: bool,
    pub evict_unmanaged: bool,
    pub pdb_bypass_after_timeout: bool,
    /// How long replacements may take to be Ready and hold the pods.
    pub settle_timeout_secs: u64,
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

/// Waits until nothing is pending and every node of `selector` that is not
/// in `old` is Ready, on its ENIConfig, with the expected capacity.
async fn wait_settled(
    env: &Env,
    step: &str,
    selector: &str,
    old: &BTreeSet<String>,
    expect: &Expectations,
    timeout: Duration,
    mut karpenter: Option<(&[String], &mut StepCtx<'_>)>,
) -> Result<Vec<String>, StepError> {
    let client = kube(env)?;
    let deadline = Instant::now() + timeout;
    let mut waits = 0u32;
    loop {
        let all = nodes(client, selector).await?;
        let fresh: Vec<&NodeSummary> = all.iter().filter(|n| !old.contains(&n.name)).collect();
        let mut problems = Vec::new();
        for n in &fresh {
            if !n.ready {
                problems.push(format!("{} is not Ready", n.name));
            } else if !expect.node_is_migrated(n) {
                problems.push(format!(
                    "{} has no ENIConfig label (custom networking not in effect)",
                    n.name
                ));
            } else if let Some(want) = expect.expected_pods(n)
                && n.capacity_pods != Some(want)
            {
                // Wrong capacity does not fix itself: fail at once.
                return Err(StepError::new(
                        ErrorClass::Failed,
                        format!(
                            "new node {} ({}) reports capacity.pods {} but custom networking gives it {want}",
                            n.name,
                            n.instance_type.as_deref().unwrap_or("?"),
                            n.capacity_pods.map(|c| c.to_string()).unwrap_or_else(|| "unset".into())
                        ),
                    )
                    .hint("pods on it would stick on IP assignment: check Karpenter's RESERVED_ENIS (or the node group's max pods), then run `podnet resume`"));
            }
        }
        let stale: BTreeSet<String> = nodes(client, "")
            .await?
            .into_iter()
            .filter(|n| !expect.node_is_migrated(n))
            .map(|n| n.name)
            .collect();
        let pending = pending_pods(client, &stale).await?;
        if problems.is_empty() && pending.is_empty() {
            return Ok(fresh.iter().map(|n| n.name.clone()).collect());
        }
        // Pods still pending with every new node up: smaller max pods mean
        // more nodes than before, and the NodePool limit may forbid them.
        waits += 1;
        if waits.is_multiple_of(5)
            && problems.is_empty()
            && let Some((pools, ctx)) = karpenter.as_mut()
        {
            ensure_headroom(env, step, pools, ctx, client).await?;
        }
        if Instant::now() >= deadline {
            let mut why = problems;
            if !pending.is_empty() {
                why.push(format!(
                    "{} pod(s) pending: {}",
                    pending.len(),
                    pending.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            return Err(StepError::new(
                ErrorClass::Timeout,
                format!(
                    "replacement capacity did not settle in {}s: {}",
                    timeout.as_secs(),
                    why.join("; ")
                ),
            )
            .hint("check why pods are pending (`kubectl get events`); fix it, then run `podnet resume`"));
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

/// A cpu quantity in millicores (`"10"`, `"1500m"`, `2`).
fn cpu_millis(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64().map(|c| (c * 1000.0).round() as u64),
        serde_json::Value::String(s) => match s.strip_suffix('m') {
            Some(m) => m.parse().ok(),
            None => s.parse::<f64>().ok().map(|c| (c * 1000.0).round() as u64),
        },
        _ => None,
    }
}

/// A NodePool's cpu limit and what its NodeClaims hold (millicores), and
/// the largest NodeClaim (what one replacement may need).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Headroom {
    limit: Option<u64>,
    used: u64,
    largest: u64,
}

impl Headroom {
    /// The limit one more node of the largest size needs, if the current
    /// one is too low.
    fn raise_to(&self) -> Option<u64> {
        let limit = self.limit?;
        let need = self.used + self.largest;
        (need > limit).then_some(need)
    }
}

/// The NodePool's headroom, and its `spec.limits.cpu` as written (what a
/// restore puts back).
async fn headroom(client: &kube::Client, nodepool: &str) -> Result<(Headroom, serde_json::Value), StepError> {
    let pools: Api<DynamicObject> = Api::all_with(client.clone(), &k8s::nodepool_resource());
    let np = with_retry(&format!("get NodePool {nodepool}"), || pools.get_opt(nodepool)).await?;
    let written = np
        .map(|np| np.data["spec"]["limits"]["cpu"].clone())
        .unwrap_or(serde_json::Value::Null);
    let limit = cpu_millis(&written);
    let claims: Api<DynamicObject> = Api::all_with(client.clone(), &k8s::nodeclaim_resource());
    let lp = ListParams::default().labels(&format!("{NODEPOOL_LABEL}={nodepool}"));
    let claims = list_all(&claims, &lp, "NodeClaims").await?;
    let cpus: Vec<u64> = claims
        .iter()
        .filter_map(|c| cpu_millis(&c.data["status"]["capacity"]["cpu"]))
        .collect();
    let h = Headroom {
        limit,
        used: cpus.iter().sum(),
        largest: cpus.iter().copied().max().unwrap_or(0),
    };
    Ok((h, written))
}

/// Merge-patch a NodePool's `spec.limits.cpu`.
async fn set_cpu_limit(
    client: &kube::Client,
    nodepool: &str,
    cpu: serde_json::Value,
    action: &str,
) -> Result<(), StepError> {
    let pools: Api<DynamicObject> = Api::all_with(client.clone(), &k8s::nodepool_resource());
    let patch = serde_json::json!({"spec": {"limits": {"cpu": cpu}}});
    with_retry(&format!("{action} the cpu limit of NodePool {nodepool}"), || {
        let (pools, patch) = (pools.clone(), patch.clone());
        async move {
            pools
                .patch(nodepool, &PatchParams::default(), &Patch::Merge(&patch))
                .await
        }
    })
    .await?;
    Ok(())
}

fn cores(m: u64) -> String {
    if m.is_multiple_of(1000) {
        (m / 1000).to_string()
    } else {
        format!("{m}m")
    }
}

/// Karpenter cannot launch a replacement while a NodePool sits at its
/// cpu limit, and a node being replaced counts until it is gone: raise
/// the limit by one node of the largest size for the duration, the
/// original checkpointed first so a resume restores it.
async fn ensure_headroom(
    env: &Env,
    step: &str,
    node_pools: &[String],
    ctx: &mut StepCtx<'_>,
    client: &kube::Client,
) -> Result<(), StepError> {
    for np in node_pools {
        let (h, original) = headroom(client, np).await?;
        let Some(to) = h.raise_to() else { continue };
        let _: serde_json::Value = ctx.checkpoint_once(&format!("nodepool-cpu-limit:{np}"), || original)?;
        env.status(
            step,
            &format!(
                "NodePool {np} holds {} of its {} cpu limit: raising it to {} so a replacement can launch (put back at the end if the migrated nodes fit in it)",
                cores(h.used),
                cores(h.limit.unwrap_or(0)),
                cores(to)
            ),
        );
        set_cpu_limit(client, np, serde_json::json!(cores(to)), "raise").await?;
    }
    Ok(())
}

/// Put back every NodePool limit this step raised.
async fn restore_limits(
    env: &Env,
    step: &str,
    node_pools: &[String],
    ctx: &StepCtx<'_>,
    client: &kube::Client,
) -> Result<(), StepError> {
    for np in node_pools {
        let Some(original) = ctx.checkpointed::<serde_json::Value>(&format!("nodepool-cpu-limit:{np}"))? else {
            continue;
        };
        let (h, _) = headroom(client, np).await?;
        if cpu_millis(&original).is_some_and(|o| h.used > o) {
            // The migrated nodes hold fewer pods each, so the pool needs
            // more cpu than its old limit: putting it back would stop
            // Karpenter replacing any node.
            env.status(
                step,
                &format!(
                    "NodePool {np} now holds {} cpu, above its original limit {}: the raised limit stays; set spec.limits.cpu: \"{}\" in the NodePool's source (Helm values, Terraform) so the next deploy keeps it",
                    cores(h.used),
                    original,
                    cores(h.limit.unwrap_or(h.used))
                ),
            );
            continue;
        }
        env.status(step, &format!("restoring the cpu limit of NodePool {np}"));
        set_cpu_limit(client, np, original, "restore").await?;
    }
    Ok(())
}

/// replace-karpenter-nodes.
pub struct ReplaceKarpenterNodes {
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

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReplaceKarpenterNodesOutputs {
    pub replaced: Vec<ReplacedNode>,
    pub nodes_now: Vec<String>,
}

impl ReplaceKarpenterNodes {
    fn selector(&self) -> String {
        format!("{NODEPOOL_LABEL} in ({})", self.node_pools.join(","))
    }

    async fn old_nodes(&self, client: &kube::Client) -> Result<Vec<NodeSummary>, StepError> {
        let mut v: Vec<NodeSummary> = nodes(client, &self.selector())
            .await?
            .into_iter()
            .filter(|n| n.os != "windows" && !self.expect.node_is_migrated(n))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    async fn delete_nodeclaim(&self, client: &kube::Client, node: &NodeSummary) -> Result<Option<String>, StepError> {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &k8s::nodeclaim_resource());
        let claims = list_all(&api, &ListParams::default(), "NodeClaims").await?;
        let claim = claims.iter().find(|c| {
            c.data["status"]["nodeName"].as_str() == Some(node.name.as_str())
                || (node.provider_id.is_some()
                    && c.data["status"]["providerID"].as_str() == node.provider_id.as_deref())
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
                // lets Karpenter's finalizer terminate the instance.
                let nodes: Api<Node> = Api::all(client.clone());
                match nodes.delete(&node.name, &DeleteParams::default()).await {
                    Ok(_) | Err(kube::Error::Api(_)) => Ok(None),
                    Err(e) => Err(KubeError::from_kube(format!("delete node {}", node.name), e).into()),
                }
            }
        }
    }

    async fn wait_gone(&self, env: &Env, names: &[String]) -> Result<(), StepError> {
        let client = kube(env)?;
        let api: Api<Node> = Api::all(client.clone());
        let deadline = Instant::now() + Duration::from_secs(self.drain.settle_timeout_secs);
        loop {
            let mut left = Vec::new();
            for n in names {
                if with_retry(&format!("get node {n}"), || api.get_opt(n)).await?.is_some() {
                    left.push(n.clone());
                }
            }
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StepError::new(
                    ErrorClass::Timeout,
                    format!(
                        "nodes {} are still there after their NodeClaims were deleted",
                        left.join(", ")
                    ),
                )
                .hint("check Karpenter's logs for termination errors, then run `podnet resume`"));
            }
            env.status(
                self.id(),
                &format!("waiting for Karpenter to terminate {}", left.join(", ")),
            );
            tokio::time::sleep(env.waits.poll).await;
        }
    }
}

#[async_trait]
impl Step<Env> for ReplaceKarpenterNodes {
    fn id(&self) -> &str {
        ids::REPLACE_KARPENTER_NODES
    }

    fn describe(&self) -> String {
        if self.node_pools.is_empty() {
            "replace Karpenter nodes (none selected)".into()
        } else {
            format!(
                "replace the nodes of NodePool(s) {} in batches of {}",
                self.node_pools.join(", "),
                self.drain.batch_size
            )
        }
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let mut plan = StepPlan::new(self.id(), self.describe());
        if self.node_pools.is_empty() {
            return Ok(plan.note("no NodePool selected for replacement"));
        }
        let old = self.old_nodes(kube(env)?).await?;
        for n in &old {
            plan = plan.with(
                Change::new(Action::Replace, "karpenter_node", &n.name)
                    .attr(
                        "capacity.pods",
                        Some(serde_json::json!(n.capacity_pods)),
                        After::KnownAfterApply,
                    )
                    .because(format!(
                        "{} {}",
                        n.zone.as_deref().unwrap_or("?"),
                        n.instance_type.as_deref().unwrap_or("?")
                    )),
            );
        }
        for np in self.node_pools.iter().filter(|_| !old.is_empty()) {
            let (h, _) = headroom(kube(env)?, np).await?;
            if let Some(to) = h.raise_to() {
                plan = plan.with(
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
        Ok(plan.note("replacements: Karpenter launches them for the evicted (pending) pods, with custom networking"))
    }

    async fn apply(&self, env: &Env, ctx: &mut StepCtx<'_>) -> Result<Outputs, StepError> {
        let mut out = ReplaceKarpenterNodesOutputs {
            replaced: ctx.checkpointed("replaced")?.unwrap_or_default(),
            nodes_now: vec![],
        };
        if self.node_pools.is_empty() {
            return serde_json::to_value(out).map_err(|e| StepError::failed(e.to_string()));
        }
        let client = kube(env)?.clone();
        let policy = self.drain.policy(env.waits.poll);
        let total_at_start = out.replaced.len() + self.old_nodes(&client).await?.len();
        loop {
            let old = self.old_nodes(&client).await?;
            if old.is_empty() {
                break;
            }
            let batch: Vec<NodeSummary> = old
                .iter()
                .take(self.drain.batch_size.max(1) as usize)
                .cloned()
                .collect();
            let old_names: BTreeSet<String> = old.iter().map(|n| n.name.clone()).collect();
            env.status(
                self.id(),
                &format!(
                    "{} of {} node(s) replaced, {} pod(s) moved; next: {}",
                    out.replaced.len(),
                    total_at_start,
                    out.replaced.iter().map(|r| r.evicted).sum::<usize>(),
                    batch.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            );
            ensure_headroom(env, self.id(), &self.node_pools, ctx, &client).await?;
            let mut live = Vec::with_capacity(batch.len());
            for n in batch {
                match ops::cordon(&client, &n.name).await {
                    Ok(()) => live.push(n),
                    // Gone between the list and the cordon: Karpenter finished
                    // terminating it (a NodeClaim deleted by an earlier,
                    // interrupted attempt). Nothing left to drain; list again.
                    Err(e) if e.is_not_found() => {
                        env.status(self.id(), &format!("{} is already gone", n.name));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let batch = live;
            if batch.is_empty() {
                continue;
            }
            let mut reports: Vec<(NodeSummary, DrainReport)> = Vec::new();
            for n in &batch {
                let progress = |m: String| env.status(ids::REPLACE_KARPENTER_NODES, &m);
                let report = ops::drain(&client, &n.name, &policy, &progress).await?;
                reports.push((n.clone(), report));
            }
            let mut names = Vec::new();
            for (n, report) in reports {
                let claim = self.delete_nodeclaim(&client, &n).await?;
                names.push(n.name.clone());
                out.replaced.push(ReplacedNode {
                    name: n.name.clone(),
                    nodeclaim: claim,
                    evicted: report.evicted.len(),
                });
                ctx.checkpoint("replaced", &out.replaced)?;
            }
            self.wait_gone(env, &names).await?;
            wait_settled(
                env,
                self.id(),
                &self.selector(),
                &old_names,
                &self.expect,
                Duration::from_secs(self.drain.settle_timeout_secs),
                Some((&self.node_pools, &mut *ctx)),
            )
            .await?;
        }
        restore_limits(env, self.id(), &self.node_pools, ctx, &client).await?;
        out.nodes_now = nodes(&client, &self.selector())
            .await?
            .into_iter()
            .map(|n| n.name)
            .collect();
        serde_json::to_value(out).map_err(|e| StepError::failed(e.to_string()))
    }
}

/// A managed node group to roll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeGroupRoll {
    pub name: String,
    pub launch_template: Option<LaunchTemplateRef>,
}

/// roll-node-groups.
pub struct RollNodeGroups {
    pub cluster: String,
    pub node_groups: Vec<NodeGroupRoll>,
    /// Karpenter NodePools that may need headroom for the pods the smaller
    /// managed nodes no longer hold.
    pub node_pools: Vec<String>,
    pub expect: Expectations,
    pub settle_timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RolledNodeGroup {
    pub name: String,
    pub update_id: Option<String>,
    pub launch_template_version: Option<String>,
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RollNodeGroupsOutputs {
    pub node_groups: Vec<RolledNodeGroup>,
}

impl RollNodeGroups {
    async fn old_nodes(&self, client: &kube::Client, ng: &str) -> Result<Vec<NodeSummary>, StepError> {
        Ok(nodes(client, &format!("{NODEGROUP_LABEL}={ng}"))
            .await?
            .into_iter()
            .filter(|n| !self.expect.node_is_migrated(n))
            .collect())
    }

    async fn roll(&self, env: &Env, ctx: &mut StepCtx<'_>, g: &NodeGroupRoll) -> Result<RolledNodeGroup, StepError> {
        let client = kube(env)?.clone();
        let update_key = format!("update-id:{}", g.name);
        let lt_key = format!("launch-template-version:{}", g.name);
        let mut rolled = RolledNodeGroup {
            name: g.name.clone(),
            ..Default::default()
        };
        let update_id = match ctx.checkpointed::<String>(&update_key)? {
            Some(id) => Some(id),
            None if self.old_nodes(&client, &g.name).await?.is_empty() => None,
            None => {
                let lt = match &g.launch_template {
                    None => None,
                    Some(lt) => {
                        let version = match ctx.checkpointed::<String>(&lt_key)? {
                            Some(v) => v,
                            None => {
                                let id = match (&lt.id, &lt.name) {
                                    (Some(id), _) => id.clone(),
                                    (None, Some(name)) => env.aws.ec2.launch_template_id(name).await?,
                                    (None, None) => {
                                        return Err(StepError::failed(format!(
                                            "node group {} has a launch template without id or name",
                                            g.name
                                        )));
                                    }
                                };
                                let token: String = ctx.checkpoint_once(&format!("lt-token:{}", g.name), || {
                                    uuid::Uuid::new_v4().to_string()
                                })?;
                                env.status(self.id(), &format!("new launch template version for {}", g.name));
                                let v = env
                                    .aws
                                    .ec2
                                    .create_launch_template_version(
                                        &id,
                                        lt.version.as_deref().unwrap_or("$Default"),
                                        "podnet: nodes under VPC CNI custom networking",
                                        &token,
                                    )
                                    .await?;
                                ctx.checkpoint(&lt_key, &v)?;
                                v
                            }
                        };
                        rolled.launch_template_version = Some(version.clone());
                        Some(LaunchTemplateRef {
                            id: lt.id.clone(),
                            name: lt.name.clone(),
                            version: Some(version),
                        })
                    }
                };
                let token: String =
                    ctx.checkpoint_once(&format!("update-token:{}", g.name), || uuid::Uuid::new_v4().to_string())?;
                env.status(self.id(), &format!("starting the rolling update of {}", g.name));
                let u = env
                    .aws
                    .eks
                    .update_nodegroup_version(&self.cluster, &g.name, lt.as_ref(), false, &token)
                    .await?;
                ctx.checkpoint(&update_key, &u.id)?;
                Some(u.id)
            }
        };
        if let Some(id) = &update_id {
            rolled.update_id = Some(id.clone());
            let deadline = Instant::now() + Duration::from_secs(3600);
            loop {
                let u = env
                    .aws
                    .eks
                    .describe_update(&self.cluster, id, Some(&g.name), None)
                    .await?;
                match u.status.as_str() {
                    "Successful" => break,
                    "Failed" | "Cancelled" => {
                        let errs: Vec<String> = u
                            .errors
                            .iter()
                            .map(|e| format!("{}: {} ({})", e.code, e.message, e.resource_ids.join(", ")))
                            .collect();
                        let eviction = u.errors.iter().any(|e| e.code == "PodEvictionFailure");
                        return Err(StepError::new(
                            if eviction { ErrorClass::Blocked } else { ErrorClass::Failed },
                            format!("the rolling update {id} of {} {}: {}", g.name, u.status.to_lowercase(), errs.join("; ")),
                        )
                        .hint(if eviction {
                            "pods could not be evicted within 15 minutes (a PodDisruptionBudget?); fix it, then run `podnet resume`"
                        } else {
                            "see `aws eks describe-update`; fix the cause, then run `podnet resume`"
                        }));
                    }
                    _ => {}
                }
                if Instant::now() >= deadline {
                    return Err(StepError::new(
                        ErrorClass::Timeout,
                        format!(
                            "the rolling update {id} of {} is still {} after an hour",
                            g.name, u.status
                        ),
                    )
                    .hint("run `podnet resume` to keep waiting"));
                }
                let old = self.old_nodes(&client, &g.name).await.map(|v| v.len()).unwrap_or(0);
                env.status(
                    self.id(),
                    &format!("{}: update {} {}, {} old node(s) left", g.name, id, u.status, old),
                );
                tokio::time::sleep(env.waits.poll).await;
            }
        }
        let old: BTreeSet<String> = self
            .old_nodes(&client, &g.name)
            .await?
            .into_iter()
            .map(|n| n.name)
            .collect();
        if !old.is_empty() {
            return Err(StepError::new(
                ErrorClass::Failed,
                format!(
                    "after the update of {}, nodes still run without custom networking: {}",
                    g.name,
                    old.into_iter().collect::<Vec<_>>().join(", ")
                ),
            )
            .hint(
                "check the node group's launch template and the vpc-cni addon configuration, then run `podnet resume`",
            ));
        }
        rolled.nodes = wait_settled(
            env,
            self.id(),
            &format!("{NODEGROUP_LABEL}={}", g.name),
            &BTreeSet::new(),
            &self.expect,
            Duration::from_secs(self.settle_timeout_secs),
            Some((&self.node_pools, &mut *ctx)),
        )
        .await?;
        Ok(rolled)
    }
}

#[async_trait]
impl Step<Env> for RollNodeGroups {
    fn id(&self) -> &str {
        ids::ROLL_NODE_GROUPS
    }

    fn describe(&self) -> String {
        if self.node_groups.is_empty() {
            "roll managed node groups (none selected)".into()
        } else {
            format!(
                "roll managed node group(s) {}",
                self.node_groups
                    .iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let mut plan = StepPlan::new(self.id(), self.describe());
        for g in &self.node_groups {
            let old = self.old_nodes(kube(env)?, &g.name).await?;
            if old.is_empty() {
                plan = plan.with(
                    Change::new(Action::NoOp, "aws_eks_node_group", &g.name)
                        .because("every node runs custom networking"),
                );
                continue;
            }
            let mut c = Change::new(Action::Update, "aws_eks_node_group", &g.name);
            if let Some(lt) = &g.launch_template {
                c = c.attr(
                    "launch_template.version",
                    Some(serde_json::json!(lt.version)),
                    After::KnownAfterApply,
                );
            }
            plan = plan.with(c.because(format!(
                "rolling update replaces {}",
                old.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(plan)
    }

    async fn apply(&self, env: &Env, ctx: &mut StepCtx<'_>) -> Result<Outputs, StepError> {
        let mut out = RollNodeGroupsOutputs::default();
        for g in &self.node_groups {
            out.node_groups.push(self.roll(env, ctx, g).await?);
        }
        if let Some(client) = env.kube.as_ref() {
            restore_limits(env, self.id(), &self.node_pools, ctx, client).await?;
        }
        serde_json::to_value(out).map_err(|e| StepError::failed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cpu_quantities() {
        assert_eq!(cpu_millis(&json!("10")), Some(10_000));
        assert_eq!(cpu_millis(&json!("1500m")), Some(1_500));
        assert_eq!(cpu_millis(&json!(2)), Some(2_000));
        assert_eq!(cpu_millis(&json!("0.5")), Some(500));
        assert_eq!(cpu_millis(&json!(null)), None);
        assert_eq!(cpu_millis(&json!("lots")), None);
        assert_eq!(cores(12_000), "12");
        assert_eq!(cores(1_500), "1500m");
    }

    #[test]
    fn headroom_raises_only_when_a_replacement_would_not_fit() {
        let at_limit = Headroom {
            limit: Some(10_000),
            used: 10_000,
            largest: 2_000,
        };
        assert_eq!(at_limit.raise_to(), Some(12_000));
        let room = Headroom {
            limit: Some(10_000),
            used: 8_000,
            largest: 2_000,
        };
        assert_eq!(room.raise_to(), None);
        let unlimited = Headroom {
            limit: None,
            used: 50_000,
            largest: 2_000,
        };
        assert_eq!(unlimited.raise_to(), None);
    }
}
