//! Static validation of a plan file: turns a [`PlanFile`] into a typed
//! [`Spec`], or into every [`Problem`] found, each with its field path and a
//! fix. Nothing here talks to AWS; rules that need the live VPC (overlap with
//! its CIDRs, routes, quota) run in preflight with the same
//! [`crate::network`] functions.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::model::*;
use crate::network::{overlaps, parse_cidr};

/// Tag keys podnet sets itself on pod subnets; a plan may not override them.
pub const OWNER_TAG: &str = "podnet.io/cluster";
pub const CNI_ROLE_TAG: &str = "kubernetes.io/role/cni";
/// Never on a pod subnet: an EC2NodeClass selecting by it would launch nodes there.
pub const KARPENTER_DISCOVERY_TAG: &str = "karpenter.sh/discovery";

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
}

/// Values given on the command line that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub cluster: Option<String>,
    pub region: Option<String>,
}

/// Validates everything and returns every problem found.
pub fn validate(file: &PlanFile, overrides: &Overrides) -> Result<Spec, Vec<Problem>> {
    let mut p = Vec::new();

    let cluster = overrides.cluster.clone().unwrap_or_else(|| file.cluster.name.clone());
    check_cluster_name(&cluster, &mut p);
    let region = overrides.region.clone().or_else(|| file.cluster.region.clone());
    let region = match region {
        Some(r) => {
            check_region(&r, &mut p);
            r
        }
        None => {
            p.push(Problem::new(
                "cluster.region",
                "no region given",
                "add `region = \"ap-northeast-2\"` (your cluster's region) under [cluster], or pass --region",
            ));
            String::new()
        }
    };

    let secondary = match parse_cidr(&file.network.secondary_cidr) {
        Ok(n) => {
            if !(16..=28).contains(&n.prefix_len()) {
                p.push(Problem::new(
                    "network.secondary_cidr",
                    format!("{n} is a /{}; AWS associates /16 to /28 blocks only", n.prefix_len()),
                    "use a /16 such as 100.64.0.0/16 (the largest block AWS allows)",
                ));
            }
            Some(n)
        }
        Err(e) => {
            p.push(Problem::new(
                "network.secondary_cidr",
                e,
                "use a block from 100.64.0.0/10, e.g. 100.64.0.0/16",
            ));
            None
        }
    };
    if file.network.vpc_cidr_quota == 0 {
        p.push(Problem::new(
            "network.vpc_cidr_quota",
            "a quota of 0 leaves no room for any CIDR block",
            "leave it out (AWS's default is 5) or set your raised quota",
        ));
    }

    let pod_subnets = check_pod_subnets(&file.pod_subnets, secondary, &mut p);
    check_tags(&file.pod_subnets.tags, "pod_subnets.tags", &mut p);

    let mut eni_security_groups = Vec::new();
    for (i, g) in file.eniconfig.security_groups.iter().enumerate() {
        let path = format!("eniconfig.security_groups[{i}]");
        match sg_ref(g) {
            Ok(r) => eni_security_groups.push(r),
            Err(msg) => p.push(Problem::new(
                path,
                msg,
                "write a group id (sg-0123abcd) or the group's name",
            )),
        }
    }
    if eni_security_groups.len() > 5 {
        p.push(Problem::new(
            "eniconfig.security_groups",
            format!("{} groups listed; an ENI takes at most 5", eni_security_groups.len()),
            "list at most 5 security groups",
        ));
    }

    let mut security_group_patches = Vec::new();
    for (i, patch) in file.security_group_patches.iter().enumerate() {
        if let Some(s) = check_sg_patch(patch, &format!("security_group_patch[{i}]"), &mut p) {
            security_group_patches.push(s);
        }
    }
    for (i, a) in security_group_patches.iter().enumerate() {
        if security_group_patches[..i].contains(a) {
            p.push(Problem::new(
                format!("security_group_patch[{i}]"),
                "the same rule is listed twice",
                "remove the duplicate entry",
            ));
        }
    }

    let label = &file.vpc_cni.eni_config_label;
    if label.trim().is_empty() || label.contains(char::is_whitespace) {
        p.push(Problem::new(
            "vpc_cni.eni_config_label",
            format!("`{label}` is not a node label key"),
            format!("use `{DEFAULT_ENI_CONFIG_LABEL}` (the default) unless your ENIConfigs are named by another label"),
        ));
    }

    let k = &file.karpenter;
    if k.reserved_enis > 15 {
        p.push(Problem::new(
            "karpenter.reserved_enis",
            format!("{} reserved ENIs is more than any instance type has", k.reserved_enis),
            "use 1 with custom networking (the primary ENI serves no pods)",
        ));
    }
    if k.reserved_enis == 0 && k.configure && k.max_pods.is_none() {
        p.push(Problem::new(
            "karpenter.reserved_enis",
            "0 keeps Karpenter counting the primary ENI, so it promises pods the node has no IPs for once custom networking is on",
            "use 1 (the default), or set karpenter.max_pods",
        ));
    }
    if let Some(0) = k.max_pods {
        p.push(Problem::new(
            "karpenter.max_pods",
            "0 pods per node schedules nothing",
            "leave it out or set a positive value",
        ));
    }
    for (i, n) in k.node_classes.iter().enumerate() {
        if n.trim().is_empty() {
            p.push(Problem::new(
                format!("karpenter.node_classes[{i}]"),
                "empty name",
                "write an EC2NodeClass name",
            ));
        }
    }
    if !k.node_classes.is_empty() && k.max_pods.is_none() {
        p.push(Problem::new(
            "karpenter.node_classes",
            "node classes are listed but karpenter.max_pods is not set, so nothing would change on them",
            "set karpenter.max_pods or remove node_classes",
        ));
    }

    let r = &file.replacement;
    check_selection(&r.node_groups, "replacement.node_groups", &mut p);
    check_selection(&r.node_pools, "replacement.node_pools", &mut p);
    if r.batch_size == 0 {
        p.push(Problem::new(
            "replacement.batch_size",
            "a batch of 0 nodes never finishes",
            "use 1 or more",
        ));
    }
    let drain_timeout = match humantime::parse_duration(&r.drain_timeout) {
        Ok(d) if d.is_zero() => {
            p.push(Problem::new(
                "replacement.drain_timeout",
                "a zero timeout fails every drain",
                "use e.g. \"10m\"",
            ));
            d
        }
        Ok(d) => d,
        Err(e) => {
            p.push(Problem::new(
                "replacement.drain_timeout",
                format!("`{}` is not a duration ({e})", r.drain_timeout),
                "write it like \"90s\", \"10m\" or \"1h\"",
            ));
            Duration::from_secs(600)
        }
    };

    let waits = super::waits::validate(&file.waits, drain_timeout, &mut p);

    if !p.is_empty() {
        return Err(p);
    }
    Ok(Spec {
        cluster,
        region,
        // Only `None` when a problem was recorded above.
        secondary_cidr: secondary.unwrap_or_else(Ipv4Net::default),
        vpc_cidr_quota: file.network.vpc_cidr_quota as usize,
        pod_subnets,
        subnet_tags: file.pod_subnets.tags.clone(),
        eni_security_groups,
        adopt_existing_eniconfigs: file.eniconfig.adopt_existing,
        security_group_patches,
        vpc_cni: file.vpc_cni.clone(),
        karpenter: file.karpenter.clone(),
        replacement: ReplacementSpec {
            node_groups: r.node_groups.clone(),
            node_pools: r.node_pools.clone(),
            batch_size: r.batch_size,
            drain_timeout,
            evict_emptydir: r.evict_emptydir,
            evict_unmanaged: r.evict_unmanaged,
            pdb_bypass: r.pdb_bypass,
        },
        waits,
    })
}

