//! `podnet plan` under the IAM policy `podnet iam-policy --for apply`
//! prints, with one action taken out at a time, on a sandbox that enforces
//! it: plan exits 1 naming the missing action (asked with EC2's DryRun or
//! IAM's policy simulator), and the sandbox's call log shows no call that
//! changed anything; an action plan does not name is one the apply of this
//! cluster never calls. Judged from the sandbox's log and
//! podnet's exit status, not from podnet's own account of what it did.

mod common;

use common::*;
use podnet_sandbox::{Sandbox, Scenario, Service};
use serde_json::Value;

/// The policy without `action`: taken out of every statement, and a
/// statement left with no action dropped.
fn without(policy: &Value, action: &str) -> Value {
    let mut p = policy.clone();
    let statements = p["Statement"].as_array_mut().expect("statements");
    for s in statements.iter_mut() {
        if let Some(actions) = s["Action"].as_array_mut() {
            actions.retain(|a| a != action);
        }
    }
    statements.retain(|s| s["Action"].as_array().is_none_or(|a| !a.is_empty()));
    p
}

fn actions(policy: &Value) -> Vec<String> {
    let mut out: Vec<String> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every IAM and EC2/EKS action the sandbox saw called.
fn called_actions(sb: &Sandbox) -> Vec<String> {
    let mut out: Vec<String> = sb
        .calls()
        .into_iter()
        .filter_map(|c| match c.service {
            Service::Ec2 => Some(format!("ec2:{}", c.action)),
            Service::Eks => Some(format!("eks:{}", c.action)),
            Service::Iam => Some(format!("iam:{}", c.action)),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn plan_names_each_action_the_policy_lacks_before_any_change() {
    let sb = start(Scenario::seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = repo().join(SEED_PLAN);
    let full = printed_policy(&sb, dir.path(), &plan, "apply");

    // The full policy plans cleanly.
    sb.set_iam_policy(&full).expect("valid policy");
    sb.clear_calls();
    let (code, doc) = plan_json(&sb, dir.path(), &plan);
    assert_eq!(code, 2, "{doc}");
    assert_eq!(denied_calls(&sb), Vec::<String>::new());
    assert!(
        actions(&printed_policy(&sb, dir.path(), &plan, "plan")).len() >= 15,
        "plan's own policy"
    );

    // Each action out in turn: plan names it, or the migration of this
    // cluster does not need it (checked below by applying).
    let mut not_named = vec![];
    for action in actions(&full) {
        sb.set_iam_policy(&without(&full, &action)).expect("valid policy");
        sb.clear_calls();
        let o = podnet(&sb, dir.path(), &plan, &["plan"]);
        let out = text(&o);
        assert_eq!(
            all_mutations(&sb),
            Vec::<String>::new(),
            "plan without {action} changed something"
        );
        if action == "iam:SimulatePrincipalPolicy" {
            // Not asking the simulator is a warning, not a refusal: many
            // roles may not simulate, and the changes still meet IAM.
            assert_eq!(o.status.code(), Some(2), "{out}");
            assert!(
                out.contains("aws.permission-unchecked") && out.contains("eks:UpdateAddon"),
                "{out}"
            );
            continue;
        }
        if o.status.code() == Some(1) && out.contains(&format!("may not {action}")) {
            assert!(
                !denied_calls(&sb).is_empty() || out.contains("policy simulator answered"),
                "the refusal came from the sandbox's IAM: {out}"
            );
        } else {
            not_named.push(action);
        }
    }

    eprintln!("not named by plan when missing: {not_named:?}");
    // What plan did not name, the apply does not call.
    sb.set_iam_policy(&full).expect("valid policy");
    sb.clear_calls();
    let o = podnet(&sb, dir.path(), &plan, &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(denied_calls(&sb), Vec::<String>::new());
    let called = called_actions(&sb);
    let unguarded: Vec<&String> = not_named.iter().filter(|a| called.contains(a)).collect();
    assert_eq!(
        unguarded,
        Vec::<&String>::new(),
        "the apply calls these, and plan did not name them when they were missing (not named: {not_named:?})"
    );
}
