//! Runs that go wrong: a failed step and its resume, retries of transient
//! errors, and torn or corrupt journals.

use super::*;

#[tokio::test]
async fn a_failed_step_stops_the_run_and_resume_continues_from_it() {
    let w = World::default();
    *w.fail.lock().unwrap() = Some(("eniconfig".into(), ErrorClass::Invalid, 1));
    let f = fixture(&w).await;
    let rec = Recorder::default();
    let out = go(&w, &f, "apply", None, &rec).await;
    let RunOutcome::Failed { step, error } = out else {
        panic!("{out:?}")
    };
    assert_eq!((step.as_str(), error.class), ("eniconfig", ErrorClass::Invalid));
    assert!(w.get("addon").is_none(), "later steps must not run after a failure");
    let state = JournalState::from_records(&journal::read(&f.state.journal_path()).unwrap());
    assert_eq!(state.step("eniconfig").unwrap().status, StepStatus::Failed);
    assert_eq!(state.last_run().unwrap().outcome, Some(RunEnd::Failed));
    let rec = Recorder::default();
    assert!(matches!(
        go(&w, &f, "resume", None, &rec).await,
        RunOutcome::Succeeded { .. }
    ));
    let ev = rec.events.lock().unwrap().clone();
    assert_eq!(
        ev,
        vec!["skip vpc-cidr", "skip subnet", "start eniconfig #2", "start addon #1"]
    );
}

#[tokio::test]
async fn transient_errors_are_retried_within_the_policy() {
    let w = World::default();
    *w.fail.lock().unwrap() = Some(("subnet".into(), ErrorClass::Throttled, 2));
    let f = fixture(&w).await;
    let rec = Recorder::default();
    let policy = RetryPolicy {
        attempts: 3,
        first_delay: std::time::Duration::ZERO,
        max_delay: std::time::Duration::ZERO,
    };
    let out = execute(Run {
        env: &w,
        steps: &f.steps,
        state: &f.state,
        saved: &f.saved,
        command: "apply",
        observer: &rec,
        hooks: None,
        retry: policy,
        stop_after: None,
    })
    .await
    .unwrap();
    assert!(matches!(out, RunOutcome::Succeeded { .. }));
    assert_eq!(
        rec.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.starts_with("retry subnet"))
            .count(),
        2
    );
    // Permission errors are not retried.
    let w = World::default();
    *w.fail.lock().unwrap() = Some(("subnet".into(), ErrorClass::Permission, 1));
    let f = fixture(&w).await;
    let out = execute(Run {
        env: &w,
        steps: &f.steps,
        state: &f.state,
        saved: &f.saved,
        command: "apply",
        observer: &Silent,
        hooks: None,
        retry: policy,
        stop_after: None,
    })
    .await
    .unwrap();
    assert!(matches!(out, RunOutcome::Failed { .. }));
}

#[tokio::test]
async fn torn_and_corrupt_journals_are_reported_before_anything_runs() {
    let w = World::default();
    let f = fixture(&w).await;
    go(&w, &f, "apply", Some(&CrashAfterStarted("eniconfig".into())), &Silent).await;
    let path = f.state.journal_path();
    let good = std::fs::read(&path).unwrap();
    let muts = w.mutations();

    std::fs::write(&path, &good[..good.len() - 7]).unwrap();
    let err = execute(Run {
        env: &w,
        steps: &f.steps,
        state: &f.state,
        saved: &f.saved,
        command: "resume",
        observer: &Silent,
        hooks: None,
        retry: RetryPolicy::none(),
        stop_after: None,
    })
    .await
    .unwrap_err();
    assert!(matches!(err, EngineError::Journal(JournalError::Torn { .. })), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap().len(),
        good.len() - 7,
        "never silently truncated"
    );

    let mut bad = good.clone();
    let i = bad.len() / 2;
    bad[i] = bad[i].wrapping_add(1);
    std::fs::write(&path, &bad).unwrap();
    let err = execute(Run {
        env: &w,
        steps: &f.steps,
        state: &f.state,
        saved: &f.saved,
        command: "resume",
        observer: &Silent,
        hooks: None,
        retry: RetryPolicy::none(),
        stop_after: None,
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, EngineError::Journal(JournalError::Corrupt { .. })),
        "{err}"
    );
    assert_eq!(w.mutations(), muts, "nothing ran against a bad journal");
}
