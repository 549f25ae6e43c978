//! control-plane-reach: the gate before any pod lands on the new CIDR.
//!
//! "It can take a cluster up to five hours for a CIDR block that you
//! associated with a VPC to be recognized"
//! (<https://docs.aws.amazon.com/eks/latest/userguide/network-reqs.html>):
//! nodes use the block at once, the API server reaches it only later. A
//! webhook or an aggregated API whose pods move there before that goes
//! dark — a `failurePolicy: Fail` pod webhook then refuses every new pod,
//! the drain's replacements included. So before the first node is
//! replaced, podnet proves the control plane reaches the block: it launches
//! one probe pod on a pod-subnet address (a temporary, tainted Karpenter
//! NodePool copied from the cluster's, so no other pod lands there) and asks
//! the API server's proxy for it (`GET
//! /api/v1/namespaces/{ns}/pods/{name}:{port}/proxy/`) until it answers;
//! then the probe and its NodePool are removed. The wait is bounded by
//! `[waits] control_plane_reach`; on timeout the probe is removed too and
//! the unit stops, resumable, saying how long AWS documents it may take.

use std::time::Duration;

use async_trait::async_trait;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Env, ids};
use crate::engine::{Action, Change, ErrorClass, Produces, StepCtx, StepError, StepPlan, Unit, UnitCtx};
use crate::k8s::{self, KubeError, list_all, with_retry};

/// The probe pod's and the probe NodePool's name.
pub const PROBE: &str = "podnet-cidr-probe";
/// The probe NodePool's taint (and the label its nodes carry).
pub const TAINT: &str = "podnet.io/cidr-probe";

/// What the gate needs, saved with the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachGateInputs {
    pub cidr: Ipv4Net,
    /// The NodePool whose template (node class, requirements) the probe's
    /// temporary NodePool copies.
    pub node_pool: String,
    pub namespace: String,
    /// An image that serves HTTP on `port` (busybox's httpd by default).
    pub image: String,
    pub port: u16,
    /// What goes dark without the gate (for the plan and the messages).
    pub at_risk: Vec<String>,
}

pub struct ControlPlaneReach {
    pub inputs: ReachGateInputs,
}

/// What the gate saw.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReachOutput {
    pub probe_ip: String,
    /// How long the control plane took to answer, from the probe's start.
    pub waited_secs: u64,
}

fn nodepool_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("karpenter.sh", "v1", "NodePool"))
}

fn nodeclaim_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("karpenter.sh", "v1", "NodeClaim"))
}

fn kube(env: &Env) -> Result<&Client, StepError> {
    env.kube
        .as_ref()
        .ok_or_else(|| StepError::failed("no Kubernetes client"))
}

/// The probe NodePool: the source pool's node template (node class,
/// requirements), with the probe's taint instead of the pool's own (the
/// probe tolerates only its own; nothing else tolerates it), labelled for
/// the probe alone, small limits, emptied when unused.
pub fn probe_nodepool(source: &Value) -> Value {
    let mut spec = source
        .pointer("/spec/template/spec")
        .cloned()
        .unwrap_or_else(|| json!({}));
    spec["taints"] = json!([{"key": TAINT, "value": "true", "effect": "NoSchedule"}]);
    if let Some(m) = spec.as_object_mut() {
        m.remove("startupTaints");
    }
    json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": PROBE, "labels": {"app.kubernetes.io/managed-by": "podnet"}},
        "spec": {
            "template": {"metadata": {"labels": {TAINT: "true"}}, "spec": spec},
            "limits": {"cpu": "8"},
            "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "0s"},
        }
    })
}

