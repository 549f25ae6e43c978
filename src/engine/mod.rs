//! The step engine: the saga-shaped core every migration step runs in. A
//! step has a stable id, a read-only `observe` that yields planned changes,
//! and an idempotent `apply` whose outputs later steps read by step id. The
//! journal records `Started` before a step's side effects and
//! `Succeeded{outputs}`/`Failed{error}` after; resume replays the saved plan
//! from it. A lock keeps two podnet processes off one cluster. Nothing here
//! knows about AWS or Kubernetes.

pub mod change;
pub mod crash;
pub mod journal;
pub mod lock;
pub mod runner;
pub mod state;
pub mod step;

pub use change::{Action, After, Attribute, Change, ChangeCounts, StepPlan, render_step_plan};
pub use journal::{Event, Journal, JournalError, JournalState, Record, RunEnd, StepState, StepStatus};
pub use lock::{LockError, LockGuard, LockHolder, LockState};
pub use runner::{EngineError, Hooks, Observer, RetryPolicy, Run, RunOutcome, Silent, execute};
pub use state::{SavedPlan, StateDir, StateError, VersionMismatch, fingerprint};
pub use step::{ErrorClass, NOTHING_SAVED, Outputs, Step, StepCtx, StepError};

#[cfg(test)]
mod tests;
