//! Which plan runs and how far: saved plans that differ from the built
//! steps, a held lock, planning without writes, and `--stop-after`.

use super::*;

#[tokio::test]
async fn a_saved_plan_from_other_steps_is_refused() {
    let w = World::default();
    let mut f = fixture(&w).await;
    f.steps.pop();
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
    assert!(matches!(err, EngineError::PlanMismatch { .. }));
}

#[tokio::test]
async fn a_saved_plan_whose_units_say_other_things_is_refused() {
    let w = World::default();
    let mut f = fixture(&w).await;
    // Same ids, but the approved subnet unit did something else.
    f.saved.steps[1].description = "ensure another-subnet".into();
    let err = check_plan(&f.saved, &f.steps).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("subnet (ensure another-subnet)"), "{msg}");
    assert!(msg.contains("subnet (ensure subnet)"), "{msg}");
    assert!(msg.contains("podnet apply --replan"), "{msg}");
}

#[tokio::test]
async fn a_held_lock_refuses_a_second_apply() {
    let w = World::default();
    let f = fixture(&w).await;
    let first = lock::acquire(&f.state.lock_path(), "apply").unwrap();
    let second = lock::acquire(&f.state.lock_path(), "apply");
    assert!(matches!(second, Err(LockError::Held { .. })));
    drop(first);
    let _again = lock::acquire(&f.state.lock_path(), "resume").unwrap();
}

#[tokio::test]
async fn planning_never_writes() {
    let w = World::default();
    let f = fixture(&w).await;
    assert_eq!(w.mutations(), 0);
    assert!(!f.state.has_journal());
    // The unknown parent output renders as known-after-apply.
    let plan = &f.saved.steps[1];
    assert_eq!(plan.changes[0].attributes[0].after, After::KnownAfterApply);
    let ids: HashSet<&str> = f.saved.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(ids.len(), 4);
}

#[tokio::test]
async fn stop_after_pauses_cleanly_and_resume_continues() {
    let (want, want_muts) = reference().await;
    let w = World::default();
    let f = fixture(&w).await;
    let out = execute(Run {
        env: &w,
        steps: &f.steps,
        state: &f.state,
        saved: &f.saved,
        command: "apply",
        observer: &Silent,
        hooks: None,
        retry: RetryPolicy::none(),
        stop_after: Some("subnet"),
    })
    .await
    .unwrap();
    assert!(
        matches!(&out, RunOutcome::Stopped { after, .. } if after == "subnet"),
        "{out:?}"
    );
    assert!(w.get("eniconfig").is_none());
    let state = JournalState::from_records(&journal::read(&f.state.journal_path()).unwrap());
    assert_eq!(state.last_run().unwrap().outcome, Some(RunEnd::Stopped));
    assert!(!state.is_complete());
    assert!(matches!(
        go(&w, &f, "resume", None, &Silent).await,
        RunOutcome::Succeeded { .. }
    ));
    assert_eq!((w.snapshot(), w.mutations()), (want, want_muts));
    let bad = execute(Run {
        env: &w,
        steps: &f.steps,
        state: &f.state,
        saved: &f.saved,
        command: "resume",
        observer: &Silent,
        hooks: None,
        retry: RetryPolicy::none(),
        stop_after: Some("nope"),
    })
    .await;
    assert!(matches!(bad, Err(EngineError::UnknownStep(..))));
}
