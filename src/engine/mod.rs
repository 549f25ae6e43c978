//! The step engine: the saga-shaped core every migration unit runs in. A
//! unit has a stable id, a read-only `observe` that yields planned changes,
//! and an idempotent `apply` whose typed output later units read through a
//! typed handle. The journal records `Started` before a unit's side effects
//! and `Succeeded{outputs}`/`Failed{error}` after; resume replays the saved
//! plan from it. A lock keeps two podnet processes off one cluster. Nothing
//! here calls AWS or Kubernetes; only `error` knows their error types, to
//! carry their fixes.

pub mod change;
pub mod crash;
pub mod error;
pub mod journal;
pub mod lock;
pub mod overview;
pub mod remote;
pub mod runner;
pub mod session;
pub mod state;
pub mod step;

pub use change::{Action, After, Attribute, Change, ChangeCounts, StepPlan, render_step_plan};
pub use error::{ErrorClass, NOTHING_SAVED, StepError};
pub use journal::{Event, Journal, JournalError, JournalState, Record, RunEnd, StepState, StepStatus};
pub use lock::{LockError, LockGuard, LockHolder, LockState};
pub use overview::{Overview, Phase};
pub use runner::{EngineError, Hooks, Observer, RetryPolicy, Run, RunOutcome, Silent, check_plan, execute};
pub use state::{SavedPlan, StateDir, StateError, VersionMismatch, fingerprint};
pub use step::{Checkpoints, OutputOf, Produces, Recorded, Step, StepCtx, Unit, UnitCtx};

#[cfg(test)]
mod tests;
