//! The registry of resource types the sandbox serves: names, scope, verbs,
//! subresources, discovery metadata, and for built-in kinds the k8s-openapi
//! type every write is round-tripped through so the wire format is the real
//! one. Custom resources (ENIConfig, Karpenter's kinds) are dynamic JSON and
//! are served only while their CustomResourceDefinition exists.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use k8s_openapi::api::admissionregistration::v1 as admission;
use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::coordination::v1 as coordination;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::policy::v1 as policy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apireg;

/// Parses a body into the k8s-openapi type and re-serializes it.
pub type Validator = fn(Value) -> Result<Value, String>;

fn roundtrip<T: DeserializeOwned + Serialize>(v: Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// A subresource and how discovery describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Status,
    /// autoscaling/v1 Scale
    Scale,
    /// policy/v1 Eviction (pods)
    Eviction,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Eviction => "eviction",
        }
    }
}

/// Which `kubectl get` columns a kind prints with (see `table.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Printer {
    Pod,
    Node,
    Namespace,
    Service,
    ConfigMap,
    Event,
    Deployment,
    DaemonSet,
    ReplicaSet,
    Pdb,
    Lease,
    Crd,
    /// Mutating and validating webhook configurations: WEBHOOKS, AGE.
    Webhooks,
    /// APIServices: SERVICE, AVAILABLE, AGE.
    ApiService,
    /// Columns from the CRD's `additionalPrinterColumns`.
    Custom,
}

#[derive(Debug)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Does `metadata.generation` track spec changes?
    pub generation: bool,
    /// k8s-openapi round trip; `None` for custom resources.
    pub validate: Option<Validator>,
    pub printer: Printer,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods`, `deployments.apps`: how Status messages name the resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn is_builtin(&self) -> bool {
        self.validate.is_some()
    }

    pub fn has_status(&self) -> bool {
        self.subresources.contains(&Subresource::Status)
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The URL prefix of the group version (`/api/v1`, `/apis/apps/v1`).
    pub fn gv_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The CRD name (`eniconfigs.crd.k8s.amazonaws.com`).
    pub fn crd_name(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub fn verbs() -> &'static [&'static str] {
    VERBS
}

macro_rules! builtin {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $ns:expr,
     $short:expr, $cats:expr, $subs:expr, $gen:expr, $ty:ty, $printer:expr) => {
        ResourceType {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            short_names: $short,
            categories: $cats,
            subresources: $subs,
            generation: $gen,
            validate: Some(roundtrip::<$ty>),
            printer: $printer,
        }
    };
}

macro_rules! custom {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $ns:expr,
     $short:expr, $cats:expr, $subs:expr) => {
        ResourceType {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            short_names: $short,
            categories: $cats,
            subresources: $subs,
            generation: true,
            validate: None,
            printer: Printer::Custom,
        }
    };
}

use Subresource::{Eviction, Scale, Status};

pub const POD: usize = 0;
pub const NODE: usize = 1;
pub const NAMESPACE: usize = 2;
pub const CONFIGMAP: usize = 3;
pub const EVENT: usize = 4;
pub const SERVICE: usize = 5;
pub const SERVICE_ACCOUNT: usize = 6;
pub const DAEMONSET: usize = 7;
pub const DEPLOYMENT: usize = 8;
pub const REPLICASET: usize = 9;
pub const CONTROLLER_REVISION: usize = 10;
pub const PDB: usize = 11;
pub const LEASE: usize = 12;
pub const CRD: usize = 13;
pub const ENICONFIG: usize = 14;
pub const NODEPOOL: usize = 15;
pub const NODECLAIM: usize = 16;
pub const EC2NODECLASS: usize = 17;
pub const MUTATING_WEBHOOK: usize = 18;
pub const VALIDATING_WEBHOOK: usize = 19;
pub const APISERVICE: usize = 20;

static TYPES: [ResourceType; 21] = [
    builtin!(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        true,
        &["po"],
        &["all"],
        &[Status, Eviction],
        false,
        core::Pod,
        Printer::Pod
    ),
    builtin!(
        "",
        "v1",
        "Node",
        "nodes",
        "node",
        false,
        &["no"],
        &[],
        &[Status],
        false,
        core::Node,
        Printer::Node
    ),
    builtin!(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        &["ns"],
        &[],
        &[Status],
        false,
        core::Namespace,
        Printer::Namespace
    ),
    builtin!(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        &["cm"],
        &[],
        &[],
        false,
        core::ConfigMap,
        Printer::ConfigMap
    ),
    builtin!(
        "",
        "v1",
        "Event",
        "events",
        "event",
        true,
        &["ev"],
        &[],
        &[],
        false,
        core::Event,
        Printer::Event
    ),
    builtin!(
        "",
        "v1",
        "Service",
        "services",
        "service",
        true,
        &["svc"],
        &["all"],
        &[Status],
        false,
        core::Service,
        Printer::Service
    ),
    builtin!(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
        &[],
        &[],
        false,
        core::ServiceAccount,
        Printer::ConfigMap
    ),
    builtin!(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        true,
        &["ds"],
        &["all"],
        &[Status],
        true,
        apps::DaemonSet,
        Printer::DaemonSet
    ),
    builtin!(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        true,
        &["deploy"],
        &["all"],
        &[Status, Scale],
        true,
        apps::Deployment,
        Printer::Deployment
    ),
    builtin!(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        &["rs"],
        &["all"],
        &[Status, Scale],
        true,
        apps::ReplicaSet,
        Printer::ReplicaSet
    ),
    builtin!(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        true,
        &[],
        &[],
        &[],
        false,
        apps::ControllerRevision,
        Printer::ConfigMap
    ),
    builtin!(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        true,
        &["pdb"],
        &[],
        &[Status],
        true,
        policy::PodDisruptionBudget,
        Printer::Pdb
    ),
    builtin!(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        true,
        &[],
        &[],
        &[],
        false,
        coordination::Lease,
        Printer::Lease
    ),
    builtin!(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        "customresourcedefinition",
        false,
        &["crd", "crds"],
        &["api-extensions"],
        &[Status],
        true,
        apiext::CustomResourceDefinition,
        Printer::Crd
    ),
    custom!(
        "crd.k8s.amazonaws.com",
        "v1alpha1",
        "ENIConfig",
        "eniconfigs",
        "eniconfig",
        false,
        &[],
        &[],
        &[]
    ),
    custom!(
        "karpenter.sh",
        "v1",
        "NodePool",
        "nodepools",
        "nodepool",
        false,
        &[],
        &["karpenter"],
        &[Status]
    ),
    custom!(
        "karpenter.sh",
        "v1",
        "NodeClaim",
        "nodeclaims",
        "nodeclaim",
        false,
        &[],
        &["karpenter"],
        &[Status]
    ),
    custom!(
        "karpenter.k8s.aws",
        "v1",
        "EC2NodeClass",
        "ec2nodeclasses",
        "ec2nodeclass",
        false,
        &["ec2nc", "ec2ncs"],
        &["karpenter"],
        &[Status]
    ),
    builtin!(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        "mutatingwebhookconfiguration",
        false,
        &[],
        &["api-extensions"],
        &[],
        true,
        admission::MutatingWebhookConfiguration,
        Printer::Webhooks
    ),
    builtin!(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        "validatingwebhookconfiguration",
        false,
        &[],
        &["api-extensions"],
        &[],
        true,
        admission::ValidatingWebhookConfiguration,
        Printer::Webhooks
    ),
    builtin!(
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        "apiservice",
        false,
        &[],
        &["api-extensions"],
        &[Status],
        false,
        apireg::APIService,
        Printer::ApiService
    ),
];

/// All served types, indexed by the constants above.
pub fn all() -> &'static [ResourceType] {
    &TYPES
}

pub fn get(idx: usize) -> &'static ResourceType {
    &TYPES[idx]
}

/// Find by URL coordinates.
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<usize> {
    TYPES
        .iter()
        .position(|t| t.group == group && t.version == version && t.plural == plural)
}

/// Find by `apiVersion` + `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<usize> {
    TYPES
        .iter()
        .position(|t| t.kind == kind && t.api_version() == api_version)
}

