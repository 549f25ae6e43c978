//! Preflight checks on the kinds of node a cluster has, for the nodes custom
//! networking cannot serve or serves differently: Windows nodes (refused
//! unless the plan leaves them), Fargate nodes (unaffected, listed), nodes
//! whose ENIConfig an override chooses, and security groups for pods, whose
//! branch ENIs do not take the ENIConfig's security groups.

use std::collections::BTreeMap;

use crate::discovery::Discovery;
use crate::k8s::snapshot::{COMPUTE_TYPE_LABEL, NodeSummary};
use crate::spec::Spec;
use crate::spec::model::NotMigrated;
use crate::steps::MigrationInputs;

use super::Finding;

/// The label eksctl puts on the nodes of its (managed and self-managed) groups.
const EKSCTL_GROUP_LABEL: &str = "alpha.eksctl.io/nodegroup-name";
/// Turns on security groups for pods (trunk and branch ENIs).
pub const POD_ENI_ENV: &str = "ENABLE_POD_ENI";

pub fn check(spec: &Spec, d: &Discovery, inputs: &MigrationInputs, f: &mut Vec<Finding>) {
    windows(spec, d, f);
    self_managed(spec, d, f);
    fargate(d, f);
    overrides(d, inputs, f);
    pod_security_groups(d, f);
}

/// The group a node belongs to, as a user would name it.
fn group_of(n: &NodeSummary) -> String {
    if let Some(g) = &n.nodegroup {
        return format!("node group {g}");
    }
    if let Some(p) = &n.nodepool {
        return format!("NodePool {p}");
    }
    match n.labels.get(EKSCTL_GROUP_LABEL) {
        Some(g) => format!("self-managed group {g}"),
        None => "self-managed".to_string(),
    }
}

/// What a kind of node the plan does not migrate gets: an error naming
/// each node and its group (with `refuse_fix`), or a warning once the plan
/// says `leave`.
struct NotMoved<'a> {
    id: &'a str,
    what: &'a str,
    why: &'a str,
    refuse_fix: &'a str,
    leave_fix: &'a str,
}

fn not_moved<'n>(
    setting: NotMigrated,
    nodes: impl Iterator<Item = &'n NodeSummary>,
    k: &NotMoved<'_>,
    f: &mut Vec<Finding>,
) {
    let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for n in nodes {
        groups.entry(group_of(n)).or_default().push(&n.name);
    }
    if groups.is_empty() {
        return;
    }
    let list: Vec<String> = groups
        .iter()
        .map(|(g, nodes)| format!("{g} ({})", nodes.join(", ")))
        .collect();
    let reason = format!("{}: {} — {}", k.what, list.join("; "), k.why);
    f.push(match setting {
        NotMigrated::Refuse => Finding::error(k.id, reason, k.refuse_fix),
        NotMigrated::Leave => Finding::warning(k.id, reason, k.leave_fix),
    });
}

fn windows(spec: &Spec, d: &Discovery, f: &mut Vec<Finding>) {
    let kind = NotMoved {
        id: "nodes.windows",
        what: "Windows nodes",
        why: "custom networking cannot be used with Windows nodes (EKS user guide, Windows support), so their pods keep node-subnet addresses and the node subnets stay as full for them",
        refuse_fix: "move the Windows workloads to a group in subnets with room (or another cluster), or, to migrate the Linux nodes and leave the Windows ones on the node subnets, set replacement.windows = \"leave\" in the plan file",
        leave_fix: "replacement.windows = \"leave\": podnet neither changes nor replaces them; keep enough free addresses in the node subnets for their pods",
    };
    let nodes = d.kube.nodes.iter().filter(|n| n.os == "windows");
    not_moved(spec.replacement.windows, nodes, &kind, f);
}

/// Linux nodes on the VPC CNI in no managed node group and no NodePool:
/// podnet changes their CNI mode only for nodes it replaces, so these stay
/// on node-subnet addresses (and a custom-networking aws-node without an
/// ENIConfig label they match) until someone replaces them.
fn self_managed(spec: &Spec, d: &Discovery, f: &mut Vec<Finding>) {
    // Replaced (the default): what podnet cannot replace is named by the
    // planner's self_managed module.
    let Some(setting) = spec.replacement.self_managed.not_migrated() else {
        return;
    };
    let kind = NotMoved {
        id: "nodes.self-managed",
        what: "self-managed nodes",
        why: "the plan file says not to replace them, so their pods keep node-subnet addresses and the kubelet keeps the max pods its user data sets, too many once aws-node restarts with custom networking",
        refuse_fix: "set replacement.self_managed = \"replace\" (the default) to have podnet replace them through their Auto Scaling groups, or \"leave\" and replace them yourself after the apply (a launch template version whose user data sets the custom-networking max pods — podnet max-pods — then terminate them a batch at a time)",
        leave_fix: "replacement.self_managed = \"leave\": podnet neither replaces nor verifies them; replace them yourself after the apply",
    };
    let nodes = d.kube.nodes.iter().filter(|n| is_self_managed(n));
    not_moved(setting, nodes, &kind, f);
}

