//! Scenario keys for what the control plane calls into the cluster:
//! `[control_plane]` (how long a newly associated VPC CIDR takes to be
//! recognised), `[[webhooks]]` (admission webhooks served by one of the
//! scenario's workloads) and `[[api_services]]` (aggregated APIs such as
//! metrics-server's). Each becomes the objects a real install makes: a
//! Service selecting the workload's pods and the webhook configuration or
//! `APIService` pointing at it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Scenario;
use crate::control_plane::DEFAULT_RECOGNITION;

fn default_recognition() -> u64 {
    DEFAULT_RECOGNITION.as_secs() / 60
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneSpec {
    /// Simulated minutes before the control plane reaches a CIDR block
    /// associated after the cluster was created (EKS: up to five hours);
    /// `0` turns the delay off.
    #[serde(default = "default_recognition")]
    pub cidr_recognition_minutes: u64,
}

impl Default for ControlPlaneSpec {
    fn default() -> Self {
        ControlPlaneSpec {
            cidr_recognition_minutes: default_recognition(),
        }
    }
}

impl ControlPlaneSpec {
    pub fn recognition(&self) -> Duration {
        Duration::from_secs(self.cidr_recognition_minutes.saturating_mul(60))
    }
}

fn default_true_policy() -> String {
    "Fail".into()
}

fn default_operations() -> Vec<String> {
    vec!["CREATE".into()]
}

fn default_port() -> u16 {
    443
}

/// One admission webhook, served by a `[[workloads]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// The webhook configuration's name.
    pub configuration: String,
    /// The webhook's own name (`mpod.elbv2.k8s.aws`).
    pub name: String,
    /// `mutating` or `validating`.
    pub kind: String,
    /// The workload whose pods serve it (its namespace holds the Service).
    pub workload: String,
    pub service: String,
    #[serde(default)]
    pub path: String,
    #[serde(default = "default_port")]
    pub target_port: u16,
    /// Resources matched in the core group, v1 (`pods`).
    pub resources: Vec<String>,
    #[serde(default = "default_operations")]
    pub operations: Vec<String>,
    /// `Fail` (default) or `Ignore`.
    #[serde(default = "default_true_policy")]
    pub failure_policy: String,
    /// Namespaces the webhook leaves alone (a `kubernetes.io/metadata.name
    /// NotIn` namespace selector, as installs exclude their own).
    #[serde(default)]
    pub exclude_namespaces: Vec<String>,
}

/// One aggregated API served by a `[[workloads]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiServiceSpec {
    pub group: String,
    pub version: String,
    pub workload: String,
    pub service: String,
    #[serde(default = "default_port")]
    pub target_port: u16,
}

/// Checks the keys against the scenario's workloads.
pub fn validate(s: &Scenario) -> Result<(), String> {
    let namespace_of = |w: &str| s.workloads.iter().find(|x| x.name == w).map(|x| x.namespace.clone());
    for h in &s.webhooks {
        if namespace_of(&h.workload).is_none() {
            return Err(format!(
                "webhook {}: workload {} is not in [[workloads]]",
                h.name, h.workload
            ));
        }
        if !matches!(h.kind.as_str(), "mutating" | "validating") {
            return Err(format!(
                "webhook {}: kind must be mutating or validating, not {}",
                h.name, h.kind
            ));
        }
        if !matches!(h.failure_policy.as_str(), "Fail" | "Ignore") {
            return Err(format!(
                "webhook {}: failure_policy must be Fail or Ignore, not {}",
                h.name, h.failure_policy
            ));
        }
    }
    for a in &s.api_services {
        if namespace_of(&a.workload).is_none() {
            return Err(format!(
                "api service {}.{}: workload {} is not in [[workloads]]",
                a.version, a.group, a.workload
            ));
        }
    }
    Ok(())
}

fn service(name: &str, ns: &str, app: &str, target_port: u16, cluster_ip: &str, created: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": created, "labels": {"app": app}},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
            "selector": {"app": app},
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": target_port}],
            "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster"}})
}

fn webhook_configuration(h: &WebhookSpec, ns: &str, created: &str) -> Value {
    let kind = if h.kind == "mutating" {
        "MutatingWebhookConfiguration"
    } else {
        "ValidatingWebhookConfiguration"
    };
    let mut hook = json!({
        "name": h.name,
        "admissionReviewVersions": ["v1", "v1beta1"],
        "clientConfig": {"service": {"name": h.service, "namespace": ns, "path": h.path, "port": 443}},
        "failurePolicy": h.failure_policy,
        "matchPolicy": "Equivalent",
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": h.operations,
                   "resources": h.resources, "scope": "*"}],
        "sideEffects": "None",
        "timeoutSeconds": 10,
        "namespaceSelector": {},
        "objectSelector": {},
    });
    if !h.exclude_namespaces.is_empty() {
        hook["namespaceSelector"] = json!({"matchExpressions": [{
            "key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": h.exclude_namespaces}]});
    }
    if h.kind == "mutating" {
        hook["reinvocationPolicy"] = json!("Never");
    }
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
        "metadata": {"name": h.configuration, "creationTimestamp": created},
        "webhooks": [hook]})
}

fn api_service(a: &ApiServiceSpec, ns: &str, created: &str) -> Value {
    json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": format!("{}.{}", a.version, a.group), "creationTimestamp": created,
            "labels": {"app": a.workload}},
        "spec": {"group": a.group, "version": a.version, "groupPriorityMinimum": 100, "versionPriority": 100,
            "insecureSkipTLSVerify": true, "service": {"name": a.service, "namespace": ns, "port": 443}}})
}

/// The Services, webhook configurations and APIServices, with the resource
/// index each is created as. `cluster_ip(n)` hands out service addresses.
pub fn objects(s: &Scenario, created: &str, cluster_ip: impl Fn(u32) -> String) -> Vec<(usize, Value)> {
    use crate::kube::resources::{APISERVICE, MUTATING_WEBHOOK, SERVICE, VALIDATING_WEBHOOK};
    let namespace_of = |w: &str| {
        s.workloads
            .iter()
            .find(|x| x.name == w)
            .map_or_else(|| "default".to_string(), |x| x.namespace.clone())
    };
    let mut out = Vec::new();
    let mut n = 100;
    for h in &s.webhooks {
        let ns = namespace_of(&h.workload);
        n += 1;
        out.push((
            SERVICE,
            service(&h.service, &ns, &h.workload, h.target_port, &cluster_ip(n), created),
        ));
        let rt = if h.kind == "mutating" {
            MUTATING_WEBHOOK
        } else {
            VALIDATING_WEBHOOK
        };
        out.push((rt, webhook_configuration(h, &ns, created)));
    }
    for a in &s.api_services {
        let ns = namespace_of(&a.workload);
        n += 1;
        out.push((
            SERVICE,
            service(&a.service, &ns, &a.workload, a.target_port, &cluster_ip(n), created),
        ));
        out.push((APISERVICE, api_service(a, &ns, created)));
    }
    out
}
