//! The planner: from a validated [`Spec`] and a [`Discovery`], decide every
//! input the steps need ([`MigrationInputs`]), run the preflight checks, suggest
//! security groups to patch, and work out the capacity impact. Pure: no I/O,
//! so every rule is unit-testable on a hand-built discovery.

pub mod capacity;
pub mod karpenter;
pub mod node_groups;
pub mod node_kinds;
pub mod preflight;
pub mod reach;
pub mod self_managed;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aws::ec2::{RuleSource, Tags};
use crate::discovery::{CUSTOM_NETWORK_ENV, Discovery, ENI_CONFIG_LABEL_ENV, PREFIX_DELEGATION_ENV};
use crate::network::{carve_even, overlaps};
use crate::spec::model::{PdbBypass, SelfManagedPolicy};
use crate::spec::{CNI_ROLE_TAG, OWNER_TAG, PodSubnetPlan, Protocol, SecurityGroupRef, Spec};
use crate::steps::addon::VpcCniInputs;
use crate::steps::replace_nodes::DrainSettings;
use crate::steps::{MigrationInputs, PodSubnetInput, SgPatchInput};
use crate::verify::{Expectations, KarpenterExpectation};

pub use capacity::CapacityReport;
pub use preflight::{Finding, Severity};

/// A security group that admits the node subnets today and probably needs to
/// admit the pods too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SgSuggestion {
    pub group_id: String,
    pub group_name: String,
    /// `tcp 3306`, …
    pub ports: String,
    /// The rule's EC2 `IpProtocol` (tcp, udp, icmp or -1) and port range,
    /// as a `[[security_group_patch]]` would repeat them.
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    /// The node-side block the group admits today.
    pub admits: String,
    /// The plan file already patches it.
    pub planned: bool,
    /// It already admits the pod CIDR.
    pub done: bool,
}

/// Everything `plan` shows besides the step changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Planned {
    pub inputs: MigrationInputs,
    pub findings: Vec<Finding>,
    pub suggestions: Vec<SgSuggestion>,
    pub capacity: CapacityReport,
}