/// In no managed node group and no NodePool, on the VPC CNI.
pub fn is_self_managed(n: &NodeSummary) -> bool {
    n.on_vpc_cni() && n.nodegroup.is_none() && n.nodepool.is_none()
}

fn fargate(d: &Discovery, f: &mut Vec<Finding>) {
    let fargate: Vec<&str> = d
        .kube
        .nodes
        .iter()
        .filter(|n| n.labels.get(COMPUTE_TYPE_LABEL).map(String::as_str) == Some("fargate"))
        .map(|n| n.name.as_str())
        .collect();
    if !fargate.is_empty() {
        f.push(Finding::note(
            "nodes.fargate",
            format!(
                "{} Fargate node(s) ({}): unaffected — Fargate pods take addresses from their Fargate profile's subnets, not through the VPC CNI",
                fargate.len(),
                fargate.join(", ")
            ),
            "nothing to do; to move Fargate pods to the new block, give their profile pod subnets (a new Fargate profile)",
        ));
    }
}

/// Nodes whose ENIConfig is chosen by the `k8s.amazonaws.com/eniConfig`
/// annotation or the `vpc.amazonaws.com/externalEniConfig` label (ipamd reads
/// them before the zone label): fine when the ENIConfig they name is planned
/// or already exists, a node stuck on IP assignment when it is neither.
fn overrides(d: &Discovery, inputs: &MigrationInputs, f: &mut Vec<Finding>) {
    let planned: Vec<&str> = inputs
        .pod_subnets
        .iter()
        .map(|s| s.availability_zone.as_str())
        .collect();
    let existing: Vec<&str> = d.kube.eniconfigs.iter().flatten().map(|e| e.name.as_str()).collect();
    let mut covered = Vec::new();
    let mut missing = Vec::new();
    for n in &d.kube.nodes {
        let (how, name) = match (&n.external_eniconfig_label, &n.eniconfig_annotation) {
            (Some(v), _) => ("label vpc.amazonaws.com/externalEniConfig", v),
            (None, Some(v)) => ("annotation k8s.amazonaws.com/eniConfig", v),
            (None, None) => continue,
        };
        let line = format!("{} ({how}={name})", n.name);
        if planned.contains(&name.as_str()) || existing.contains(&name.as_str()) {
            covered.push(line);
        } else {
            missing.push(line);
        }
    }
    if !missing.is_empty() {
        f.push(Finding::error(
            "nodes.eniconfig-override",
            format!(
                "nodes choose an ENIConfig that neither exists nor is planned: {} — under custom networking their pods would get no address",
                missing.join(", ")
            ),
            "create those ENIConfigs first, or remove the override from the nodes so they use their zone's ENIConfig",
        ));
    }
    if !covered.is_empty() {
        f.push(Finding::warning(
            "nodes.eniconfig-override",
            format!(
                "nodes choose their ENIConfig by an override, not the zone label: {}",
                covered.join(", ")
            ),
            "those nodes use the named ENIConfig's subnet and security groups, not their zone's pod subnet",
        ));
    }
}

/// Security groups for pods: branch ENIs go to the node's ENIConfig subnet
/// but take the SecurityGroupPolicy's groups, never the ENIConfig's (EKS user
/// guide, "Security groups for Pods": with custom networking, "security
/// groups defined in the SecurityGroupPolicy are used instead of the
/// security groups specified in the ENIConfig").
fn pod_security_groups(d: &Discovery, f: &mut Vec<Finding>) {
    let on = d.kube.aws_node.as_ref().is_some_and(|a| a.env_is(POD_ENI_ENV, "true"));
    if on {
        f.push(Finding::warning(
            "nodes.pod-security-groups",
            "security groups for pods is on (ENABLE_POD_ENI=true): pods a SecurityGroupPolicy selects get branch ENIs in the pod subnets with the policy's security groups, not the ENIConfig's",
            "make sure the groups named in each SecurityGroupPolicy allow what those pods need from the new block (podnet's security_group_patch rules cover the ENIConfig's groups only)",
        ));
    }
}
