//! `podnet rollback` as the engine runs it: [`RollbackInputs`] is the
//! approved reverse plan (the apply's record, the replacement settings, the
//! nodes to move back), saved in the rollback's own state directory so an
//! interrupted rollback is resumed exactly as approved; [`build`] turns it
//! into units in the safe reverse order: custom networking off, then
//! Karpenter's settings, before nodes are replaced (a node keeps the
//! networking mode it started with), nodes
//! replaced before ENIConfigs go, ENIs and rules before subnets, subnets
//! before the CIDR block.

use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::eniconfigs::RemoveEniConfigs;
use super::record::ApplyRecord;
use super::remove::{DeletePodEnis, DisassociateCidr, RemovePodSubnets, RevokeRules};
use super::restore::{RestoreKarpenter, RestoreVpcCni};
use crate::discovery::Discovery;
use crate::engine::{StateDir, Step};
use crate::steps::replace_nodes::{DrainSettings, NodeGroupRoll, SelfManagedRoll};
use crate::steps::{Env, MigrationInputs, Replacements, Waits, replacements};
use crate::verify::{Direction, Expectations};

/// The rollback's state: a directory of its own beside the apply's, with
/// its own plan, journal and archive.
pub fn state_dir(apply_state: &StateDir) -> StateDir {
    apply_state.child("rollback")
}

/// Everything the reverse units are built from; saved with the approved
/// rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackInputs {
    pub cluster: String,
    pub region: String,
    pub vpc_id: String,
    pub secondary_cidr: Ipv4Net,
    pub record: ApplyRecord,
    /// The Karpenter controller's container the apply set `RESERVED_ENIS` on.
    pub karpenter_container: String,
    pub vpc_cni_managed_addon: bool,
    pub resolve_conflicts: String,
    pub node_pools: Vec<String>,
    /// The Karpenter nodes still on custom networking, in batches.
    pub karpenter_batches: Vec<Vec<String>>,
    pub node_groups: Vec<NodeGroupRoll>,
    /// Self-managed groups pointed back at the versions the apply started
    /// from, their nodes (as discovered now) replaced again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub self_managed: Vec<SelfManagedRoll>,
    pub drain: DrainSettings,
    /// What a node off custom networking looks like, from the settings the
    /// apply recorded as they were before it.
    pub expect: Expectations,
    pub waits: Waits,
    /// The apply's plan file, for messages.
    pub plan_file: Option<PathBuf>,
}

/// Nodes as they were before the apply: no ENIConfig, the max pods of the
/// CNI without custom networking and of Karpenter's settings before.
fn expectations_before(inputs: &MigrationInputs, rec: &ApplyRecord) -> Expectations {
    let mut x = inputs.expect.clone();
    x.direction = Direction::OffAgain;
    x.cni_after.custom_networking = false;
    if let (Some(k), Some(r)) = (x.karpenter.as_mut(), rec.karpenter.as_ref().filter(|r| !r.skipped)) {
        k.reserved_enis = r
            .reserved_enis_before
            .as_ref()
            .and_then(|p| p.value.as_deref())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if k.pool_classes.is_empty() {
            // A plan saved before podnet knew each NodePool's class: one
            // maxPods for every class, or none to check against.
            let befores: Vec<Option<u32>> = r.max_pods_before.iter().flatten().map(|(_, v)| *v).collect();
            k.max_pods = match befores.split_first() {
                Some((first, rest)) if rest.iter().all(|v| v == first) => *first,
                _ => None,
            };
        } else {
            // Each class back to its own value; one that had none is sized
            // by Karpenter from RESERVED_ENIS again.
            k.max_pods = None;
            k.class_max_pods = r
                .max_pods_before
                .iter()
                .flatten()
                .filter_map(|(c, v)| Some((c.clone(), (*v)?)))
                .collect();
        }
    }
    x
}

