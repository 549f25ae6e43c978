//! What runs on each node: the kubelet starting pods, aws-node starting
//! the VPC CNI, and nodes turning Ready once it runs. The CNI's address
//! bookkeeping (ENIs, warm pool, ENIConfig resolution) is ipamd's, in
//! `ipamd.rs`.
//!
//! - A node's CNI mode is fixed when aws-node first starts on it, from the
//!   aws-node DaemonSet's env at that moment; an add-on update later does
//!   not switch existing nodes, as in reality.
//! - aws-node restarted with custom networking off takes the eniConfig label
//!   off its node (ipamd's `nodeInit`); the node keeps its mode.
//! - With custom networking, a node with no ENIConfig to match has aws-node
//!   crash-loop and never becomes Ready (CNI ≥ 1.13).
//! - A pod that gets no address stays `ContainerCreating` with a
//!   `FailedCreatePodSandBox` event.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde_json::{Value, json};

use super::events::Source;
use super::ipamd::{Cni, ENI_CONFIG_LABEL, NodeNet, apply_growth, aws_node_env, plan_growth, resolve_eni_config};
use super::launch::ensure_subnet;
use super::{Ctx, edit, is_host_network, label, node_ready, pod_active, s};
use crate::ipam::WarmConfig;
use crate::kube::Stored;
use crate::kube::derived::controller_of;
use crate::kube::resources::{ENICONFIG, NODE, POD};
use crate::workloads::{Owner, Placement, pod_from_template};

/// Start (or retry) aws-node on a node: fix its mode and find its ENIConfig.
async fn start_cni(ctx: &Ctx, node: &Value) {
    let name = s(node, "/metadata/name").to_string();
    let (state, custom) = match ctx.nets().get(&name) {
        Some(n) => (n.cni.clone(), n.custom_networking),
        None => return,
    };
    let env = aws_node_env(ctx);
    let custom = match state {
        Cni::Running => return,
        Cni::NotStarted => env
            .get("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG")
            .is_some_and(|v| v == "true"),
        Cni::Failing(_) => custom,
    };
    let warm = WarmConfig::from_env(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut outcome = Ok((None, None, vec![]));
    if custom {
        let cfg = resolve_eni_config(node, &env);
        outcome = match ctx.store.get(ENICONFIG, "", &cfg) {
            Err(_) => Err(format!(
                "failed to get ENIConfig {cfg}: eniconfigs.crd.k8s.amazonaws.com \"{cfg}\" not found"
            )),
            Ok(obj) => {
                let subnet = s(&obj.value, "/spec/subnet").to_string();
                let sgs: Vec<String> = obj
                    .value
                    .pointer("/spec/securityGroups")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                match ensure_subnet(ctx, &subnet).await {
                    Ok(()) => Ok((Some(cfg), Some(subnet), sgs)),
                    Err(e) => Err(format!("ENIConfig {cfg}: {e}")),
                }
            }
        };
    }
    let mut nets = ctx.nets();
    let Some(net) = nets.get_mut(&name) else { return };
    net.custom_networking = custom;
    net.warm = warm;
    match outcome {
        Ok((cfg, subnet, sgs)) => {
            net.cni = Cni::Running;
            if let Some(sn) = subnet {
                net.pod_subnet = sn;
            }
            net.pod_security_groups = sgs;
            net.eni_config = cfg.clone();
            drop(nets);
            if let Some(cfg) = cfg {
                let _ = edit(&ctx.store, NODE, "", &name, |n| {
                    n["metadata"]["labels"][ENI_CONFIG_LABEL] = json!(cfg);
                });
            }
        }
        Err(why) => {
            if net.cni != Cni::Failing(why.clone()) {
                net.restarts += 1;
            }
            net.cni = Cni::Failing(why);
        }
    }
}

/// The status of a running pod on a node.
fn running_status(pod: &Value, node: &str, node_ip: Ipv4Addr, pod_ip: Option<Ipv4Addr>) -> Value {
    let owner = controller_of(pod)
        .map(|(kind, name, uid)| Owner {
            api_version: String::new(),
            kind,
            name,
            uid,
        })
        .unwrap_or(Owner {
            api_version: String::new(),
            kind: String::new(),
            name: String::new(),
            uid: String::new(),
        });
    let now = crate::kube::ops::now_rfc3339();
    let built = pod_from_template(
        &json!({"metadata": pod.get("metadata").cloned().unwrap_or(json!({})), "spec": pod.get("spec").cloned().unwrap_or(json!({}))}),
        &owner,
        s(pod, "/metadata/name"),
        s(pod, "/metadata/namespace"),
        &[],
        &Placement {
            node,
            node_ip,
            pod_ip,
            created: &now,
        },
    );
    built.get("status").cloned().unwrap_or(json!({}))
}

fn waiting_status(pod: &Value, node_ip: Ipv4Addr, reason: &str, phase: &str, restarts: u32) -> Value {
    let now = crate::kube::ops::now_rfc3339();
    let containers: Vec<Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            json!({"name": s(c, "/name"), "image": s(c, "/image"), "imageID": "", "ready": false, "started": false,
                   "restartCount": restarts, "state": {"waiting": {"reason": reason}}})
        })
        .collect();
    let cond = |t: &str, st: &str| json!({"type": t, "status": st, "lastProbeTime": null, "lastTransitionTime": now});
    json!({
        "phase": phase,
        "conditions": [cond("PodReadyToStartContainers", "False"), cond("Initialized", "True"), cond("Ready", "False"),
                       cond("ContainersReady", "False"), cond("PodScheduled", "True")],
        "hostIP": node_ip.to_string(),
        "hostIPs": [{"ip": node_ip.to_string()}],
        "startTime": pod.pointer("/status/startTime").cloned().unwrap_or(json!(now)),
        "qosClass": pod.pointer("/status/qosClass").cloned().unwrap_or(json!("BestEffort")),
        "containerStatuses": containers,
    })
}

