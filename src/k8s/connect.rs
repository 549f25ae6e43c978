//! How podnet reaches the cluster's API server, and proof that it is the
//! cluster the plan names.
//!
//! By default podnet connects from `DescribeCluster` alone: the endpoint,
//! the cluster CA (`certificateAuthority.data`), and a bearer token from a
//! [`TokenSource`] (the EKS token, signed with podnet's own AWS credentials).
//! A [`BearerAuth`] layer puts a fresh token on every request, re-signs it
//! well before it expires, and after a `401` re-signs and sends the request
//! once more, so a migration that runs for hours never fails on an expired
//! token. With `--kubeconfig`/`--kube-context` (or `KUBECONFIG`) the
//! kubeconfig decides how to authenticate, but its server must be the
//! cluster's endpoint: anything else is refused before any call is made.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine;
use http::{HeaderValue, Request, Response, StatusCode};
use kube::client::{Body, ClientBuilder};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tower::{BoxError, Service, ServiceExt};

use super::KubeError;
use crate::error_class::ErrorClass;

/// Re-sign the token when it is older than this (EKS accepts it for 15
/// minutes; `aws eks get-token` declares 14).
const REFRESH_AFTER: Duration = Duration::from_secs(5 * 60);

/// Mints bearer tokens (implemented over the AWS credential chain in
/// `aws::eks_token`; the k8s adapter knows only this trait).
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync {
    async fn token(&self) -> Result<String, BoxError>;
}

/// The cluster as EKS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEndpoint {
    pub name: String,
    /// `https://…` from DescribeCluster.
    pub endpoint: String,
    /// `certificateAuthority.data`: base64 of the CA's PEM.
    pub certificate_authority: Option<String>,
}

/// Where the Kubernetes connection comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KubeAccess {
    /// DescribeCluster plus podnet's own token (the default).
    #[default]
    Direct,
    /// A kubeconfig (`None`: `KUBECONFIG` or `~/.kube/config`) and context
    /// (`None`: its current context).
    Kubeconfig {
        path: Option<PathBuf>,
        context: Option<String>,
    },
}

fn err(class: ErrorClass, action: &str, message: impl Into<String>) -> KubeError {
    KubeError {
        class,
        action: action.to_string(),
        message: message.into(),
        status: None,
    }
}

/// `scheme://host:port` with the default port made explicit and the host in
/// lower case, so `https://X.eks.amazonaws.com` and
/// `https://x.eks.amazonaws.com:443/` compare equal.
pub fn normalize_endpoint(url: &str) -> Option<String> {
    let uri: http::Uri = url.trim().parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
    let path = uri.path().trim_end_matches('/');
    Some(format!("{scheme}://{host}:{port}{path}"))
}

/// PEM certificates (the CA data once base64-decoded) as DER.
fn pem_to_der(pem: &str) -> Vec<Vec<u8>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .flatten()
        .map(|c| c.to_vec())
        .collect()
}

/// Connects straight to the cluster EKS describes, with tokens from `tokens`.
pub fn connect_direct(cluster: &ClusterEndpoint, tokens: Arc<dyn TokenSource>) -> Result<Client, KubeError> {
    const ACTION: &str = "connect (from DescribeCluster)";
    let uri: http::Uri = cluster.endpoint.parse().map_err(|e| {
        err(
            ErrorClass::Invalid,
            ACTION,
            format!(
                "cluster {} has an endpoint EKS describes as {:?}, not a URL: {e}",
                cluster.name, cluster.endpoint
            ),
        )
    })?;
    let mut config = Config::new(uri);
    if let Some(data) = &cluster.certificate_authority {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim().as_bytes())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                err(
                    ErrorClass::Invalid,
                    ACTION,
                    format!(
                        "cluster {}'s certificateAuthority.data is not base64 of a PEM certificate",
                        cluster.name
                    ),
                )
            })?;
        let ders = pem_to_der(&pem);
        if ders.is_empty() {
            return Err(err(
                ErrorClass::Invalid,
                ACTION,
                format!(
                    "cluster {}'s certificateAuthority.data holds no certificate",
                    cluster.name
                ),
            ));
        }
        config.root_cert = Some(ders);
    }
    let builder = ClientBuilder::try_from(config).map_err(|e| KubeError::from_kube(ACTION, e))?;
    let cache = Arc::new(TokenCache {
        source: tokens,
        cached: tokio::sync::Mutex::new(None),
    });
    let layer = tower::layer::layer_fn(move |inner| BearerAuth {
        inner: tower::buffer::Buffer::new(inner, 1024),
        tokens: cache.clone(),
    });
    Ok(builder.with_layer(&layer).build())
}