fn check_cluster_name(name: &str, p: &mut Vec<Problem>) {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        p.push(Problem::new(
            "cluster.name",
            format!("`{name}` is not an EKS cluster name"),
            "use the name `aws eks list-clusters` shows (letters, digits, - and _, starting with a letter or digit)",
        ));
    }
}

fn check_region(region: &str, p: &mut Vec<Problem>) {
    // ap-northeast-2, us-gov-west-1, eu-central-2, cn-north-1
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts[0].chars().all(|c| c.is_ascii_lowercase())
        && parts[1..parts.len() - 1]
            .iter()
            .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok();
    if !ok {
        p.push(Problem::new(
            "cluster.region",
            format!("`{region}` is not an AWS region"),
            "write a region code such as ap-northeast-2",
        ));
    }
}

fn is_zone_name(z: &str) -> bool {
    // A region followed by a letter (ap-northeast-2a), or a Local/Wavelength
    // zone (us-west-2-lax-1a). Zone ids (apne2-az1) are not accepted: the
    // ENIConfig is named after the zone name, which is what the zone label holds.
    let Some(last) = z.chars().last() else { return false };
    last.is_ascii_lowercase()
        && z.contains('-')
        && z.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && z.split('-').next().is_some_and(|p| p.len() == 2)
        && z[..z.len() - 1].chars().last().is_some_and(|c| c.is_ascii_digit())
}

