//! Engine tests over an in-memory world: every step twice, a crash after each
//! step's `Started` (and after each step's side effect) in turn, resume of a
//! finished journal, drift, failures and retries, torn and corrupt journals,
//! and the lock. Modelled on omicron's saga tests.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::*;

/// The world steps act on: named resources with ids, and a log of every
/// mutating call so tests can count side effects.
#[derive(Default)]
struct World {
    resources: Mutex<BTreeMap<String, String>>,
    mutations: Mutex<Vec<String>>,
    next_id: Mutex<u32>,
    /// Crash (return Interrupted) right after this step's side effect.
    crash_after_effect: Mutex<Option<String>>,
    /// Fail this step with this class this many times.
    fail: Mutex<Option<(String, ErrorClass, u32)>>,
    /// Request tokens a "remote API" has seen, to prove idempotency tokens survive a crash.
    tokens_seen: Mutex<Vec<String>>,
}

impl World {
    fn snapshot(&self) -> BTreeMap<String, String> {
        self.resources.lock().unwrap().clone()
    }

    fn mutations(&self) -> usize {
        self.mutations.lock().unwrap().len()
    }

    fn create(&self, name: &str, value: String) -> String {
        let mut n = self.next_id.lock().unwrap();
        *n += 1;
        let id = format!("id-{}", *n);
        self.resources
            .lock()
            .unwrap()
            .insert(name.to_string(), format!("{id}:{value}"));
        self.mutations.lock().unwrap().push(format!("create {name}"));
        id
    }

    fn get(&self, name: &str) -> Option<(String, String)> {
        self.resources.lock().unwrap().get(name).map(|v| {
            let (id, value) = v.split_once(':').unwrap();
            (id.to_string(), value.to_string())
        })
    }

    fn maybe_fail(&self, step: &str) -> Result<(), StepError> {
        let mut f = self.fail.lock().unwrap();
        if let Some((s, class, n)) = f.as_mut()
            && s == step
            && *n > 0
        {
            *n -= 1;
            return Err(StepError::new(*class, format!("{step} failed on purpose")));
        }
        Ok(())
    }

    fn maybe_crash(&self, step: &str) -> Result<(), StepError> {
        if self.crash_after_effect.lock().unwrap().as_deref() == Some(step) {
            *self.crash_after_effect.lock().unwrap() = None;
            return Err(StepError::interrupted());
        }
        Ok(())
    }
}

/// Creates resource `name`; if `parent` is set, its value references the
/// parent step's output id (state shared only through outputs).
struct Ensure {
    id: &'static str,
    name: &'static str,
    parent: Option<&'static str>,
    /// Use an idempotency token checkpointed before the side effect.
    token: bool,
}

/// What an `Ensure` records: the resource's id, read by its children.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ensured {
    id: String,
    name: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct EnsureCheckpoint {
    token: Option<String>,
}

impl Ensure {
    fn desired(&self, ctx: &StepCtx<'_>) -> Result<Option<String>, StepError> {
        match self.parent {
            None => Ok(Some("root".to_string())),
            Some(p) => Ok(ctx
                .output(&OutputOf::<Ensure>::new(p))?
                .map(|o| format!("child-of-{}", o.id))),
        }
    }
}

impl Produces for Ensure {
    type Output = Ensured;
}

#[async_trait]
impl Unit<World> for Ensure {
    type Checkpoint = EnsureCheckpoint;

    fn id(&self) -> &str {
        self.id
    }

    fn describe(&self) -> String {
        format!("ensure {}", self.name)
    }

    async fn observe(&self, w: &World, ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let plan = StepPlan::new(self.id, Unit::describe(self));
        let desired = self.desired(ctx)?;
        Ok(match (w.get(self.name), desired) {
            (None, Some(v)) => plan.with(
                Change::new(Action::Create, "thing", self.name)
                    .set("value", v)
                    .unknown("id"),
            ),
            (None, None) => plan.with(
                Change::new(Action::Create, "thing", self.name)
                    .unknown("value")
                    .unknown("id"),
            ),
            (Some((_, have)), Some(want)) if have != want => {
                plan.with(Change::new(Action::Update, "thing", self.name).change("value", have, want))
            }
            (Some(_), _) => plan.with(Change::new(Action::NoOp, "thing", self.name)),
        })
    }

