//! Rollback: the migration undone, back to the cluster as it was before
//! `apply`, built only from what the apply's journal recorded (`record`) and
//! the cluster as it is now (`plan`, what `podnet plan --rollback` shows),
//! and run by the engine as its own journaled saga (`saga`): settings put
//! back (`restore`), nodes replaced off custom networking, then what the
//! apply created removed (`remove`).

pub mod capacity;
pub mod eniconfigs;
pub mod plan;
pub mod record;
pub mod remove;
pub mod restore;
pub mod saga;

use std::path::PathBuf;

use crate::engine::journal::{self, JournalError};
use crate::engine::{JournalState, RunEnd, StateDir, StateError};
use crate::steps::MigrationInputs;

pub use plan::RollbackPlan;
pub use record::{ApplyRecord, RecordError};

/// Why there is nothing, or nothing safe, to roll back.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error("no apply is recorded in {}: there is nothing to roll back", .0.display())]
    NoApply(PathBuf),
    #[error(
        "the apply in {} is unfinished (its last run {outcome}): finish it with `podnet resume` (or let it stop with `--stop-after`), then roll back",
        .dir.display()
    )]
    Unfinished { dir: PathBuf, outcome: String },
    #[error("the saved plan's inputs do not decode ({0}); it was not written by this podnet")]
    Inputs(serde_json::Error),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// The apply recorded in `state`: its approved inputs and what its journal
/// says it did. Refused while the apply is unfinished (running, failed or
/// interrupted); an apply stopped on request (`--stop-after`) is rolled back
/// as far as it went.
pub fn applied(state: &StateDir) -> Result<(MigrationInputs, ApplyRecord), RollbackError> {
    let dir = state.root().to_path_buf();
    let saved = state.load_plan()?.ok_or_else(|| RollbackError::NoApply(dir.clone()))?;
    if !state.has_journal() {
        return Err(RollbackError::NoApply(dir));
    }
    let records = journal::read(&state.journal_path())?;
    let js = JournalState::from_records(&records);
    let outcome = js.last_run().and_then(|r| r.outcome);
    if !matches!(outcome, Some(RunEnd::Succeeded | RunEnd::Stopped)) {
        return Err(RollbackError::Unfinished {
            dir,
            outcome: match outcome {
                None => "has not ended: it is running, or was killed".into(),
                Some(o) => format!("ended {o:?}").to_lowercase(),
            },
        });
    }
    let inputs: MigrationInputs = serde_json::from_value(saved.inputs).map_err(RollbackError::Inputs)?;
    Ok((inputs, record::read(&js)?))
}

#[cfg(test)]
mod tests;
