//! What the API server calls inside the cluster: admission webhooks
//! (`MutatingWebhookConfiguration`, `ValidatingWebhookConfiguration`) and
//! aggregated APIs (`APIService`) backed by an in-cluster Service, with the
//! pods behind each Service. The migration moves those pods onto the new
//! CIDR, which the EKS control plane may not reach for hours after the
//! association ("It can take a cluster up to five hours for a CIDR block
//! that you associated with a VPC to be recognized",
//! <https://docs.aws.amazon.com/eks/latest/userguide/network-reqs.html>);
//! the planner lists them and gates the cutover on the control plane's
//! reach ([`crate::steps::reach_gate`]).

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, RuleWithOperations, ServiceReference, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::{APIService, APIServiceSpec};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};

use super::snapshot::PodSummary;
use super::{KubeError, list_crd, with_retry};

/// One thing the API server calls, and the pods that answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    /// `webhook` or `apiservice`.
    pub kind: String,
    /// The webhook's name, or the APIService's.
    pub name: String,
    /// `MutatingWebhookConfiguration aws-load-balancer-webhook`, or
    /// `APIService v1beta1.metrics.k8s.io`.
    pub owner: String,
    /// `Fail` or `Ignore` (webhooks; the API's default is `Fail`).
    pub failure_policy: Option<String>,
    /// What it is called for: `CREATE pods`, or the group version served.
    pub scope: String,
    pub service_namespace: String,
    pub service_name: String,
    pub port: i32,
    /// The Service's pods (`namespace/name`) and their nodes.
    pub pods: Vec<(String, Option<String>)>,
    /// An APIService's `Available` condition, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<bool>,
}

impl Callback {
    /// What breaks while the control plane cannot reach its pods.
    pub fn outage(&self) -> String {
        match (self.kind.as_str(), self.failure_policy.as_deref()) {
            ("webhook", Some("Ignore")) => {
                format!("{} is skipped for {} (failurePolicy Ignore)", self.name, self.scope)
            }
            ("webhook", _) => format!("every {} it matches is refused (failurePolicy Fail)", self.scope),
            _ => format!(
                "{} turns Available=False: its API ({}) and everything using it (kubectl top, HPAs) fail",
                self.owner, self.scope
            ),
        }
    }
}

fn rules_text(rules: Option<&Vec<RuleWithOperations>>) -> String {
    let parts: Vec<String> = rules
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{} {}",
                r.operations.clone().unwrap_or_default().join("/"),
                r.resources.clone().unwrap_or_default().join(",")
            )
        })
        .collect();
    if parts.is_empty() {
        "request".into()
    } else {
        parts.join("; ")
    }
}

struct Hook {
    kind: &'static str,
    config: String,
    name: String,
    policy: Option<String>,
    scope: String,
    service: ServiceReference,
}

/// One webhook as both configuration kinds spell it: the kind, its name,
/// failure policy, rules and Service.
type WebhookParts<'a> = (
    &'static str,
    &'a str,
    Option<&'a String>,
    Option<&'a Vec<RuleWithOperations>>,
    Option<&'a ServiceReference>,
);

