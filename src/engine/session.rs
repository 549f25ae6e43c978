//! What a command finds in the state directory before it runs anything, and
//! the policy for it, kept here rather than in the commands: a new apply
//! archives a finished journal, sets an unfinished one aside only when asked
//! (`--replan`) and otherwise refuses; a resume replays the saved plan of
//! this podnet version, refuses a changed plan file, and knows which units
//! are left. The commands only print what these return.

use std::path::PathBuf;

use serde::Serialize;

use super::journal::{self, JournalError, JournalState};
use super::overview::Overview;
use super::state::{SavedPlan, StateDir, StateError, VersionMismatch, fingerprint};

/// What a new apply did with the journal it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Previous {
    /// No journal: a first apply.
    None,
    /// The previous migration finished; its journal was archived here.
    Finished(PathBuf),
    /// An unfinished apply was set aside (`--replan`) here.
    SetAside(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(
        "an apply started at {started_at} is unfinished (state directory {}). Run `podnet resume` to continue it, or `podnet apply --replan` to set it aside and plan again",
        dir.display()
    )]
    Unfinished { started_at: String, dir: PathBuf },
    #[error("nothing to resume: no saved plan in {} (start with `podnet apply`)", dir.display())]
    NothingToResume { dir: PathBuf },
    #[error(
        "{} changed since this apply began; resume replays the approved plan and would ignore the change. Restore the file to continue, or run `podnet apply --replan` to plan again with it",
        file.display()
    )]
    PlanFileChanged { file: PathBuf },
    #[error(transparent)]
    Version(#[from] VersionMismatch),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Readies the state directory for a new apply (see [`Previous`]).
pub fn begin_apply(state: &StateDir, replan: bool) -> Result<Previous, SessionError> {
    state.ensure()?;
    if !state.has_journal() {
        return Ok(Previous::None);
    }
    let history = JournalState::from_records(&journal::read(&state.journal_path())?);
    if history.is_complete() {
        return Ok(Previous::Finished(state.archive()?));
    }
    if replan {
        return Ok(Previous::SetAside(state.archive()?));
    }
    Err(SessionError::Unfinished {
        started_at: history.last_run().map(|r| r.started_at.to_string()).unwrap_or_default(),
        dir: state.root().to_path_buf(),
    })
}

/// What `podnet resume` replays.
#[derive(Debug)]
pub struct Resumable {
    pub saved: SavedPlan,
    pub history: JournalState,
    /// The units not yet succeeded, in plan order.
    pub left: Vec<String>,
    /// Where a torn last journal line was set aside (`--repair-journal`).
    pub repaired: Option<PathBuf>,
}

/// The plan file as resume sees it: its path, and its validated contents
/// when it still reads (it may be gone; the saved plan is what runs).
pub struct PlanFile<'a, S: Serialize> {
    pub path: &'a std::path::Path,
    pub current: Option<&'a S>,
}

/// Loads what a resume replays, refusing a plan saved by another podnet
/// version or a plan file changed since it was approved.
pub fn resumable<S: Serialize>(
    state: &StateDir,
    plan_file: PlanFile<'_, S>,
    repair_journal: bool,
) -> Result<Resumable, SessionError> {
    let saved = state.load_plan()?.ok_or_else(|| SessionError::NothingToResume {
        dir: state.root().to_path_buf(),
    })?;
    let repaired = if repair_journal {
        journal::repair_torn_tail(&state.journal_path())?
    } else {
        None
    };
    let records = match journal::read(&state.journal_path()) {
        Ok(r) => r,
        Err(JournalError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(e.into()),
    };
    let history = JournalState::from_records(&records);
    if let Some(current) = plan_file.current
        && fingerprint(current) != saved.spec_fingerprint
    {
        return Err(SessionError::PlanFileChanged {
            file: plan_file.path.to_path_buf(),
        });
    }
    saved.written_by_this_version()?;
    let left = Overview::of(&history, Some(&saved)).left;
    Ok(Resumable {
        saved,
        history,
        left,
        repaired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(spec: &serde_json::Value) -> SavedPlan {
        SavedPlan::new("c", "r", None, fingerprint(spec), vec![], serde_json::json!({}))
    }

    #[test]
    fn a_first_apply_finds_nothing_and_resume_has_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path().join("s"));
        assert_eq!(begin_apply(&state, false).unwrap(), Previous::None);
        let none: PlanFile<'_, serde_json::Value> = PlanFile {
            path: std::path::Path::new("podnet.toml"),
            current: None,
        };
        let e = resumable(&state, none, false).unwrap_err();
        assert!(matches!(e, SessionError::NothingToResume { .. }), "{e}");
        assert!(e.to_string().contains("start with `podnet apply`"), "{e}");
    }

    #[test]
    fn resume_refuses_a_changed_plan_file_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path());
        let approved = serde_json::json!({"cluster": "c"});
        state.save_plan(&saved(&approved)).unwrap();
        let same = resumable(
            &state,
            PlanFile {
                path: std::path::Path::new("podnet.toml"),
                current: Some(&approved),
            },
            false,
        )
        .unwrap();
        assert!(same.left.is_empty() && same.repaired.is_none());
        let edited = serde_json::json!({"cluster": "d"});
        let e = resumable(
            &state,
            PlanFile {
                path: std::path::Path::new("podnet.toml"),
                current: Some(&edited),
            },
            false,
        )
        .unwrap_err();
        assert!(matches!(e, SessionError::PlanFileChanged { .. }), "{e}");
        assert!(
            e.to_string().starts_with("podnet.toml changed since this apply began"),
            "{e}"
        );
    }
}
