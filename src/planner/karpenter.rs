//! What the plan does to Karpenter, per NodePool and per EC2NodeClass: the
//! controller settings, the `spec.kubelet.maxPods` each EC2NodeClass must
//! carry under custom networking, and the batches each NodePool's old nodes
//! are replaced in — within that NodePool's own disruption budget.
//!
//! A static `kubelet.maxPods` is one number for every instance type a class
//! launches, so it must fit the smallest of them: under custom networking the
//! primary ENI holds no pods, and a value above what the smallest type holds
//! leaves pods stuck on IP assignment. Budgets follow Karpenter's own
//! arithmetic (`NodePool.GetAllowedDisruptionsByReason`): the most
//! restrictive active budget for the `Drifted` reason, a percentage rounded
//! up over the NodePool's nodes, `10%` when none is written.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::Finding;
use super::capacity::cni_after;
use crate::capacity::max_pods;
use crate::discovery::Discovery;
use crate::k8s::snapshot::NodePoolSummary;
use crate::spec::Spec;
use crate::steps::karpenter::KarpenterInputs;
use crate::verify::Expectations;

/// NodePool → the EC2NodeClass it launches from.
pub fn pool_classes(d: &Discovery) -> BTreeMap<String, String> {
    d.kube
        .karpenter
        .iter()
        .flat_map(|k| &k.nodepools)
        .filter_map(|p| Some((p.name.clone(), p.node_class.clone()?)))
        .collect()
}

pub(super) fn inputs(spec: &Spec, d: &Discovery, f: &mut Vec<Finding>) -> (Option<KarpenterInputs>, String) {
    if !spec.karpenter.configure {
        return (None, "karpenter.configure = false in the plan file".into());
    }
    let Some(k) = &d.kube.karpenter else {
        return (None, "the cluster runs no Karpenter".into());
    };
    let Some(c) = &k.controller else {
        return (None, "no Karpenter controller Deployment was found".into());
    };
    (
        Some(KarpenterInputs {
            namespace: c.namespace.clone(),
            deployment: c.deployment.clone(),
            container: c.container.clone(),
            helm_managed: c.helm_managed,
            reserved_enis: spec.karpenter.reserved_enis,
            max_pods: spec.karpenter.max_pods,
            node_classes: spec.karpenter.node_classes.clone(),
            class_max_pods: class_max_pods(spec, d, f),
        }),
        String::new(),
    )
}

/// The Linux NodePools launching from `class` (a Windows NodePool's nodes
/// never use custom networking).
fn pools_of<'d>(d: &'d Discovery, class: &str) -> Vec<&'d NodePoolSummary> {
    d.kube
        .karpenter
        .iter()
        .flat_map(|k| &k.nodepools)
        .filter(|p| p.node_class.as_deref() == Some(class))
        .filter(|p| {
            !p.requirements.iter().any(|r| {
                r["key"] == "kubernetes.io/os"
                    && r["operator"] == "In"
                    && r["values"].as_array().is_some_and(|v| v.iter().all(|x| x == "windows"))
            })
        })
        .collect()
}

/// The most pods every node of a class can hold under custom networking:
/// the least over the instance types its NodePools allow. `Err` names the
/// NodePools that allow types podnet cannot enumerate or does not know.
fn smallest_fit(spec: &Spec, d: &Discovery, class: &str) -> Result<(u32, String), Vec<String>> {
    let after = cni_after(spec, d);
    let pools = pools_of(d, class);
    let mut open = Vec::new();
    let mut best: Option<(u32, String)> = None;
    for p in &pools {
        let types = p.instance_types();
        if types.is_empty() {
            open.push(format!(
                "NodePool {} (no node.kubernetes.io/instance-type In requirement)",
                p.name
            ));
        }
        for t in types {
            match d.instance_types.get(&t) {
                Some(i) => {
                    let m = max_pods(i, &after, false).max_pods;
                    if best.as_ref().is_none_or(|(b, _)| m < *b) {
                        best = Some((m, t));
                    }
                }
                None => open.push(format!("NodePool {} (instance type {t} unknown)", p.name)),
            }
        }
    }
    match best {
        Some(b) if open.is_empty() => Ok(b),
        _ if pools.is_empty() => Err(vec!["no NodePool uses it".into()]),
        _ => Err(open),
    }
}

