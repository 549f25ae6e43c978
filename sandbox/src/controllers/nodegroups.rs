//! Managed node group rolling updates, as EKS documents them for
//! `UpdateNodegroupVersion`:
//! 1. the launch template version to use (the one asked for, or the
//!    group's), with max pods computed from the vpc-cni add-on's
//!    configuration at that moment (custom networking leaves the primary
//!    ENI out; prefix delegation ×16; capped at 110, or 250 above 30 vCPUs);
//! 2. surge: one new node per old node, in the old node's subnet;
//! 3. wait until the new nodes are Ready;
//! 4. cordon the old nodes;
//! 5. evict their pods through PDBs, `maxUnavailable` nodes at a time; a
//!    node that cannot be drained within 15 simulated minutes fails the
//!    update with `PodEvictionFailure` naming the pods, unless `force`;
//! 6. terminate the drained nodes;
//! 7. the group is back to its size, the update Successful.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::events::Source;
use super::launch::{self, LaunchRequest, eks_max_pods};
use super::{Ctx, add_taint, edit, is_daemon_pod, is_deleting, label, node_ready, pod_active, s};
use crate::eks::{UpdateEffect, UpdateTarget};
use crate::kube::resources::{NODE, POD};
use crate::kube::{DeleteOptions, Stored};
use crate::scenario::objects::NodeOrigin;
use crate::scenario::seed::asg_name;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Surge,
    WaitReady,
    Drain,
}

#[derive(Debug, Clone)]
struct Rollout {
    nodegroup: String,
    phase: Phase,
    old: Vec<String>,
    new: Vec<String>,
    force: bool,
    max_unavailable: usize,
    launch_template: Option<(String, String)>,
    max_pods: u32,
    instance_type: String,
    /// When each old node's drain began (simulated time).
    draining: BTreeMap<String, Duration>,
}

/// Rollouts in progress, by update id.
#[derive(Debug, Default)]
pub struct Rollouts {
    active: BTreeMap<String, Rollout>,
}

fn vpc_cni_flags(ctx: &Ctx) -> (bool, bool) {
    let cfg = ctx
        .eks
        .addon(&ctx.scenario.cluster, "vpc-cni")
        .and_then(|a| a.configuration_values)
        .and_then(|t| crate::eks::schema::parse_configuration(&t).ok())
        .unwrap_or(json!({}));
    let on = |k: &str| cfg.pointer(&format!("/env/{k}")).and_then(Value::as_str) == Some("true");
    (on("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG"), on("ENABLE_PREFIX_DELEGATION"))
}

async fn resolve_version(ctx: &Ctx, lt_id: &str, asked: &str) -> String {
    if !asked.starts_with('$') {
        return asked.to_string();
    }
    let Some(c) = &ctx.ec2 else { return "1".into() };
    match c.describe_launch_templates().launch_template_ids(lt_id).send().await {
        Ok(out) => out
            .launch_templates()
            .first()
            .and_then(|t| {
                if asked == "$Latest" {
                    t.latest_version_number()
                } else {
                    t.default_version_number()
                }
            })
            .map(|v| v.to_string())
            .unwrap_or_else(|| "1".into()),
        Err(_) => "1".into(),
    }
}

async fn start(ctx: &Ctx, id: &str, ng_name: &str, effect: &UpdateEffect) -> Option<Rollout> {
    let ng = ctx.eks.nodegroup(&ctx.scenario.cluster, ng_name)?;
    let (asked, force) = match effect {
        UpdateEffect::NodegroupVersion {
            launch_template_version,
            force,
            ..
        } => (launch_template_version.clone(), *force),
        _ => return None,
    };
    let launch_template = match &ng.launch_template {
        Some(lt) => {
            let v = asked.unwrap_or_else(|| lt.version.clone());
            Some((lt.id.clone(), resolve_version(ctx, &lt.id, &v).await))
        }
        None => None,
    };
    let old: Vec<String> = ctx
        .list(NODE)
        .into_iter()
        .filter(|n| label(&n.value, "eks.amazonaws.com/nodegroup") == Some(ng_name) && !is_deleting(&n.value))
        .map(|n| n.name().to_string())
        .collect();
    let instance_type = ng.instance_types.first().cloned().unwrap_or_else(|| "t3.medium".into());
    let max_pods = launched_max_pods(ctx, &ng.ami_type, launch_template.as_ref(), &instance_type).await;
    tracing::info!("rolling node group {ng_name} (update {id}): {} node(s)", old.len());
    Some(Rollout {
        nodegroup: ng_name.to_string(),
        phase: Phase::Surge,
        old,
        new: vec![],
        force,
        max_unavailable: ng.max_unavailable.max(1) as usize,
        launch_template,
        max_pods,
        instance_type,
        draining: BTreeMap::new(),
    })
}

