//! Provisioning: a NodeClaim for the unschedulable pods a NodePool could
//! host, of the smallest fitting instance type within the pool's limits, in
//! the zone with the fewest of its nodes and the subnet (from the
//! EC2NodeClass `subnetSelectorTerms`) with the most free addresses, and the
//! instance launched in moto
//! (<https://karpenter.sh/docs/concepts/scheduling/>,
//! <https://karpenter.sh/docs/concepts/nodeclasses/#specsubnetselectorterms>).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::controllers::events::Source;
use crate::controllers::launch::{self, LaunchRequest, ensure_subnet};
use crate::controllers::{Ctx, edit, is_deleting, label, node_ready, pod_active, s};
use crate::instance_types;
use crate::kube::derived::node_selected;
use crate::kube::resources::{EC2NODECLASS, NODECLAIM, NODEPOOL};
use crate::kube::{DeleteOptions, Stored, WriteOptions};
use crate::scenario::objects::NodeOrigin;
use crate::scenario::objects::nodeclass_hash;
use crate::scenario::{cpu_millis, node_name};
use crate::workloads::suffix;

use super::pool::{
    HASH_ANNOTATION, claim_cpu, claim_pods, nodeclaim_object, requirement, reserved_enis, synthetic_node,
};
use super::termination::remove_finalizer;

/// Zones the EC2NodeClass can launch in, with the subnet to use in each.
pub(super) async fn subnets_by_zone(ctx: &Ctx, nodeclass: &Value) -> BTreeMap<String, String> {
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

pub(super) async fn provision(
    ctx: &Ctx,
    claims: &[Arc<Stored>],
    nodes: &BTreeMap<String, Arc<Stored>>,
    pods: &[Arc<Stored>],
) {
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
    // Karpenter offers a pod to NodePools by weight, heaviest first, equal
    // weights by name, later in the alphabet first
    // (sigs.k8s.io/karpenter NodePoolList.OrderByWeight); a pool that takes
    // a pod leaves it to no other, a pool at its limits passes it on.
    let mut pools = ctx.list(NODEPOOL);
    pools.sort_by(|a, b| {
        let w = |p: &Arc<Stored>| p.value.pointer("/spec/weight").and_then(Value::as_i64).unwrap_or(0);
        w(b).cmp(&w(a)).then_with(|| b.name().cmp(a.name()))
    });
    let mut waiting = unschedulable;
    for np in pools {
        if is_deleting(&np.value) {
            continue;
        }
        let taken = provision_pool(ctx, &np, claims, nodes, pods, &waiting, reserved).await;
        waiting.retain(|p| !taken.iter().any(|t| t == p.uid()));
    }
}

/// One NodePool's answer to the unschedulable pods it could take: a
/// NodeClaim of the smallest type that holds them, within its limits. The
/// uids of the pods it took (room coming on its claims, or a new claim).
async fn provision_pool(
    ctx: &Ctx,
    np: &Arc<Stored>,
    claims: &[Arc<Stored>],
    nodes: &BTreeMap<String, Arc<Stored>>,
    pods: &[Arc<Stored>],
    unschedulable: &[&Arc<Stored>],
    reserved: u32,
) -> Vec<String> {
    let np_name = np.name().to_string();
    let class_name = s(&np.value, "/spec/template/spec/nodeClassRef/name").to_string();
    let Ok(nodeclass) = ctx.store.get(EC2NODECLASS, "", &class_name) else {
        return vec![];
    };
    let mut types: Vec<&'static instance_types::InstanceType> =
        requirement(&np.value, "node.kubernetes.io/instance-type")
            .iter()
            .filter_map(|t| instance_types::lookup(t))
            .collect();
    if types.is_empty() {
        return vec![];
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
        return vec![];
    }
    let taken: Vec<String> = compatible.iter().map(|p| p.uid().to_string()).collect();
    let mine: Vec<&Arc<Stored>> = claims
        .iter()
        .filter(|c| label(&c.value, "karpenter.sh/nodepool") == Some(np_name.as_str()))
        .collect();
    // Room still coming: claims whose node is not Ready yet.
    let spare = spare_room(&mine, nodes, pods);
    let want = compatible.len() as i64 - spare;
    if want <= 0 {
        return taken;
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
        return vec![];
    };
    let zone = pick_zone(ctx, &np.value, &nodeclass.value, itype, &compatible, &mine).await;
    let Some((zone, subnet)) = zone else { return vec![] };
    let max_pods = max_pods_of(itype);
    // A failed launch leaves the pods to the next pool, as Karpenter falls
    // through to other offerings.
    let Some(claim_name) = launch_claim(ctx, np, &class_name, itype, &zone, &subnet, max_pods).await else {
        return vec![];
    };
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
    taken
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
            crate::controllers::scheduler::blocking_taint(
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
    // Karpenter's subnet provider launches into the zone's subnet with the
    // most available addresses and leaves out subnets with none (an
    // instance there would fail `InsufficientFreeAddressesInSubnet`).
    let has_room = |id: &str| ctx.ipam().subnet(id).is_none_or(|s| s.free() > 0);
    zones
        .iter()
        .filter(|(z, _)| node_selected(&synthetic_node(np, z, &itype.name), first))
        .filter(|(_, id)| has_room(id))
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
pub(super) async fn launch_claim(
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
