//! configure-karpenter: set `RESERVED_ENIS` on the Karpenter controller so it
//! stops promising pods the node has no IPs for (Karpenter does not know
//! about custom networking), optionally pin EC2NodeClass
//! `spec.kubelet.maxPods`, and wait for the controller's rollout. A
//! Helm-managed controller gets the values snippet that keeps the next
//! `helm upgrade` from undoing it. No Karpenter: skipped, saying so.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Env, Prior, ids};
use crate::engine::{Action, Change, Produces, StepCtx, StepError, StepPlan, Unit, UnitCtx};
use crate::k8s::crds::Ec2NodeClass;
use crate::k8s::{self, ops, with_retry};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KarpenterInputs {
    pub namespace: String,
    pub deployment: String,
    pub container: String,
    pub helm_managed: bool,
    pub reserved_enis: u32,
    pub max_pods: Option<u32>,
    /// EC2NodeClasses that get `max_pods` (all of them when the plan lists
    /// none); only read when `class_max_pods` is empty.
    pub node_classes: Vec<String>,
    /// EC2NodeClass → the `spec.kubelet.maxPods` the planner chose for it.
    /// Empty in plans saved before podnet planned it per class: those apply
    /// `max_pods` to `node_classes`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub class_max_pods: BTreeMap<String, u32>,
}

pub struct ConfigureKarpenter {
    /// `None`: the cluster runs no Karpenter, or the plan turned it off.
    pub karpenter: Option<KarpenterInputs>,
    pub skip_reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConfigureKarpenterOutputs {
    pub skipped: bool,
    pub namespace: Option<String>,
    pub deployment: Option<String>,
    pub reserved_enis: Option<u32>,
    pub max_pods: Option<u32>,
    pub node_classes: Vec<String>,
    /// The maxPods each class in `node_classes` was given.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub class_max_pods: BTreeMap<String, u32>,
    /// Helm values to keep in sync, when Helm manages the controller.
    pub helm_values: Option<String>,
    /// RESERVED_ENIS on the controller before podnet set it. `None` when
    /// skipped, or in journals written before podnet recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_enis_before: Option<Prior<String>>,
    /// `spec.kubelet.maxPods` of each EC2NodeClass podnet set, before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pods_before: Option<BTreeMap<String, Option<u32>>>,
}

/// What the first attempt found, recorded before it changes anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ConfigureKarpenterCheckpoint {
    pub reserved_enis_before: Option<Prior<String>>,
    pub max_pods_before: Option<BTreeMap<String, Option<u32>>>,
}

pub fn helm_snippet(reserved_enis: u32) -> String {
    format!("settings:\n  reservedENIs: \"{reserved_enis}\"")
}

fn kube(env: &Env) -> Result<&kube::Client, StepError> {
    env.kube
        .as_ref()
        .ok_or_else(|| StepError::failed("no Kubernetes client"))
}

/// A container's env value on a Deployment (`None`: unset, or set from a reference).
pub(crate) fn env_value(d: &Deployment, container: &str, key: &str) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == container)?
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == key)
        .and_then(|e| e.value.clone())
}

impl KarpenterInputs {
    /// The maxPods the plan sets on the class named `name`, if any.
    fn want_for(&self, name: &str) -> Option<u32> {
        if !self.class_max_pods.is_empty() {
            return self.class_max_pods.get(name).copied();
        }
        self.max_pods
            .filter(|_| self.node_classes.is_empty() || self.node_classes.iter().any(|n| n == name))
    }

    /// The EC2NodeClasses that get a maxPods, each with its value.
    async fn node_classes(&self, client: &kube::Client) -> Result<Vec<(Ec2NodeClass, u32)>, StepError> {
        if self.max_pods.is_none() && self.class_max_pods.is_empty() {
            return Ok(vec![]);
        }
        let all = k8s::list_crd::<Ec2NodeClass>(client, "EC2NodeClasses")
            .await?
            .unwrap_or_default();
        Ok(all
            .into_iter()
            .filter_map(|o| {
                let want = self.want_for(o.metadata.name.as_deref()?)?;
                Some((o, want))
            })
            .collect())
    }
}

fn max_pods_of(nc: &Ec2NodeClass) -> Option<u32> {
    nc.spec.kubelet.as_ref().and_then(|k| k.max_pods)
}

impl Produces for ConfigureKarpenter {
    type Output = ConfigureKarpenterOutputs;
}

#[async_trait]
impl Unit<Env> for ConfigureKarpenter {
    type Checkpoint = ConfigureKarpenterCheckpoint;

    fn id(&self) -> &str {
        ids::CONFIGURE_KARPENTER
    }