/// The probe pod: one file served over HTTP, only on the probe NodePool.
pub fn probe_pod(i: &ReachGateInputs) -> Value {
    let serve = format!(
        "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p {} -h /www",
        i.port
    );
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": PROBE, "namespace": i.namespace,
            "labels": {"app.kubernetes.io/managed-by": "podnet", "app": PROBE}},
        "spec": {
            "nodeSelector": {"karpenter.sh/nodepool": PROBE},
            "tolerations": [{"key": TAINT, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "probe", "image": i.image, "command": ["sh", "-c", serve],
                "ports": [{"containerPort": i.port, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
            "terminationGracePeriodSeconds": 0,
        }
    })
}

impl ControlPlaneReach {
    async fn launch_probe(&self, client: &Client, env: &Env) -> Result<(), StepError> {
        let pools: Api<DynamicObject> = Api::all_with(client.clone(), &nodepool_resource());
        let name = &self.inputs.node_pool;
        let source = with_retry(&format!("get NodePool {name}"), || pools.get_opt(name))
            .await?
            .ok_or_else(|| {
                StepError::new(
                    ErrorClass::NotFound,
                    format!("NodePool {name} is gone: the probe copies it"),
                )
                .hint("re-plan with `podnet plan`, then apply")
            })?;
        let source = serde_json::to_value(&source).unwrap_or_default();
        env.status(self.id(), "launching the probe on a temporary NodePool");
        k8s::apply_owned(&pools, PROBE, &probe_nodepool(&source), &format!("NodePool {PROBE}")).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &self.inputs.namespace);
        let body: Pod = serde_json::from_value(probe_pod(&self.inputs))
            .map_err(|e| StepError::failed(format!("the probe pod does not encode: {e}")))?;
        k8s::apply_owned(&pods, PROBE, &body, &format!("pod {}/{PROBE}", self.inputs.namespace)).await?;
        Ok(())
    }

    /// Waits for the probe's address, which must be in the new block.
    async fn probe_ip(&self, client: &Client, env: &Env) -> Result<String, StepError> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &self.inputs.namespace);
        let report = |m: String| env.status(ids::CONTROL_PLANE_REACH, &m);
        k8s::wait::until(
            pods.clone(),
            PROBE,
            env.waits.replacement_settle,
            &report,
            probe_running,
        )
        .await
        .map_err(|e| {
            StepError::new(ErrorClass::Timeout, format!("the probe pod did not start: {e}")).hint(format!(
                "check `kubectl -n {} describe pod {PROBE}` and the NodePool {PROBE}'s NodeClaim",
                self.inputs.namespace
            ))
        })?;
        let pod = with_retry(&format!("get pod {PROBE}"), || pods.get(PROBE)).await?;
        let ip = pod.status.and_then(|s| s.pod_ip).unwrap_or_default();
        let in_block = ip
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| self.inputs.cidr.contains(&a));
        if !in_block {
            return Err(StepError::failed(format!(
                "the probe pod got {ip}, outside {}: custom networking is not in effect on its node",
                self.inputs.cidr
            ))
            .hint("check the ENIConfigs and the vpc-cni add-on's AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG"));
        }
        Ok(ip)
    }

    /// Asks the API server's proxy for the probe until it answers.
    async fn await_reach(&self, client: &Client, env: &Env, ip: &str, started: Instant) -> Result<(), StepError> {
        let path = format!(
            "/api/v1/namespaces/{}/pods/{PROBE}:{}/proxy/",
            self.inputs.namespace, self.inputs.port
        );
        let bound = env.waits.control_plane_reach;
        // A 401 now and then is a token expiring between signing and use;
        // several in a row are real.
        let mut refused = 0;
        loop {
            let req = http::Request::get(&path)
                .body(Vec::new())
                .map_err(|e| StepError::failed(format!("building the probe request: {e}")))?;
            let why = match client.request_text(req).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if matches!(s.code, 502..=504) => s.message.clone(),
                Err(kube::Error::Api(s)) if (s.code == 401 && refused < 3) || s.code == 429 => {
                    refused += u32::from(s.code == 401);
                    tokio::time::sleep(env.waits.poll.max(Duration::from_secs(1))).await;
                    continue;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    return Err(StepError::new(
                        ErrorClass::NotFound,
                        format!("the probe pod {}/{PROBE} is gone (evicted?)", self.inputs.namespace),
                    )
                    .hint("`podnet resume` starts a new probe"));
                }
                Err(e) if matches!(&e, kube::Error::Api(s) if s.code < 500) => {
                    return Err(KubeError::from_kube(format!("GET {path}"), e).into());
                }
                Err(e) => e.to_string(),
            };
            refused = 0;
            self.probe_still_running(client).await?;
            let waited = started.elapsed();
            if waited >= bound {
                return Err(self.timed_out(ip, bound, &why));
            }
            env.status(
                self.id(),
                &format!(
                    "waiting for the control plane to reach {} ({ip}: {why}); {} of {} — AWS: up to five hours after association",
                    self.inputs.cidr,
                    humantime::format_duration(Duration::from_secs(waited.as_secs())),
                    humantime::format_duration(bound)
                ),
            );
            tokio::time::sleep(env.waits.poll).await;
        }
    }

    /// A probe that stopped running would look unreachable for hours.
    async fn probe_still_running(&self, client: &Client) -> Result<(), StepError> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &self.inputs.namespace);
        let pod = with_retry(&format!("get pod {PROBE}"), || pods.get_opt(PROBE)).await?;
        probe_running(pod.as_ref()).map_err(|state| {
            StepError::failed(format!("the probe stopped: {state}")).hint("`podnet resume` starts a new probe")
        })
    }

    fn timed_out(&self, ip: &str, bound: Duration, why: &str) -> StepError {
        StepError::new(
            ErrorClass::Timeout,
            format!(
                "the control plane still does not reach {} after {} (the probe at {ip}: {why})",
                self.inputs.cidr,
                humantime::format_duration(bound)
            ),
        )
        .hint(
            "EKS documents up to five hours for a newly associated CIDR block to be recognized; no node has been \
             replaced yet — run `podnet resume` later (or raise [waits] control_plane_reach)",
        )
    }

    /// Removes the probe pod, its NodePool and the pool's NodeClaims (what
    /// Karpenter would do after the pool; done here so nothing is left).
    async fn remove_probe(&self, client: &Client) -> Result<(), StepError> {
        let dp = DeleteParams::default().grace_period(0);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &self.inputs.namespace);
        delete_if_present(&pods, PROBE, &dp).await?;
        let pools: Api<DynamicObject> = Api::all_with(client.clone(), &nodepool_resource());
        delete_if_present(&pools, PROBE, &DeleteParams::default()).await?;
        let claims: Api<DynamicObject> = Api::all_with(client.clone(), &nodeclaim_resource());
        let lp = ListParams::default().labels(&format!("karpenter.sh/nodepool={PROBE}"));
        for c in list_all(&claims, &lp, "probe NodeClaims").await? {
            if let Some(name) = c.metadata.name.as_deref() {
                delete_if_present(&claims, name, &DeleteParams::default()).await?;
            }
        }
        Ok(())
    }
}

