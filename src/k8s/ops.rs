//! Kubernetes operations with kubectl's semantics and a bound on every wait:
//! rollouts of Deployments and DaemonSets, cordon, and drain (skip DaemonSet,
//! mirror and finished pods; emptyDir and unmanaged pods only with consent;
//! evict through `policy/v1`; 429 means a PDB said not now, so pause and
//! retry; 404 means gone; wait until each pod is gone or replaced).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client};
use serde_json::json;
use tokio::time::Instant;

use super::snapshot::{PodSummary, pod_summary, selects};
use super::wait::{self, WaitError};
use super::{KubeError, list_all, with_retry};
use crate::error_class::ErrorClass;

/// A Kubernetes operation that could not finish: a failed call, a wait
/// that ran out, or a PodDisruptionBudget that said no.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OpsError {
    pub class: ErrorClass,
    pub message: String,
    /// What to do about it (never the next podnet command).
    pub fix: Option<String>,
}

impl OpsError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        OpsError {
            class,
            message: message.into(),
            fix: None,
        }
    }

    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

impl From<KubeError> for OpsError {
    fn from(e: KubeError) -> Self {
        OpsError {
            class: e.class,
            fix: Some(e.fix()),
            message: e.to_string(),
        }
    }
}

/// Where a Deployment's rollout stands: done when the new generation is
/// observed and every replica is updated and available (as `kubectl rollout
/// status`), otherwise how far it got.
pub fn deployment_rollout(d: Option<&Deployment>) -> Result<(), String> {
    let Some(d) = d else {
        return Err("the Deployment is gone".into());
    };
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let generation = d.metadata.generation.unwrap_or(0);
    let st = d.status.clone().unwrap_or_default();
    let observed = st.observed_generation.unwrap_or(0) >= generation;
    let updated = st.updated_replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    let total = st.replicas.unwrap_or(0);
    if observed && updated >= want && available >= want && total <= want {
        Ok(())
    } else {
        Err(format!("{updated}/{want} updated, {available} available"))
    }
}

/// Where a DaemonSet's rollout stands: done when every scheduled pod is
/// updated and ready.
pub fn daemonset_rollout(d: Option<&DaemonSet>) -> Result<(), String> {
    let Some(d) = d else {
        return Err("the DaemonSet is gone".into());
    };
    let generation = d.metadata.generation.unwrap_or(0);
    let st = d.status.clone().unwrap_or_default();
    let desired = st.desired_number_scheduled;
    let updated = st.updated_number_scheduled.unwrap_or(0);
    if st.observed_generation.unwrap_or(0) >= generation && updated >= desired && st.number_ready >= desired {
        Ok(())
    } else {
        Err(format!("{updated}/{desired} updated, {} ready", st.number_ready))
    }
}

/// Waits for a workload's rollout with [`wait::until`]; one GET first, so a
/// missing object fails at once (404) and a finished rollout returns without
/// a watch.
async fn wait_rollout<K>(
    api: Api<K>,
    name: &str,
    what: &str,
    kubectl: &str,
    timeout: Duration,
    on_wait: &(dyn Fn(String) + Sync),
    check: fn(Option<&K>) -> Result<(), String>,
) -> Result<(), OpsError>
where
    K: Clone + std::fmt::Debug + Send + Sync + serde::de::DeserializeOwned + kube::Resource + 'static,
{
    let now = with_retry(&format!("get {what}"), || api.get(name)).await?;
    if check(Some(&now)).is_ok() {
        return Ok(());
    }
    let report = |p: String| on_wait(format!("{what}: {p}"));
    wait::until(api, name, timeout, &report, check).await.map_err(|e| {
        let class = match e {
            WaitError::TimedOut { .. } => ErrorClass::Timeout,
            WaitError::Watch(_) => ErrorClass::Transient,
        };
        OpsError::new(class, format!("{what} did not finish rolling out: {e}"))
            .with_fix(format!("check `kubectl rollout status {kubectl}`"))
    })
}

