//! Kubernetes access through kube-rs: the client (from kubeconfig), paged
//! lists, the custom resources podnet reads and writes (ENIConfig, Karpenter
//! NodePool/NodeClaim/EC2NodeClass), retries (429, 5xx and, for server-side
//! apply, 409; honouring `Retry-After`), and classified errors. Everything that waits takes a timeout.

pub mod callbacks;
pub mod connect;
pub mod crds;
pub mod ops;
pub mod permissions;
pub mod snapshot;
pub mod wait;

use std::fmt::Debug;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use kube::api::{ListParams, ObjectList, Patch, PatchParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;

use crate::error_class::ErrorClass;

/// The field manager of every server-side apply podnet makes.
pub const FIELD_MANAGER: &str = "podnet";

/// A failed Kubernetes call, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Kubernetes {action} failed: {message}")]
pub struct KubeError {
    pub class: ErrorClass,
    /// `list nodes`, `apply ENIConfig ap-northeast-2a`, …
    pub action: String,
    pub message: String,
    pub status: Option<u16>,
}

impl KubeError {
    pub fn from_kube(action: impl Into<String>, e: kube::Error) -> KubeError {
        let action = action.into();
        match e {
            kube::Error::Api(s) => {
                let class = match s.code {
                    404 => ErrorClass::NotFound,
                    409 => ErrorClass::Conflict,
                    401 | 403 => ErrorClass::Permission,
                    422 | 400 => ErrorClass::Invalid,
                    429 => ErrorClass::Throttled,
                    500..=599 => ErrorClass::Transient,
                    _ => ErrorClass::Failed,
                };
                let message = if s.message.is_empty() {
                    s.reason.clone()
                } else {
                    s.message.clone()
                };
                KubeError {
                    class,
                    action,
                    message: format!("{message} (HTTP {})", s.code),
                    status: Some(s.code),
                }
            }
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => KubeError {
                class: ErrorClass::Transient,
                action,
                message: e.to_string(),
                status: None,
            },
            kube::Error::InferConfig(_) | kube::Error::Auth(_) => KubeError {
                class: ErrorClass::Permission,
                action,
                message: e.to_string(),
                status: None,
            },
            other => KubeError {
                class: ErrorClass::Failed,
                action,
                message: other.to_string(),
                status: None,
            },
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.class == ErrorClass::NotFound
    }

    /// What the user should do about it, by class. Never the next podnet
    /// command: only the caller knows whether anything was saved to resume.
    pub fn fix(&self) -> String {
        match self.class {
            ErrorClass::Permission => format!(
                "the Kubernetes identity podnet connects as may not {}; check with `kubectl auth can-i` and grant it (`podnet plan` lists every missing permission)",
                self.action
            ),
            ErrorClass::Transient | ErrorClass::Throttled => {
                "the API server was unreachable or busy; it is safe to try again".into()
            }
            _ => "fix the cause above".into(),
        }
    }
}

/// Whether a kube error is worth retrying: throttling (429), what a busy,
/// restarting or proxied API server answers (500, 502, 503, 504), and
/// connection failures. Used for reads and for writes that are idempotent
/// by construction (server-side apply, cordon, delete by name, access
/// reviews); kube-rs's own policy retries only 429/503/504.
fn retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// A 409 on a server-side apply: another writer got in between, and the
/// same apply again is what client-go's `RetryOnConflict` would send.
fn conflicted(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// The wait the API server asked for. It answers 429 with a `Retry-After`
/// header and the same seconds in the Status's `details.retryAfterSeconds`
/// (apimachinery `errors.NewTooManyRequests`; the apiserver's response
/// writer copies one to the other), which is what kube-rs keeps.
fn retry_after(e: &kube::Error) -> Option<Duration> {
    match e {
        kube::Error::Api(s) => s
            .details
            .as_ref()
            .map(|d| d.retry_after_seconds)
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(u64::from(s).min(MAX_RETRY_AFTER_SECS))),
        _ => None,
    }
}

/// A server asking for longer than this is not throttling but broken.
const MAX_RETRY_AFTER_SECS: u64 = 60;

async fn retry_when<T, F, Fut>(action: &str, f: F, when: fn(&kube::Error) -> bool) -> Result<T, KubeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    f.retry(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(6)
            .with_jitter(),
    )
    .when(when)
    // The server's Retry-After, when longer than our own backoff.
    .adjust(|e, backoff| backoff.map(|b| retry_after(e).map_or(b, |r| r.max(b))))
    .await
    .map_err(|e| KubeError::from_kube(action, e))
}

/// Runs a read (or an idempotent write) with bounded retries for
/// throttling, server errors and connection failures, honouring the
/// server's `Retry-After`.
pub async fn with_retry<T, F, Fut>(action: &str, f: F) -> Result<T, KubeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    retry_when(action, f, retryable).await
}