fn check_pod_subnets(s: &PodSubnetsSection, secondary: Option<Ipv4Net>, p: &mut Vec<Problem>) -> PodSubnetPlan {
    match s.sizing {
        Sizing::Auto => {
            if !s.subnets.is_empty() {
                p.push(Problem::new(
                    "pod_subnets.subnet",
                    format!("{} subnets are listed while sizing = \"auto\"", s.subnets.len()),
                    "set sizing = \"explicit\" to use them, or remove the [[pod_subnets.subnet]] entries",
                ));
            }
            PodSubnetPlan::Auto
        }
        Sizing::Explicit => {
            if s.subnets.is_empty() {
                p.push(Problem::new(
                    "pod_subnets.subnet",
                    "sizing = \"explicit\" but no subnet is listed",
                    "add a [[pod_subnets.subnet]] with availability_zone and cidr per AZ, or use sizing = \"auto\"",
                ));
            }
            let mut out = Vec::new();
            let mut zones: HashMap<&str, usize> = HashMap::new();
            let mut parsed: Vec<(usize, Ipv4Net)> = Vec::new();
            for (i, e) in s.subnets.iter().enumerate() {
                let base = format!("pod_subnets.subnet[{i}]");
                if !is_zone_name(&e.availability_zone) {
                    p.push(Problem::new(
                        format!("{base}.availability_zone"),
                        format!("`{}` is not an availability zone name", e.availability_zone),
                        "write the zone name, e.g. ap-northeast-2a (zone ids like apne2-az1 are not accepted)",
                    ));
                } else if let Some(first) = zones.insert(&e.availability_zone, i) {
                    p.push(Problem::new(
                        format!("{base}.availability_zone"),
                        format!(
                            "{} already has a pod subnet (pod_subnets.subnet[{first}])",
                            e.availability_zone
                        ),
                        "list one subnet per availability zone: each AZ gets exactly one ENIConfig",
                    ));
                }
                if let Some(name) = &e.name
                    && (name.is_empty() || name.len() > 256)
                {
                    p.push(Problem::new(
                        format!("{base}.name"),
                        "a Name tag must be 1–256 characters",
                        "shorten it",
                    ));
                }
                let cidr = match parse_cidr(&e.cidr) {
                    Ok(c) => c,
                    Err(msg) => {
                        p.push(Problem::new(
                            format!("{base}.cidr"),
                            msg,
                            "write a block inside network.secondary_cidr",
                        ));
                        continue;
                    }
                };
                if !(16..=28).contains(&cidr.prefix_len()) {
                    p.push(Problem::new(
                        format!("{base}.cidr"),
                        format!("{cidr} is a /{}; a subnet must be /16 to /28", cidr.prefix_len()),
                        "pick a size between /16 and /28 (a /24 gives 251 pod IPs)",
                    ));
                }
                if let Some(sec) = secondary
                    && !sec.contains(&cidr)
                {
                    p.push(Problem::new(
                        format!("{base}.cidr"),
                        format!("{cidr} is outside the secondary CIDR {sec}"),
                        format!("pick a block inside {sec}, or change network.secondary_cidr"),
                    ));
                }
                for (j, other) in &parsed {
                    if overlaps(other, &cidr) {
                        p.push(Problem::new(
                            format!("{base}.cidr"),
                            format!("{cidr} overlaps pod_subnets.subnet[{j}] ({other})"),
                            "give every AZ a block of its own",
                        ));
                    }
                }
                parsed.push((i, cidr));
                out.push(ExplicitSubnet {
                    availability_zone: e.availability_zone.clone(),
                    cidr,
                    name: e.name.clone(),
                });
            }
            PodSubnetPlan::Explicit { subnets: out }
        }
    }
}

