//! The Kubernetes HTTP API: URL routing (`/api/v1/namespaces/ns/pods/x/eviction`,
//! `/apis/apps/v1/deployments`, legacy `/watch/` paths), query parameters,
//! content negotiation (JSON, Table, aggregated discovery), verbs and
//! subresources, streaming watches, the call log and injected faults.
//! Requests are never trusted: every malformed input becomes a Status error.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

use super::discovery;
use super::openapi;
use super::ops::{DeleteOptions, PatchType, WriteOptions, parse_body};
use super::patch;
use super::resources::{self, CRD, ResourceType, Subresource};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{ListOptions, ListResult, Store, Stored};
use super::table::{self, IncludeObject};
use super::watch::{WatchItem, WatchOptions, Watcher};
use crate::auth::{Attributes, Auth, User};
use crate::calls::{CallLog, Service};

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

const MAX_BODY: usize = 64 << 20;

/// Where a request points.
#[derive(Debug)]
struct ResourceRef {
    rt: usize,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    watch_prefix: bool,
}

type Query = HashMap<String, String>;

fn parse_query(q: Option<&str>) -> Query {
    form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn qbool(q: &Query, k: &str) -> bool {
    matches!(q.get(k).map(String::as_str), Some("true" | "1"))
}

fn json_response(code: u16, body: Bytes, content_type: &str) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r
}

fn value_response(code: u16, v: &Value) -> Response {
    json_response(
        code,
        Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
        "application/json",
    )
}

fn error_response(e: &ApiError) -> Response {
    let mut r = value_response(e.code, &e.to_status());
    if let Some(s) = e.retry_after
        && let Ok(h) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, h);
    }
    r
}

fn not_found_path() -> ApiError {
    ApiError::new(404, "NotFound", "the server could not find the requested resource")
}

/// Parsed `Accept` header preferences.
struct Accept {
    /// `Some("v1")` when a Table is acceptable before plain JSON.
    table: Option<String>,
    /// `Some("v2")` when aggregated discovery is acceptable first.
    aggregated: Option<String>,
}

fn parse_accept(headers: &HeaderMap) -> Accept {
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

fn resolve(path: &str) -> Result<Option<ResourceRef>, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] if !rest.is_empty() => ("", "v1", rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return Ok(None),
    };
    let (watch_prefix, rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (false, r),
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, r @ ..] if !r.is_empty() && !matches!(r, ["status" | "finalize"]) => {
            (Some(ns.to_string()), r)
        }
        r => (None, r),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return Err(not_found_path()),
    };
    let rt = resources::by_plural(group, version, plural).ok_or_else(not_found_path)?;
    let t = resources::get(rt);
    if ns.is_some() && !t.namespaced {
        return Err(not_found_path());
    }
    Ok(Some(ResourceRef {
        rt,
        ns,
        name,
        sub,
        watch_prefix,
    }))
}

