//! The migration's steps, in BRIEF.md's safe order, and what they run
//! against. [`MigrationInputs`] is everything the planner decided (VPC, pod
//! subnet CIDRs and route tables, security-group targets, …); it is saved
//! with the approved plan, and [`build`] turns it into steps, so `resume`
//! rebuilds exactly the steps `apply` approved without planning again.

pub mod addon;
pub mod associate_cidr;
pub mod eniconfigs;
pub mod karpenter;
pub mod pod_subnets;
pub mod reach_gate;
pub mod replace_nodes;
pub mod security_groups;
pub mod verify;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::aws::ec2::Tags;
use crate::aws::{AwsClients, AwsError};
use crate::engine::{Observer, Step};

/// Step ids, stable across releases: the journal refers to them.
pub mod ids {
    pub const ASSOCIATE_CIDR: &str = "associate-cidr";
    pub const PATCH_SECURITY_GROUPS: &str = "patch-security-groups";
    pub const CREATE_POD_SUBNETS: &str = "create-pod-subnets";
    pub const APPLY_ENICONFIGS: &str = "apply-eniconfigs";
    pub const CONFIGURE_KARPENTER: &str = "configure-karpenter";
    pub const ENABLE_CUSTOM_NETWORKING: &str = "enable-custom-networking";
    pub const CONTROL_PLANE_REACH: &str = "control-plane-reach";
    pub const REPLACE_KARPENTER_NODES: &str = "replace-karpenter-nodes";
    pub const ROLL_NODE_GROUPS: &str = "roll-node-groups";
    pub const ROLL_SELF_MANAGED: &str = "roll-self-managed";
    pub const VERIFY: &str = "verify";
}

pub use crate::spec::Waits;

/// What steps run against.
#[derive(Clone)]
pub struct Env {
    pub aws: AwsClients,
    pub kube: Option<kube::Client>,
    /// The username the API server authenticated podnet as, when it said.
    pub kube_user: Option<String>,
    pub waits: Waits,
    /// The run's one progress reporter.
    pub progress: Arc<dyn Observer>,
}

impl Env {
    pub fn status(&self, step: &str, message: &str) {
        self.progress.status(step, message);
    }

    /// Runs an EC2 call naming a resource created a moment ago, again while
    /// EC2 answers `…NotFound` for it: EC2 is eventually consistent, and "if
    /// you run a command to modify or describe a resource that you just
    /// created, its ID might not have propagated throughout the system"
    /// (<https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>).
    /// Jittered backoff from 250 ms, up to `waits.propagation` in all.
    pub async fn once_visible<T, F, Fut>(&self, call: F) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AwsError>>,
    {
        call.retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(250))
                .with_max_delay(Duration::from_secs(5))
                .with_max_times(usize::MAX)
                .with_total_delay(Some(self.waits.propagation))
                .with_jitter(),
        )
        .when(|e: &AwsError| e.code.as_deref().is_some_and(|c| c.ends_with(".NotFound")))
        .await
    }
}

/// A setting as podnet found it before its first attempt changed it
/// (`value: None`: it was not set), recorded in the unit's checkpoint before
/// the change and in its output after: what a rollback puts back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prior<T> {
    pub value: Option<T>,
}

impl<T> Prior<T> {
    pub fn of(value: Option<T>) -> Self {
        Prior { value }
    }
}

/// One pod subnet to create (or find again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSubnetInput {
    pub availability_zone: String,
    pub cidr: Ipv4Net,
    pub name: String,
    /// The route table of the node subnet in the same AZ (or the main table).
    pub route_table_id: String,
    /// Every tag the subnet must carry (Name, ownership, CNI role, extras).
    pub tags: Tags,
}

/// One ingress rule admitting the pod CIDR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SgPatchInput {
    pub group_id: String,
    pub group_name: String,
    /// EC2 `IpProtocol`: tcp, udp, icmp or -1.
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub cidr: Ipv4Net,
    pub description: String,
}

