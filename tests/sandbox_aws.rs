//! The AWS half of the migration (associate-cidr, patch-security-groups,
//! create-pod-subnets) run by the podnet binary against a sandbox: moto for
//! EC2, the simulated EKS and Kubernetes APIs. What is asserted is moto's
//! state read back independently, and the sandbox's log of mutating calls.

mod common;

use common::*;
use podnet_sandbox::{Sandbox, Scenario, Service};

#[test]
fn seed_aws_steps_apply_then_replan_and_reapply_change_nothing() {
    let sb = start(Scenario::seed());
    let state = tempfile::tempdir().expect("tempdir");
    let plan = repo().join(SEED_PLAN);
    let before = ec2_state(&sb);

    let (code, doc) = plan_json(&sb, state.path(), &plan);
    assert_eq!(code, 2, "plan with changes pending exits 2: {doc}");
    assert_eq!(step_actions(&doc, "associate-cidr"), ["create"]);
    assert_eq!(step_actions(&doc, "patch-security-groups"), ["create", "create"]);
    assert_eq!(
        step_actions(&doc, "create-pod-subnets"),
        ["create", "create", "create", "create"]
    );
    // The suggestions are the groups that admit the node subnets today.
    let suggested: Vec<&str> = doc["suggestions"]
        .as_array()
        .expect("suggestions")
        .iter()
        .filter_map(|s| s["group_name"].as_str())
        .collect();
    assert!(
        suggested.contains(&"podnet-demo-rds") && suggested.contains(&"podnet-demo-vpce"),
        "{suggested:?}"
    );
    assert!(
        all_mutations(&sb).is_empty(),
        "plan is read-only: {:?}",
        all_mutations(&sb)
    );
    assert_eq!(ec2_state(&sb), before, "plan changed EC2");

    let o = podnet(
        &sb,
        state.path(),
        &plan,
        &["apply", "--auto-approve", "--stop-after", "create-pod-subnets"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Stopped after create-pod-subnets"),
        "{}",
        text(&o)
    );

    let after = ec2_state(&sb);
    assert!(
        after.cidrs.contains(&("100.64.0.0/16".into(), "associated".into())),
        "{:?}",
        after.cidrs
    );
    let node_2a = subnet(&after, "10.255.11.0/24").clone();
    let node_2c = subnet(&after, "10.255.12.0/24").clone();
    for (cidr, az, name, node) in [
        ("100.64.1.0/24", "ap-northeast-2a", "podnet-demo-pods-2a", &node_2a),
        ("100.64.2.0/24", "ap-northeast-2c", "podnet-demo-pods-2c", &node_2c),
    ] {
        let s = subnet(&after, cidr);
        assert_eq!(s.az, az, "{s:?}");
        assert_eq!(tag(s, "Name"), Some(name), "{s:?}");
        assert_eq!(tag(s, "kubernetes.io/role/cni"), Some("1"), "{s:?}");
        assert_eq!(tag(s, "podnet.io/cluster"), Some("podnet-demo"), "{s:?}");
        assert_eq!(
            tag(s, "karpenter.sh/discovery"),
            None,
            "pod subnets are never Karpenter node subnets"
        );
        assert!(
            node.route_table.is_some(),
            "node subnet has an explicit route table: {node:?}"
        );
        assert_eq!(
            s.route_table, node.route_table,
            "pod subnet uses the node subnet's route table"
        );
    }
    let new_subnets: Vec<&str> = after
        .subnets
        .iter()
        .filter(|s| !before.subnets.iter().any(|b| b.id == s.id))
        .map(|s| s.cidr.as_str())
        .collect();
    assert_eq!(
        new_subnets,
        ["100.64.1.0/24", "100.64.2.0/24"],
        "exactly the two pod subnets"
    );
    let rule = |group: &str, port: u16| {
        after
            .sg_rules
            .iter()
            .any(|r| r.starts_with(&format!("{group} tcp {port}-{port} 100.64.0.0/16 ")) && r.contains("podnet"))
    };
    assert!(rule("podnet-demo-rds", 3306), "{:#?}", after.sg_rules);
    assert!(rule("podnet-demo-vpce", 443), "{:#?}", after.sg_rules);
    // Nothing else moved: only the planned rules are new.
    let new_rules: Vec<&String> = after.sg_rules.iter().filter(|r| !before.sg_rules.contains(r)).collect();
    assert_eq!(new_rules.len(), 2, "{new_rules:#?}");

    // The journal recorded each step before and after its side effects.
    let journal = std::fs::read_to_string(state.path().join("journal.jsonl")).expect("journal");
    for step in ["associate-cidr", "patch-security-groups", "create-pod-subnets"] {
        assert!(journal.contains(step), "journal misses {step}");
    }

    // A re-plan finds the AWS steps done.
    let (_, doc) = plan_json(&sb, state.path(), &plan);
    for step in ["associate-cidr", "patch-security-groups", "create-pod-subnets"] {
        let actions = step_actions(&doc, step);
        assert!(actions.iter().all(|a| a == "no-op"), "{step}: {actions:?}");
    }

    // A re-apply makes no mutating call anywhere.
    sb.clear_calls();
    let o = podnet(
        &sb,
        state.path(),
        &plan,
        &[
            "apply",
            "--auto-approve",
            "--replan",
            "--stop-after",
            "create-pod-subnets",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        sb.calls().iter().any(|c| c.service == Service::Ec2),
        "the re-apply observed EC2"
    );
    assert_eq!(
        all_mutations(&sb),
        Vec::<String>::new(),
        "re-apply mutated: {}",
        text(&o)
    );
    assert_eq!(ec2_state(&sb), after);
}

#[test]
fn three_az_auto_sizing_carves_18s_in_each_az() {
    let sb = start(three_az());
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write_plan(
        dir.path(),
        "three-az.toml",
        r#"
[cluster]
name = "three-az"
region = "us-west-2"

[pod_subnets]
sizing = "auto"
tags = { team = "platform" }

[karpenter]
reserved_enis = 1
"#,
    );
    let state = dir.path().join("state");
    let (code, doc) = plan_json(&sb, &state, &plan);
    assert_eq!(code, 2, "{doc}");
    let o = podnet(
        &sb,
        &state,
        &plan,
        &["apply", "--auto-approve", "--stop-after", "create-pod-subnets"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = ec2_state(&sb);
    for (cidr, az, node) in [
        ("100.64.0.0/18", "us-west-2a", "10.20.4.0/24"),
        ("100.64.64.0/18", "us-west-2b", "10.20.5.0/24"),
        ("100.64.128.0/18", "us-west-2c", "10.20.6.0/24"),
    ] {
        let pod = subnet(&s, cidr);
        assert_eq!(pod.az, az, "{pod:?}");
        assert_eq!(tag(pod, "team"), Some("platform"), "extra tags from the plan: {pod:?}");
        assert_eq!(tag(pod, "podnet.io/cluster"), Some("three-az"));
        assert_eq!(pod.route_table, subnet(&s, node).route_table, "{cidr} routes as {node}");
    }
    assert!(
        !s.subnets.iter().any(|x| x.cidr == "100.64.192.0/18"),
        "no subnet for an AZ without nodes"
    );
}

/// A refusal exits 1, names the rule, and leaves EC2 exactly as it was: moto
/// would accept every one of these associations.
fn assert_refused(sb: &Sandbox, plan_body: &str, rule: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write_plan(dir.path(), "plan.toml", plan_body);
    let state = dir.path().join("state");
    let before = ec2_state(sb);
    sb.clear_calls();
    let o = podnet(sb, &state, &plan, &["plan"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(rule), "plan names {rule}: {}", text(&o));
    let o = podnet(sb, &state, &plan, &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(rule), "apply names {rule}: {}", text(&o));
    assert_eq!(all_mutations(sb), Vec::<String>::new(), "refused apply mutated");
    assert_eq!(ec2_state(sb), before, "refused apply changed EC2");
}

fn seed_plan_with(cidr: &str) -> String {
    format!(
        r#"
[cluster]
name = "podnet-demo"
region = "ap-northeast-2"

[network]
secondary_cidr = "{cidr}"

[pod_subnets]
sizing = "auto"
"#
    )
}

fn associate(sb: &Sandbox, cidr: &str) {
    let ec2 = sb.moto_client().expect("moto");
    let vpc = sb.world().vpc_id.clone();
    let cidr = cidr.to_string();
    sb.runtime().block_on(async move {
        ec2.associate_vpc_cidr_block()
            .vpc_id(vpc)
            .cidr_block(cidr)
            .send()
            .await
            .expect("moto accepts the association");
    });
}

#[test]
fn preflight_refuses_a_restricted_block_before_any_change() {
    let sb = start(Scenario::seed());
    assert_refused(&sb, &seed_plan_with("198.19.0.0/16"), "cidr.restricted");
}

#[test]
fn preflight_refuses_an_overlapping_block_before_any_change() {
    let sb = start(Scenario::seed());
    associate(&sb, "100.64.0.0/20");
    assert_refused(&sb, &seed_plan_with("100.64.0.0/16"), "cidr.overlap");
}

#[test]
fn preflight_refuses_past_the_cidr_quota_before_any_change() {
    let sb = start(Scenario::seed());
    for c in ["10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16", "10.4.0.0/16"] {
        associate(&sb, c);
    }
    assert_refused(&sb, &seed_plan_with("100.64.0.0/16"), "cidr.quota");
}

#[test]
fn a_discovery_failure_says_to_run_the_command_again_not_resume() {
    use podnet_sandbox::Fault;
    let sb = start(Scenario::seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = repo().join(SEED_PLAN);
    // A refusal no retry gets past ends discovery.
    sb.inject_fault(
        Fault::new(Service::Eks, "DescribeAddon", 1, 403, "AccessDeniedException")
            .with_message("User is not authorized to perform: eks:DescribeAddon"),
    );
    let o = podnet(&sb, dir.path(), &plan, &["apply", "--auto-approve"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("eks:DescribeAddon"), "{t}");
    assert!(
        t.contains("nothing was changed or saved: run the same podnet command again"),
        "{t}"
    );
    assert!(
        !t.contains("podnet resume"),
        "nothing was saved, so resume has nothing to do: {t}"
    );
    let o = podnet(&sb, dir.path(), &plan, &["resume", "--auto-approve"]);
    assert!(text(&o).contains("nothing to resume"), "{}", text(&o));
    assert!(sb.calls().iter().all(|c| !c.mutating));
}

#[test]
fn throttling_and_5xx_during_discovery_are_retried_whatever_the_aws_config_says() {
    use podnet_sandbox::Fault;
    let sb = start(Scenario::seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = repo().join(SEED_PLAN);
    // The sandbox's AWS config says `max_attempts = 1`; podnet sets its own
    // policy (25 attempts), so neither a 503 nor four throttled calls in a
    // row (more than the SDK's default three attempts) end the plan.
    sb.inject_fault(Fault::new(
        Service::Eks,
        "DescribeAddon",
        1,
        503,
        "ServiceUnavailableException",
    ));
    sb.inject_fault(Fault::new(Service::Ec2, "DescribeVpcs", 4, 503, "RequestLimitExceeded"));
    let o = podnet(&sb, dir.path(), &plan, &["plan"]);
    assert_eq!(o.status.code(), Some(2), "changes pending: {}", text(&o));
    let calls = sb.calls();
    let injected = |action: &str| calls.iter().filter(|c| c.action == action && c.injected).count();
    assert_eq!(injected("DescribeAddon"), 1);
    assert_eq!(injected("DescribeVpcs"), 4);
    assert!(
        calls
            .iter()
            .any(|c| c.action == "DescribeVpcs" && !c.injected && c.status == 200),
        "the fifth DescribeVpcs went through"
    );
}

#[test]
fn a_resume_by_another_podnet_version_is_refused_before_any_change() {
    let sb = start(Scenario::seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = repo().join(SEED_PLAN);
    let o = podnet(
        &sb,
        dir.path(),
        &plan,
        &["apply", "--auto-approve", "--stop-after", "associate-cidr"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The saved plan as another version would have written it (its
    // fingerprint recomputed, so only the version differs).
    let state = podnet::engine::StateDir::at(dir.path().to_path_buf());
    let mut saved = state.load_plan().expect("saved plan").expect("a saved plan");
    saved.podnet_version = "0.0.1".into();
    saved.fingerprint = String::new();
    saved.fingerprint = podnet::engine::fingerprint(&saved);
    state.save_plan(&saved).expect("rewrite");
    sb.clear_calls();
    let o = podnet(&sb, dir.path(), &plan, &["resume", "--auto-approve"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("planned by podnet 0.0.1"), "{t}");
    assert!(t.contains("podnet apply --replan"), "{t}");
    assert!(
        sb.calls().is_empty(),
        "resume refused before connecting: {:#?}",
        sb.calls()
    );
}

#[test]
fn dependency_logs_stay_silent_unless_asked_and_never_carry_escape_codes() {
    use podnet_sandbox::Fault;
    let sb = start(Scenario::seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = repo().join(SEED_PLAN);
    let fault = || Fault::new(Service::Kube, "list nodes", 1, 503, "ServiceUnavailable");
    // One 503 on a read: podnet retries it and plans; nothing of kube-rs's
    // own logging reaches the user.
    sb.inject_fault(fault());
    let o = podnet(&sb, dir.path(), &plan, &["plan"]);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        !stderr.contains("503"),
        "a dependency's log line at the default verbosity: {stderr}"
    );
    assert!(sb.calls().iter().any(|c| c.injected), "the fault was hit");
    // Asked for (-vv), they appear, still without escape codes on a pipe.
    sb.inject_fault(fault());
    let o = podnet(&sb, dir.path(), &plan, &["-vv", "plan"]);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!stderr.contains('\u{1b}'), "escape codes on a pipe: {stderr:?}");
    assert!(
        stderr.contains("failed with status 503"),
        "-vv shows kube-rs's own line: {stderr}"
    );
}
