//! The shape of every migration step: a stable id, a description, a read-only
//! `observe` that says what would change, and an idempotent `apply` that acts
//! only on the difference and returns serialisable outputs. Steps hold no
//! state: what one step learns reaches later ones only through its recorded
//! outputs ([`StepCtx::output`]), so a resumed run sees exactly what the
//! interrupted one saw.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::change::StepPlan;
use super::journal::{Event, Journal, JournalError};
use crate::aws::AwsError;
use crate::k8s::KubeError;
use crate::k8s::ops::OpsError;

/// Outputs a step records when it succeeds (a JSON object).
pub type Outputs = serde_json::Value;

pub use crate::error_class::ErrorClass;

/// A step failure: what happened, to what, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}{}", .hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
pub struct StepError {
    pub class: ErrorClass,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl StepError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        StepError {
            class,
            message: message.into(),
            hint: None,
        }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        StepError::new(ErrorClass::Failed, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        StepError::new(ErrorClass::Invalid, message)
    }

    pub fn interrupted() -> Self {
        StepError::new(ErrorClass::Interrupted, "interrupted")
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The same error met while planning, before anything was journaled:
    /// the advice ends with running the command again, not with resume.
    pub fn before_any_change(mut self) -> Self {
        let fix = self
            .hint
            .as_deref()
            .map(|h| {
                h.trim_end_matches(THEN_RESUME)
                    .trim_end()
                    .trim_end_matches(';')
                    .to_string()
            })
            .filter(|f| !f.is_empty());
        self.hint = Some(match fix {
            Some(f) => format!("{f}; {NOTHING_SAVED}"),
            None => NOTHING_SAVED.to_string(),
        });
        self
    }

    pub fn is_interrupted(&self) -> bool {
        self.class == ErrorClass::Interrupted
    }
}

/// A step failed inside a journaled run: whatever the fix, `podnet resume`
/// is what continues it. (Before any journal exists, the command layer says
/// to run the same command again instead.)
const THEN_RESUME: &str = "then run `podnet resume`";

/// The next command when an error came before any journal was written.
pub const NOTHING_SAVED: &str = "nothing was changed or saved: run the same podnet command again";

impl From<AwsError> for StepError {
    fn from(e: AwsError) -> StepError {
        let hint = format!("{}; {THEN_RESUME}", e.fix());
        StepError::new(e.class, e.to_string()).hint(hint)
    }
}

impl From<KubeError> for StepError {
    fn from(e: KubeError) -> StepError {
        let hint = format!("{}; {THEN_RESUME}", e.fix());
        StepError::new(e.class, e.to_string()).hint(hint)
    }
}

impl From<OpsError> for StepError {
    fn from(e: OpsError) -> StepError {
        let hint = match &e.fix {
            Some(fix) => format!("{fix}; {THEN_RESUME}"),
            None => THEN_RESUME.to_string(),
        };
        StepError::new(e.class, e.message).hint(hint)
    }
}

impl From<JournalError> for StepError {
    fn from(e: JournalError) -> Self {
        StepError::failed(format!("cannot write the journal: {e}"))
            .hint("check the state directory's disk space and permissions, then run `podnet resume`")
    }
}

/// What a step sees of the run: the outputs of the steps before it, and its
/// own checkpoints from earlier attempts.
pub struct StepCtx<'a> {
    step: &'a str,
    outputs: &'a BTreeMap<String, Outputs>,
    progress: BTreeMap<String, serde_json::Value>,
    journal: Option<&'a Mutex<Journal>>,
}

impl<'a> StepCtx<'a> {
    /// A context for planning: no journal, so no checkpoints.
    pub fn planning(step: &'a str, outputs: &'a BTreeMap<String, Outputs>) -> Self {
        StepCtx {
            step,
            outputs,
            progress: BTreeMap::new(),
            journal: None,
        }
    }

    pub(crate) fn running(
        step: &'a str,
        outputs: &'a BTreeMap<String, Outputs>,
        progress: BTreeMap<String, serde_json::Value>,
        journal: &'a Mutex<Journal>,
    ) -> Self {
        StepCtx {
            step,
            outputs,
            progress,
            journal: Some(journal),
        }
    }

    pub fn step(&self) -> &str {
        self.step
    }

    pub(crate) fn into_progress(self) -> BTreeMap<String, serde_json::Value> {
        self.progress
    }

    /// Whether the run is executing (false while planning).
    pub fn is_running(&self) -> bool {
        self.journal.is_some()
    }