impl SgPatchInput {
    /// The ingress rule this patch adds, as EC2 would list it.
    pub fn as_rule(&self) -> crate::aws::ec2::IngressRule {
        crate::aws::ec2::IngressRule {
            rule_id: None,
            protocol: self.protocol.clone(),
            from_port: self.from_port,
            to_port: self.to_port,
            source: crate::aws::ec2::RuleSource::Cidr(self.cidr),
            description: None,
        }
    }

    pub fn ports_label(&self) -> String {
        match (self.protocol.as_str(), self.from_port, self.to_port) {
            ("-1", _, _) => "all traffic".to_string(),
            (p, Some(a), Some(b)) if a == b => format!("{p} {a}"),
            (p, Some(a), Some(b)) => format!("{p} {a}-{b}"),
            (p, _, _) => p.to_string(),
        }
    }
}

/// Everything the planner decided; saved with the approved plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationInputs {
    pub cluster: String,
    pub region: String,
    pub vpc_id: String,
    pub secondary_cidr: Ipv4Net,
    pub vpc_cidr_quota: usize,
    pub security_group_patches: Vec<SgPatchInput>,
    pub pod_subnets: Vec<PodSubnetInput>,
    /// ENIConfig security group ids (resolved; the cluster security group by default).
    pub eniconfig_security_groups: Vec<String>,
    pub adopt_existing_eniconfigs: bool,
    /// `None`: no Karpenter to configure (`karpenter_skip_reason` says why).
    pub karpenter: Option<karpenter::KarpenterInputs>,
    pub karpenter_skip_reason: String,
    pub vpc_cni: addon::VpcCniInputs,
    pub node_pools: Vec<String>,
    /// The old Karpenter nodes, sorted by name, `batch_size` a batch: one
    /// `replace-karpenter-nodes/batch-N` unit each.
    pub karpenter_batches: Vec<Vec<String>>,
    pub node_groups: Vec<replace_nodes::NodeGroupRoll>,
    /// Self-managed node groups replaced through their Auto Scaling groups
    /// (absent from plans without any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub self_managed: Vec<replace_nodes::SelfManagedRoll>,
    pub drain: replace_nodes::DrainSettings,
    pub expect: crate::verify::Expectations,
    /// Every wait bound (`[waits]`): saved, so `resume` waits as `apply` did.
    pub waits: Waits,
    /// The gate on the control plane's reach into the new CIDR, when pods
    /// it calls (webhooks, aggregated APIs) will move there. Absent from
    /// plans saved before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reach_gate: Option<reach_gate::ReachGateInputs>,
}

/// The units of a migration, in order: the saved plan runs exactly these.
pub fn build(inputs: &MigrationInputs) -> Vec<Box<dyn Step<Env>>> {
    let mut units = fixed_units(inputs);
    if let Some(gate) = &inputs.reach_gate {
        units.push(Box::new(reach_gate::ControlPlaneReach { inputs: gate.clone() }));
    }
    units.extend(replacement_units(inputs));
    units.push(Box::new(verify::Verify {
        expect: inputs.expect.clone(),
    }));
    units
}

/// What node replacement needs, in either direction (onto custom
/// networking for `apply`, off it again for `rollback`).
pub struct Replacements<'a> {
    pub cluster: &'a str,
    pub node_pools: &'a [String],
    pub drain: &'a replace_nodes::DrainSettings,
    pub expect: &'a crate::verify::Expectations,
    pub karpenter_batches: &'a [Vec<String>],
    pub node_groups: &'a [replace_nodes::NodeGroupRoll],
    pub self_managed: &'a [replace_nodes::SelfManagedRoll],
}

fn replacement_units(inputs: &MigrationInputs) -> Vec<Box<dyn Step<Env>>> {
    replacements(&Replacements {
        cluster: &inputs.cluster,
        node_pools: &inputs.node_pools,
        drain: &inputs.drain,
        expect: &inputs.expect,
        karpenter_batches: &inputs.karpenter_batches,
        node_groups: &inputs.node_groups,
        self_managed: &inputs.self_managed,
    })
}

