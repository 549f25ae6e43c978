//! Which managed node groups the plan rolls, and how each gets max pods
//! for custom networking. EKS computes max pods for a managed node group's
//! nodes from the VPC CNI configuration — except on a custom AMI, where it
//! leaves the user data as written (EKS user guide, "Customizing managed
//! nodes with launch templates": when an AMI is specified, "Amazon EKS
//! doesn't merge any user data"). There podnet writes max pods into the new
//! launch template version's user data, in the form the AMI family reads,
//! at the value the group's smallest instance type holds under custom
//! networking. User data podnet cannot interpret stops the plan.

use base64::Engine as _;

use super::Finding;
use super::capacity::cni_after;
use crate::aws::eks::NodegroupInfo;
use crate::capacity::max_pods;
use crate::discovery::{Discovery, LaunchTemplateUserData};
use crate::spec::Spec;
use crate::steps::replace_nodes::{NodeGroupRoll, UserDataPlan};
use crate::userdata::{self, AmiFamily};

pub(super) fn rolls(spec: &Spec, d: &Discovery, f: &mut Vec<Finding>) -> Vec<NodeGroupRoll> {
    d.nodegroups
        .iter()
        .filter(|g| spec.replacement.node_groups.selects(&g.name))
        // Custom networking cannot serve Windows nodes: never rolled
        // (node_kinds refuses them unless the plan leaves them).
        .filter(|g| {
            !g.is_windows()
                && !d
                    .kube
                    .nodes
                    .iter()
                    .any(|n| n.nodegroup.as_deref() == Some(g.name.as_str()) && n.os == "windows")
        })
        .map(|g| {
            if g.launch_template.is_none() {
                without_launch_template(g, f);
            }
            NodeGroupRoll {
                name: g.name.clone(),
                launch_template: g.launch_template.clone(),
                user_data: if g.uses_custom_ami() {
                    user_data_plan(spec, d, g, f)
                } else {
                    None
                },
            }
        })
        .collect()
}

/// A group on the launch template EKS made for it: EKS writes max pods into
/// the user data of the nodes it launches, so only new nodes get the
/// custom-networking value; the only roll EKS offers such a group is an
/// update to the latest AMI release of its Kubernetes version (API
/// Reference, UpdateNodegroupVersion: "If you update without a launch
/// template, then you can update to the latest available AMI version"),
/// and it cannot be moved to a launch template of its own ("existing node
/// groups that don't use a custom launch template can't be updated
/// directly", EKS user guide, launch templates).
fn without_launch_template(g: &NodegroupInfo, f: &mut Vec<Finding>) {
    f.push(Finding::note(
        "nodegroups.no-launch-template",
        format!(
            "node group {} runs on the launch template EKS made for it (AMI release {}): podnet rolls it with UpdateNodegroupVersion to the latest AMI release of its Kubernetes version, and the nodes EKS launches get the custom-networking max pods",
            g.name,
            g.release_version.as_deref().unwrap_or("unknown")
        ),
        "if EKS has no newer release and does not replace its nodes, verify names the nodes left; a replacement node group (with a launch template of your own) is then the way to new nodes",
    ));
}

/// Whose user data a plan edits, as findings name it.
pub(super) struct UserDataSubject {
    /// "node group ng runs a custom AMI", "self-managed group asg".
    pub who: String,
    pub id: &'static str,
    pub fix: &'static str,
    /// The family its AMI type names, if it names one.
    pub family: Option<AmiFamily>,
    /// The instance types it launches (empty: the template's).
    pub instance_types: Vec<String>,
}

fn refuse(f: &mut Vec<Finding>, s: &UserDataSubject, reason: String, lines: &[String]) {
    let shown = if lines.is_empty() {
        String::new()
    } else {
        format!(":\n    {}", lines.join("\n    "))
    };
    f.push(Finding::error(
        s.id,
        format!(
            "{}, so podnet must set its max pods in the launch template's user data, but {reason}{shown}",
            s.who
        ),
        s.fix,
    ));
}

fn user_data_plan(spec: &Spec, d: &Discovery, g: &NodegroupInfo, f: &mut Vec<Finding>) -> Option<UserDataPlan> {
    let subject = UserDataSubject {
        who: format!("node group {} runs a custom AMI", g.name),
        id: "nodegroups.user-data",
        fix: "give the launch template user data podnet reads (an AL2023 nodeadm NodeConfig, an AL2 /etc/eks/bootstrap.sh call, or Bottlerocket [settings.kubernetes]), or leave the group out with replacement.node_groups and set its max pods yourself",
        family: g.ami_type.as_deref().and_then(AmiFamily::from_ami_type),
        instance_types: g.instance_types.clone(),
    };
    plan_user_data(spec, d, &subject, d.launch_template_user_data.get(&g.name), f)
}

/// The max pods edit of a launch template version's user data: the value
/// the subject's smallest instance type holds under custom networking, in
/// the form its AMI family reads. `None` (and an error finding naming the
/// lines podnet could not interpret) when it cannot be planned.
pub(super) fn plan_user_data(
    spec: &Spec,
    d: &Discovery,
    s: &UserDataSubject,
    lt: Option<&LaunchTemplateUserData>,
    f: &mut Vec<Finding>,
) -> Option<UserDataPlan> {
    let Some(lt) = lt else {
        refuse(f, s, "its launch template could not be read".into(), &[]);
        return None;
    };
    if let Some(e) = &lt.error {
        refuse(f, s, format!("its launch template could not be read: {e}"), &[]);
        return None;
    }
    let text = lt
        .base64
        .as_deref()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let Some(text) = text else {
        refuse(
            f,
            s,
            format!(
                "version {} has no user data podnet can decode (none, or gzip)",
                lt.version
            ),
            &[],
        );
        return None;
    };
    let lines: Vec<String> = text.lines().take(20).map(str::to_string).collect();
    let Some(family) = s.family.or_else(|| AmiFamily::detect(&text)) else {
        refuse(
            f,
            s,
            format!(
                "podnet cannot tell the AMI family from version {}'s user data",
                lt.version
            ),
            &lines,
        );
        return None;
    };
    let after = cni_after(spec, d);
    // A template that sets InstanceType leaves the group's list empty.
    let types: Vec<String> = if s.instance_types.is_empty() {
        lt.instance_type.iter().cloned().collect()
    } else {
        s.instance_types.clone()
    };
    let fits: Vec<u32> = types
        .iter()
        .filter_map(|t| d.instance_types.get(t))
        .map(|i| max_pods(i, &after, false).max_pods)
        .collect();
    let Some(n) = fits
        .iter()
        .min()
        .copied()
        .filter(|_| !types.is_empty() && fits.len() == types.len())
    else {
        refuse(
            f,
            s,
            format!("its instance types ({}) are not all known", types.join(", ")),
            &[],
        );
        return None;
    };
    match userdata::set_max_pods(&text, family, n) {
        Ok(e) => Some(UserDataPlan {
            family,
            source_version: lt.version.clone(),
            max_pods: n,
            before: e.before,
        }),
        Err(e) => {
            refuse(
                f,
                s,
                format!("version {}'s {family} user data: {}", lt.version, e.reason),
                &e.lines,
            );
            None
        }
    }
}
