//! The AWS permission preflight by the podnet binary against a sandbox:
//! `plan` asks EC2 with `DryRun` about each kind of change it holds. The
//! sandbox answers `DryRunOperation` without acting (as EC2 does; moto
//! alone would create the subnet), and a denial, injected as EC2's
//! `UnauthorizedOperation`, is a preflight error naming the action, before
//! any change. The call log is read from the sandbox, never from podnet.

mod common;

use common::*;
use podnet_sandbox::{Fault, Scenario, Service};

#[test]
fn plan_asks_ec2_with_dry_run_and_a_denied_action_stops_it_before_any_change() {
    let sb = start(Scenario::seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = repo().join(SEED_PLAN);
    let before = ec2_state(&sb);

    sb.clear_calls();
    let (code, doc) = plan_json(&sb, dir.path(), &plan);
    assert_eq!(code, 2, "{doc}");
    let asked: Vec<String> = sb
        .calls()
        .into_iter()
        .filter(|c| c.service == Service::Ec2 && c.status == 412)
        .map(|c| c.action)
        .collect();
    for action in ["AuthorizeSecurityGroupIngress", "CreateSubnet", "AssociateRouteTable"] {
        assert!(asked.iter().any(|a| a == action), "plan dry-ran {action}: {asked:?}");
    }
    assert_eq!(all_mutations(&sb), Vec::<String>::new(), "dry runs change nothing");
    assert_eq!(ec2_state(&sb), before, "moto was not asked to act");

    // Twice: the plan, then the plan apply makes first.
    let mut denied = Fault::new(Service::Ec2, "CreateSubnet", 2, 403, "UnauthorizedOperation");
    denied.message =
        Some("You are not authorized to perform this operation. Encoded authorization failure message: AbCd".into());
    sb.inject_fault(denied);
    sb.clear_calls();
    let (code, doc) = plan_json(&sb, dir.path(), &plan);
    assert_eq!(code, 1, "{doc}");
    let finding = doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["id"] == "aws.permission")
        .unwrap_or_else(|| panic!("an aws.permission finding: {doc}"));
    let reason = finding["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("ec2:CreateSubnet"), "{reason}");
    assert!(
        finding["fix"]
            .as_str()
            .unwrap_or_default()
            .contains("podnet iam-policy"),
        "{finding}"
    );
    assert_eq!(all_mutations(&sb), Vec::<String>::new(), "nothing changed");
    let o = podnet(&sb, dir.path(), &plan, &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(ec2_state(&sb), before, "apply stopped at the preflight");
}
