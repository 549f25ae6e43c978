//! The Kubernetes objects of a seeded cluster, shaped like the real ones:
//! nodes as EKS and Karpenter register them, the EKS add-on workloads
//! (aws-node, kube-proxy, CoreDNS), the Helm-installed Karpenter controller
//! and its NodePool, EC2NodeClass and NodeClaims, and the scenario's
//! workloads with their ReplicaSets and PDBs.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{NodeInfo, Scenario, World, cpu_millis, mem_mib};
use crate::eks::{aws_node_env, ecr_registry, vpc_cni_default_env};
use crate::instance_types::{self, InstanceType};

/// A timestamp `days` (and `hours`) before now, RFC 3339.
pub fn ago(days: i64, hours: i64) -> String {
    let now = jiff::Timestamp::now().as_second();
    let t = now - days * 86_400 - hours * 3_600;
    jiff::Timestamp::from_second(t)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub const KUBELET_VERSION: &str = "v1.31.4-eks-aeac579";
pub const OS_IMAGE: &str = "Amazon Linux 2023.6.20250123";
pub const KERNEL: &str = "6.1.124-134.200.amzn2023.x86_64";
pub const RELEASE_VERSION: &str = "1.31.4-20250123";

/// How a node came to be.
#[derive(Debug, Clone)]
pub enum NodeOrigin {
    Managed {
        nodegroup: String,
        launch_template: Option<(String, String)>,
    },
    Karpenter {
        nodepool: String,
        nodeclass: String,
        nodeclaim: String,
    },
}

/// Max pods the node's kubelet runs with: the EKS default, or Karpenter's
/// view (`kubelet.maxPods`, else reserved ENIs).
pub fn node_max_pods(s: &Scenario, t: &InstanceType, origin: &NodeOrigin) -> u32 {
    match (origin, &s.karpenter) {
        (NodeOrigin::Karpenter { .. }, Some(k)) => k
            .max_pods
            .unwrap_or_else(|| t.max_pods(k.reserved_enis.unwrap_or(0), false)),
        _ => t.default_max_pods(),
    }
}

fn quantity_ki(mib: u64) -> String {
    format!("{}Ki", mib * 1024)
}

/// Memory the kubelet reports as capacity (a little under the instance's).
pub fn capacity_mem_mib(t: &InstanceType) -> u64 {
    t.memory_mib * 94 / 100
}

pub fn node(s: &Scenario, n: &NodeInfo, origin: &NodeOrigin, max_pods: u32, created: &str) -> Value {
    let t = instance_types::lookup(&n.instance_type);
    let (vcpus, arch) = t
        .map(|t| (t.vcpus, instance_types::k8s_arch(t)))
        .unwrap_or((2, "amd64"));
    let cap_mem = t.map(capacity_mem_mib).unwrap_or(4096);
    let (alloc_cpu, alloc_mem) = t
        .map(|t| {
            let (c, _) = t.allocatable(max_pods);
            (c, cap_mem.saturating_sub(11 * u64::from(max_pods) + 255 + 100))
        })
        .unwrap_or((1930, 3300));
    let mut labels = json!({
        "beta.kubernetes.io/arch": arch,
        "beta.kubernetes.io/instance-type": n.instance_type,
        "beta.kubernetes.io/os": "linux",
        "failure-domain.beta.kubernetes.io/region": s.region,
        "failure-domain.beta.kubernetes.io/zone": n.zone,
        "k8s.io/cloud-provider-aws": "b69a9d9e0d4a3b2c1f0e8d7c6b5a4f3e",
        "kubernetes.io/arch": arch,
        "kubernetes.io/hostname": n.name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": n.instance_type,
        "topology.k8s.aws/zone-id": super::zone_id(&n.zone),
        "topology.kubernetes.io/region": s.region,
        "topology.kubernetes.io/zone": n.zone,
    });
    let mut owner_refs = Vec::new();
    match origin {
        NodeOrigin::Managed {
            nodegroup,
            launch_template,
        } => {
            labels["eks.amazonaws.com/capacityType"] = json!("ON_DEMAND");
            labels["eks.amazonaws.com/nodegroup"] = json!(nodegroup);
            labels["eks.amazonaws.com/nodegroup-image"] = json!(super::ec2::AMI_ID);
            if let Some((id, v)) = launch_template {
                labels["eks.amazonaws.com/sourceLaunchTemplateId"] = json!(id);
                labels["eks.amazonaws.com/sourceLaunchTemplateVersion"] = json!(v);
            }
        }
        NodeOrigin::Karpenter {
            nodepool, nodeclass, ..
        } => {
            labels["karpenter.sh/nodepool"] = json!(nodepool);
            labels["karpenter.sh/capacity-type"] = json!("on-demand");
            labels["karpenter.k8s.aws/ec2nodeclass"] = json!(nodeclass);
            labels["karpenter.sh/initialized"] = json!("true");
            labels["karpenter.sh/registered"] = json!("true");
            if let Some(t) = t {
                let (family, size) = t.name.split_once('.').unwrap_or((&t.name, ""));
                labels["karpenter.k8s.aws/instance-category"] = json!(&family[..1]);
                labels["karpenter.k8s.aws/instance-family"] = json!(family);
                labels["karpenter.k8s.aws/instance-size"] = json!(size);
                labels["karpenter.k8s.aws/instance-generation"] =
                    json!(family.chars().filter(char::is_ascii_digit).collect::<String>());
                labels["karpenter.k8s.aws/instance-cpu"] = json!(t.vcpus.to_string());
                labels["karpenter.k8s.aws/instance-memory"] = json!(t.memory_mib.to_string());
                labels["karpenter.k8s.aws/instance-hypervisor"] = json!(t.hypervisor);
            }
        }
    }
    if let NodeOrigin::Karpenter { nodeclaim, .. } = origin {
        owner_refs.push(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "name": nodeclaim,
            "uid": nodeclaim_uid(nodeclaim), "blockOwnerDeletion": true
        }));
    }
    let cond = |t: &str, st: &str, reason: &str, msg: &str| {
        json!({"type": t, "status": st, "reason": reason, "message": msg,
               "lastHeartbeatTime": ago(0, 0), "lastTransitionTime": created})
    };
    let mut meta = json!({
        "name": n.name,
        "labels": labels,
        "annotations": {
            "alpha.kubernetes.io/provided-node-ip": n.ip.to_string(),
            "node.alpha.kubernetes.io/ttl": "0",
            "volumes.kubernetes.io/controller-managed-attach-detach": "true",
        },
        "creationTimestamp": created,
    });
    if !owner_refs.is_empty() {
        meta["ownerReferences"] = json!(owner_refs);
        // Karpenter terminates the instance before the Node may go.
        meta["finalizers"] = json!(["karpenter.sh/termination"]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta,
        "spec": {"providerID": format!("aws:///{}/{}", n.zone, n.instance_id)},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": n.ip.to_string()},
                {"type": "InternalDNS", "address": n.name},
                {"type": "Hostname", "address": n.name},
            ],
            "capacity": {
                "cpu": vcpus.to_string(),
                "ephemeral-storage": "20959212Ki",
                "hugepages-1Gi": "0",
                "hugepages-2Mi": "0",
                "memory": quantity_ki(cap_mem),
                "pods": max_pods.to_string(),
            },
            "allocatable": {
                "cpu": format!("{alloc_cpu}m"),
                "ephemeral-storage": "18242267924",
                "hugepages-1Gi": "0",
                "hugepages-2Mi": "0",
                "memory": quantity_ki(alloc_mem),
                "pods": max_pods.to_string(),
            },
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": arch,
                "bootID": uuid::Uuid::new_v4().to_string(),
                "containerRuntimeVersion": "containerd://1.7.25",
                "kernelVersion": KERNEL,
                "kubeProxyVersion": KUBELET_VERSION,
                "kubeletVersion": KUBELET_VERSION,
                "machineID": uuid::Uuid::new_v4().simple().to_string(),
                "operatingSystem": "linux",
                "osImage": OS_IMAGE,
                "systemUUID": format!("ec2{}", &uuid::Uuid::new_v4().simple().to_string()[3..]),
            },
        }
    })
}

