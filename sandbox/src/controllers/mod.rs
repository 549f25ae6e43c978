//! The cluster's behaviours: small controllers over the store that make the
//! sandbox react the way an EKS cluster does. Each owns one concern —
//! [`workloads`] (Deployments, ReplicaSets, DaemonSets, pod GC),
//! [`scheduler`] (binding pending pods), [`kubelet`] (nodes coming up, pods
//! starting) with [`ipamd`] (the VPC CNI's IP assignment), [`karpenter`]
//! (provisioning and NodeClaim termination) and [`nodegroups`] (managed
//! node group rolling updates) — and they run one after another on a single
//! task every [`TICK`], so they never race each other; HTTP clients may
//! still write in between, so every write checks the resourceVersion it
//! read and a conflict simply waits for the next tick.
//!
//! Durations inside (instance boot, eviction timeouts) are simulated and go
//! through the scaled [`Clock`].

pub mod aggregation;
pub mod autoscaling;
pub mod events;
pub mod ipamd;
pub mod karpenter;
pub mod kubelet;
pub mod launch;
pub mod nodegroups;
pub mod scheduler;
pub mod workloads;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use crate::clock::Clock;
use crate::eks::Eks;
use crate::ipam::Ipam;
use crate::kube::resources::Subresource;
use crate::kube::{ApiError, ListOptions, Store, Stored, WriteOptions};
use crate::scenario::{Scenario, World};

pub use ipamd::NodeNet;

/// How often the controllers run (real time).
pub const TICK: Duration = Duration::from_millis(100);

/// Simulated durations of the cluster's behaviours.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// From RunInstances to the Node registering.
    pub boot: Duration,
    /// How long a managed node group rollout keeps retrying an eviction
    /// before failing with `PodEvictionFailure` (EKS: 15 minutes).
    pub eviction_timeout: Duration,
    /// Between two identical warning events for the same object.
    pub event_interval: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            boot: Duration::from_secs(90),
            eviction_timeout: Duration::from_secs(15 * 60),
            event_interval: Duration::from_secs(30),
        }
    }
}

/// What every controller shares.
pub struct Ctx {
    pub store: Arc<Store>,
    pub eks: Arc<Eks>,
    /// moto, directly (the sandbox's own calls are not audited).
    pub ec2: Option<aws_sdk_ec2::Client>,
    pub ipam: Arc<Mutex<Ipam>>,
    pub clock: Clock,
    pub scenario: Scenario,
    pub world: World,
    pub behaviour: Behaviour,
    /// Per-node network state (the ipamd model), by node name.
    pub nets: Mutex<BTreeMap<String, NodeNet>>,
    pub events: events::Recorder,
    pub launches: launch::Launches,
    pub rollouts: Mutex<nodegroups::Rollouts>,
    /// Karpenter's back-off after a failed launch (simulated time).
    pub launch_retry_at: Mutex<Duration>,
    /// The Auto Scaling groups of self-managed node groups.
    pub autoscaling: Arc<crate::autoscaling::Groups>,
}

impl Ctx {
    // Everything a controller shares, handed over once by the sandbox.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        eks: Arc<Eks>,
        ec2: Option<aws_sdk_ec2::Client>,
        ipam: Arc<Mutex<Ipam>>,
        clock: Clock,
        scenario: Scenario,
        world: World,
        behaviour: Behaviour,
        autoscaling: Arc<crate::autoscaling::Groups>,
    ) -> Ctx {
        let nets = ipamd::seeded_nets(&world);
        Ctx {
            store,
            eks,
            ec2,
            ipam,
            clock,
            scenario,
            world,
            behaviour,
            nets: Mutex::new(nets),
            events: events::Recorder::default(),
            launches: launch::Launches::default(),
            rollouts: Mutex::new(nodegroups::Rollouts::default()),
            launch_retry_at: Mutex::new(Duration::ZERO),
            autoscaling,
        }
    }

    pub fn ipam(&self) -> MutexGuard<'_, Ipam> {
        self.ipam.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn nets(&self) -> MutexGuard<'_, BTreeMap<String, NodeNet>> {
        self.nets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every object of a kind.
    pub fn list(&self, rt: usize) -> Vec<Arc<Stored>> {
        self.store
            .list(rt, None, &ListOptions::default())
            .map(|r| r.items)
            .unwrap_or_default()
    }

    /// Simulated time now.
    pub fn now(&self) -> Duration {
        self.clock.elapsed()
    }
}