fn check_tags(tags: &BTreeMap<String, String>, base: &str, p: &mut Vec<Problem>) {
    for (k, v) in tags {
        let path = format!("{base}.\"{k}\"");
        if k == KARPENTER_DISCOVERY_TAG {
            p.push(Problem::new(
                path,
                "pod subnets must not carry karpenter.sh/discovery: an EC2NodeClass selecting by it would launch nodes into the pod subnets",
                "remove this tag; nodes stay in the node subnets",
            ));
        } else if k == OWNER_TAG || k == CNI_ROLE_TAG || k == "Name" {
            p.push(Problem::new(
                path,
                format!("podnet sets `{k}` itself"),
                if k == "Name" {
                    "use pod_subnets.subnet[].name for the Name tag"
                } else {
                    "remove it"
                },
            ));
        } else if k.is_empty() || k.len() > 128 || k.starts_with("aws:") {
            p.push(Problem::new(
                path,
                "tag keys are 1–128 characters and may not start with aws:",
                "rename the key",
            ));
        } else if v.len() > 256 {
            p.push(Problem::new(
                path,
                "tag values are at most 256 characters",
                "shorten the value",
            ));
        }
    }
}

fn sg_ref(s: &str) -> Result<SecurityGroupRef, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty security group".to_string());
    }
    if let Some(hex) = s.strip_prefix("sg-")
        && hex.len() >= 8
        && hex.chars().all(|c| c.is_ascii_hexdigit())
    {
        return Ok(SecurityGroupRef::Id(s.to_string()));
    }
    // A name may also start with "sg-"; only a well-formed id is taken as one.
    if s.len() > 255 {
        return Err("a security group name is at most 255 characters".to_string());
    }
    Ok(SecurityGroupRef::Name(s.to_string()))
}

