//! A read-only picture of what the migration cares about inside the cluster:
//! nodes, pods, the aws-node DaemonSet, Karpenter (controller, NodePools,
//! EC2NodeClasses, NodeClaims), PodDisruptionBudgets and ENIConfigs. Reads
//! run concurrently; custom resources whose CRD is absent read as `None`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ListParams;
use kube::core::{Selector, SelectorExt};
use kube::{Api, Client, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::crds::{Ec2NodeClass, EniConfig, NodeClaim, NodePool};
use super::{KubeError, list_all, list_crd, with_retry};

pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const INSTANCE_TYPE_LABEL: &str = "node.kubernetes.io/instance-type";
pub const NODEGROUP_LABEL: &str = "eks.amazonaws.com/nodegroup";
pub const NODEPOOL_LABEL: &str = "karpenter.sh/nodepool";
pub const ENICONFIG_LABEL: &str = "vpc.amazonaws.com/eniConfig";
/// podnet's mark on a node a rollback must replace: ipamd drops the
/// eniConfig label when aws-node restarts with custom networking off, so
/// the label cannot say which nodes still hold pod-subnet ENIs.
pub const REPLACE_ANNOTATION: &str = "podnet.io/replace";
pub const EXTERNAL_ENICONFIG_LABEL: &str = "vpc.amazonaws.com/externalEniConfig";
pub const ENICONFIG_ANNOTATION: &str = "k8s.amazonaws.com/eniConfig";
pub const OS_LABEL: &str = "kubernetes.io/os";
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub name: String,
    pub zone: Option<String>,
    pub instance_type: Option<String>,
    pub os: String,
    pub internal_ip: Option<String>,
    pub provider_id: Option<String>,
    pub capacity_pods: Option<u32>,
    pub nodegroup: Option<String>,
    pub nodepool: Option<String>,
    pub ready: bool,
    pub unschedulable: bool,
    /// `vpc.amazonaws.com/eniConfig` (set by the CNI under custom networking).
    pub eniconfig_label: Option<String>,
    /// Overrides of the zone label: annotation and external label.
    pub eniconfig_annotation: Option<String>,
    pub external_eniconfig_label: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// [`REPLACE_ANNOTATION`], when a rollback marked the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_mark: Option<String>,
}

impl NodeSummary {
    /// A node whose pods the VPC CNI addresses: not Windows (the VPC
    /// resource controller's), not Fargate (its profile's subnets). Only
    /// these move to custom networking.
    pub fn on_vpc_cni(&self) -> bool {
        self.os != "windows" && self.labels.get(COMPUTE_TYPE_LABEL).map(String::as_str) != Some("fargate")
    }
}

/// The label EKS puts on Fargate nodes (`fargate`).
pub const COMPUTE_TYPE_LABEL: &str = "eks.amazonaws.com/compute-type";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSummary {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: Option<String>,
    pub ip: Option<String>,
    pub host_network: bool,
    pub phase: String,
    pub owner_kind: Option<String>,
    pub owner_name: Option<String>,
    pub has_emptydir: bool,
    pub is_mirror: bool,
    pub labels: BTreeMap<String, String>,
}

impl PodSummary {
    pub fn is_daemonset(&self) -> bool {
        self.owner_kind.as_deref() == Some("DaemonSet")
    }

