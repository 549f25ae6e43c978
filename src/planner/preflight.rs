//! Preflight checks: every rule has a stable id, a severity, a reason and a
//! fix. Errors stop `plan` (exit 1) and stop `apply` before any change;
//! warnings and notes are shown and kept in the JSON plan.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::aws::ec2::RuleSource;
use crate::discovery::{
    CUSTOM_NETWORK_ENV, CustomNetworking, Discovery, ENI_CONFIG_LABEL_ENV, SUBNET_DISCOVERY_ENV, selector_terms_select,
};
use crate::k8s::snapshot::selects;
use crate::spec::{SecurityGroupRef, Spec};
use crate::steps::MigrationInputs;
use crate::steps::associate_cidr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Note,
}

/// One preflight result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable: `cidr.restricted`, `nodes.windows`, …
    pub id: String,
    pub severity: Severity,
    pub reason: String,
    pub fix: String,
}

impl Finding {
    pub fn new(id: &str, severity: Severity, reason: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            id: id.to_string(),
            severity,
            reason: reason.into(),
            fix: fix.into(),
        }
    }
    pub fn error(id: &str, reason: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding::new(id, Severity::Error, reason, fix)
    }
    pub fn warning(id: &str, reason: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding::new(id, Severity::Warning, reason, fix)
    }
    pub fn note(id: &str, reason: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding::new(id, Severity::Note, reason, fix)
    }
}

/// Runs every check.
pub fn check(spec: &Spec, d: &Discovery, inputs: &MigrationInputs) -> Vec<Finding> {
    let mut f = Vec::new();
    cidr(spec, d, &mut f);
    cluster(d, &mut f);
    cni(spec, d, &mut f);
    super::node_kinds::check(spec, d, inputs, &mut f);
    zones(d, inputs, &mut f);
    karpenter(spec, d, inputs, &mut f);
    eniconfig_security_groups(spec, d, &mut f);
    pdbs(d, &mut f);
    f
}

fn cidr(spec: &Spec, d: &Discovery, f: &mut Vec<Finding>) {
    use crate::network::CidrProblem as P;
    if spec.secondary_cidr == d.vpc.primary_cidr || spec.secondary_cidr.contains(&d.vpc.primary_cidr) {
        f.push(Finding::error(
            "cidr.is-primary",
            format!(
                "network.secondary_cidr {} is (or contains) the VPC's primary CIDR {}",
                spec.secondary_cidr, d.vpc.primary_cidr
            ),
            "pods need a block of their own: use 100.64.0.0/16",
        ));
        return;
    }
    for p in associate_cidr::problems(&d.vpc, &d.route_tables, spec.secondary_cidr, spec.vpc_cidr_quota) {
        let (id, fix) = match &p {
            P::BlockSize { .. } => ("cidr.block-size", "use a /16 to /28 block, e.g. 100.64.0.0/16"),
            P::Restricted { .. } => (
                "cidr.restricted",
                "set network.secondary_cidr to a block in 100.64.0.0/10, e.g. 100.64.0.0/16",
            ),
            P::Overlap { .. } => (
                "cidr.overlap",
                "choose a secondary CIDR that overlaps none of the VPC's blocks",
            ),
            P::RouteConflict { .. } => (
                "cidr.route-conflict",
                "choose a smaller block, or one that contains no route destination",
            ),
            P::Quota { .. } => (
                "cidr.quota",
                "raise the 'IPv4 CIDR blocks per VPC' quota (then set network.vpc_cidr_quota) or disassociate an unused block",
            ),
        };
        f.push(Finding::error(id, p.to_string(), fix));
    }
    if d.vpc.has_ipv6 {
        f.push(Finding::note(
            "cidr.vpc-has-ipv6",
            format!("{} also has IPv6 blocks; they are left as they are", d.vpc.id),
            "nothing to do",
        ));
    }
}

