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

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::events::Source;
use super::launch::{self, LaunchRequest, ensure_subnet};
use super::{Ctx, add_taint, condition_true, edit, is_daemon_pod, is_deleting, label, node_ready, pod_active, s};
use crate::instance_types;
use crate::kube::derived::{node_selected, pod_ready};
use crate::kube::resources::{DEPLOYMENT, EC2NODECLASS, NODE, NODECLAIM, NODEPOOL, POD};
use crate::kube::{DeleteOptions, Stored, WriteOptions};
use crate::scenario::objects::NodeOrigin;
use crate::scenario::{cpu_millis, node_name};
use crate::workloads::suffix;

pub const FINALIZER: &str = "karpenter.sh/termination";
pub const DISRUPTED_TAINT: &str = "karpenter.sh/disrupted";

/// `RESERVED_ENIS` from the controller Deployment's env (0 when unset).
pub fn reserved_enis(ctx: &Ctx) -> u32 {
    ctx.store
        .get(DEPLOYMENT, "kube-system", "karpenter")
        .ok()
        .and_then(|d| {
            d.value
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .and_then(|cs| cs.first())
                .and_then(|c| c.get("env"))
                .and_then(Value::as_array)
                .and_then(|env| {
                    crate::scenario::objects::env_pairs(env)
                        .get("RESERVED_ENIS")?
                        .parse()
                        .ok()
                })
        })
        .unwrap_or(0)
}

fn controller_up(pods: &[Arc<Stored>]) -> bool {
    pods.iter().any(|p| {
        label(&p.value, "app.kubernetes.io/name") == Some("karpenter") && pod_active(&p.value) && pod_ready(&p.value)
    })
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn requirement(np: &Value, key: &str) -> Vec<String> {
    np.pointer("/spec/template/spec/requirements")
        .and_then(Value::as_array)
        .and_then(|rs| {
            rs.iter()
                .find(|r| s(r, "/key") == key && s(r, "/operator") == "In")
                .map(|r| strings(r.get("values")))
        })
        .unwrap_or_default()
}

/// The labels a node of this NodePool would carry.
fn synthetic_node(np: &Value, zone: &str, itype: &str) -> Value {
    let mut labels = json!({
        "karpenter.sh/nodepool": s(np, "/metadata/name"),
        "karpenter.sh/capacity-type": "on-demand",
        "topology.kubernetes.io/zone": zone,
        "node.kubernetes.io/instance-type": itype,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
    });
    if let Some(extra) = np.pointer("/spec/template/metadata/labels").and_then(Value::as_object) {
        for (k, v) in extra {
            labels[k] = v.clone();
        }
    }
    json!({"metadata": {"labels": labels}})
}

fn claim_pods(claim: &Value) -> i64 {
    claim
        .pointer("/status/capacity/pods")
        .and_then(Value::as_str)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0)
}

