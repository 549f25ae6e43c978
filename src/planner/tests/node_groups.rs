//! Custom-AMI managed node groups: max pods planned into the user data in
//! the AMI family's form, or the plan refused naming the lines.

use base64::Engine as _;

use super::super::*;
use super::seed::*;
use crate::aws::eks::LaunchTemplateRef;
use crate::discovery::LaunchTemplateUserData;
use crate::userdata::AmiFamily;

/// The seed's node group on a custom AMI with this user data.
fn custom(user_data: Option<&str>) -> Discovery {
    let mut d = seed();
    let g = &mut d.nodegroups[0];
    g.ami_type = Some("CUSTOM".into());
    g.launch_template = Some(LaunchTemplateRef {
        id: Some("lt-1".into()),
        name: None,
        version: Some("3".into()),
    });
    d.launch_template_user_data.insert(
        "system".into(),
        LaunchTemplateUserData {
            version: "3".into(),
            base64: user_data.map(|u| base64::engine::general_purpose::STANDARD.encode(u)),
            instance_type: None,
            error: None,
        },
    );
    d
}

#[test]
fn a_custom_ami_group_gets_max_pods_in_its_families_form() {
    let d = custom(Some(
        "[settings.kubernetes]\ncluster-name = \"podnet-demo\"\nmax-pods = 17\n",
    ));
    let p = plan(&seed_spec(), &d);
    assert!(!p.has_errors(), "{:#?}", p.findings);
    let u = p.inputs.node_groups[0].user_data.as_ref().expect("a user data edit");
    // t3.medium under custom networking: (3 − 1) × (6 − 1) + 2 = 12.
    assert_eq!(
        (u.family, u.max_pods, u.before),
        (AmiFamily::Bottlerocket, 12, Some(17))
    );
    assert_eq!(u.source_version, "3");
    // An EKS-built AMI needs no edit: EKS computes max pods. Without a
    // launch template the plan says how its nodes get renewed.
    let p = plan(&seed_spec(), &seed());
    assert!(p.inputs.node_groups[0].user_data.is_none());
    let f = p
        .findings
        .iter()
        .find(|f| f.id == "nodegroups.no-launch-template")
        .expect("said");
    assert!(
        f.reason.contains("node group system") && f.reason.contains("latest AMI release"),
        "{}",
        f.reason
    );
    assert!(
        !plan(&seed_spec(), &d)
            .findings
            .iter()
            .any(|f| f.id == "nodegroups.no-launch-template")
    );
}

#[test]
fn user_data_podnet_cannot_read_is_refused_with_its_lines() {
    let p = plan(&seed_spec(), &custom(Some("#!/bin/bash\n/opt/join.sh podnet-demo\n")));
    let f = p
        .findings
        .iter()
        .find(|f| f.id == "nodegroups.user-data")
        .expect("refused");
    assert!(
        f.reason.contains("node group system") && f.reason.contains("/opt/join.sh podnet-demo"),
        "{}",
        f.reason
    );
    assert!(p.inputs.node_groups[0].user_data.is_none());
    let p = plan(&seed_spec(), &custom(None));
    let f = p
        .findings
        .iter()
        .find(|f| f.id == "nodegroups.user-data")
        .expect("refused");
    assert!(f.reason.contains("no user data"), "{}", f.reason);
    let mut d = custom(None);
    d.launch_template_user_data.clear();
    assert!(
        plan(&seed_spec(), &d)
            .findings
            .iter()
            .any(|f| f.id == "nodegroups.user-data")
    );
}

#[test]
fn a_launch_template_instance_type_counts_when_the_group_lists_none() {
    let mut d = custom(Some("[settings.kubernetes]\ncluster-name = \"podnet-demo\"\n"));
    d.nodegroups[0].instance_types.clear();
    let lt = d.launch_template_user_data.get_mut("system").unwrap();
    lt.instance_type = Some("t3.large".into());
    let p = plan(&seed_spec(), &d);
    assert!(!p.has_errors(), "{:#?}", p.findings);
    // t3.large under custom networking: (3 − 1) × (12 − 1) + 2 = 24.
    assert_eq!(p.inputs.node_groups[0].user_data.as_ref().unwrap().max_pods, 24);
    // A template podnet could not read refuses that group, naming why.
    d.launch_template_user_data.get_mut("system").unwrap().error = Some("AccessDenied".into());
    let f = plan(&seed_spec(), &d)
        .findings
        .into_iter()
        .find(|f| f.id == "nodegroups.user-data")
        .expect("refused");
    assert!(f.reason.contains("AccessDenied"), "{}", f.reason);
}