fn verb(method: &Method, r: &ResourceRef, q: &Query) -> &'static str {
    match (method.as_str(), r.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if r.watch_prefix || qbool(q, "watch") => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// Authorization of an authenticated request (the API server's filter
/// order: authentication, then authorization, then the handler).
fn authorize(
    st: &KubeHttp,
    user: &User,
    method: &Method,
    path: &str,
    resolved: &Result<Option<ResourceRef>, ApiError>,
    q: &Query,
) -> Result<(), ApiError> {
    let verb_lower = method.as_str().to_ascii_lowercase();
    match resolved {
        Ok(Some(r)) => {
            let rt = resources::get(r.rt);
            let resource = match &r.sub {
                Some(s) => format!("{}/{s}", rt.plural),
                None => rt.plural.to_string(),
            };
            st.auth.authorize(
                user,
                &Attributes::Resource {
                    verb: verb(method, r, q),
                    group: rt.group,
                    resource,
                    namespace: r.ns.as_deref(),
                    name: r.name.as_deref(),
                },
            )
        }
        _ => st.auth.authorize(
            user,
            &Attributes::NonResource {
                verb: &verb_lower,
                path,
            },
        ),
    }
}

/// `SelfSubjectAccessReview` (`kubectl auth can-i`) and `SelfSubjectReview`
/// (`kubectl auth whoami`): answered for the caller from the same
/// authorizer that decides its requests. Created, never stored (201).
fn self_review(st: &KubeHttp, user: &User, path: &str, body: &[u8]) -> Option<Result<Value, ApiError>> {
    let review = match path.trim_end_matches('/') {
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" => "access",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews" => "whoami",
        _ => return None,
    };
    if user.name == "system:anonymous" {
        return Some(Err(ApiError::new(
            403,
            "Forbidden",
            format!("forbidden: User \"system:anonymous\" cannot create path \"{path}\""),
        )));
    }
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Some(Err(ApiError::new(
                400,
                "BadRequest",
                format!("the body is not JSON: {e}"),
            )));
        }
    };
    if review == "whoami" {
        return Some(Ok(json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {"username": user.name, "groups": user.groups}},
        })));
    }
    let spec = &v["spec"];
    let s = |p: &str| spec.pointer(p).and_then(Value::as_str).unwrap_or("");
    let allowed = if spec.get("resourceAttributes").is_some() {
        let sub = s("/resourceAttributes/subresource");
        let resource = s("/resourceAttributes/resource");
        let ns = s("/resourceAttributes/namespace");
        let name = s("/resourceAttributes/name");
        st.auth.allowed(
            user,
            &Attributes::Resource {
                verb: s("/resourceAttributes/verb"),
                group: s("/resourceAttributes/group"),
                resource: if sub.is_empty() {
                    resource.to_string()
                } else {
                    format!("{resource}/{sub}")
                },
                namespace: (!ns.is_empty()).then_some(ns),
                name: (!name.is_empty()).then_some(name),
            },
        )
    } else if spec.get("nonResourceAttributes").is_some() {
        st.auth.allowed(
            user,
            &Attributes::NonResource {
                verb: s("/nonResourceAttributes/verb"),
                path: s("/nonResourceAttributes/path"),
            },
        )
    } else {
        return Some(Err(ApiError::new(
            422,
            "Invalid",
            "SelfSubjectAccessReview.authorization.k8s.io is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )));
    };
    Some(Ok(json!({
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": {"allowed": allowed},
    })))
}

/// The fallback handler serving the whole Kubernetes API.
pub async fn handle(State(st): State<KubeHttp>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(&ApiError::new(
                413,
                "RequestEntityTooLarge",
                "the request body is too large",
            ));
        }
    };
    let path = parts.uri.path().to_string();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let q = parse_query(parts.uri.query());
    let method = parts.method.clone();
    let resolved = resolve(&path);
    let (action, mutating) = match &resolved {
        Ok(Some(r)) => {
            let v = verb(&method, r, &q);
            let res = match &r.sub {
                Some(s) => format!("{}/{s}", resources::get(r.rt).plural),
                None => resources::get(r.rt).plural.to_string(),
            };
            (
                format!("{v} {res}"),
                matches!(v, "create" | "update" | "patch" | "delete" | "deletecollection"),
            )
        }
        _ => (format!("{} {path}", method.as_str().to_lowercase()), false),
    };
    let log_path = format!("{} {pq}", method.as_str());
    let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok());
    let user = match st.auth.authenticate(authorization) {
        Ok(u) => u,
        Err((e, why)) => {
            // The reason stays in the sandbox's log; clients see the bare 401.
            tracing::debug!("401 for {method} {path}: {why}");
            st.calls
                .record(Service::Kube, &action, mutating, e.code, false, &log_path);
            return error_response(&e);
        }
    };
    if method == Method::POST
        && let Some(answer) = self_review(&st, &user, &path, &body)
    {
        let resp = match answer {
            Ok(v) => value_response(201, &v),
            Err(e) => error_response(&e),
        };
        st.calls.record(
            Service::Kube,
            &format!("create {}", path.rsplit('/').next().unwrap_or("")),
            false,
            resp.status().as_u16(),
            false,
            &log_path,
        );
        return resp;
    }
    if let Err(e) = authorize(&st, &user, &method, &path, &resolved, &q) {
        st.calls
            .record(Service::Kube, &action, mutating, e.code, false, &log_path);
        return error_response(&e);
    }
    if let Some(f) = st.calls.take_fault(Service::Kube, &action) {
        let e = ApiError::new(f.status, &f.code, f.message_or_default());
        st.calls
            .record(Service::Kube, &action, mutating, f.status, true, &log_path);
        return error_response(&e);
    }
    let resp = match resolved {
        Err(e) => error_response(&e),
        Ok(Some(r)) => match serve_resource(&st, &method, &parts.headers, &q, r, &body).await {
            Ok(resp) => resp,
            Err(e) => error_response(&e),
        },
        Ok(None) => serve_meta(&st, &method, &parts.headers, &path),
    };
    st.calls.record(
        Service::Kube,
        &action,
        mutating,
        resp.status().as_u16(),
        false,
        &log_path,
    );
    resp
}