fn cluster(d: &Discovery, f: &mut Vec<Finding>) {
    if d.cluster.ip_family != "ipv4" {
        f.push(Finding::error(
            "cluster.ipv6",
            format!(
                "{} is an {} cluster; custom networking is for IPv4 clusters",
                d.cluster.name, d.cluster.ip_family
            ),
            "IPv6 clusters do not run out of pod addresses; there is nothing to migrate",
        ));
    }
    if d.cluster.auto_mode {
        f.push(Finding::error(
            "cluster.auto-mode",
            format!(
                "{} uses EKS Auto Mode, which manages pod networking itself (no vpc-cni addon, no ENIConfigs)",
                d.cluster.name
            ),
            "use the NodeClass podSubnetSelectorTerms of Auto Mode instead of podnet",
        ));
    }
    if d.cluster.status != "ACTIVE" {
        f.push(Finding::error(
            "cluster.not-active",
            format!("{} is {}", d.cluster.name, d.cluster.status),
            "wait until the cluster is ACTIVE",
        ));
    }
}

fn cni(spec: &Spec, d: &Discovery, f: &mut Vec<Finding>) {
    let version = d.cni_version();
    match version {
        None => f.push(Finding::error(
            "cni.unknown",
            "neither a vpc-cni addon nor an aws-node DaemonSet with a versioned image was found",
            "install the Amazon VPC CNI (the vpc-cni addon) first",
        )),
        Some(v) => {
            if !v.supports_custom_networking() {
                f.push(Finding::error(
                    "cni.version",
                    format!("VPC CNI {v} predates ENI_CONFIG_LABEL_DEF (1.5)"),
                    "update the vpc-cni addon to a current version first",
                ));
            }
            if spec.vpc_cni.prefix_delegation && !v.supports_prefix_delegation() {
                f.push(Finding::error(
                    "cni.prefix-delegation",
                    format!("the plan asks for prefix delegation, which needs VPC CNI 1.9 or later (this is {v})"),
                    "update the vpc-cni addon, or set vpc_cni.prefix_delegation = false",
                ));
            }
            if v.missing_eniconfig_blocks_node() {
                f.push(Finding::note(
                    "cni.eniconfig-required",
                    format!("with VPC CNI {v} (≥ 1.13), a node whose ENIConfig is missing never becomes Ready"),
                    "podnet creates every AZ's ENIConfig before it enables custom networking; add ENIConfigs before adding AZs later",
                ));
            }
            if v.has_subnet_discovery() && d.cni_env().get(SUBNET_DISCOVERY_ENV).is_none_or(|x| x != "false") {
                f.push(Finding::note(
                    "cni.subnet-discovery",
                    format!("VPC CNI {v} discovers subnets tagged kubernetes.io/role/cni=1: existing nodes may place secondary ENIs in the new pod subnets (with the node security groups) as soon as they exist"),
                    "podnet patches the security groups before it creates the subnets, so those pods are admitted too",
                ));
            }
        }
    }
    if d.addon.is_none() && d.kube.aws_node.is_some() {
        f.push(Finding::note(
            "cni.self-managed",
            "the VPC CNI is self-managed (no vpc-cni EKS addon)",
            "podnet will set the aws-node DaemonSet's env directly",
        ));
    }
    let env = d.cni_env();
    let label = env.get(ENI_CONFIG_LABEL_ENV);
    let eniconfigs = d.kube.eniconfigs.as_deref().unwrap_or_default();
    match d.custom_networking() {
        CustomNetworking::On => {
            let half = label.is_none_or(|l| l != &spec.vpc_cni.eni_config_label);
            f.push(Finding::new(
                if half { "cni.custom-networking-half-on" } else { "cni.custom-networking-on" },
                if half { Severity::Warning } else { Severity::Note },
                if half {
                    format!(
                        "{CUSTOM_NETWORK_ENV} is already true but {ENI_CONFIG_LABEL_ENV} is {} (the plan wants {})",
                        label.map(String::as_str).unwrap_or("unset"),
                        spec.vpc_cni.eni_config_label
                    )
                } else {
                    "custom networking is already enabled".to_string()
                },
                "podnet checks and completes what is missing; nodes that already run in custom networking are still replaced only if they lack the eniConfig label",
            ));
        }
        CustomNetworking::Off if !eniconfigs.is_empty() => {
            let names: Vec<&str> = eniconfigs.iter().map(|e| e.name.as_str()).collect();
            f.push(Finding::warning(
                "cni.custom-networking-half-on",
                format!("ENIConfigs exist ({}) but custom networking is off", names.join(", ")),
                "podnet compares them with the plan; a same-named ENIConfig that points elsewhere stops the apply unless eniconfig.adopt_existing = true",
            ));
        }
        CustomNetworking::Off => {}
    }
}

