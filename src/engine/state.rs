//! The state directory of one cluster's migration and what lives in it:
//!
//! ```text
//! <state-dir>/plan.json       the approved plan apply runs and resume replays
//! <state-dir>/journal.jsonl   the intent log (see journal.rs)
//! <state-dir>/lock            the apply lock (see lock.rs)
//! <state-dir>/archive/        journals and plans of finished migrations
//! ```
//!
//! By default it is `$XDG_STATE_HOME/podnet/<cluster>.<region>` (so
//! `~/.local/state/podnet/podnet-demo.ap-northeast-2` on Linux); `--state-dir`
//! or `PODNET_STATE_DIR` names the directory itself. With shared state
//! (`--state s3://…`) the directory is a working copy of the store's
//! ([`super::remote`]), refreshed when a command starts.

use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::change::StepPlan;
use super::journal::{Journal, JournalError, Record};
use super::lock::{self, LockError, LockGuard, LockHolder, LockState};
use super::remote::{Remote, RemoteError};

pub const SAVED_PLAN_FORMAT: u32 = 1;

/// The state directory of one cluster: a local directory, and with shared
/// state the object store it is a working copy of (see [`super::remote`]).
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    remote: Option<Remote>,
}

impl PartialEq for StateDir {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root && self.remote.as_ref().map(Remote::url) == other.remote.as_ref().map(Remote::url)
    }
}

impl Eq for StateDir {}

/// A held lock: the local one, and the shared state's when there is one
/// (deleted on drop if it is still ours).
#[derive(Debug)]
pub struct StateLock {
    _local: LockGuard,
    shared: Option<(Remote, LockHolder)>,
    /// A lock left by a dead process on this machine that was taken over.
    pub took_over: Option<LockHolder>,
}

