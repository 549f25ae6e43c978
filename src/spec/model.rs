//! The plan file as written by users (`plans/*.toml`): every key, its default,
//! and nothing else (`deny_unknown_fields` everywhere). Values that need
//! parsing (CIDRs, durations) stay strings here so that [`super::validate`]
//! can report every bad one with its field path instead of stopping at the
//! first.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const DEFAULT_SECONDARY_CIDR: &str = "100.64.0.0/16";
pub const DEFAULT_ENI_CONFIG_LABEL: &str = "topology.kubernetes.io/zone";

/// A whole plan file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    pub cluster: ClusterSection,
    #[serde(default)]
    pub network: NetworkSection,
    #[serde(default)]
    pub pod_subnets: PodSubnetsSection,
    #[serde(default)]
    pub eniconfig: EniConfigSection,
    /// `[[security_group_patch]]` tables.
    #[serde(default, rename = "security_group_patch")]
    pub security_group_patches: Vec<SecurityGroupPatch>,
    #[serde(default)]
    pub vpc_cni: VpcCniSection,
    #[serde(default)]
    pub karpenter: KarpenterSection,
    #[serde(default)]
    pub replacement: ReplacementSection,
    #[serde(default)]
    pub waits: super::waits::WaitsSection,
    #[serde(default)]
    pub control_plane: super::control_plane::ControlPlaneSection,
    #[serde(default)]
    pub state: super::state::StateSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    pub name: String,
    /// May be left out when `--region` (or `AWS_REGION`) supplies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    #[serde(default = "default_secondary_cidr")]
    pub secondary_cidr: String,
    /// The account's `IPv4 CIDR blocks per VPC` quota (5 unless raised).
    #[serde(default = "default_cidr_quota")]
    pub vpc_cidr_quota: u32,
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            secondary_cidr: default_secondary_cidr(),
            vpc_cidr_quota: default_cidr_quota(),
        }
    }
}

fn default_secondary_cidr() -> String {
    DEFAULT_SECONDARY_CIDR.to_string()
}