    async fn apply(&self, w: &World, ctx: &mut UnitCtx<'_, '_, EnsureCheckpoint>) -> Result<Ensured, StepError> {
        w.maybe_fail(self.id)?;
        let desired = self
            .desired(ctx)?
            .ok_or_else(|| StepError::failed("parent output missing"))?;
        if self.token {
            let token = ctx.once(|c| &mut c.token, || uuid::Uuid::new_v4().to_string())?;
            let mut seen = w.tokens_seen.lock().unwrap();
            if !seen.contains(&token) {
                seen.push(token);
            }
        }
        let id = match w.get(self.name) {
            Some((id, have)) if have == desired => id,
            Some((_, _)) => {
                // Update in place keeps the id.
                let (id, _) = w.get(self.name).unwrap();
                w.resources
                    .lock()
                    .unwrap()
                    .insert(self.name.to_string(), format!("{id}:{desired}"));
                w.mutations.lock().unwrap().push(format!("update {}", self.name));
                id
            }
            None => w.create(self.name, desired),
        };
        w.maybe_crash(self.id)?;
        Ok(Ensured {
            id,
            name: self.name.to_string(),
        })
    }
}

fn steps() -> Vec<Box<dyn Step<World>>> {
    vec![
        Box::new(Ensure {
            id: "vpc-cidr",
            name: "cidr",
            parent: None,
            token: false,
        }),
        Box::new(Ensure {
            id: "subnet",
            name: "subnet",
            parent: Some("vpc-cidr"),
            token: false,
        }),
        Box::new(Ensure {
            id: "eniconfig",
            name: "eniconfig",
            parent: Some("subnet"),
            token: false,
        }),
        Box::new(Ensure {
            id: "addon",
            name: "addon",
            parent: None,
            token: true,
        }),
    ]
}

async fn plan_of(world: &World, steps: &[Box<dyn Step<World>>]) -> Vec<StepPlan> {
    let outputs = BTreeMap::new();
    let mut plans = Vec::new();
    for s in steps {
        plans.push(s.observe(world, &StepCtx::planning(s.id(), &outputs)).await.unwrap());
    }
    plans
}

struct Fixture {
    _dir: tempfile::TempDir,
    state: StateDir,
    saved: SavedPlan,
    steps: Vec<Box<dyn Step<World>>>,
}

async fn fixture(world: &World) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::at(dir.path().join("state"));
    let steps = steps();
    let plans = plan_of(world, &steps).await;
    let saved = SavedPlan::new("c", "r", None, "spec".into(), plans, json!({}));
    state.save_plan(&saved).unwrap();
    Fixture {
        _dir: dir,
        state,
        saved,
        steps,
    }
}

struct CrashAfterStarted(String);

impl Hooks for CrashAfterStarted {
    fn after_started(&self, step: &str) -> bool {
        step == self.0
    }
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
}

impl Observer for Recorder {
    fn step_started(&self, step: &str, _: &str, attempt: u32) {
        self.events.lock().unwrap().push(format!("start {step} #{attempt}"));
    }
    fn step_skipped(&self, step: &str) {
        self.events.lock().unwrap().push(format!("skip {step}"));
    }
    fn step_drift(&self, step: &str, _: &StepPlan) {
        self.events.lock().unwrap().push(format!("drift {step}"));
    }
    fn step_retrying(&self, step: &str, _: &StepError, _: std::time::Duration) {
        self.events.lock().unwrap().push(format!("retry {step}"));
    }
    fn step_failed(&self, step: &str, _: &StepError) {
        self.events.lock().unwrap().push(format!("fail {step}"));
    }
}

async fn go(world: &World, f: &Fixture, command: &str, hooks: Option<&dyn Hooks>, obs: &dyn Observer) -> RunOutcome {
    execute(Run {
        env: world,
        steps: &f.steps,
        state: &f.state,
        saved: &f.saved,
        command,
        observer: obs,
        hooks,
        retry: RetryPolicy::none(),
        stop_after: None,
    })
    .await
    .unwrap()
}

/// The end state of an uninterrupted run.
async fn reference() -> (BTreeMap<String, String>, usize) {
    let w = World::default();
    let f = fixture(&w).await;
    assert!(matches!(
        go(&w, &f, "apply", None, &Silent).await,
        RunOutcome::Succeeded { .. }
    ));
    (w.snapshot(), w.mutations())
}

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
