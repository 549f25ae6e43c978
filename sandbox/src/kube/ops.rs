//! Write semantics shared by the HTTP handlers and in-process callers:
//! create (names, generateName, uid, timestamps, generation, namespace
//! checks), update with optimistic concurrency, the status and main
//! resource split, the four patch types, delete with preconditions,
//! finalizers and cascading to dependents, and dry runs.
//!
//! Every write round-trips built-in kinds through their k8s-openapi type.
//!
//! The pieces live below this module: `options` (the options),
//! `validate` (body checks), `create`, `update`, `apply` and
//! `delete` (the locked write paths), and `derived` (status kept
//! current after each write).

use std::sync::Arc;

use serde_json::Value;

use super::apply::apply_locked;
use super::create::create_locked;
use super::delete::delete_locked;
use super::derived;
use super::patch::{self, PatchError};
use super::resources::{self, Subresource};
use super::status::ApiError;
use super::store::{Store, Stored, meta_str};
use super::update::finish_update;
use super::validate::check_type_meta;

pub use super::meta::now_rfc3339;
pub use super::options::{DeleteOptions, PatchType, WriteOptions};
pub use super::validate::parse_body;

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
