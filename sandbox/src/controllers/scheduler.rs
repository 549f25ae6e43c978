//! The default scheduler, reduced to the predicates a migration meets:
//! room (pod count against `allocatable.pods`, cpu and memory requests),
//! nodeSelector and required node affinity, taints and tolerations
//! (`node.kubernetes.io/unschedulable`, `karpenter.sh/disrupted`,
//! `node.kubernetes.io/not-ready`), required pod anti-affinity on the
//! hostname, and zone spreading as a preference. Higher priority binds
//! first. A pod that fits nowhere gets `PodScheduled=False/Unschedulable`
//! (what Karpenter watches for) and a `FailedScheduling` event.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::events::Source;
use super::{Ctx, edit, is_deleting, node_ready, pod_active, s};
use crate::kube::Stored;
use crate::kube::derived::node_selected;
use crate::kube::resources::{NODE, POD};
use crate::kube::selectors::LabelSelector;
use crate::scenario::{cpu_millis, mem_mib, objects};

struct Room {
    name: String,
    node: Arc<Stored>,
    pods: i64,
    cpu_m: i64,
    mem_mib: i64,
    zone: String,
    /// Labels of the pods on it (for anti-affinity and spreading).
    pod_labels: Vec<Value>,
    /// Pods that preemption could remove: (namespace, name, priority, cpu, memory).
    victims: Vec<(String, String, i64, i64, i64)>,
}

fn quantity_cpu(v: &Value, p: &str) -> i64 {
    v.pointer(p)
        .and_then(Value::as_str)
        .and_then(cpu_millis)
        .map(i64::from)
        .unwrap_or(0)
}

fn quantity_mem(v: &Value, p: &str) -> i64 {
    v.pointer(p)
        .and_then(Value::as_str)
        .and_then(|q| {
            q.strip_suffix("Ki")
                .and_then(|k| k.parse::<u64>().ok())
                .map(|k| k / 1024)
                .or_else(|| mem_mib(q))
        })
        .map(|m| m as i64)
        .unwrap_or(0)
}

/// Does a toleration list tolerate a taint?
pub fn tolerates(tolerations: &[Value], taint: &Value) -> bool {
    tolerations.iter().any(|t| {
        let key = s(t, "/key");
        let op = match s(t, "/operator") {
            "" => "Equal",
            o => o,
        };
        let effect = s(t, "/effect");
        let key_ok = if key.is_empty() {
            op == "Exists"
        } else {
            key == s(taint, "/key") && (op == "Exists" || s(t, "/value") == s(taint, "/value"))
        };
        key_ok && (effect.is_empty() || effect == s(taint, "/effect"))
    })
}

/// Taints that keep a pod off a node (NoSchedule/NoExecute), including the
/// one `spec.unschedulable` implies.
pub fn blocking_taint(node: &Value, pod_spec: &Value) -> Option<String> {
    let tolerations = pod_spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut taints: Vec<Value> = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        taints.push(json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}));
    }
    taints
        .iter()
        .filter(|t| matches!(s(t, "/effect"), "NoSchedule" | "NoExecute"))
        .find(|t| !tolerates(&tolerations, t))
        .map(|t| s(t, "/key").to_string())
}

fn anti_affinity_blocks(pod_spec: &Value, room: &Room) -> bool {
    let terms = pod_spec
        .pointer("/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    terms.iter().any(|t| {
        s(t, "/topologyKey") == "kubernetes.io/hostname"
            && t.get("labelSelector")
                .and_then(|sel| LabelSelector::from_json(sel).ok())
                .is_some_and(|sel| room.pod_labels.iter().any(|l| sel.matches(l.as_object())))
    })
}

fn spread_selector(pod_spec: &Value) -> Option<LabelSelector> {
    pod_spec
        .pointer("/topologySpreadConstraints")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| s(c, "/topologyKey") == "topology.kubernetes.io/zone")
        .and_then(|c| c.get("labelSelector"))
        .and_then(|sel| LabelSelector::from_json(sel).ok())
}

/// A pod's priority: `spec.priority`, or what the built-in priority classes
/// give (the admission plugin's job, which the sandbox skips).
fn priority(pod: &Value) -> i64 {
    match pod.pointer("/spec/priority").and_then(Value::as_i64) {
        Some(p) if p != 0 => p,
        _ => match s(pod, "/spec/priorityClassName") {
            "system-node-critical" => 2_000_001_000,
            "system-cluster-critical" => 2_000_000_000,
            _ => 0,
        },
    }
}

