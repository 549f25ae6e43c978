//! The EKS data model the simulated control plane keeps per cluster:
//! clusters, managed node groups, add-ons and the updates recorded against
//! them, plus the simulated durations of those updates. These are plain
//! values; `render.rs` turns them into the API's JSON shapes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

/// Seconds since the epoch, as EKS timestamps are sent.
pub fn epoch_now() -> f64 {
    let t = jiff::Timestamp::now();
    t.as_millisecond() as f64 / 1000.0
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub arn: String,
    pub created_at: f64,
    pub version: String,
    pub platform_version: String,
    pub endpoint: String,
    pub role_arn: String,
    pub vpc_id: String,
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    pub cluster_security_group_id: String,
    pub service_ipv4_cidr: String,
    pub ip_family: String,
    /// EKS Auto Mode (`computeConfig.enabled`).
    pub auto_mode: bool,
    pub certificate_authority: String,
    pub oidc_issuer: String,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct LaunchTemplateRef {
    pub name: String,
    pub id: String,
    pub version: String,
}

#[derive(Debug, Clone)]
pub struct Nodegroup {
    pub name: String,
    pub arn: String,
    pub created_at: f64,
    pub modified_at: f64,
    pub version: String,
    pub release_version: String,
    pub status: String,
    pub capacity_type: String,
    pub min_size: i64,
    pub max_size: i64,
    pub desired_size: i64,
    pub instance_types: Vec<String>,
    pub subnets: Vec<String>,
    pub ami_type: String,
    pub node_role: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Value>,
    pub launch_template: Option<LaunchTemplateRef>,
    pub asg_name: String,
    pub max_unavailable: i64,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Addon {
    pub name: String,
    pub version: String,
    pub status: String,
    pub arn: String,
    pub created_at: f64,
    pub modified_at: f64,
    pub configuration_values: Option<String>,
    pub service_account_role_arn: Option<String>,
}

/// What an update is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateTarget {
    Nodegroup(String),
    Addon(String),
}

#[derive(Debug, Clone)]
pub struct Update {
    pub id: String,
    pub status: String,
    pub kind: String,
    pub params: Vec<(String, String)>,
    pub created_at: f64,
    pub errors: Vec<Value>,
    pub target: UpdateTarget,
    /// What to apply when it succeeds.
    pub apply: UpdateEffect,
}

#[derive(Debug, Clone)]
pub enum UpdateEffect {
    Addon {
        version: String,
        configuration_values: Option<String>,
    },
    NodegroupVersion {
        launch_template_version: Option<String>,
        release_version: Option<String>,
        version: Option<String>,
        /// Replace nodes even when a PDB blocks their pods' eviction.
        force: bool,
    },
    NodegroupConfig {
        scaling: Option<(i64, i64, i64)>,
        add_labels: BTreeMap<String, String>,
        remove_labels: Vec<String>,
        max_unavailable: Option<i64>,
    },
}

/// How long updates take, in simulated time.
#[derive(Debug, Clone)]
pub struct Timings {
    pub addon: Duration,
    pub nodegroup_version: Duration,
    pub nodegroup_config: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            addon: Duration::from_secs(90),
            nodegroup_version: Duration::from_secs(360),
            nodegroup_config: Duration::from_secs(60),
        }
    }
}
