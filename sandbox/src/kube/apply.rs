//! Server-side apply under the store's write lock: the apply configuration's
//! checks, one `managedFields` entry per manager, merging into the live
//! object and removing the fields a manager stopped applying
//! (<https://kubernetes.io/docs/reference/using-api/server-side-apply/>).
//! Conflicts between managers are not modelled.

use std::sync::Arc;

use serde_json::{Value, json};

use super::create::create_locked;
use super::meta::{meta_mut, now_rfc3339};
use super::options::WriteOptions;
use super::patch;
use super::resources::{self, Subresource};
use super::status::ApiError;
use super::store::{Inner, Stored, meta_str};
use super::update::finish_update;

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
pub(crate) fn apply_locked(
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