/// Preemption: the node where removing the fewest lower-priority pods makes
/// room for `pod`, and those pods.
fn preemption(pod: &Value, rooms: &BTreeMap<String, Room>) -> Option<(String, Vec<(String, String)>)> {
    let prio = priority(pod);
    if prio <= 0 {
        return None;
    }
    let spec = &pod["spec"];
    let (cpu, mem) = objects::requests(spec);
    let (cpu, mem) = (i64::from(cpu), mem as i64);
    let mut best: Option<(String, Vec<(String, String)>)> = None;
    for r in rooms.values() {
        if !node_ready(&r.node.value)
            || blocking_taint(&r.node.value, spec).is_some()
            || !node_selected(&r.node.value, spec)
            || anti_affinity_blocks(spec, r)
        {
            continue;
        }
        let mut lower: Vec<&(String, String, i64, i64, i64)> = r.victims.iter().filter(|v| v.2 < prio).collect();
        lower.sort_by_key(|v| v.2);
        let (mut pods, mut c, mut m) = (r.pods, r.cpu_m, r.mem_mib);
        let mut chosen = Vec::new();
        for v in lower {
            if pods >= 1 && c >= cpu && m >= mem {
                break;
            }
            pods += 1;
            c += v.3;
            m += v.4;
            chosen.push((v.0.clone(), v.1.clone()));
        }
        if pods >= 1 && c >= cpu && m >= mem && best.as_ref().is_none_or(|b| chosen.len() < b.1.len()) {
            best = Some((r.name.clone(), chosen));
        }
    }
    best
}

pub fn reconcile(ctx: &Ctx) {
    let pods = ctx.list(POD);
    let mut pending: Vec<&Arc<Stored>> = pods
        .iter()
        .filter(|p| s(&p.value, "/spec/nodeName").is_empty() && pod_active(&p.value))
        .collect();
    if pending.is_empty() {
        return;
    }
    pending.sort_by_key(|p| {
        (
            std::cmp::Reverse(priority(&p.value)),
            s(&p.value, "/metadata/creationTimestamp").to_string(),
        )
    });
    let mut rooms = rooms(ctx, &pods);
    let total = rooms.len();
    for p in pending {
        let spec = &p.value["spec"];
        let (cpu, mem) = objects::requests(spec);
        let (cpu, mem) = (i64::from(cpu), mem as i64);
        let (fits, reasons) = filter(&rooms, spec, cpu, mem);
        let best = best_fit(&rooms, &fits, spec);
        // Preemption is worked out only for a pod that fits nowhere.
        let preempt = best.is_none().then(|| preemption(&p.value, &rooms)).flatten();
        match (best, preempt) {
            (Some(node), _) => bind(ctx, p, &node, &mut rooms, cpu, mem),
            (None, Some((node, victims))) => preempt_for(ctx, p, &node, &victims, &mut rooms),
            (None, None) => unschedulable(ctx, p, &reasons, total),
        }
    }
}

/// Every node's room left: allocatable minus the requests of the pods
/// bound to it, with those pods' labels and the ones preemption may evict.
fn rooms(ctx: &Ctx, pods: &[Arc<Stored>]) -> BTreeMap<String, Room> {
    let mut rooms: BTreeMap<String, Room> = ctx
        .list(NODE)
        .into_iter()
        .filter(|n| !is_deleting(&n.value))
        .map(|n| {
            let v = &n.value;
            let room = Room {
                name: n.name().to_string(),
                pods: v
                    .pointer("/status/allocatable/pods")
                    .and_then(Value::as_str)
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(0),
                cpu_m: quantity_cpu(v, "/status/allocatable/cpu"),
                mem_mib: quantity_mem(v, "/status/allocatable/memory"),
                zone: super::label(v, "topology.kubernetes.io/zone").unwrap_or("").to_string(),
                node: n.clone(),
                pod_labels: vec![],
                victims: vec![],
            };
            (n.name().to_string(), room)
        })
        .collect();
    for p in pods {
        let node = s(&p.value, "/spec/nodeName");
        if node.is_empty() || !pod_active(&p.value) {
            continue;
        }
        if let Some(r) = rooms.get_mut(node) {
            let (cpu, mem) = objects::requests(&p.value["spec"]);
            r.pods -= 1;
            r.cpu_m -= i64::from(cpu);
            r.mem_mib -= mem as i64;
            r.pod_labels
                .push(p.value.pointer("/metadata/labels").cloned().unwrap_or(json!({})));
            if !super::is_daemon_pod(&p.value) {
                r.victims.push((
                    p.namespace().to_string(),
                    p.name().to_string(),
                    priority(&p.value),
                    i64::from(cpu),
                    mem as i64,
                ));
            }
        }
    }
    rooms
}

