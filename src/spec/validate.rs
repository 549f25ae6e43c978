//! Static validation of a plan file: turns a [`PlanFile`] into a typed
//! [`Spec`], or into every [`Problem`] found, each with its field path and a
//! fix. Nothing here talks to AWS; rules that need the live VPC (overlap with
//! its CIDRs, routes, quota) run in preflight with the same
//! [`crate::network`] functions.
//!
//! This module runs the rules in file order; the pod subnet and security
//! group rules live in `pod_subnets` and `sg_patch`, the validated types in
//! `validated`, all re-exported here.

use std::time::Duration;

use ipnet::Ipv4Net;

use super::model::{
    DEFAULT_ENI_CONFIG_LABEL, KarpenterSection, NetworkSection, PlanFile, ReplacementSection, Selection,
};
pub use super::pod_subnets::{CNI_ROLE_TAG, KARPENTER_DISCOVERY_TAG, OWNER_TAG};
use super::pod_subnets::{check_pod_subnets, check_tags};
use super::sg_patch::{check_eni_security_groups, check_sg_patches};
pub use super::validated::{
    ExplicitSubnet, Overrides, PodSubnetPlan, Problem, Protocol, ReplacementSpec, SecurityGroupRef, SgPatchSpec, Spec,
};
use crate::network::parse_cidr;

/// Validates everything and returns every problem found.
pub fn validate(file: &PlanFile, overrides: &Overrides) -> Result<Spec, Vec<Problem>> {
    let mut p = Vec::new();
    let (cluster, region) = check_cluster(file, overrides, &mut p);
    let secondary = check_network(&file.network, &mut p);
    let pod_subnets = check_pod_subnets(&file.pod_subnets, secondary, &mut p);
    check_tags(&file.pod_subnets.tags, "pod_subnets.tags", &mut p);
    let eni_security_groups = check_eni_security_groups(&file.eniconfig.security_groups, &mut p);
    let security_group_patches = check_sg_patches(&file.security_group_patches, &mut p);
    check_eni_config_label(&file.vpc_cni.eni_config_label, &mut p);
    check_karpenter(&file.karpenter, &mut p);
    let r = &file.replacement;
    let drain_timeout = check_replacement(r, &mut p);

    let waits = super::waits::validate(&file.waits, drain_timeout, &mut p);
    super::control_plane::validate(&file.control_plane, &mut p);
    super::state::validate(&file.state, &mut p);

    if !p.is_empty() {
        return Err(p);
    }
    Ok(Spec {
        cluster,
        region,
        // Only `None` when a problem was recorded above.
        secondary_cidr: secondary.unwrap_or_default(),
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
            windows: r.windows,
            self_managed: r.self_managed,
        },
        waits,
        control_plane: file.control_plane.clone(),
        state_url: file.state.url.clone(),
    })
}

/// The cluster name and region, the command line's over the file's.
fn check_cluster(file: &PlanFile, overrides: &Overrides, p: &mut Vec<Problem>) -> (String, String) {
    let cluster = overrides.cluster.clone().unwrap_or_else(|| file.cluster.name.clone());
    check_cluster_name(&cluster, p);
    let region = overrides.region.clone().or_else(|| file.cluster.region.clone());
    let region = match region {
        Some(r) => {
            check_region(&r, p);
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
    (cluster, region)
}

/// The secondary CIDR when it parses, and the VPC CIDR quota.
fn check_network(network: &NetworkSection, p: &mut Vec<Problem>) -> Option<Ipv4Net> {
    let secondary = match parse_cidr(&network.secondary_cidr) {
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
    if network.vpc_cidr_quota == 0 {
        p.push(Problem::new(
            "network.vpc_cidr_quota",
            "a quota of 0 leaves no room for any CIDR block",
            "leave it out (AWS's default is 5) or set your raised quota",
        ));
    }
    secondary
}

fn check_eni_config_label(label: &str, p: &mut Vec<Problem>) {
    if label.trim().is_empty() || label.contains(char::is_whitespace) {
        p.push(Problem::new(
            "vpc_cni.eni_config_label",
            format!("`{label}` is not a node label key"),
            format!("use `{DEFAULT_ENI_CONFIG_LABEL}` (the default) unless your ENIConfigs are named by another label"),
        ));
    }
}

fn check_karpenter(k: &KarpenterSection, p: &mut Vec<Problem>) {
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
}

/// The node selections and batch size; returns the drain timeout.
fn check_replacement(r: &ReplacementSection, p: &mut Vec<Problem>) -> Duration {
    check_selection(&r.node_groups, "replacement.node_groups", p);
    check_selection(&r.node_pools, "replacement.node_pools", p);
    if r.batch_size == 0 {
        p.push(Problem::new(
            "replacement.batch_size",
            "a batch of 0 nodes never finishes",
            "use 1 or more",
        ));
    }
    match humantime::parse_duration(&r.drain_timeout) {
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
    }
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
