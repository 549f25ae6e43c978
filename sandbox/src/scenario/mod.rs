//! Scenario files (TOML): the cluster a sandbox starts with — zones and
//! subnets, endpoints, managed node groups, Karpenter and its nodes, the
//! vpc-cni add-on configuration and workloads — and the seeding that builds
//! it: EC2 through moto's API (`ec2.rs`), then the EKS model and the
//! Kubernetes objects (`objects.rs`). The reference scenario is
//! `scenarios/seed.toml`, compiled in as `--scenario seed`.
//!
//! What seeding produced is kept as a [`World`] (ids, nodes, their ENIs and
//! addresses) next to the sandbox's own IP accounting, for tests and for the
//! controllers of the next sandbox issue.

pub mod control_plane;
pub mod ec2;
pub mod karpenter;
pub mod objects;
pub mod placement;
pub mod seed;
pub mod self_managed;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::instance_types;
pub use karpenter::{KarpenterNodes, KarpenterSpec, Pool, PoolSpec};
pub use self_managed::SelfManagedGroupSpec;

/// The reference scenario (BRIEF.md's seed 000).
pub const SEED: &str = include_str!("../../scenarios/seed.toml");

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("reading scenario {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("parsing scenario {path}: {message}")]
    Parse { path: String, message: String },
    #[error("scenario {path} is invalid: {message}")]
    Invalid { path: String, message: String },
}

fn default_region() -> String {
    "ap-northeast-2".into()
}
fn default_k8s() -> String {
    "1.31".into()
}
fn default_service_cidr() -> String {
    "172.20.0.0/16".into()
}
fn default_true() -> bool {
    true
}
fn default_ns() -> String {
    "default".into()
}
fn default_image() -> String {
    "public.ecr.aws/nginx/nginx:1.27".into()
}
fn default_cpu() -> String {
    "50m".into()
}
fn default_mem() -> String {
    "64Mi".into()
}
fn default_ami_type() -> String {
    "AL2023_x86_64_STANDARD".into()
}
fn default_interface_endpoints() -> Vec<String> {
    ["ecr.api", "ecr.dkr", "ec2", "sts", "sqs", "ssm", "logs", "eks"]
        .into_iter()
        .map(String::from)
        .collect()
}
fn default_vpc_cni_version() -> String {
    "v1.19.2-eksbuild.1".into()
}

/// A scenario file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// EKS cluster name.
    pub cluster: String,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default = "default_k8s")]
    pub kubernetes_version: String,
    pub vpc_cidr: Ipv4Net,
    #[serde(default = "default_service_cidr")]
    pub service_cidr: String,
    /// `ipv4` (or `ipv6`, to exercise podnet's refusal).
    #[serde(default)]
    pub ip_family: Option<String>,
    /// EKS Auto Mode (to exercise podnet's refusal).
    #[serde(default)]
    pub auto_mode: bool,
    pub zones: Vec<Zone>,
    #[serde(default)]
    pub endpoints: Endpoints,
    #[serde(default)]
    pub node_groups: Vec<NodeGroupSpec>,
    /// Self-managed node groups: Auto Scaling groups EKS does not manage.
    #[serde(default)]
    pub self_managed_groups: Vec<SelfManagedGroupSpec>,
    #[serde(default)]
    pub karpenter: Option<KarpenterSpec>,
    #[serde(default)]
    pub vpc_cni: VpcCniSpec,
    #[serde(default)]
    pub workloads: Vec<WorkloadSpec>,
    #[serde(default)]
    pub moto: MotoSpec,
    /// How long the control plane takes to reach a new VPC CIDR.
    #[serde(default)]
    pub control_plane: control_plane::ControlPlaneSpec,
    /// Admission webhooks served by the scenario's workloads.
    #[serde(default)]
    pub webhooks: Vec<control_plane::WebhookSpec>,
    /// Aggregated APIs served by the scenario's workloads.
    #[serde(default)]
    pub api_services: Vec<control_plane::ApiServiceSpec>,
}