/// Connects through a kubeconfig, after checking that its server is the
/// cluster's endpoint.
pub async fn connect_kubeconfig(
    cluster: &ClusterEndpoint,
    path: Option<PathBuf>,
    context: Option<String>,
) -> Result<Client, KubeError> {
    const ACTION: &str = "connect (kubeconfig)";
    let opts = KubeConfigOptions {
        context: context.clone(),
        cluster: None,
        user: None,
    };
    let config = match &path {
        Some(p) => {
            let kc = Kubeconfig::read_from(p).map_err(|e| {
                err(
                    ErrorClass::Invalid,
                    ACTION,
                    format!("cannot read kubeconfig {}: {e}", p.display()),
                )
            })?;
            Config::from_custom_kubeconfig(kc, &opts).await
        }
        None => Config::from_kubeconfig(&opts).await,
    }
    .map_err(|e| err(ErrorClass::Invalid, ACTION, format!("cannot load the kubeconfig: {e}")))?;
    let server = config.cluster_url.to_string();
    let here = normalize_endpoint(&server);
    if here.is_none() || here != normalize_endpoint(&cluster.endpoint) {
        let which = match (&context, &path) {
            (Some(c), _) => format!("context {c}"),
            (None, Some(p)) => format!("the current context of {}", p.display()),
            (None, None) => "the kubeconfig's current context".to_string(),
        };
        return Err(err(
            ErrorClass::Blocked,
            ACTION,
            format!(
                "{which} points at {server}, but cluster {} (DescribeCluster) is served at {}: podnet will not plan or change a cluster other than the one the plan names\n  fix: choose the context of {} (`aws eks update-kubeconfig --name {}` writes it), or drop --kubeconfig/--kube-context and unset KUBECONFIG to connect from DescribeCluster",
                cluster.name, cluster.endpoint, cluster.name, cluster.name
            ),
        ));
    }
    Client::try_from(config).map_err(|e| KubeError::from_kube(ACTION, e))
}

/// One authenticated request (`kubectl auth whoami`) right after
/// connecting, so that credentials the cluster does not accept stop podnet
/// at once, with a clear error, instead of in the middle of discovery.
/// Returns the username the cluster sees, when it says.
pub async fn probe(client: &Client) -> Result<Option<String>, KubeError> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let api: kube::Api<SelfSubjectReview> = kube::Api::all(client.clone());
    match api
        .create(&kube::api::PostParams::default(), &SelfSubjectReview::default())
        .await
    {
        Ok(r) => Ok(r.status.and_then(|s| s.user_info).and_then(|u| u.username)),
        Err(kube::Error::Api(s)) if s.code == 401 => Err(KubeError::from_kube("authenticate", kube::Error::Api(s))),
        // Older API servers do not serve SelfSubjectReview, and a 403 here
        // still means we are authenticated: discovery goes on.
        Err(_) => Ok(None),
    }
}

struct TokenCache {
    source: Arc<dyn TokenSource>,
    cached: tokio::sync::Mutex<Option<(HeaderValue, Instant)>>,
}

impl TokenCache {
    async fn header(&self, refresh: bool) -> Result<HeaderValue, BoxError> {
        let mut cached = self.cached.lock().await;
        if !refresh
            && let Some((h, at)) = cached.as_ref()
            && at.elapsed() < REFRESH_AFTER
        {
            return Ok(h.clone());
        }
        let token = self.source.token().await?;
        let mut h = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| BoxError::from("the EKS token is not a valid header value"))?;
        // Keeps the token out of hyper's and kube's debug output.
        h.set_sensitive(true);
        *cached = Some((h.clone(), Instant::now()));
        Ok(h)
    }
}

/// Sets `Authorization: Bearer <token>`; after a 401, re-signs and retries
/// the request once (bodies of kube-rs requests are buffered, so they can be
/// sent again).
#[derive(Clone)]
struct BearerAuth<S> {
    inner: S,
    tokens: Arc<TokenCache>,
}

fn copy_request(parts: &http::request::Parts, body: Body) -> Request<Body> {
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    req
}

impl<S, B> Service<Request<Body>> for BearerAuth<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The clone is not ready; the instance that was polled ready is.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let tokens = self.tokens.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let again = body.try_clone();
            let mut first = copy_request(&parts, body);
            first
                .headers_mut()
                .insert(http::header::AUTHORIZATION, tokens.header(false).await?);
            let resp = inner.call(first).await.map_err(Into::into)?;
            let Some(body) = again.filter(|_| resp.status() == StatusCode::UNAUTHORIZED) else {
                return Ok(resp);
            };
            drop(resp);
            let mut second = copy_request(&parts, body);
            second
                .headers_mut()
                .insert(http::header::AUTHORIZATION, tokens.header(true).await?);
            inner.ready().await.map_err(Into::into)?;
            inner.call(second).await.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_compare_by_scheme_host_and_port() {
        let n = |s| normalize_endpoint(s).unwrap();
        assert_eq!(
            n("https://ABC.gr7.ap-northeast-2.eks.amazonaws.com"),
            n("https://abc.gr7.ap-northeast-2.eks.amazonaws.com:443/")
        );
        assert_ne!(n("https://127.0.0.1:6443"), n("https://127.0.0.1:6444"));
        assert_ne!(n("http://127.0.0.1:6443"), n("https://127.0.0.1:6443"));
        assert!(normalize_endpoint("not a url").is_none());
    }

    #[test]
    fn bad_certificate_authority_data_is_refused_before_connecting() {
        let c = ClusterEndpoint {
            name: "c".into(),
            endpoint: "https://127.0.0.1:1".into(),
            certificate_authority: Some("bm90IGEgY2VydA==".into()),
        };
        struct Never;
        #[async_trait::async_trait]
        impl TokenSource for Never {
            async fn token(&self) -> Result<String, BoxError> {
                Err("never".into())
            }
        }
        let Err(e) = connect_direct(&c, Arc::new(Never)) else {
            panic!("a CA without a certificate was accepted");
        };
        assert!(e.message.contains("holds no certificate"), "{}", e.message);
    }
}
