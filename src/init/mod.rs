//! `podnet init`'s decisions: from one read-only [`Discovery`], the plan a
//! careful engineer would write for this cluster — a secondary CIDR AWS will
//! associate, pod subnets sized per AZ that has node subnets, a
//! `[[security_group_patch]]` for every group that admits the node subnets
//! today, and Karpenter and node groups as found. Pure, so each rule is
//! unit-tested on a hand-built discovery; [`render`] writes it as a commented
//! plan file.

mod render;

use ipnet::Ipv4Net;

use crate::discovery::{CUSTOM_NETWORK_ENV, Discovery};
use crate::planner::{self, Finding, SgSuggestion};
use crate::spec::{self, Overrides, Spec};
use crate::steps::associate_cidr;

pub use render::render;

/// Where podnet looks for a free secondary block: RFC 6598 shared space,
/// which AWS associates next to any RFC 1918 primary and which is never
/// routed between VPCs. Checked at compile time.
const SHARED_SPACE: Ipv4Net = Ipv4Net::new_assert(std::net::Ipv4Addr::new(100, 64, 0, 0), 10);

/// `spec::model::DEFAULT_SECONDARY_CIDR`, as a network.
const DEFAULT_BLOCK: Ipv4Net = Ipv4Net::new_assert(std::net::Ipv4Addr::new(100, 64, 0, 0), 16);

/// The chosen secondary CIDR and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrChoice {
    pub block: Ipv4Net,
    /// One line for the file: why this block.
    pub why: String,
}

/// One pod subnet as written (explicit sizing, so the file says exactly what
/// `apply` creates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetDraft {
    pub availability_zone: String,
    pub cidr: Ipv4Net,
    pub name: String,
    /// The node subnets of the AZ, `subnet-… (10.0.1.0/24)`.
    pub node_subnets: Vec<String>,
}

/// One `[[security_group_patch]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchDraft {
    /// `group_name = "…"` when the name is unique in the VPC, else `group_id`.
    pub by_name: bool,
    pub suggestion: SgSuggestion,
    /// The group's own description, for the comment.
    pub group_description: String,
    /// Each admitted block with the node subnets it covers.
    pub admits: Vec<String>,
}

/// Karpenter as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KarpenterDraft {
    pub namespace: String,
    pub deployment: String,
    pub reserved_enis: Option<String>,
    pub nodepools: Vec<String>,
    /// `name` or `name (kubelet.maxPods 20)`.
    pub nodeclasses: Vec<String>,
}

/// Everything the written plan says.
#[derive(Debug, Clone)]
pub struct Draft {
    pub cluster: String,
    pub region: String,
    pub cluster_version: String,
    pub vpc_id: String,
    pub vpc_cidrs: Vec<Ipv4Net>,
    pub cluster_security_group: Option<String>,
    pub cidr: CidrChoice,
    pub subnets: Vec<SubnetDraft>,
    pub patches: Vec<PatchDraft>,
    /// Groups that admit the node subnets and already admit the pod CIDR.
    pub already_admitting: Vec<SgSuggestion>,
    /// Rules a `[[security_group_patch]]` cannot express (a protocol other
    /// than tcp, udp, icmp or all): left to a human, with a comment.
    pub unpatchable: Vec<SgSuggestion>,
    /// `None`: the cluster runs no Karpenter controller podnet could find.
    pub karpenter: Option<KarpenterDraft>,
    pub node_groups: Vec<String>,
    /// `vpc-cni v1.19.2-eksbuild.1`, with whether custom networking is on.
    pub addon: String,
    /// What planning the auto-sized subnets found (an AZ without a route
    /// table, a CIDR too small to split): the file is still written.
    pub sizing_findings: Vec<Finding>,
}

/// A spec for `cluster` in `region` with every default, or the CIDR given.
pub fn base_spec(cluster: &str, region: &str, cidr: Option<Ipv4Net>) -> Result<Spec, Vec<spec::Problem>> {
    let mut text = format!(
        "[cluster]\nname = {}\nregion = {}\n",
        toml_str(cluster),
        toml_str(region)
    );
    if let Some(c) = cidr {
        text.push_str(&format!("[network]\nsecondary_cidr = \"{c}\"\n"));
    }
    spec::parse(&text, &Overrides::default())
}