fn claim_cpu(claim: &Value) -> u32 {
    claim
        .pointer("/status/capacity/cpu")
        .and_then(Value::as_str)
        .and_then(cpu_millis)
        .unwrap_or(0)
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
    drift(ctx, &claims, &nodes).await;
    terminate(ctx, &claims, &nodes, &pods).await;
    provision(ctx, &claims, &nodes, &pods).await;
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

async fn terminate(ctx: &Ctx, claims: &[Arc<Stored>], nodes: &BTreeMap<String, Arc<Stored>>, pods: &[Arc<Stored>]) {
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

fn remove_finalizer(ctx: &Ctx, c: &Stored) {
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
        if let Err(e) = super::evict(&ctx.store, p.namespace(), p.name()) {
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

/// Zones the EC2NodeClass can launch in, with the subnet to use in each.
async fn subnets_by_zone(ctx: &Ctx, nodeclass: &Value) -> BTreeMap<String, String> {
    let mut candidates: Vec<(String, String)> = Vec::new();
    match &ctx.ec2 {
        Some(c) => {
            let terms = nodeclass
                .pointer("/spec/subnetSelectorTerms")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for t in terms {
                let mut req = c.describe_subnets();
                if let Some(id) = t.get("id").and_then(Value::as_str) {
                    req = req.subnet_ids(id);
                }
                if let Some(tags) = t.get("tags").and_then(Value::as_object) {
                    for (k, v) in tags {
                        let v = v.as_str().unwrap_or("*");
                        let f = if v == "*" {
                            aws_sdk_ec2::types::Filter::builder().name("tag-key").values(k).build()
                        } else {
                            aws_sdk_ec2::types::Filter::builder()
                                .name(format!("tag:{k}"))
                                .values(v)
                                .build()
                        };
                        req = req.filters(f);
                    }
                }
                req = req.filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("vpc-id")
                        .values(&ctx.world.vpc_id)
                        .build(),
                );
                match req.send().await {
                    Ok(out) => {
                        for sn in out.subnets() {
                            candidates.push((
                                sn.availability_zone().unwrap_or_default().to_string(),
                                sn.subnet_id().unwrap_or_default().to_string(),
                            ));
                        }
                    }
                    Err(e) => tracing::warn!(
                        "Karpenter DescribeSubnets: {}",
                        aws_sdk_ec2::error::DisplayErrorContext(&e)
                    ),
                }
            }
        }
        None => {
            for z in &ctx.world.zones {
                candidates.push((z.name.clone(), z.private_subnet.clone()));
            }
        }
    }
    let mut best: BTreeMap<String, (u32, String)> = BTreeMap::new();
    for (zone, id) in candidates {
        if ensure_subnet(ctx, &id).await.is_err() {
            continue;
        }
        let free = ctx.ipam().subnet(&id).map(|p| p.free()).unwrap_or(0);
        let e = best.entry(zone).or_insert((0, String::new()));
        if e.1.is_empty() || free > e.0 {
            *e = (free, id);
        }
    }
    best.into_iter().map(|(z, (_, id))| (z, id)).collect()
}

async fn provision(ctx: &Ctx, claims: &[Arc<Stored>], nodes: &BTreeMap<String, Arc<Stored>>, pods: &[Arc<Stored>]) {
    let unschedulable: Vec<&Arc<Stored>> = pods
        .iter()
        .filter(|p| {
            s(&p.value, "/spec/nodeName").is_empty()
                && pod_active(&p.value)
                && p.value
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
                    })
        })
        .collect();
    if unschedulable.is_empty() {
        return;
    }
    if *ctx.launch_retry_at.lock().unwrap_or_else(|e| e.into_inner()) > ctx.now() {
        return;
    }
    let reserved = reserved_enis(ctx);
    for np in ctx.list(NODEPOOL) {
        if is_deleting(&np.value) {
            continue;
        }
        provision_pool(ctx, &np, claims, nodes, pods, &unschedulable, reserved).await;
    }
}

/// One NodePool's answer to the unschedulable pods it could take: a
/// NodeClaim of the smallest type that holds them, within its limits.
async fn provision_pool(
    ctx: &Ctx,
    np: &Arc<Stored>,
    claims: &[Arc<Stored>],
    nodes: &BTreeMap<String, Arc<Stored>>,
    pods: &[Arc<Stored>],
    unschedulable: &[&Arc<Stored>],
    reserved: u32,
) {
    let np_name = np.name().to_string();
    let class_name = s(&np.value, "/spec/template/spec/nodeClassRef/name").to_string();
    let Ok(nodeclass) = ctx.store.get(EC2NODECLASS, "", &class_name) else {
        return;
    };
    let mut types: Vec<&'static instance_types::InstanceType> =
        requirement(&np.value, "node.kubernetes.io/instance-type")
            .iter()
            .filter_map(|t| instance_types::lookup(t))
            .collect();
    if types.is_empty() {
        return;
    }
    let max_pods_of = |t: &instance_types::InstanceType| -> u32 {
        nodeclass
            .value
            .pointer("/spec/kubelet/maxPods")
            .and_then(Value::as_u64)
            .map(|m| m as u32)
            .unwrap_or_else(|| t.max_pods(reserved, false))
    };
    types.sort_by_key(|t| (max_pods_of(t), t.vcpus));
    // Which pods a node of this pool could take is decided on the
    // cluster's zones; the subnets (DescribeSubnets in moto) are looked
    // up only when a node is really launched.
    let compatible = compatible_pods(ctx, &np.value, &types, unschedulable);
    if compatible.is_empty() {
        return;
    }
    let mine: Vec<&Arc<Stored>> = claims
        .iter()
        .filter(|c| label(&c.value, "karpenter.sh/nodepool") == Some(np_name.as_str()))
        .collect();
    // Room still coming: claims whose node is not Ready yet.
    let spare = spare_room(&mine, nodes, pods);
    let want = compatible.len() as i64 - spare;
    if want <= 0 {
        return;
    }
    let fitting = fitting_type(&np.value, &types, &mine, want, &max_pods_of);
    let Some(itype) = fitting else {
        for p in &compatible {
            ctx.events.emit(
                ctx,
                &p.value,
                true,
                "FailedScheduling",
                &format!(
                    "Failed to schedule pod, all available instance types exceed limits for nodepool: \"{np_name}\""
                ),
                Source::Karpenter,
            );
        }
        return;
    };
    let zone = pick_zone(ctx, &np.value, &nodeclass.value, itype, &compatible, &mine).await;
    let Some((zone, subnet)) = zone else { return };
    let max_pods = max_pods_of(itype);
    if let Some(claim_name) = launch_claim(ctx, np, &class_name, itype, &zone, &subnet, max_pods).await {
        for p in compatible.iter().take(max_pods.saturating_sub(2) as usize) {
            ctx.events.emit(
                ctx,
                &p.value,
                false,
                "Nominated",
                &format!("Pod should schedule on: nodeclaim/{claim_name}"),
                Source::Karpenter,
            );
        }
    }
}

/// The unschedulable pods a node of the pool could take: taints tolerated
/// and selected by some instance type in some zone.
fn compatible_pods<'a>(
    ctx: &Ctx,
    np: &Value,
    types: &[&'static instance_types::InstanceType],
    unschedulable: &'a [&'a Arc<Stored>],
) -> Vec<&'a &'a Arc<Stored>> {
    let cluster_zones: Vec<&str> = ctx.world.zones.iter().map(|z| z.name.as_str()).collect();
    unschedulable
        .iter()
        .filter(|p| {
            super::scheduler::blocking_taint(
                &json!({"spec": {"taints": np.pointer("/spec/template/spec/taints").cloned().unwrap_or(json!([]))}}),
                &p.value["spec"],
            )
            .is_none()
                && cluster_zones.iter().any(|z| {
                    types
                        .iter()
                        .any(|t| node_selected(&synthetic_node(np, z, &t.name), &p.value["spec"]))
                })
        })
        .collect()
}