pub async fn reconcile(ctx: &Ctx) {
    let cluster = ctx.scenario.cluster.clone();
    let updates: Vec<_> = ctx
        .eks
        .updates(&cluster)
        .into_iter()
        .filter(|u| u.status == "InProgress" && u.kind == "VersionUpdate")
        .collect();
    {
        let mut r = ctx.rollouts.lock().unwrap_or_else(|e| e.into_inner());
        r.active.retain(|id, _| updates.iter().any(|u| &u.id == id));
    }
    for u in updates {
        let UpdateTarget::Nodegroup(ng) = &u.target else {
            continue;
        };
        let existing = ctx
            .rollouts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .active
            .get(&u.id)
            .cloned();
        let rollout = match existing {
            Some(r) => r,
            None => match start(ctx, &u.id, ng, &u.apply).await {
                Some(r) => r,
                None => continue,
            },
        };
        let next = step(ctx, &u.id, rollout).await;
        let mut r = ctx.rollouts.lock().unwrap_or_else(|e| e.into_inner());
        match next {
            Some(n) => {
                r.active.insert(u.id.clone(), n);
            }
            None => {
                r.active.remove(&u.id);
            }
        }
    }
    desired_count(ctx).await;
}

/// An instance of a managed node group, tagged as EKS tags them.
fn launch_request(
    ctx: &Ctx,
    nodegroup: &str,
    instance_type: &str,
    launch_template: Option<(String, String)>,
    max_pods: u32,
    zone: String,
    subnet: String,
) -> LaunchRequest {
    let cluster = &ctx.scenario.cluster;
    LaunchRequest {
        zone,
        subnet_id: subnet,
        max_pods,
        instance_type: instance_type.to_string(),
        origin: NodeOrigin::Managed {
            nodegroup: nodegroup.to_string(),
            launch_template: launch_template.clone(),
        },
        tags: vec![
            (format!("kubernetes.io/cluster/{cluster}"), "owned".into()),
            ("Name".into(), nodegroup.to_string()),
            ("eks:cluster-name".into(), cluster.clone()),
            ("eks:nodegroup-name".into(), nodegroup.to_string()),
            ("aws:autoscaling:groupName".into(), asg_name(nodegroup)),
            ("k8s.io/cluster-autoscaler/enabled".into(), "true".into()),
        ],
        launch_template,
    }
}

/// Max pods a node launched from this group's template gets: on a custom
/// AMI, what the version's user data sets (else the AMI's own default,
/// blind to custom networking); otherwise what EKS computes.
async fn launched_max_pods(ctx: &Ctx, ami_type: &str, lt: Option<&(String, String)>, instance_type: &str) -> u32 {
    if ami_type != "CUSTOM" {
        return group_max_pods(ctx, instance_type);
    }
    let default = crate::instance_types::lookup(instance_type)
        .map(|t| t.default_max_pods())
        .unwrap_or(110);
    let (Some(c), Some((id, version))) = (&ctx.ec2, lt) else {
        return default;
    };
    let version = resolve_version(ctx, id, version).await;
    let data = c
        .describe_launch_template_versions()
        .launch_template_id(id)
        .versions(&version)
        .send()
        .await
        .ok()
        .and_then(|o| {
            o.launch_template_versions()
                .first()
                .and_then(|v| v.launch_template_data())
                .and_then(|d| d.user_data())
                .map(str::to_string)
        });
    use base64::Engine as _;
    data.and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .and_then(|d| String::from_utf8(d).ok())
        .and_then(|text| crate::user_data::max_pods(&text))
        .unwrap_or(default)
}

/// Max pods EKS gives a managed node of this type now.
fn group_max_pods(ctx: &Ctx, instance_type: &str) -> u32 {
    let (custom, prefix) = vpc_cni_flags(ctx);
    eks_max_pods(instance_type, custom, prefix)
}

