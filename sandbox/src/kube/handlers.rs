//! The Kubernetes HTTP API: URL routing (`/api/v1/namespaces/ns/pods/x/eviction`,
//! `/apis/apps/v1/deployments`, legacy `/watch/` paths), query parameters,
//! content negotiation (JSON, Table, aggregated discovery), verbs and
//! subresources, streaming watches, the call log and injected faults.
//! Requests are never trusted: every malformed input becomes a Status error.
//! Here: routing, authentication and authorization, the call log, faults
//! and discovery; the verbs on resources are served by `serve.rs`, watches
//! by `watch_http.rs`, on the plumbing in `http.rs`.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

pub use super::http::KubeHttp;
use super::http::{
    MAX_BODY, Query, ResourceRef, error_response, json_response, not_found_path, parse_accept, parse_query, qbool,
    value_response,
};
use super::resources;
use super::serve::serve_resource;
use super::status::ApiError;
use super::{aggregation, discovery, openapi, proxy};
use crate::auth::{Attributes, User};
use crate::calls::Service;

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
/// A concurrent writer (a controller, Helm, another operator) updates the
/// object a write is about to change: its resourceVersion moves on, so a
/// write carrying the version the client read (an update, a patch with
/// `metadata.resourceVersion`) gets the API server's real 409 Conflict ("the
/// object has been modified; please apply your changes to the latest version
/// and try again"), while a server-side apply or a patch without that
/// precondition goes through, as on a real cluster
/// (<https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions>).
fn race(st: &KubeHttp, r: &ResourceRef) {
    let Some(name) = &r.name else { return };
    let ns = r.ns.as_deref().unwrap_or("");
    let Ok(cur) = st.store.get(r.rt, ns, name) else { return };
    let mut next = cur.value.clone();
    let n = next
        .pointer("/metadata/annotations/podnet-sandbox~1raced")
        .and_then(Value::as_str)
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    next["metadata"]["annotations"]["podnet-sandbox/raced"] = json!((n + 1).to_string());
    next["metadata"]["resourceVersion"] = json!(cur.rv.to_string());
    if let Some(m) = next.as_object_mut() {
        m.remove("status");
    }
    if let Err(e) = st
        .store
        .update(r.rt, ns, name, next, None, &super::ops::WriteOptions::internal())
    {
        tracing::debug!("racing {}/{name}: {}", resources::get(r.rt).plural, e.message);
    }
}

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
    if let Some(target) = proxy::target(&path) {
        let resp = serve_proxy(&st, &user, &method, &target);
        let action = format!("{} {}", proxy_verb(&method), target.resource());
        st.calls
            .record(Service::Kube, &action, false, resp.status().as_u16(), false, &log_path);
        return resp;
    }
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
    if mutating
        && let Ok(Some(r)) = &resolved
        && st.calls.take_race(&action)
    {
        race(&st, r);
    }
    if let Some(f) = st.calls.take_fault(Service::Kube, &action) {
        let mut e = ApiError::new(f.status, &f.code, f.message_or_default());
        // The API server's 429 carries Retry-After and, in the Status,
        // details.retryAfterSeconds (apimachinery errors.NewTooManyRequests).
        if f.status == 429 {
            let secs = f.retry_after.unwrap_or(1);
            e.details = Some(serde_json::json!({ "retryAfterSeconds": secs }));
            e.retry_after = Some(secs);
        }
        st.calls
            .record(Service::Kube, &action, mutating, f.status, true, &log_path);
        return error_response(&e);
    }
    let resp = match resolved {
        Err(e) => {
            let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
            error_response(&aggregation::refuse_path(&aggregation::remotes(&st.store), &segs).unwrap_or(e))
        }
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

fn proxy_verb(method: &Method) -> &'static str {
    match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    }
}

/// `pods/proxy` and `services/proxy`, authorized as the API server does.
fn serve_proxy(st: &KubeHttp, user: &User, method: &Method, t: &proxy::Target) -> Response {
    let attrs = Attributes::Resource {
        verb: proxy_verb(method),
        group: "",
        resource: t.resource().to_string(),
        namespace: Some(&t.namespace),
        name: Some(&t.name),
    };
    if let Err(e) = st.auth.authorize(user, &attrs) {
        return error_response(&e);
    }
    match proxy::answer(&st.store, t) {
        Ok(body) => json_response(200, Bytes::from(body), "text/plain; charset=utf-8"),
        Err(e) => error_response(&e),
    }
}

fn serve_meta(st: &KubeHttp, method: &Method, headers: &HeaderMap, path: &str) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return error_response(&ApiError::method_not_allowed());
    }
    let store = st.store.clone();
    let served = move |i: usize| store.served(i);
    let acc = parse_accept(headers);
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let remotes = aggregation::remotes(&st.store);
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
            Some(v) => {
                let mut doc = discovery::aggregated(&served, false, &v);
                aggregation::extend_aggregated(&mut doc, &remotes);
                json_response(
                    200,
                    Bytes::from(serde_json::to_vec(&doc).unwrap_or_default()),
                    &aggregated_ct(&v),
                )
            }
            None => {
                let mut doc = discovery::group_list(&served);
                aggregation::extend_group_list(&mut doc, &remotes);
                value_response(200, &doc)
            }
        },
        ["api", "v1"] => match discovery::resource_list(&served, "", "v1") {
            Some(v) => value_response(200, &v),
            None => error_response(&not_found_path()),
        },
        ["apis", g] => match discovery::group(&served, g).or_else(|| aggregation::group(&remotes, g)) {
            Some(v) => value_response(200, &v),
            None => error_response(&not_found_path()),
        },
        ["apis", g, v] => match discovery::resource_list(&served, g, v) {
            Some(v) => value_response(200, &v),
            None => match aggregation::resource_list(&remotes, g, v) {
                Some(Ok(v)) => value_response(200, &v),
                Some(Err(e)) => error_response(&e),
                None => error_response(&not_found_path()),
            },
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
