//! The kinds of failure every layer reports — the AWS and Kubernetes
//! adapters, discovery, the steps and the engine — in one leaf module that
//! imports nothing of podnet's, so adapters can classify their errors
//! without knowing the engine. The class decides retries; the words shown
//! to the user are each layer's own, and the next command to run is added
//! only where it is known whether a journal exists.

use serde::{Deserialize, Serialize};

/// What kind of failure a call or a step hit; drives retries and advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorClass {
    /// 429 / RequestLimitExceeded: retry after a pause.
    Throttled,
    /// 5xx, timeouts, connection resets: retry.
    Transient,
    /// The resource is in a state that forbids the change right now.
    Conflict,
    NotFound,
    /// Credentials lack a permission; the message names the IAM action.
    Permission,
    /// The request or the plan is wrong; retrying cannot help.
    Invalid,
    /// A bounded wait ran out.
    Timeout,
    /// A safety rule stopped the step (a PDB, a preflight check).
    Blocked,
    /// Anything else.
    Failed,
    /// The run was stopped (Ctrl-C, or a test's injected crash) while the
    /// step was in flight. The journal keeps it `Started`; resume re-runs it.
    Interrupted,
}

impl ErrorClass {
    /// Classes worth retrying at the engine level (on top of the SDK's own).
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Throttled | ErrorClass::Transient)
    }
}