/// The group versions served, in discovery order (legacy core first).
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for t in TYPES.iter() {
        if !out.contains(&(t.group, t.version)) {
            out.push((t.group, t.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_table() {
        assert_eq!(get(POD).kind, "Pod");
        assert_eq!(get(NODE).kind, "Node");
        assert_eq!(get(NAMESPACE).kind, "Namespace");
        assert_eq!(get(CONFIGMAP).kind, "ConfigMap");
        assert_eq!(get(EVENT).kind, "Event");
        assert_eq!(get(SERVICE).kind, "Service");
        assert_eq!(get(SERVICE_ACCOUNT).kind, "ServiceAccount");
        assert_eq!(get(DAEMONSET).kind, "DaemonSet");
        assert_eq!(get(DEPLOYMENT).kind, "Deployment");
        assert_eq!(get(REPLICASET).kind, "ReplicaSet");
        assert_eq!(get(CONTROLLER_REVISION).kind, "ControllerRevision");
        assert_eq!(get(PDB).kind, "PodDisruptionBudget");
        assert_eq!(get(LEASE).kind, "Lease");
        assert_eq!(get(CRD).kind, "CustomResourceDefinition");
        assert_eq!(get(ENICONFIG).kind, "ENIConfig");
        assert_eq!(get(NODEPOOL).kind, "NodePool");
        assert_eq!(get(NODECLAIM).kind, "NodeClaim");
        assert_eq!(get(EC2NODECLASS).kind, "EC2NodeClass");
        assert_eq!(get(MUTATING_WEBHOOK).kind, "MutatingWebhookConfiguration");
        assert_eq!(get(VALIDATING_WEBHOOK).kind, "ValidatingWebhookConfiguration");
        assert_eq!(get(APISERVICE).kind, "APIService");
    }

    #[test]
    fn roundtrip_rejects_wrong_shapes() {
        let v = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
            "spec": {"containers": "not-a-list"}});
        assert!((get(POD).validate.unwrap())(v).is_err());
    }

    #[test]
    fn lookups() {
        assert_eq!(by_plural("apps", "v1", "deployments"), Some(DEPLOYMENT));
        assert_eq!(by_kind("policy/v1", "PodDisruptionBudget"), Some(PDB));
        assert_eq!(get(DEPLOYMENT).qualified(), "deployments.apps");
        assert_eq!(get(POD).qualified(), "pods");
    }
}
