//! The custom resources podnet reads and writes, typed with kube's
//! `#[derive(CustomResource)]`: the VPC CNI's `ENIConfig` and Karpenter's
//! `NodePool`, `NodeClaim` and `EC2NodeClass`. Only the fields podnet uses
//! are modelled: reading ignores the rest, and podnet writes by server-side
//! apply of just the fields it owns ([`super::apply_owned`]), so nothing it
//! does not model is ever dropped. podnet never installs these CRDs (the
//! vpc-cni add-on and Karpenter's chart do), so no schema is generated.
//!
//! Sources: amazon-vpc-cni-k8s `pkg/apis/crd/v1alpha1/eniconfig_types.go`;
//! karpenter `pkg/apis/v1/nodepool.go`, `nodeclaim.go`, `nodeclaim_status.go`
//! and karpenter-provider-aws `pkg/apis/v1/ec2nodeclass.go`.

use std::collections::BTreeMap;
use std::fmt;

use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// `crd.k8s.amazonaws.com/v1alpha1` ENIConfig: where a node's pod ENIs go.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "crd.k8s.amazonaws.com",
    version = "v1alpha1",
    kind = "ENIConfig",
    plural = "eniconfigs",
    root = "EniConfig",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct EniConfigSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
}

/// A resource quantity as Karpenter's limits and capacities hold it: `10`,
/// `"10"`, `"1500m"` (an int-or-string, kept as written).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Quantity {
    Number(serde_json::Number),
    Text(String),
}

impl Quantity {
    /// In thousandths (millicores for cpu).
    pub fn millis(&self) -> Option<u64> {
        match self {
            Quantity::Number(n) => n.as_f64().map(|c| (c * 1000.0).round() as u64),
            Quantity::Text(s) => match s.strip_suffix('m') {
                Some(m) => m.parse().ok(),
                None => s.parse::<f64>().ok().map(|c| (c * 1000.0).round() as u64),
            },
        }
    }
}

impl Quantity {
    /// As written, without YAML quoting: `10`, `1500m`.
    pub fn as_written(&self) -> String {
        match self {
            Quantity::Number(n) => n.to_string(),
            Quantity::Text(s) => s.clone(),
        }
    }
}

impl fmt::Display for Quantity {
    /// As in the object's YAML (a string quoted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quantity::Number(n) => write!(f, "{n}"),
            Quantity::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// `karpenter.sh/v1` NodePool: podnet reads (and may raise) its limits.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "karpenter.sh",
    version = "v1",
    kind = "NodePool",
    plural = "nodepools",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolSpec {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Quantity>,
    /// Read only: podnet never writes the template.
    #[serde(default, skip_serializing)]
    pub template: NodeClaimTemplate,
    /// Read only: the disruption budgets bound how fast nodes may go.
    #[serde(default, skip_serializing)]
    pub disruption: Disruption,
}

/// `spec.template` of a NodePool: the NodeClaims it makes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeClaimTemplate {
    #[serde(default)]
    pub spec: NodeClaimTemplateSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimTemplateSpec {
    #[serde(default)]
    pub node_class_ref: Option<NodeClassReference>,
    /// Node selector requirements, kept as the API serves them.
    #[serde(default)]
    pub requirements: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeClassReference {
    #[serde(default)]
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Disruption {
    /// Kept as the API serves them (nodes, schedule, duration, reasons).
    #[serde(default)]
    pub budgets: Vec<serde_json::Value>,
}

/// `karpenter.sh/v1` NodeClaim: the node it became and what it holds.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "karpenter.sh",
    version = "v1",
    kind = "NodeClaim",
    plural = "nodeclaims",
    status = "NodeClaimStatus",
    schema = "disabled"
)]
pub struct NodeClaimSpec {}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, rename = "providerID", skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, Quantity>,
}

/// `karpenter.k8s.aws/v1` EC2NodeClass: podnet may own `kubelet.maxPods`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "karpenter.k8s.aws",
    version = "v1",
    kind = "EC2NodeClass",
    plural = "ec2nodeclasses",
    root = "Ec2NodeClass",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct Ec2NodeClassSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<KubeletConfiguration>,
    /// Read only (kept as served): which subnets its nodes launch into.
    #[serde(default, skip_serializing)]
    pub subnet_selector_terms: Vec<serde_json::Value>,
    /// Read only (kept as served): which security groups its nodes get.
    #[serde(default, skip_serializing)]
    pub security_group_selector_terms: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pods: Option<u32>,
}

#[cfg(test)]
mod tests {
    use kube::Resource;
    use serde_json::json;

    use super::*;

    #[test]
    fn read_as_the_api_serves_them_ignoring_what_podnet_does_not_model() {
        let claim: NodeClaim = serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": { "name": "default-abc" },
            "spec": { "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" } },
            "status": { "nodeName": "ip-10-0-1-2", "providerID": "aws:///ap-northeast-2a/i-1", "capacity": { "cpu": "2", "pods": "17" } }
        }))
        .unwrap();
        let st = claim.status.unwrap();
        assert_eq!(st.node_name.as_deref(), Some("ip-10-0-1-2"));
        assert_eq!(st.provider_id.as_deref(), Some("aws:///ap-northeast-2a/i-1"));
        assert_eq!(st.capacity["cpu"].millis(), Some(2000));
        let pool: NodePool = serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": { "name": "default" },
            "spec": { "limits": { "cpu": 10 }, "template": { "spec": {} } }
        }))
        .unwrap();
        assert_eq!(pool.spec.limits["cpu"], Quantity::Number(10.into()));
        assert_eq!(pool.spec.limits["cpu"].to_string(), "10");
        assert_eq!(pool.spec.template.spec.node_class_ref, None);
        let class: Ec2NodeClass = serde_json::from_value(json!({
            "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass", "metadata": { "name": "default" },
            "spec": { "role": "KarpenterNodeRole", "amiSelectorTerms": [{ "alias": "al2023@latest" }],
                      "subnetSelectorTerms": [{ "tags": { "karpenter.sh/discovery": "demo" } }],
                      "securityGroupSelectorTerms": [{ "id": "sg-1" }], "kubelet": { "maxPods": 110 } }
        }))
        .unwrap();
        assert_eq!(class.spec.subnet_selector_terms.len(), 1);
        assert_eq!(class.spec.security_group_selector_terms[0]["id"], "sg-1");
        // What podnet writes by server-side apply is only what it owns.
        assert_eq!(
            serde_json::to_value(&class.spec).unwrap(),
            json!({ "kubelet": { "maxPods": 110 } })
        );
        assert_eq!(Quantity::Text("1500m".into()).millis(), Some(1500));
        assert_eq!(Quantity::Text("10".into()).to_string(), "\"10\"");
        assert_eq!(EniConfig::kind(&()), "ENIConfig");
        assert_eq!(Ec2NodeClass::api_version(&()), "karpenter.k8s.aws/v1");
    }

    #[test]
    fn an_eniconfig_serializes_as_the_vpc_cni_reads_it() {
        let e = EniConfig::new(
            "ap-northeast-2a",
            EniConfigSpec {
                subnet: Some("subnet-1".into()),
                security_groups: vec!["sg-1".into()],
            },
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["apiVersion"], "crd.k8s.amazonaws.com/v1alpha1");
        assert_eq!(v["kind"], "ENIConfig");
        assert_eq!(v["spec"], json!({ "subnet": "subnet-1", "securityGroups": ["sg-1"] }));
    }
}