/// What the per-pod pass needs of a node's network state (a copy of the
/// few fields, not of its address maps).
struct NodeView {
    cni: Cni,
    node_ip: Ipv4Addr,
    restarts: u32,
}

impl NodeView {
    fn of(n: &NodeNet) -> NodeView {
        NodeView {
            cni: n.cni.clone(),
            node_ip: n.node_ip,
            restarts: n.restarts,
        }
    }
}

fn key(pod: &Value) -> String {
    format!("{}/{}", s(pod, "/metadata/namespace"), s(pod, "/metadata/name"))
}

/// Start pods, give them addresses, bring nodes to Ready.
pub async fn reconcile(ctx: &Ctx) {
    let nodes: BTreeMap<String, Arc<Stored>> = ctx.list(NODE).into_iter().map(|n| (n.name().to_string(), n)).collect();
    let pods = ctx.list(POD);

    release_gone(ctx, &pods);
    start_aws_node(ctx, &nodes, &pods).await;
    drop_labels_turned_off(ctx, &nodes, &pods);
    let need_ip = start_pods(ctx, &nodes, &pods);
    for (node, waiting) in need_ip {
        assign_addresses(ctx, &node, waiting).await;
    }
    mark_ready(ctx, &nodes);
}

/// Addresses of pods that are gone (or moved) go back to the warm pool.
fn release_gone(ctx: &Ctx, pods: &[Arc<Stored>]) {
    let live: BTreeMap<String, &str> = pods
        .iter()
        .filter(|p| pod_active(&p.value))
        .map(|p| (key(&p.value), s(&p.value, "/spec/nodeName")))
        .collect();
    let mut nets = ctx.nets();
    for (node, net) in nets.iter_mut() {
        net.assigned
            .retain(|k, _| live.get(k).is_some_and(|n| *n == node.as_str()));
    }
}

/// aws-node first: it decides the node's mode.
async fn start_aws_node(ctx: &Ctx, nodes: &BTreeMap<String, Arc<Stored>>, pods: &[Arc<Stored>]) {
    let aws_node_on: BTreeSet<&str> = pods
        .iter()
        .filter(|p| label(&p.value, "k8s-app") == Some("aws-node") && pod_active(&p.value))
        .map(|p| s(&p.value, "/spec/nodeName"))
        .collect();
    for (name, node) in nodes {
        let state = ctx.nets().get(name).map(|n| n.cni.clone());
        if aws_node_on.contains(name.as_str()) && matches!(state, Some(Cni::NotStarted | Cni::Failing(_))) {
            start_cni(ctx, &node.value).await;
        }
    }
}

