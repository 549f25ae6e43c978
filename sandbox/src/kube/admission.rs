//! Admission webhooks, called as the API server calls them, and the reach of
//! the API server to a Service's pods (shared with the APIService
//! controller).
//!
//! For each create or update, every webhook of every
//! `MutatingWebhookConfiguration` and then `ValidatingWebhookConfiguration`
//! (admissionregistration.k8s.io/v1) whose `rules`, `namespaceSelector` and
//! `objectSelector` match the request is "called": the sandbox runs no
//! webhook code, so a call succeeds (and admits) when some ready endpoint of
//! the webhook's Service has an address the control plane reaches
//! ([`crate::control_plane`]), and fails otherwise. A failed call refuses the
//! request under `failurePolicy: Fail` (the default) with the API server's
//! `Internal error occurred: failed calling webhook "…": failed to call
//! webhook: Post "https://svc.ns.svc:443/path?timeout=10s": …` and is
//! ignored under `Ignore` — as
//! <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/>
//! describes (matching requests; failure policy) and
//! `k8s.io/apiserver/pkg/admission/plugin/webhook` words it.
//!
//! Not modelled: the webhook timeout actually elapsing (the request fails
//! at once), `matchConditions`, `reinvocationPolicy`, `url` webhooks (always
//! reachable: they are outside the VPC's late blocks), and DELETE and
//! CONNECT operations.

use std::net::Ipv4Addr;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::derived::pod_ready;
use super::resources::{
    self, MUTATING_WEBHOOK, NAMESPACE, POD, ResourceType, SERVICE, Subresource, VALIDATING_WEBHOOK,
};
use super::selectors::LabelSelector;
use super::status::ApiError;
use super::store::{Inner, meta_str};
use crate::control_plane::ControlPlane;

/// What a call to a Service's pods finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    Reachable(Ipv4Addr),
    NoService,
    NoEndpoints,
    /// Every ready endpoint is in a block the control plane does not reach
    /// yet; the first one's address.
    TimedOut(Ipv4Addr),
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// A ready endpoint: Running, Ready, not terminating (as the EndpointSlice
/// controller lists it).
fn endpoint_ready(p: &Value) -> bool {
    s(p, "/status/phase") == "Running" && pod_ready(p) && p.pointer("/metadata/deletionTimestamp").is_none()
}

/// The ready endpoints of Service `ns/name` (its selector's ready pods) and
/// whether the API server reaches one of them.
pub(crate) fn service_reach(inner: &Inner, cp: Option<&ControlPlane>, ns: &str, name: &str) -> Reach {
    let Some(svc) = inner.get(SERVICE, ns, name) else {
        return Reach::NoService;
    };
    let Some(sel) = svc.value.pointer("/spec/selector").and_then(Value::as_object) else {
        return Reach::NoEndpoints;
    };
    let sel = LabelSelector::from_json(&json!({"matchLabels": sel})).unwrap_or_else(|_| LabelSelector::everything());
    let ips: Vec<Ipv4Addr> = inner
        .iter_ns(POD, Some(ns))
        .filter(|p| sel.matches_object(&p.value) && endpoint_ready(&p.value))
        .filter_map(|p| s(&p.value, "/status/podIP").parse().ok())
        .collect();
    match ips.first() {
        None => Reach::NoEndpoints,
        Some(first) => ips
            .iter()
            .find(|ip| cp.is_none_or(|cp| cp.reaches(**ip)))
            .map_or(Reach::TimedOut(*first), |ip| Reach::Reachable(*ip)),
    }
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

fn resource_matches(entry: &str, plural: &str, sub: Option<&str>) -> bool {
    let (res, rsub) = entry.split_once('/').map_or((entry, None), |(r, s)| (r, Some(s)));
    let res_ok = res == "*" || res == plural;
    match (rsub, sub) {
        (None, None) => res_ok,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(want), Some(got)) => res_ok && (want == "*" || want == got),
    }
}

/// Does one of the rules match `op` on this resource (and subresource)?
fn rules_match(webhook: &Value, op: &str, rt: &ResourceType, sub: Option<&str>) -> bool {
    let any = |list: &[String], x: &str| list.iter().any(|e| e == "*" || e == x);
    webhook.get("rules").and_then(Value::as_array).is_some_and(|rules| {
        rules.iter().any(|r| {
            let scope = r.get("scope").and_then(Value::as_str).unwrap_or("*");
            let scope_ok = match scope {
                "Namespaced" => rt.namespaced,
                "Cluster" => !rt.namespaced,
                _ => true,
            };
            scope_ok
                && any(&strings(r, "operations"), op)
                && any(&strings(r, "apiGroups"), rt.group)
                && any(&strings(r, "apiVersions"), rt.version)
                && strings(r, "resources")
                    .iter()
                    .any(|e| resource_matches(e, rt.plural, sub))
        })
    })
}

fn selector_matches(webhook: &Value, key: &str, labels: Option<&Map<String, Value>>) -> bool {
    match webhook.get(key) {
        None | Some(Value::Null) => true,
        Some(sel) => LabelSelector::from_json(sel).is_ok_and(|sel| sel.is_empty() || sel.matches(labels)),
    }
}

fn labels(v: &Value) -> Option<&Map<String, Value>> {
    v.pointer("/metadata/labels").and_then(Value::as_object)
}