/// Stable uid of a seeded NodeClaim (nodes reference it before it exists).
pub fn nodeclaim_uid(name: &str) -> String {
    let h = crate::workloads::template_hash(&json!(["nodeclaim", name]));
    let hex: String = h
        .bytes()
        .chain(name.bytes())
        .map(|b| format!("{:x}", b % 16))
        .chain(std::iter::repeat_n("0".to_string(), 32))
        .take(32)
        .collect();
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

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

pub fn services(s: &Scenario, created: &str) -> Vec<(String, Value)> {
    let base = s
        .service_cidr
        .split('/')
        .next()
        .and_then(|b| b.parse::<std::net::Ipv4Addr>().ok())
        .map(u32::from)
        .unwrap_or(0xAC14_0000);
    let ip = |n: u32| std::net::Ipv4Addr::from(base + n).to_string();
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

/// A Deployment with its pod template and the PDB-friendly labels.
#[allow(clippy::too_many_arguments)]
pub fn deployment(
    name: &str,
    ns: &str,
    replicas: u32,
    labels: Value,
    selector: Value,
    pod_spec: Value,
    annotations: Value,
    created: &str,
) -> Value {
    let mut ann = annotations;
    ann["deployment.kubernetes.io/revision"] = json!("1");
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": ann, "creationTimestamp": created},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "template": {"metadata": {"labels": selector}, "spec": pod_spec}
        }
    })
}