/// Pod slots on the pool's claims whose node is not Ready yet.
fn spare_room(mine: &[&Arc<Stored>], nodes: &BTreeMap<String, Arc<Stored>>, pods: &[Arc<Stored>]) -> i64 {
    mine.iter()
        .filter(|c| !is_deleting(&c.value))
        .filter(|c| {
            nodes
                .get(s(&c.value, "/status/nodeName"))
                .is_none_or(|n| !node_ready(&n.value))
        })
        .map(|c| {
            let node = s(&c.value, "/status/nodeName");
            let bound = pods
                .iter()
                .filter(|p| s(&p.value, "/spec/nodeName") == node && pod_active(&p.value))
                .count() as i64;
            (claim_pods(&c.value) - 2 - bound).max(0)
        })
        .sum()
}

/// The smallest type (by max pods, then vCPUs) that takes `want` pods, else
/// the largest, within the pool's CPU limit.
fn fitting_type(
    np: &Value,
    types: &[&'static instance_types::InstanceType],
    mine: &[&Arc<Stored>],
    want: i64,
    max_pods_of: &dyn Fn(&instance_types::InstanceType) -> u32,
) -> Option<&'static instance_types::InstanceType> {
    let used_cpu: u32 = mine.iter().map(|c| claim_cpu(&c.value)).sum::<u32>();
    let limit = np
        .pointer("/spec/limits/cpu")
        .and_then(|v| {
            v.as_str()
                .map(str::to_string)
                .or_else(|| v.as_i64().map(|n| n.to_string()))
        })
        .and_then(|q| cpu_millis(&q));
    let within = |t: &instance_types::InstanceType| limit.is_none_or(|l| used_cpu + t.vcpus * 1000 <= l);
    types
        .iter()
        .find(|t| i64::from(max_pods_of(t)) - 2 >= want && within(t))
        .or_else(|| types.iter().rev().find(|t| within(t)))
        .copied()
}

/// The zone (and its subnet) with the fewest of this NodePool's nodes that
/// the first pending pod accepts.
async fn pick_zone(
    ctx: &Ctx,
    np: &Value,
    nodeclass: &Value,
    itype: &instance_types::InstanceType,
    compatible: &[&&Arc<Stored>],
    mine: &[&Arc<Stored>],
) -> Option<(String, String)> {
    let first = &compatible[0].value["spec"];
    let zones = subnets_by_zone(ctx, nodeclass).await;
    zones
        .iter()
        .filter(|(z, _)| node_selected(&synthetic_node(np, z, &itype.name), first))
        .min_by_key(|(z, _)| {
            mine.iter()
                .filter(|c| {
                    !is_deleting(&c.value) && label(&c.value, "topology.kubernetes.io/zone") == Some(z.as_str())
                })
                .count()
        })
        .map(|(z, id)| (z.clone(), id.clone()))
}