fn zones(d: &Discovery, inputs: &MigrationInputs, f: &mut Vec<Finding>) {
    let planned: BTreeSet<&str> = inputs
        .pod_subnets
        .iter()
        .map(|s| s.availability_zone.as_str())
        .collect();
    for z in d.node_zones() {
        if !planned.contains(z.as_str()) {
            f.push(Finding::error(
                "subnets.az-without-pod-subnet",
                format!("nodes run in {z} but the plan has no pod subnet there; with custom networking on, a node there would have no ENIConfig"),
                format!("add a [[pod_subnets.subnet]] for {z}, or use sizing = \"auto\""),
            ));
        }
    }
}

fn karpenter(spec: &Spec, d: &Discovery, inputs: &MigrationInputs, f: &mut Vec<Finding>) {
    let Some(k) = &d.kube.karpenter else {
        if spec.karpenter.configure {
            f.push(Finding::note(
                "karpenter.absent",
                "no Karpenter found in the cluster",
                "nothing to configure",
            ));
        }
        return;
    };
    for nc in &k.nodeclasses {
        for s in &inputs.pod_subnets {
            // A new subnet's id is unknown; an existing one's is checked too.
            let id = d
                .subnets
                .iter()
                .find(|x| x.cidr == s.cidr)
                .map(|x| x.id.as_str())
                .unwrap_or("");
            if selector_terms_select(&nc.subnet_selector_terms, id, &s.tags) {
                f.push(Finding::error(
                    "karpenter.nodeclass-selects-pod-subnets",
                    format!(
                        "EC2NodeClass {} selects subnets by {} — that would match the pod subnet {} ({}), and Karpenter would launch nodes there",
                        nc.name,
                        serde_json::to_string(&nc.subnet_selector_terms).unwrap_or_default(),
                        s.name,
                        s.cidr
                    ),
                    "narrow the EC2NodeClass subnetSelectorTerms (e.g. a tag only node subnets carry), or change pod_subnets.tags",
                ));
            }
        }
    }
    if let Some(c) = &k.controller {
        if c.replicas < 2 && !c.has_pdb {
            f.push(Finding::warning(
                "karpenter.single-replica",
                format!("the Karpenter controller {}/{} runs {} replica without a PodDisruptionBudget", c.namespace, c.deployment, c.replicas),
                "while its node group is rolled, Karpenter is down for a moment; run 2 replicas with a PDB to avoid that",
            ));
        }
    } else if spec.karpenter.configure {
        f.push(Finding::warning(
            "karpenter.controller-not-found",
            "Karpenter CRDs exist but its controller Deployment was not found",
            "set karpenter.namespace and karpenter.deployment in the plan file",
        ));
    }
}

fn eniconfig_security_groups(spec: &Spec, d: &Discovery, f: &mut Vec<Finding>) {
    let groups = eniconfig_group_ids(spec, d, f);
    // Pod ENIs must admit the control plane (webhooks, metrics), the nodes
    // (kubelet probes) and each other.
    let node_sgs = node_security_groups(d);
    let node_cidrs: Vec<ipnet::Ipv4Net> = d.node_subnets(spec).values().flatten().map(|s| s.cidr).collect();
    for gid in &groups {
        let Some(g) = d.security_group(gid) else { continue };
        let from_group = |src: &str| {
            g.ingress
                .iter()
                .any(|r| r.protocol == "-1" && matches!(&r.source, RuleSource::Group(x) if x == src))
        };
        let all_from_self = from_group(&g.id);
        let cluster_sg = d.cluster.cluster_security_group_id.clone().unwrap_or_default();
        let from_cluster = cluster_sg == g.id && all_from_self || from_group(&cluster_sg);
        let from_nodes = node_sgs.iter().any(|n| from_group(n))
            || g.ingress.iter().any(|r| {
                r.protocol == "-1"
                    && matches!(&r.source, RuleSource::Cidr(c) if node_cidrs.iter().any(|n| c.contains(n)))
            });
        let mut missing = Vec::new();
        if !all_from_self {
            missing.push("all traffic from itself (pod to pod)");
        }
        if !from_cluster {
            missing.push("all traffic from the cluster security group (control plane to webhooks and metrics)");
        }
        if !from_nodes && !all_from_self {
            missing.push("all traffic from the node security groups or node subnets (kubelet probes)");
        }
        if !missing.is_empty() {
            f.push(Finding::warning(
                "eniconfig.sg-admits",
                format!(
                    "pod ENIs get {} ({}), which does not admit {}",
                    g.id,
                    g.name,
                    missing.join("; ")
                ),
                format!(
                    "add those ingress rules to {}, or list other groups in eniconfig.security_groups",
                    g.id
                ),
            ));
        }
    }
}

