//! The lifecycle around a migration, by the podnet binary against a sandbox:
//! `podnet init` writes the plan from the cluster, and that plan, unedited,
//! migrates it. The end state is read with kubectl, the AWS CLI and moto's
//! own client, never through podnet.

mod common;

use std::path::Path;

use common::*;
use podnet_sandbox::Scenario;

/// `podnet init` into `file` (podnet's own -f), with the sandbox's endpoints.
fn init(
    sb: &podnet_sandbox::Sandbox,
    state: &Path,
    file: &Path,
    cluster: &str,
    region: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec!["init", "--cluster", cluster, "--region", region];
    args.extend_from_slice(extra);
    podnet(sb, state, file, &args)
}

#[test]
fn init_writes_a_plan_that_migrates_the_seed_cluster() {
    let sb = start(Scenario::seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let file = dir.path().join("podnet.toml");
    let before = ec2_state(&sb);
    sb.clear_calls();

    let o = init(&sb, &state, &file, "podnet-demo", "ap-northeast-2", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(all_mutations(&sb), Vec::<String>::new(), "init is read-only");
    let written = std::fs::read_to_string(&file).expect("the plan file");
    assert!(written.contains("secondary_cidr = \"100.64.0.0/16\""), "{written}");
    // The groups the seed's services use, found without being named.
    for group in ["podnet-demo-rds", "podnet-demo-vpce"] {
        assert!(
            written.contains(&format!("group_name = \"{group}\"")),
            "{group}:\n{written}"
        );
    }
    let patches = written.matches("[[security_group_patch]]").count();

    // Never overwritten without --force.
    std::fs::write(&file, "# mine\n").expect("write");
    let o = init(&sb, &state, &file, "podnet-demo", "ap-northeast-2", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--force"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "# mine\n");
    let o = init(&sb, &state, &file, "podnet-demo", "ap-northeast-2", &["--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        written,
        "init is deterministic"
    );

    let o = podnet(&sb, &state, &file, &["validate"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (code, doc) = plan_json(&sb, &state, &file);
    assert_eq!(code, 2, "{doc}");
    let open: Vec<&serde_json::Value> = doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["severity"] != "note")
        .collect();
    assert!(
        doc["suggestions"]
            .as_array()
            .expect("suggestions")
            .iter()
            .all(|s| s["planned"] == true || s["done"] == true),
        "every suggested group is in the plan: {}",
        doc["suggestions"]
    );
    assert!(open.iter().all(|f| f["severity"] != "error"), "{open:#?}");

    let o = podnet(&sb, &state, &file, &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let subnets = [
        ("ap-northeast-2a", "100.64.0.0/17"),
        ("ap-northeast-2c", "100.64.128.0/17"),
    ];
    assert_migrated_to(&sb, &state, &file, &before, &subnets, patches);
    assert_journal_records_the_cluster_before(&state);
    plan_rollback_shows_the_reverse_and_stops_on_a_rule_added_by_hand(&sb, &state, &file);
}

/// `plan --rollback` after the apply: read-only, every podnet change
/// undone in reverse; a rule for the pod CIDR that someone added by hand
/// stops it, named.
fn plan_rollback_shows_the_reverse_and_stops_on_a_rule_added_by_hand(
    sb: &podnet_sandbox::Sandbox,
    state: &Path,
    file: &Path,
) {
    sb.clear_calls();
    let o = podnet(sb, state, file, &["plan", "--rollback", "--output", "json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    // Only the estimate that the seed's nearly full node subnets may not
    // hold the pods coming back (a warning); nothing that stops it.
    let findings: Vec<&serde_json::Value> = doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["id"] != "rollback.node-subnet-capacity")
        .collect();
    assert!(findings.is_empty(), "{doc}");
    let deletes = |step: &str| -> Vec<String> {
        doc["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .find(|s| s["step"] == step)
            .map(|s| {
                s["changes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| c["action"] == "delete")
                    .map(|c| c["name"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(deletes("remove-pod-subnets").len(), 2, "{doc}");
    assert_eq!(deletes("revoke-security-group-rules").len(), 2, "{doc}");
    assert_eq!(deletes("remove-eniconfigs").len(), 2, "{doc}");
    assert_eq!(deletes("disassociate-cidr").len(), 1, "{doc}");
    assert_eq!(all_mutations(sb), Vec::<String>::new(), "plan --rollback is read-only");

    let rds = aws_json(
        sb,
        &[
            "ec2",
            "describe-security-groups",
            "--filters",
            "Name=group-name,Values=podnet-demo-rds",
        ],
    );
    let rds = rds["SecurityGroups"][0]["GroupId"]
        .as_str()
        .expect("the RDS group")
        .to_string();
    aws_json(
        sb,
        &[
            "ec2",
            "authorize-security-group-ingress",
            "--group-id",
            &rds,
            "--ip-permissions",
            "IpProtocol=tcp,FromPort=5432,ToPort=5432,IpRanges=[{CidrIp=100.64.0.0/16}]",
        ],
    );
    sb.clear_calls();
    let o = podnet(sb, state, file, &["plan", "--rollback"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("rollback.foreign-rule") && t.contains(&rds) && t.contains("5432"),
        "{t}"
    );
    assert_eq!(all_mutations(sb), Vec::<String>::new(), "nothing deleted");

    // `rollback` itself refuses before changing anything (the auto-sized
    // pod subnets fill the block, so a foreign subnet in it is left to the
    // planner's unit tests).
    sb.clear_calls();
    let o = podnet(sb, state, file, &["rollback", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("rollback.foreign-rule") && t.contains(&rds), "{t}");
    assert_eq!(
        all_mutations(sb),
        Vec::<String>::new(),
        "rollback refused before any change"
    );
    assert!(
        !state.join("rollback").join("journal.jsonl").exists(),
        "no rollback journal"
    );
}

/// What a rollback will undo: the journal says what podnet created and what
/// each setting was before it changed it.
fn assert_journal_records_the_cluster_before(state: &Path) {
    let records = podnet::engine::journal::read(&state.join("journal.jsonl")).expect("the journal");
    let s = podnet::engine::JournalState::from_records(&records);
    let out = |step: &str| s.step(step).and_then(|x| x.outputs.clone()).unwrap_or_default();
    assert_eq!(out("associate-cidr")["created"], true);
    for sn in out("create-pod-subnets")["subnets"].as_array().expect("subnets") {
        assert_eq!(sn["created"], true, "{sn}");
    }
    for e in out("apply-eniconfigs")["eniconfigs"].as_array().expect("eniconfigs") {
        assert_eq!(e["created"], true, "{e}");
    }
    for r in out("patch-security-groups")["rules"].as_array().expect("rules") {
        assert_eq!(r["created"], true, "{r}");
    }
    assert_eq!(
        out("configure-karpenter")["reserved_enis_before"],
        serde_json::json!({ "value": null })
    );
    // The seed's vpc-cni configuration, as sandbox/scenarios/seed.toml sets it.
    assert_eq!(
        out("enable-custom-networking")["configuration_values_before"]["value"],
        r#"{"env":{"WARM_IP_TARGET":"2","MINIMUM_IP_TARGET":"4"}}"#
    );
    assert_eq!(
        out("enable-custom-networking")["env_before"],
        serde_json::json!({ "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG": null, "ENI_CONFIG_LABEL_DEF": null })
    );
}

#[test]
fn init_writes_a_plan_that_migrates_the_three_az_cluster() {
    let sb = start(three_az());
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let file = dir.path().join("three-az.toml");
    let o = init(&sb, &state, &file, "three-az", "us-west-2", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let written = std::fs::read_to_string(&file).expect("the plan file");
    // Three zones with node subnets: three /18s.
    for cidr in ["100.64.0.0/18", "100.64.64.0/18", "100.64.128.0/18"] {
        assert!(written.contains(&format!("cidr = \"{cidr}\"")), "{cidr}:\n{written}");
    }
    let o = podnet(&sb, &state, &file, &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let pods = kubectl_json(&sb, &["get", "pods", "-A"]);
    for p in pods["items"].as_array().expect("pods") {
        let name = format!("{}/{}", p["metadata"]["namespace"], p["metadata"]["name"]);
        assert_ne!(p["status"]["phase"], "Pending", "{name}");
        if p["status"]["phase"] == "Running" && p["spec"]["hostNetwork"] != true {
            let ip = p["status"]["podIP"].as_str().unwrap_or("");
            assert!(ip.starts_with("100.64."), "{name} runs on {ip}");
        }
    }
    for n in kubectl_json(&sb, &["get", "nodes"])["items"].as_array().expect("nodes") {
        let labels = &n["metadata"]["labels"];
        assert_eq!(
            labels["vpc.amazonaws.com/eniConfig"], labels["topology.kubernetes.io/zone"],
            "{}",
            n["metadata"]["name"]
        );
    }
    let o = podnet(&sb, &state, &file, &["verify"]);
    assert_eq!(o.status.code(), Some(0), "verify: {}", text(&o));
    let o = podnet(&sb, &state, &file, &["plan"]);
    assert_eq!(o.status.code(), Some(0), "plan after the migration: {}", text(&o));
}

#[test]
fn init_refuses_without_a_cluster_and_plan_without_a_file_points_to_init() {
    let sb = start(Scenario::seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let file = dir.path().join("absent.toml");
    let o = podnet(&sb, &state, &file, &["init", "--region", "ap-northeast-2"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--cluster NAME"), "{}", text(&o));
    assert!(!file.exists());
    let o = podnet(&sb, &state, &file, &["plan"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("podnet init --cluster"), "{t}");
    assert_eq!(t.matches("No such file or directory").count(), 1, "said once: {t}");
}