/// The nodes a pod fits on, and for the others why not (counted per
/// reason, as the scheduler reports them).
fn filter<'a>(
    rooms: &'a BTreeMap<String, Room>,
    spec: &Value,
    cpu: i64,
    mem: i64,
) -> (Vec<&'a Room>, BTreeMap<String, usize>) {
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut fits: Vec<&Room> = Vec::new();
    for r in rooms.values() {
        let why = if !node_ready(&r.node.value) {
            Some("node(s) had untolerated taint {node.kubernetes.io/not-ready: }".to_string())
        } else if let Some(t) = blocking_taint(&r.node.value, spec) {
            Some(format!("node(s) had untolerated taint {{{t}: }}"))
        } else if !node_selected(&r.node.value, spec) {
            Some("node(s) didn't match Pod's node affinity/selector".to_string())
        } else if r.pods < 1 {
            Some("Too many pods".to_string())
        } else if r.cpu_m < cpu {
            Some("Insufficient cpu".to_string())
        } else if r.mem_mib < mem {
            Some("Insufficient memory".to_string())
        } else if anti_affinity_blocks(spec, r) {
            Some("node(s) didn't match pod anti-affinity rules".to_string())
        } else {
            None
        };
        match why {
            Some(w) => *reasons.entry(w).or_default() += 1,
            None => fits.push(r),
        }
    }
    (fits, reasons)
}

/// Of the nodes a pod fits on, the one its topology spread prefers (the
/// zone with fewest matching pods), then the emptiest.
fn best_fit(rooms: &BTreeMap<String, Room>, fits: &[&Room], spec: &Value) -> Option<String> {
    let spread = spread_selector(spec);
    let zone_count = |zone: &str| -> usize {
        spread.as_ref().map_or(0, |sel| {
            rooms
                .values()
                .filter(|r| r.zone == zone)
                .flat_map(|r| r.pod_labels.iter())
                .filter(|l| sel.matches(l.as_object()))
                .count()
        })
    };
    fits.iter()
        .min_by_key(|r| (zone_count(&r.zone), std::cmp::Reverse(r.pods), r.name.clone()))
        .map(|r| r.name.clone())
}

/// Bind a pod to its node and take its requests from the node's room.
fn bind(ctx: &Ctx, p: &Stored, node: &str, rooms: &mut BTreeMap<String, Room>, cpu: i64, mem: i64) {
    let now = crate::kube::ops::now_rfc3339();
    let bound = edit(&ctx.store, POD, p.namespace(), p.name(), |v| {
        v["spec"]["nodeName"] = json!(node);
        v["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True",
            "lastProbeTime": null, "lastTransitionTime": now}]);
    });
    if bound.is_ok()
        && let Some(r) = rooms.get_mut(node)
    {
        r.pods -= 1;
        r.cpu_m -= cpu;
        r.mem_mib -= mem;
        r.pod_labels
            .push(p.value.pointer("/metadata/labels").cloned().unwrap_or(json!({})));
        ctx.events.emit(
            ctx,
            &p.value,
            false,
            "Scheduled",
            &format!("Successfully assigned {}/{} to {node}", p.namespace(), p.name()),
            Source::Scheduler,
        );
    }
}

/// Evict the victims preemption chose and nominate the node for the pod.
fn preempt_for(ctx: &Ctx, p: &Stored, node: &str, victims: &[(String, String)], rooms: &mut BTreeMap<String, Room>) {
    for (ns, name) in victims {
        if let Ok(v) = ctx.store.get(POD, ns, name) {
            ctx.events.emit(
                ctx,
                &v.value,
                false,
                "Preempted",
                &format!("Preempted by pod {} on node {node}", p.uid()),
                Source::Scheduler,
            );
        }
        let _ = ctx.store.delete(POD, ns, name, &crate::kube::DeleteOptions::default());
    }
    if let Some(r) = rooms.get_mut(node) {
        // Held for the preemptor: it binds on the next pass.
        r.pods = r.pods.min(0);
    }
    let _ = edit(&ctx.store, POD, p.namespace(), p.name(), |v| {
        v["status"]["nominatedNodeName"] = json!(node);
    });
}

