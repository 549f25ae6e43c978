//! Bounded waits on one object: a watch of that object (kube-runtime's
//! `watch_object`, the stream `await_condition` is built on; not a polling
//! loop) under a timeout, reporting progress on every change it sees. A
//! check returns `Ok(())` when the object is where it should be, or
//! `Err(progress)` saying how far it got; on timeout the last progress line
//! goes into the error, so the user sees where it stuck. A watch that fails
//! (a 429 or 503 from a busy API server, a dropped connection) is re-opened
//! with kube-runtime's default backoff instead of failing the wait, as a
//! controller's watch is; one the server refuses (401, 403, 404) ends it.

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watch_object};
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
    let progress = |line: String| {
        on_wait(line.clone());
        *last.lock().unwrap_or_else(|e| e.into_inner()) = line;
    };
    let watch = async {
        let mut events = std::pin::pin!(watch_object(api, name).default_backoff());
        while let Some(event) = events.next().await {
            match event {
                Ok(obj) => match check(obj.as_ref()) {
                    Ok(()) => return Ok(()),
                    Err(line) => progress(line),
                },
                Err(e) if refused(&e) => return Err(WaitError::Watch(e.to_string())),
                Err(e) => progress(format!("the watch failed ({e}); watching again")),
            }
        }
        Err(WaitError::Watch("the watch ended".into()))
    };
    match tokio::time::timeout(timeout, watch).await {
        Ok(done) => done,
        Err(_) => Err(WaitError::TimedOut {
            after: timeout,
            last: last.into_inner().unwrap_or_else(|e| e.into_inner()),
        }),
    }
}

/// A watch error no re-opening fixes: the request itself is refused (no
/// permission to watch, no such resource). Those end the wait at once
/// instead of using up its bound; throttling, server errors, an expired
/// resourceVersion (410) and dropped connections are watched through.
fn refused(e: &watcher::Error) -> bool {
    let code = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code,
        watcher::Error::WatchError(s) => s.code,
        _ => return false,
    };
    matches!(code, 400 | 401 | 403 | 404)
}
