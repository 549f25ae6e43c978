//! Write semantics shared by the HTTP handlers and in-process callers:
//! create (names, generateName, uid, timestamps, generation, namespace
//! checks), update with optimistic concurrency, the status and main
//! resource split, the four patch types, delete with preconditions,
//! finalizers and cascading to dependents, and dry runs.
//!
//! Every write round-trips built-in kinds through their k8s-openapi type.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::derived;
use super::patch::{self, PatchError};
use super::resources::{self, NAMESPACE, POD, ResourceType, Subresource};
use super::selectors::LabelSelector;
use super::status::{ApiError, Cause};
use super::store::{Inner, Key, Store, Stored, meta_str};

/// Options of create/update/patch.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    /// `fieldManager`; required for apply patches.
    pub field_manager: Option<String>,
    /// `force` of apply (conflicts are not modelled, so it is accepted).
    pub force: bool,
    /// In-process callers (seeding, controllers) may create objects with
    /// their status, uid and creationTimestamp already set, as if they had
    /// existed for a while; HTTP clients may not.
    pub internal: bool,
}

impl WriteOptions {
    pub fn internal() -> Self {
        WriteOptions {
            internal: true,
            field_manager: Some("podnet-sandbox".into()),
            ..Default::default()
        }
    }
}

/// The patch flavours, by content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
    /// `application/apply-patch+yaml`
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// Options of delete (a `DeleteOptions` body or query).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    /// `Orphan` keeps dependents; anything else deletes them.
    pub propagation: Option<String>,
}

impl DeleteOptions {
    /// Read a `DeleteOptions` JSON body (also the one inside an Eviction).
    pub fn from_json(v: &Value) -> Self {
        let dry_run = v
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All"));
        let pre = v.get("preconditions");
        let orphan = v.get("orphanDependents").and_then(Value::as_bool) == Some(true);
        DeleteOptions {
            dry_run,
            precondition_uid: pre
                .and_then(|p| p.get("uid"))
                .and_then(Value::as_str)
                .map(str::to_string),
            precondition_rv: pre
                .and_then(|p| p.get("resourceVersion"))
                .and_then(Value::as_str)
                .map(str::to_string),
            propagation: v
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| orphan.then(|| "Orphan".to_string())),
        }
    }
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn random_suffix(n: usize) -> String {
    // the apiserver's alphabet for generateName (no vowels, no confusables)
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    (0..n)
        .map(|i| ALPHABET[bytes[i % 16] as usize % ALPHABET.len()] as char)
        .collect()
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_dns_label(s: &str) -> bool {
    is_dns_subdomain(s) && s.len() <= 63 && !s.contains('.')
}

fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.get("metadata").is_some_and(Value::is_object) {
        v["metadata"] = json!({});
    }
    match v.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// Parse a request body as JSON, or YAML for apply patches and kubectl.
pub fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(json_err) => {
            let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
            serde_saphyr::from_str::<Value>(text)
                .map_err(|_| ApiError::bad_request(format!("couldn't get version/kind; json parse error: {json_err}")))
        }
    }
}

fn check_type_meta(rt: &ResourceType, v: &mut Value) -> Result<(), ApiError> {
    let Some(obj) = v.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "Object '{}' is missing in the request body",
            rt.kind
        )));
    };
    let want_av = rt.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            obj.insert("apiVersion".into(), json!(want_av));
        }
        Some(av) if av == want_av => {}
        Some(av) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )));
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            obj.insert("kind".into(), json!(rt.kind));
        }
        Some(k) if k == rt.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                rt.kind
            )));
        }
    }
    Ok(())
}

/// Round-trip through the k8s-openapi type; undecodable bodies are a 400 as
/// the apiserver's decoder reports them.
fn roundtrip(rt: &ResourceType, v: Value) -> Result<Value, ApiError> {
    match rt.validate {
        Some(f) => f(v).map_err(|e| {
            ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                rt.kind, rt.version, rt.kind
            ))
        }),
        None => Ok(v),
    }
}