/// Decides the plan for the discovered cluster.
pub fn draft(cluster: &str, region: &str, d: &Discovery) -> Result<Draft, Vec<spec::Problem>> {
    let cidr = choose_cidr(d);
    let spec = base_spec(cluster, region, Some(cidr.block))?;
    let planned = planner::plan(&spec, d);
    let node_subnets = d.node_subnets(&spec);
    let subnets = planned
        .inputs
        .pod_subnets
        .iter()
        .map(|s| SubnetDraft {
            availability_zone: s.availability_zone.clone(),
            cidr: s.cidr,
            name: s.name.clone(),
            node_subnets: node_subnets
                .get(&s.availability_zone)
                .map(|v| v.iter().map(|n| format!("{} ({})", n.id, n.cidr)).collect())
                .unwrap_or_default(),
        })
        .collect();
    let (already_admitting, open): (Vec<SgSuggestion>, Vec<SgSuggestion>) =
        planned.suggestions.iter().cloned().partition(|s| s.done);
    let (open, unpatchable) = patchable(open);
    let patches = open.into_iter().map(|s| patch_draft(d, &spec, s)).collect();
    let sizing_findings = planned
        .findings
        .iter()
        .filter(|f| f.id.starts_with("subnets."))
        .cloned()
        .collect();
    Ok(Draft {
        cluster: cluster.to_string(),
        region: region.to_string(),
        cluster_version: d.cluster.version.clone(),
        vpc_id: d.vpc.id.clone(),
        vpc_cidrs: d.vpc.live_cidrs(),
        cluster_security_group: d.cluster.cluster_security_group_id.clone(),
        cidr,
        subnets,
        patches,
        already_admitting,
        unpatchable,
        karpenter: karpenter_draft(d),
        node_groups: d.nodegroups.iter().map(|g| g.name.clone()).collect(),
        addon: addon_line(d),
        sizing_findings,
    })
}

/// The suggestions a plan file can patch, each once: protocol numbers EC2
/// may report for tcp, udp and icmp named, ICMP widened to every type (a
/// patch cannot name one), and a rule another rule of the same group
/// already covers left out; the rest apart.
fn patchable(open: Vec<SgSuggestion>) -> (Vec<SgSuggestion>, Vec<SgSuggestion>) {
    let mut keep: Vec<SgSuggestion> = Vec::new();
    let mut other = Vec::new();
    for mut s in open {
        s.protocol = match crate::aws::ec2::protocol_name(&s.protocol) {
            p @ ("tcp" | "udp" | "icmp" | "-1") => p.to_string(),
            _ => {
                other.push(s);
                continue;
            }
        };
        if s.protocol == "icmp" {
            (s.from_port, s.to_port) = (Some(-1), Some(-1));
        }
        keep.push(s);
    }
    let rule = |s: &SgSuggestion| crate::aws::ec2::IngressRule {
        rule_id: None,
        protocol: s.protocol.clone(),
        from_port: s.from_port,
        to_port: s.to_port,
        source: crate::aws::ec2::RuleSource::Cidr(Ipv4Net::default()),
        description: None,
    };
    let mut out: Vec<SgSuggestion> = Vec::new();
    for (i, s) in keep.iter().enumerate() {
        // Covered by another of the group's: by a wider one, or by an equal
        // one that comes first.
        let covered = keep.iter().enumerate().any(|(j, t)| {
            j != i
                && t.group_id == s.group_id
                && rule(t).covers(&s.protocol, s.from_port, s.to_port)
                && (j < i || !rule(s).covers(&t.protocol, t.from_port, t.to_port))
        });
        if !covered {
            out.push(s.clone());
        }
    }
    (out, other)
}