/// Is this webhook called for this object? The namespace selector applies
/// to namespaced objects (through their namespace's labels) and to
/// Namespaces themselves; cluster-scoped objects always pass it.
/// On an update the object selector is matched against the old object and
/// the new one, and either matching calls the webhook.
fn webhook_matches(
    inner: &Inner,
    webhook: &Value,
    op: &str,
    rt_idx: usize,
    sub: Option<&str>,
    obj: &Value,
    old: Option<&Value>,
) -> bool {
    let rt = resources::get(rt_idx);
    let selected = selector_matches(webhook, "objectSelector", labels(obj))
        || old.is_some_and(|o| selector_matches(webhook, "objectSelector", labels(o)));
    if !rules_match(webhook, op, rt, sub) || !selected {
        return false;
    }
    if rt_idx == NAMESPACE {
        return selector_matches(webhook, "namespaceSelector", labels(obj));
    }
    if !rt.namespaced {
        return true;
    }
    let ns = inner.get(NAMESPACE, "", meta_str(obj, "namespace"));
    selector_matches(webhook, "namespaceSelector", ns.as_ref().and_then(|n| labels(&n.value)))
}

/// The URL the API server posts to, as its errors quote it.
fn webhook_url(webhook: &Value) -> String {
    let cc = webhook.get("clientConfig").cloned().unwrap_or_default();
    if let Some(url) = cc.get("url").and_then(Value::as_str) {
        return url.to_string();
    }
    let timeout = webhook.get("timeoutSeconds").and_then(Value::as_i64).unwrap_or(10);
    format!(
        "https://{}.{}.svc:{}{}?timeout={timeout}s",
        s(&cc, "/service/name"),
        s(&cc, "/service/namespace"),
        cc.pointer("/service/port").and_then(Value::as_i64).unwrap_or(443),
        s(&cc, "/service/path"),
    )
}

/// Why a call to this webhook fails, or `None` when it answers.
fn call_failure(inner: &Inner, cp: Option<&ControlPlane>, webhook: &Value) -> Option<String> {
    // A `url` webhook lives outside the VPC's late blocks: it answers.
    let svc = webhook.pointer("/clientConfig/service")?;
    let (ns, name) = (s(svc, "/namespace"), s(svc, "/name"));
    let why = match service_reach(inner, cp, ns, name) {
        Reach::Reachable(_) => return None,
        Reach::NoService => format!("service \"{name}\" not found"),
        Reach::NoEndpoints => format!("no endpoints available for service \"{name}\""),
        Reach::TimedOut(_) => "context deadline exceeded".to_string(),
    };
    Some(format!(
        "failed to call webhook: Post \"{}\": {why}",
        webhook_url(webhook)
    ))
}

/// Run the admission webhooks for a `CREATE` or `UPDATE` of `obj`.
pub(crate) fn admit(
    inner: &Inner,
    rt_idx: usize,
    sub: Option<Subresource>,
    op: &str,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    // The API server never calls webhooks for webhook configurations.
    if rt_idx == MUTATING_WEBHOOK || rt_idx == VALIDATING_WEBHOOK {
        return Ok(());
    }
    let cp: Option<Arc<ControlPlane>> = inner.control_plane.clone();
    let sub = sub.map(Subresource::name);
    for kind in [MUTATING_WEBHOOK, VALIDATING_WEBHOOK] {
        for config in inner.iter_ns(kind, None) {
            let Some(hooks) = config.value.get("webhooks").and_then(Value::as_array) else {
                continue;
            };
            for hook in hooks {
                if !webhook_matches(inner, hook, op, rt_idx, sub, obj, old) {
                    continue;
                }
                let Some(failure) = call_failure(inner, cp.as_deref(), hook) else {
                    continue;
                };
                let name = s(hook, "/name");
                let message = format!("failed calling webhook \"{name}\": {failure}");
                let refused = hook.get("failurePolicy").and_then(Value::as_str) != Some("Ignore");
                if let Some(cp) = &cp {
                    cp.record("webhook", name, &message, refused);
                }
                if refused {
                    return Err(ApiError {
                        details: Some(json!({"causes": [{"message": message}]})),
                        ..ApiError::internal(format!("Internal error occurred: {message}"))
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_and_subresources_match_as_the_api_server_matches_them() {
        assert!(resource_matches("pods", "pods", None));
        assert!(resource_matches("*", "pods", None));
        assert!(!resource_matches("*", "pods", Some("status")));
        assert!(!resource_matches("pods", "pods", Some("status")));
        assert!(resource_matches("pods/*", "pods", Some("status")));
        assert!(resource_matches("*/*", "pods", Some("eviction")));
        assert!(resource_matches("*/status", "pods", Some("status")));
        assert!(!resource_matches("deployments", "pods", None));
    }

    #[test]
    fn rules_need_operation_group_version_and_resource() {
        let rt = resources::get(POD);
        let hook = json!({"rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]});
        assert!(rules_match(&hook, "CREATE", rt, None));
        assert!(!rules_match(&hook, "UPDATE", rt, None));
        assert!(!rules_match(&hook, "CREATE", resources::get(SERVICE), None));
        let scoped = json!({"rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "scope": "Cluster"}]});
        assert!(!rules_match(&scoped, "CREATE", rt, None));
    }

    #[test]
    fn the_url_is_quoted_as_the_api_server_quotes_it() {
        let hook = json!({"clientConfig": {"service": {"name": "aws-load-balancer-webhook-service", "namespace": "kube-system", "path": "/mutate-v1-pod"}}});
        assert_eq!(
            webhook_url(&hook),
            "https://aws-load-balancer-webhook-service.kube-system.svc:443/mutate-v1-pod?timeout=10s"
        );
    }
}
