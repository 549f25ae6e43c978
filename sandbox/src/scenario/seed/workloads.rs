//! The seed's pods before they exist: every workload the cluster runs
//! (aws-node, kube-proxy, CoreDNS, Karpenter's controller, the scenario's
//! own Deployments) with its demand, each node's room for pods, and the
//! placement deciding which node every replica goes to.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::planned::Planned;
use crate::instance_types;
use crate::scenario::ec2::SeedError;
use crate::scenario::objects::{self as obj, NodeOrigin, ago};
use crate::scenario::placement::{self, Demand, Slot};
use crate::scenario::{KarpenterSpec, Scenario, WorkloadSpec, World};

/// One kind of pod the placement knows about.
pub(super) struct Workload {
    pub(super) ns: String,
    /// The Deployment's (or DaemonSet's) object, before creation.
    pub(super) object: Value,
    pub(super) pdb: Option<Value>,
    pub(super) demand: Demand,
    pub(super) daemonset: bool,
}

/// A pod to create: which workload, which replica.
#[derive(Clone)]
pub(super) struct PodSlot {
    pub(super) workload: usize,
    pub(super) ordinal: u32,
}

/// Each node's room for pods, in the order of `planned`.
pub(super) fn slots(s: &Scenario, planned: &[Planned]) -> Vec<Slot> {
    let mut slots: Vec<Slot> = planned
        .iter()
        .map(|p| {
            let t = instance_types::lookup(&p.info.instance_type);
            let (cpu, mem) = t
                .map(|t| {
                    let (c, _) = t.allocatable(p.max_pods);
                    (
                        c,
                        obj::capacity_mem_mib(t).saturating_sub(11 * u64::from(p.max_pods) + 255 + 100),
                    )
                })
                .unwrap_or((1930, 3300));
            // Pods beyond what the ENIs hold could not start: cap by IPs too.
            let ip_pods = t.map(|t| t.pod_ips(t.enis)).unwrap_or(0) + 2;
            Slot::new(
                p.max_pods.min(ip_pods),
                cpu,
                mem,
                matches!(p.origin, NodeOrigin::Managed { .. }),
                0,
            )
        })
        .collect();
    let zone_index: BTreeMap<&str, usize> = s.zones.iter().enumerate().map(|(i, z)| (z.name.as_str(), i)).collect();
    for (slot, p) in slots.iter_mut().zip(planned) {
        slot.zone = zone_index.get(p.info.zone.as_str()).copied().unwrap_or(0);
        slot.windows = obj::is_windows(s, &p.origin);
    }
    slots
}

/// Every workload, system ones first; `any_managed` keeps the system
/// Deployments on managed nodes when there are some.
pub(super) fn workloads(s: &Scenario, world: &World, any_managed: bool) -> Vec<Workload> {
    let created_ds = ago(30, 0);
    let mut workloads: Vec<Workload> = Vec::new();
    let ds_demand = |name: &str, v: &Value| {
        let (cpu, mem) = obj::requests(v.pointer("/spec/template/spec").unwrap_or(&Value::Null));
        Demand {
            name: name.to_string(),
            replicas: 0,
            cpu_m: cpu,
            mem_mib: mem,
            managed_only: false,
            one_per_node: false,
        }
    };
    let aws_node = obj::aws_node(s, world, &created_ds);
    workloads.push(Workload {
        ns: "kube-system".into(),
        demand: ds_demand("aws-node", &aws_node),
        object: aws_node,
        pdb: None,
        daemonset: true,
    });
    let kube_proxy = obj::kube_proxy(s, &created_ds);
    workloads.push(Workload {
        ns: "kube-system".into(),
        demand: ds_demand("kube-proxy", &kube_proxy),
        object: kube_proxy,
        pdb: None,
        daemonset: true,
    });
    workloads.push(coredns(s, any_managed, &created_ds));
    if let Some(k) = &s.karpenter {
        workloads.push(karpenter(s, k, any_managed));
    }
    for w in &s.workloads {
        workloads.push(scenario_workload(w));
    }
    workloads
}

