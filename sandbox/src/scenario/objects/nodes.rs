//! Nodes as EKS managed node groups and Karpenter register them: the
//! well-known labels (<https://kubernetes.io/docs/reference/labels-annotations-taints/>,
//! <https://karpenter.sh/docs/reference/instance-types/>), capacity and
//! allocatable as the EKS AMI's kubelet reserves them
//! (<https://docs.aws.amazon.com/eks/latest/userguide/choosing-instance-type.html>),
//! the kubelet's conditions, and the node's Lease.

use serde_json::{Value, json};

use crate::instance_types::{self, InstanceType};
use crate::scenario::{NodeInfo, Scenario};

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
    /// An instance of a self-managed group's Auto Scaling group.
    SelfManaged { group: String },
}

/// Max pods the node's kubelet runs with: the EKS default, or Karpenter's
/// view (`kubelet.maxPods`, else reserved ENIs).
pub fn node_max_pods(s: &Scenario, t: &InstanceType, origin: &NodeOrigin) -> u32 {
    match (origin, &s.karpenter) {
        (NodeOrigin::Karpenter { nodeclass, .. }, Some(k)) => k
            .class_max_pods(nodeclass)
            .unwrap_or_else(|| t.max_pods(k.reserved_enis.unwrap_or(0), false)),
        // "Windows nodes support one elastic network interface per node …
        // equal to the number of IP addresses available per elastic
        // network interface … minus one" (EKS user guide, Windows support).
        _ if is_windows(s, origin) => t.ipv4_per_eni.saturating_sub(1),
        (NodeOrigin::Managed { nodegroup, .. }, _) => s
            .custom_ami_user_data(nodegroup)
            .and_then(crate::user_data::max_pods)
            .unwrap_or_else(|| t.default_max_pods()),
        (NodeOrigin::SelfManaged { group }, _) => s
            .self_managed_groups
            .iter()
            .find(|g| &g.name == group)
            .and_then(|g| crate::user_data::max_pods(&g.user_data(&PLACEHOLDER_JOIN)))
            .unwrap_or_else(|| t.default_max_pods()),
        _ => t.default_max_pods(),
    }
}

/// Enough of a join for reading max pods out of a self-managed group's
/// default user data (which does not depend on the endpoint).
const PLACEHOLDER_JOIN: crate::scenario::self_managed::Join<'static> = crate::scenario::self_managed::Join {
    cluster: "cluster",
    endpoint: "https://endpoint",
    ca: "",
    service_cidr: "172.20.0.0/16",
};

/// The taint the sandbox's Windows node groups carry. The scenario's
/// workloads and DaemonSets are Linux pods without an OS node selector; a
/// real mixed cluster keeps them off Windows nodes the same way (a taint,
/// or `kubernetes.io/os: linux` selectors — EKS user guide, "Deploy Windows
/// nodes on EKS clusters").
pub static WINDOWS_TAINT: std::sync::LazyLock<Value> =
    std::sync::LazyLock::new(|| json!({"key": "os", "value": "windows", "effect": "NoSchedule"}));

/// A node of a Windows managed node group.
pub fn is_windows(s: &Scenario, origin: &NodeOrigin) -> bool {
    matches!(origin, NodeOrigin::Managed { nodegroup, .. } if s.is_windows_group(nodegroup))
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
    let labels = node_labels(s, n, t, arch, origin);
    let mut owner_refs = Vec::new();
    if let NodeOrigin::Karpenter { nodeclaim, .. } = origin {
        owner_refs.push(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "name": nodeclaim,
            "uid": nodeclaim_uid(nodeclaim), "blockOwnerDeletion": true
        }));
    }
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
    let mut spec = json!({"providerID": format!("aws:///{}/{}", n.zone, n.instance_id)});
    if is_windows(s, origin) {
        spec["taints"] = json!([WINDOWS_TAINT.clone()]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta,
        "spec": spec,
        "status": node_status(n, max_pods, created, (vcpus, arch), (cap_mem, alloc_cpu, alloc_mem)),
    })
}

/// The well-known labels the kubelet and the cloud provider set, plus those
/// EKS managed node groups or Karpenter add for their nodes.
fn node_labels(s: &Scenario, n: &NodeInfo, t: Option<&InstanceType>, arch: &str, origin: &NodeOrigin) -> Value {
    let os = if is_windows(s, origin) { "windows" } else { "linux" };
    let mut labels = json!({
        "beta.kubernetes.io/arch": arch,
        "beta.kubernetes.io/instance-type": n.instance_type,
        "beta.kubernetes.io/os": os,
        "failure-domain.beta.kubernetes.io/region": s.region,
        "failure-domain.beta.kubernetes.io/zone": n.zone,
        "k8s.io/cloud-provider-aws": "b69a9d9e0d4a3b2c1f0e8d7c6b5a4f3e",
        "kubernetes.io/arch": arch,
        "kubernetes.io/hostname": n.name,
        "kubernetes.io/os": os,
        "node.kubernetes.io/instance-type": n.instance_type,
        "topology.k8s.aws/zone-id": crate::scenario::zone_id(&n.zone),
        "topology.kubernetes.io/region": s.region,
        "topology.kubernetes.io/zone": n.zone,
    });
    match origin {
        NodeOrigin::Managed {
            nodegroup,
            launch_template,
        } => {
            labels["eks.amazonaws.com/capacityType"] = json!("ON_DEMAND");
            labels["eks.amazonaws.com/nodegroup"] = json!(nodegroup);
            labels["eks.amazonaws.com/nodegroup-image"] = json!(crate::scenario::ec2::AMI_ID);
            if let Some((id, v)) = launch_template {
                labels["eks.amazonaws.com/sourceLaunchTemplateId"] = json!(id);
                labels["eks.amazonaws.com/sourceLaunchTemplateVersion"] = json!(v);
            }
        }
        NodeOrigin::SelfManaged { group } => {
            // eksctl's label on its unmanaged groups' nodes; EKS adds none.
            labels["alpha.eksctl.io/nodegroup-name"] = json!(group);
            labels["alpha.eksctl.io/cluster-name"] = json!(s.cluster);
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
    labels
}

/// Addresses, capacity, allocatable, the kubelet's conditions and nodeInfo.
fn node_status(
    n: &NodeInfo,
    max_pods: u32,
    created: &str,
    (vcpus, arch): (u32, &str),
    (cap_mem, alloc_cpu, alloc_mem): (u64, u32, u64),
) -> Value {
    let cond = |t: &str, st: &str, reason: &str, msg: &str| {
        json!({"type": t, "status": st, "reason": reason, "message": msg,
               "lastHeartbeatTime": ago(0, 0), "lastTransitionTime": created})
    };
    json!({
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

pub fn node_lease(node: &str, created: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease", "creationTimestamp": created},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": format!("{}.000000Z", ago(0, 0).trim_end_matches('Z'))}
    })
}
