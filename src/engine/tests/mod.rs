//! Engine tests over an in-memory world: every step twice, a crash after each
//! step's `Started` (and after each step's side effect) in turn, resume of a
//! finished journal, drift, failures and retries, torn and corrupt journals,
//! and the lock. Modelled on omicron's saga tests.
//!
//! This module holds the world, its steps and the run fixtures; the tests
//! are in `runs`, `failures` and `plans`.

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

mod failures;
mod plans;
mod runs;
