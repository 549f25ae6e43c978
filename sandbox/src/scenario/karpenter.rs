//! The `[karpenter]` table of a scenario: the controller, its first NodePool
//! and EC2NodeClass (the table's own keys), further NodePools in
//! `[[karpenter.pools]]` — each on its own EC2NodeClass or a shared one, with
//! its own limits, disruption budget and static `kubelet.maxPods` — and the
//! nodes each pool starts with. [`KarpenterSpec::pools`] gives them all in
//! one shape to the seeding.

use serde::{Deserialize, Serialize};

use crate::instance_types;

fn default_nodepool() -> String {
    "default".into()
}
fn default_controller_replicas() -> u32 {
    2
}
fn default_karpenter_version() -> String {
    "1.1.1".into()
}
fn default_one() -> u32 {
    1
}
fn default_limits_cpu() -> String {
    "10".into()
}
fn default_limits_memory() -> String {
    "40Gi".into()
}
/// Karpenter's default when a NodePool writes no budget
/// (<https://karpenter.sh/docs/concepts/disruption/#nodepool-disruption-budgets>).
fn default_budget() -> String {
    "10%".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KarpenterSpec {
    #[serde(default = "default_nodepool")]
    pub nodepool: String,
    #[serde(default = "default_nodepool")]
    pub nodeclass: String,
    pub instance_types: Vec<String>,
    #[serde(default = "default_limits_cpu")]
    pub limits_cpu: String,
    #[serde(default = "default_limits_memory")]
    pub limits_memory: String,
    #[serde(default = "default_controller_replicas")]
    pub controller_replicas: u32,
    #[serde(default = "default_karpenter_version")]
    pub version: String,
    /// `RESERVED_ENIS` on the controller (absent in the seed).
    #[serde(default)]
    pub reserved_enis: Option<u32>,
    /// EC2NodeClass `spec.kubelet.maxPods`.
    #[serde(default)]
    pub max_pods: Option<u32>,
    /// The NodePool's `spec.disruption.budgets[0].nodes`.
    #[serde(default = "default_budget")]
    pub budget: String,
    #[serde(default)]
    pub nodes: Vec<KarpenterNodes>,
    /// NodePools besides the first.
    #[serde(default)]
    pub pools: Vec<PoolSpec>,
}

/// A further NodePool.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    pub nodepool: String,
    /// Its EC2NodeClass: a new one, or the name of another pool's.
    pub nodeclass: String,
    pub instance_types: Vec<String>,
    #[serde(default = "default_limits_cpu")]
    pub limits_cpu: String,
    #[serde(default = "default_limits_memory")]
    pub limits_memory: String,
    /// The EC2NodeClass's `spec.kubelet.maxPods` (a class shared with an
    /// earlier pool takes that pool's).
    #[serde(default)]
    pub max_pods: Option<u32>,
    #[serde(default = "default_budget")]
    pub budget: String,
    #[serde(default)]
    pub nodes: Vec<KarpenterNodes>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KarpenterNodes {
    pub instance_type: String,
    pub zone: String,
    #[serde(default = "default_one")]
    pub count: u32,
}

/// One NodePool as the seeding sees it, the first or a further one.
#[derive(Debug, Clone, Copy)]
pub struct Pool<'a> {
    pub nodepool: &'a str,
    pub nodeclass: &'a str,
    pub instance_types: &'a [String],
    pub limits_cpu: &'a str,
    pub limits_memory: &'a str,
    pub budget: &'a str,
    pub nodes: &'a [KarpenterNodes],
}

impl KarpenterSpec {
    pub fn pools(&self) -> Vec<Pool<'_>> {
        let first = Pool {
            nodepool: &self.nodepool,
            nodeclass: &self.nodeclass,
            instance_types: &self.instance_types,
            limits_cpu: &self.limits_cpu,
            limits_memory: &self.limits_memory,
            budget: &self.budget,
            nodes: &self.nodes,
        };
        std::iter::once(first)
            .chain(self.pools.iter().map(|p| Pool {
                nodepool: &p.nodepool,
                nodeclass: &p.nodeclass,
                instance_types: &p.instance_types,
                limits_cpu: &p.limits_cpu,
                limits_memory: &p.limits_memory,
                budget: &p.budget,
                nodes: &p.nodes,
            }))
            .collect()
    }

    /// Each EC2NodeClass once, in order of first use, with its maxPods.
    pub fn node_classes(&self) -> Vec<(&str, Option<u32>)> {
        let mut out: Vec<(&str, Option<u32>)> = vec![(&self.nodeclass, self.max_pods)];
        for p in &self.pools {
            if !out.iter().any(|(c, _)| *c == p.nodeclass) {
                out.push((&p.nodeclass, p.max_pods));
            }
        }
        out
    }

    /// The static maxPods of a class, if it has one.
    pub fn class_max_pods(&self, class: &str) -> Option<u32> {
        self.node_classes()
            .into_iter()
            .find(|(c, _)| *c == class)
            .and_then(|(_, m)| m)
    }

    /// What seeding refuses: unknown types and zones, a NodePool named twice,
    /// a shared EC2NodeClass given two maxPods, a budget Karpenter's CRD
    /// would refuse (`^((100|[0-9]{1,2})%|[0-9]+)$`).
    pub fn validate(&self, zone_names: &[&str]) -> Result<(), String> {
        let mut seen: Vec<&str> = Vec::new();
        for p in self.pools() {
            let at = format!("karpenter NodePool {}", p.nodepool);
            if seen.contains(&p.nodepool) {
                return Err(format!("{at}: named twice"));
            }
            seen.push(p.nodepool);
            if let Some(t) = p.instance_types.iter().find(|t| instance_types::lookup(t).is_none()) {
                return Err(format!("{at}: unknown instance type {t}"));
            }
            for n in p.nodes {
                if instance_types::lookup(&n.instance_type).is_none() {
                    return Err(format!("{at} node: unknown instance type {}", n.instance_type));
                }
                if !zone_names.contains(&n.zone.as_str()) {
                    return Err(format!("{at} node: zone {} is not a scenario zone", n.zone));
                }
            }
            let ok = match p.budget.strip_suffix('%') {
                Some(pct) => pct.parse::<u32>().is_ok_and(|v| v <= 100),
                None => p.budget.parse::<u32>().is_ok(),
            };
            if !ok {
                return Err(format!(
                    "{at}: budget {:?} is neither a count nor a percentage",
                    p.budget
                ));
            }
        }
        for p in &self.pools {
            let first = self.node_classes().into_iter().find(|(c, _)| *c == p.nodeclass);
            if let (Some((_, a)), Some(b)) = (first, p.max_pods)
                && a != Some(b)
            {
                return Err(format!(
                    "karpenter NodePool {}: EC2NodeClass {} already has maxPods {a:?}",
                    p.nodepool, p.nodeclass
                ));
            }
        }
        Ok(())
    }
}