/// One availability zone and its subnets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub name: String,
    /// Public (load balancer) subnet.
    #[serde(default)]
    pub public: Option<Ipv4Net>,
    /// Private service subnet: nodes and (today) pods.
    pub private: Ipv4Net,
    /// Private RDS subnet with no route out.
    #[serde(default)]
    pub rds: Option<Ipv4Net>,
    /// Addresses of the private subnet held by ENIs outside the cluster
    /// (other services sharing the subnet).
    #[serde(default)]
    pub other_tenant_ips: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    #[serde(default = "default_interface_endpoints")]
    pub interface: Vec<String>,
    #[serde(default = "default_true")]
    pub s3_gateway: bool,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            interface: default_interface_endpoints(),
            s3_gateway: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeGroupSpec {
    pub name: String,
    pub instance_type: String,
    /// Nodes, spread round-robin over `zones` (default: all zones).
    pub size: u32,
    #[serde(default)]
    pub min_size: Option<u32>,
    #[serde(default)]
    pub max_size: Option<u32>,
    #[serde(default)]
    pub zones: Option<Vec<String>>,
    /// Created from a launch template (as Terraform's eks module does).
    #[serde(default = "default_true")]
    pub launch_template: bool,
    #[serde(default = "default_ami_type")]
    pub ami_type: String,
    /// The launch template's user data (plain text; stored base64). With
    /// `ami_type = "CUSTOM"` the template names an image and EKS writes no
    /// max pods: the kubelet takes what this sets, else the AMI's default.
    #[serde(default)]
    pub user_data: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcCniSpec {
    #[serde(default = "default_vpc_cni_version")]
    pub version: String,
    /// The add-on's configurationValues (JSON or YAML), or none.
    #[serde(default)]
    pub configuration_values: Option<String>,
}

impl Default for VpcCniSpec {
    fn default() -> Self {
        VpcCniSpec {
            version: default_vpc_cni_version(),
            configuration_values: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    pub name: String,
    #[serde(default = "default_ns")]
    pub namespace: String,
    pub replicas: u32,
    #[serde(default = "default_image")]
    pub image: String,
    #[serde(default = "default_cpu")]
    pub cpu: String,
    #[serde(default = "default_mem")]
    pub memory: String,
    /// A PodDisruptionBudget: `{ max_unavailable = "30%" }` or
    /// `{ min_available = 2 }`.
    #[serde(default)]
    pub pdb: Option<PdbSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdbSpec {
    #[serde(default)]
    pub min_available: Option<Value>,
    #[serde(default)]
    pub max_unavailable: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MotoSpec {
    /// Launch a moto instance per node (off for very large scenarios:
    /// instance ids are then made up and exist only in the sandbox).
    #[serde(default = "default_true")]
    pub instances: bool,
    /// Record pod and warm-pool addresses in moto as ENI secondary IPs, so
    /// `AvailableIpAddressCount` reflects them.
    #[serde(default = "default_true")]
    pub pod_ips: bool,
}

impl Default for MotoSpec {
    fn default() -> Self {
        MotoSpec {
            instances: true,
            pod_ips: true,
        }
    }
}

/// Parse `"50m"`/`"2"` cpu quantities to millicores.
pub fn cpu_millis(q: &str) -> Option<u32> {
    match q.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => q.parse::<f64>().ok().map(|c| (c * 1000.0).round() as u32),
    }
}

/// Parse `"64Mi"`/`"1Gi"`/`"512M"` memory quantities to MiB.
pub fn mem_mib(q: &str) -> Option<u64> {
    for (suf, mul) in [
        ("Ki", 1.0 / 1024.0),
        ("Mi", 1.0),
        ("Gi", 1024.0),
        ("M", 1e6 / 1048576.0),
        ("G", 1e9 / 1048576.0),
    ] {
        if let Some(n) = q.strip_suffix(suf) {
            return n.parse::<f64>().ok().map(|x| (x * mul).ceil() as u64);
        }
    }
    q.parse::<f64>().ok().map(|b| (b / 1048576.0).ceil() as u64)
}

impl Scenario {
    /// `seed` (the compiled-in reference scenario) or a file path.
    pub fn load(which: &str) -> Result<Scenario, ScenarioError> {
        if which == "seed" {
            return Scenario::parse(SEED, "seed");
        }
        let text = std::fs::read_to_string(Path::new(which)).map_err(|source| ScenarioError::Read {
            path: which.to_string(),
            source,
        })?;
        Scenario::parse(&text, which)
    }

    pub fn seed() -> Scenario {
        // The compiled-in seed is covered by tests; failing to parse it is a
        // build defect, not a runtime condition.
        Scenario::parse(SEED, "seed").unwrap_or_else(|e| panic!("built-in seed scenario: {e}"))
    }

    pub fn parse(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        s.validate().map_err(|message| ScenarioError::Invalid {
            path: path.to_string(),
            message,
        })?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), String> {
        if self.zones.is_empty() {
            return Err("at least one zone is required".into());
        }
        control_plane::validate(self)?;
        let mut nets: Vec<(String, Ipv4Net)> = Vec::new();
        for z in &self.zones {
            if !z.name.starts_with(&self.region) {
                return Err(format!("zone {} is not in region {}", z.name, self.region));
            }
            for (role, net) in [("public", z.public), ("private", Some(z.private)), ("rds", z.rds)] {
                let Some(net) = net else { continue };
                if !self.vpc_cidr.contains(&net) {
                    return Err(format!(
                        "{} {role} subnet {net} is outside the VPC {}",
                        z.name, self.vpc_cidr
                    ));
                }
                if net.prefix_len() > 28 || net.prefix_len() < 16 {
                    return Err(format!("{} {role} subnet {net}: subnets are /16 to /28", z.name));
                }
                if let Some((other, _)) = nets
                    .iter()
                    .find(|(_, n)| n.contains(&net.network()) || net.contains(&n.network()))
                {
                    return Err(format!("{} {role} subnet {net} overlaps {other}", z.name));
                }
                nets.push((format!("{} {role} subnet {net}", z.name), net));
            }
            let usable = (1u32 << (32 - u32::from(z.private.prefix_len()))) - 5;
            if z.other_tenant_ips >= usable {
                return Err(format!(
                    "{}: other_tenant_ips {} leaves no room in {}",
                    z.name, z.other_tenant_ips, z.private
                ));
            }
        }
        let zone_names: Vec<&str> = self.zones.iter().map(|z| z.name.as_str()).collect();
        let known = |t: &str| instance_types::lookup(t).is_some();
        for g in &self.node_groups {
            if !known(&g.instance_type) {
                return Err(format!(
                    "node group {}: unknown instance type {}",
                    g.name, g.instance_type
                ));
            }
            if let Some(zs) = &g.zones {
                if let Some(z) = zs.iter().find(|z| !zone_names.contains(&z.as_str())) {
                    return Err(format!("node group {}: zone {z} is not a scenario zone", g.name));
                }
                if zs.is_empty() {
                    return Err(format!("node group {}: zones is empty", g.name));
                }
            }
        }
        if let Some(k) = &self.karpenter {
            k.validate(&zone_names)?;
        }
        for g in &self.self_managed_groups {
            g.validate(&zone_names)?;
            if self.node_groups.iter().any(|m| m.name == g.name)
                || self.self_managed_groups.iter().filter(|o| o.name == g.name).count() > 1
            {
                return Err(format!("node group name {} is used twice", g.name));
            }
        }
        for w in &self.workloads {
            if cpu_millis(&w.cpu).is_none() || mem_mib(&w.memory).is_none() {
                return Err(format!(
                    "workload {}: cpu {:?} / memory {:?} are not quantities",
                    w.name, w.cpu, w.memory
                ));
            }
            if let Some(p) = &w.pdb
                && p.min_available.is_some() == p.max_unavailable.is_some()
            {
                return Err(format!(
                    "workload {}: pdb needs exactly one of min_available and max_unavailable",
                    w.name
                ));
            }
        }
        if let Some(cv) = &self.vpc_cni.configuration_values {
            let parsed = crate::eks::schema::parse_configuration(cv)
                .map_err(|e| format!("vpc_cni.configuration_values: {e}"))?;
            crate::eks::schema::validate(&crate::eks::schema::vpc_cni(), &parsed)
                .map_err(|e| format!("vpc_cni.configuration_values: {}", e.join(", ")))?;
        }
        Ok(())
    }

    /// The aws-node env values the add-on configuration sets.
    /// The user data a custom-AMI managed node group's nodes boot with.
    pub fn custom_ami_user_data(&self, name: &str) -> Option<&str> {
        self.node_groups
            .iter()
            .find(|g| g.name == name && g.ami_type == "CUSTOM")
            .map(|g| g.user_data.as_deref().unwrap_or(""))
    }

    /// A managed node group on a Windows AMI type (`WINDOWS_CORE_2022_x86_64`, …).
    pub fn is_windows_group(&self, name: &str) -> bool {
        self.node_groups
            .iter()
            .any(|g| g.name == name && g.ami_type.starts_with("WINDOWS_"))
    }

    pub fn vpc_cni_config(&self) -> Value {
        self.vpc_cni
            .configuration_values
            .as_deref()
            .and_then(|t| crate::eks::schema::parse_configuration(t).ok())
            .unwrap_or(Value::Object(Default::default()))
    }
}

/// An ENI the sandbox attached to a node.
#[derive(Debug, Clone, Serialize)]
pub struct EniInfo {
    pub id: String,
    pub device_index: u32,
    pub primary_ip: Ipv4Addr,
    pub secondary_ips: Vec<Ipv4Addr>,
}

/// A node of the seeded cluster.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    pub name: String,
    pub instance_id: String,
    pub instance_type: String,
    pub zone: String,
    pub subnet_id: String,
    pub ip: Ipv4Addr,
    pub enis: Vec<EniInfo>,
    /// The managed node group, for managed nodes.
    pub nodegroup: Option<String>,
    /// The NodeClaim, for Karpenter nodes.
    pub nodeclaim: Option<String>,
    /// Pod addresses handed out on this node, by pod `namespace/name`.
    pub pod_ips: BTreeMap<String, Ipv4Addr>,
}

/// The subnets of one zone.
#[derive(Debug, Clone, Serialize)]
pub struct ZoneInfo {
    pub name: String,
    pub zone_id: String,
    pub public_subnet: Option<String>,
    pub private_subnet: String,
    pub rds_subnet: Option<String>,
    pub private_cidr: Ipv4Net,
}

/// What seeding created.
#[derive(Debug, Clone, Serialize)]
pub struct World {
    pub cluster: String,
    pub region: String,
    pub account: String,
    pub vpc_id: String,
    pub vpc_cidr: Ipv4Net,
    pub zones: Vec<ZoneInfo>,
    /// By role: `lb`, `node`, `rds`, `cluster`, `vpce`.
    pub security_groups: BTreeMap<String, String>,
    /// By role: `public`, `private`, `rds`.
    pub route_tables: BTreeMap<String, String>,
    pub internet_gateway: String,
    pub vpc_endpoints: Vec<String>,
    pub launch_templates: BTreeMap<String, (String, String)>,
    pub ami_id: String,
    pub nodes: Vec<NodeInfo>,
}

/// The zone ID AWS gives an AZ name (`ap-northeast-2a` → `apne2-az1`).
pub fn zone_id(zone: &str) -> String {
    let letter = zone.chars().last().unwrap_or('a');
    let region = &zone[..zone.len().saturating_sub(1)];
    let parts: Vec<&str> = region.split('-').collect();
    let abbr = match parts.as_slice() {
        [geo, dir, num] => {
            let d = match *dir {
                "northeast" => "ne",
                "southeast" => "se",
                "northwest" => "nw",
                "southwest" => "sw",
                "north" => "n",
                "south" => "s",
                "east" => "e",
                "west" => "w",
                "central" => "c",
                other => &other[..1.min(other.len())],
            };
            format!("{geo}{d}{num}")
        }
        _ => region.replace('-', ""),
    };
    format!("{abbr}-az{}", (letter as u32).saturating_sub('a' as u32) + 1)
}

/// The EC2 private DNS name of an address, which EKS uses as node name.
pub fn node_name(ip: Ipv4Addr, region: &str) -> String {
    let host = format!("ip-{}", ip.to_string().replace('.', "-"));
    if region == "us-east-1" {
        format!("{host}.ec2.internal")
    } else {
        format!("{host}.{region}.compute.internal")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_parses() {
        let s = Scenario::seed();
        assert_eq!(s.cluster, "podnet-demo");
        assert_eq!(s.zones.len(), 2);
        assert_eq!(s.vpc_cidr.to_string(), "10.255.0.0/16");
    }

    #[test]
    fn bundled_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                Scenario::load(p.to_str().unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            }
        }
    }

    #[test]
    fn validation_catches_mistakes() {
        let bad = SEED.replace("10.255.11.0/24", "10.254.11.0/24");
        assert!(Scenario::parse(&bad, "x").is_err());
        let overlap = SEED.replace("10.255.12.0/24", "10.255.11.0/24");
        assert!(Scenario::parse(&overlap, "x").is_err());
        let unknown = SEED.replace("cluster =", "clustr =");
        assert!(Scenario::parse(&unknown, "x").is_err());
    }

    #[test]
    fn quantities() {
        assert_eq!(cpu_millis("50m"), Some(50));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("0.5"), Some(500));
        assert_eq!(mem_mib("64Mi"), Some(64));
        assert_eq!(mem_mib("1Gi"), Some(1024));
        assert_eq!(cpu_millis("x"), None);
    }

    #[test]
    fn zone_ids_and_names() {
        assert_eq!(zone_id("ap-northeast-2a"), "apne2-az1");
        assert_eq!(zone_id("ap-northeast-2c"), "apne2-az3");
        assert_eq!(zone_id("us-east-1b"), "use1-az2");
        assert_eq!(
            node_name("10.255.11.4".parse().unwrap(), "ap-northeast-2"),
            "ip-10-255-11-4.ap-northeast-2.compute.internal"
        );
    }
}