/// Run every controller once, in dependency order.
pub async fn tick(ctx: &Ctx) {
    workloads::reconcile(ctx);
    launch::register_booted(ctx);
    kubelet::reconcile(ctx).await;
    aggregation::reconcile(ctx);
    scheduler::reconcile(ctx);
    karpenter::reconcile(ctx).await;
    nodegroups::reconcile(ctx).await;
    autoscaling::reconcile(ctx).await;
}

/// Run the controllers until `stop` turns true.
pub async fn run(ctx: Arc<Ctx>, mut stop: tokio::sync::watch::Receiver<bool>) {
    ctx.eks
        .auto_complete_nodegroup_updates
        .store(false, std::sync::atomic::Ordering::SeqCst);
    loop {
        tick(&ctx).await;
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Rewrite an object: `f` edits a copy of what is stored; spec/metadata and
/// status are written separately (as the apiserver's subresources demand),
/// each only if it changed, with the read resourceVersion as precondition.
pub fn edit(
    store: &Store,
    rt: usize,
    ns: &str,
    name: &str,
    f: impl FnOnce(&mut Value),
) -> Result<Option<Arc<Stored>>, ApiError> {
    let cur = store.get(rt, ns, name)?;
    let mut next = cur.value.clone();
    f(&mut next);
    if next == cur.value {
        return Ok(None);
    }
    let mut main = next.clone();
    let mut last = None;
    let status_changed = next.get("status") != cur.value.get("status");
    let without_status = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("status");
        }
        v
    };
    if without_status(&next) != without_status(&cur.value) {
        main["metadata"]["resourceVersion"] = Value::String(cur.rv.to_string());
        let s = store.update(rt, ns, name, main, None, &WriteOptions::internal())?;
        last = Some(s);
    }
    if status_changed {
        let rv = last.as_ref().map(|s| s.rv).unwrap_or(cur.rv);
        next["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        // The object may be gone already (a finalizer removed by the first
        // write): nothing left to update.
        match store.update(rt, ns, name, next, Some(Subresource::Status), &WriteOptions::internal()) {
            Ok(s) => last = Some(s),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(last)
}

/// A string field of a JSON object, or "".
pub fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

pub fn is_deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some()
}

pub fn label<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.pointer("/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
}

/// Does the object's `status.conditions` hold `kind` with status True?
pub fn condition_true(v: &Value, kind: &str) -> bool {
    v.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| s(c, "/type") == kind && s(c, "/status") == "True"))
}

/// Is the node Ready?
pub fn node_ready(node: &Value) -> bool {
    condition_true(node, "Ready")
}

/// Add a `NoSchedule` taint to a node object unless it has one by that key.
pub fn add_taint(node: &mut Value, key: &str) {
    let mut taints = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !taints.iter().any(|t| s(t, "/key") == key) {
        taints.push(serde_json::json!({"key": key, "effect": "NoSchedule"}));
        node["spec"]["taints"] = Value::Array(taints);
    }
}

/// Does the pod belong to a DaemonSet?
pub fn is_daemon_pod(pod: &Value) -> bool {
    crate::kube::derived::controller_of(pod).is_some_and(|(kind, _, _)| kind == "DaemonSet")
}

pub fn is_host_network(pod: &Value) -> bool {
    pod.pointer("/spec/hostNetwork")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// A pod that still holds its place (not finished, not being deleted).
pub fn pod_active(pod: &Value) -> bool {
    !is_deleting(pod) && !matches!(s(pod, "/status/phase"), "Succeeded" | "Failed")
}

/// Evict a pod through the eviction subresource (PDBs checked).
pub fn evict(store: &Store, ns: &str, name: &str) -> Result<Value, ApiError> {
    let body = serde_json::json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": ns},
    });
    store.evict(ns, name, &body, false)
}