fn serve_meta(st: &KubeHttp, method: &Method, headers: &HeaderMap, path: &str) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return error_response(&ApiError::method_not_allowed());
    }
    let store = st.store.clone();
    let served = move |i: usize| store.served(i);
    let acc = parse_accept(headers);
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let aggregated_ct = |v: &str| format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList");
    match segs.as_slice() {
        [""] => value_response(
            200,
            &json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]}),
        ),
        ["version"] => value_response(200, &discovery::version()),
        ["healthz" | "livez" | "readyz"] => json_response(200, Bytes::from_static(b"ok"), "text/plain; charset=utf-8"),
        ["api"] => match acc.aggregated {
            Some(v) => json_response(
                200,
                Bytes::from(serde_json::to_vec(&discovery::aggregated(&served, true, &v)).unwrap_or_default()),
                &aggregated_ct(&v),
            ),
            None => value_response(200, &discovery::api_versions(&st.server_address)),
        },
        ["apis"] => match acc.aggregated {
            Some(v) => json_response(
                200,
                Bytes::from(serde_json::to_vec(&discovery::aggregated(&served, false, &v)).unwrap_or_default()),
                &aggregated_ct(&v),
            ),
            None => value_response(200, &discovery::group_list(&served)),
        },
        ["api", "v1"] => match discovery::resource_list(&served, "", "v1") {
            Some(v) => value_response(200, &v),
            None => error_response(&not_found_path()),
        },
        ["apis", g] => match discovery::group(&served, g) {
            Some(v) => value_response(200, &v),
            None => error_response(&not_found_path()),
        },
        ["apis", g, v] => match discovery::resource_list(&served, g, v) {
            Some(v) => value_response(200, &v),
            None => error_response(&not_found_path()),
        },
        ["openapi", "v3"] => value_response(200, &openapi::root(&served)),
        ["openapi", "v3", "api", v] => match openapi::group_version(&served, "", v) {
            Some(d) => value_response(200, &d),
            None => error_response(&not_found_path()),
        },
        ["openapi", "v3", "apis", g, v] => match openapi::group_version(&served, g, v) {
            Some(d) => value_response(200, &d),
            None => error_response(&not_found_path()),
        },
        _ => error_response(&not_found_path()),
    }
}

