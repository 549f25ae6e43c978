//! S3, audited the same way as EC2: `AWS_ENDPOINT_URL_S3` points here, every
//! request goes to moto's S3 unchanged (path-style: `/<bucket>/<key>`) and
//! comes back untouched, and the call log records its operation, status and
//! whether it writes. moto implements S3's conditional writes
//! (`If-None-Match: *` answered 412 `PreconditionFailed` when the key
//! exists, `If-Match`), which podnet's shared state relies on.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;

use super::{ec2_error_body, forward, xml_response};
use crate::calls::{CallLog, Service};

#[derive(Clone)]
struct S3Proxy {
    upstream: String,
    calls: Arc<CallLog>,
}

pub fn router(upstream: String, calls: Arc<CallLog>) -> Router {
    Router::new().fallback(handle).with_state(S3Proxy { upstream, calls })
}

/// The S3 operation a path-style request is, from its method, path and
/// query (S3 API Reference).
pub fn operation(method: &Method, path: &str, query: Option<&str>) -> &'static str {
    let has_key = path
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, k)| !k.is_empty());
    let q = query.unwrap_or("");
    match (method.as_str(), has_key) {
        ("GET", false) if q.contains("list-type=2") => "ListObjectsV2",
        ("GET", false) if path.trim_matches('/').is_empty() => "ListBuckets",
        ("GET", false) => "ListObjects",
        ("GET", true) => "GetObject",
        ("HEAD", true) => "HeadObject",
        ("HEAD", false) => "HeadBucket",
        ("PUT", false) => "CreateBucket",
        ("PUT", true) => "PutObject",
        ("DELETE", true) => "DeleteObject",
        ("DELETE", false) => "DeleteBucket",
        ("POST", false) if q.contains("delete") => "DeleteObjects",
        _ => "Unknown",
    }
}

async fn handle(State(st): State<S3Proxy>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
    let op = operation(&parts.method, parts.uri.path(), parts.uri.query());
    let mutating = !matches!(parts.method.as_str(), "GET" | "HEAD");
    let path = format!("{} {}", parts.method, parts.uri.path());
    if let Some(f) = st.calls.take_fault(Service::S3, op) {
        st.calls.record(Service::S3, op, mutating, f.status, true, &path);
        return xml_response(f.status, ec2_error_body(&f.code, &f.message_or_default()));
    }
    let resp = match forward(&st.upstream, &parts, body, |_| None).await {
        Ok(r) => r,
        Err(e) => xml_response(503, ec2_error_body("ServiceUnavailable", &e)),
    };
    st.calls
        .record(Service::S3, op, mutating, resp.status().as_u16(), false, &path);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_from_method_path_and_query() {
        assert_eq!(operation(&Method::PUT, "/state/team/lock", None), "PutObject");
        assert_eq!(operation(&Method::PUT, "/state", None), "CreateBucket");
        assert_eq!(
            operation(&Method::GET, "/state", Some("list-type=2&prefix=team%2F")),
            "ListObjectsV2"
        );
        assert_eq!(operation(&Method::GET, "/state/team/plan.json", None), "GetObject");
        assert_eq!(operation(&Method::DELETE, "/state/team/lock", None), "DeleteObject");
    }
}