/// ipamd takes the eniConfig label off its node when it starts with custom
/// networking off (amazon-vpc-cni-k8s `pkg/ipamd/ipamd.go`, `nodeInit`:
/// "Remove the custom networking label"): an aws-node pod that a rollout
/// restarted with `AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG` no longer true
/// unlabels its node, though the node keeps its ENIs in the ENIConfig's
/// subnet (and its pods their addresses) until it is replaced.
fn drop_labels_turned_off(ctx: &Ctx, nodes: &BTreeMap<String, Arc<Stored>>, pods: &[Arc<Stored>]) {
    for p in pods
        .iter()
        .filter(|p| label(&p.value, "k8s-app") == Some("aws-node") && pod_active(&p.value))
    {
        let custom = p
            .value
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| s(c, "/name") == "aws-node"))
            .and_then(|c| c.get("env"))
            .and_then(Value::as_array)
            .map(|env| crate::scenario::objects::env_pairs(env))
            .and_then(|env| env.get("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG").cloned())
            .is_some_and(|v| v == "true");
        let node = s(&p.value, "/spec/nodeName");
        let labelled = nodes
            .get(node)
            .is_some_and(|n| label(&n.value, ENI_CONFIG_LABEL).is_some());
        if custom || !labelled {
            continue;
        }
        let _ = edit(&ctx.store, NODE, "", node, |n| {
            if let Some(labels) = n.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
                labels.remove(ENI_CONFIG_LABEL);
            }
        });
    }
}

/// The per-pod pass: aws-node pods follow their CNI, host-network pods
/// start at once; the pending pods that need an address are returned by
/// node.
fn start_pods(
    ctx: &Ctx,
    nodes: &BTreeMap<String, Arc<Stored>>,
    pods: &[Arc<Stored>],
) -> BTreeMap<String, Vec<Arc<Stored>>> {
    let mut need_ip: BTreeMap<String, Vec<Arc<Stored>>> = BTreeMap::new();
    for p in pods {
        let v = &p.value;
        let node_name = s(v, "/spec/nodeName");
        if node_name.is_empty() || !pod_active(v) {
            continue;
        }
        let Some(node) = nodes.get(node_name) else { continue };
        let Some(net) = ctx.nets().get(node_name).map(NodeView::of) else {
            continue;
        };
        let phase = s(v, "/status/phase");
        let is_aws_node = label(v, "k8s-app") == Some("aws-node");
        if is_aws_node {
            if let Some(status) = aws_node_status(ctx, v, node_name, phase, &net) {
                let _ = edit(&ctx.store, POD, p.namespace(), p.name(), |x| x["status"] = status);
            }
            continue;
        }
        if phase != "Pending" {
            continue;
        }
        if is_host_network(v) {
            let st = running_status(v, node_name, net.node_ip, None);
            let _ = edit(&ctx.store, POD, p.namespace(), p.name(), |x| x["status"] = st);
            continue;
        }
        if net.cni != Cni::Running || !node_ready(&node.value) {
            continue;
        }
        need_ip.entry(node_name.to_string()).or_default().push(p.clone());
    }
    need_ip
}

/// The status an aws-node pod should now have, if it differs from what it
/// has.
fn aws_node_status(ctx: &Ctx, v: &Value, node_name: &str, phase: &str, net: &NodeView) -> Option<Value> {
    // Running and ready only while the CNI runs.
    let status = match &net.cni {
        Cni::Running => {
            if phase == "Running" && crate::kube::derived::pod_ready(v) {
                return None;
            }
            running_status(v, node_name, net.node_ip, None)
        }
        Cni::Failing(why) => {
            let looping = s(v, "/status/containerStatuses/0/state/waiting/reason") == "CrashLoopBackOff"
                && v.pointer("/status/containerStatuses/0/restartCount")
                    .and_then(Value::as_u64)
                    == Some(u64::from(net.restarts));
            if looping {
                return None;
            }
            let st = waiting_status(v, net.node_ip, "CrashLoopBackOff", "Running", net.restarts);
            ctx.events.emit(
                ctx,
                v,
                true,
                "BackOff",
                &format!("Back-off restarting failed container aws-node in pod {}: {why}", key(v)),
                Source::Kubelet(node_name),
            );
            st
        }
        Cni::NotStarted => return None,
    };
    Some(status)
}