/// EC2NodeClass → the `spec.kubelet.maxPods` it must carry: the plan's
/// `karpenter.max_pods` where it applies (refused above the smallest type),
/// else a static value already there, lowered to what the smallest type
/// holds. A class without a static value is left to Karpenter, which
/// computes max pods per type from `RESERVED_ENIS`.
fn class_max_pods(spec: &Spec, d: &Discovery, f: &mut Vec<Finding>) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    let Some(k) = &d.kube.karpenter else { return out };
    let want = &spec.karpenter;
    for nc in &k.nodeclasses {
        let planned = want
            .max_pods
            .filter(|_| want.node_classes.is_empty() || want.node_classes.contains(&nc.name));
        let fit = smallest_fit(spec, d, &nc.name);
        match (planned, nc.kubelet_max_pods, fit) {
            (Some(m), _, Ok((fit, t))) if m > fit => f.push(Finding::error(
                "karpenter.max-pods-too-high",
                format!("karpenter.max_pods = {m} for EC2NodeClass {}, but its smallest instance type {t} holds {fit} pods under custom networking", nc.name),
                format!("set karpenter.max_pods to at most {fit}, or leave it out and let RESERVED_ENIS size each type"),
            )),
            (Some(m), _, fit) => {
                if let Err(open) = fit {
                    f.push(Finding::warning(
                        "karpenter.max-pods-unchecked",
                        format!("karpenter.max_pods = {m} for EC2NodeClass {}: podnet cannot check it fits every node: {}", nc.name, open.join("; ")),
                        "make sure the smallest instance type it can launch holds that many pods under custom networking (podnet max-pods)",
                    ));
                }
                out.insert(nc.name.clone(), m);
            }
            (None, Some(have), Ok((fit, t))) => {
                // Lowering the value drifts the class's nodes: Karpenter
                // replaces them. Only where the plan replaces them anyway.
                let left: Vec<&str> = pools_of(d, &nc.name)
                    .iter()
                    .map(|p| p.name.as_str())
                    .filter(|p| !spec.replacement.node_pools.selects(p))
                    .collect();
                if have <= fit {
                    out.insert(nc.name.clone(), have);
                } else if left.is_empty() {
                    out.insert(nc.name.clone(), fit);
                } else {
                    f.push(Finding::warning(
                        "karpenter.static-max-pods-left",
                        format!("EC2NodeClass {} sets kubelet.maxPods = {have}, more than its smallest type {t} holds under custom networking ({fit}), and the plan leaves its NodePool(s) {} as they are", nc.name, left.join(", ")),
                        format!("its new nodes will promise pods they have no address for: set its maxPods to {fit} yourself (Karpenter then replaces its nodes as drifted), or select those NodePools in replacement.node_pools"),
                    ));
                }
            }
            (None, Some(have), Err(open)) => f.push(Finding::error(
                "karpenter.static-max-pods",
                format!("EC2NodeClass {} sets kubelet.maxPods = {have} for every type it launches, and podnet cannot tell which is smallest: {}", nc.name, open.join("; ")),
                format!("list the instance types in its NodePools' requirements, set karpenter.max_pods (with node_classes = [\"{}\"]) to what the smallest holds, or remove spec.kubelet.maxPods so Karpenter sizes each type from RESERVED_ENIS", nc.name),
            )),
            (None, None, _) => {}
        }
    }
    out
}

