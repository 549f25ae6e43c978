//! Runs an approved plan's steps in order against the journal: `StepStarted`
//! (fsynced) before a step's side effects, `StepSucceeded{outputs}` or
//! `StepFailed{error}` after. The same function serves `apply` (empty
//! journal) and `resume` (a journal with history): a step that succeeded is
//! not run again, only re-observed so drift is reported; a step left
//! `Started` or `Failed` runs again, and its idempotent apply copes.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use super::change::{StepPlan, render_step_plan};
use super::error::StepError;
use super::journal::{Event, Journal, JournalError, JournalState, RunEnd, StepState, StepStatus};
use super::lock::this_host;
use super::state::{SavedPlan, StateDir, StateError};
use super::step::{Recorded, Step, StepCtx, is_unit_of};

/// The one progress reporter of a run (the CLI draws it; tests may record
/// it): the read-only phases before it (discovery, planning), each unit's
/// start and end, and what a unit is waiting for.
pub trait Observer: Send + Sync {
    /// A read-only phase: what podnet is reading or working out now.
    fn phase(&self, _message: &str) {}
    /// The phases are over (their output follows).
    fn phase_done(&self) {}
    /// What unit `step` is doing or waiting for now.
    fn status(&self, _step: &str, _message: &str) {}
    fn step_started(&self, _step: &str, _description: &str, _attempt: u32) {}
    /// Already succeeded in an earlier run.
    fn step_skipped(&self, _step: &str) {}
    fn step_drift(&self, _step: &str, _plan: &StepPlan) {}
    fn step_retrying(&self, _step: &str, _error: &StepError, _delay: Duration) {}
    fn step_succeeded(&self, _step: &str, _outputs: &Recorded) {}
    fn step_failed(&self, _step: &str, _error: &StepError) {}
}

/// An observer that draws nothing.
pub struct Silent;

impl Observer for Silent {}

/// Fault injection for tests: return `true` from `after_started` to stop the
/// run right after a step's `StepStarted` is durable, as `kill -9` would.
pub trait Hooks: Send + Sync {
    fn after_started(&self, _step: &str) -> bool {
        false
    }
}

/// Engine-level retries of a whole step for throttling and transient errors,
/// on top of the SDKs' own per-request retries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: usize,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    pub fn none() -> Self {
        RetryPolicy {
            attempts: 1,
            first_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        }
    }
}

/// One `apply` or `resume` of a saved plan.
pub struct Run<'a, E: ?Sized + Sync> {
    pub env: &'a E,
    pub steps: &'a [Box<dyn Step<E>>],
    pub state: &'a StateDir,
    pub saved: &'a SavedPlan,
    /// `apply` or `resume`, for the journal.
    pub command: &'a str,
    pub observer: &'a dyn Observer,
    pub hooks: Option<&'a dyn Hooks>,
    pub retry: RetryPolicy,
    /// Stop (cleanly, resumable) once this step has succeeded.
    pub stop_after: Option<&'a str>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum RunOutcome {
    Succeeded {
        outputs: BTreeMap<String, Recorded>,
    },
    Failed {
        step: String,
        error: StepError,
    },
    /// Stopped with `step` in flight; `podnet resume` continues.
    Interrupted {
        step: String,
    },
    /// Stopped after `after` as asked (`--stop-after`); `podnet resume` continues.
    Stopped {
        after: String,
        outputs: BTreeMap<String, Recorded>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "the saved plan has units [{saved}] but its inputs build [{built}]: it cannot be replayed as approved; finish the migration with the podnet version that started it, or run `podnet apply --replan` to plan again"
    )]
    PlanMismatch { saved: String, built: String },
    #[error("--stop-after {0}: no such step; the steps are {1}")]
    UnknownStep(String, String),
}