/// Semantic validation of the kinds whose rules clients run into.
fn validate(rt_idx: usize, v: &Value) -> Result<(), ApiError> {
    let rt = resources::get(rt_idx);
    let name = meta_str(v, "name");
    let mut causes = Vec::new();
    let ok_name = if rt_idx == NAMESPACE {
        is_dns_label(name)
    } else {
        is_dns_subdomain(name)
    };
    if !ok_name {
        causes.push(Cause::invalid(
            "metadata.name",
            name,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        ));
    }
    match rt_idx {
        POD if v
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty) =>
        {
            causes.push(Cause::required("spec.containers", ""));
        }
        resources::DEPLOYMENT | resources::REPLICASET | resources::DAEMONSET => match v.pointer("/spec/selector") {
            None => causes.push(Cause::required("spec.selector", "")),
            Some(sel) => {
                let labels = v.pointer("/spec/template/metadata/labels").and_then(Value::as_object);
                let matches = LabelSelector::from_json(sel)
                    .map(|s| !s.is_empty() && s.matches(labels))
                    .unwrap_or(false);
                if !matches {
                    causes.push(Cause::invalid(
                        "spec.template.metadata.labels",
                        &labels.map(|l| Value::Object(l.clone()).to_string()).unwrap_or_default(),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        },
        resources::PDB if v.pointer("/spec/minAvailable").is_some() && v.pointer("/spec/maxUnavailable").is_some() => {
            causes.push(Cause {
                reason: "FieldValueInvalid",
                field: "spec".into(),
                message: "Invalid value: minAvailable and maxUnavailable cannot be both set".into(),
            });
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(rt, name, causes))
    }
}

/// Everything but metadata and status: what bumps `generation`.
fn spec_part(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The default status a fresh object gets when created over HTTP.
fn initial_status(rt_idx: usize) -> Option<Value> {
    match rt_idx {
        POD => Some(json!({"phase": "Pending", "qosClass": "BestEffort"})),
        NAMESPACE => Some(json!({"phase": "Active"})),
        _ => None,
    }
}

impl Store {
    /// Run `f` with derived-status hooks deferred, then recompute them all
    /// once: seeding 30,000 pods would otherwise recompute every PDB and
    /// workload 30,000 times.
    pub fn bulk<R>(&self, f: impl FnOnce() -> R) -> R {
        self.write().bulk_depth += 1;
        let r = f();
        let mut inner = self.write();
        inner.bulk_depth -= 1;
        if inner.bulk_depth == 0 {
            derived::recompute_all(&mut inner);
        }
        r
    }

    /// Create an object in namespace `ns` (ignored for cluster-scoped kinds).
    pub fn create(&self, rt_idx: usize, ns: &str, value: Value, opts: &WriteOptions) -> Result<Arc<Stored>, ApiError> {
        let mut inner = self.write();
        create_locked(&mut inner, rt_idx, ns, value, opts, None)
    }

    /// Replace an object (PUT), or its status with `Some(Status)`.
    pub fn update(
        &self,
        rt_idx: usize,
        ns: &str,
        name: &str,
        value: Value,
        sub: Option<Subresource>,
        opts: &WriteOptions,
    ) -> Result<Arc<Stored>, ApiError> {
        let rt = resources::get(rt_idx);
        let mut inner = self.write();
        let ns = if rt.namespaced { ns } else { "" };
        let old = inner
            .get(rt_idx, ns, name)
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let mut value = value;
        check_type_meta(rt, &mut value)?;
        let body_name = meta_str(&value, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_ns = meta_str(&value, "namespace");
        if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let want_rv = meta_str(&value, "resourceVersion").to_string();
        if !want_rv.is_empty() && want_rv != old.rv.to_string() {
            return Err(ApiError::conflict(rt, name));
        }
        finish_update(&mut inner, rt_idx, &old, value, sub, opts)
    }

    /// Patch an object (or its status). An apply patch creates the object
    /// when it does not exist.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rt_idx: usize,
        ns: &str,
        name: &str,
        patch_type: PatchType,
        body: &Value,
        sub: Option<Subresource>,
        opts: &WriteOptions,
    ) -> Result<Arc<Stored>, ApiError> {
        let rt = resources::get(rt_idx);
        let ns = if rt.namespaced { ns } else { "" };
        let mut inner = self.write();
        let old = inner.get(rt_idx, ns, name);
        let Some(old) = old else {
            // Only an apply patch may create its object.
            if patch_type == PatchType::Apply {
                return apply_locked(&mut inner, rt_idx, ns, name, body, None, sub, opts);
            }
            return Err(ApiError::not_found(rt, name));
        };
        let mut doc = old.value.clone();
        let res = match patch_type {
            PatchType::Apply => return apply_locked(&mut inner, rt_idx, ns, name, body, Some(old), sub, opts),
            PatchType::Json => patch::json_patch(&mut doc, body),
            PatchType::Merge => patch::merge_patch(&mut doc, body),
            PatchType::Strategic => {
                if !rt.is_builtin() {
                    return Err(ApiError::unsupported_media_type(
                        "application/strategic-merge-patch+json",
                    ));
                }
                patch::strategic_merge(&mut doc, body, true)
            }
        };
        res.map_err(|PatchError::Invalid(m)| {
            ApiError::new(
                422,
                "Invalid",
                format!("the server rejected our request due to an error in our request: {m}"),
            )
        })?;
        // A patch that sets resourceVersion makes it a precondition.
        let want_rv = meta_str(&doc, "resourceVersion").to_string();
        if !want_rv.is_empty() && want_rv != old.rv.to_string() {
            return Err(ApiError::conflict(rt, name));
        }
        if meta_str(&doc, "name") != name {
            return Err(ApiError::bad_request(
                "metadata.name: the name of the object cannot be changed by a patch",
            ));
        }
        finish_update(&mut inner, rt_idx, &old, doc, sub, opts)
    }

    /// Delete an object. Objects with finalizers get a deletionTimestamp and
    /// stay until the finalizers are removed; dependents are deleted unless
    /// the propagation policy is `Orphan`.
    pub fn delete(&self, rt_idx: usize, ns: &str, name: &str, opts: &DeleteOptions) -> Result<Arc<Stored>, ApiError> {
        let mut inner = self.write();
        delete_locked(&mut inner, rt_idx, ns, name, opts)
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
    let body_ns = meta_str(&v, "namespace").to_string();
    let ns = if rt.namespaced {
        let ns = if ns.is_empty() { body_ns.as_str() } else { ns };
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
        ns.to_string()
    } else {
        String::new()
    };
    let meta = meta_mut(&mut v);
    if rt.namespaced {
        meta.insert("namespace".into(), json!(ns));
    } else {
        meta.remove("namespace");
    }
    let mut name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    if name.is_empty() {
        let gen_name = meta
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if gen_name.is_empty() {
            return Err(ApiError::invalid(
                rt,
                "",
                vec![Cause::required("metadata.name", "name or generateName is required")],
            ));
        }
        loop {
            name = format!("{gen_name}{}", random_suffix(5));
            if inner.get(rt_idx, &ns, &name).is_none() {
                break;
            }
        }
        meta.insert("name".into(), json!(name));
    }
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
    let v = roundtrip(rt, v)?;
    validate(rt_idx, &v)?;
    let key: Key = (ns.clone(), name.clone());
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

/// Carry system-owned fields over from `old`, apply the status/main split,
/// validate, and commit unless nothing changed.
pub(crate) fn finish_update(
    inner: &mut Inner,
    rt_idx: usize,
    old: &Arc<Stored>,
    new: Value,
    sub: Option<Subresource>,
    opts: &WriteOptions,
) -> Result<Arc<Stored>, ApiError> {
    let rt = resources::get(rt_idx);
    let mut v = match sub {
        Some(Subresource::Status) => {
            let mut v = old.value.clone();
            match new.get("status") {
                Some(s) => v["status"] = s.clone(),
                None => {
                    if let Some(m) = v.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            v
        }
        _ => {
            let mut v = new;
            check_type_meta(rt, &mut v)?;
            if rt.has_status()
                && let Some(m) = v.as_object_mut()
            {
                match old.value.get("status") {
                    Some(s) => {
                        m.insert("status".into(), s.clone());
                    }
                    None => {
                        m.remove("status");
                    }
                }
            }
            v
        }
    };
    {
        let old_meta = old.value.get("metadata").cloned().unwrap_or(json!({}));
        let meta = meta_mut(&mut v);
        for f in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_meta.get(f) {
                Some(x) => {
                    meta.insert(f.into(), x.clone());
                }
                None => {
                    meta.remove(f);
                }
            }
        }
        if !meta.contains_key("managedFields")
            && let Some(mf) = old_meta.get("managedFields")
        {
            meta.insert("managedFields".into(), mf.clone());
        }
        meta.insert("resourceVersion".into(), json!(old.rv.to_string()));
    }
    if rt.generation && spec_part(&v) != spec_part(&old.value) {
        let g = old
            .value
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        meta_mut(&mut v).insert("generation".into(), json!(g + 1));
    }
    let v = roundtrip(rt, v)?;
    validate(rt_idx, &v)?;
    if v == old.value {
        return Ok(old.clone());
    }
    if opts.dry_run {
        return Ok(Stored::new(v, inner.rv));
    }
    let name = meta_str(&v, "name").to_string();
    let ns = meta_str(&v, "namespace").to_string();
    let deleting = v.pointer("/metadata/deletionTimestamp").is_some();
    let no_finalizers = v
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    let stored = if deleting && no_finalizers {
        let s = inner.commit(rt_idx, (ns, name), None, Some(v));
        derived::after_write(inner, rt_idx, Some(old), None);
        s
    } else {
        let s = inner.commit(rt_idx, (ns, name), Some(v), None);
        derived::after_write(inner, rt_idx, Some(old), Some(&s));
        s
    };
    Ok(stored)
}

fn managed_entry(manager: &str, api_version: &str, sub: Option<Subresource>, fields: Value) -> Value {
    let mut e = json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    });
    if let Some(s) = sub {
        e["subresource"] = json!(s.name());
    }
    e
}

#[allow(clippy::too_many_arguments)]
fn apply_locked(
    inner: &mut Inner,
    rt_idx: usize,
    ns: &str,
    name: &str,
    body: &Value,
    old: Option<Arc<Stored>>,
    sub: Option<Subresource>,
    opts: &WriteOptions,
) -> Result<Arc<Stored>, ApiError> {
    let rt = resources::get(rt_idx);
    let Some(manager) = opts.field_manager.as_deref().filter(|m| !m.is_empty()) else {
        return Err(ApiError::bad_request(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    };
    let mut applied = body.clone();
    if !applied.is_object() {
        return Err(ApiError::bad_request("apply patch must be an object"));
    }
    for (f, want) in [("apiVersion", rt.api_version()), ("kind", rt.kind.to_string())] {
        match applied.get(f).and_then(Value::as_str) {
            Some(x) if x == want => {}
            Some(x) => {
                return Err(ApiError::bad_request(format!(
                    "the {f} in the apply configuration ({x}) does not match the expected {f} ({want})"
                )));
            }
            None => {
                return Err(ApiError::bad_request(format!(
                    "{f} must be set in an apply configuration"
                )));
            }
        }
    }
    let body_name = meta_str(&applied, "name");
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if let Some(m) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    let builtin = rt.is_builtin();
    let fields = patch::field_set(&applied, builtin);
    let av = rt.api_version();
    match old {
        None => {
            if sub.is_some() {
                return Err(ApiError::not_found(rt, name));
            }
            let opts = WriteOptions {
                internal: false,
                ..opts.clone()
            };
            create_locked(
                inner,
                rt_idx,
                ns,
                applied,
                &opts,
                Some(json!([managed_entry(manager, &av, sub, fields)])),
            )
        }
        Some(old) => {
            let mut live = old.value.clone();
            let entries: Vec<Value> = live
                .pointer("/metadata/managedFields")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let sub_name = sub.map(Subresource::name);
            let is_mine = |e: &Value| {
                e.get("manager").and_then(Value::as_str) == Some(manager)
                    && e.get("operation").and_then(Value::as_str) == Some("Apply")
                    && e.get("subresource").and_then(Value::as_str) == sub_name
            };
            let prev = entries
                .iter()
                .find(|e| is_mine(e))
                .and_then(|e| e.get("fieldsV1"))
                .cloned();
            patch::apply_merge(&mut live, &applied, builtin);
            if let Some(prev) = &prev {
                patch::remove_dropped_fields(&mut live, prev, &fields);
            }
            let mut new_entries: Vec<Value> = entries.into_iter().filter(|e| !is_mine(e)).collect();
            new_entries.push(managed_entry(manager, &av, sub, fields));
            meta_mut(&mut live).insert("managedFields".into(), Value::Array(new_entries));
            finish_update(inner, rt_idx, &old, live, sub, opts)
        }
    }
}

pub(crate) fn delete_locked(
    inner: &mut Inner,
    rt_idx: usize,
    ns: &str,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Arc<Stored>, ApiError> {
    let rt = resources::get(rt_idx);
    let ns = if rt.namespaced { ns } else { "" };
    let old = inner
        .get(rt_idx, ns, name)
        .ok_or_else(|| ApiError::not_found(rt, name))?;
    if let Some(uid) = &opts.precondition_uid
        && uid != old.uid()
    {
        return Err(ApiError::conflict_with(
            rt,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                old.uid()
            ),
        ));
    }
    if let Some(rv) = &opts.precondition_rv
        && *rv != old.rv.to_string()
    {
        return Err(ApiError::conflict_with(
            rt,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                old.rv
            ),
        ));
    }
    let has_finalizers = old
        .value
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if opts.dry_run {
        return Ok(old);
    }
    let key: Key = (ns.to_string(), name.to_string());
    let result = if has_finalizers {
        if old.value.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(old);
        }
        let mut v = old.value.clone();
        let meta = meta_mut(&mut v);
        meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        let s = inner.commit(rt_idx, key, Some(v), None);
        derived::after_write(inner, rt_idx, Some(&old), Some(&s));
        s
    } else {
        let mut v = old.value.clone();
        if rt_idx == POD {
            let meta = meta_mut(&mut v);
            meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        }
        let s = inner.commit(rt_idx, key, None, Some(v));
        derived::after_write(inner, rt_idx, Some(&old), None);
        s
    };
    if opts.propagation.as_deref() != Some("Orphan") {
        let uid = old.uid().to_string();
        let cascade = DeleteOptions {
            propagation: opts.propagation.clone(),
            ..Default::default()
        };
        for (drt, (dns, dname)) in inner.dependents(&uid) {
            // A dependent may already be gone through another path.
            let _ = delete_locked(inner, drt, &dns, &dname, &cascade);
        }
        if rt_idx == NAMESPACE {
            for t in 0..resources::all().len() {
                if !resources::get(t).namespaced {
                    continue;
                }
                let names: Vec<String> = inner.iter_ns(t, Some(name)).map(|s| s.name().to_string()).collect();
                for n in names {
                    let _ = delete_locked(inner, t, name, &n, &cascade);
                }
            }
        }
    }
    Ok(result)
}