/// A pod that fits nowhere: PodScheduled False with the scheduler's
/// message, and a FailedScheduling event.
fn unschedulable(ctx: &Ctx, p: &Stored, reasons: &BTreeMap<String, usize>, total: usize) {
    let detail = reasons
        .iter()
        .map(|(w, n)| format!("{n} {w}"))
        .collect::<Vec<_>>()
        .join(", ");
    let msg = format!(
        "0/{total} nodes are available: {detail}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
    );
    let already = p
        .value
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable" && c["message"] == json!(msg))
        });
    if !already {
        let now = crate::kube::ops::now_rfc3339();
        let m = msg.clone();
        let _ = edit(&ctx.store, POD, p.namespace(), p.name(), |v| {
            v["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": m, "lastProbeTime": null, "lastTransitionTime": now}]);
        });
    }
    ctx.events
        .emit(ctx, &p.value, true, "FailedScheduling", &msg, Source::Scheduler);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Value {
        json!({"key": key, "value": value, "effect": effect})
    }

    #[test]
    fn tolerates_by_key_value_and_effect() {
        let disrupted = taint("karpenter.sh/disrupted", "", "NoSchedule");
        let dedicated = taint("dedicated", "gpu", "NoSchedule");
        // Empty operator means Equal: key and value must match.
        assert!(tolerates(&[json!({"key": "dedicated", "value": "gpu"})], &dedicated));
        assert!(!tolerates(&[json!({"key": "dedicated", "value": "cpu"})], &dedicated));
        assert!(tolerates(
            &[json!({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"})],
            &dedicated
        ));
        // Exists ignores the value.
        assert!(tolerates(
            &[json!({"key": "dedicated", "operator": "Exists"})],
            &dedicated
        ));
        assert!(tolerates(
            &[json!({"key": "karpenter.sh/disrupted", "operator": "Exists", "effect": "NoSchedule"})],
            &disrupted
        ));
        // The effect, when given, must match.
        assert!(!tolerates(
            &[json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"})],
            &dedicated
        ));
        // An empty key with Exists tolerates everything; with Equal nothing.
        assert!(tolerates(&[json!({"operator": "Exists"})], &disrupted));
        assert!(!tolerates(&[json!({"operator": "Equal"})], &disrupted));
        // Another key does not help; no tolerations tolerate nothing.
        assert!(!tolerates(&[json!({"key": "other", "operator": "Exists"})], &disrupted));
        assert!(!tolerates(&[], &disrupted));
    }

    #[test]
    fn blocking_taint_covers_cordon_and_karpenter_disruption() {
        let plain = json!({"spec": {}});
        assert_eq!(blocking_taint(&json!({"spec": {}}), &plain), None);

        // A cordoned node (spec.unschedulable) blocks like its taint.
        let cordoned = json!({"spec": {"unschedulable": true}});
        assert_eq!(
            blocking_taint(&cordoned, &plain).as_deref(),
            Some("node.kubernetes.io/unschedulable")
        );
        let tolerant = json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]});
        assert_eq!(blocking_taint(&cordoned, &tolerant), None);

        // A node Karpenter is disrupting.
        let disrupted = json!({"spec": {"taints": [{"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}]}});
        assert_eq!(
            blocking_taint(&disrupted, &plain).as_deref(),
            Some("karpenter.sh/disrupted")
        );
        // DaemonSet-style "tolerate everything".
        assert_eq!(
            blocking_taint(&disrupted, &json!({"tolerations": [{"operator": "Exists"}]})),
            None
        );

        // PreferNoSchedule never blocks; NoExecute does.
        let soft = json!({"spec": {"taints": [{"key": "a", "effect": "PreferNoSchedule"}]}});
        assert_eq!(blocking_taint(&soft, &plain), None);
        let hard = json!({"spec": {"taints": [{"key": "b", "value": "x", "effect": "NoExecute"}]}});
        assert_eq!(blocking_taint(&hard, &plain).as_deref(), Some("b"));

        // The first taint not tolerated is reported.
        let both = json!({"spec": {"unschedulable": true, "taints": [{"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}]}});
        let only_disrupted = json!({"tolerations": [{"key": "karpenter.sh/disrupted", "operator": "Exists"}]});
        assert_eq!(
            blocking_taint(&both, &only_disrupted).as_deref(),
            Some("node.kubernetes.io/unschedulable")
        );
    }
}