    /// An earlier step's outputs; `None` while planning, before it has run.
    pub fn output<T: DeserializeOwned>(&self, step: &str) -> Result<Option<T>, StepError> {
        match self.outputs.get(step) {
            None => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| StepError::failed(format!("outputs of step {step} are unreadable: {e}"))),
        }
    }

    /// An earlier step's outputs, which must exist because that step ran.
    pub fn require_output<T: DeserializeOwned>(&self, step: &str) -> Result<T, StepError> {
        self.output(step)?.ok_or_else(|| {
            StepError::failed(format!(
                "step {} needs the outputs of {step}, which has not run",
                self.step
            ))
        })
    }

    /// A value this step checkpointed in an earlier (interrupted) attempt.
    /// One that does not decode is an error, never "absent": treating it as
    /// absent would mint a second idempotency token and repeat a change.
    pub fn checkpointed<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StepError> {
        match self.progress.get(key) {
            None => Ok(None),
            Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| {
                StepError::failed(format!(
                    "step {}'s checkpoint {key} does not decode ({e}): podnet will not guess what an earlier attempt did",
                    self.step
                ))
                .hint("the journal was written by another podnet version or edited; finish it with the version that wrote it, or set it aside with `podnet apply --replan` once you have checked the cluster")
            }),
        }
    }

    /// Durably records `value` under `key` for this step before going on, so
    /// that a resumed attempt knows it (a request token, a node already
    /// drained). Not available while planning.
    pub fn checkpoint(&mut self, key: &str, value: impl Serialize) -> Result<(), StepError> {
        let journal = self
            .journal
            .ok_or_else(|| StepError::failed(format!("step {} tried to checkpoint while planning", self.step)))?;
        let value = serde_json::to_value(value).map_err(|e| StepError::failed(e.to_string()))?;
        let mut j = journal.lock().map_err(|_| StepError::failed("journal lock poisoned"))?;
        j.append(Event::StepProgress {
            step: self.step.to_string(),
            key: key.to_string(),
            value: value.clone(),
        })?;
        self.progress.insert(key.to_string(), value);
        Ok(())
    }

    /// The checkpointed value under `key`, or `make()` checkpointed now.
    /// The way to generate an idempotency token exactly once per step.
    pub fn checkpoint_once<T: Serialize + DeserializeOwned>(
        &mut self,
        key: &str,
        make: impl FnOnce() -> T,
    ) -> Result<T, StepError> {
        if let Some(v) = self.checkpointed(key)? {
            return Ok(v);
        }
        let v = make();
        self.checkpoint(key, &v)?;
        Ok(v)
    }
}

/// One step of a migration, over an environment `E` (the AWS and Kubernetes
/// clients in podnet; an in-memory world in tests).
#[async_trait]
pub trait Step<E: ?Sized + Sync>: Send + Sync {
    /// Stable across releases: the journal refers to steps by it.
    fn id(&self) -> &str;

    /// One line for humans.
    fn describe(&self) -> String;

    /// Read-only: what `apply` would change now.
    async fn observe(&self, env: &E, ctx: &StepCtx<'_>) -> Result<StepPlan, StepError>;

    /// Observes, then changes only what differs. Must be safe to run again
    /// after any interruption, including after its own side effects.
    async fn apply(&self, env: &E, ctx: &mut StepCtx<'_>) -> Result<Outputs, StepError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_that_does_not_decode_is_an_error_never_absent() {
        let outputs = BTreeMap::new();
        let mut ctx = StepCtx::planning("enable-custom-networking", &outputs);
        ctx.progress.insert("token".into(), serde_json::json!(42));
        let e = ctx.checkpointed::<String>("token").unwrap_err();
        assert!(e.message.contains("checkpoint token does not decode"), "{}", e.message);
        // checkpoint_once must not mint a second token over it.
        let e = ctx
            .checkpoint_once::<String>("token", || "a-second-token".into())
            .unwrap_err();
        assert!(e.message.contains("does not decode"), "{}", e.message);
        assert_eq!(ctx.checkpointed::<u32>("token").unwrap(), Some(42));
        assert_eq!(ctx.checkpointed::<u32>("absent").unwrap(), None);
    }

    #[test]
    fn adapter_errors_become_step_errors_whose_hint_is_the_fix_then_resume() {
        // (AwsError converts the same way; its fix texts are tested in aws::error.)
        let k = KubeError {
            class: ErrorClass::Transient,
            action: "list nodes".into(),
            message: "503".into(),
            status: Some(503),
        };
        let s: StepError = k.into();
        assert_eq!(s.class, ErrorClass::Transient);
        let hint = s.hint.unwrap();
        assert!(hint.starts_with("the API server was unreachable or busy"), "{hint}");
        assert!(hint.ends_with("then run `podnet resume`"), "{hint}");
        let o = OpsError::new(ErrorClass::Blocked, "a PDB allows no disruption").with_fix("scale it up");
        let s: StepError = o.into();
        assert_eq!(s.hint.as_deref(), Some("scale it up; then run `podnet resume`"));
        let planning = s.before_any_change();
        assert_eq!(
            planning.hint.as_deref(),
            Some("scale it up; nothing was changed or saved: run the same podnet command again")
        );
    }
}