fn hooks(mutating: &[MutatingWebhookConfiguration], validating: &[ValidatingWebhookConfiguration]) -> Vec<Hook> {
    let name_of = |m: &'_ Option<String>| m.clone().unwrap_or_default();
    let mut parts: Vec<(String, WebhookParts<'_>)> = Vec::new();
    for c in mutating {
        for w in c.webhooks.iter().flatten() {
            let p = (
                "MutatingWebhookConfiguration",
                w.name.as_str(),
                w.failure_policy.as_ref(),
                w.rules.as_ref(),
                w.client_config.service.as_ref(),
            );
            parts.push((name_of(&c.metadata.name), p));
        }
    }
    for c in validating {
        for w in c.webhooks.iter().flatten() {
            let p = (
                "ValidatingWebhookConfiguration",
                w.name.as_str(),
                w.failure_policy.as_ref(),
                w.rules.as_ref(),
                w.client_config.service.as_ref(),
            );
            parts.push((name_of(&c.metadata.name), p));
        }
    }
    parts
        .into_iter()
        .filter_map(|(config, (kind, name, policy, rules, service))| {
            Some(Hook {
                kind,
                config,
                name: name.to_string(),
                policy: Some(policy.cloned().unwrap_or_else(|| "Fail".into())),
                scope: rules_text(rules),
                service: service?.clone(),
            })
        })
        .collect()
}

/// The Service's selected pods (`None` for a Service without a selector:
/// its endpoints are managed by hand and podnet cannot tell where they are).
fn backing(svc: Option<&Service>, ns: &str, pods: &[PodSummary]) -> Vec<(String, Option<String>)> {
    let Some(sel) = svc.and_then(|s| s.spec.as_ref()).and_then(|s| s.selector.as_ref()) else {
        return Vec::new();
    };
    pods.iter()
        .filter(|p| p.namespace == ns && !p.is_finished() && !p.host_network)
        .filter(|p| sel.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
        .map(|p| (p.key(), p.node.clone()))
        .collect()
}

/// A list the identity may not read is empty here: the permission check
/// that follows discovery names it as missing, instead of discovery
/// failing before any report.
async fn readable<K>(
    list: impl std::future::Future<Output = Result<Option<Vec<K>>, KubeError>>,
) -> Result<Option<Vec<K>>, KubeError> {
    match list.await {
        Err(e) if e.status == Some(403) => Ok(None),
        other => other,
    }
}

/// Every Service-backed webhook and APIService, with its pods.
pub async fn discover(client: &Client, pods: &[PodSummary]) -> Result<Vec<Callback>, KubeError> {
    let (mutating, validating, apis) = tokio::try_join!(
        readable(list_crd::<MutatingWebhookConfiguration>(
            client,
            "MutatingWebhookConfigurations"
        )),
        readable(list_crd::<ValidatingWebhookConfiguration>(
            client,
            "ValidatingWebhookConfigurations"
        )),
        readable(list_crd::<APIService>(client, "APIServices")),
    )?;
    let hooks = hooks(&mutating.unwrap_or_default(), &validating.unwrap_or_default());
    // (name, spec) of the Service-backed ones; local APIServices are the
    // API server's own.
    let apis: Vec<(String, APIServiceSpec, Option<bool>)> = apis
        .unwrap_or_default()
        .into_iter()
        .filter_map(|a| {
            let available = a
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Available"))
                .map(|c| c.status == "True");
            Some((a.metadata.name.clone().unwrap_or_default(), a.spec?, available))
        })
        .filter(|(_, spec, _)| spec.service.is_some())
        .collect();
    let mut services: BTreeMap<(String, String), Option<Service>> = BTreeMap::new();
    let refs = hooks
        .iter()
        .map(|h| (h.service.namespace.clone(), h.service.name.clone()))
        .chain(apis.iter().filter_map(|(_, spec, _)| {
            let s = spec.service.as_ref()?;
            Some((
                s.namespace.clone().unwrap_or_default(),
                s.name.clone().unwrap_or_default(),
            ))
        }));
    for (ns, name) in refs {
        if services.contains_key(&(ns.clone(), name.clone())) {
            continue;
        }
        let api: Api<Service> = Api::namespaced(client.clone(), &ns);
        let svc = with_retry(&format!("get Service {ns}/{name}"), || api.get_opt(&name)).await?;
        services.insert((ns, name), svc);
    }
    let mut out = Vec::new();
    for h in hooks {
        let key = (h.service.namespace.clone(), h.service.name.clone());
        out.push(Callback {
            kind: "webhook".into(),
            name: h.name,
            owner: format!("{} {}", h.kind, h.config),
            failure_policy: h.policy,
            scope: h.scope,
            pods: backing(services.get(&key).and_then(Option::as_ref), &key.0, pods),
            service_namespace: key.0,
            service_name: key.1,
            port: h.service.port.unwrap_or(443),
            available: None,
        });
    }
    for (name, spec, available) in apis {
        let Some(s) = spec.service.as_ref() else { continue };
        let key = (
            s.namespace.clone().unwrap_or_default(),
            s.name.clone().unwrap_or_default(),
        );
        out.push(Callback {
            kind: "apiservice".into(),
            owner: format!("APIService {name}"),
            name,
            failure_policy: None,
            scope: format!(
                "{}/{}",
                spec.group.clone().unwrap_or_default(),
                spec.version.clone().unwrap_or_default()
            ),
            pods: backing(services.get(&key).and_then(Option::as_ref), &key.0, pods),
            service_namespace: key.0,
            service_name: key.1,
            port: s.port.unwrap_or(443),
            available,
        });
    }
    Ok(out)
}

/// Does the API server reach the callback's Service? It asks the API
/// server's service proxy (`…/services/https:{name}:{port}/proxy/`): any
/// answer from the pods (even a 404) means reached; a 502/503/504 carries
/// why not (`error trying to reach service: … i/o timeout`, `no endpoints
/// available`). `Ok(None)` when reached.
pub async fn unreachable(client: &Client, c: &Callback) -> Result<Option<String>, KubeError> {
    let path = format!(
        "/api/v1/namespaces/{}/services/https:{}:{}/proxy/",
        c.service_namespace, c.service_name, c.port
    );
    // Only the proxy's own dial and endpoint failures (502-504) say "not
    // reached"; any other answer came from the pods (metrics-server answers
    // an anonymous GET / with 403). A 429 is the API server's priority and
    // fairness: asked again.
    let answer = super::retry_when(
        &format!("GET {path}"),
        || {
            let req = http::Request::get(&path).body(Vec::new());
            async move {
                let req = req.map_err(kube::Error::HttpError)?;
                client.request_text(req).await
            }
        },
        |e| matches!(e, kube::Error::Api(s) if s.code == 429),
    )
    .await;
    match answer {
        Ok(_) => Ok(None),
        Err(e) => match e.status {
            Some(code) if (502..=504).contains(&code) => Ok(Some(e.message)),
            Some(code) if code != 429 => Ok(None),
            _ => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str, app: &str) -> PodSummary {
        PodSummary {
            namespace: ns.into(),
            name: name.into(),
            uid: name.into(),
            node: Some("n1".into()),
            ip: Some("10.0.0.5".into()),
            host_network: false,
            phase: "Running".into(),
            owner_kind: Some("ReplicaSet".into()),
            owner_name: None,
            has_emptydir: false,
            is_mirror: false,
            labels: [("app".to_string(), app.to_string())].into(),
        }
    }

    #[test]
    fn a_service_selects_its_pods_in_its_namespace() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "metrics-server", "namespace": "kube-system"},
            "spec": {"selector": {"app": "metrics-server"}}
        }))
        .unwrap();
        let pods = [
            pod("kube-system", "ms-1", "metrics-server"),
            pod("default", "ms-2", "metrics-server"),
            pod("kube-system", "other", "x"),
        ];
        let got = backing(Some(&svc), "kube-system", &pods);
        assert_eq!(got, vec![("kube-system/ms-1".to_string(), Some("n1".to_string()))]);
        assert!(backing(None, "kube-system", &pods).is_empty());
    }

    #[test]
    fn service_webhooks_of_both_kinds_are_read_and_url_ones_left_out() {
        let m: MutatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "lbc"},
            "webhooks": [
                {"name": "mpod.elbv2.k8s.aws", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                 "clientConfig": {"service": {"name": "svc", "namespace": "kube-system"}},
                 "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]},
                {"name": "external.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                 "clientConfig": {"url": "https://example.com/hook"}}
            ]
        }))
        .unwrap();
        let v: ValidatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "policy"},
            "webhooks": [{"name": "validate.kyverno.svc", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                "failurePolicy": "Ignore", "clientConfig": {"service": {"name": "kyverno", "namespace": "kyverno"}}}]
        }))
        .unwrap();
        let got = hooks(&[m], &[v]);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].kind, got[0].config.as_str()),
            ("MutatingWebhookConfiguration", "lbc")
        );
        assert_eq!(got[0].policy.as_deref(), Some("Fail"), "the API's default");
        assert_eq!(got[0].scope, "CREATE pods");
        assert_eq!(
            (got[1].kind, got[1].policy.as_deref()),
            ("ValidatingWebhookConfiguration", Some("Ignore"))
        );
    }

    #[test]
    fn outages_say_what_breaks() {
        let c = Callback {
            kind: "webhook".into(),
            name: "mpod.elbv2.k8s.aws".into(),
            owner: "MutatingWebhookConfiguration aws-load-balancer-webhook".into(),
            failure_policy: Some("Fail".into()),
            scope: "CREATE pods".into(),
            service_namespace: "kube-system".into(),
            service_name: "aws-load-balancer-webhook-service".into(),
            port: 443,
            pods: vec![],
            available: None,
        };
        assert!(c.outage().contains("every CREATE pods it matches is refused"));
    }
}