/// Waits for a Deployment's rollout (see [`deployment_rollout`]).
pub async fn wait_deployment_rollout(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
    on_wait: &(dyn Fn(String) + Sync),
) -> Result<(), OpsError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let what = format!("Deployment {namespace}/{name}");
    let kubectl = format!("-n {namespace} deploy/{name}");
    wait_rollout(api, name, &what, &kubectl, timeout, on_wait, deployment_rollout).await
}

/// Waits for a DaemonSet's rollout (see [`daemonset_rollout`]).
pub async fn wait_daemonset_rollout(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
    on_wait: &(dyn Fn(String) + Sync),
) -> Result<(), OpsError> {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    let what = format!("DaemonSet {namespace}/{name}");
    let kubectl = format!("-n {namespace} ds/{name}");
    wait_rollout(api, name, &what, &kubectl, timeout, on_wait, daemonset_rollout).await
}

/// Marks a node unschedulable (idempotent).
pub async fn cordon(client: &Client, node: &str) -> Result<(), KubeError> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = Patch::Strategic(json!({ "spec": { "unschedulable": true } }));
    let pp = PatchParams::default();
    with_retry(&format!("cordon node {node}"), || api.patch(node, &pp, &patch)).await?;
    Ok(())
}

pub async fn uncordon(client: &Client, node: &str) -> Result<(), KubeError> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = Patch::Strategic(json!({ "spec": { "unschedulable": null } }));
    let pp = PatchParams::default();
    with_retry(&format!("uncordon node {node}"), || api.patch(node, &pp, &patch)).await?;
    Ok(())
}

/// What may be evicted from a node.
#[derive(Debug, Clone, Copy)]
pub struct DrainPolicy {
    pub evict_emptydir: bool,
    pub evict_unmanaged: bool,
    /// Delete pods a PDB keeps blocking once the timeout passes.
    pub bypass_pdbs_after_timeout: bool,
    pub timeout: Duration,
    pub poll: Duration,
}

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DrainReport {
    pub evicted: Vec<String>,
    pub skipped_daemonset: usize,
    pub deleted_after_timeout: Vec<String>,
}

/// Pods on `node` that a drain must move, or the reasons it may not.
pub fn drain_candidates(pods: &[PodSummary], policy: &DrainPolicy) -> (Vec<PodSummary>, Vec<String>, usize) {
    let mut move_ = Vec::new();
    let mut refusals = Vec::new();
    let mut daemonsets = 0;
    for p in pods {
        if p.is_mirror || p.is_finished() {
            continue;
        }
        if p.is_daemonset() {
            daemonsets += 1;
            continue;
        }
        if p.owner_kind.is_none() && !policy.evict_unmanaged {
            refusals.push(format!(
                "{} has no controller and would be gone for good (set replacement.evict_unmanaged = true to allow)",
                p.key()
            ));
            continue;
        }
        if p.has_emptydir && !policy.evict_emptydir {
            refusals.push(format!(
                "{} uses emptyDir, whose data would be lost (set replacement.evict_emptydir = true to allow)",
                p.key()
            ));
            continue;
        }
        move_.push(p.clone());
    }
    (move_, refusals, daemonsets)
}

/// The pods on a node, now.
pub async fn pods_on(client: &Client, node: &str) -> Result<Vec<PodSummary>, KubeError> {
    let api: Api<Pod> = Api::all(client.clone());
    let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
    Ok(list_all(&api, &lp, &format!("pods on {node}"))
        .await?
        .iter()
        .map(pod_summary)
        .collect())
}

