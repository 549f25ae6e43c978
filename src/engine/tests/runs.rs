//! A run and its resumes converge: every step applied twice, a crash after
//! each `Started` and after each side effect, two crashes, a finished
//! journal resumed, and drift of a succeeded step.

use super::*;

#[tokio::test]
async fn a_clean_run_succeeds_and_journals_every_step() {
    let w = World::default();
    let f = fixture(&w).await;
    assert!(f.saved.steps.iter().all(|p| p.has_changes()));
    let RunOutcome::Succeeded { outputs } = go(&w, &f, "apply", None, &Silent).await else {
        panic!()
    };
    assert_eq!(outputs["subnet"]["id"], "id-2");
    assert_eq!(w.get("eniconfig").unwrap().1, "child-of-id-2");
    let state = JournalState::from_records(&journal::read(&f.state.journal_path()).unwrap());
    assert!(state.is_complete());
    assert_eq!(state.steps.len(), 4);
    assert!(
        state
            .steps
            .iter()
            .all(|s| s.status == StepStatus::Succeeded && s.attempts == 1)
    );
    assert_eq!(w.tokens_seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn every_step_applied_twice_has_no_extra_effect() {
    let w = World::default();
    let f = fixture(&w).await;
    go(&w, &f, "apply", None, &Silent).await;
    let (snap, muts) = (w.snapshot(), w.mutations());
    // Each step's apply again, directly, with the recorded outputs.
    let state = JournalState::from_records(&journal::read(&f.state.journal_path()).unwrap());
    let outputs: BTreeMap<String, Recorded> = state
        .steps
        .iter()
        .map(|s| (s.step.clone(), s.outputs.clone().unwrap()))
        .collect();
    let journal = Mutex::new(Journal::open(&f.state.journal_path()).unwrap().0);
    for s in &f.steps {
        let progress = state.step(s.id()).unwrap().progress.clone();
        let mut ctx = StepCtx::running(s.id(), &outputs, progress, &journal);
        let out = s.apply(&w, &mut ctx).await.unwrap();
        assert_eq!(
            out,
            outputs[s.id()],
            "{} gave different outputs the second time",
            s.id()
        );
    }
    assert_eq!(w.snapshot(), snap);
    assert_eq!(w.mutations(), muts, "a second apply mutated the world");
    // And a whole new migration over the finished world changes nothing.
    f.state.archive().unwrap();
    let plans = plan_of(&w, &f.steps).await;
    assert!(plans.iter().all(|p| !p.has_changes()), "{plans:#?}");
    go(&w, &f, "apply", None, &Silent).await;
    assert_eq!(w.mutations(), muts);
}

#[tokio::test]
async fn a_crash_after_each_started_resumes_to_the_same_end_state() {
    let (want, want_muts) = reference().await;
    for crash_at in ["vpc-cidr", "subnet", "eniconfig", "addon"] {
        let w = World::default();
        let f = fixture(&w).await;
        let hook = CrashAfterStarted(crash_at.to_string());
        let out = go(&w, &f, "apply", Some(&hook), &Silent).await;
        assert_eq!(out, RunOutcome::Interrupted { step: crash_at.into() });
        let state = JournalState::from_records(&journal::read(&f.state.journal_path()).unwrap());
        assert_eq!(state.step(crash_at).unwrap().status, StepStatus::Started, "{crash_at}");
        let rec = Recorder::default();
        assert!(
            matches!(go(&w, &f, "resume", None, &rec).await, RunOutcome::Succeeded { .. }),
            "{crash_at}"
        );
        assert_eq!(w.snapshot(), want, "crash at {crash_at}");
        assert_eq!(w.mutations(), want_muts, "crash at {crash_at}");
        let events = rec.events.lock().unwrap().clone();
        assert!(events.contains(&format!("start {crash_at} #2")), "{events:?}");
    }
}

#[tokio::test]
async fn a_crash_after_each_side_effect_resumes_without_duplicates() {
    let (want, want_muts) = reference().await;
    for crash_at in ["vpc-cidr", "subnet", "eniconfig", "addon"] {
        let w = World::default();
        *w.crash_after_effect.lock().unwrap() = Some(crash_at.to_string());
        let f = fixture(&w).await;
        assert_eq!(
            go(&w, &f, "apply", None, &Silent).await,
            RunOutcome::Interrupted { step: crash_at.into() }
        );
        assert!(matches!(
            go(&w, &f, "resume", None, &Silent).await,
            RunOutcome::Succeeded { .. }
        ));
        assert_eq!(w.snapshot(), want, "crash at {crash_at}");
        assert_eq!(w.mutations(), want_muts, "crash at {crash_at}");
        // The checkpointed request token was reused, not regenerated.
        assert_eq!(w.tokens_seen.lock().unwrap().len(), 1, "crash at {crash_at}");
    }
}

#[tokio::test]
async fn crashing_twice_still_converges() {
    let (want, want_muts) = reference().await;
    let w = World::default();
    let f = fixture(&w).await;
    go(&w, &f, "apply", Some(&CrashAfterStarted("subnet".into())), &Silent).await;
    *w.crash_after_effect.lock().unwrap() = Some("addon".into());
    assert!(matches!(
        go(&w, &f, "resume", None, &Silent).await,
        RunOutcome::Interrupted { .. }
    ));
    assert!(matches!(
        go(&w, &f, "resume", None, &Silent).await,
        RunOutcome::Succeeded { .. }
    ));
    assert_eq!((w.snapshot(), w.mutations()), (want, want_muts));
    let state = JournalState::from_records(&journal::read(&f.state.journal_path()).unwrap());
    assert_eq!(state.runs.len(), 3);
    assert_eq!(state.step("addon").unwrap().attempts, 2);
}

#[tokio::test]
async fn resuming_a_finished_journal_changes_nothing() {
    let w = World::default();
    let f = fixture(&w).await;
    go(&w, &f, "apply", None, &Silent).await;
    let (snap, muts) = (w.snapshot(), w.mutations());
    let before = journal::read(&f.state.journal_path()).unwrap().len();
    let rec = Recorder::default();
    assert!(matches!(
        go(&w, &f, "resume", None, &rec).await,
        RunOutcome::Succeeded { .. }
    ));
    assert_eq!((w.snapshot(), w.mutations()), (snap, muts));
    let events = rec.events.lock().unwrap().clone();
    assert_eq!(
        events,
        vec!["skip vpc-cidr", "skip subnet", "skip eniconfig", "skip addon"]
    );
    // Only the run's own start and finish were added.
    assert_eq!(journal::read(&f.state.journal_path()).unwrap().len(), before + 2);
}

#[tokio::test]
async fn drift_of_a_succeeded_step_is_reported_not_reapplied() {
    let w = World::default();
    let f = fixture(&w).await;
    go(&w, &f, "apply", None, &Silent).await;
    w.resources.lock().unwrap().remove("cidr");
    let muts = w.mutations();
    let rec = Recorder::default();
    go(&w, &f, "resume", None, &rec).await;
    assert!(rec.events.lock().unwrap().contains(&"drift vpc-cidr".to_string()));
    assert_eq!(w.mutations(), muts);
    let state = JournalState::from_records(&journal::read(&f.state.journal_path()).unwrap());
    let drift = state.step("vpc-cidr").unwrap().drift.clone().unwrap();
    assert!(drift[0].contains("+ thing cidr"), "{drift:?}");
}