/// The Auto Scaling group behind each managed node group: as many nodes as
/// `desiredSize` (after an `UpdateNodegroupConfig`), launched in the group's
/// least-used zone, or the newest drained through PDBs and terminated.
/// Nothing happens while an update of the group is in progress.
async fn desired_count(ctx: &Ctx) {
    let cluster = ctx.scenario.cluster.clone();
    let busy: Vec<String> = ctx
        .eks
        .updates(&cluster)
        .into_iter()
        .filter(|u| u.status == "InProgress")
        .filter_map(|u| match u.target {
            UpdateTarget::Nodegroup(n) => Some(n),
            _ => None,
        })
        .collect();
    let nodes = ctx.list(NODE);
    for g in &ctx.scenario.node_groups {
        if busy.contains(&g.name) {
            continue;
        }
        let Some(ng) = ctx.eks.nodegroup(&cluster, &g.name) else {
            continue;
        };
        let mut mine: Vec<_> = nodes
            .iter()
            .filter(|n| {
                label(&n.value, "eks.amazonaws.com/nodegroup") == Some(ng.name.as_str()) && !is_deleting(&n.value)
            })
            .collect();
        let booting = ctx.launches.booting_in_nodegroup(&ng.name);
        let have = (mine.len() + booting) as i64;
        if have < ng.desired_size {
            // The group's subnet whose zone has the fewest of its nodes.
            let mut best: Option<(usize, String, String)> = None;
            for sn in &ng.subnets {
                if launch::ensure_subnet(ctx, sn).await.is_err() {
                    continue;
                }
                let zone = ctx
                    .ipam()
                    .subnet(sn)
                    .map(|p| p.availability_zone.clone())
                    .unwrap_or_default();
                let here = mine
                    .iter()
                    .filter(|n| label(&n.value, "topology.kubernetes.io/zone") == Some(zone.as_str()))
                    .count();
                if best.as_ref().is_none_or(|b| here < b.0) {
                    best = Some((here, zone, sn.clone()));
                }
            }
            if let Some((_, zone, subnet)) = best {
                let instance_type = ng.instance_types.first().cloned().unwrap_or_else(|| "t3.medium".into());
                let lt = ng.launch_template.as_ref().map(|l| (l.id.clone(), l.version.clone()));
                let max_pods = launched_max_pods(ctx, &ng.ami_type, lt.as_ref(), &instance_type).await;
                let req = launch_request(ctx, &ng.name, &instance_type, lt, max_pods, zone, subnet);
                if let Err(e) = launch::launch(ctx, req).await {
                    tracing::warn!("scaling out node group {}: {e}", ng.name);
                }
            }
        } else if have > ng.desired_size && booting == 0 {
            // Scale in: the node already cordoned for it, else the newest.
            mine.sort_by_key(|n| {
                (
                    n.value.pointer("/spec/unschedulable").and_then(Value::as_bool) != Some(true),
                    std::cmp::Reverse(s(&n.value, "/metadata/creationTimestamp").to_string()),
                )
            });
            let Some(victim) = mine.first() else { continue };
            let name = victim.name().to_string();
            let _ = edit(&ctx.store, NODE, "", &name, |n| {
                n["spec"]["unschedulable"] = json!(true);
            });
            let pods = ctx.list(POD);
            let left: Vec<_> = pods
                .iter()
                .filter(|p| s(&p.value, "/spec/nodeName") == name && pod_active(&p.value) && !is_daemon_pod(&p.value))
                .collect();
            for p in &left {
                let _ = super::evict(&ctx.store, p.namespace(), p.name());
            }
            if left.is_empty() {
                launch::terminate(ctx, &name).await;
            }
        }
    }
}

fn node_subnet(ctx: &Ctx, node: &str) -> Option<(String, String)> {
    if let Some(n) = ctx.nets().get(node) {
        let zone = ctx
            .ipam()
            .subnet(&n.node_subnet)
            .map(|p| p.availability_zone.clone())
            .unwrap_or_default();
        return Some((zone, n.node_subnet.clone()));
    }
    None
}

/// One step of a rollout; `None` when it finished (either way).
async fn step(ctx: &Ctx, id: &str, r: Rollout) -> Option<Rollout> {
    match r.phase {
        Phase::Surge => surge(ctx, id, r).await,
        Phase::WaitReady => wait_ready(ctx, r),
        Phase::Drain => drain(ctx, id, r).await,
    }
}

