//! `podnet plan` under the IAM policy `podnet iam-policy --for apply`
//! prints, with one action taken out at a time, on a sandbox that enforces
//! it: plan exits 1 naming the missing action, and the sandbox's call log
//! shows no call that changed anything. Judged from the sandbox's log and
//! podnet's exit status, not from podnet's own account of what it did.

mod common;

use common::*;
use podnet_sandbox::{Sandbox, Scenario};
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

/// The actions `plan` itself needs: what `iam-policy --for plan` prints.
fn plan_actions(sb: &Sandbox, state: &std::path::Path, plan: &std::path::Path) -> Vec<String> {
    actions(&printed_policy(sb, state, plan, "plan"))
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

    let checked = plan_actions(&sb, dir.path(), &plan);
    assert!(checked.len() >= 15, "{checked:?}");
    let mut missed = vec![];
    for action in &checked {
        sb.set_iam_policy(&without(&full, action)).expect("valid policy");
        sb.clear_calls();
        let o = podnet(&sb, dir.path(), &plan, &["plan"]);
        let out = text(&o);
        if o.status.code() != Some(1) || !out.contains(&format!("may not {action}")) {
            missed.push(format!("{action}: exit {:?}\n{out}", o.status.code()));
        }
        assert_eq!(
            all_mutations(&sb),
            Vec::<String>::new(),
            "plan without {action} changed something"
        );
        assert!(
            !denied_calls(&sb).is_empty(),
            "the sandbox refused a call for want of {action}"
        );
    }
    assert!(
        missed.is_empty(),
        "plan did not name the missing action:\n{}",
        missed.join("\n")
    );
}