    fn describe(&self) -> String {
        match &self.karpenter {
            Some(k) => format!(
                "set RESERVED_ENIS={} on {}/{}",
                k.reserved_enis, k.namespace, k.deployment
            ),
            None => format!("configure Karpenter (skipped: {})", self.skip_reason),
        }
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let plan = StepPlan::new(self.id(), self.describe());
        let Some(k) = &self.karpenter else {
            return Ok(plan.note(format!("skipped: {}", self.skip_reason)));
        };
        let client = kube(env)?;
        let api: Api<Deployment> = Api::namespaced(client.clone(), &k.namespace);
        let d = with_retry(&format!("get Deployment {}/{}", k.namespace, k.deployment), || {
            api.get(&k.deployment)
        })
        .await?;
        let want = k.reserved_enis.to_string();
        let have = env_value(&d, &k.container, "RESERVED_ENIS");
        let name = format!("{}/{} container {}", k.namespace, k.deployment, k.container);
        let mut plan = plan.with(if have.as_deref() == Some(want.as_str()) {
            Change::new(Action::NoOp, "kubernetes_deployment_env", name).because(format!("RESERVED_ENIS={want}"))
        } else {
            Change::new(Action::Update, "kubernetes_deployment_env", name).change("env.RESERVED_ENIS", have, want)
        });
        for (nc, want) in k.node_classes(client).await? {
            let have = max_pods_of(&nc);
            let want = Some(want);
            let n = nc.metadata.name.clone().unwrap_or_default();
            plan = plan.with(if have == want {
                Change::new(Action::NoOp, "karpenter_ec2nodeclass", n)
            } else {
                Change::new(Action::Update, "karpenter_ec2nodeclass", n).change("spec.kubelet.maxPods", have, want)
            });
        }
        if k.helm_managed {
            plan = plan.note(format!(
                "the controller is Helm-managed: also set these values so the next `helm upgrade` keeps it:\n{}",
                helm_snippet(k.reserved_enis)
            ));
        }
        Ok(plan)
    }

    async fn apply(&self, env: &Env, ctx: &mut UnitCtx<'_, '_, Self::Checkpoint>) -> Result<Self::Output, StepError> {
        let Some(k) = &self.karpenter else {
            let out = ConfigureKarpenterOutputs {
                skipped: true,
                ..Default::default()
            };
            return Ok(out);
        };
        let client = kube(env)?;
        let api: Api<Deployment> = Api::namespaced(client.clone(), &k.namespace);
        let what = format!("{}/{}", k.namespace, k.deployment);
        let d = with_retry(&format!("get Deployment {what}"), || api.get(&k.deployment)).await?;
        let classes = k.node_classes(client).await?;
        let reserved_before = ctx.once(
            |c| &mut c.reserved_enis_before,
            || Prior::of(env_value(&d, &k.container, "RESERVED_ENIS")),
        )?;
        let max_pods_before = ctx.once(
            |c| &mut c.max_pods_before,
            || {
                classes
                    .iter()
                    .map(|(nc, _)| (nc.metadata.name.clone().unwrap_or_default(), max_pods_of(nc)))
                    .collect()
            },
        )?;
        // A class that appeared since the first attempt: recorded as it is
        // now, before podnet touches it.
        let mut max_pods_before = max_pods_before;
        for (nc, _) in &classes {
            let n = nc.metadata.name.clone().unwrap_or_default();
            if let std::collections::btree_map::Entry::Vacant(e) = max_pods_before.entry(n) {
                e.insert(max_pods_of(nc));
                let all = max_pods_before.clone();
                ctx.save(|c| c.max_pods_before = Some(all))?;
            }
        }
        let want = k.reserved_enis.to_string();
        if env_value(&d, &k.container, "RESERVED_ENIS").as_deref() != Some(want.as_str()) {
            env.status(self.id(), &format!("setting RESERVED_ENIS={want} on {what}"));
            // podnet owns this one env entry; every other setting of the
            // controller stays its owner's (Helm's, usually).
            let body = json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": { "name": k.deployment, "namespace": k.namespace },
                "spec": { "template": { "spec": { "containers": [
                    { "name": k.container, "env": [ { "name": "RESERVED_ENIS", "value": want } ] }
                ] } } }
            });
            k8s::apply_owned(&api, &k.deployment, &body, &format!("Deployment {what}")).await?;
        }
        let mut patched = Vec::new();
        let mut class_max_pods = BTreeMap::new();
        {
            let nc_api: Api<Ec2NodeClass> = Api::all(client.clone());
            for (nc, max) in &classes {
                let (n, max) = (nc.metadata.name.clone().unwrap_or_default(), *max);
                class_max_pods.insert(n.clone(), max);
                if max_pods_of(nc) != Some(max) {
                    let body = json!({
                        "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass",
                        "metadata": { "name": n },
                        "spec": { "kubelet": { "maxPods": max } }
                    });
                    k8s::apply_owned(&nc_api, &n, &body, &format!("EC2NodeClass {n}")).await?;
                }
                patched.push(n);
            }
        }
        let progress = |m: String| env.status(ids::CONFIGURE_KARPENTER, &m);
        ops::wait_deployment_rollout(
            client,
            &k.namespace,
            &k.deployment,
            env.waits.karpenter_rollout,
            &progress,
        )
        .await?;
        let out = ConfigureKarpenterOutputs {
            skipped: false,
            namespace: Some(k.namespace.clone()),
            deployment: Some(k.deployment.clone()),
            reserved_enis: Some(k.reserved_enis),
            max_pods: k.max_pods,
            node_classes: patched,
            class_max_pods,
            helm_values: k.helm_managed.then(|| helm_snippet(k.reserved_enis)),
            reserved_enis_before: Some(reserved_before),
            max_pods_before: (!classes.is_empty() || k.max_pods.is_some()).then_some(max_pods_before),
        };
        Ok(out)
    }
}
