//! Which self-managed node groups the plan replaces, and how. A
//! self-managed group is an Auto Scaling group on a launch template of its
//! own whose user data joins the cluster; EKS computes nothing for it, so
//! its nodes keep the max pods their user data (or the AMI's default)
//! gives. podnet writes a new launch template version whose user data sets
//! the custom-networking max pods (as for a custom-AMI managed group),
//! points the group at it, and terminates the old instances a batch at a
//! time without decrementing the desired capacity, so the group launches
//! each replacement from the new version.
//!
//! Refused before any change, each with its reason: Auto Scaling that
//! cannot be read, nodes whose instance is in no group (nothing would
//! replace them), groups on a launch configuration or a mixed instances
//! policy (podnet edits a group's own launch template only), and user data
//! podnet cannot interpret (the lines it could not read are shown).

use std::collections::BTreeMap;

use super::Finding;
use super::node_groups::{UserDataSubject, plan_user_data};
use crate::discovery::{Discovery, instance_id};
use crate::k8s::snapshot::NodeSummary;
use crate::spec::Spec;
use crate::steps::replace_nodes::SelfManagedRoll;

const LEAVE: &str = "or set replacement.self_managed = \"leave\" and replace them yourself after the apply";

/// The self-managed Linux nodes on the VPC CNI: the ones a plan replaces.
pub fn nodes(d: &Discovery) -> impl Iterator<Item = &NodeSummary> {
    d.kube
        .nodes
        .iter()
        .filter(|n| super::node_kinds::is_self_managed(n) && n.os != "windows")
}

pub(super) fn rolls(spec: &Spec, d: &Discovery, f: &mut Vec<Finding>) -> Vec<SelfManagedRoll> {
    if !spec.replacement.self_managed.is_replace() {
        return Vec::new();
    }
    let all: Vec<&NodeSummary> = nodes(d).collect();
    if all.is_empty() {
        return Vec::new();
    }
    let sm = &d.self_managed;
    if let Some(e) = &sm.error {
        f.push(Finding::error(
            "self-managed.autoscaling",
            format!(
                "podnet could not read the Auto Scaling groups of the self-managed nodes ({}): {e}",
                names(&all)
            ),
            format!("grant autoscaling:DescribeAutoScalingInstances and autoscaling:DescribeAutoScalingGroups (`podnet iam-policy --for plan`), {LEAVE}"),
        ));
        return Vec::new();
    }
    let mut by_group: BTreeMap<&str, Vec<&NodeSummary>> = BTreeMap::new();
    let mut orphans = Vec::new();
    let mut unknown = Vec::new();
    for n in &all {
        match sm.node_groups.get(&n.name) {
            Some(g) => by_group.entry(g.as_str()).or_default().push(n),
            None if n.provider_id.as_deref().and_then(instance_id).is_none() => unknown.push(*n),
            None => orphans.push(*n),
        }
    }
    if !unknown.is_empty() {
        f.push(Finding::error(
            "self-managed.no-instance",
            format!(
                "self-managed nodes {} name no EC2 instance in spec.providerID (aws:///<zone>/<instance-id>), so podnet cannot find their Auto Scaling group",
                names(&unknown)
            ),
            format!("check the kubelet's --cloud-provider / the AWS cloud controller on these nodes, {LEAVE}"),
        ));
    }
    if !orphans.is_empty() {
        f.push(Finding::error(
            "self-managed.no-group",
            format!(
                "self-managed nodes {} run on instances in no Auto Scaling group: podnet replaces a self-managed node by terminating its instance in its group, which launches the replacement, and nothing would replace these",
                names(&orphans)
            ),
            format!("replace them with nodes of a managed node group, NodePool or Auto Scaling group first, {LEAVE}"),
        ));
    }
    let mut out = Vec::new();
    for (group, members) in by_group {
        if let Some(r) = roll(spec, d, group, &members, f) {
            out.push(r);
        }
    }
    out
}

fn names(nodes: &[&NodeSummary]) -> String {
    nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
}

fn roll(
    spec: &Spec,
    d: &Discovery,
    group: &str,
    members: &[&NodeSummary],
    f: &mut Vec<Finding>,
) -> Option<SelfManagedRoll> {
    let Some(g) = d.self_managed.group(group) else {
        f.push(Finding::error(
            "self-managed.autoscaling",
            format!(
                "Auto Scaling group {group} of nodes {} was not described",
                names(members)
            ),
            format!(
                "check that the group exists (`aws autoscaling describe-auto-scaling-groups`), then plan again, {LEAVE}"
            ),
        ));
        return None;
    };
    let Some(lt) = g.launch_template.clone() else {
        let (uses, fix) = match (&g.launch_configuration, g.mixed_instances_policy) {
            (Some(lc), _) => (
                format!("the launch configuration {lc}"),
                "move the group to a launch template (AWS recommends them over launch configurations)",
            ),
            (None, true) => (
                "a mixed instances policy".to_string(),
                "podnet does not edit a mixed instances policy's launch template specification: give its template a version whose user data sets the custom-networking max pods (`podnet max-pods`) and point the policy at it, then replace the instances",
            ),
            (None, false) => (
                "no launch template".to_string(),
                "give the group a launch template of its own",
            ),
        };
        f.push(Finding::error(
            "self-managed.launch-template",
            format!(
                "self-managed group {group} ({}) uses {uses}: podnet sets max pods in a new version of a group's own launch template only",
                names(members)
            ),
            format!("{fix}, {LEAVE}"),
        ));
        return None;
    };
    let mut types: Vec<String> = members.iter().filter_map(|n| n.instance_type.clone()).collect();
    types.sort();
    types.dedup();
    let lt_type = d
        .self_managed
        .user_data
        .get(group)
        .and_then(|u| u.instance_type.clone());
    // The template's type is what new instances get; the nodes' types are
    // what they run now (overrides aside, the same).
    if let Some(t) = lt_type {
        types = vec![t];
    }
    let subject = UserDataSubject {
        who: format!("self-managed group {group} ({})", names(members)),
        id: "self-managed.user-data",
        fix: "give the launch template user data podnet reads (an AL2023 nodeadm NodeConfig, an AL2 /etc/eks/bootstrap.sh call, or Bottlerocket [settings.kubernetes]), or set replacement.self_managed = \"leave\" and set its max pods yourself",
        family: None,
        instance_types: types,
    };
    let user_data = plan_user_data(spec, d, &subject, d.self_managed.user_data.get(group), f)?;
    let mut node_names: Vec<String> = members.iter().map(|n| n.name.clone()).collect();
    node_names.sort();
    let batch = spec.replacement.batch_size.max(1) as usize;
    Some(SelfManagedRoll {
        group: group.to_string(),
        launch_template: lt,
        user_data: Some(user_data),
        batches: node_names.chunks(batch).map(<[String]>::to_vec).collect(),
    })
}
