//! The whole seed migration by the podnet binary against a sandbox that
//! behaves (scheduling, VPC CNI IP assignment, Karpenter, node group
//! rollouts): uninterrupted, and killed with SIGKILL at journal points then
//! resumed. The end state is read with kubectl, the AWS CLI and moto's own
//! client, never through podnet.

mod common;

use common::*;
use podnet_sandbox::{Sandbox, Scenario};

fn seed() -> (Sandbox, tempfile::TempDir) {
    (start(Scenario::seed()), tempfile::tempdir().expect("tempdir"))
}

#[test]
fn the_seed_migration_in_one_apply() {
    let (sb, dir) = seed();
    let before = ec2_state(&sb);
    let plan = repo().join(SEED_PLAN);
    let o = podnet(&sb, dir.path(), &plan, &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("verify"), "apply ends with verify: {out}");
    assert_migrated(&sb, dir.path(), &before);
}

/// Kills podnet at `points` in turn (one per run), resumes after each, and
/// finishes with a resume that is not killed.
fn killed_and_resumed(points: &[&str]) {
    let (sb, dir) = seed();
    let before = ec2_state(&sb);
    let plan = repo().join(SEED_PLAN);
    for (i, point) in points.iter().enumerate() {
        let cmd: &[&str] = if i == 0 {
            &["apply", "--auto-approve"]
        } else {
            &["resume", "--auto-approve"]
        };
        let o = podnet_with_env(&sb, dir.path(), &plan, cmd, &[("PODNET_CRASH_AT", point)]);
        assert_eq!(
            o.status.code(),
            None,
            "podnet was to be killed at {point}: {}",
            text(&o)
        );
        assert!(
            text(&o).contains(&format!("killing this process (SIGKILL) after {point}")),
            "{}",
            text(&o)
        );
        // Killed: the lock is left behind, and status says the migration is unfinished.
        let s = podnet(&sb, dir.path(), &plan, &["status"]);
        assert!(
            String::from_utf8_lossy(&s.stdout).contains("resume"),
            "status after a kill: {}",
            text(&s)
        );
        // It names the unit the kill interrupted: the planned batch, not
        // the whole step.
        if point.starts_with("replace-karpenter-nodes:") {
            assert!(
                String::from_utf8_lossy(&s.stdout).contains("Interrupted during: replace-karpenter-nodes/batch-1"),
                "status names the batch in flight: {}",
                text(&s)
            );
        }
    }
    let o = podnet(&sb, dir.path(), &plan, &["resume", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_migrated(&sb, dir.path(), &before);
}

#[test]
fn killed_during_the_cidr_wait_and_after_the_subnets_then_resumed() {
    killed_and_resumed(&["associate-cidr:progress:association-id", "create-pod-subnets:succeeded"]);
}

#[test]
fn killed_during_the_addon_update_and_mid_drain_then_resumed() {
    killed_and_resumed(&[
        "enable-custom-networking:progress:update-id",
        "replace-karpenter-nodes:progress:replaced",
    ]);
}