fn list_opts(q: &Query) -> Result<ListOptions, ApiError> {
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

fn write_opts(q: &Query) -> Result<WriteOptions, ApiError> {
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

fn include_object(q: &Query) -> IncludeObject {
    match q.get("includeObject").map(String::as_str) {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

fn list_body(rt: &ResourceType, res: &ListResult) -> Bytes {
    let mut meta = json!({"resourceVersion": res.rv.to_string()});
    if let Some(c) = &res.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(n) = res.remaining {
        meta["remainingItemCount"] = json!(n);
    }
    let total: usize = res.items.iter().map(|i| i.json.len() + 1).sum();
    let mut out = BytesMut::with_capacity(total + 256);
    out.extend_from_slice(
        format!(
            "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
            rt.list_kind(),
            rt.api_version(),
            meta
        )
        .as_bytes(),
    );
    for (i, item) in res.items.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b",");
        }
        out.extend_from_slice(&item.json);
    }
    out.extend_from_slice(b"]}");
    out.freeze()
}

fn object_response(st: &KubeHttp, code: u16, rt_idx: usize, obj: &Arc<Stored>, acc: &Accept, q: &Query) -> Response {
    match &acc.table {
        Some(tv) => {
            let rt = resources::get(rt_idx);
            let crd = st.store.get(CRD, "", &rt.crd_name()).ok();
            let t = table::table(
                rt,
                crd.as_ref().map(|c| &c.value),
                std::slice::from_ref(obj),
                json!({"resourceVersion": obj.rv.to_string()}),
                include_object(q),
                tv,
            );
            json_response(
                code,
                Bytes::from(serde_json::to_vec(&t).unwrap_or_default()),
                &format!("application/json;as=Table;v={tv};g=meta.k8s.io"),
            )
        }
        None => json_response(code, obj.json.clone(), "application/json"),
    }
}

fn scale_of(obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector")
        .and_then(|s| LabelSelector::from_json(s).ok())
        .map(|s| s.to_string_form())
        .unwrap_or_default();
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let keep = ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"];
    let meta: serde_json::Map<String, Value> = meta
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        }
    })
}