/// The PDBs that select a pod, by name, for messages.
async fn blocking_pdbs(client: &Client, p: &PodSummary) -> Vec<String> {
    let api: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> = Api::namespaced(client.clone(), &p.namespace);
    let Ok(list) = list_all(&api, &ListParams::default(), "PodDisruptionBudgets").await else {
        return vec![];
    };
    list.iter()
        .filter(|b| {
            let selector = b.spec.as_ref().and_then(|s| s.selector.as_ref());
            selects(selector, &p.labels)
        })
        .map(|b| {
            let allowed = b.status.as_ref().map(|s| s.disruptions_allowed).unwrap_or(0);
            format!(
                "{}/{} (allows {allowed} disruption(s))",
                p.namespace,
                b.metadata.name.clone().unwrap_or_default()
            )
        })
        .collect()
}

/// Drains a cordoned node with kubectl's semantics.
pub async fn drain(
    client: &Client,
    node: &str,
    policy: &DrainPolicy,
    on_wait: &(dyn Fn(String) + Sync),
) -> Result<DrainReport, OpsError> {
    let deadline = Instant::now() + policy.timeout;
    let pods = pods_on(client, node).await?;
    let (to_move, refusals, daemonsets) = drain_candidates(&pods, policy);
    if !refusals.is_empty() {
        return Err(OpsError::new(
            ErrorClass::Blocked,
            format!("cannot drain {node}: {}", refusals.join("; ")),
        )
        .with_fix("change the replacement policy in the plan file, or move these pods yourself"));
    }
    let mut report = DrainReport {
        skipped_daemonset: daemonsets,
        ..Default::default()
    };
    // uid per pod, so a pod recreated under the same name (StatefulSet) counts as moved.
    let mut pending: BTreeMap<String, PodSummary> = to_move.into_iter().map(|p| (p.key(), p)).collect();
    let mut evicted: BTreeMap<String, String> = BTreeMap::new();
    while !pending.is_empty() || !evicted.is_empty() {
        let blocked = evict_pending(client, &mut pending, &mut evicted, &mut report).await?;
        forget_gone(client, &mut evicted).await?;
        if pending.is_empty() && evicted.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            if policy.bypass_pdbs_after_timeout && !pending.is_empty() {
                delete_pending(client, &mut pending, &mut report).await?;
                continue;
            }
            return Err(timeout_error(client, node, policy, &pending, &evicted, &blocked).await);
        }
        on_wait(format!(
            "draining {node}: {} to evict{}, {} terminating",
            pending.len(),
            if blocked.is_empty() {
                String::new()
            } else {
                format!(" ({} held by PDBs)", blocked.len())
            },
            evicted.len()
        ));
        tokio::time::sleep(policy.poll).await;
    }
    Ok(report)
}

/// One round of evictions; returns the pods a PDB (429) held back.
async fn evict_pending(
    client: &Client,
    pending: &mut BTreeMap<String, PodSummary>,
    evicted: &mut BTreeMap<String, String>,
    report: &mut DrainReport,
) -> Result<Vec<String>, OpsError> {
    let mut blocked: Vec<String> = Vec::new();
    for (key, p) in pending.clone() {
        let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace);
        match api.evict(&p.name, &EvictParams::default()).await {
            Ok(_) => {
                evicted.insert(key.clone(), p.uid.clone());
                report.evicted.push(key.clone());
                pending.remove(&key);
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                pending.remove(&key);
            }
            Err(kube::Error::Api(s)) if s.code == 429 => blocked.push(key.clone()),
            Err(kube::Error::Api(s)) if s.code == 500 && s.message.contains("more than one") => {
                return Err(
                    OpsError::new(ErrorClass::Blocked, format!("cannot evict {key}: {}", s.message))
                        .with_fix("a pod may be covered by one PodDisruptionBudget only; fix the overlapping PDBs"),
                );
            }
            Err(e) => return Err(KubeError::from_kube(format!("evict {key}"), e).into()),
        }
    }
    Ok(blocked)
}