fn check_sg_patch(patch: &SecurityGroupPatch, base: &str, p: &mut Vec<Problem>) -> Option<SgPatchSpec> {
    let given = [
        patch.group_id.is_some(),
        patch.group_name.is_some(),
        patch.group_tags.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    let target = if given != 1 {
        p.push(Problem::new(
            base.to_string(),
            format!("{given} targets given"),
            "set exactly one of group_id, group_name or group_tags",
        ));
        None
    } else if let Some(id) = &patch.group_id {
        match sg_ref(id) {
            Ok(SecurityGroupRef::Id(id)) => Some(SecurityGroupRef::Id(id)),
            _ => {
                p.push(Problem::new(
                    format!("{base}.group_id"),
                    format!("`{id}` is not a security group id"),
                    "write it as sg- followed by 8 or 17 hex digits, or use group_name",
                ));
                None
            }
        }
    } else if let Some(name) = &patch.group_name {
        if name.trim().is_empty() {
            p.push(Problem::new(
                format!("{base}.group_name"),
                "empty name",
                "write the group's name",
            ));
            None
        } else {
            Some(SecurityGroupRef::Name(name.clone()))
        }
    } else {
        let tags = patch.group_tags.clone().unwrap_or_default();
        if tags.is_empty() {
            p.push(Problem::new(
                format!("{base}.group_tags"),
                "an empty tag filter selects every group",
                "list at least one tag",
            ));
            None
        } else {
            Some(SecurityGroupRef::Tags(tags))
        }
    };

    let protocol = match patch.protocol.to_ascii_lowercase().as_str() {
        "tcp" | "6" => Some(Protocol::Tcp),
        "udp" | "17" => Some(Protocol::Udp),
        "icmp" | "1" => Some(Protocol::Icmp),
        "all" | "-1" => Some(Protocol::All),
        other => {
            p.push(Problem::new(
                format!("{base}.protocol"),
                format!("`{other}` is not a protocol podnet patches"),
                "use tcp, udp, icmp or all",
            ));
            None
        }
    };

    let ports = match (&patch.ports, protocol) {
        (None, Some(Protocol::Tcp | Protocol::Udp)) => {
            p.push(Problem::new(
                format!("{base}.ports"),
                "tcp and udp rules need ports",
                "add e.g. ports = 3306 or ports = \"8080-8090\"",
            ));
            None
        }
        (Some(_), Some(Protocol::All | Protocol::Icmp)) => {
            p.push(Problem::new(
                format!("{base}.ports"),
                "ports are meaningless for protocol all and icmp",
                "remove ports, or use protocol tcp/udp",
            ));
            None
        }
        (Some(spec), _) => match parse_ports(spec) {
            Ok(r) => Some(r),
            Err(msg) => {
                p.push(Problem::new(
                    format!("{base}.ports"),
                    msg,
                    "write a port (3306) or a range (\"1024-65535\") within 0–65535",
                ));
                None
            }
        },
        (None, _) => None,
    };

    let description = patch
        .description
        .clone()
        .unwrap_or_else(|| "pods (VPC CNI custom networking), added by podnet".into());
    let allowed = |c: char| c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(c);
    if description.len() > 255 || !description.chars().all(allowed) {
        p.push(Problem::new(
            format!("{base}.description"),
            "EC2 rule descriptions are up to 255 characters of a-z, A-Z, 0-9, spaces and ._-:/()#,@[]+=&;{}!$*",
            "shorten it or remove the other characters",
        ));
    }

    let target = target?;
    let protocol = protocol?;
    if matches!(protocol, Protocol::Tcp | Protocol::Udp) && ports.is_none() {
        return None;
    }
    Some(SgPatchSpec {
        target,
        protocol,
        ports,
        description,
    })
}

fn parse_ports(spec: &PortSpec) -> Result<(u16, u16), String> {
    let one = |n: i64| u16::try_from(n).map_err(|_| format!("{n} is not a port"));
    match spec {
        PortSpec::Single(n) => {
            let n = one(*n)?;
            Ok((n, n))
        }
        PortSpec::Range(s) => {
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            let a: i64 = a.trim().parse().map_err(|_| format!("`{s}` is not a port or range"))?;
            let b: i64 = b.trim().parse().map_err(|_| format!("`{s}` is not a port or range"))?;
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return Err(format!("`{s}` runs backwards"));
            }
            Ok((a, b))
        }
    }
}

fn check_selection(s: &Selection, path: &str, p: &mut Vec<Problem>) {
    match s {
        Selection::Keyword(k) if k == "all" || k == "none" => {}
        Selection::Keyword(k) => p.push(Problem::new(
            path,
            format!("`{k}` is neither \"all\", \"none\" nor a list"),
            format!("write \"all\", \"none\" or a list such as [\"{k}\"]"),
        )),
        Selection::Names(names) => {
            for (i, n) in names.iter().enumerate() {
                if n.trim().is_empty() {
                    p.push(Problem::new(
                        format!("{path}[{i}]"),
                        "empty name",
                        "remove the empty entry",
                    ));
                }
            }
        }
    }
}
