//! Shared state on S3 (`--state s3://…`): a migration applied from one
//! machine, watched, blocked by a lock left elsewhere, unlocked and
//! resumed from another, then rolled back from the first, against the sandbox's moto S3 behind its audited
//! proxy. What is in S3 is read with the AWS CLI, never through podnet.

mod common;

use std::path::Path;

use common::*;
use podnet_sandbox::{Sandbox, Service};
use serde_json::Value;

const BUCKET: &str = "podnet-state";
const PREFIX: &str = "teams/platform";
const URL: &str = "s3://podnet-state/teams/platform";

/// The state's keys under the prefix, as the AWS CLI lists them.
fn keys(sb: &Sandbox) -> Vec<String> {
    let v = aws_json(
        sb,
        &[
            "s3api",
            "list-objects-v2",
            "--bucket",
            BUCKET,
            "--prefix",
            &format!("{PREFIX}/"),
        ],
    );
    let mut k: Vec<String> = v["Contents"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o["Key"].as_str())
                .map(|s| s.trim_start_matches(&format!("{PREFIX}/")).to_string())
                .collect()
        })
        .unwrap_or_default();
    k.sort();
    k
}

fn journal_keys(sb: &Sandbox) -> Vec<String> {
    keys(sb).into_iter().filter(|k| k.starts_with("journal/")).collect()
}

/// podnet on "a machine": its own working copy, the shared state's URL.
fn on(sb: &Sandbox, machine: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--state", URL];
    all.extend_from_slice(args);
    podnet(sb, machine, &repo().join(SEED_PLAN), &all)
}

#[test]
fn applied_on_one_machine_locked_elsewhere_unlocked_resumed_on_another_and_rolled_back() {
    let sb = start(seed_with_room());
    let made = aws_json(
        &sb,
        &[
            "s3api",
            "create-bucket",
            "--bucket",
            BUCKET,
            "--create-bucket-configuration",
            "LocationConstraint=ap-northeast-2",
        ],
    );
    assert!(made["Location"].is_string(), "{made}");
    let before = ec2_state(&sb);
    let a = tempfile::tempdir().expect("machine a");
    let b = tempfile::tempdir().expect("machine b");

    // Machine A applies the first steps.
    let o = on(
        &sb,
        a.path(),
        &["apply", "--auto-approve", "--stop-after", "create-pod-subnets"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let after_a = journal_keys(&sb);
    assert!(keys(&sb).contains(&"plan.json".to_string()), "{:?}", keys(&sb));
    assert!(after_a.len() >= 6, "{after_a:?}");
    for (i, k) in after_a.iter().enumerate() {
        assert_eq!(k, &format!("journal/{i:020}.json"), "records in order, no gap");
    }
    assert!(!keys(&sb).contains(&"lock".to_string()), "the lock is released");
    // Each record in S3 is the line machine A's working copy holds.
    let local = std::fs::read_to_string(a.path().join("journal.jsonl")).expect("A's copy");
    assert_eq!(local.lines().count(), after_a.len());

    // Machine B, with nothing of its own, sees where it stands.
    let o = on(&sb, b.path(), &["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains(URL), "{out}");
    assert!(out.contains("create-pod-subnets"), "{out}");

    // A lock left by a run on another machine blocks B, naming its owner.
    let holder = r#"{"pid":4242,"host":"ci-runner-7","command":"apply","started_at":"2026-12-03T09:00:00Z"}"#;
    let body = b.path().join("lock-body.json");
    std::fs::write(&body, holder).expect("lock body");
    let put = aws_json(
        &sb,
        &[
            "s3api",
            "put-object",
            "--bucket",
            BUCKET,
            "--key",
            &format!("{PREFIX}/lock"),
            "--body",
            body.to_str().expect("utf-8"),
        ],
    );
    assert!(put["ETag"].is_string(), "{put}");
    sb.clear_calls();
    let o = on(&sb, b.path(), &["resume", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = text(&o);
    assert!(err.contains("ci-runner-7") && err.contains("podnet unlock"), "{err}");
    assert_eq!(journal_keys(&sb), after_a, "nothing was recorded");
    assert_eq!(
        all_mutations(&sb),
        Vec::<String>::new(),
        "no EC2, EKS or Kubernetes change"
    );
    let st = on(&sb, b.path(), &["status", "--output", "json"]);
    let doc: Value = serde_json::from_slice(&st.stdout).expect("status json");
    assert_eq!(doc["lock"]["holder"]["host"], "ci-runner-7", "{doc}");

    // B releases it and finishes the migration.
    let o = on(&sb, b.path(), &["unlock", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!keys(&sb).contains(&"lock".to_string()), "{:?}", keys(&sb));
    sb.clear_calls();
    let o = on(&sb, b.path(), &["resume", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s3_writes: Vec<String> = sb
        .calls()
        .into_iter()
        .filter(|c| c.service == Service::S3 && c.mutating)
        .map(|c| c.action)
        .collect();
    assert!(s3_writes.iter().any(|a| a == "PutObject"), "{s3_writes:?}");
    let all = journal_keys(&sb);
    assert!(all.len() > after_a.len(), "{all:?}");
    for (i, k) in all.iter().enumerate() {
        assert_eq!(k, &format!("journal/{i:020}.json"), "one writer at a time: no gap");
    }
    assert!(!keys(&sb).contains(&"lock".to_string()));
    assert_migrated(&sb, b.path(), &before);

    // A, stale, reads the finished migration from S3.
    let o = on(&sb, a.path(), &["status", "--output", "json"]);
    let doc: Value = serde_json::from_slice(&o.stdout).expect("status json");
    assert_eq!(doc["migration"], "complete", "{doc}");

    // A rolls it back from the shared record; B sees the rollback.
    let o = on(&sb, a.path(), &["rollback", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let k = keys(&sb);
    assert!(k.contains(&"rollback/plan.json".to_string()), "{k:?}");
    assert!(k.iter().any(|k| k.starts_with("rollback/journal/")), "{k:?}");
    assert!(!k.contains(&"lock".to_string()), "{k:?}");
    let after = ec2_state(&sb);
    assert_eq!(after.subnets, before.subnets, "the pod subnets are gone");
    assert_eq!(after.sg_rules, before.sg_rules, "the rules podnet added are revoked");
    let o = on(&sb, b.path(), &["status"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("Rollback: "), "{out}");
    // And B may not resume what was rolled back.
    let o = on(&sb, b.path(), &["resume", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("was rolled back"), "{}", text(&o));
}
