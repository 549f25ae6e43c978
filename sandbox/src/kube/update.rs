//! The tail of every update (PUT, the patch types, apply): system-owned
//! metadata carried over from the stored object, the status/main resource
//! split, `generation` bumped only by spec changes, and no commit when
//! nothing changed, as the apiserver's generic registry does in
//! `BeforeUpdate` (k8s.io/apiserver `pkg/registry/rest/update.go`) and
//! <https://kubernetes.io/docs/reference/using-api/api-concepts/#resourceversion>.

use std::sync::Arc;

use serde_json::{Value, json};

use super::admission;
use super::derived;
use super::meta::meta_mut;
use super::options::WriteOptions;
use super::resources::{self, ResourceType, Subresource};
use super::status::ApiError;
use super::store::{Inner, Stored, meta_str};
use super::validate::{check_type_meta, roundtrip, validate};

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
    let mut v = split_status(rt, old, new, sub)?;
    carry_system_meta(old, &mut v);
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
    admission::admit(inner, rt_idx, sub, "UPDATE", &v, Some(&old.value))?;
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

/// The status subresource changes only the status; the main resource
/// changes everything but the status (for kinds that have one).
fn split_status(rt: &ResourceType, old: &Arc<Stored>, new: Value, sub: Option<Subresource>) -> Result<Value, ApiError> {
    Ok(match sub {
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
    })
}

/// Clients cannot change the system-owned metadata; managedFields survive
/// an update that does not send them.
fn carry_system_meta(old: &Arc<Stored>, v: &mut Value) {
    let old_meta = old.value.get("metadata").cloned().unwrap_or(json!({}));
    let meta = meta_mut(v);
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