impl Drop for StateLock {
    fn drop(&mut self) {
        if let Some((remote, me)) = self.shared.take()
            && let Err(e) = remote.unlock_if(&me)
        {
            tracing::warn!("releasing the shared state's lock: {e}");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a podnet saved plan ({reason}); it was written by another podnet version or edited", path.display())]
    BadPlan { path: PathBuf, reason: String },
    #[error("cannot find a per-user state directory (no HOME); pass --state-dir")]
    NoHome,
    #[error("shared state {0}")]
    Remote(#[from] RemoteError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl StateDir {
    /// `--state-dir` as given.
    pub fn at(root: impl Into<PathBuf>) -> StateDir {
        StateDir {
            root: root.into(),
            remote: None,
        }
    }

    /// Shared state: `remote` is the truth, `cache` the working copy.
    pub fn shared(cache: impl Into<PathBuf>, remote: Remote) -> StateDir {
        StateDir {
            root: cache.into(),
            remote: Some(remote),
        }
    }

    pub fn remote(&self) -> Option<&Remote> {
        self.remote.as_ref()
    }

    /// Where the state is, for messages: the store's URL, or the directory.
    pub fn location(&self) -> String {
        match &self.remote {
            Some(r) => r.url(),
            None => self.root.display().to_string(),
        }
    }

    /// A sub-directory (a rollback's state), shared when this one is.
    pub fn child(&self, name: &str) -> StateDir {
        StateDir {
            root: self.root.join(name),
            remote: self.remote.as_ref().map(|r| r.child(name)),
        }
    }

    /// Refreshes the working copy from the store (nothing for local state).
    pub fn pull(&self) -> Result<(), StateError> {
        if let Some(r) = &self.remote {
            self.ensure()?;
            r.pull(&self.root)?;
        }
        Ok(())
    }

    /// Opens the journal for appending; with shared state each record is
    /// created in the store first.
    pub fn open_journal(&self) -> Result<(Journal, Vec<Record>), JournalError> {
        let (j, records) = Journal::open(&self.journal_path())?;
        Ok((j.with_remote(self.remote.clone()), records))
    }

    /// Takes the apply lock for `command`: the local lock file, and with
    /// shared state the store's lock object.
    pub fn lock(&self, command: &str) -> Result<StateLock, LockError> {
        std::fs::create_dir_all(&self.root).map_err(|source| LockError::Io {
            path: self.root.clone(),
            source,
        })?;
        let local = lock::acquire(&self.lock_path(), command)?;
        let mut took_over = local.took_over.clone();
        let shared = match &self.remote {
            None => None,
            Some(r) => {
                let me = LockHolder::current(command);
                if let Some(holder) = r.lock(&me, &mut took_over)? {
                    return Err(LockError::HeldShared { holder, url: r.url() });
                }
                Some((r.clone(), me))
            }
        };
        Ok(StateLock {
            _local: local,
            shared,
            took_over,
        })
    }

    /// The lock as `status` and `unlock` see it: the store's with shared
    /// state (a holder on another machine cannot be checked: `Left`).
    pub fn inspect_lock(&self) -> Result<LockState, LockError> {
        match &self.remote {
            None => lock::inspect(&self.lock_path()),
            Some(r) => Ok(match r.holder()? {
                None => LockState::Free,
                Some(h) if h.is_alive() == Some(true) => LockState::HeldLive(h),
                Some(h) => LockState::Left(h),
            }),
        }
    }

    /// Releases a lock left behind (refusing one a live local process holds).
    pub fn release_lock(&self) -> Result<Option<LockHolder>, LockError> {
        match &self.remote {
            None => lock::release(&self.lock_path()),
            Some(r) => match self.inspect_lock()? {
                LockState::Free => Ok(None),
                LockState::HeldLive(holder) => Err(LockError::HeldShared { holder, url: r.url() }),
                LockState::Left(h) => {
                    r.release()?;
                    Ok(Some(h))
                }
            },
        }
    }

    /// The per-user default for a cluster.
    pub fn default_for(cluster: &str, region: &str) -> Result<StateDir, StateError> {
        let base = dirs::state_dir()
            .or_else(dirs::data_local_dir)
            .ok_or(StateError::NoHome)?;
        Ok(StateDir::at(base.join("podnet").join(format!("{cluster}.{region}"))))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ensure(&self) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))
    }

    pub fn plan_path(&self) -> PathBuf {
        self.root.join("plan.json")
    }

    pub fn journal_path(&self) -> PathBuf {
        self.root.join("journal.jsonl")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    pub fn has_journal(&self) -> bool {
        self.journal_path().exists()
    }

    /// Writes the approved plan atomically (temp file, fsync, rename).
    pub fn save_plan(&self, plan: &SavedPlan) -> Result<(), StateError> {
        self.ensure()?;
        let path = self.plan_path();
        let tmp = self.root.join("plan.json.tmp");
        let body = serde_json::to_vec_pretty(plan).map_err(|e| io(&tmp)(std::io::Error::other(e)))?;
        if let Some(r) = &self.remote {
            r.save_plan(&body)?;
        }
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&body).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        if let Ok(d) = std::fs::File::open(&self.root) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    pub fn load_plan(&self) -> Result<Option<SavedPlan>, StateError> {
        let path = self.plan_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let plan: SavedPlan = serde_json::from_slice(&bytes).map_err(|e| StateError::BadPlan {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if plan.format != SAVED_PLAN_FORMAT {
            return Err(StateError::BadPlan {
                path,
                reason: format!("format {} is not {SAVED_PLAN_FORMAT}", plan.format),
            });
        }
        if plan.fingerprint != plan.compute_fingerprint() {
            return Err(StateError::BadPlan {
                path,
                reason: "its fingerprint does not match its content".into(),
            });
        }
        Ok(Some(plan))
    }

    /// Moves a finished migration's journal and plan into `archive/` so a new
    /// one can start; returns where they went.
    pub fn archive(&self) -> Result<PathBuf, StateError> {
        let stamp = Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
        let shared = match &self.remote {
            Some(r) => Some(r.archive(&stamp)?),
            None => None,
        };
        let dir = self.root.join("archive").join(&stamp);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        for name in ["journal.jsonl", "plan.json"] {
            let from = self.root.join(name);
            if from.exists() {
                std::fs::rename(&from, dir.join(name)).map_err(io(&from))?;
            }
        }
        // Shown to the user: with shared state, where the team finds it.
        Ok(shared.map(PathBuf::from).unwrap_or(dir))
    }
}

/// The plan `apply` approved: the step plans shown to the user and the
/// resolved inputs the steps are built from. `resume` rebuilds the steps
/// from `inputs`; it never plans again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: u32,
    pub podnet_version: String,
    pub created_at: Timestamp,
    pub cluster: String,
    pub region: String,
    /// The plan file it came from, for messages.
    pub plan_file: Option<PathBuf>,
    /// SHA-256 of the validated plan file: a changed file makes the saved plan stale.
    pub spec_fingerprint: String,
    pub steps: Vec<StepPlan>,
    pub inputs: serde_json::Value,
    /// SHA-256 over everything above.
    pub fingerprint: String,
}

impl SavedPlan {
    pub fn new(
        cluster: &str,
        region: &str,
        plan_file: Option<PathBuf>,
        spec_fingerprint: String,
        steps: Vec<StepPlan>,
        inputs: serde_json::Value,
    ) -> SavedPlan {
        let mut p = SavedPlan {
            format: SAVED_PLAN_FORMAT,
            podnet_version: env!("CARGO_PKG_VERSION").to_string(),
            created_at: Timestamp::now(),
            cluster: cluster.to_string(),
            region: region.to_string(),
            plan_file,
            spec_fingerprint,
            steps,
            inputs,
            fingerprint: String::new(),
        };
        p.fingerprint = p.compute_fingerprint();
        p
    }

    /// Resume replays a saved plan exactly; another podnet version may
    /// build different steps from the same inputs, so only the version that
    /// planned it may finish it.
    pub fn written_by_this_version(&self) -> Result<(), VersionMismatch> {
        let running = env!("CARGO_PKG_VERSION");
        if self.podnet_version == running {
            Ok(())
        } else {
            Err(VersionMismatch {
                saved: self.podnet_version.clone(),
                running: running.to_string(),
            })
        }
    }

    fn compute_fingerprint(&self) -> String {
        let mut unsigned = self.clone();
        unsigned.fingerprint = String::new();
        fingerprint(&unsigned)
    }
}

/// A saved plan written by another podnet version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "this migration was planned by podnet {saved} and this is podnet {running}: resume replays the saved plan exactly, and another version may run different steps from it\n  fix: finish it with podnet {saved}, or run `podnet apply --replan` to set it aside and plan again with podnet {running}"
)]
pub struct VersionMismatch {
    pub saved: String,
    pub running: String,
}

/// SHA-256 (hex) of a value's JSON form. serde_json writes object keys in
/// sorted order (no `preserve_order`), so equal values hash equally.
pub fn fingerprint(value: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_state_writes_through_and_a_lock_held_elsewhere_refuses() {
        use super::super::journal::Event;
        use super::super::remote::{MemoryStore, ObjectStore};
        let store = std::sync::Arc::new(MemoryStore::default());
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::shared(dir.path(), Remote::new(store.clone()));
        assert_eq!(state.location(), "memory://state");
        let guard = state.lock("apply").unwrap();
        assert!(store.keys().contains(&"lock".to_string()));
        state
            .save_plan(&SavedPlan::new(
                "c",
                "r",
                None,
                "abc".into(),
                vec![],
                serde_json::json!({}),
            ))
            .unwrap();
        let (mut j, _) = state.open_journal().unwrap();
        j.append(Event::StepStarted {
            step: "associate-cidr".into(),
            attempt: 1,
        })
        .unwrap();
        assert_eq!(store.keys(), ["journal/00000000000000000000.json", "lock", "plan.json"]);
        drop(guard);
        assert!(!store.keys().contains(&"lock".to_string()), "released at the end");

        // Another machine: an empty working copy, a lock held elsewhere.
        let other = tempfile::tempdir().unwrap();
        let there = StateDir::shared(other.path(), Remote::new(store.clone()));
        let elsewhere = LockHolder {
            host: "ci-runner-7".into(),
            ..LockHolder::current("apply")
        };
        store.put("lock", &serde_json::to_vec(&elsewhere).unwrap()).unwrap();
        let e = there.lock("resume").unwrap_err();
        assert!(matches!(e, LockError::HeldShared { .. }), "{e}");
        assert!(
            e.to_string().contains("ci-runner-7") && e.to_string().contains("podnet unlock"),
            "{e}"
        );
        assert_eq!(there.inspect_lock().unwrap(), LockState::Left(elsewhere.clone()));
        assert_eq!(there.release_lock().unwrap(), Some(elsewhere));
        there.pull().unwrap();
        assert!(there.load_plan().unwrap().is_some());
        assert_eq!(super::super::journal::read(&there.journal_path()).unwrap().len(), 1);
        // The rollback's state sits under the same store.
        assert_eq!(there.child("rollback").location(), "memory://state/rollback");
    }

    #[test]
    fn only_the_version_that_planned_a_migration_may_resume_it() {
        let mut plan = SavedPlan::new("c", "r", None, "abc".into(), vec![], serde_json::json!({}));
        assert_eq!(plan.written_by_this_version(), Ok(()));
        plan.podnet_version = "0.0.1".into();
        let e = plan.written_by_this_version().unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("planned by podnet 0.0.1"), "{msg}");
        assert!(
            msg.contains(&format!("this is podnet {}", env!("CARGO_PKG_VERSION"))),
            "{msg}"
        );
        assert!(msg.contains("podnet apply --replan"), "{msg}");
    }

