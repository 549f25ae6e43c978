//! What a failed unit of work says: its [`ErrorClass`] (retry, stop, ask a
//! human), the message, and the fix. Adapter errors (`aws::AwsError`,
//! `k8s::KubeError`, `k8s::ops::OpsError`) become step errors here, keeping
//! their own fix and adding the one thing only a journaled run knows: that
//! `podnet resume` continues it. Before anything is journaled the command
//! layer swaps that for [`NOTHING_SAVED`] ([`StepError::before_any_change`]).
//! The journal records these errors, so this module imports nothing of the
//! engine.

use serde::{Deserialize, Serialize};

use crate::aws::AwsError;
use crate::k8s::KubeError;
use crate::k8s::ops::OpsError;

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

#[cfg(test)]
mod tests {
    use super::*;

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