/// How many of a NodePool's `nodes` may be replaced at once: Karpenter's
/// allowed disruptions for `Drifted`. Budgets with a schedule count (when
/// they allow fewer, podnet cannot know whether their window is open); a
/// scheduled budget of zero is reported, not obeyed, since podnet runs when
/// the user runs it.
fn allowed(p: &NodePoolSummary, nodes: usize, f: &mut Vec<Finding>) -> usize {
    let default = [serde_json::json!({"nodes": "10%"})];
    let budgets: &[Value] = if p.budgets.is_empty() { &default } else { &p.budgets };
    let mut least = usize::MAX;
    for b in budgets {
        // No reasons (or an empty list) means every reason.
        let applies = b["reasons"]
            .as_array()
            .is_none_or(|r| r.is_empty() || r.iter().any(|x| x == "Drifted"));
        if !applies {
            continue;
        }
        let n = match &b["nodes"] {
            Value::String(s) => scaled(s, nodes),
            Value::Number(n) => n.as_u64().map(|n| n as usize),
            _ => None,
        };
        let Some(n) = n else { continue };
        if let Some(schedule) = b["schedule"].as_str()
            && n == 0
        {
            f.push(Finding::warning(
                "karpenter.budget-window",
                format!(
                    "NodePool {} allows no disruption during \"{schedule}\" for {}",
                    p.name,
                    b["duration"].as_str().unwrap_or("?")
                ),
                "podnet replaces nodes when apply runs: run it outside that window",
            ));
            continue;
        }
        least = least.min(n);
    }
    least
}

/// NodePool → the most of its nodes one batch may replace, where its
/// budget is below `batch_size` (what the finish unit keeps to as well).
pub(crate) fn pool_batch(d: &Discovery, node_pools: &[String], batch_size: u32) -> BTreeMap<String, u32> {
    let mut sink = Vec::new();
    d.kube
        .karpenter
        .iter()
        .flat_map(|k| &k.nodepools)
        .filter(|p| node_pools.contains(&p.name))
        .filter_map(|p| {
            let nodes = d
                .kube
                .nodes
                .iter()
                .filter(|n| n.nodepool.as_deref() == Some(p.name.as_str()))
                .count();
            let n = allowed(p, nodes, &mut sink).max(1);
            (n < batch_size as usize).then(|| (p.name.clone(), n as u32))
        })
        .collect()
}

/// `"10%"` of `nodes`, rounded up as Karpenter rounds; `"3"` as is.
fn scaled(s: &str, nodes: usize) -> Option<usize> {
    match s.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<usize>().ok().map(|p| (p * nodes).div_ceil(100)),
        None => s.trim().parse().ok(),
    }
}

/// The Karpenter nodes still to replace, NodePool by NodePool (sorted by
/// name within each), in batches of at most `batch_size` and of what the
/// NodePool's budget allows. A NodePool whose budget allows none is an
/// error in `findings` (when given) and gets batches of one.
pub(crate) fn batches(
    d: &Discovery,
    node_pools: &[String],
    expect: &Expectations,
    batch_size: u32,
    findings: Option<&mut Vec<Finding>>,
) -> Vec<Vec<String>> {
    let mut sink = Vec::new();
    let f = findings.unwrap_or(&mut sink);
    let pools: BTreeMap<&str, &NodePoolSummary> = d
        .kube
        .karpenter
        .iter()
        .flat_map(|k| &k.nodepools)
        .map(|p| (p.name.as_str(), p))
        .collect();
    let wanted: BTreeSet<&str> = node_pools.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for pool in wanted {
        let all: Vec<_> = d
            .kube
            .nodes
            .iter()
            .filter(|n| n.nodepool.as_deref() == Some(pool))
            .collect();
        let mut old: Vec<String> = all
            .iter()
            .filter(|n| n.on_vpc_cni() && !expect.node_is_migrated(n))
            .map(|n| n.name.clone())
            .collect();
        if old.is_empty() {
            continue;
        }
        old.sort();
        let mut size = batch_size.max(1) as usize;
        if let Some(p) = pools.get(pool) {
            let budget = allowed(p, all.len(), f);
            if budget == 0 {
                f.push(Finding::error(
                    "karpenter.budget-blocks",
                    format!("NodePool {pool}'s disruption budget allows no node to be replaced"),
                    format!("raise its spec.disruption.budgets for the migration, or leave it out with replacement.node_pools (its {} old node(s) then stay on the node subnets)", old.len()),
                ));
            }
            size = size.min(budget.max(1));
        }
        out.extend(old.chunks(size).map(<[String]>::to_vec));
    }
    out
}
