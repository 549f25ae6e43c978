//! Bounded waits on one object, on kube-runtime's `await_condition`: a watch
//! of that object (not a polling loop), under a timeout, reporting progress
//! on every change it sees. A check returns `Ok(())` when the object is where
//! it should be, or `Err(progress)` saying how far it got; on timeout the
//! last progress line goes into the error, so the user sees where it stuck.

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::wait::await_condition;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// Why a wait ended without the condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    #[error("not done after {}s ({last})", .after.as_secs())]
    TimedOut { after: Duration, last: String },
    #[error("the watch failed: {0}")]
    Watch(String),
}

/// Waits until `check` accepts the object named `name`.
pub async fn until<K, C>(
    api: Api<K>,
    name: &str,
    timeout: Duration,
    on_wait: &(dyn Fn(String) + Sync),
    check: C,
) -> Result<(), WaitError>
where
    K: Clone + Debug + Send + Sync + DeserializeOwned + Resource + 'static,
    C: Fn(Option<&K>) -> Result<(), String> + Send + Sync,
{
    let last = Mutex::new("no status seen yet".to_string());
    let condition = |obj: Option<&K>| match check(obj) {
        Ok(()) => true,
        Err(progress) => {
            on_wait(progress.clone());
            *last.lock().unwrap_or_else(|e| e.into_inner()) = progress;
            false
        }
    };
    match tokio::time::timeout(timeout, await_condition(api, name, condition)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(WaitError::Watch(e.to_string())),
        Err(_) => Err(WaitError::TimedOut {
            after: timeout,
            last: last.into_inner().unwrap_or_else(|e| e.into_inner()),
        }),
    }
}