/// Grow the node's addresses for its waiting pods, then start each pod
/// that got one.
async fn assign_addresses(ctx: &Ctx, node: &str, waiting: Vec<Arc<Stored>>) {
    let plan = {
        let mut nets = ctx.nets();
        let Some(net) = nets.get_mut(node) else { return };
        plan_growth(ctx, net, waiting.len() as u32)
    };
    if !plan.is_empty() {
        apply_growth(ctx, node, plan).await;
    }
    for p in waiting {
        let got = {
            let mut nets = ctx.nets();
            let Some(net) = nets.get_mut(node) else { break };
            let ip = net.free().first().copied();
            if let Some(ip) = ip {
                net.assigned.insert(key(&p.value), ip);
            }
            ip.map(|ip| (ip, net.node_ip))
        };
        match got {
            Some((ip, node_ip)) => {
                let st = running_status(&p.value, node, node_ip, Some(ip));
                let written = edit(&ctx.store, POD, p.namespace(), p.name(), |x| x["status"] = st);
                if written.is_err() {
                    ctx.nets().get_mut(node).map(|n| n.assigned.remove(&key(&p.value)));
                }
            }
            None => sandbox_failed(ctx, node, &p),
        }
    }
}

/// A pod the CNI had no address for: `ContainerCreating`, with the event
/// the kubelet reports for the failed sandbox.
fn sandbox_failed(ctx: &Ctx, node: &str, p: &Stored) {
    let node_ip = ctx.nets().get(node).map(|n| n.node_ip).unwrap_or(Ipv4Addr::UNSPECIFIED);
    if s(&p.value, "/status/containerStatuses/0/state/waiting/reason") != "ContainerCreating" {
        let st = waiting_status(&p.value, node_ip, "ContainerCreating", "Pending", 0);
        let _ = edit(&ctx.store, POD, p.namespace(), p.name(), |x| x["status"] = st);
    }
    let sandbox = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    ctx.events.emit(
        ctx,
        &p.value,
        true,
        "FailedCreatePodSandBox",
        &format!(
            "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox \"{sandbox}\": plugin type=\"aws-cni\" name=\"aws-cni\" failed (add): add cmd: failed to assign an IP address to container"
        ),
        Source::Kubelet(node),
    );
}

/// Nodes become Ready once aws-node runs on them.
fn mark_ready(ctx: &Ctx, nodes: &BTreeMap<String, Arc<Stored>>) {
    for (name, node) in nodes {
        let Some(net) = ctx.nets().get(name).map(NodeView::of) else {
            continue;
        };
        let ready = node_ready(&node.value);
        let cni_ok = net.cni == Cni::Running;
        if ready == cni_ok {
            continue;
        }
        let now = crate::kube::ops::now_rfc3339();
        let why = match &net.cni {
            Cni::Failing(w) => format!(
                "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized ({w})"
            ),
            _ => "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized".to_string(),
        };
        let karpenter = label(&node.value, "karpenter.sh/nodepool").is_some();
        let _ = edit(&ctx.store, NODE, "", name, |n| {
            if let Some(cs) = n.pointer_mut("/status/conditions").and_then(Value::as_array_mut) {
                for c in cs.iter_mut().filter(|c| c["type"] == "Ready") {
                    if cni_ok {
                        c["status"] = json!("True");
                        c["reason"] = json!("KubeletReady");
                        c["message"] = json!("kubelet is posting ready status");
                    } else {
                        c["status"] = json!("False");
                        c["reason"] = json!("KubeletNotReady");
                        c["message"] = json!(why);
                    }
                    c["lastTransitionTime"] = json!(now);
                }
            }
            if cni_ok {
                if let Some(t) = n.pointer_mut("/spec/taints").and_then(Value::as_array_mut) {
                    t.retain(|t| t["key"] != "node.kubernetes.io/not-ready");
                }
                if karpenter {
                    n["metadata"]["labels"]["karpenter.sh/initialized"] = json!("true");
                }
            }
        });
    }
}
