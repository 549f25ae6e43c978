//! The validated plan: [`Spec`] and the typed values it holds (pod subnet
//! sizing, security group references, rule patches, the replacement
//! settings), and [`Problem`], one thing wrong with a plan file. Built by
//! [`super::validate()`]; what every later stage consumes.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::model::{KarpenterSection, NotMigrated, PdbBypass, Selection, SelfManagedPolicy, VpcCniSection};

/// One thing wrong with a plan file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Where: `pod_subnets.subnet[1].cidr`; empty for the file as a whole.
    pub path: String,
    pub message: String,
    pub fix: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}; fix: {}", self.message, self.fix)
        } else {
            write!(f, "{}: {}; fix: {}", self.path, self.message, self.fix)
        }
    }
}

/// How pod subnets are chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "sizing", rename_all = "kebab-case")]
pub enum PodSubnetPlan {
    /// Split the secondary CIDR evenly over the AZs that have node subnets.
    Auto,
    Explicit {
        subnets: Vec<ExplicitSubnet>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplicitSubnet {
    pub availability_zone: String,
    pub cidr: Ipv4Net,
    pub name: Option<String>,
}

/// A security group reference: by id, or by name resolved in the VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", content = "value", rename_all = "kebab-case")]
pub enum SecurityGroupRef {
    Id(String),
    Name(String),
    Tags(BTreeMap<String, String>),
}

impl std::fmt::Display for SecurityGroupRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecurityGroupRef::Id(id) => write!(f, "{id}"),
            SecurityGroupRef::Name(n) => write!(f, "group named {n}"),
            SecurityGroupRef::Tags(t) => {
                let parts: Vec<String> = t.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "groups tagged {}", parts.join(","))
            }
        }
    }
}

/// IP protocol of an ingress rule, as EC2 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    All,
}

impl Protocol {
    /// The `IpProtocol` value EC2 uses.
    pub fn ec2_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::All => "-1",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SgPatchSpec {
    pub target: SecurityGroupRef,
    pub protocol: Protocol,
    /// Inclusive port range; `None` for `all` (and ICMP, which means all types).
    pub ports: Option<(u16, u16)>,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplacementSpec {
    pub node_groups: Selection,
    pub node_pools: Selection,
    pub batch_size: u32,
    #[serde(with = "humantime_serde_compat")]
    pub drain_timeout: Duration,
    pub evict_emptydir: bool,
    pub evict_unmanaged: bool,
    pub pdb_bypass: PdbBypass,
    /// Plans saved before podnet refused Windows nodes read as `refuse`;
    /// the default is not written, so their fingerprint is unchanged.
    #[serde(default, skip_serializing_if = "NotMigrated::is_refuse")]
    pub windows: NotMigrated,
    #[serde(default, skip_serializing_if = "SelfManagedPolicy::is_replace")]
    pub self_managed: SelfManagedPolicy,
}

mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// A validated plan: what every later stage consumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub cluster: String,
    pub region: String,
    pub secondary_cidr: Ipv4Net,
    pub vpc_cidr_quota: usize,
    pub pod_subnets: PodSubnetPlan,
    pub subnet_tags: BTreeMap<String, String>,
    /// Empty: the cluster security group.
    pub eni_security_groups: Vec<SecurityGroupRef>,
    pub adopt_existing_eniconfigs: bool,
    pub security_group_patches: Vec<SgPatchSpec>,
    pub vpc_cni: VpcCniSection,
    pub karpenter: KarpenterSection,
    pub replacement: ReplacementSpec,
    pub waits: super::Waits,
    /// Left out at its default, so a migration approved before the section
    /// existed keeps its fingerprint and resumes.
    #[serde(
        default,
        skip_serializing_if = "super::control_plane::ControlPlaneSection::is_default"
    )]
    pub control_plane: super::control_plane::ControlPlaneSection,
    /// `[state] url`: shared state. Not part of the fingerprint.
    #[serde(skip)]
    pub state_url: Option<String>,
}

/// Values given on the command line that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub cluster: Option<String>,
    pub region: Option<String>,
}