    #[test]
    fn saved_plan_round_trip_and_tamper_check() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::at(d.path().join("st"));
        assert_eq!(s.load_plan().unwrap(), None);
        let plan = SavedPlan::new("c", "r", None, "abc".into(), vec![], serde_json::json!({"a": 1}));
        s.save_plan(&plan).unwrap();
        assert_eq!(s.load_plan().unwrap().unwrap(), plan);
        let text = std::fs::read_to_string(s.plan_path())
            .unwrap()
            .replace("\"a\": 1", "\"a\": 2");
        std::fs::write(s.plan_path(), text).unwrap();
        assert!(matches!(s.load_plan(), Err(StateError::BadPlan { .. })));
        std::fs::write(s.plan_path(), "{").unwrap();
        assert!(
            s.load_plan()
                .unwrap_err()
                .to_string()
                .contains("not a podnet saved plan")
        );
    }

    #[test]
    fn default_dir_is_keyed_by_cluster_and_region() {
        if let Ok(d) = StateDir::default_for("podnet-demo", "ap-northeast-2") {
            assert!(
                d.root().ends_with("podnet/podnet-demo.ap-northeast-2"),
                "{}",
                d.root().display()
            );
        }
    }

    #[test]
    fn archive_moves_the_finished_migration() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::at(d.path());
        std::fs::write(s.journal_path(), "x\n").unwrap();
        std::fs::write(s.plan_path(), "{}").unwrap();
        let to = s.archive().unwrap();
        assert!(to.join("journal.jsonl").exists() && to.join("plan.json").exists());
        assert!(!s.has_journal());
    }
}
