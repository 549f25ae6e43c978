//! The EKS add-on workloads as EKS installs them: aws-node (the VPC CNI,
//! with its env from the add-on defaults and the configuration values,
//! <https://github.com/aws/amazon-vpc-cni-k8s#cni-configuration-variables>),
//! kube-proxy and CoreDNS, and the `amazon-vpc-cni` ConfigMap
//! (<https://docs.aws.amazon.com/eks/latest/userguide/managing-vpc-cni.html>).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::eks::{aws_node_env, ecr_registry, vpc_cni_default_env};
use crate::scenario::{Scenario, World};

fn eks_addon_labels(name: &str, version: &str) -> Value {
    json!({
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/version": version,
    })
}

fn node_affinity() -> Value {
    json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [
            {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]},
            {"key": "eks.amazonaws.com/compute-type", "operator": "NotIn", "values": ["fargate", "hybrid", "auto"]}
        ]}
    ]}}})
}

/// aws-node env: the add-on defaults overlaid with the scenario's
/// configuration values.
pub fn aws_node_env_for(s: &Scenario, w: &World) -> Vec<Value> {
    aws_node_env(
        &vpc_cni_default_env(&s.cluster, &w.vpc_id, &s.vpc_cni.version),
        &s.vpc_cni_config(),
    )
}

/// The aws-node env as plain (name, value) pairs.
pub fn env_pairs(env: &[Value]) -> BTreeMap<String, String> {
    env.iter()
        .filter_map(|e| {
            Some((
                e.get("name")?.as_str()?.to_string(),
                e.get("value")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

pub fn aws_node(s: &Scenario, w: &World, created: &str) -> Value {
    let reg = ecr_registry(&s.region);
    let v = &s.vpc_cni.version;
    let short = v.split('-').next().unwrap_or(v).trim_start_matches('v');
    let mut labels = eks_addon_labels("aws-node", short);
    labels["k8s-app"] = json!("aws-node");
    labels["app.kubernetes.io/instance"] = json!("aws-vpc-cni");
    labels["helm.sh/chart"] = json!(format!("aws-vpc-cni-{short}"));
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "aws-node", "namespace": "kube-system", "labels": labels,
            "annotations": {"deprecated.daemonset.template.generation": "1"}, "creationTimestamp": created},
        "spec": {
            "selector": {"matchLabels": {"k8s-app": "aws-node"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%", "maxSurge": 0}},
            "revisionHistoryLimit": 10,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/instance": "aws-vpc-cni", "app.kubernetes.io/name": "aws-node", "k8s-app": "aws-node"}},
                "spec": {
                    "affinity": node_affinity(),
                    "hostNetwork": true,
                    "priorityClassName": "system-node-critical",
                    "serviceAccountName": "aws-node",
                    "terminationGracePeriodSeconds": 10,
                    "tolerations": [{"operator": "Exists"}],
                    "initContainers": [{
                        "name": "aws-vpc-cni-init",
                        "image": format!("{reg}/amazon-k8s-cni-init:{v}"),
                        "env": [{"name": "DISABLE_TCP_EARLY_DEMUX", "value": "false"}, {"name": "ENABLE_IPv6", "value": "false"}],
                        "resources": {"requests": {"cpu": "25m"}},
                        "securityContext": {"privileged": true},
                        "volumeMounts": [{"mountPath": "/host/opt/cni/bin", "name": "cni-bin-dir"}]
                    }],
                    "containers": [
                        {
                            "name": "aws-node",
                            "image": format!("{reg}/amazon-k8s-cni:{v}"),
                            "env": aws_node_env_for(s, w),
                            "ports": [{"containerPort": 61678, "name": "metrics", "protocol": "TCP"}],
                            "livenessProbe": {"exec": {"command": ["/app/grpc-health-probe", "-addr=:50051", "-connect-timeout=5s", "-rpc-timeout=5s"]}, "initialDelaySeconds": 60, "timeoutSeconds": 10},
                            "readinessProbe": {"exec": {"command": ["/app/grpc-health-probe", "-addr=:50051", "-connect-timeout=5s", "-rpc-timeout=5s"]}, "initialDelaySeconds": 1, "timeoutSeconds": 10},
                            "resources": {"requests": {"cpu": "25m"}},
                            "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
                            "volumeMounts": [
                                {"mountPath": "/host/opt/cni/bin", "name": "cni-bin-dir"},
                                {"mountPath": "/host/etc/cni/net.d", "name": "cni-net-dir"},
                                {"mountPath": "/host/var/log/aws-routed-eni", "name": "log-dir"},
                                {"mountPath": "/var/run/aws-node", "name": "run-dir"},
                                {"mountPath": "/run/xtables.lock", "name": "xtables-lock"}
                            ]
                        },
                        {
                            "name": "aws-eks-nodeagent",
                            "image": format!("{reg}/amazon/aws-network-policy-agent:v1.1.6-eksbuild.1"),
                            "args": ["--enable-ipv6=false", "--enable-network-policy=false", "--enable-cloudwatch-logs=false", "--enable-policy-event-logs=false", "--log-file=/var/log/aws-routed-eni/network-policy-agent.log", "--metrics-bind-addr=:8162", "--health-probe-bind-addr=:8163", "--conntrack-cache-cleanup-period=300"],
                            "env": [{"name": "MY_NODE_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}],
                            "resources": {"requests": {"cpu": "25m"}},
                            "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}, "privileged": true}
                        }
                    ],
                    "volumes": [
                        {"name": "cni-bin-dir", "hostPath": {"path": "/opt/cni/bin", "type": ""}},
                        {"name": "cni-net-dir", "hostPath": {"path": "/etc/cni/net.d", "type": ""}},
                        {"name": "log-dir", "hostPath": {"path": "/var/log/aws-routed-eni", "type": "DirectoryOrCreate"}},
                        {"name": "run-dir", "hostPath": {"path": "/var/run/aws-node", "type": "DirectoryOrCreate"}},
                        {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}}
                    ]
                }
            }
        }
    })
}

pub fn kube_proxy(s: &Scenario, created: &str) -> Value {
    let reg = ecr_registry(&s.region);
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system",
            "labels": {"eks.amazonaws.com/component": "kube-proxy", "k8s-app": "kube-proxy"},
            "annotations": {"deprecated.daemonset.template.generation": "1"}, "creationTimestamp": created},
        "spec": {
            "selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%", "maxSurge": 0}},
            "revisionHistoryLimit": 10,
            "template": {
                "metadata": {"labels": {"k8s-app": "kube-proxy"}},
                "spec": {
                    "affinity": node_affinity(),
                    "hostNetwork": true,
                    "priorityClassName": "system-node-critical",
                    "serviceAccountName": "kube-proxy",
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{
                        "name": "kube-proxy",
                        "image": format!("{reg}/eks/kube-proxy:v1.31.3-minimal-eksbuild.2"),
                        "command": ["kube-proxy", "--v=2", "--config=/var/lib/kube-proxy-config/config", "--hostname-override=$(NODE_NAME)"],
                        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}],
                        "resources": {"requests": {"cpu": "100m"}},
                        "securityContext": {"privileged": true}
                    }]
                }
            }
        }
    })
}

