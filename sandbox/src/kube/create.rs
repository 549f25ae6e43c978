//! Object creation under the store's write lock: namespace resolution,
//! `generateName`, the system-owned metadata (uid, creationTimestamp,
//! generation, resourceVersion) and the initial status, as the apiserver's
//! generic registry does in `BeforeCreate`
//! (k8s.io/apiserver `pkg/registry/rest/create.go`) and
//! <https://kubernetes.io/docs/reference/using-api/api-concepts/#generated-values>.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::admission;
use super::derived;
use super::meta::{meta_mut, now_rfc3339, random_suffix};
use super::options::WriteOptions;
use super::resources::{self, NAMESPACE, POD, ResourceType};
use super::status::{ApiError, Cause};
use super::store::{Inner, Key, Stored, meta_str};
use super::validate::{check_type_meta, roundtrip, validate};

/// The default status a fresh object gets when created over HTTP.
fn initial_status(rt_idx: usize) -> Option<Value> {
    match rt_idx {
        POD => Some(json!({"phase": "Pending", "qosClass": "BestEffort"})),
        NAMESPACE => Some(json!({"phase": "Active"})),
        _ => None,
    }
}

pub(crate) fn create_locked(
    inner: &mut Inner,
    rt_idx: usize,
    ns: &str,
    value: Value,
    opts: &WriteOptions,
    managed_fields: Option<Value>,
) -> Result<Arc<Stored>, ApiError> {
    let rt = resources::get(rt_idx);
    let mut v = value;
    check_type_meta(rt, &mut v)?;
    let ns = resolve_namespace(inner, rt, ns, &v)?;
    let meta = meta_mut(&mut v);
    if rt.namespaced {
        meta.insert("namespace".into(), json!(ns));
    } else {
        meta.remove("namespace");
    }
    let name = assign_name(inner, rt_idx, &ns, meta)?;
    if rt_idx == NAMESPACE {
        // The namespace strategy labels every namespace with its name, which
        // webhooks' namespace selectors rely on.
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    set_system_meta(rt, meta, opts, managed_fields)?;
    set_initial_status(rt_idx, &mut v, opts);
    let v = roundtrip(rt, v)?;
    validate(rt_idx, &v)?;
    let key: Key = (ns.clone(), name.clone());
    // The API server calls webhooks before storage answers AlreadyExists.
    admission::admit(inner, rt_idx, None, "CREATE", &v, None)?;
    if inner.get(rt_idx, &ns, &name).is_some() {
        return Err(ApiError::already_exists(rt, &name));
    }
    if opts.dry_run {
        return Ok(Stored::new(v, inner.rv));
    }
    let stored = inner.commit(rt_idx, key, Some(v), None);
    derived::after_write(inner, rt_idx, None, Some(&stored));
    Ok(stored)
}

/// The namespace a create lands in: the URL's, else the body's; they must
/// agree, and the namespace must exist. Empty for cluster-scoped kinds.
fn resolve_namespace(inner: &Inner, rt: &ResourceType, ns: &str, v: &Value) -> Result<String, ApiError> {
    if !rt.namespaced {
        return Ok(String::new());
    }
    let body_ns = meta_str(v, "namespace");
    let ns = if ns.is_empty() { body_ns } else { ns };
    if ns.is_empty() {
        return Err(ApiError::bad_request(
            "the server could not find the requested resource (a namespace is required)",
        ));
    }
    if !body_ns.is_empty() && body_ns != ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if !inner.namespace_exists(ns) {
        return Err(ApiError::namespace_not_found(ns));
    }
    Ok(ns.to_string())
}

/// The object's name, generated from `generateName` when it has none.
fn assign_name(inner: &Inner, rt_idx: usize, ns: &str, meta: &mut Map<String, Value>) -> Result<String, ApiError> {
    let mut name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    if !name.is_empty() {
        return Ok(name);
    }
    let gen_name = meta
        .get("generateName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if gen_name.is_empty() {
        return Err(ApiError::invalid(
            resources::get(rt_idx),
            "",
            vec![Cause::required("metadata.name", "name or generateName is required")],
        ));
    }
    loop {
        name = format!("{gen_name}{}", random_suffix(5));
        if inner.get(rt_idx, ns, &name).is_none() {
            break;
        }
    }
    meta.insert("name".into(), json!(name));
    Ok(name)
}

/// uid, creationTimestamp, generation and managedFields: the server's, not
/// the client's, unless an in-process caller seeds an object's history.
fn set_system_meta(
    rt: &ResourceType,
    meta: &mut Map<String, Value>,
    opts: &WriteOptions,
    managed_fields: Option<Value>,
) -> Result<(), ApiError> {
    if !opts.internal {
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        meta.remove("uid");
        meta.remove("creationTimestamp");
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        meta.remove("managedFields");
    }
    if let Some(mf) = managed_fields {
        meta.insert("managedFields".into(), mf);
    }
    meta.remove("resourceVersion");
    if meta.get("uid").and_then(Value::as_str).is_none_or(str::is_empty) {
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    }
    if !meta.contains_key("creationTimestamp") {
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    }
    if rt.generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    Ok(())
}

/// Clients cannot create an object with a status; the server sets the
/// initial one, and a namespace always gets the `kubernetes` finalizer.
fn set_initial_status(rt_idx: usize, v: &mut Value, opts: &WriteOptions) {
    let rt = resources::get(rt_idx);
    if !opts.internal
        && let Some(m) = v.as_object_mut()
    {
        if rt.has_status() || rt_idx == POD {
            m.remove("status");
        }
        if let Some(s) = initial_status(rt_idx) {
            m.insert("status".into(), s);
        }
    }
    if rt_idx == NAMESPACE {
        v["spec"] = json!({"finalizers": ["kubernetes"]});
        if v.get("status").is_none() {
            v["status"] = json!({"phase": "Active"});
        }
    }
}
