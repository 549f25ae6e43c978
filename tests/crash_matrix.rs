//! The crash matrix: the seed migration killed with SIGKILL at a journal
//! point (every `started`, `progress` and `succeeded` event of every unit,
//! as a clean run's journal lists them) or at a wall-clock offset (which
//! lands between an AWS or Kubernetes call and its journal record), then
//! `podnet resume`d once, must reach the end state of an uninterrupted run
//! with nothing duplicated or orphaned (`assert_migrated`: one association,
//! one subnet per zone, one rule per patch, one successful `UpdateAddon`,
//! judged with kubectl and the AWS CLI).
//!
//! CI runs a fixed sample on every push; `scripts/crash-matrix` runs all of
//! it (`--ignored`) and prints `N of N crash points resumed clean`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use podnet_sandbox::{Sandbox, Scenario};

/// Every journal point of a clean seed migration, in order.
fn journal_points() -> Vec<String> {
    let sb = start(Scenario::seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let o = podnet(&sb, dir.path(), &repo().join(SEED_PLAN), &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let records = podnet::engine::journal::read(&dir.path().join("journal.jsonl")).expect("the journal");
    podnet::engine::crash::points_of(&records)
}

/// Resumes once after the kill (or, killed before the plan was saved, runs
/// the apply again, as the error then says) and checks the end state.
fn resumed_clean(sb: &Sandbox, dir: &Path, before: &Ec2State, what: &str) {
    let plan = repo().join(SEED_PLAN);
    let mut o = podnet(sb, dir, &plan, &["resume", "--auto-approve"]);
    if text(&o).contains("nothing to resume: no saved plan") {
        o = podnet(sb, dir, &plan, &["apply", "--auto-approve"]);
    }
    assert_eq!(o.status.code(), Some(0), "after {what}: {}", text(&o));
    assert_migrated(sb, dir, before);
}

/// How a crash run went: killed where it was asked to be, or the point never
/// came (an apply that took another path, or finished first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crash {
    Killed,
    NotReached,
}

/// Killed at `point` (by `PODNET_CRASH_AT`), then resumed. Some points are
/// timing-dependent (a NodePool limit raised only when a replacement could
/// not fit yet): a run that never reaches one finishes unkilled, and then its
/// end state is checked as is, and the point counted apart.
fn crash_at(point: &str) -> Crash {
    let sb = start(Scenario::seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let before = ec2_state(&sb);
    let o = podnet_with_env(
        &sb,
        dir.path(),
        &repo().join(SEED_PLAN),
        &["apply", "--auto-approve"],
        &[("PODNET_CRASH_AT", point)],
    );
    match o.status.code() {
        None => {
            resumed_clean(&sb, dir.path(), &before, point);
            Crash::Killed
        }
        Some(0) => {
            let records = podnet::engine::journal::read(&dir.path().join("journal.jsonl")).expect("the journal");
            let reached = podnet::engine::crash::points_of(&records);
            assert!(
                !reached.iter().any(|p| p == point),
                "{point} was reached but podnet was not killed there: {}",
                text(&o)
            );
            assert_migrated(&sb, dir.path(), &before);
            Crash::NotReached
        }
        Some(code) => panic!("podnet was to be killed at {point}, it exited {code}: {}", text(&o)),
    }
}

/// Killed `after` into the apply, wherever it is, then resumed. An apply
/// that has already finished by then is reported, not counted as a crash.
fn crash_after(after: Duration) -> Crash {
    let sb = start(Scenario::seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let before = ec2_state(&sb);
    let mut child = podnet_command(&sb, dir.path(), &repo().join(SEED_PLAN), &["apply", "--auto-approve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("podnet starts");
    std::thread::sleep(after);
    let finished = matches!(child.try_wait(), Ok(Some(_)));
    // SIGKILL, as `kill -9`: no destructor, no journal record of the end.
    let _ = child.kill();
    let _ = child.wait();
    resumed_clean(&sb, dir.path(), &before, &format!("a kill at {after:?}"));
    if finished { Crash::NotReached } else { Crash::Killed }
}

/// Two points a third and three quarters into the run, with a wall-clock
/// kill: tests/cutover.rs already kills at four named points (the CIDR
/// wait, after the subnets, the add-on update, mid-drain).
const SAMPLE: [f64; 2] = [0.35, 0.75];

#[test]
fn a_sample_of_journal_points_and_wall_clock_offsets_resume_clean() {
    let points = journal_points();
    assert!(points.len() >= 20, "{points:?}");
    for share in SAMPLE {
        // A `progress` point may depend on timing; the sample wants kills.
        let at = ((points.len() - 1) as f64 * share) as usize;
        let point = points[at..]
            .iter()
            .find(|p| !p.contains(":progress:"))
            .expect("a point after it");
        eprintln!("crash matrix: killing at {point}");
        assert_eq!(crash_at(point), Crash::Killed, "{point}");
    }
    assert_eq!(
        crash_after(Duration::from_secs(10)),
        Crash::Killed,
        "the apply ended within 10 s"
    );
}

#[test]
#[ignore = "the whole matrix takes about a minute per point: scripts/crash-matrix"]
fn every_journal_point_and_a_spread_of_offsets_resume_clean() {
    let points = journal_points();
    let offsets: Vec<Duration> = (1..=8).map(|i| Duration::from_secs(3 * i)).collect();
    let total = points.len() + offsets.len();
    // The matrix takes hours on a small machine: `CRASH_MATRIX_FROM=n`
    // resumes it at point n (1-based) after an interrupted run.
    let from = std::env::var("CRASH_MATRIX_FROM")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let mut not_reached = Vec::new();
    for (i, point) in points.iter().enumerate().skip(from - 1) {
        eprintln!("crash matrix {}/{total}: {point}", i + 1);
        if crash_at(point) == Crash::NotReached {
            eprintln!("crash matrix: {point} not reached in this run; its end state checked");
            not_reached.push(point.clone());
        }
    }
    for (i, after) in offsets.iter().enumerate().skip((from - 1).saturating_sub(points.len())) {
        eprintln!("crash matrix {}/{total}: SIGKILL after {after:?}", points.len() + i + 1);
        if crash_after(*after) == Crash::NotReached {
            not_reached.push(format!("{after:?}"));
        }
    }
    let ran = total - (from - 1).min(total);
    let killed = ran - not_reached.len();
    println!("{killed} of {killed} crash points resumed clean (points {from} to {total})");
    if !not_reached.is_empty() {
        println!(
            "{} of {total} points were not reached in their run (timing-dependent); those runs ended migrated: {}",
            not_reached.len(),
            not_reached.join(", ")
        );
    }
}
