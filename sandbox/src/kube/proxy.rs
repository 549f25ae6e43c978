//! The API server's proxy to pods and Services
//! (`/api/v1/namespaces/{ns}/pods/{name}[:{port}]/proxy/…` and
//! `…/services/[{scheme}:]{name}[:{port}]/proxy/…`,
//! <https://kubernetes.io/docs/tasks/access-application-cluster/access-cluster-services/#manually-constructing-apiserver-proxy-urls>):
//! the way to ask whether the control plane reaches an address. The sandbox
//! runs no containers, so a reachable, running target answers `200 ok`
//! (what a probe serving one file would say); an address the control plane
//! does not reach yet answers as the API server's dialer fails,
//! `503 ServiceUnavailable` `error trying to reach service: dial tcp
//! {ip}:{port}: i/o timeout`.

use serde_json::Value;

use super::admission::{Reach, service_reach};
use super::resources::{POD, SERVICE};
use super::status::ApiError;
use super::store::Store;

/// What a proxy URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub service: bool,
    pub namespace: String,
    pub name: String,
    pub port: String,
}

impl Target {
    /// `pods/proxy` or `services/proxy`, for authorization.
    pub fn resource(&self) -> &'static str {
        if self.service { "services/proxy" } else { "pods/proxy" }
    }
}

/// Parses a proxy path; `None` for any other path.
pub fn target(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let [
        "api",
        "v1",
        "namespaces",
        ns,
        kind @ ("pods" | "services"),
        id,
        "proxy",
        ..,
    ] = segs.as_slice()
    else {
        return None;
    };
    let parts: Vec<&str> = id.split(':').collect();
    let (name, port) = match (*kind, parts.as_slice()) {
        ("services", [scheme, name, port]) if matches!(*scheme, "http" | "https") => (*name, *port),
        ("services", [scheme, name]) if matches!(*scheme, "http" | "https") => (*name, ""),
        (_, [name, port]) => (*name, *port),
        (_, [name]) => (*name, ""),
        _ => return None,
    };
    Some(Target {
        service: *kind == "services",
        namespace: ns.to_string(),
        name: name.to_string(),
        port: port.to_string(),
    })
}

fn timed_out(ip: &str, port: &str) -> ApiError {
    let port = if port.is_empty() { "80" } else { port };
    ApiError::new(
        503,
        "ServiceUnavailable",
        format!("error trying to reach service: dial tcp {ip}:{port}: i/o timeout"),
    )
}

/// The proxied answer's body, or the API server's error.
pub fn answer(store: &Store, t: &Target) -> Result<String, ApiError> {
    let inner = store.read();
    let cp = inner.control_plane.clone();
    if t.service {
        return match service_reach(&inner, cp.as_deref(), &t.namespace, &t.name) {
            Reach::Reachable(_) => Ok("ok".into()),
            Reach::NoService => Err(ApiError::not_found(super::resources::get(SERVICE), &t.name)),
            Reach::NoEndpoints => Err(ApiError::new(
                503,
                "ServiceUnavailable",
                format!("no endpoints available for service \"{}\"", t.name),
            )),
            Reach::TimedOut(ip) => Err(timed_out(&ip.to_string(), &t.port)),
        };
    }
    let pod = inner
        .get(POD, &t.namespace, &t.name)
        .ok_or_else(|| ApiError::not_found(super::resources::get(POD), &t.name))?;
    let ip = pod.value.pointer("/status/podIP").and_then(Value::as_str).unwrap_or("");
    let running = pod.value.pointer("/status/phase").and_then(Value::as_str) == Some("Running");
    let Ok(addr) = ip.parse() else {
        return Err(ApiError::bad_request(format!("pod {} does not have a pod ip", t.name)));
    };
    if !cp.is_none_or(|cp| cp.reaches(addr)) || !running {
        return Err(timed_out(ip, &t.port));
    }
    Ok("ok".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths_parse() {
        let t = target("/api/v1/namespaces/podnet/pods/probe:8080/proxy/").unwrap();
        assert_eq!((t.service, t.name.as_str(), t.port.as_str()), (false, "probe", "8080"));
        let t = target("/api/v1/namespaces/kube-system/services/https:metrics-server:443/proxy/healthz").unwrap();
        assert_eq!(
            (t.service, t.name.as_str(), t.port.as_str()),
            (true, "metrics-server", "443")
        );
        assert_eq!(target("/api/v1/namespaces/x/pods/p/proxy").unwrap().port, "");
        assert!(target("/api/v1/namespaces/x/pods/p").is_none());
        assert!(target("/api/v1/namespaces/x/pods/p/log").is_none());
    }
}