/// Create a NodeClaim and launch its instance; `None` (with a
/// `LaunchFailed` event and a back-off) when EC2 refuses.
async fn launch_claim(
    ctx: &Ctx,
    np: &Stored,
    class_name: &str,
    itype: &instance_types::InstanceType,
    zone: &str,
    subnet: &str,
    max_pods: u32,
) -> Option<String> {
    let np_name = np.name().to_string();
    let claim_name = format!("{np_name}-{}", suffix(&uuid::Uuid::new_v4().to_string()));
    let req = LaunchRequest {
        zone: zone.to_string(),
        subnet_id: subnet.to_string(),
        instance_type: itype.name.clone(),
        origin: NodeOrigin::Karpenter {
            nodepool: np_name.clone(),
            nodeclass: class_name.to_string(),
            nodeclaim: claim_name.clone(),
        },
        max_pods,
        tags: vec![
            (
                format!("kubernetes.io/cluster/{}", ctx.scenario.cluster),
                "owned".into(),
            ),
            ("karpenter.sh/nodepool".into(), np_name.clone()),
            ("karpenter.k8s.aws/ec2nodeclass".into(), class_name.to_string()),
            ("karpenter.sh/nodeclaim".into(), claim_name.clone()),
            ("eks:eks-cluster-name".into(), ctx.scenario.cluster.clone()),
        ],
        launch_template: None,
    };
    let mut claim = nodeclaim_object(ctx, np, class_name, &claim_name, itype, zone, max_pods);
    if let Ok(nc) = ctx.store.get(EC2NODECLASS, "", class_name) {
        claim["metadata"]["annotations"] = json!({HASH_ANNOTATION: nodeclass_hash(&nc.value)});
    }
    let created = match ctx.store.create(NODECLAIM, "", claim, &WriteOptions::internal()) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("creating NodeClaim {claim_name}: {e}");
            return None;
        }
    };
    match launch::launch(ctx, req).await {
        Ok(info) => {
            let _ = edit(&ctx.store, NODECLAIM, "", &claim_name, |v| {
                v["status"]["nodeName"] = json!(node_name(info.ip, &ctx.scenario.region));
                v["status"]["providerID"] = json!(format!("aws:///{zone}/{}", info.instance_id));
            });
            Some(claim_name)
        }
        Err(e) => {
            ctx.events.emit(
                ctx,
                &created.value,
                true,
                "LaunchFailed",
                &format!("creating instance, {e}"),
                Source::Karpenter,
            );
            *ctx.launch_retry_at.lock().unwrap_or_else(|e| e.into_inner()) =
                ctx.now() + std::time::Duration::from_secs(30);
            remove_finalizer(ctx, &created);
            let _ = ctx.store.delete(NODECLAIM, "", &claim_name, &DeleteOptions::default());
            None
        }
    }
}

pub const HASH_ANNOTATION: &str = "karpenter.k8s.aws/ec2nodeclass-hash";
/// The NodeClaim pre-spun to replace a drifted one.
pub const REPLACEMENT_ANNOTATION: &str = "sandbox.podnet.io/drift-replacement";

pub use crate::scenario::objects::nodeclass_hash;

/// A disruption budget's `nodes` (`"10%"` or `"3"`) over `total` nodes;
/// percentages round up, as Karpenter's do.
pub fn budget_nodes(nodes: &str, total: usize) -> usize {
    match nodes.strip_suffix('%') {
        Some(p) => p
            .trim()
            .parse::<f64>()
            .map(|p| (p * total as f64 / 100.0).ceil() as usize)
            .unwrap_or(0),
        None => nodes.trim().parse().unwrap_or(0),
    }
}

