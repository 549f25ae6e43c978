//! Karpenter as its Helm chart installs it
//! (<https://karpenter.sh/docs/getting-started/getting-started-with-karpenter/>):
//! the controller's pod spec and Helm labels, the NodePool, the
//! EC2NodeClass, and NodeClaims with the EC2NodeClass hash that drift is
//! measured against (<https://karpenter.sh/docs/concepts/disruption/#drift>).

use serde_json::{Value, json};

use crate::instance_types;
use crate::scenario::{NodeInfo, Pool, Scenario, World};

use super::nodes::{capacity_mem_mib, nodeclaim_uid};

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

pub fn nodepool(k: &Pool<'_>, nodes: u32, cpu: u32, mem_mib_total: u64, created: &str) -> Value {
    let cond = |t: &str| json!({"type": t, "status": "True", "reason": t, "message": "", "lastTransitionTime": created, "observedGeneration": 1});
    json!({
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
            "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "0s", "budgets": [{"nodes": k.budget}]}
        },
        "status": {
            "conditions": [cond("ValidationSucceeded"), cond("NodeClassReady"), cond("NodeRegistrationHealthy"), cond("Ready")],
            "resources": {"cpu": cpu.to_string(), "memory": format!("{}Ki", mem_mib_total * 1024), "nodes": nodes.to_string(),
                "pods": "0", "ephemeral-storage": "0", "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
        }
    })
}

/// An EC2NodeClass named `name`, with `kubelet.maxPods` when given.
pub fn ec2nodeclass(s: &Scenario, w: &World, name: &str, max_pods: Option<u32>, created: &str) -> Value {
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
    if let Some(mp) = max_pods {
        spec["kubelet"] = json!({"maxPods": mp});
    }
    let hash = crate::workloads::template_hash(&spec);
    json!({
        "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass",
        "metadata": {"name": name, "creationTimestamp": created, "finalizers": ["karpenter.k8s.aws/termination"],
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
    })
}

/// What a NodeClaim records of its EC2NodeClass (and the EC2NodeClass of
/// itself): a hash of the spec, so a changed spec shows as drift.
pub fn nodeclass_hash(nodeclass: &Value) -> String {
    crate::workloads::template_hash(nodeclass.get("spec").unwrap_or(&Value::Null))
}

pub fn nodeclaim(
    s: &Scenario,
    k: &Pool<'_>,
    n: &NodeInfo,
    nodepool_uid: &str,
    nodeclass_hash: &str,
    max_pods: u32,
    created: &str,
) -> Option<Value> {
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
            "imageID": s.zones.first().map(|_| crate::scenario::ec2::AMI_ID).unwrap_or_default(),
            "capacity": {"cpu": t.vcpus.to_string(), "memory": format!("{}Ki", cap_mem * 1024), "pods": max_pods.to_string(), "ephemeral-storage": "20Gi"},
            "allocatable": {"cpu": format!("{alloc_cpu}m"), "memory": format!("{}Ki", alloc_mem * 1024), "pods": max_pods.to_string(), "ephemeral-storage": "17Gi"},
            "conditions": [cond("Launched"), cond("Registered"), cond("Initialized"), cond("Ready"), cond("Consolidatable")],
            "lastPodEventTime": created,
        }
    }))
}