async fn serve_resource(
    st: &KubeHttp,
    method: &Method,
    headers: &HeaderMap,
    q: &Query,
    r: ResourceRef,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let store = &st.store;
    let rt = resources::get(r.rt);
    if !store.served(r.rt) {
        return Err(not_found_path());
    }
    let acc = parse_accept(headers);
    let ns = r.ns.clone().unwrap_or_default();
    let sub = match r.sub.as_deref() {
        None => None,
        Some(s) => Some(
            rt.subresources
                .iter()
                .copied()
                .find(|x| x.name() == s)
                .ok_or_else(not_found_path)?,
        ),
    };
    match (method.as_str(), r.name.as_deref(), sub) {
        ("GET", None, None) => {
            if r.watch_prefix || qbool(q, "watch") {
                return watch_response(st, r.rt, r.ns.clone(), q, &acc);
            }
            let opts = list_opts(q)?;
            let ns_opt = r.ns.as_deref();
            let res = store.list(r.rt, ns_opt, &opts)?;
            match &acc.table {
                Some(tv) => {
                    let crd = store.get(CRD, "", &rt.crd_name()).ok();
                    let mut meta = json!({"resourceVersion": res.rv.to_string()});
                    if let Some(c) = &res.continue_token {
                        meta["continue"] = json!(c);
                    }
                    if let Some(n) = res.remaining {
                        meta["remainingItemCount"] = json!(n);
                    }
                    let t = table::table(
                        rt,
                        crd.as_ref().map(|c| &c.value),
                        &res.items,
                        meta,
                        include_object(q),
                        tv,
                    );
                    Ok(json_response(
                        200,
                        Bytes::from(serde_json::to_vec(&t).unwrap_or_default()),
                        &format!("application/json;as=Table;v={tv};g=meta.k8s.io"),
                    ))
                }
                None => Ok(json_response(200, list_body(rt, &res), "application/json")),
            }
        }
        ("GET", Some(name), None | Some(Subresource::Status)) => {
            let obj = store.get(r.rt, &ns, name)?;
            Ok(object_response(st, 200, r.rt, &obj, &acc, q))
        }
        ("GET", Some(name), Some(Subresource::Scale)) => {
            let obj = store.get(r.rt, &ns, name)?;
            Ok(value_response(200, &scale_of(&obj.value)))
        }
        ("POST", None, None) => {
            let v = parse_body(body)?;
            let opts = write_opts(q)?;
            let obj = store.create(r.rt, &ns, v, &opts)?;
            Ok(object_response(st, 201, r.rt, &obj, &acc, q))
        }
        ("POST", Some(name), Some(Subresource::Eviction)) => {
            let v = parse_body(body)?;
            let opts = write_opts(q)?;
            let status = store.evict(&ns, name, &v, opts.dry_run)?;
            Ok(value_response(201, &status))
        }
        ("PUT", Some(name), None | Some(Subresource::Status)) => {
            let v = parse_body(body)?;
            let opts = write_opts(q)?;
            let obj = store.update(r.rt, &ns, name, v, sub, &opts)?;
            Ok(object_response(st, 200, r.rt, &obj, &acc, q))
        }
        ("PUT" | "PATCH", Some(name), Some(Subresource::Scale)) => {
            let cur = store.get(r.rt, &ns, name)?;
            let mut scale = scale_of(&cur.value);
            let v = parse_body(body)?;
            if method == Method::PUT {
                scale = v;
            } else {
                let ct = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("");
                let res = match PatchType::from_content_type(ct) {
                    Some(PatchType::Json) => patch::json_patch(&mut scale, &v),
                    Some(PatchType::Merge) => patch::merge_patch(&mut scale, &v),
                    Some(PatchType::Strategic) => patch::strategic_merge(&mut scale, &v, true),
                    Some(PatchType::Apply) => {
                        patch::apply_merge(&mut scale, &v, true);
                        Ok(())
                    }
                    None => return Err(ApiError::unsupported_media_type(ct)),
                };
                res.map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?;
            }
            let want_rv = scale
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !want_rv.is_empty() && want_rv != cur.rv.to_string() {
                return Err(ApiError::conflict(rt, name));
            }
            let Some(replicas) = scale.pointer("/spec/replicas").and_then(Value::as_i64) else {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!("Scale.autoscaling \"{name}\" is invalid: spec.replicas: Required value"),
                ));
            };
            if replicas < 0 {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
                    ),
                ));
            }
            let opts = write_opts(q)?;
            let updated = store.patch(
                r.rt,
                &ns,
                name,
                PatchType::Merge,
                &json!({"spec": {"replicas": replicas}}),
                None,
                &opts,
            )?;
            Ok(value_response(200, &scale_of(&updated.value)))
        }
        ("PATCH", Some(name), None | Some(Subresource::Status)) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            let pt = PatchType::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media_type(ct))?;
            let v = parse_body(body)?;
            let opts = write_opts(q)?;
            let existed = store.get(r.rt, &ns, name).is_ok();
            let obj = store.patch(r.rt, &ns, name, pt, &v, sub, &opts)?;
            let code = if existed { 200 } else { 201 };
            Ok(object_response(st, code, r.rt, &obj, &acc, q))
        }
        ("DELETE", Some(name), None) => {
            let mut opts = if body.iter().all(u8::is_ascii_whitespace) {
                DeleteOptions::default()
            } else {
                DeleteOptions::from_json(&parse_body(body)?)
            };
            if q.get("dryRun").map(String::as_str) == Some("All") {
                opts.dry_run = true;
            }
            if let Some(p) = q.get("propagationPolicy") {
                opts.propagation = Some(p.clone());
            }
            let obj = store.delete(r.rt, &ns, name, &opts)?;
            let still_there = store.get(r.rt, &ns, name).is_ok() && !opts.dry_run;
            Ok(json_response(
                if still_there { 202 } else { 200 },
                obj.json.clone(),
                "application/json",
            ))
        }
        ("DELETE", None, None) => {
            let lo = list_opts(q)?;
            let res = store.list(r.rt, r.ns.as_deref(), &lo)?;
            let opts = DeleteOptions {
                dry_run: q.get("dryRun").map(String::as_str) == Some("All"),
                ..Default::default()
            };
            let mut deleted = Vec::new();
            for item in &res.items {
                if let Ok(d) = store.delete(r.rt, item.namespace(), item.name(), &opts) {
                    deleted.push(d);
                }
            }
            let out = ListResult {
                items: deleted,
                rv: store.resource_version(),
                continue_token: None,
                remaining: None,
            };
            Ok(json_response(200, list_body(rt, &out), "application/json"))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn watch_response(
    st: &KubeHttp,
    rt_idx: usize,
    ns: Option<String>,
    q: &Query,
    acc: &Accept,
) -> Result<Response, ApiError> {
    let lo = list_opts(q)?;
    let send_initial = qbool(q, "sendInitialEvents");
    let bookmarks = qbool(q, "allowWatchBookmarks");
    if send_initial {
        let rvm = q.get("resourceVersionMatch").map(String::as_str);
        if rvm != Some("NotOlderThan") || !bookmarks {
            return Err(ApiError::new(
                422,
                "Invalid",
                "ListOptions.meta.k8s.io \"\" is invalid: [resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan, allowWatchBookmarks: Required value: allowWatchBookmarks requires sendInitialEvents to be set]",
            ));
        }
    }
    let rv = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("resourceVersion: Invalid value: \"{s}\"")))?,
        ),
    };
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let watcher = st.store.watch(
        rt_idx,
        WatchOptions {
            namespace: ns,
            labels: lo.labels,
            fields: lo.fields,
            resource_version: rv,
            send_initial_events: send_initial,
        },
    )?;
    let rt = resources::get(rt_idx);
    let table_v = acc.table.clone();
    let crd = st.store.get(CRD, "", &rt.crd_name()).ok();
    let include = include_object(q);
    let state = WatchState {
        watcher,
        deadline: tokio::time::Instant::now() + timeout,
        bookmarks,
        rt: rt_idx,
        table: table_v.clone(),
        crd: crd.map(|c| c.value.clone()),
        include,
        done: false,
    };
    let stream = futures::stream::unfold(state, next_chunk);
    let mut resp = Response::new(Body::from_stream(stream));
    let ct = match &table_v {
        Some(v) => format!("application/json;as=Table;v={v};g=meta.k8s.io"),
        None => "application/json".to_string(),
    };
    if let Ok(h) = HeaderValue::from_str(&ct) {
        resp.headers_mut().insert(header::CONTENT_TYPE, h);
    }
    Ok(resp)
}