/// Drift: a NodeClaim whose EC2NodeClass spec changed since it launched is
/// marked `Drifted`, then replaced within the NodePool's disruption budget —
/// the replacement launched and Ready before the drifted one is deleted
/// (and drained by termination).
async fn drift(ctx: &Ctx, claims: &[Arc<Stored>], nodes: &BTreeMap<String, Arc<Stored>>) {
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
        for c in &drifted {
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
        let replacement_of = |c: &Stored| -> Option<String> {
            c.value
                .pointer(&format!(
                    "/metadata/annotations/{}",
                    REPLACEMENT_ANNOTATION.replace('/', "~1")
                ))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        // Replacements that are up let their drifted node go.
        let mut disrupting = mine.iter().filter(|c| is_deleting(&c.value)).count();
        for c in &drifted {
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
        let zone = label(&next.value, "topology.kubernetes.io/zone")
            .unwrap_or("")
            .to_string();
        let itype = label(&next.value, "node.kubernetes.io/instance-type").unwrap_or("");
        let Some(t) = instance_types::lookup(itype) else {
            continue;
        };
        let zones = subnets_by_zone(ctx, &nc.value).await;
        let Some(subnet) = zones.get(&zone).cloned() else {
            continue;
        };
        let max_pods = nc
            .value
            .pointer("/spec/kubelet/maxPods")
            .and_then(Value::as_u64)
            .map(|m| m as u32)
            .unwrap_or_else(|| t.max_pods(reserved_enis(ctx), false));
        if let Some(name) = launch_claim(ctx, &np, &class_name, t, &zone, &subnet, max_pods).await {
            let _ = edit(&ctx.store, NODECLAIM, "", next.name(), |v| {
                v["metadata"]["annotations"][REPLACEMENT_ANNOTATION] = json!(name);
            });
        }
    }
}

fn nodeclaim_object(
    ctx: &Ctx,
    np: &Stored,
    class: &str,
    name: &str,
    t: &instance_types::InstanceType,
    zone: &str,
    max_pods: u32,
) -> Value {
    let now = crate::kube::ops::now_rfc3339();
    let cap_mem = crate::scenario::objects::capacity_mem_mib(t);
    let (alloc_cpu, _) = t.allocatable(max_pods);
    let alloc_mem = cap_mem.saturating_sub(11 * u64::from(max_pods) + 255 + 100);
    json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
        "metadata": {
            "name": name,
            "finalizers": [FINALIZER],
            "labels": {
                "karpenter.sh/nodepool": np.name(),
                "karpenter.k8s.aws/ec2nodeclass": class,
                "karpenter.sh/capacity-type": "on-demand",
                "node.kubernetes.io/instance-type": t.name,
                "topology.kubernetes.io/zone": zone,
                "topology.kubernetes.io/region": ctx.scenario.region,
                "kubernetes.io/arch": instance_types::k8s_arch(t),
                "kubernetes.io/os": "linux",
            },
            "ownerReferences": [{"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "name": np.name(), "uid": np.uid(), "blockOwnerDeletion": true}],
        },
        "spec": {
            "expireAfter": "720h",
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": class},
            "requirements": [
                {"key": "karpenter.sh/nodepool", "operator": "In", "values": [np.name()]},
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [t.name]},
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]},
            ],
            "resources": {"requests": {"pods": "1"}},
        },
        "status": {
            "capacity": {"cpu": t.vcpus.to_string(), "memory": format!("{}Ki", cap_mem * 1024), "pods": max_pods.to_string(), "ephemeral-storage": "20Gi"},
            "allocatable": {"cpu": format!("{alloc_cpu}m"), "memory": format!("{}Ki", alloc_mem * 1024), "pods": max_pods.to_string(), "ephemeral-storage": "17Gi"},
            "conditions": [{"type": "Launched", "status": "True", "reason": "Launched", "message": "", "lastTransitionTime": now}],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_round_percentages_up() {
        assert_eq!(budget_nodes("10%", 4), 1);
        assert_eq!(budget_nodes("10%", 0), 0);
        assert_eq!(budget_nodes("50%", 5), 3);
        assert_eq!(budget_nodes("2", 10), 2);
        assert_eq!(budget_nodes("0", 10), 0);
        assert_eq!(budget_nodes("lots", 10), 0);
    }

    #[test]
    fn the_nodeclass_hash_follows_the_spec_only() {
        let a = json!({"metadata": {"name": "default"}, "spec": {"role": "r"}});
        let b = json!({"metadata": {"name": "default", "resourceVersion": "9"}, "spec": {"role": "r"}});
        let c = json!({"metadata": {"name": "default"}, "spec": {"role": "other"}});
        assert_eq!(nodeclass_hash(&a), nodeclass_hash(&b));
        assert_ne!(nodeclass_hash(&a), nodeclass_hash(&c));
    }
}
