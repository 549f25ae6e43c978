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
//! or `PODNET_STATE_DIR` names the directory itself.

use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::change::StepPlan;

pub const SAVED_PLAN_FORMAT: u32 = 1;

/// The state directory of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
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
        StateDir { root: root.into() }
    }

    /// The per-user default for a cluster.
    pub fn default_for(cluster: &str, region: &str) -> Result<StateDir, StateError> {
        let base = dirs::state_dir()
            .or_else(dirs::data_local_dir)
            .ok_or(StateError::NoHome)?;
        Ok(StateDir {
            root: base.join("podnet").join(format!("{cluster}.{region}")),
        })
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
        let dir = self
            .root
            .join("archive")
            .join(Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string());
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        for name in ["journal.jsonl", "plan.json"] {
            let from = self.root.join(name);
            if from.exists() {
                std::fs::rename(&from, dir.join(name)).map_err(io(&from))?;
            }
        }
        Ok(dir)
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
