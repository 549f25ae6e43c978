//! The Kubernetes objects of a seeded cluster, shaped like the real ones:
//! nodes as EKS and Karpenter register them, the EKS add-on workloads
//! (aws-node, kube-proxy, CoreDNS), the Helm-installed Karpenter controller
//! and its NodePool, EC2NodeClass and NodeClaims, and the scenario's
//! workloads with their ReplicaSets and PDBs.
//!
//! Nodes live in `nodes`, the EKS add-ons in `addons`, Karpenter in
//! `karpenter` and the scenario's workloads in `workloads`; this module
//! re-exports them all and holds the cluster's own namespaces and services.

mod addons;
mod karpenter;
mod nodes;
mod workloads;

use serde_json::{Value, json};

pub use addons::*;
pub use karpenter::*;
pub use nodes::*;
pub use workloads::*;

use super::Scenario;

pub fn namespaces(created: &str) -> Vec<Value> {
    ["default", "kube-system", "kube-public", "kube-node-lease"]
        .iter()
        .map(|n| {
            json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": n, "labels": {"kubernetes.io/metadata.name": n}, "creationTimestamp": created},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        })
        .collect()
}

/// The `n`th address of the service CIDR (`1` is the API server's).
pub fn service_ip(s: &Scenario, n: u32) -> String {
    let base = s
        .service_cidr
        .split('/')
        .next()
        .and_then(|b| b.parse::<std::net::Ipv4Addr>().ok())
        .map(u32::from)
        .unwrap_or(0xAC14_0000);
    std::net::Ipv4Addr::from(base + n).to_string()
}

pub fn services(s: &Scenario, created: &str) -> Vec<(String, Value)> {
    let ip = |n: u32| service_ip(s, n);
    vec![
        (
            "default".into(),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default", "creationTimestamp": created,
                    "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"type": "ClusterIP", "clusterIP": ip(1), "clusterIPs": [ip(1)],
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}],
                    "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                    "internalTrafficPolicy": "Cluster"}}),
        ),
        (
            "kube-system".into(),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kube-dns", "namespace": "kube-system", "creationTimestamp": created,
                    "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                        "kubernetes.io/name": "CoreDNS", "eks.amazonaws.com/component": "kube-dns"}},
                "spec": {"type": "ClusterIP", "clusterIP": ip(10), "clusterIPs": [ip(10)],
                    "selector": {"k8s-app": "kube-dns"},
                    "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                              {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                              {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}],
                    "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                    "internalTrafficPolicy": "Cluster"}}),
        ),
    ]
}
