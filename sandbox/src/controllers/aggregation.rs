//! kube-aggregator's availability controller: every `APIService` gets an
//! `Available` condition. A local one (no `spec.service`) is always
//! available; a Service-backed one is available while some ready endpoint
//! of the Service is reachable from the control plane, and otherwise
//! `False` with the aggregator's reasons — `ServiceNotFound`,
//! `MissingEndpoints`, or `FailedDiscoveryCheck` with `failing or missing
//! response from https://{ip}:{port}/apis/{group}/{version}: … context
//! deadline exceeded` (`k8s.io/kube-aggregator/pkg/controllers/status`).
//! Each turn to `False` is recorded in the control plane's log.

use serde_json::{Value, json};

use super::{Ctx, edit, s};
use crate::kube::admission::{Reach, service_reach};
use crate::kube::ops::now_rfc3339;
use crate::kube::resources::{APISERVICE, SERVICE};

/// `(status, reason, message)` of the `Available` condition.
fn judge(ctx: &Ctx, api: &Value) -> (&'static str, &'static str, String) {
    let Some(svc) = api.pointer("/spec/service").filter(|v| !v.is_null()) else {
        return ("True", "Local", "Local APIServices are always available".into());
    };
    let (ns, name) = (s(svc, "/namespace"), s(svc, "/name"));
    let inner = ctx.store.read();
    let cp = inner.control_plane.clone();
    match service_reach(&inner, cp.as_deref(), ns, name) {
        Reach::Reachable(_) => ("True", "Passed", "all checks passed".into()),
        Reach::NoService => (
            "False",
            "ServiceNotFound",
            format!("service/{name} in \"{ns}\" is not present"),
        ),
        Reach::NoEndpoints => (
            "False",
            "MissingEndpoints",
            format!("endpoints for service/{name} in \"{ns}\" have no addresses with port name \"https\""),
        ),
        Reach::TimedOut(ip) => {
            let port = inner
                .get(SERVICE, ns, name)
                .and_then(|svc| svc.value.pointer("/spec/ports/0/targetPort").and_then(Value::as_i64))
                .unwrap_or(443);
            let url = format!(
                "https://{ip}:{port}/apis/{}/{}",
                s(api, "/spec/group"),
                s(api, "/spec/version")
            );
            (
                "False",
                "FailedDiscoveryCheck",
                format!("failing or missing response from {url}: Get \"{url}\": context deadline exceeded"),
            )
        }
    }
}

/// Bring every APIService's `Available` condition up to date.
pub fn reconcile(ctx: &Ctx) {
    for api in ctx.list(APISERVICE) {
        let (status, reason, message) = judge(ctx, &api.value);
        let current = api
            .value
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| s(c, "/type") == "Available"))
            .cloned();
        if current
            .as_ref()
            .is_some_and(|c| s(c, "/status") == status && s(c, "/reason") == reason && s(c, "/message") == message)
        {
            continue;
        }
        let since = match &current {
            Some(c) if s(c, "/status") == status => s(c, "/lastTransitionTime").to_string(),
            _ => now_rfc3339(),
        };
        let cond = json!({
            "type": "Available",
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": since,
        });
        let name = api.name().to_string();
        let written = edit(&ctx.store, APISERVICE, "", &name, |v| {
            v["status"] = json!({"conditions": [cond]});
        });
        if let Err(e) = written {
            tracing::debug!("updating apiservice {name}: {e}");
            continue;
        }
        if status == "False"
            && let Some(cp) = ctx.store.read().control_plane.clone()
        {
            cp.record("apiservice", &name, &message, false);
        }
    }
}
