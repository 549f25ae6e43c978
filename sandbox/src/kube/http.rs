//! HTTP plumbing shared by the Kubernetes API handlers: the server's
//! state, where a request points, query parameters (list, write and Table
//! options), `Accept` negotiation, and JSON and Status responses.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;

use super::ops::WriteOptions;
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{ListOptions, Store};
use super::table::IncludeObject;
use crate::auth::Auth;
use crate::calls::CallLog;

/// Shared state of the Kubernetes HTTP server.
#[derive(Clone)]
pub struct KubeHttp {
    pub store: Arc<Store>,
    pub calls: Arc<CallLog>,
    /// `host:port` clients reach us at (for `/api`'s serverAddressByClientCIDRs).
    pub server_address: String,
    /// Authentication (EKS tokens, the kubeconfig's static token) and
    /// authorization (access entries).
    pub auth: Arc<Auth>,
}

/// The largest request body accepted.
pub(super) const MAX_BODY: usize = 64 << 20;

/// Where a request points.
#[derive(Debug)]
pub(super) struct ResourceRef {
    pub(super) rt: usize,
    pub(super) ns: Option<String>,
    pub(super) name: Option<String>,
    pub(super) sub: Option<String>,
    pub(super) watch_prefix: bool,
}

pub(super) type Query = HashMap<String, String>;

pub(super) fn parse_query(q: Option<&str>) -> Query {
    form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub(super) fn qbool(q: &Query, k: &str) -> bool {
    matches!(q.get(k).map(String::as_str), Some("true" | "1"))
}

pub(super) fn json_response(code: u16, body: Bytes, content_type: &str) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r
}

pub(super) fn value_response(code: u16, v: &Value) -> Response {
    json_response(
        code,
        Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
        "application/json",
    )
}

pub(super) fn error_response(e: &ApiError) -> Response {
    let mut r = value_response(e.code, &e.to_status());
    if let Some(s) = e.retry_after
        && let Ok(h) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, h);
    }
    r
}

pub(super) fn not_found_path() -> ApiError {
    ApiError::new(404, "NotFound", "the server could not find the requested resource")
}

/// Parsed `Accept` header preferences.
pub(super) struct Accept {
    /// `Some("v1")` when a Table is acceptable before plain JSON.
    pub(super) table: Option<String>,
    /// `Some("v2")` when aggregated discovery is acceptable first.
    pub(super) aggregated: Option<String>,
}

pub(super) fn parse_accept(headers: &HeaderMap) -> Accept {
    let raw = headers.get(header::ACCEPT).and_then(|h| h.to_str().ok()).unwrap_or("");
    let mut acc = Accept {
        table: None,
        aggregated: None,
    };
    for range in raw.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        if media != "application/json" {
            continue;
        }
        let params: HashMap<&str, &str> = parts.filter_map(|p| p.split_once('=')).collect();
        match (params.get("as"), params.get("g"), params.get("v")) {
            (Some(&"Table"), Some(&"meta.k8s.io"), Some(v)) if matches!(*v, "v1" | "v1beta1") => {
                acc.table = Some(v.to_string());
                break;
            }
            (Some(&"APIGroupDiscoveryList"), Some(&"apidiscovery.k8s.io"), Some(v))
                if matches!(*v, "v2" | "v2beta1") =>
            {
                acc.aggregated = Some(v.to_string());
                break;
            }
            (None, _, _) => break,
            _ => continue,
        }
    }
    acc
}

pub(super) fn list_opts(q: &Query) -> Result<ListOptions, ApiError> {
    let labels = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let limit = match q.get("limit") {
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?,
        ),
        None => None,
    };
    let rv = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("resourceVersion: Invalid value: \"{s}\"")))?,
        ),
    };
    let exact = q.get("resourceVersionMatch").map(String::as_str) == Some("Exact");
    Ok(ListOptions {
        labels,
        fields,
        limit,
        continue_token: q.get("continue").filter(|c| !c.is_empty()).cloned(),
        exact_rv: rv.filter(|_| exact),
        min_rv: rv.filter(|_| !exact),
    })
}

pub(super) fn write_opts(q: &Query) -> Result<WriteOptions, ApiError> {
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: \"{other}\": supported values: \"All\""
            )));
        }
    };
    Ok(WriteOptions {
        dry_run,
        field_manager: q.get("fieldManager").cloned(),
        force: qbool(q, "force"),
        internal: false,
    })
}

pub(super) fn include_object(q: &Query) -> IncludeObject {
    match q.get("includeObject").map(String::as_str) {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}