struct WatchState {
    watcher: Watcher,
    deadline: tokio::time::Instant,
    bookmarks: bool,
    rt: usize,
    table: Option<String>,
    crd: Option<Value>,
    include: IncludeObject,
    done: bool,
}

const BOOKMARK_EVERY: Duration = Duration::from_secs(10);

fn encode_item(s: &WatchState, item: &WatchItem) -> Bytes {
    if let (Some(tv), WatchItem::Event(kind, obj)) = (&s.table, item) {
        let t = table::table(
            resources::get(s.rt),
            s.crd.as_ref(),
            std::slice::from_ref(obj),
            json!({"resourceVersion": obj.rv.to_string()}),
            s.include,
            tv,
        );
        let mut line = serde_json::to_vec(&json!({"type": kind.as_str(), "object": t})).unwrap_or_default();
        line.push(b'\n');
        return Bytes::from(line);
    }
    Bytes::from(Watcher::encode(s.rt, item))
}

async fn next_chunk(mut s: WatchState) -> Option<(Result<Bytes, Infallible>, WatchState)> {
    if s.done {
        return None;
    }
    let tick = tokio::time::sleep(BOOKMARK_EVERY);
    tokio::pin!(tick);
    tokio::select! {
        item = s.watcher.next() => match item {
            Some(item) => {
                if matches!(item, WatchItem::Error(_)) {
                    s.done = true;
                }
                let b = encode_item(&s, &item);
                Some((Ok(b), s))
            }
            None => None,
        },
        _ = tokio::time::sleep_until(s.deadline) => None,
        _ = &mut tick, if s.bookmarks => {
            let b = encode_item(&s, &WatchItem::Bookmark { rv: s.watcher.progress_rv, initial_end: false });
            Some((Ok(b), s))
        }
    }
}