async fn delete_if_present<K>(api: &Api<K>, name: &str, dp: &DeleteParams) -> Result<(), StepError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match with_retry(&format!("delete {name}"), || api.delete(name, dp)).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn probe_running(p: Option<&Pod>) -> Result<(), String> {
    let status = p.and_then(|p| p.status.as_ref());
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    match status.and_then(|s| s.pod_ip.as_deref()) {
        Some(_) if phase == "Running" => Ok(()),
        _ => Err(format!(
            "the probe pod is {phase} (a node of the probe NodePool is starting)"
        )),
    }
}

impl Produces for ControlPlaneReach {
    type Output = ReachOutput;
}

#[async_trait]
impl Unit<Env> for ControlPlaneReach {
    type Checkpoint = ();

    fn id(&self) -> &str {
        ids::CONTROL_PLANE_REACH
    }

    fn describe(&self) -> String {
        format!("wait until the control plane reaches {}", self.inputs.cidr)
    }

    async fn observe(&self, _env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let why = format!(
            "proves the API server reaches {} before any node is replaced ({}); removed after",
            self.inputs.cidr,
            self.inputs.at_risk.join("; ")
        );
        Ok(StepPlan::new(self.id(), self.describe())
            .with(
                Change::new(Action::Create, "karpenter_nodepool", PROBE)
                    .set("copies", &self.inputs.node_pool)
                    .set("taint", format!("{TAINT}=true:NoSchedule"))
                    .because("temporary"),
            )
            .with(
                Change::new(
                    Action::Create,
                    "kubernetes_pod",
                    format!("{}/{PROBE}", self.inputs.namespace),
                )
                .set("image", &self.inputs.image)
                .because(why),
            ))
    }