/// Evicted pods: gone, or replaced by a pod of another uid.
async fn forget_gone(client: &Client, evicted: &mut BTreeMap<String, String>) -> Result<(), OpsError> {
    for (key, uid) in evicted.clone() {
        let (ns, name) = key.split_once('/').unwrap_or(("", &key));
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        match with_retry(&format!("get pod {key}"), || api.get_opt(name)).await? {
            None => {
                evicted.remove(&key);
            }
            Some(p) if p.metadata.uid.as_deref() != Some(uid.as_str()) => {
                evicted.remove(&key);
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Deletes the pods still pending (`pdb_bypass = "after-timeout"`).
async fn delete_pending(
    client: &Client,
    pending: &mut BTreeMap<String, PodSummary>,
    report: &mut DrainReport,
) -> Result<(), OpsError> {
    for (key, p) in pending.iter() {
        let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace);
        // This pod, not a replacement that took its name since (a
        // StatefulSet's): the UID is a precondition.
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(p.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match with_retry(&format!("delete pod {key}"), || api.delete(&p.name, &dp)).await {
            Ok(_) => {}
            // Gone already (an earlier attempt whose answer was lost), or
            // replaced by a pod of the same name (409 on the UID): done.
            Err(e) if e.is_not_found() || e.status == Some(409) => {}
            Err(e) => return Err(e.into()),
        }
        report.deleted_after_timeout.push(key.clone());
    }
    pending.clear();
    Ok(())
}

/// The drain ran out of time: which pods it waits on, and the PDBs that hold them.
async fn timeout_error(
    client: &Client,
    node: &str,
    policy: &DrainPolicy,
    pending: &BTreeMap<String, PodSummary>,
    evicted: &BTreeMap<String, String>,
    blocked: &[String],
) -> OpsError {
    let mut why = Vec::new();
    for key in blocked {
        if let Some(p) = pending.get(key) {
            let pdbs = blocking_pdbs(client, p).await;
            why.push(format!(
                "{key} (blocked by {})",
                if pdbs.is_empty() {
                    "the API server (429)".into()
                } else {
                    pdbs.join(", ")
                }
            ));
        }
    }
    for key in evicted.keys() {
        why.push(format!("{key} (evicted, still terminating)"));
    }
    OpsError::new(
        ErrorClass::Blocked,
        format!("draining {node} did not finish in {}s; waiting on: {}", policy.timeout.as_secs(), why.join(", ")),
    )
    .with_fix("a PodDisruptionBudget allows no disruption right now: scale its workload up or wait; podnet never bypasses a PDB unless replacement.pdb_bypass = \"after-timeout\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, owner: Option<&str>, emptydir: bool) -> PodSummary {
        PodSummary {
            namespace: "default".into(),
            name: name.into(),
            uid: name.into(),
            node: Some("n".into()),
            ip: None,
            host_network: false,
            phase: "Running".into(),
            owner_kind: owner.map(str::to_string),
            owner_name: owner.map(|_| "x".to_string()),
            has_emptydir: emptydir,
            is_mirror: false,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn kubectl_drain_selection() {
        let mut mirror = pod("static", None, false);
        mirror.is_mirror = true;
        let mut done = pod("job", Some("Job"), false);
        done.phase = "Succeeded".into();
        let pods = vec![
            pod("web", Some("ReplicaSet"), false),
            pod("ds", Some("DaemonSet"), false),
            mirror,
            done,
            pod("bare", None, false),
            pod("cache", Some("ReplicaSet"), true),
        ];
        let strict = DrainPolicy {
            evict_emptydir: false,
            evict_unmanaged: false,
            bypass_pdbs_after_timeout: false,
            timeout: Duration::from_secs(1),
            poll: Duration::from_millis(10),
        };
        let (m, refusals, ds) = drain_candidates(&pods, &strict);
        assert_eq!(m.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["web"]);
        assert_eq!(ds, 1);
        assert_eq!(refusals.len(), 2);
        let lax = DrainPolicy {
            evict_emptydir: true,
            evict_unmanaged: true,
            ..strict
        };
        let (m, refusals, _) = drain_candidates(&pods, &lax);
        assert_eq!(m.len(), 3);
        assert!(refusals.is_empty());
    }
}
