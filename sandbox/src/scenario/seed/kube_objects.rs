//! The seed's Kubernetes objects, created inside one bulk load: namespaces,
//! CRDs, Services, Nodes and their Leases, the workloads with their
//! ReplicaSets and PDBs, every pod on the node and address the seed chose,
//! and Karpenter's NodePool, EC2NodeClass and NodeClaims.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::planned::Planned;
use super::workloads::{PodSlot, Workload};
use super::{create, create_pod};
use crate::instance_types;
use crate::kube::Store;
use crate::kube::resources as r;
use crate::scenario::ec2::SeedError;
use crate::scenario::objects::{self as obj, NodeOrigin, ago};
use crate::scenario::{Scenario, World};
use crate::workloads::{Owner, Placement, pod_from_template, template_hash};

/// What pods of a workload are made from: their owner, pod template and
/// template hash.
type PodSource = (Owner, Value, String);

pub(super) fn objects(
    store: &Store,
    s: &Scenario,
    world: &World,
    planned: &[Planned],
    workloads: &[Workload],
    per_node: &[Vec<PodSlot>],
    pod_ips: &[Vec<Ipv4Addr>],
) -> Result<(), SeedError> {
    let created = ago(30, 0);
    for ns in obj::namespaces(&created) {
        create(store, r::NAMESPACE, ns)?;
    }
    create(store, r::CRD, crate::kube::crds::eniconfig())?;
    if s.karpenter.is_some() {
        for c in [
            crate::kube::crds::nodepool(),
            crate::kube::crds::nodeclaim(),
            crate::kube::crds::ec2nodeclass(),
        ] {
            create(store, r::CRD, c)?;
        }
    }
    for (_, svc) in obj::services(s, &created) {
        create(store, r::SERVICE, svc)?;
    }
    create(store, r::CONFIGMAP, obj::amazon_vpc_cni_configmap(&created))?;
    for p in planned {
        create(store, r::NODE, obj::node(s, &p.info, &p.origin, p.max_pods, &p.created))?;
        create(store, r::LEASE, obj::node_lease(&p.info.name, &p.created))?;
    }
    // Workload objects, then their pods node by node.
    let owners = create_workloads(store, workloads)?;
    create_pods(store, planned, workloads, per_node, pod_ips, &owners)?;
    if s.karpenter.is_some() {
        karpenter_objects(store, s, world, planned)?;
    }
    for (rt, v) in crate::scenario::control_plane::objects(s, &created, |n| obj::service_ip(s, n)) {
        create(store, rt, v)?;
    }
    Ok(())
}

/// The DaemonSets, Deployments (with their ReplicaSet) and PDBs; for each
/// workload, what its pods are made from.
fn create_workloads(store: &Store, workloads: &[Workload]) -> Result<Vec<PodSource>, SeedError> {
    let mut owners: Vec<PodSource> = Vec::new();
    for w in workloads {
        let top = create(
            store,
            if w.daemonset { r::DAEMONSET } else { r::DEPLOYMENT },
            w.object.clone(),
        )?;
        if let Some(pdb) = &w.pdb {
            create(store, r::PDB, pdb.clone())?;
        }
        if w.daemonset {
            let template = top.value.pointer("/spec/template").cloned().unwrap_or(json!({}));
            owners.push((Owner::of(&top.value), template.clone(), template_hash(&template)));
        } else {
            let template = top.value.pointer("/spec/template").cloned().unwrap_or(json!({}));
            let hash = template_hash(&template);
            let created = top
                .value
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let rs = create(store, r::REPLICASET, obj::replicaset(&top.value, &hash, &created))?;
            let rs_template = rs.value.pointer("/spec/template").cloned().unwrap_or(json!({}));
            owners.push((Owner::of(&rs.value), rs_template, hash));
        }
    }
    Ok(owners)
}

/// Every pod, node by node, running with the address the seed chose.
fn create_pods(
    store: &Store,
    planned: &[Planned],
    workloads: &[Workload],
    per_node: &[Vec<PodSlot>],
    pod_ips: &[Vec<Ipv4Addr>],
    owners: &[PodSource],
) -> Result<(), SeedError> {
    for (ni, (p, pods)) in planned.iter().zip(per_node).enumerate() {
        let mut ips = pod_ips[ni].iter();
        for ps in pods {
            let w = &workloads[ps.workload];
            let (owner, template, hash) = &owners[ps.workload];
            let host = template
                .pointer("/spec/hostNetwork")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let pod_ip = if host { None } else { ips.next().copied() };
            let created = if w.daemonset {
                p.created.clone()
            } else {
                ago(1, (ps.ordinal % 20) as i64)
            };
            let extra: Vec<(&str, String)> = if w.daemonset {
                vec![
                    ("controller-revision-hash", hash.clone()),
                    ("pod-template-generation", "1".to_string()),
                ]
            } else {
                vec![]
            };
            let seed = if w.daemonset {
                format!("{}/{}", owner.name, p.info.name)
            } else {
                format!("{}/{}", owner.name, ps.ordinal)
            };
            create_pod(store, &owner.name, &seed, |name| {
                pod_from_template(
                    template,
                    owner,
                    name,
                    &w.ns,
                    &extra,
                    &Placement {
                        node: &p.info.name,
                        node_ip: p.info.ip,
                        pod_ip,
                        created: &created,
                    },
                )
            })?;
        }
    }
    Ok(())
}

/// Karpenter's NodePools (each `status.resources` summing its seeded
/// nodes), their EC2NodeClasses and one NodeClaim per Karpenter node.
fn karpenter_objects(store: &Store, s: &Scenario, world: &World, planned: &[Planned]) -> Result<(), SeedError> {
    let Some(k) = &s.karpenter else { return Ok(()) };
    let mut hashes = std::collections::BTreeMap::new();
    for (name, max_pods) in k.node_classes() {
        let nc = obj::ec2nodeclass(s, world, name, max_pods, &ago(25, 0));
        hashes.insert(name, obj::nodeclass_hash(&create(store, r::EC2NODECLASS, nc)?.value));
    }
    for pool in k.pools() {
        let mine: Vec<&Planned> = planned
            .iter()
            .filter(|p| matches!(&p.origin, NodeOrigin::Karpenter { nodepool, .. } if nodepool == pool.nodepool))
            .collect();
        let types = || {
            mine.iter()
                .filter_map(|p| instance_types::lookup(&p.info.instance_type))
        };
        let cpu: u32 = types().map(|t| t.vcpus).sum();
        let mem: u64 = types().map(obj::capacity_mem_mib).sum();
        let np = create(
            store,
            r::NODEPOOL,
            obj::nodepool(&pool, mine.len() as u32, cpu, mem, &ago(25, 0)),
        )?;
        let hash = hashes.get(pool.nodeclass).cloned().unwrap_or_default();
        for p in mine {
            if let Some(claim) = obj::nodeclaim(s, &pool, &p.info, np.uid(), &hash, p.max_pods, &p.created) {
                create(store, r::NODECLAIM, claim)?;
            }
        }
    }
    Ok(())
}