/// 100.64.0.0/16 unless AWS would refuse it for this VPC (taken, a route
/// to it, a primary it may not sit next to); then the next /16 of
/// 100.64.0.0/10 it would accept. The per-VPC quota is left to `plan`: no
/// other block avoids it.
pub fn choose_cidr(d: &Discovery) -> CidrChoice {
    let (shared, default) = (SHARED_SPACE, DEFAULT_BLOCK);
    let problems = |b: Ipv4Net| associate_cidr::problems(&d.vpc, &d.route_tables, b, usize::MAX);
    // A block of shared space already on the VPC (an earlier attempt, or
    // set up by hand) is used rather than spending quota on a second one.
    let live = d.vpc.live_cidrs();
    if let Some(block) = live
        .iter()
        .find(|b| **b == default)
        .or_else(|| live.iter().find(|b| shared.contains(*b)))
    {
        return CidrChoice {
            block: *block,
            why: format!("already associated with {}: podnet adopts it", d.vpc.id),
        };
    }
    let first = problems(default);
    if first.is_empty() {
        return CidrChoice {
            block: default,
            why: format!(
                "RFC 6598 shared space, free in {} and accepted next to its primary CIDR",
                d.vpc.id
            ),
        };
    }
    let reason = first[0].to_string();
    match shared
        .subnets(16)
        .ok()
        .and_then(|mut it| it.find(|b| problems(*b).is_empty()))
    {
        Some(block) => CidrChoice {
            block,
            why: format!("the first free /16 of {shared}, not {default}: {reason}"),
        },
        None => CidrChoice {
            block: default,
            why: format!(
                "no /16 of {shared} is free for {}: {reason}; choose a block by hand",
                d.vpc.id
            ),
        },
    }
}

fn patch_draft(d: &Discovery, spec: &Spec, s: SgSuggestion) -> PatchDraft {
    let by_name = d.security_groups.iter().filter(|g| g.name == s.group_name).count() == 1;
    let group_description = d
        .security_groups
        .iter()
        .find(|g| g.id == s.group_id)
        .map(|g| g.description.clone())
        .unwrap_or_default();
    let node: Vec<(String, String, Ipv4Net)> = d
        .node_subnets(spec)
        .into_iter()
        .flat_map(|(az, v)| v.into_iter().map(move |n| (az.clone(), n.id.clone(), n.cidr)))
        .collect();
    let admits = s
        .admits
        .split(", ")
        .map(|block| {
            let Ok(net) = block.parse::<Ipv4Net>() else {
                return block.to_string();
            };
            if let Some((az, id, _)) = node.iter().find(|(_, _, c)| *c == net) {
                return format!("{block} (the node subnet {id} in {az})");
            }
            let held: Vec<String> = node
                .iter()
                .filter(|(_, _, c)| net.contains(c))
                .map(|(_, id, c)| format!("{id} {c}"))
                .collect();
            format!("{block} (which holds the node subnets {})", held.join(", "))
        })
        .collect();
    PatchDraft {
        by_name,
        suggestion: s,
        group_description,
        admits,
    }
}

fn karpenter_draft(d: &Discovery) -> Option<KarpenterDraft> {
    let k = d.kube.karpenter.as_ref()?;
    let c = k.controller.as_ref()?;
    Some(KarpenterDraft {
        namespace: c.namespace.clone(),
        deployment: c.deployment.clone(),
        reserved_enis: c.reserved_enis.clone(),
        nodepools: k
            .nodepools
            .iter()
            .map(|p| p.name.clone())
            .filter(|p| p != crate::steps::reach_gate::PROBE)
            .collect(),
        nodeclasses: k
            .nodeclasses
            .iter()
            .map(|n| match n.kubelet_max_pods {
                Some(m) => format!("{} (kubelet.maxPods {m})", n.name),
                None => n.name.clone(),
            })
            .collect(),
    })
}

fn addon_line(d: &Discovery) -> String {
    let Some(a) = &d.addon else {
        return "no vpc-cni EKS add-on (self-managed aws-node): podnet's addon step will say what it needs".into();
    };
    let on = d
        .kube
        .aws_node
        .as_ref()
        .and_then(|n| n.env.get(CUSTOM_NETWORK_ENV))
        .is_some_and(|v| v == "true");
    format!(
        "vpc-cni {} ({}), custom networking {}",
        a.version,
        a.status,
        if on { "already on" } else { "off" }
    )
}

/// A TOML basic string.
pub(crate) fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests;