/// The ReplicaSet a Deployment's controller made for its template.
pub fn replicaset(dep: &Value, hash: &str, created: &str) -> Value {
    let s = |p: &str| dep.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let name = s("/metadata/name");
    let mut template = dep.pointer("/spec/template").cloned().unwrap_or(json!({}));
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let mut selector = dep.pointer("/spec/selector/matchLabels").cloned().unwrap_or(json!({}));
    selector["pod-template-hash"] = json!(hash);
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{name}-{hash}"),
            "namespace": s("/metadata/namespace"),
            "labels": selector.clone(),
            "annotations": {
                "deployment.kubernetes.io/desired-replicas": dep.pointer("/spec/replicas").cloned().unwrap_or(json!(1)).to_string(),
                "deployment.kubernetes.io/max-replicas": "0",
                "deployment.kubernetes.io/revision": "1",
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                "uid": s("/metadata/uid"), "controller": true, "blockOwnerDeletion": true}],
            "creationTimestamp": created,
        },
        "spec": {
            "replicas": dep.pointer("/spec/replicas").cloned().unwrap_or(json!(1)),
            "selector": {"matchLabels": selector},
            "template": template,
        }
    })
}

pub fn pdb(
    name: &str,
    ns: &str,
    selector: Value,
    min_available: Option<Value>,
    max_unavailable: Option<Value>,
    labels: Value,
    created: &str,
) -> Value {
    let mut spec = json!({"selector": {"matchLabels": selector}});
    if let Some(m) = min_available {
        spec["minAvailable"] = m;
    }
    if let Some(m) = max_unavailable {
        spec["maxUnavailable"] = m;
    }
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "creationTimestamp": created},
        "spec": spec,
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

/// The Karpenter controller as its Helm chart installs it (no RESERVED_ENIS
/// unless the scenario sets it).
pub fn karpenter_pod_spec(s: &Scenario) -> Value {
    let k = s.karpenter.as_ref();
    let version = k.map(|k| k.version.as_str()).unwrap_or("1.1.1");
    let mut env = vec![
        json!({"name": "KUBERNETES_MIN_VERSION", "value": "1.19.0-0"}),
        json!({"name": "KARPENTER_SERVICE", "value": "karpenter"}),
        json!({"name": "WEBHOOK_PORT", "value": "8443"}),
        json!({"name": "WEBHOOK_METRICS_PORT", "value": "8001"}),
        json!({"name": "DISABLE_WEBHOOK", "value": "false"}),
        json!({"name": "LOG_LEVEL", "value": "info"}),
        json!({"name": "METRICS_PORT", "value": "8080"}),
        json!({"name": "HEALTH_PROBE_PORT", "value": "8081"}),
        json!({"name": "SYSTEM_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}}),
        json!({"name": "MEMORY_LIMIT", "valueFrom": {"resourceFieldRef": {"containerName": "controller", "divisor": "0", "resource": "limits.memory"}}}),
        json!({"name": "FEATURE_GATES", "value": "SpotToSpotConsolidation=false,NodeRepair=false"}),
        json!({"name": "BATCH_MAX_DURATION", "value": "10s"}),
        json!({"name": "BATCH_IDLE_DURATION", "value": "1s"}),
        json!({"name": "CLUSTER_NAME", "value": s.cluster}),
        json!({"name": "VM_MEMORY_OVERHEAD_PERCENT", "value": "0.075"}),
        json!({"name": "INTERRUPTION_QUEUE", "value": s.cluster}),
    ];
    if let Some(r) = k.and_then(|k| k.reserved_enis) {
        env.push(json!({"name": "RESERVED_ENIS", "value": r.to_string()}));
    }
    json!({
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "karpenter.sh/nodepool", "operator": "DoesNotExist"}]}]}},
            "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "karpenter", "app.kubernetes.io/name": "karpenter"}}}]}
        },
        "priorityClassName": "system-cluster-critical",
        "serviceAccountName": "karpenter",
        "securityContext": {"fsGroup": 65532},
        "dnsPolicy": "ClusterFirst",
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "karpenter", "app.kubernetes.io/name": "karpenter"}}}],
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
        "containers": [{
            "name": "controller",
            "image": format!("public.ecr.aws/karpenter/controller:{version}"),
            "env": env,
            "ports": [{"containerPort": 8080, "name": "http-metrics", "protocol": "TCP"}, {"containerPort": 8001, "name": "webhook-metrics", "protocol": "TCP"}, {"containerPort": 8443, "name": "https-webhook", "protocol": "TCP"}, {"containerPort": 8081, "name": "http", "protocol": "TCP"}],
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": true, "runAsGroup": 65532, "runAsNonRoot": true, "runAsUser": 65532}
        }]
    })
}

