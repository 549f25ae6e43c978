//! The capacity impact of the migration: pod addresses per AZ before
//! (shared with nodes) and after (dedicated pod subnets); max pods per
//! instance type in use under the EKS formula and Karpenter's view; how many
//! more nodes each group needs once max pods drops; the nodes to replace.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::preflight::Finding;
use crate::capacity::{CniSettings, CniVersion, InstanceInfo, karpenter_max_pods, max_pods};
use crate::discovery::{CustomNetworking, Discovery, PREFIX_DELEGATION_ENV};
use crate::network::usable_addresses;
use crate::spec::Spec;
use crate::steps::MigrationInputs;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneCapacity {
    pub zone: String,
    /// `subnet-… (10.255.11.0/24)`.
    pub node_subnets: Vec<String>,
    /// Addresses in the node subnets, shared by nodes and pods today.
    pub shared_usable: u64,
    pub shared_free: u64,
    pub pod_subnet: Option<String>,
    /// Addresses in the pod subnet, for pods only.
    pub pod_usable: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeCapacity {
    pub instance_type: String,
    pub nodes: usize,
    /// EKS / AMI formula (max-pods-calculator.sh), now and after.
    pub eks_before: u32,
    pub eks_after: u32,
    /// Karpenter's view without reservedENIs (what it assumes if left unset).
    pub karpenter_unreserved: u32,
    /// Karpenter's view with the plan's reservedENIs.
    pub karpenter_reserved: u32,
    pub reserved_enis: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCapacity {
    /// `node-group` or `node-pool`.
    pub kind: String,
    pub name: String,
    pub nodes: usize,
    /// Pods that need a pod address (not hostNetwork) on its nodes now.
    pub pods: usize,
    pub capacity_before: u32,
    pub capacity_after: u32,
    /// More nodes needed to hold the same pods after the migration.
    pub extra_nodes: usize,
    /// For managed node groups: the desired and maximum size.
    pub desired_size: Option<i32>,
    pub max_size: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeToReplace {
    pub name: String,
    pub kind: String,
    pub group: String,
    pub zone: Option<String>,
    pub instance_type: Option<String>,
    pub pods: usize,
    pub capacity_pods: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityReport {
    pub zones: Vec<ZoneCapacity>,
    pub instance_types: Vec<TypeCapacity>,
    pub groups: Vec<GroupCapacity>,
    pub nodes_to_replace: Vec<NodeToReplace>,
}

/// The CNI settings nodes will run with after the migration.
pub fn cni_after(spec: &Spec, d: &Discovery) -> CniSettings {
    CniSettings {
        custom_networking: true,
        prefix_delegation: spec.vpc_cni.prefix_delegation || d.cni_env_is_true(PREFIX_DELEGATION_ENV),
        version: d.cni_version().unwrap_or(CniVersion::ASSUMED),
        max_eni: None,
    }
}

pub fn cni_before(d: &Discovery) -> CniSettings {
    CniSettings {
        custom_networking: d.custom_networking() == CustomNetworking::On,
        prefix_delegation: d.cni_env_is_true(PREFIX_DELEGATION_ENV),
        version: d.cni_version().unwrap_or(CniVersion::ASSUMED),
        max_eni: None,
    }
}

pub fn report(spec: &Spec, d: &Discovery, inputs: &MigrationInputs) -> CapacityReport {
    let before = cni_before(d);
    let after = cni_after(spec, d);
    let reserved = spec.karpenter.reserved_enis;
    let (groups, nodes_to_replace) = group_capacity(spec, d, inputs, &before, &after);
    CapacityReport {
        zones: zone_capacity(spec, d, inputs),
        instance_types: type_capacity(d, &before, &after, reserved),
        groups,
        nodes_to_replace,
    }
}

/// Every AZ with node subnets or a pod subnet: pod addresses before and after.
fn zone_capacity(spec: &Spec, d: &Discovery, inputs: &MigrationInputs) -> Vec<ZoneCapacity> {
    let mut out = Vec::new();
    let node_subnets = d.node_subnets(spec);
    let mut zones: Vec<String> = node_subnets.keys().cloned().collect();
    for s in &inputs.pod_subnets {
        if !zones.contains(&s.availability_zone) {
            zones.push(s.availability_zone.clone());
        }
    }
    zones.sort();
    for z in zones {
        let subnets = node_subnets.get(&z).cloned().unwrap_or_default();
        let pod = inputs.pod_subnets.iter().find(|s| s.availability_zone == z);
        out.push(ZoneCapacity {
            node_subnets: subnets.iter().map(|s| format!("{} ({})", s.id, s.cidr)).collect(),
            shared_usable: subnets.iter().map(|s| usable_addresses(&s.cidr)).sum(),
            shared_free: subnets.iter().map(|s| s.available_ips).sum(),
            pod_subnet: pod.map(|p| p.cidr.to_string()),
            pod_usable: pod.map(|p| usable_addresses(&p.cidr)).unwrap_or(0),
            zone: z,
        });
    }
    out
}

/// Max pods of every instance type in use, now and after.
fn type_capacity(d: &Discovery, before: &CniSettings, after: &CniSettings, reserved: u32) -> Vec<TypeCapacity> {
    let mut out = Vec::new();
    let mut node_count: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &d.kube.nodes {
        if let Some(t) = n.instance_type.as_deref() {
            *node_count.entry(t).or_default() += 1;
        }
    }
    for (t, info) in &d.instance_types {
        out.push(TypeCapacity {
            instance_type: t.clone(),
            nodes: node_count.get(t.as_str()).copied().unwrap_or(0),
            eks_before: max_pods(info, before, false).max_pods,
            eks_after: max_pods(info, after, false).max_pods,
            karpenter_unreserved: karpenter_max_pods(info, 0),
            karpenter_reserved: karpenter_max_pods(info, reserved),
            reserved_enis: reserved,
        });
    }
    out
}

/// Pod slots per node group or pool, now and after, and the nodes not yet
/// on custom networking.
fn group_capacity(
    spec: &Spec,
    d: &Discovery,
    inputs: &MigrationInputs,
    before: &CniSettings,
    after: &CniSettings,
) -> (Vec<GroupCapacity>, Vec<NodeToReplace>) {
    let reserved = spec.karpenter.reserved_enis;
    let mut nodes_to_replace = Vec::new();
    // Per group: what its nodes hold now and would hold after.
    let info = |t: Option<&str>| -> Option<&InstanceInfo> { t.and_then(|t| d.instance_types.get(t)) };
    let pool_classes = super::karpenter::pool_classes(d);
    let static_max = |pool: &str| -> Option<u32> {
        let k = inputs.karpenter.as_ref()?;
        k.class_max_pods.get(pool_classes.get(pool)?).copied()
    };
    let karpenter_after = |i: &InstanceInfo, pool: &str| {
        static_max(pool).unwrap_or_else(|| karpenter_max_pods(i, reserved).min(max_pods(i, after, true).uncapped))
    };
    let mut groups: BTreeMap<(String, String), GroupCapacity> = BTreeMap::new();
    for n in &d.kube.nodes {
        if !n.on_vpc_cni() {
            continue;
        }
        let (kind, name) = match (&n.nodegroup, &n.nodepool) {
            (Some(g), _) => ("node-group", g.clone()),
            (None, Some(p)) => ("node-pool", p.clone()),
            (None, None) => ("unmanaged", "self-managed".to_string()),
        };
        let pods = d
            .kube
            .pods_on(&n.name)
            .filter(|p| !p.host_network && !p.is_finished())
            .count();
        let i = info(n.instance_type.as_deref());
        let cap_before = n
            .capacity_pods
            .or_else(|| i.map(|i| max_pods(i, before, false).max_pods))
            .unwrap_or(0);
        let cap_after = i
            .map(|i| {
                if kind == "node-pool" {
                    karpenter_after(i, &name)
                } else {
                    max_pods(i, after, false).max_pods
                }
            })
            .unwrap_or(cap_before)
            // 2 of every node's pods (aws-node, kube-proxy) use the host network.
            .saturating_sub(2);
        let g = groups.entry((kind.to_string(), name.clone())).or_insert_with(|| {
            let ng = d.nodegroups.iter().find(|g| g.name == name && kind == "node-group");
            GroupCapacity {
                kind: kind.to_string(),
                name: name.clone(),
                nodes: 0,
                pods: 0,
                capacity_before: 0,
                capacity_after: 0,
                extra_nodes: 0,
                desired_size: ng.map(|g| g.desired_size),
                max_size: ng.map(|g| g.max_size),
            }
        });
        g.nodes += 1;
        g.pods += pods;
        g.capacity_before += cap_before.saturating_sub(2);
        g.capacity_after += cap_after;
        // A node already on an ENIConfig runs custom networking: nothing to replace.
        if n.eniconfig_label.is_some() {
            continue;
        }
        nodes_to_replace.push(NodeToReplace {
            name: n.name.clone(),
            kind: kind.to_string(),
            group: name,
            zone: n.zone.clone(),
            instance_type: n.instance_type.clone(),
            pods,
            capacity_pods: n.capacity_pods,
        });
    }
    for g in groups.values_mut() {
        if g.pods > g.capacity_after as usize && g.nodes > 0 && g.capacity_after > 0 {
            let per_node = (g.capacity_after as usize).div_ceil(g.nodes).max(1);
            g.extra_nodes = (g.pods - g.capacity_after as usize).div_ceil(per_node);
        }
    }
    (groups.into_values().collect(), nodes_to_replace)
}

/// Notes and warnings about capacity.
pub fn findings(r: &CapacityReport) -> Vec<Finding> {
    let mut f = Vec::new();
    for g in &r.groups {
        if g.extra_nodes == 0 {
            continue;
        }
        let base = format!(
            "{} {} holds {} pods on {} node(s); max pods drops from {} to {} per group, so it needs {} more node(s)",
            g.kind, g.name, g.pods, g.nodes, g.capacity_before, g.capacity_after, g.extra_nodes
        );
        match (g.kind.as_str(), g.desired_size, g.max_size) {
            ("node-group", Some(desired), Some(max)) if desired + g.extra_nodes as i32 > max => {
                f.push(Finding::warning(
                    "capacity.node-group-max-size",
                    format!("{base}, beyond its maxSize {max}"),
                    format!(
                        "raise the node group's maxSize to at least {}",
                        desired + g.extra_nodes as i32
                    ),
                ))
            }
            ("node-group", _, _) => f.push(Finding::note(
                "capacity.more-nodes",
                base,
                "raise the node group's desired size before apply, or let the cluster autoscaler do it",
            )),
            _ => f.push(Finding::note(
                "capacity.more-nodes",
                base,
                "Karpenter provisions them as pods go pending; where the NodePool's cpu limit would stop it, replace-karpenter-nodes raises the limit (shown in its step) — then keep the new limit in the NodePool's source",
            )),
        }
    }
    for z in &r.zones {
        if z.pod_subnet.is_some() && z.pod_usable < z.shared_usable / 2 {
            f.push(Finding::warning(
                "capacity.small-pod-subnet",
                format!(
                    "the pod subnet of {} offers {} addresses, fewer than half of the {} its node subnets share today",
                    z.zone, z.pod_usable, z.shared_usable
                ),
                "use a larger pod subnet block",
            ));
        }
    }
    f
}
