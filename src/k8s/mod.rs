//! Kubernetes access through kube-rs: the client (from kubeconfig), paged
//! lists, the custom resources podnet reads and writes (ENIConfig, Karpenter
//! NodePool/NodeClaim/EC2NodeClass), retries for 429/503/504 only, and
//! classified errors. Everything that waits takes a timeout.

pub mod connect;
pub mod crds;
pub mod ops;
pub mod permissions;
pub mod snapshot;
pub mod wait;

use std::fmt::Debug;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectList, Patch, PatchParams};
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

/// Whether a kube error is worth retrying: 429, 503 and 504 only, as
/// kube-rs's own retry policy, plus connection failures.
fn retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Runs a Kubernetes call with bounded retries for throttling and
/// unavailability.
pub async fn with_retry<T, F, Fut>(action: &str, f: F) -> Result<T, KubeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    f.retry(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(4),
    )
    .when(retryable)
    .await
    .map_err(|e| KubeError::from_kube(action, e))
}

/// Server-side apply of the fields podnet owns, as the one field manager
/// `podnet`, forced: only the fields in `body` change, every other writer's
/// stay (containers and env entries merge by name), and the same body twice
/// is the same object — idempotent by construction, so it is retried on
/// 429/503/504 like a read.
/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/>
pub async fn apply_owned<K, B>(api: &Api<K>, name: &str, body: &B, what: &str) -> Result<(), KubeError>
where
    K: Clone + DeserializeOwned + Debug,
    B: serde::Serialize + Debug,
{
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let patch = Patch::Apply(body);
    with_retry(&format!("apply {what}"), || api.patch(name, &pp, &patch)).await?;
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

/// Lists a typed custom resource ([`crds`]), or `None` when its CRD is not
/// installed.
pub async fn list_crd<K>(client: &Client, what: &str) -> Result<Option<Vec<K>>, KubeError>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    list_if_installed(&Api::all(client.clone()), what).await
}

/// Lists a custom resource, or `None` when its CRD is not installed.
pub async fn list_custom(
    client: &Client,
    ar: &ApiResource,
    what: &str,
) -> Result<Option<Vec<DynamicObject>>, KubeError> {
    list_if_installed(&Api::all_with(client.clone(), ar), what).await
}

/// Every object, or `None` when the API answers 404 (its CRD is absent).
async fn list_if_installed<K>(api: &Api<K>, what: &str) -> Result<Option<Vec<K>>, KubeError>
where
    K: Clone + DeserializeOwned + Debug,
{
    match list_all(api, &ListParams::default(), what).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// `crd.k8s.amazonaws.com/v1alpha1` ENIConfig (cluster-scoped).
pub fn eniconfig_resource() -> ApiResource {
    resource("crd.k8s.amazonaws.com", "v1alpha1", "ENIConfig", "eniconfigs")
}

/// `karpenter.sh/v1` NodePool.
pub fn nodepool_resource() -> ApiResource {
    resource("karpenter.sh", "v1", "NodePool", "nodepools")
}

/// `karpenter.sh/v1` NodeClaim.
pub fn nodeclaim_resource() -> ApiResource {
    resource("karpenter.sh", "v1", "NodeClaim", "nodeclaims")
}

/// `karpenter.k8s.aws/v1` EC2NodeClass.
pub fn ec2nodeclass_resource() -> ApiResource {
    resource("karpenter.k8s.aws", "v1", "EC2NodeClass", "ec2nodeclasses")
}