impl Planned {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// Plans the migration.
pub fn plan(spec: &Spec, d: &Discovery) -> Planned {
    let mut findings = Vec::new();
    let pod_subnets = pod_subnets(spec, d, &mut findings);
    let security_group_patches = sg_patches(spec, d, &mut findings);
    let (karpenter, karpenter_skip_reason) = karpenter::inputs(spec, d, &mut findings);
    let vpc_cni = vpc_cni_inputs(spec, d);
    let expect = Expectations {
        vpc_id: d.vpc.id.clone(),
        secondary_cidr: spec.secondary_cidr,
        pod_subnets: pod_subnets
            .iter()
            .map(|s| (s.availability_zone.clone(), s.cidr))
            .collect(),
        eni_config_label: spec.vpc_cni.eni_config_label.clone(),
        cni_env: vpc_cni.env.clone(),
        cni_after: capacity::cni_after(spec, d),
        instance_types: d.instance_types.clone(),
        karpenter: karpenter.as_ref().map(|k| KarpenterExpectation {
            namespace: k.namespace.clone(),
            deployment: k.deployment.clone(),
            reserved_enis: k.reserved_enis,
            max_pods: k.max_pods,
            class_max_pods: k.class_max_pods.clone(),
            pool_classes: karpenter::pool_classes(d),
        }),
        direction: Default::default(),
        leave_self_managed: spec.replacement.self_managed == SelfManagedPolicy::Leave,
    };
    let r = &spec.replacement;
    let node_pools: Vec<String> = d
        .kube
        .karpenter
        .iter()
        .flat_map(|k| k.nodepools.iter().map(|p| p.name.clone()))
        .filter(|p| r.node_pools.selects(p))
        // A probe pool left by an interrupted gate is podnet's, not a pool to migrate.
        .filter(|p| p != crate::steps::reach_gate::PROBE)
        .collect();
    let karpenter_batches = karpenter::batches(d, &node_pools, &expect, r.batch_size, Some(&mut findings));
    let pool_batch = karpenter::pool_batch(d, &node_pools, r.batch_size);
    let (reach_gate, reach_findings) = reach::plan(spec, d, &expect, &node_pools);
    findings.extend(reach_findings);
    let inputs = MigrationInputs {
        cluster: spec.cluster.clone(),
        region: spec.region.clone(),
        vpc_id: d.vpc.id.clone(),
        secondary_cidr: spec.secondary_cidr,
        vpc_cidr_quota: spec.vpc_cidr_quota,
        security_group_patches,
        pod_subnets,
        eniconfig_security_groups: eniconfig_security_groups(spec, d),
        adopt_existing_eniconfigs: spec.adopt_existing_eniconfigs,
        karpenter,
        karpenter_skip_reason,
        vpc_cni,
        node_pools,
        karpenter_batches,
        node_groups: node_groups::rolls(spec, d, &mut findings),
        self_managed: self_managed::rolls(spec, d, &mut findings),
        drain: DrainSettings {
            batch_size: r.batch_size,
            drain_timeout_secs: r.drain_timeout.as_secs(),
            evict_emptydir: r.evict_emptydir,
            evict_unmanaged: r.evict_unmanaged,
            pdb_bypass_after_timeout: r.pdb_bypass == PdbBypass::AfterTimeout,
            pool_batch,
        },
        expect,
        waits: spec.waits,
        reach_gate,
    };
    findings.extend(preflight::check(spec, d, &inputs));
    let suggestions = suggestions(spec, d, &inputs);
    let capacity = capacity::report(spec, d, &inputs);
    findings.extend(capacity::findings(&capacity));
    // Errors first, then warnings, then notes; stable within a severity.
    findings.sort_by_key(|f| f.severity);
    Planned {
        inputs,
        findings,
        suggestions,
        capacity,
    }
}

/// The security groups of pod ENIs, as ids: the plan's, or the cluster
/// security group. Unresolvable ones are preflight errors.
fn eniconfig_security_groups(spec: &Spec, d: &Discovery) -> Vec<String> {
    if spec.eni_security_groups.is_empty() {
        return d.cluster.cluster_security_group_id.iter().cloned().collect();
    }
    let mut out: Vec<String> = Vec::new();
    for r in &spec.eni_security_groups {
        for g in &d.security_groups {
            let hit = match r {
                SecurityGroupRef::Id(id) => &g.id == id,
                SecurityGroupRef::Name(n) => &g.name == n,
                SecurityGroupRef::Tags(t) => t.iter().all(|(k, v)| g.tags.get(k) == Some(v)),
            };
            if hit && !out.contains(&g.id) {
                out.push(g.id.clone());
            }
        }
    }
    out
}

fn vpc_cni_inputs(spec: &Spec, d: &Discovery) -> VpcCniInputs {
    let mut env = BTreeMap::new();
    env.insert(CUSTOM_NETWORK_ENV.to_string(), "true".to_string());
    env.insert(ENI_CONFIG_LABEL_ENV.to_string(), spec.vpc_cni.eni_config_label.clone());
    if spec.vpc_cni.prefix_delegation {
        env.insert(PREFIX_DELEGATION_ENV.to_string(), "true".to_string());
    }
    VpcCniInputs {
        managed_addon: d.addon.is_some(),
        resolve_conflicts: spec.vpc_cni.resolve_conflicts.as_eks().to_string(),
        env,
    }
}

fn subnet_tags(spec: &Spec, name: &str) -> Tags {
    let mut tags: Tags = spec.subnet_tags.clone();
    tags.insert("Name".into(), name.to_string());
    tags.insert(OWNER_TAG.into(), spec.cluster.clone());
    tags.insert(CNI_ROLE_TAG.into(), "1".into());
    tags
}

/// The route table pods in `az` should use: that of the node subnet hosting
/// the most nodes (all node subnets of an AZ normally share one).
fn route_table_for_az(spec: &Spec, d: &Discovery, az: &str, findings: &mut Vec<Finding>) -> Option<String> {
    let node_subnets = d.node_subnets(spec);
    let subnets = node_subnets.get(az)?;
    let per_subnet = d.nodes_per_subnet();
    let mut tables: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    for s in subnets {
        if let Some(rt) = d.route_table_of(&s.id) {
            let e = tables.entry(rt.id.clone()).or_default();
            e.0 += per_subnet.get(&s.id).copied().unwrap_or(0);
            e.1.push(s.id.clone());
        }
    }
    if tables.len() > 1 {
        let list: Vec<String> = tables
            .iter()
            .map(|(rt, (_, s))| format!("{rt} ({})", s.join(", ")))
            .collect();
        findings.push(Finding::warning(
            "subnets.route-tables-differ",
            format!("the node subnets of {az} use different route tables: {}", list.join("; ")),
            "podnet uses the table of the subnet with the most nodes; if pods need another, associate the pod subnet by hand after apply",
        ));
    }
    tables.into_iter().max_by_key(|(_, (n, _))| *n).map(|(rt, _)| rt)
}

fn main_route_table(d: &Discovery) -> Option<String> {
    d.route_tables.iter().find(|rt| rt.is_main()).map(|rt| rt.id.clone())
}

fn pod_subnets(spec: &Spec, d: &Discovery, findings: &mut Vec<Finding>) -> Vec<PodSubnetInput> {
    let wanted: Vec<(String, ipnet::Ipv4Net, Option<String>)> = match &spec.pod_subnets {
        PodSubnetPlan::Explicit { subnets } => subnets
            .iter()
            .map(|s| (s.availability_zone.clone(), s.cidr, s.name.clone()))
            .collect(),
        PodSubnetPlan::Auto => {
            let zones: Vec<String> = d.node_subnets(spec).keys().cloned().collect();
            match carve_even(&spec.secondary_cidr, zones.len()) {
                Ok(blocks) => zones.into_iter().zip(blocks).map(|(z, b)| (z, b, None)).collect(),
                Err(e) => {
                    findings.push(Finding::error(
                        "subnets.auto-sizing",
                        format!("cannot size pod subnets automatically: {e}"),
                        "list the pod subnets explicitly (sizing = \"explicit\")",
                    ));
                    vec![]
                }
            }
        }
    };
    let node_subnets = d.node_subnets(spec);
    let mut out = Vec::new();
    for (az, cidr, name) in wanted {
        let name = name.unwrap_or_else(|| format!("{}-pods-{az}", spec.cluster));
        let rt = if node_subnets.contains_key(&az) {
            route_table_for_az(spec, d, &az, findings)
        } else {
            findings.push(Finding::warning(
                "subnets.az-without-node-subnet",
                format!("no node subnet is known in {az}; its pod subnet {cidr} gets the VPC's main route table"),
                "check that pods in this AZ can reach what they need through the main table",
            ));
            main_route_table(d)
        };
        let Some(route_table_id) = rt.or_else(|| main_route_table(d)) else {
            findings.push(Finding::error(
                "subnets.no-route-table",
                format!("no route table found for {az}"),
                "the VPC must have a main route table; check DescribeRouteTables permissions",
            ));
            continue;
        };
        for s in &d.subnets {
            if overlaps(&s.cidr, &cidr) && !(s.cidr == cidr && s.availability_zone == az) {
                findings.push(Finding::error(
                    "subnets.cidr-taken",
                    format!(
                        "pod subnet {cidr} ({az}) overlaps the existing subnet {} ({}, {})",
                        s.id, s.cidr, s.availability_zone
                    ),
                    "choose another block for this AZ",
                ));
            }
        }
        out.push(PodSubnetInput {
            availability_zone: az,
            cidr,
            tags: subnet_tags(spec, &name),
            name,
            route_table_id,
        });
    }
    out
}

fn sg_patches(spec: &Spec, d: &Discovery, findings: &mut Vec<Finding>) -> Vec<SgPatchInput> {
    let mut out = Vec::new();
    for (i, p) in spec.security_group_patches.iter().enumerate() {
        let groups: Vec<_> = match &p.target {
            SecurityGroupRef::Id(id) => d.security_groups.iter().filter(|g| &g.id == id).collect(),
            SecurityGroupRef::Name(n) => d.security_groups.iter().filter(|g| &g.name == n).collect(),
            SecurityGroupRef::Tags(t) => d
                .security_groups
                .iter()
                .filter(|g| t.iter().all(|(k, v)| g.tags.get(k) == Some(v)))
                .collect(),
        };
        if groups.is_empty() {
            findings.push(Finding::error(
                "sg-patch.target-missing",
                format!("security_group_patch[{i}]: no {} in {}", p.target, d.vpc.id),
                "fix the target in the plan file (`podnet plan` lists suggested groups)",
            ));
            continue;
        }
        let (from_port, to_port) = match (p.protocol, p.ports) {
            (Protocol::All, _) => (None, None),
            (Protocol::Icmp, _) => (Some(-1), Some(-1)),
            (_, Some((a, b))) => (Some(i32::from(a)), Some(i32::from(b))),
            (_, None) => (None, None),
        };
        for g in groups {
            let input = SgPatchInput {
                group_id: g.id.clone(),
                group_name: g.name.clone(),
                protocol: p.protocol.ec2_name().to_string(),
                from_port,
                to_port,
                cidr: spec.secondary_cidr,
                description: p.description.clone(),
            };
            if !out.contains(&input) {
                out.push(input);
            }
        }
    }
    out
}

/// Groups whose ingress admits node subnets (or blocks containing them, but
/// not the whole internet) on some ports: pods will call them from the pod
/// CIDR once they move.
fn suggestions(spec: &Spec, d: &Discovery, inputs: &MigrationInputs) -> Vec<SgSuggestion> {
    let node_cidrs: Vec<ipnet::Ipv4Net> = d.node_subnets(spec).values().flatten().map(|s| s.cidr).collect();
    let mut out: Vec<SgSuggestion> = Vec::new();
    for g in &d.security_groups {
        for r in &g.ingress {
            let RuleSource::Cidr(src) = &r.source else { continue };
            if src.prefix_len() == 0 || !node_cidrs.iter().any(|n| src.contains(n)) {
                continue;
            }
            let probe = SgPatchInput {
                group_id: g.id.clone(),
                group_name: g.name.clone(),
                protocol: r.protocol.clone(),
                from_port: r.from_port,
                to_port: r.to_port,
                cidr: spec.secondary_cidr,
                description: String::new(),
            };
            let ports = probe.ports_label();
            // One row per group and port range; every node-side block it
            // admits is listed, so the user sees the whole rule set.
            if let Some(seen) = out.iter_mut().find(|s| s.group_id == g.id && s.ports == ports) {
                if !seen.admits.split(", ").any(|a| a == src.to_string()) {
                    seen.admits = format!("{}, {src}", seen.admits);
                }
                continue;
            }
            // Planned when a patch of the group admits at least these ports
            // (an ICMP patch admits every type; `all` admits everything).
            let planned = inputs
                .security_group_patches
                .iter()
                .any(|p| p.group_id == g.id && p.as_rule().covers(&r.protocol, r.from_port, r.to_port));
            let done = !crate::steps::security_groups::admitting(g, &probe).is_empty();
            out.push(SgSuggestion {
                group_id: g.id.clone(),
                group_name: g.name.clone(),
                ports,
                protocol: r.protocol.clone(),
                from_port: r.from_port,
                to_port: r.to_port,
                admits: src.to_string(),
                planned,
                done,
            });
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests;