/// The ids of the groups pod ENIs get: the plan's, or the cluster security
/// group when it lists none.
fn eniconfig_group_ids(spec: &Spec, d: &Discovery, f: &mut Vec<Finding>) -> Vec<String> {
    let mut groups = Vec::new();
    if spec.eni_security_groups.is_empty() {
        match &d.cluster.cluster_security_group_id {
            Some(id) => groups.push(id.clone()),
            None => f.push(Finding::error(
                "eniconfig.no-cluster-sg",
                "the cluster reports no cluster security group to give pod ENIs",
                "list eniconfig.security_groups in the plan file",
            )),
        }
    }
    for r in &spec.eni_security_groups {
        let found: Vec<String> = match r {
            SecurityGroupRef::Id(id) => d
                .security_groups
                .iter()
                .filter(|g| &g.id == id)
                .map(|g| g.id.clone())
                .collect(),
            SecurityGroupRef::Name(n) => d
                .security_groups
                .iter()
                .filter(|g| &g.name == n)
                .map(|g| g.id.clone())
                .collect(),
            SecurityGroupRef::Tags(t) => d
                .security_groups
                .iter()
                .filter(|g| t.iter().all(|(k, v)| g.tags.get(k) == Some(v)))
                .map(|g| g.id.clone())
                .collect(),
        };
        if found.is_empty() {
            f.push(Finding::error(
                "eniconfig.sg-missing",
                format!("eniconfig.security_groups names {r}, which is not in {}", d.vpc.id),
                "fix the name or id in the plan file",
            ));
        }
        groups.extend(found);
    }
    groups
}

/// The node security groups. Managed nodes get the cluster security group
/// (plus the cluster's additional groups); Karpenter nodes what their
/// EC2NodeClass selects.
fn node_security_groups(d: &Discovery) -> BTreeSet<String> {
    d.cluster
        .cluster_security_group_id
        .iter()
        .cloned()
        .chain(d.cluster.security_group_ids.iter().cloned())
        .chain(d.kube.karpenter.iter().flat_map(|k| {
            k.nodeclasses.iter().flat_map(|nc| {
                let terms = nc.security_group_selector_terms.clone();
                d.security_groups
                    .iter()
                    .filter(move |g| selector_terms_select(&terms, &g.id, &g.tags))
                    .map(|g| g.id.clone())
            })
        }))
        .collect()
}

fn pdbs(d: &Discovery, f: &mut Vec<Finding>) {
    for b in &d.kube.pdbs {
        if b.disruptions_allowed > 0 {
            continue;
        }
        let covered: Vec<String> = d
            .kube
            .pods
            .iter()
            .filter(|p| p.namespace == b.namespace && !p.host_network && !p.is_daemonset() && p.node.is_some())
            .filter(|p| selects(b.selector.as_ref(), &p.labels))
            .map(|p| p.key())
            .collect();
        if covered.is_empty() {
            continue;
        }
        f.push(Finding::warning(
            "pdb.zero-disruptions",
            format!(
                "PodDisruptionBudget {}/{} allows 0 disruptions over {} pod(s) that must move ({}{}); node drains will wait on it",
                b.namespace,
                b.name,
                covered.len(),
                covered.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
                if covered.len() > 3 { ", …" } else { "" }
            ),
            "scale the workload up or relax the PDB before apply; podnet never bypasses a PDB unless replacement.pdb_bypass says so",
        ));
    }
}
