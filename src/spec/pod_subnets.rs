//! The pod subnet rules of a plan: the `[pod_subnets]` sizing, each
//! explicit subnet's zone, name and CIDR (inside the secondary CIDR, no two
//! overlapping, one per AZ), and the tags a plan may put on pod subnets.

use std::collections::{BTreeMap, HashMap};

use ipnet::Ipv4Net;

use super::model::{PodSubnetEntry, PodSubnetsSection, Sizing};
use super::validated::{ExplicitSubnet, PodSubnetPlan, Problem};
use crate::network::{overlaps, parse_cidr};

/// Tag keys podnet sets itself on pod subnets; a plan may not override them.
pub const OWNER_TAG: &str = "podnet.io/cluster";
pub const CNI_ROLE_TAG: &str = "kubernetes.io/role/cni";
/// Never on a pod subnet: an EC2NodeClass selecting by it would launch nodes there.
pub const KARPENTER_DISCOVERY_TAG: &str = "karpenter.sh/discovery";

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

pub(super) fn check_pod_subnets(
    s: &PodSubnetsSection,
    secondary: Option<Ipv4Net>,
    p: &mut Vec<Problem>,
) -> PodSubnetPlan {
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
                check_subnet_zone(e, i, &base, &mut zones, p);
                check_subnet_name(e, &base, p);
                let Some(cidr) = check_subnet_cidr(e, &base, secondary, &parsed, p) else {
                    continue;
                };
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

/// One zone name, and no second subnet in a zone already seen.
fn check_subnet_zone<'a>(
    e: &'a PodSubnetEntry,
    i: usize,
    base: &str,
    zones: &mut HashMap<&'a str, usize>,
    p: &mut Vec<Problem>,
) {
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
}

fn check_subnet_name(e: &PodSubnetEntry, base: &str, p: &mut Vec<Problem>) {
    if let Some(name) = &e.name
        && (name.is_empty() || name.len() > 256)
    {
        p.push(Problem::new(
            format!("{base}.name"),
            "a Name tag must be 1–256 characters",
            "shorten it",
        ));
    }
}

/// The subnet's CIDR when it parses; its size, its place in the secondary
/// CIDR and its overlap with the subnets before it are checked too.
fn check_subnet_cidr(
    e: &PodSubnetEntry,
    base: &str,
    secondary: Option<Ipv4Net>,
    parsed: &[(usize, Ipv4Net)],
    p: &mut Vec<Problem>,
) -> Option<Ipv4Net> {
    let cidr = match parse_cidr(&e.cidr) {
        Ok(c) => c,
        Err(msg) => {
            p.push(Problem::new(
                format!("{base}.cidr"),
                msg,
                "write a block inside network.secondary_cidr",
            ));
            return None;
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
    for (j, other) in parsed {
        if overlaps(other, &cidr) {
            p.push(Problem::new(
                format!("{base}.cidr"),
                format!("{cidr} overlaps pod_subnets.subnet[{j}] ({other})"),
                "give every AZ a block of its own",
            ));
        }
    }
    Some(cidr)
}

pub(super) fn check_tags(tags: &BTreeMap<String, String>, base: &str, p: &mut Vec<Problem>) {
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