/// CoreDNS as the EKS add-on deploys it, with its PDB.
fn coredns(s: &Scenario, any_managed: bool, created_ds: &str) -> Workload {
    let spec = obj::coredns_pod_spec(s);
    let (cpu, mem) = obj::requests(&spec);
    let sel = json!({"k8s-app": "kube-dns"});
    let labels =
        json!({"eks.amazonaws.com/component": "coredns", "k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"});
    let mut dep = obj::deployment(
        "coredns",
        "kube-system",
        2,
        labels.clone(),
        sel.clone(),
        spec,
        json!({}),
        created_ds,
    );
    dep["spec"]["strategy"]["rollingUpdate"] = json!({"maxSurge": "25%", "maxUnavailable": 1});
    dep["spec"]["template"]["metadata"]["labels"]["eks.amazonaws.com/component"] = json!("coredns");
    let pdb = obj::pdb(
        "coredns",
        "kube-system",
        json!({"eks.amazonaws.com/component": "coredns", "k8s-app": "kube-dns"}),
        None,
        Some(json!(1)),
        json!({"eks.amazonaws.com/component": "coredns", "k8s-app": "kube-dns"}),
        created_ds,
    );
    Workload {
        ns: "kube-system".into(),
        object: dep,
        pdb: Some(pdb),
        demand: Demand {
            name: "coredns".into(),
            replicas: 2,
            cpu_m: cpu,
            mem_mib: mem,
            managed_only: any_managed,
            one_per_node: false,
        },
        daemonset: false,
    }
}

/// Karpenter's controller as its Helm chart deploys it, with its PDB.
fn karpenter(s: &Scenario, k: &KarpenterSpec, any_managed: bool) -> Workload {
    let spec = obj::karpenter_pod_spec(s);
    let (cpu, mem) = obj::requests(&spec);
    let sel = json!({"app.kubernetes.io/instance": "karpenter", "app.kubernetes.io/name": "karpenter"});
    let created = ago(25, 0);
    let mut dep = obj::deployment(
        "karpenter",
        "kube-system",
        k.controller_replicas,
        obj::helm_labels(&k.version),
        sel.clone(),
        spec,
        obj::helm_annotations(),
        &created,
    );
    // The chart's strategy: one replica at a time, since the pods'
    // hostname anti-affinity leaves no room to surge.
    dep["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}});
    let mut pdb = obj::pdb(
        "karpenter",
        "kube-system",
        sel,
        None,
        Some(json!(1)),
        obj::helm_labels(&k.version),
        &created,
    );
    pdb["metadata"]["annotations"] = obj::helm_annotations();
    Workload {
        ns: "kube-system".into(),
        object: dep,
        pdb: Some(pdb),
        demand: Demand {
            name: "karpenter".into(),
            replicas: k.controller_replicas,
            cpu_m: cpu,
            mem_mib: mem,
            managed_only: any_managed,
            one_per_node: true,
        },
        daemonset: false,
    }
}

/// One of the scenario's own Deployments, with its PDB if it has one.
fn scenario_workload(w: &WorkloadSpec) -> Workload {
    let spec = obj::workload_pod_spec(&w.image, &w.cpu, &w.memory);
    let mut spec = spec;
    spec["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"] = json!({"app": w.name});
    let (cpu, mem) = obj::requests(&spec);
    let sel = json!({"app": w.name});
    let created = ago(2, 0);
    let dep = obj::deployment(
        &w.name,
        &w.namespace,
        w.replicas,
        json!({"app": w.name}),
        sel.clone(),
        spec,
        json!({}),
        &created,
    );
    let pdb = w.pdb.as_ref().map(|p| {
        obj::pdb(
            &w.name,
            &w.namespace,
            sel.clone(),
            p.min_available.clone(),
            p.max_unavailable.clone(),
            json!({"app": w.name}),
            &created,
        )
    });
    Workload {
        ns: w.namespace.clone(),
        object: dep,
        pdb,
        demand: Demand {
            name: w.name.clone(),
            replicas: w.replicas,
            cpu_m: cpu,
            mem_mib: mem,
            managed_only: false,
            one_per_node: false,
        },
        daemonset: false,
    }
}

/// Which pods go on which node (`nodes` of them): DaemonSets everywhere,
/// Deployments by the placement.
pub(super) fn place_pods(
    slots: &mut [Slot],
    workloads: &[Workload],
    nodes: usize,
) -> Result<Vec<Vec<PodSlot>>, SeedError> {
    let mut per_node: Vec<Vec<PodSlot>> = vec![Vec::new(); nodes];
    let mut cursor = 0;
    for (wi, w) in workloads.iter().enumerate() {
        let nodes = if w.daemonset {
            placement::place_everywhere(slots, &w.demand)
        } else {
            placement::place(slots, &w.demand, &mut cursor)?
        };
        for (ordinal, n) in nodes.into_iter().enumerate() {
            per_node[n].push(PodSlot {
                workload: wi,
                ordinal: ordinal as u32,
            });
        }
    }
    Ok(per_node)
}