/// Server-side apply of the fields podnet owns, as the one field manager
/// `podnet`, forced: only the fields in `body` change, every other writer's
/// stay (containers and env entries merge by name), and the same body twice
/// is the same object — idempotent by construction, so it is retried like a
/// read, and on a 409 conflict as well.
/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/>
pub async fn apply_owned<K, B>(api: &Api<K>, name: &str, body: &B, what: &str) -> Result<(), KubeError>
where
    K: Clone + DeserializeOwned + Debug,
    B: serde::Serialize + Debug,
{
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let patch = Patch::Apply(body);
    retry_when(
        &format!("apply {what}"),
        || api.patch(name, &pp, &patch),
        |e| retryable(e) || conflicted(e),
    )
    .await?;
    Ok(())
}

/// Lists every object, following `continue` tokens in pages of 500.
pub async fn list_all<K>(api: &Api<K>, lp: &ListParams, what: &str) -> Result<Vec<K>, KubeError>
where
    K: Clone + DeserializeOwned + Debug,
{
    let mut out = Vec::new();
    let mut lp = lp.clone().limit(500);
    loop {
        let page: ObjectList<K> = with_retry(&format!("list {what}"), || api.list(&lp)).await?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// Lists a typed custom resource ([`crds`]), or `None` when the API answers
/// 404 (its CRD is not installed).
pub async fn list_crd<K>(client: &Client, what: &str) -> Result<Option<Vec<K>>, KubeError>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    match list_all(&Api::all(client.clone()), &ListParams::default(), what).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;
    use kube::core::Status;

    /// A Status as the API server sends it.
    fn api(code: u16, retry_after: u32) -> kube::Error {
        let status: Status = serde_json::from_value(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
            "reason": "TooManyRequests", "message": "busy",
            "details": { "retryAfterSeconds": retry_after }
        }))
        .expect("a Status");
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn reads_retry_throttling_and_server_errors_but_not_refusals() {
        for code in [429, 500, 502, 503, 504] {
            assert!(retryable(&api(code, 0)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 422] {
            assert!(!retryable(&api(code, 0)), "{code}");
        }
        assert!(conflicted(&api(409, 0)));
    }

    #[test]
    fn the_servers_retry_after_is_honoured_within_a_bound() {
        assert_eq!(retry_after(&api(429, 3)), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&api(429, 0)), None);
        assert_eq!(retry_after(&api(429, 3600)), Some(Duration::from_secs(60)));
    }

    #[tokio::test]
    async fn a_throttled_read_waits_as_long_as_the_server_asks_then_succeeds() {
        let started = tokio::time::Instant::now();
        let mut calls = 0;
        let got = with_retry("list nodes", || {
            calls += 1;
            let n = calls;
            async move { if n == 1 { Err(api(429, 1)) } else { Ok(n) } }
        })
        .await
        .expect("retried");
        assert_eq!(got, 2);
        // Our own first backoff is 200 ms; the server asked for a second.
        assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
    }
}