pub fn coredns_pod_spec(s: &Scenario) -> Value {
    let reg = ecr_registry(&s.region);
    json!({
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}]}]}},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
                "labelSelector": {"matchExpressions": [{"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}]},
                "topologyKey": "kubernetes.io/hostname"}}]}
        },
        "priorityClassName": "system-cluster-critical",
        "serviceAccountName": "coredns",
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}, {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
        "containers": [{
            "name": "coredns",
            "image": format!("{reg}/eks/coredns:v1.11.4-eksbuild.2"),
            "args": ["-conf", "/etc/coredns/Corefile"],
            "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"}, {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"}, {"containerPort": 9153, "name": "metrics", "protocol": "TCP"}],
            "resources": {"requests": {"cpu": "100m", "memory": "70Mi"}, "limits": {"memory": "170Mi"}},
            "volumeMounts": [{"mountPath": "/etc/coredns", "name": "config-volume", "readOnly": true}]
        }],
        "volumes": [{"name": "config-volume", "configMap": {"name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]}}]
    })
}

pub fn amazon_vpc_cni_configmap(created: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "amazon-vpc-cni", "namespace": "kube-system", "creationTimestamp": created,
            "labels": {"app.kubernetes.io/instance": "aws-vpc-cni", "app.kubernetes.io/name": "aws-node", "k8s-app": "aws-node"}},
        "data": {"enable-network-policy-controller": "false", "enable-windows-ipam": "false", "enable-windows-prefix-delegation": "false"}
    })
}