pub fn helm_labels(version: &str) -> Value {
    json!({
        "app.kubernetes.io/instance": "karpenter",
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/name": "karpenter",
        "app.kubernetes.io/version": version,
        "helm.sh/chart": format!("karpenter-{version}"),
    })
}

pub fn helm_annotations() -> Value {
    json!({"meta.helm.sh/release-name": "karpenter", "meta.helm.sh/release-namespace": "kube-system"})
}

pub fn workload_pod_spec(image: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "containers": [{
            "name": "app",
            "image": image,
            "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
            "resources": {"requests": {"cpu": cpu, "memory": memory}},
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
        }],
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app": image.rsplit('/').next().unwrap_or("app").split(':').next().unwrap_or("app")}}}],
    })
}

/// cpu/memory requests of a pod spec (sum over containers).
pub fn requests(pod_spec: &Value) -> (u32, u64) {
    let mut cpu = 0;
    let mut mem = 0;
    for c in pod_spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(q) = c.pointer("/resources/requests/cpu").and_then(Value::as_str) {
            cpu += cpu_millis(q).unwrap_or(0);
        }
        if let Some(q) = c.pointer("/resources/requests/memory").and_then(Value::as_str) {
            mem += mem_mib(q).unwrap_or(0);
        }
    }
    (cpu, mem)
}

pub fn nodepool(s: &Scenario, nodes: u32, cpu: u32, mem_mib_total: u64, created: &str) -> Option<Value> {
    let k = s.karpenter.as_ref()?;
    let cond = |t: &str| json!({"type": t, "status": "True", "reason": t, "message": "", "lastTransitionTime": created, "observedGeneration": 1});
    Some(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": {"name": k.nodepool, "creationTimestamp": created,
            "annotations": {"karpenter.sh/nodepool-hash": "6821555240594823858", "karpenter.sh/nodepool-hash-version": "v3",
                "kubectl.kubernetes.io/last-applied-configuration": ""}},
        "spec": {
            "template": {
                "metadata": {},
                "spec": {
                    "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": k.nodeclass},
                    "requirements": [
                        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": k.instance_types},
                        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}
                    ],
                    "expireAfter": "720h"
                }
            },
            "limits": {"cpu": k.limits_cpu, "memory": k.limits_memory},
            "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "0s", "budgets": [{"nodes": "10%"}]}
        },
        "status": {
            "conditions": [cond("ValidationSucceeded"), cond("NodeClassReady"), cond("NodeRegistrationHealthy"), cond("Ready")],
            "resources": {"cpu": cpu.to_string(), "memory": format!("{}Ki", mem_mib_total * 1024), "nodes": nodes.to_string(),
                "pods": "0", "ephemeral-storage": "0", "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
        }
    }))
}

pub fn ec2nodeclass(s: &Scenario, w: &World, created: &str) -> Option<Value> {
    let k = s.karpenter.as_ref()?;
    let cond = |t: &str| json!({"type": t, "status": "True", "reason": t, "message": "", "lastTransitionTime": created, "observedGeneration": 1});
    let subnets: Vec<Value> = w
        .zones
        .iter()
        .map(|z| json!({"id": z.private_subnet, "zone": z.name, "zoneID": z.zone_id}))
        .collect();
    let mut spec = json!({
        "amiSelectorTerms": [{"alias": "al2023@latest"}],
        "role": format!("KarpenterNodeRole-{}", s.cluster),
        "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": s.cluster}}],
        "securityGroupSelectorTerms": [{"tags": {"karpenter.sh/discovery": s.cluster}}],
        "metadataOptions": {"httpEndpoint": "enabled", "httpProtocolIPv6": "disabled", "httpPutResponseHopLimit": 1, "httpTokens": "required"},
        "tags": {"karpenter.sh/discovery": s.cluster},
    });
    if let Some(mp) = k.max_pods {
        spec["kubelet"] = json!({"maxPods": mp});
    }
    let hash = crate::workloads::template_hash(&spec);
    Some(json!({
        "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass",
        "metadata": {"name": k.nodeclass, "creationTimestamp": created, "finalizers": ["karpenter.k8s.aws/termination"],
            "annotations": {"karpenter.k8s.aws/ec2nodeclass-hash": hash, "karpenter.k8s.aws/ec2nodeclass-hash-version": "v4"}},
        "spec": spec,
        "status": {
            "amis": [{"id": w.ami_id, "name": "amazon-eks-node-al2023-x86_64-standard-1.31-v20250123",
                "requirements": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}],
            "subnets": subnets,
            "securityGroups": [{"id": w.security_groups.get("node").cloned().unwrap_or_default(), "name": format!("{}-node", s.cluster)}],
            "instanceProfile": format!("{}_1234567890123456789", s.cluster),
            "conditions": [cond("AMIsReady"), cond("SubnetsReady"), cond("SecurityGroupsReady"), cond("InstanceProfileReady"), cond("ValidationSucceeded"), cond("Ready")]
        }
    }))
}

