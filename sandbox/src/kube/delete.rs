//! Deletion under the store's write lock: uid and resourceVersion
//! preconditions, finalizers (a deletionTimestamp, and the object stays),
//! and cascading to dependents and namespace contents unless the
//! propagation policy is `Orphan`
//! (<https://kubernetes.io/docs/concepts/architecture/garbage-collection/>,
//! <https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/>).

use std::sync::Arc;

use serde_json::{Value, json};

use super::derived;
use super::meta::{meta_mut, now_rfc3339};
use super::options::DeleteOptions;
use super::resources::{self, NAMESPACE, POD};
use super::status::ApiError;
use super::store::{Inner, Key, Stored};

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
