//! Request-body checks every write runs before it commits: body parsing
//! (JSON, or YAML for apply and kubectl), apiVersion/kind defaulting and
//! matching, the round-trip through the k8s-openapi type that stands in for
//! the apiserver's decoder, and the semantic validation clients run into
//! (object names as RFC 1123 subdomains or labels, per
//! <https://kubernetes.io/docs/concepts/overview/working-with-objects/names/>;
//! pods need containers; workload selectors must match their template, as in
//! `pkg/apis/apps/validation/validation.go`; a PDB sets only one of
//! minAvailable and maxUnavailable, as in `pkg/apis/policy/validation`).

use serde_json::{Value, json};

use super::resources::{self, NAMESPACE, POD, ResourceType};
use super::selectors::LabelSelector;
use super::status::{ApiError, Cause};
use super::store::meta_str;

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

pub(crate) fn check_type_meta(rt: &ResourceType, v: &mut Value) -> Result<(), ApiError> {
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
pub(crate) fn roundtrip(rt: &ResourceType, v: Value) -> Result<Value, ApiError> {
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
pub(crate) fn validate(rt_idx: usize, v: &Value) -> Result<(), ApiError> {
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