/// Refuses units that differ from the ones the saved plan approved: their
/// ids and what each says it does (its nodes, its node group, its CIDR), so
/// the saved plan is exactly what runs.
pub fn check_plan<E: ?Sized + Sync>(saved: &SavedPlan, steps: &[Box<dyn Step<E>>]) -> Result<(), EngineError> {
    let saved_units: Vec<(&str, &str)> = saved
        .steps
        .iter()
        .map(|s| (s.step.as_str(), s.description.as_str()))
        .collect();
    let descriptions: Vec<String> = steps.iter().map(|s| s.describe()).collect();
    let built_units: Vec<(&str, &str)> = steps
        .iter()
        .zip(&descriptions)
        .map(|(s, d)| (s.id(), d.as_str()))
        .collect();
    if saved_units != built_units {
        let differ = |units: &[(&str, &str)]| {
            units
                .iter()
                .map(|(id, d)| format!("{id} ({d})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(EngineError::PlanMismatch {
            saved: differ(&saved_units),
            built: differ(&built_units),
        });
    }
    Ok(())
}

/// Runs (or continues) the saved plan.
pub async fn execute<E: ?Sized + Sync>(run: Run<'_, E>) -> Result<RunOutcome, EngineError> {
    check_plan(run.saved, run.steps)?;
    let stop_after = resolve_stop_after(run.steps, run.stop_after)?;
    run.state.ensure()?;
    let (journal, records) = run.state.open_journal()?;
    let history = JournalState::from_records(&records);
    let journal = Mutex::new(journal);

    let run_id = uuid::Uuid::new_v4().to_string();
    append(
        &journal,
        Event::RunStarted {
            run_id: run_id.clone(),
            command: run.command.to_string(),
            podnet_version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            host: this_host(),
            plan_fingerprint: run.saved.fingerprint.clone(),
        },
    )?;

    let mut outputs: BTreeMap<String, Recorded> = BTreeMap::new();
    for step in run.steps {
        let step = step.as_ref();
        let id = step.id();
        let past = history.step(id);
        if let Some(done) = past.filter(|s| s.status == StepStatus::Succeeded) {
            let out = done.outputs.clone().unwrap_or(Recorded::Null);
            reobserve(&run, step, &outputs, &journal).await?;
            outputs.insert(id.to_string(), out);
        } else {
            let Some(result) = attempt(&run, step, past, &outputs, &journal).await? else {
                return Ok(RunOutcome::Interrupted { step: id.to_string() });
            };
            match result {
                Ok(out) => {
                    append(
                        &journal,
                        Event::StepSucceeded {
                            step: id.to_string(),
                            outputs: out.clone(),
                        },
                    )?;
                    run.observer.step_succeeded(id, &out);
                    outputs.insert(id.to_string(), out);
                }
                // A step reports Interrupted only when the run must stop as if
                // killed: nothing more is written, so the step stays Started.
                Err(e) if e.is_interrupted() => return Ok(RunOutcome::Interrupted { step: id.to_string() }),
                Err(e) => return fail(&run, &journal, run_id, id, e),
            }
        }
        if stop_after == Some(id) {
            append(
                &journal,
                Event::RunFinished {
                    run_id,
                    outcome: RunEnd::Stopped,
                },
            )?;
            return Ok(RunOutcome::Stopped {
                after: id.to_string(),
                outputs,
            });
        }
    }
    append(
        &journal,
        Event::RunFinished {
            run_id,
            outcome: RunEnd::Succeeded,
        },
    )?;
    Ok(RunOutcome::Succeeded { outputs })
}

/// The unit `--stop-after` stops after.
fn resolve_stop_after<'a, E: ?Sized + Sync>(
    steps: &'a [Box<dyn Step<E>>],
    stop_after: Option<&str>,
) -> Result<Option<&'a str>, EngineError> {
    let built_ids: Vec<&str> = steps.iter().map(|s| s.id()).collect();
    // `--stop-after` a step the plan expanded stops after its last unit.
    Ok(match stop_after {
        None => None,
        Some(stop) => Some(
            built_ids
                .iter()
                .rev()
                .find(|id| is_unit_of(id, stop))
                .copied()
                .ok_or_else(|| EngineError::UnknownStep(stop.to_string(), built_ids.join(", ")))?,
        ),
    })
}

