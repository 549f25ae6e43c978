//! The options of writes (create, update, patch, apply) and deletes, as the
//! apiserver reads them from query parameters and `DeleteOptions` bodies
//! (k8s.io/apimachinery `pkg/apis/meta/v1/types.go`: `CreateOptions`,
//! `PatchOptions`, `DeleteOptions`), and the patch flavours by content type
//! (<https://kubernetes.io/docs/reference/using-api/api-concepts/#patch-and-apply>).

use serde_json::Value;

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