impl RollbackInputs {
    /// The reverse of the apply `inputs` recorded in `rec`, against the
    /// cluster as discovered now.
    pub fn new(inputs: &MigrationInputs, rec: ApplyRecord, d: &Discovery, plan_file: Option<PathBuf>) -> Self {
        let expect = expectations_before(inputs, &rec);
        let karpenter_batches =
            crate::planner::karpenter::batches(d, &inputs.node_pools, &expect, inputs.drain.batch_size, None);
        RollbackInputs {
            cluster: inputs.cluster.clone(),
            region: inputs.region.clone(),
            vpc_id: inputs.vpc_id.clone(),
            secondary_cidr: inputs.secondary_cidr,
            record: rec,
            karpenter_container: inputs
                .karpenter
                .as_ref()
                .map(|k| k.container.clone())
                .unwrap_or_else(|| "controller".into()),
            vpc_cni_managed_addon: inputs.vpc_cni.managed_addon,
            resolve_conflicts: inputs.vpc_cni.resolve_conflicts.clone(),
            node_pools: inputs.node_pools.clone(),
            karpenter_batches,
            // Back to the version the apply started from, unedited: a
            // custom AMI's user data as it was (its own max pods).
            node_groups: inputs
                .node_groups
                .iter()
                .map(|g| {
                    let mut g = g.clone();
                    if let (Some(u), Some(lt)) = (g.user_data.take(), g.launch_template.as_mut()) {
                        lt.version = Some(u.source_version);
                    }
                    g
                })
                .collect(),
            self_managed: self_managed_back(inputs, d),
            drain: inputs.drain.clone(),
            expect,
            waits: inputs.waits,
            plan_file,
        }
    }
}

/// Each self-managed group the apply moved, pointed back at the version it
/// started from (by number: a group that named `$Latest` would otherwise
/// pick podnet's version), its nodes as discovered now in batches.
fn self_managed_back(inputs: &MigrationInputs, d: &Discovery) -> Vec<SelfManagedRoll> {
    inputs
        .self_managed
        .iter()
        .map(|g| {
            let mut back = g.clone();
            if let Some(u) = back.user_data.take() {
                back.launch_template.version = Some(u.source_version);
            }
            let mut nodes: Vec<String> = d
                .self_managed
                .node_groups
                .iter()
                .filter(|(_, group)| **group == g.group)
                .map(|(n, _)| n.clone())
                .collect();
            nodes.sort();
            let size = inputs.drain.batch_size.max(1) as usize;
            back.batches = nodes.chunks(size).map(<[String]>::to_vec).collect();
            back
        })
        .collect()
}

/// A rollback's units, as the engine runs them.
pub type Units = Vec<Box<dyn Step<Env>>>;

/// The rollback's units, in order.
pub fn build(r: &RollbackInputs) -> Units {
    let rec = &r.record;
    // The reverse of apply's order: custom networking off before Karpenter
    // promises more pods per node again (a node launched in between would
    // get a pod limit its ENIs under custom networking cannot serve).
    let mut units: Vec<Box<dyn Step<Env>>> = vec![
        Box::new(RestoreVpcCni {
            cluster: r.cluster.clone(),
            record: rec.addon.clone(),
            managed_addon: r.vpc_cni_managed_addon,
            resolve_conflicts: r.resolve_conflicts.clone(),
        }),
        Box::new(RestoreKarpenter {
            record: rec.karpenter.clone(),
            container: r.karpenter_container.clone(),
        }),
    ];
    units.extend(replacements(&Replacements {
        cluster: &r.cluster,
        node_pools: &r.node_pools,
        drain: &r.drain,
        expect: &r.expect,
        karpenter_batches: &r.karpenter_batches,
        node_groups: &r.node_groups,
        self_managed: &r.self_managed,
    }));
    units.push(Box::new(RemoveEniConfigs {
        eniconfigs: rec.eniconfigs.clone(),
    }));
    units.push(Box::new(DeletePodEnis {
        cluster: r.cluster.clone(),
        subnet_ids: rec
            .subnets
            .iter()
            .filter(|s| s.created == Some(true))
            .map(|s| s.subnet_id.clone())
            .collect(),
    }));
    units.push(Box::new(RevokeRules {
        vpc_id: r.vpc_id.clone(),
        rules: rec.rules.clone(),
    }));
    units.push(Box::new(RemovePodSubnets {
        vpc_id: r.vpc_id.clone(),
        subnets: rec.subnets.clone(),
    }));
    units.push(Box::new(DisassociateCidr {
        vpc_id: r.vpc_id.clone(),
        association: rec.association.clone(),
        cidr: r.secondary_cidr,
    }));
    units
}