fn default_cidr_quota() -> u32 {
    5
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sizing {
    /// One subnet per AZ that has node subnets, the secondary CIDR split evenly.
    #[default]
    Auto,
    /// Exactly the `[[pod_subnets.subnet]]` entries.
    Explicit,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSubnetsSection {
    #[serde(default)]
    pub sizing: Sizing,
    #[serde(default, rename = "subnet")]
    pub subnets: Vec<PodSubnetEntry>,
    /// Extra tags on every pod subnet, on top of podnet's own.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSubnetEntry {
    pub availability_zone: String,
    pub cidr: String,
    /// The `Name` tag; default `<cluster>-pods-<az>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EniConfigSection {
    /// Security groups of pod ENIs, by id (`sg-…`) or group name. Empty means
    /// the cluster security group.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Take over a same-named ENIConfig that points elsewhere instead of
    /// stopping.
    #[serde(default)]
    pub adopt_existing: bool,
}

/// One security group that must admit the pod CIDR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_tags: Option<BTreeMap<String, String>>,
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// `3306`, `"8080-8090"`; left out for protocol `all` and `icmp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<PortSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn default_protocol() -> String {
    "tcp".to_string()
}

/// A port or a `from-to` range as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortSpec {
    Single(i64),
    Range(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResolveConflicts {
    None,
    Overwrite,
    /// Keep fields changed on the cluster outside EKS; the safest on a live
    /// cluster, and podnet's default.
    #[default]
    Preserve,
}

impl ResolveConflicts {
    pub fn as_eks(self) -> &'static str {
        match self {
            ResolveConflicts::None => "NONE",
            ResolveConflicts::Overwrite => "OVERWRITE",
            ResolveConflicts::Preserve => "PRESERVE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcCniSection {
    #[serde(default)]
    pub prefix_delegation: bool,
    /// The node label whose value names a node's ENIConfig.
    #[serde(default = "default_eni_config_label")]
    pub eni_config_label: String,
    #[serde(default)]
    pub resolve_conflicts: ResolveConflicts,
}

impl Default for VpcCniSection {
    fn default() -> Self {
        VpcCniSection {
            prefix_delegation: false,
            eni_config_label: default_eni_config_label(),
            resolve_conflicts: ResolveConflicts::default(),
        }
    }
}

fn default_eni_config_label() -> String {
    DEFAULT_ENI_CONFIG_LABEL.to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KarpenterSection {
    /// Configure Karpenter when the cluster runs it.
    #[serde(default = "yes")]
    pub configure: bool,
    /// Where the controller runs; found by looking when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    #[serde(default = "default_reserved_enis")]
    pub reserved_enis: u32,
    /// A static `spec.kubelet.maxPods` for EC2NodeClasses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pods: Option<u32>,
    /// EC2NodeClasses that get `max_pods`; empty means all.
    #[serde(default)]
    pub node_classes: Vec<String>,
}

impl Default for KarpenterSection {
    fn default() -> Self {
        KarpenterSection {
            configure: true,
            namespace: None,
            deployment: None,
            reserved_enis: default_reserved_enis(),
            max_pods: None,
            node_classes: vec![],
        }
    }
}

fn yes() -> bool {
    true
}

fn default_reserved_enis() -> u32 {
    1
}

/// `"all"`, `"none"`, or a list of names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Selection {
    Keyword(String),
    Names(Vec<String>),
}

impl Default for Selection {
    fn default() -> Self {
        Selection::Keyword("all".to_string())
    }
}

impl Selection {
    /// Whether `name` is selected (call after validation).
    pub fn selects(&self, name: &str) -> bool {
        match self {
            Selection::Keyword(k) => k == "all",
            Selection::Names(n) => n.iter().any(|x| x == name),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PdbBypass {
    /// A PDB that forbids an eviction stops the drain until it allows it.
    #[default]
    Never,
    /// After the drain timeout, delete the blocking pods directly.
    AfterTimeout,
}

/// What the plan does about nodes podnet does not move to custom
/// networking: Windows nodes, which custom networking cannot serve (EKS
/// user guide, "Deploy Windows nodes on EKS clusters": "You can't use custom
/// networking with Windows nodes"), and self-managed nodes the plan is told
/// to leave or refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotMigrated {
    /// `plan` stops with an error naming the nodes and their groups.
    #[default]
    Refuse,
    /// Migrate the other nodes; these keep node-subnet addresses.
    Leave,
}

impl NotMigrated {
    pub fn is_refuse(&self) -> bool {
        *self == NotMigrated::Refuse
    }
}

/// What the plan does about self-managed nodes (an Auto Scaling group on a
/// launch template of its own, EKS knowing nothing of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelfManagedPolicy {
    /// A new launch template version whose user data sets the
    /// custom-networking max pods, the group pointed at it, and its
    /// instances terminated a batch at a time for replacements.
    #[default]
    Replace,
    /// Migrate the other nodes; these keep node-subnet addresses.
    Leave,
    /// `plan` stops with an error naming the nodes and their groups.
    Refuse,
}

impl SelfManagedPolicy {
    pub fn is_replace(&self) -> bool {
        *self == SelfManagedPolicy::Replace
    }

    /// As a kind of node podnet does not move (for `leave` and `refuse`).
    pub fn not_migrated(&self) -> Option<NotMigrated> {
        match self {
            SelfManagedPolicy::Replace => None,
            SelfManagedPolicy::Leave => Some(NotMigrated::Leave),
            SelfManagedPolicy::Refuse => Some(NotMigrated::Refuse),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplacementSection {
    #[serde(default)]
    pub node_groups: Selection,
    #[serde(default)]
    pub node_pools: Selection,
    /// Nodes drained at once.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Per-node drain timeout (`90s`, `10m`).
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: String,
    /// Evict pods that use emptyDir volumes (their data is lost).
    #[serde(default)]
    pub evict_emptydir: bool,
    /// Evict pods that no controller will recreate.
    #[serde(default)]
    pub evict_unmanaged: bool,
    #[serde(default)]
    pub pdb_bypass: PdbBypass,
    #[serde(default)]
    pub windows: NotMigrated,
    #[serde(default)]
    pub self_managed: SelfManagedPolicy,
}

impl Default for ReplacementSection {
    fn default() -> Self {
        ReplacementSection {
            node_groups: Selection::default(),
            node_pools: Selection::default(),
            batch_size: default_batch_size(),
            drain_timeout: default_drain_timeout(),
            evict_emptydir: false,
            evict_unmanaged: false,
            pdb_bypass: PdbBypass::default(),
            windows: NotMigrated::default(),
            self_managed: SelfManagedPolicy::default(),
        }
    }
}

fn default_batch_size() -> u32 {
    1
}

fn default_drain_timeout() -> String {
    "10m".to_string()
}
