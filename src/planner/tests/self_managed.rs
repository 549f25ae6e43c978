//! Self-managed node groups: replaced through their Auto Scaling groups
//! with max pods in a new launch template version's user data, or named
//! before any change when podnet cannot (no group, a launch configuration,
//! unreadable user data, Auto Scaling unreadable); `leave` and `refuse`.

use base64::Engine as _;

use super::super::*;
use super::karpenter::spec_with;
use super::seed::*;
use crate::aws::autoscaling::{AsgInfo, AsgInstance};
use crate::aws::eks::LaunchTemplateRef;
use crate::discovery::LaunchTemplateUserData;
use crate::spec::model::SelfManagedPolicy;
use crate::userdata::AmiFamily;

const AL2: &str =
    "#!/bin/bash\nset -o xtrace\n/etc/eks/bootstrap.sh podnet-demo --kubelet-extra-args '--node-labels=a=b'\n";

/// The seed with its first node moved to a self-managed group `legacy-asg`
/// on launch template `lt-9` version `$Latest` (4) with `user_data`.
fn self_managed(user_data: &str) -> Discovery {
    let mut d = seed();
    let n = &mut d.kube.nodes[0];
    n.nodegroup = None;
    n.provider_id = Some("aws:///ap-northeast-2a/i-1".into());
    n.labels
        .insert("alpha.eksctl.io/nodegroup-name".into(), "legacy".into());
    let node = n.name.clone();
    d.self_managed.node_groups.insert(node, "legacy-asg".into());
    d.self_managed.groups.push(AsgInfo {
        name: "legacy-asg".into(),
        launch_template: Some(LaunchTemplateRef {
            id: Some("lt-9".into()),
            name: Some("legacy".into()),
            version: Some("$Latest".into()),
        }),
        launch_configuration: None,
        mixed_instances_policy: false,
        min_size: 1,
        max_size: 2,
        desired_capacity: 1,
        instances: vec![AsgInstance {
            instance_id: "i-1".into(),
            group: "legacy-asg".into(),
            lifecycle: "InService".into(),
            launch_template_version: Some("4".into()),
        }],
    });
    d.self_managed.user_data.insert(
        "legacy-asg".into(),
        LaunchTemplateUserData {
            version: "4".into(),
            base64: Some(base64::engine::general_purpose::STANDARD.encode(user_data)),
            instance_type: Some("t3.medium".into()),
            error: None,
        },
    );
    d
}

#[test]
fn a_self_managed_group_gets_max_pods_in_a_new_version_and_batches() {
    let d = self_managed(AL2);
    let p = plan(&seed_spec(), &d);
    assert!(!p.has_errors(), "{:#?}", p.findings);
    let r = &p.inputs.self_managed[0];
    assert_eq!(r.group, "legacy-asg");
    assert_eq!(r.launch_template.version.as_deref(), Some("$Latest"));
    let u = r.user_data.as_ref().expect("an edit");
    // t3.medium under custom networking: (3 − 1) × (6 − 1) + 2 = 12;
    // version 4 by number, not "$Latest" (which moves).
    assert_eq!((u.family, u.max_pods, u.before), (AmiFamily::Al2, 12, None));
    assert_eq!(u.source_version, "4");
    assert_eq!(r.batches, vec![vec![d.kube.nodes[0].name.clone()]]);
    // Its units: the launch template, then one per batch.
    let ids: Vec<String> = crate::steps::build(&p.inputs)
        .iter()
        .map(|s| s.id().to_string())
        .filter(|id| id.starts_with("roll-self-managed/"))
        .collect();
    assert_eq!(
        ids,
        vec![
            "roll-self-managed/legacy-asg/launch-template",
            "roll-self-managed/legacy-asg/batch-1"
        ]
    );
}

#[test]
fn what_podnet_cannot_replace_is_named_before_any_change() {
    // User data podnet cannot read: the lines are shown.
    let p = plan(&seed_spec(), &self_managed("#cloud-config\nruncmd:\n  - echo hi\n"));
    let f = p
        .findings
        .iter()
        .find(|f| f.id == "self-managed.user-data")
        .expect("refused");
    assert!(
        f.reason.contains("self-managed group legacy-asg") && f.reason.contains("runcmd"),
        "{}",
        f.reason
    );
    assert!(f.fix.contains("replacement.self_managed = \"leave\""), "{}", f.fix);
    // A launch configuration.
    let mut d = self_managed(AL2);
    d.self_managed.groups[0].launch_template = None;
    d.self_managed.groups[0].launch_configuration = Some("legacy-lc".into());
    let p = plan(&seed_spec(), &d);
    let f = p
        .findings
        .iter()
        .find(|f| f.id == "self-managed.launch-template")
        .expect("refused");
    assert!(f.reason.contains("launch configuration legacy-lc"), "{}", f.reason);
    // An instance in no group.
    let mut d = self_managed(AL2);
    d.self_managed.node_groups.clear();
    let p = plan(&seed_spec(), &d);
    assert!(
        p.findings
            .iter()
            .any(|f| f.id == "self-managed.no-group" && f.severity == Severity::Error)
    );
    // A node naming no instance.
    let mut d = self_managed(AL2);
    d.self_managed.node_groups.clear();
    d.kube.nodes[0].provider_id = None;
    let p = plan(&seed_spec(), &d);
    let f = p
        .findings
        .iter()
        .find(|f| f.id == "self-managed.no-instance")
        .expect("refused");
    assert!(f.reason.contains("spec.providerID"), "{}", f.reason);
    // Auto Scaling not readable.
    let mut d = self_managed(AL2);
    d.self_managed.error = Some("autoscaling:DescribeAutoScalingInstances failed: AccessDenied".into());
    let p = plan(&seed_spec(), &d);
    let f = p
        .findings
        .iter()
        .find(|f| f.id == "self-managed.autoscaling")
        .expect("refused");
    assert!(f.fix.contains("iam-policy"), "{}", f.fix);
    assert!(p.inputs.self_managed.is_empty());
}

#[test]
fn leave_and_refuse_keep_their_meaning() {
    let d = self_managed(AL2);
    let p = plan(
        &spec_with(|s| s.replacement.self_managed = SelfManagedPolicy::Refuse),
        &d,
    );
    let f = p
        .findings
        .iter()
        .find(|f| f.id == "nodes.self-managed")
        .expect("refused");
    assert_eq!(f.severity, Severity::Error);
    assert!(f.reason.contains("self-managed group legacy"), "{}", f.reason);
    assert!(f.fix.contains("\"replace\""), "{}", f.fix);
    assert!(p.inputs.self_managed.is_empty());
    let p = plan(
        &spec_with(|s| s.replacement.self_managed = SelfManagedPolicy::Leave),
        &d,
    );
    assert!(!p.has_errors(), "{:#?}", p.findings);
    assert!(p.inputs.expect.leave_self_managed && p.inputs.self_managed.is_empty());
}