    async fn apply(&self, env: &Env, _ctx: &mut UnitCtx<'_, '_, Self::Checkpoint>) -> Result<Self::Output, StepError> {
        let client = kube(env)?;
        let started = Instant::now();
        let outcome = async {
            // Server-side applies: a re-run after a kill finds the same probe.
            self.launch_probe(client, env).await?;
            let ip = self.probe_ip(client, env).await?;
            self.await_reach(client, env, &ip, started).await?;
            Ok::<String, StepError>(ip)
        }
        .await;
        // Removed whatever happened: a probe node left for hours costs money.
        let removed = self.remove_probe(client).await;
        let ip = match (outcome, removed) {
            (Ok(ip), Ok(())) => ip,
            (Ok(_), Err(e)) | (Err(e), Ok(())) => return Err(e),
            (Err(e), Err(cleanup)) => {
                return Err(StepError {
                    message: format!(
                        "{}; removing the probe failed too ({}): delete NodePool {PROBE} and pod {}/{PROBE} by hand",
                        e.message, cleanup.message, self.inputs.namespace
                    ),
                    ..e
                });
            }
        };
        Ok(ReachOutput {
            probe_ip: ip,
            waited_secs: started.elapsed().as_secs(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> ReachGateInputs {
        ReachGateInputs {
            cidr: "100.64.0.0/16".parse().unwrap(),
            node_pool: "default".into(),
            namespace: "kube-system".into(),
            image: "public.ecr.aws/docker/library/busybox:1.36".into(),
            port: 8080,
            at_risk: vec![],
        }
    }

    #[test]
    fn the_probe_pool_keeps_the_template_and_adds_its_taint() {
        let source = json!({"spec": {"template": {"spec": {
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
            "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["t3.medium"]}],
            "taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]
        }}}});
        let np = probe_nodepool(&source);
        assert_eq!(np["spec"]["template"]["spec"]["nodeClassRef"]["name"], "default");
        let taints = np["spec"]["template"]["spec"]["taints"].as_array().unwrap();
        assert_eq!(
            taints.len(),
            1,
            "the pool's own taint would keep the probe off: {taints:?}"
        );
        assert_eq!(taints[0]["key"], TAINT);
        assert_eq!(np["spec"]["template"]["metadata"]["labels"][TAINT], "true");
    }

    #[test]
    fn the_probe_pod_is_a_valid_pod_that_only_fits_the_probe_pool() {
        let pod: Pod = serde_json::from_value(probe_pod(&inputs())).expect("a Pod");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_selector.unwrap()["karpenter.sh/nodepool"], PROBE);
        assert_eq!(spec.tolerations.unwrap()[0].key.as_deref(), Some(TAINT));
        assert!(spec.containers[0].command.as_ref().unwrap()[2].contains("httpd -f -p 8080"));
    }

    #[test]
    fn a_probe_is_running_only_with_an_address() {
        let mut p: Pod = serde_json::from_value(json!({"status": {"phase": "Running"}})).unwrap();
        assert!(probe_running(Some(&p)).is_err());
        p.status.as_mut().unwrap().pod_ip = Some("100.64.1.5".into());
        assert!(probe_running(Some(&p)).is_ok());
        assert!(probe_running(None).is_err());
    }
}
