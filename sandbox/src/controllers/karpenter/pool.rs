//! What the Karpenter controllers read off NodePools, NodeClaims and the
//! controller Deployment, and the NodeClaim they create: the constants
//! Karpenter puts on objects (<https://karpenter.sh/docs/concepts/disruption/>,
//! <https://karpenter.sh/docs/concepts/nodeclaims/>), `RESERVED_ENIS`
//! (<https://karpenter.sh/docs/reference/settings/>), NodePool requirements,
//! NodeClaim capacity, and disruption budgets.

use serde_json::{Value, json};

use crate::controllers::{Ctx, s};
use crate::instance_types;
use crate::kube::Stored;
use crate::kube::resources::DEPLOYMENT;
use crate::scenario::cpu_millis;

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

pub(super) fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

pub(super) fn requirement(np: &Value, key: &str) -> Vec<String> {
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
pub(super) fn synthetic_node(np: &Value, zone: &str, itype: &str) -> Value {
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

pub(super) fn claim_pods(claim: &Value) -> i64 {
    claim
        .pointer("/status/capacity/pods")
        .and_then(Value::as_str)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0)
}

pub(super) fn claim_cpu(claim: &Value) -> u32 {
    claim
        .pointer("/status/capacity/cpu")
        .and_then(Value::as_str)
        .and_then(cpu_millis)
        .unwrap_or(0)
}

pub const HASH_ANNOTATION: &str = "karpenter.k8s.aws/ec2nodeclass-hash";
/// The NodeClaim pre-spun to replace a drifted one.
pub const REPLACEMENT_ANNOTATION: &str = "sandbox.podnet.io/drift-replacement";

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

pub(super) fn nodeclaim_object(
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
    use crate::scenario::objects::nodeclass_hash;

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
