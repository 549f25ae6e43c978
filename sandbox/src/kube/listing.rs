//! The shapes of a list call — its options, one page of results — and the
//! helpers behind them: opaque `continue` tokens, the 504 for a
//! resourceVersion newer than the store's, and the field values field
//! selectors match (each kind supports only the fields its registry
//! declares, as in k8s.io/kubernetes `pkg/registry/core/pod/strategy.go`
//! `ToSelectableFields`; <https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/>
//! and <https://kubernetes.io/docs/reference/using-api/api-concepts/#retrieving-large-results-sets-in-chunks>).

use std::sync::Arc;

use serde_json::{Value, json};

use super::resources::{self, NODE, POD};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::stored::Stored;

/// Options of a list call.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    /// `resourceVersion` + `resourceVersionMatch=Exact` asks for a past
    /// state, which the sandbox cannot serve (410).
    pub exact_rv: Option<u64>,
    /// A `resourceVersion` newer than the store's is a 504 "Too large".
    pub min_rv: Option<u64>,
}

/// A list page.
#[derive(Debug, Clone)]
pub struct ListResult {
    pub items: Vec<Arc<Stored>>,
    pub rv: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

pub(crate) fn too_large_rv() -> ApiError {
    let mut e = ApiError::new(504, "Timeout", "Too large resource version");
    e.details = Some(
        json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
    );
    e.retry_after = Some(1);
    e
}

pub(crate) fn encode_token(v: &Value) -> String {
    serde_json::to_vec(v)
        .unwrap_or_default()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn decode_token(s: &str) -> Option<Value> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    serde_json::from_slice(&bytes?).ok()
}

fn path_str(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(n) => cur = n,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// The string value of a selectable field, or `None` when the field cannot
/// be selected on for this type (the apiserver's "field label not supported").
pub fn field_value(rt: usize, v: &Value, field: &str) -> Option<String> {
    let path: Vec<&str> = field.split('.').collect();
    let ok = match (field, rt) {
        ("metadata.name" | "metadata.namespace", _) => true,
        (
            "spec.nodeName"
            | "spec.restartPolicy"
            | "spec.schedulerName"
            | "spec.serviceAccountName"
            | "status.phase"
            | "status.podIP"
            | "status.nominatedNodeName",
            POD,
        ) => true,
        ("spec.hostNetwork", POD) => {
            return Some(
                v.pointer("/spec/hostNetwork")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
            );
        }
        ("spec.unschedulable", NODE) => {
            return Some(
                v.pointer("/spec/unschedulable")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
            );
        }
        ("status.phase", resources::NAMESPACE) => true,
        (
            "involvedObject.kind"
            | "involvedObject.namespace"
            | "involvedObject.name"
            | "involvedObject.uid"
            | "involvedObject.apiVersion"
            | "involvedObject.resourceVersion"
            | "involvedObject.fieldPath"
            | "reason"
            | "reportingComponent"
            | "type",
            resources::EVENT,
        ) => true,
        ("source", resources::EVENT) => {
            return Some(path_str(v, &["source", "component"]));
        }
        _ => false,
    };
    ok.then(|| path_str(v, &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_roundtrip() {
        let v = json!({"rv": 5, "id": 2, "off": 10});
        assert_eq!(decode_token(&encode_token(&v)), Some(v));
        assert_eq!(decode_token("zz"), None);
    }

    #[test]
    fn field_support() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        assert_eq!(field_value(POD, &pod, "spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(field_value(POD, &pod, "status.phase").as_deref(), Some("Running"));
        assert_eq!(field_value(POD, &pod, "spec.hostNetwork").as_deref(), Some("false"));
        assert_eq!(field_value(NODE, &pod, "spec.nodeName"), None);
        assert_eq!(field_value(NODE, &pod, "metadata.name").as_deref(), Some("p"));
    }
}