/// One unit per planned Karpenter batch and per managed node group, each
/// family closed by its `finish` unit; then, per self-managed group, its
/// launch template unit and one unit per batch.
pub fn replacements(r: &Replacements<'_>) -> Vec<Box<dyn Step<Env>>> {
    let replacement = replace_nodes::karpenter::Replacement {
        node_pools: r.node_pools.to_vec(),
        drain: r.drain.clone(),
        expect: r.expect.clone(),
    };
    let batches = r.karpenter_batches;
    let mut units: Vec<Box<dyn Step<Env>>> = Vec::new();
    for (i, nodes) in batches.iter().enumerate() {
        units.push(Box::new(replace_nodes::ReplaceBatch::new(
            i + 1,
            batches.len(),
            nodes.clone(),
            replacement.clone(),
        )));
    }
    units.push(Box::new(replace_nodes::FinishReplacement::new(batches, replacement)));
    let rolls = replace_nodes::node_groups::Rolls {
        cluster: r.cluster.to_string(),
        node_pools: r.node_pools.to_vec(),
        expect: r.expect.clone(),
    };
    let names: Vec<String> = r.node_groups.iter().map(|g| g.name.clone()).collect();
    for (i, g) in r.node_groups.iter().enumerate() {
        units.push(Box::new(replace_nodes::RollNodeGroup::new(
            g.clone(),
            names[..i].to_vec(),
            rolls.clone(),
        )));
    }
    // Self-managed groups before the finish, which puts back the NodePool
    // limits their batches raised too.
    let sm = replace_nodes::self_managed::SelfManagedRolls {
        drain: r.drain.clone(),
        expect: r.expect.clone(),
        node_pools: r.node_pools.to_vec(),
        node_group_rolls: names.iter().map(|n| replace_nodes::node_groups::roll_id(n)).collect(),
    };
    let mut batches: Vec<String> = Vec::new();
    for g in r.self_managed {
        units.push(Box::new(replace_nodes::PointSelfManagedGroup::new(g.clone())));
        for n in 1..=g.batches.len() {
            units.push(Box::new(replace_nodes::ReplaceSelfManagedBatch::new(
                g,
                n,
                batches.clone(),
                &sm,
            )));
            batches.push(replace_nodes::self_managed::batch_id(&g.group, n));
        }
    }
    units.push(Box::new(replace_nodes::FinishRolls::new(names, batches)));
    units
}

fn fixed_units(inputs: &MigrationInputs) -> Vec<Box<dyn Step<Env>>> {
    vec![
        Box::new(associate_cidr::AssociateCidr {
            vpc_id: inputs.vpc_id.clone(),
            cidr: inputs.secondary_cidr,
            quota: inputs.vpc_cidr_quota,
        }),
        Box::new(security_groups::PatchSecurityGroups {
            vpc_id: inputs.vpc_id.clone(),
            patches: inputs.security_group_patches.clone(),
        }),
        Box::new(pod_subnets::CreatePodSubnets {
            vpc_id: inputs.vpc_id.clone(),
            subnets: inputs.pod_subnets.clone(),
        }),
        Box::new(eniconfigs::ApplyEniConfigs {
            vpc_id: inputs.vpc_id.clone(),
            eniconfigs: inputs
                .pod_subnets
                .iter()
                .map(|s| eniconfigs::EniConfigInput {
                    availability_zone: s.availability_zone.clone(),
                    cidr: s.cidr,
                })
                .collect(),
            security_groups: inputs.eniconfig_security_groups.clone(),
            adopt_existing: inputs.adopt_existing_eniconfigs,
        }),
        Box::new(karpenter::ConfigureKarpenter {
            karpenter: inputs.karpenter.clone(),
            skip_reason: inputs.karpenter_skip_reason.clone(),
        }),
        Box::new(addon::EnableCustomNetworking {
            cluster: inputs.cluster.clone(),
            cni: inputs.vpc_cni.clone(),
        }),
    ]
}