/// What a NodeClaim records of its EC2NodeClass (and the EC2NodeClass of
/// itself): a hash of the spec, so a changed spec shows as drift.
pub fn nodeclass_hash(nodeclass: &Value) -> String {
    crate::workloads::template_hash(nodeclass.get("spec").unwrap_or(&Value::Null))
}

pub fn nodeclaim(
    s: &Scenario,
    n: &NodeInfo,
    nodepool_uid: &str,
    nodeclass_hash: &str,
    max_pods: u32,
    created: &str,
) -> Option<Value> {
    let k = s.karpenter.as_ref()?;
    let name = n.nodeclaim.clone()?;
    let t = instance_types::lookup(&n.instance_type)?;
    let cond = |ty: &str| json!({"type": ty, "status": "True", "reason": ty, "message": "", "lastTransitionTime": created, "observedGeneration": 1});
    let cap_mem = capacity_mem_mib(t);
    let (alloc_cpu, _) = t.allocatable(max_pods);
    let alloc_mem = cap_mem.saturating_sub(11 * u64::from(max_pods) + 255 + 100);
    Some(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
        "metadata": {
            "name": name,
            "uid": nodeclaim_uid(&name),
            "creationTimestamp": created,
            "finalizers": ["karpenter.sh/termination"],
            "labels": {
                "karpenter.sh/nodepool": k.nodepool,
                "karpenter.k8s.aws/ec2nodeclass": k.nodeclass,
                "karpenter.sh/capacity-type": "on-demand",
                "node.kubernetes.io/instance-type": n.instance_type,
                "topology.kubernetes.io/zone": n.zone,
                "topology.kubernetes.io/region": s.region,
                "kubernetes.io/arch": instance_types::k8s_arch(t),
                "kubernetes.io/os": "linux",
            },
            "annotations": {
                "karpenter.k8s.aws/ec2nodeclass-hash": nodeclass_hash,
                "karpenter.k8s.aws/ec2nodeclass-hash-version": "v4",
                "karpenter.k8s.aws/tagged": "true",
                "karpenter.sh/nodepool-hash": "6821555240594823858",
                "karpenter.sh/nodepool-hash-version": "v3",
            },
            "ownerReferences": [{"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "name": k.nodepool, "uid": nodepool_uid, "blockOwnerDeletion": true}],
        },
        "spec": {
            "expireAfter": "720h",
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": k.nodeclass},
            "requirements": [
                {"key": "karpenter.sh/nodepool", "operator": "In", "values": [k.nodepool]},
                {"key": "karpenter.k8s.aws/ec2nodeclass", "operator": "In", "values": [k.nodeclass]},
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [n.instance_type]},
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [n.zone]},
            ],
            "resources": {"requests": {"cpu": "1", "pods": "10"}},
        },
        "status": {
            "providerID": format!("aws:///{}/{}", n.zone, n.instance_id),
            "nodeName": n.name,
            "imageID": s.zones.first().map(|_| super::ec2::AMI_ID).unwrap_or_default(),
            "capacity": {"cpu": t.vcpus.to_string(), "memory": format!("{}Ki", cap_mem * 1024), "pods": max_pods.to_string(), "ephemeral-storage": "20Gi"},
            "allocatable": {"cpu": format!("{alloc_cpu}m"), "memory": format!("{}Ki", alloc_mem * 1024), "pods": max_pods.to_string(), "ephemeral-storage": "17Gi"},
            "conditions": [cond("Launched"), cond("Registered"), cond("Initialized"), cond("Ready"), cond("Consolidatable")],
            "lastPodEventTime": created,
        }
    }))
}

pub fn node_lease(node: &str, created: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease", "creationTimestamp": created},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": format!("{}.000000Z", ago(0, 0).trim_end_matches('Z'))}
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
