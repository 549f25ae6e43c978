//! The verbs on resources: list (as JSON or Table), get, create, update,
//! patch, delete and deletecollection, and the `status`, `scale` and
//! `eviction` subresources. Watches stream from `watch_http.rs`.

use std::sync::Arc;

use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};

use super::http::{
    Accept, KubeHttp, Query, ResourceRef, include_object, json_response, list_opts, not_found_path, parse_accept,
    qbool, value_response, write_opts,
};
use super::ops::{DeleteOptions, PatchType, parse_body};
use super::patch;
use super::resources::{self, CRD, ResourceType, Subresource};
use super::selectors::LabelSelector;
use super::status::ApiError;
use super::store::{ListResult, Stored};
use super::table;
use super::watch_http::watch_response;

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

pub(super) async fn serve_resource(
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
        ("GET", None, None) => list_response(st, rt, &r, q, &acc),
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
            let scale = changed_scale(scale_of(&cur.value), method, headers, body)?;
            let replicas = scale_replicas(rt, name, &scale, &cur)?;
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
        ("DELETE", Some(name), None) => delete_one(st, &r, &ns, name, q, body),
        ("DELETE", None, None) => delete_collection(st, rt, &r, q),
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// A list (or, with `watch`, a watch) of a resource: plain JSON or a Table.
fn list_response(
    st: &KubeHttp,
    rt: &ResourceType,
    r: &ResourceRef,
    q: &Query,
    acc: &Accept,
) -> Result<Response, ApiError> {
    let store = &st.store;
    if r.watch_prefix || qbool(q, "watch") {
        return watch_response(st, r.rt, r.ns.clone(), q, acc);
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

/// The Scale a PUT replaces or a PATCH changes.
fn changed_scale(mut scale: Value, method: &Method, headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
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
    Ok(scale)
}

/// The replicas a new Scale asks for, once its resourceVersion (if any)
/// matches the object's and the count is valid.
fn scale_replicas(rt: &ResourceType, name: &str, scale: &Value, cur: &Stored) -> Result<i64, ApiError> {
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
    Ok(replicas)
}

/// DELETE of one object: 202 when it outlives the call (finalizers), 200
/// once it is gone.
fn delete_one(
    st: &KubeHttp,
    r: &ResourceRef,
    ns: &str,
    name: &str,
    q: &Query,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let store = &st.store;
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
    let obj = store.delete(r.rt, ns, name, &opts)?;
    let still_there = store.get(r.rt, ns, name).is_ok() && !opts.dry_run;
    Ok(json_response(
        if still_there { 202 } else { 200 },
        obj.json.clone(),
        "application/json",
    ))
}

/// `deletecollection`: every object the list options select.
fn delete_collection(st: &KubeHttp, rt: &ResourceType, r: &ResourceRef, q: &Query) -> Result<Response, ApiError> {
    let store = &st.store;
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