    pub fn is_finished(&self) -> bool {
        self.phase == "Succeeded" || self.phase == "Failed"
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsNodeSummary {
    pub namespace: String,
    pub image: Option<String>,
    pub env: BTreeMap<String, String>,
    pub desired: i32,
    pub updated: i32,
    pub ready: i32,
}

impl AwsNodeSummary {
    pub fn env_is(&self, key: &str, value: &str) -> bool {
        self.env.get(key).is_some_and(|v| v.eq_ignore_ascii_case(value))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KarpenterController {
    pub namespace: String,
    pub deployment: String,
    /// The controller container (`controller` in the Helm chart).
    pub container: String,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub reserved_enis: Option<String>,
    /// `app.kubernetes.io/managed-by: Helm` (or Helm's release annotations).
    pub helm_managed: bool,
    pub helm_release: Option<String>,
    /// Nodes its pods run on.
    pub nodes: Vec<String>,
    pub has_pdb: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodePoolSummary {
    pub name: String,
    pub node_class: Option<String>,
    /// `spec.template.spec.requirements`.
    pub requirements: Vec<Value>,
    /// `spec.disruption.budgets`.
    pub budgets: Vec<Value>,
    pub limits: BTreeMap<String, String>,
}

impl NodePoolSummary {
    /// Instance types allowed by an `In` requirement on the instance-type label.
    pub fn instance_types(&self) -> Vec<String> {
        self.requirements
            .iter()
            .filter(|r| r["key"] == INSTANCE_TYPE_LABEL && r["operator"] == "In")
            .flat_map(|r| r["values"].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeClassSummary {
    pub name: String,
    pub subnet_selector_terms: Vec<Value>,
    pub kubelet_max_pods: Option<u32>,
    pub security_group_selector_terms: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeClaimSummary {
    pub name: String,
    pub node_name: Option<String>,
    pub nodepool: Option<String>,
    pub provider_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PdbSummary {
    pub namespace: String,
    pub name: String,
    pub selector: Option<LabelSelector>,
    pub disruptions_allowed: i32,
    pub current_healthy: i32,
    pub desired_healthy: i32,
    pub expected_pods: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EniConfigSummary {
    pub name: String,
    pub subnet: Option<String>,
    pub security_groups: Vec<String>,
}

/// The Karpenter objects, when Karpenter's CRDs are installed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KarpenterSnapshot {
    pub controller: Option<KarpenterController>,
    pub nodepools: Vec<NodePoolSummary>,
    pub nodeclasses: Vec<NodeClassSummary>,
    pub nodeclaims: Vec<NodeClaimSummary>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KubeSnapshot {
    pub nodes: Vec<NodeSummary>,
    pub pods: Vec<PodSummary>,
    pub aws_node: Option<AwsNodeSummary>,
    pub karpenter: Option<KarpenterSnapshot>,
    pub pdbs: Vec<PdbSummary>,
    /// `None`: the ENIConfig CRD is not installed.
    pub eniconfigs: Option<Vec<EniConfigSummary>>,
    pub eniconfig_crd_established: bool,
    /// Service-backed admission webhooks and APIServices.
    #[serde(default)]
    pub callbacks: Vec<super::callbacks::Callback>,
}

impl KubeSnapshot {
    pub fn pods_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a PodSummary> + 'a {
        self.pods.iter().filter(move |p| p.node.as_deref() == Some(node))
    }
}

pub fn node_summary(n: &Node) -> NodeSummary {
    let labels: BTreeMap<String, String> = n.labels().clone().into_iter().collect();
    let status = n.status.as_ref();
    let capacity_pods = status
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("pods"))
        .and_then(|q| q.0.parse::<u32>().ok());
    let internal_ip = status
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|x| x.type_ == "InternalIP"))
        .map(|a| a.address.clone());
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|x| x.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    NodeSummary {
        name: n.name_any(),
        zone: labels.get(ZONE_LABEL).cloned(),
        instance_type: labels.get(INSTANCE_TYPE_LABEL).cloned(),
        os: labels.get(OS_LABEL).cloned().unwrap_or_else(|| "linux".into()),
        internal_ip,
        provider_id: n.spec.as_ref().and_then(|s| s.provider_id.clone()),
        capacity_pods,
        nodegroup: labels.get(NODEGROUP_LABEL).cloned(),
        nodepool: labels.get(NODEPOOL_LABEL).cloned(),
        ready,
        unschedulable: n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
        eniconfig_label: labels.get(ENICONFIG_LABEL).cloned(),
        eniconfig_annotation: n.annotations().get(ENICONFIG_ANNOTATION).cloned(),
        external_eniconfig_label: labels.get(EXTERNAL_ENICONFIG_LABEL).cloned(),
        labels,
        replace_mark: n.annotations().get(REPLACE_ANNOTATION).cloned(),
    }
}

pub fn pod_summary(p: &Pod) -> PodSummary {
    let spec = p.spec.as_ref();
    let owner = p
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .or(p.owner_references().first());
    PodSummary {
        namespace: p.namespace().unwrap_or_default(),
        name: p.name_any(),
        uid: p.uid().unwrap_or_default(),
        node: spec.and_then(|s| s.node_name.clone()),
        ip: p.status.as_ref().and_then(|s| s.pod_ip.clone()),
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        phase: p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Unknown".into()),
        owner_kind: owner.map(|o| o.kind.clone()),
        owner_name: owner.map(|o| o.name.clone()),
        has_emptydir: spec
            .and_then(|s| s.volumes.as_ref())
            .is_some_and(|v| v.iter().any(|v| v.empty_dir.is_some())),
        is_mirror: p.annotations().contains_key(MIRROR_ANNOTATION),
        labels: p.labels().clone().into_iter().collect(),
    }
}

fn pdb_summary(p: &PodDisruptionBudget) -> PdbSummary {
    let st = p.status.as_ref();
    PdbSummary {
        namespace: p.namespace().unwrap_or_default(),
        name: p.name_any(),
        selector: p.spec.as_ref().and_then(|s| s.selector.clone()),
        disruptions_allowed: st.map(|s| s.disruptions_allowed).unwrap_or(0),
        current_healthy: st.map(|s| s.current_healthy).unwrap_or(0),
        desired_healthy: st.map(|s| s.desired_healthy).unwrap_or(0),
        expected_pods: st.map(|s| s.expected_pods).unwrap_or(0),
    }
}

/// Whether a `LabelSelector` selects `labels`, by kube's own [`Selector`]:
/// an empty selector selects everything, a missing one nothing (the PDB
/// semantics), and one the API server would not have accepted nothing.
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    selector
        .and_then(|s| Selector::try_from(s.clone()).ok())
        .is_some_and(|s| s.matches(labels))
}

fn container_env(spec: Option<&k8s_openapi::api::core::v1::PodSpec>, container: &str) -> BTreeMap<String, String> {
    spec.and_then(|s| {
        s.containers
            .iter()
            .find(|c| c.name == container)
            .or(s.containers.first())
    })
    .and_then(|c| c.env.as_ref())
    .map(|env| {
        env.iter()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect()
    })
    .unwrap_or_default()
}

async fn aws_node(client: &Client) -> Result<Option<AwsNodeSummary>, KubeError> {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    let ds = match with_retry("get DaemonSet kube-system/aws-node", || api.get_opt("aws-node")).await? {
        Some(d) => d,
        None => return Ok(None),
    };
    let pod_spec = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let st = ds.status.as_ref();
    Ok(Some(AwsNodeSummary {
        namespace: "kube-system".into(),
        image: pod_spec
            .and_then(|s| {
                s.containers
                    .iter()
                    .find(|c| c.name == "aws-node")
                    .or(s.containers.first())
            })
            .and_then(|c| c.image.clone()),
        env: container_env(pod_spec, "aws-node"),
        desired: st.map(|s| s.desired_number_scheduled).unwrap_or(0),
        updated: st.and_then(|s| s.updated_number_scheduled).unwrap_or(0),
        ready: st.map(|s| s.number_ready).unwrap_or(0),
    }))
}

/// Finds the Karpenter controller Deployment: the named one, else the usual
/// places (`kube-system/karpenter`, `karpenter/karpenter`), else any
/// Deployment labelled `app.kubernetes.io/name=karpenter`.
pub async fn karpenter_controller(
    client: &Client,
    namespace: Option<&str>,
    name: Option<&str>,
    pods: &[PodSummary],
    pdbs: &[PdbSummary],
) -> Result<Option<KarpenterController>, KubeError> {
    let mut candidates: Vec<(String, String)> = Vec::new();
    match (namespace, name) {
        (Some(ns), Some(n)) => candidates.push((ns.into(), n.into())),
        (Some(ns), None) => candidates.push((ns.into(), "karpenter".into())),
        (None, Some(n)) => {
            candidates.push(("kube-system".into(), n.into()));
            candidates.push(("karpenter".into(), n.into()));
        }
        (None, None) => {
            candidates.push(("kube-system".into(), "karpenter".into()));
            candidates.push(("karpenter".into(), "karpenter".into()));
        }
    }
    let mut found: Option<Deployment> = None;
    for (ns, n) in &candidates {
        let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
        if let Some(d) = with_retry(&format!("get Deployment {ns}/{n}"), || api.get_opt(n)).await? {
            found = Some(d);
            break;
        }
    }
    if found.is_none() && name.is_none() {
        let api: Api<Deployment> = Api::all(client.clone());
        let lp = ListParams::default().labels("app.kubernetes.io/name=karpenter");
        found = list_all(&api, &lp, "Deployments app.kubernetes.io/name=karpenter")
            .await?
            .into_iter()
            .next();
    }
    let Some(d) = found else { return Ok(None) };
    let ns = d.namespace().unwrap_or_default();
    let pod_spec = d.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let env = container_env(pod_spec, "controller");
    let labels = d.labels();
    let annotations = d.annotations();
    let helm_managed = labels.get("app.kubernetes.io/managed-by").is_some_and(|v| v == "Helm")
        || annotations.contains_key("meta.helm.sh/release-name");
    let pod_labels: BTreeMap<String, String> = d
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .map(|m| m.into_iter().collect())
        .unwrap_or_default();
    let its_pods: Vec<&PodSummary> = pods
        .iter()
        .filter(|p| {
            p.namespace == ns && !pod_labels.is_empty() && pod_labels.iter().all(|(k, v)| p.labels.get(k) == Some(v))
        })
        .collect();
    let has_pdb = pdbs
        .iter()
        .any(|b| b.namespace == ns && its_pods.iter().any(|p| selects(b.selector.as_ref(), &p.labels)));
    Ok(Some(KarpenterController {
        namespace: ns,
        deployment: d.name_any(),
        container: pod_spec
            .and_then(|s| {
                s.containers
                    .iter()
                    .find(|c| c.name == "controller")
                    .or(s.containers.first())
            })
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "controller".into()),
        replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        ready_replicas: d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0),
        reserved_enis: env.get("RESERVED_ENIS").cloned(),
        helm_managed,
        helm_release: annotations.get("meta.helm.sh/release-name").cloned(),
        nodes: its_pods.iter().filter_map(|p| p.node.clone()).collect(),
        has_pdb,
    }))
}

fn nodepool(o: &NodePool) -> NodePoolSummary {
    let spec = &o.spec;
    NodePoolSummary {
        name: o.name_any(),
        node_class: spec.template.spec.node_class_ref.as_ref().map(|r| r.name.clone()),
        requirements: spec.template.spec.requirements.clone(),
        budgets: spec.disruption.budgets.clone(),
        limits: spec.limits.iter().map(|(k, v)| (k.clone(), v.as_written())).collect(),
    }
}

fn nodeclass(o: &Ec2NodeClass) -> NodeClassSummary {
    NodeClassSummary {
        name: o.name_any(),
        subnet_selector_terms: o.spec.subnet_selector_terms.clone(),
        kubelet_max_pods: o.spec.kubelet.as_ref().and_then(|k| k.max_pods),
        security_group_selector_terms: o.spec.security_group_selector_terms.clone(),
    }
}

fn nodeclaim(o: &NodeClaim) -> NodeClaimSummary {
    let status = o.status.as_ref();
    NodeClaimSummary {
        name: o.name_any(),
        node_name: status.and_then(|s| s.node_name.clone()),
        nodepool: o.labels().get(NODEPOOL_LABEL).cloned(),
        provider_id: status.and_then(|s| s.provider_id.clone()),
    }
}

fn eniconfig(o: &EniConfig) -> EniConfigSummary {
    EniConfigSummary {
        name: o.name_any(),
        subnet: o.spec.subnet.clone(),
        security_groups: o.spec.security_groups.clone(),
    }
}

/// Where to look for the Karpenter controller (from the plan file).
#[derive(Debug, Clone, Default)]
pub struct KarpenterHint {
    pub namespace: Option<String>,
    pub deployment: Option<String>,
}

/// Reads everything, concurrently.
pub async fn take(client: &Client, karpenter: &KarpenterHint) -> Result<KubeSnapshot, KubeError> {
    let nodes_api: Api<Node> = Api::all(client.clone());
    let pods_api: Api<Pod> = Api::all(client.clone());
    let pdb_api: Api<PodDisruptionBudget> = Api::all(client.clone());
    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let all = ListParams::default();
    let (nodes, pods, pdbs, aws_node, nodepools, nodeclasses, nodeclaims, eniconfigs, crd) = tokio::try_join!(
        list_all(&nodes_api, &all, "nodes"),
        list_all(&pods_api, &all, "pods"),
        list_all(&pdb_api, &all, "PodDisruptionBudgets"),
        aws_node(client),
        list_crd::<NodePool>(client, "NodePools"),
        list_crd::<Ec2NodeClass>(client, "EC2NodeClasses"),
        list_crd::<NodeClaim>(client, "NodeClaims"),
        list_crd::<EniConfig>(client, "ENIConfigs"),
        with_retry("get CRD eniconfigs.crd.k8s.amazonaws.com", || crd_api
            .get_opt("eniconfigs.crd.k8s.amazonaws.com")),
    )?;
    let pods: Vec<PodSummary> = pods.iter().map(pod_summary).collect();
    let callbacks = super::callbacks::discover(client, &pods).await?;
    let pdbs: Vec<PdbSummary> = pdbs.iter().map(pdb_summary).collect();
    let controller = karpenter_controller(
        client,
        karpenter.namespace.as_deref(),
        karpenter.deployment.as_deref(),
        &pods,
        &pdbs,
    )
    .await?;
    let karpenter = if nodepools.is_some() || nodeclasses.is_some() || controller.is_some() {
        Some(KarpenterSnapshot {
            controller,
            nodepools: nodepools.unwrap_or_default().iter().map(nodepool).collect(),
            nodeclasses: nodeclasses.unwrap_or_default().iter().map(nodeclass).collect(),
            nodeclaims: nodeclaims.unwrap_or_default().iter().map(nodeclaim).collect(),
        })
    } else {
        None
    };
    let established = crd
        .as_ref()
        .and_then(|c| c.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
    Ok(KubeSnapshot {
        nodes: nodes.iter().map(node_summary).collect(),
        pods,
        aws_node,
        karpenter,
        pdbs,
        eniconfigs: eniconfigs.map(|v| v.iter().map(eniconfig).collect()),
        eniconfig_crd_established: established,
        callbacks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// A selector as the API returns it (JSON), through kube's `Selector`.
    fn selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
        let typed: Option<LabelSelector> = serde_json::from_value(selector.clone()).ok();
        selects(typed.as_ref(), labels)
    }

    #[test]
    fn label_selectors() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(selector_matches(&json!({}), &l));
        assert!(!selector_matches(&Value::Null, &l));
        assert!(selector_matches(&json!({"matchLabels": {"app": "web"}}), &l));
        assert!(!selector_matches(&json!({"matchLabels": {"app": "db"}}), &l));
        assert!(selector_matches(
            &json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "back"]}]}),
            &l
        ));
        assert!(selector_matches(
            &json!({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}),
            &l
        ));
        assert!(!selector_matches(
            &json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}),
            &l
        ));
    }
}