/// Launch one new node beside each old one, in the old node's subnet.
async fn surge(ctx: &Ctx, id: &str, mut r: Rollout) -> Option<Rollout> {
    let cluster = ctx.scenario.cluster.clone();
    for old in r.old.clone() {
        let Some((zone, subnet)) = node_subnet(ctx, &old) else {
            continue;
        };
        let req = launch_request(
            ctx,
            &r.nodegroup,
            &r.instance_type,
            r.launch_template.clone(),
            r.max_pods,
            zone,
            subnet,
        );
        match launch::launch(ctx, req).await {
            Ok(info) => r.new.push(info.name),
            Err(e) => {
                let _ = ctx.eks.complete_update(
                    &cluster,
                    id,
                    Err(vec![json!({
                        "errorCode": "InsufficientFreeAddresses",
                        "errorMessage": format!("Could not launch a node for node group {}: {e}", r.nodegroup),
                        "resourceIds": [r.nodegroup],
                    })]),
                );
                return None;
            }
        }
    }
    r.phase = Phase::WaitReady;
    Some(r)
}

/// Once every new node is Ready, cordon the old ones.
fn wait_ready(ctx: &Ctx, mut r: Rollout) -> Option<Rollout> {
    let all_ready = r
        .new
        .iter()
        .all(|n| ctx.store.get(NODE, "", n).is_ok_and(|node| node_ready(&node.value)));
    if !all_ready {
        return Some(r);
    }
    for old in &r.old {
        let _ = edit(&ctx.store, NODE, "", old, |n| {
            n["spec"]["unschedulable"] = json!(true);
            add_taint(n, "node.kubernetes.io/unschedulable");
        });
    }
    r.phase = Phase::Drain;
    Some(r)
}

/// Drain up to `max_unavailable` old nodes at a time, terminating each
/// once empty; the update fails when PDBs block evictions past the timeout.
async fn drain(ctx: &Ctx, id: &str, mut r: Rollout) -> Option<Rollout> {
    let cluster = ctx.scenario.cluster.clone();
    let now = ctx.now();
    let pods = ctx.list(POD);
    let remaining: Vec<String> = r
        .old
        .iter()
        .filter(|n| ctx.store.get(NODE, "", n).is_ok())
        .cloned()
        .collect();
    if remaining.is_empty() {
        let _ = ctx.eks.complete_update(&cluster, id, Ok(()));
        return None;
    }
    for node in remaining.iter().take(r.max_unavailable) {
        let started = *r.draining.entry(node.clone()).or_insert(now);
        let left: Vec<_> = pods
            .iter()
            .filter(|p| s(&p.value, "/spec/nodeName") == node && pod_active(&p.value) && !is_daemon_pod(&p.value))
            .collect();
        let blocked = evict_all(ctx, &left, r.force);
        if left.is_empty() {
            launch::terminate(ctx, node).await;
            continue;
        }
        if !blocked.is_empty() && now.saturating_sub(started) >= ctx.behaviour.eviction_timeout {
            fail_eviction(ctx, id, &r.nodegroup, &blocked);
            return None;
        }
    }
    Some(r)
}

/// Evict `pods` (deleting those a PDB protects when forced); returns the
/// ones a PDB kept.
fn evict_all<'a>(ctx: &Ctx, pods: &[&'a Arc<Stored>], force: bool) -> Vec<&'a Arc<Stored>> {
    let mut blocked = Vec::new();
    for p in pods {
        match super::evict(&ctx.store, p.namespace(), p.name()) {
            Ok(_) => {}
            Err(e) if e.code == 429 => {
                if force {
                    let _ = ctx
                        .store
                        .delete(POD, p.namespace(), p.name(), &DeleteOptions::default());
                } else {
                    blocked.push(*p);
                }
            }
            Err(_) => {}
        }
    }
    blocked
}

/// The update fails as EKS reports it: `PodEvictionFailure` naming the pods.
fn fail_eviction(ctx: &Ctx, id: &str, nodegroup: &str, blocked: &[&Arc<Stored>]) {
    let ids: Vec<String> = blocked
        .iter()
        .map(|p| format!("{}/{}", p.namespace(), p.name()))
        .collect();
    for p in blocked {
        ctx.events.emit(
            ctx,
            &p.value,
            true,
            "FailedEviction",
            "Cannot evict pod as it would violate the pod's disruption budget.",
            Source::NodeController,
        );
    }
    let _ = ctx.eks.complete_update(
        &ctx.scenario.cluster,
        id,
        Err(vec![json!({
            "errorCode": "PodEvictionFailure",
            "errorMessage": format!(
                "Reached max retries while trying to evict pods from nodes in node group {nodegroup}"
            ),
            "resourceIds": ids,
        })]),
    );
}