fn append(journal: &Mutex<Journal>, e: Event) -> Result<(), JournalError> {
    // A poisoned mutex means a panic mid-append elsewhere; the file
    // itself is still append-only and verified on the next open.
    let mut j = journal.lock().unwrap_or_else(|p| p.into_inner());
    j.append(e).map(|_| ())
}

/// A unit that succeeded in an earlier run: reported as skipped, and its
/// drift since then journaled.
async fn reobserve<E: ?Sized + Sync>(
    run: &Run<'_, E>,
    step: &dyn Step<E>,
    outputs: &BTreeMap<String, Recorded>,
    journal: &Mutex<Journal>,
) -> Result<(), JournalError> {
    let id = step.id();
    run.observer.step_skipped(id);
    // Cheap re-observe: a succeeded step is not re-applied, but the
    // user hears about anything that changed since.
    let ctx = StepCtx::planning(id, outputs);
    let summary = match step.observe(run.env, &ctx).await {
        Ok(plan) if plan.has_changes() => {
            run.observer.step_drift(id, &plan);
            Some(render_step_plan(&plan))
        }
        Ok(_) => None,
        Err(e) => Some(vec![format!("could not re-observe: {e}")]),
    };
    if let Some(summary) = summary {
        append(
            journal,
            Event::StepDrift {
                step: id.to_string(),
                summary,
            },
        )?;
    }
    Ok(())
}

/// Applies a unit, again after retryable errors while the policy allows;
/// `None` when the test hooks stopped the run right after `StepStarted`.
async fn attempt<E: ?Sized + Sync>(
    run: &Run<'_, E>,
    step: &dyn Step<E>,
    past: Option<&StepState>,
    outputs: &BTreeMap<String, Recorded>,
    journal: &Mutex<Journal>,
) -> Result<Option<Result<Recorded, StepError>>, JournalError> {
    let id = step.id();
    let mut attempt = past.map_or(0, |s| s.attempts);
    let mut progress = past.map(|s| s.progress.clone()).unwrap_or_default();
    let mut delay = run.retry.first_delay;
    let mut tries_left = run.retry.attempts.max(1);
    loop {
        attempt += 1;
        tries_left -= 1;
        append(
            journal,
            Event::StepStarted {
                step: id.to_string(),
                attempt,
            },
        )?;
        run.observer.step_started(id, &step.describe(), attempt);
        if run.hooks.is_some_and(|h| h.after_started(id)) {
            return Ok(None);
        }
        let mut ctx = StepCtx::running(id, outputs, progress.clone(), journal);
        let r = step.apply(run.env, &mut ctx).await;
        progress = ctx.into_progress();
        match r {
            Err(e) if e.class.is_retryable() && tries_left > 0 => {
                run.observer.step_retrying(id, &e, delay);
                append(
                    journal,
                    Event::StepFailed {
                        step: id.to_string(),
                        error: e,
                    },
                )?;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(run.retry.max_delay);
            }
            other => return Ok(Some(other)),
        }
    }
}

/// A unit failed for good: the run ends here, resumable.
fn fail<E: ?Sized + Sync>(
    run: &Run<'_, E>,
    journal: &Mutex<Journal>,
    run_id: String,
    id: &str,
    e: StepError,
) -> Result<RunOutcome, EngineError> {
    append(
        journal,
        Event::StepFailed {
            step: id.to_string(),
            error: e.clone(),
        },
    )?;
    append(
        journal,
        Event::RunFinished {
            run_id,
            outcome: RunEnd::Failed,
        },
    )?;
    run.observer.step_failed(id, &e);
    Ok(RunOutcome::Failed {
        step: id.to_string(),
        error: e,
    })
}
