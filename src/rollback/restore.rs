//! The settings a rollback puts back, each to the value the apply's journal
//! recorded before the apply changed it: Karpenter's `RESERVED_ENIS` and
//! EC2NodeClass `spec.kubelet.maxPods` (`restore-karpenter`), and the
//! vpc-cni keys podnet set (`restore-vpc-cni`: one `UpdateAddon` that keeps
//! every other key of the configuration as it is now, or the aws-node
//! DaemonSet's env). A setting that was unset before is released: podnet's
//! field manager stops applying it, so server-side apply removes the field
//! it alone owned (<https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management>).

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::plan::ids;
use crate::aws::eks::AddonUpdate;
use crate::discovery::VPC_CNI_ADDON;
use crate::engine::{Action, Change, ErrorClass, Produces, StepCtx, StepError, StepPlan, Unit, UnitCtx};
use crate::k8s::crds::Ec2NodeClass;
use crate::k8s::snapshot::REPLACE_ANNOTATION;
use crate::k8s::{self, list_all, ops, with_retry};
use crate::steps::Env;
use crate::steps::addon::{
    EnableCustomNetworkingOutputs, daemonset_env, env_of, merged_config, parse_config, wait_addon_update,
};
use crate::steps::karpenter::{ConfigureKarpenterOutputs, env_value};

fn kube(env: &Env) -> Result<&kube::Client, StepError> {
    env.kube
        .as_ref()
        .ok_or_else(|| StepError::failed("no Kubernetes client"))
}

/// restore-karpenter: the controller's `RESERVED_ENIS` and each
/// EC2NodeClass's `maxPods` as the apply found them.
pub struct RestoreKarpenter {
    /// The apply's record (`None` or skipped: nothing to restore).
    pub record: Option<ConfigureKarpenterOutputs>,
    pub container: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreKarpenterOutputs {
    pub skipped: bool,
    /// `RESERVED_ENIS` now (`None`: unset, as before the apply).
    pub reserved_enis: Option<String>,
    /// Each restored EC2NodeClass and its `maxPods` now.
    pub max_pods: BTreeMap<String, Option<u32>>,
}

/// What the apply configured, when it did.
struct KarpenterTarget<'a> {
    namespace: &'a str,
    deployment: &'a str,
    reserved_before: Option<&'a str>,
    max_pods_before: BTreeMap<String, Option<u32>>,
}

impl RestoreKarpenter {
    fn target(&self) -> Option<KarpenterTarget<'_>> {
        let k = self.record.as_ref().filter(|k| !k.skipped)?;
        Some(KarpenterTarget {
            namespace: k.namespace.as_deref()?,
            deployment: k.deployment.as_deref()?,
            reserved_before: k.reserved_enis_before.as_ref().and_then(|p| p.value.as_deref()),
            max_pods_before: k.max_pods_before.clone().unwrap_or_default(),
        })
    }
}

/// The EC2NodeClasses the apply set, as they are now (one that is gone is
/// left out: nothing to put back).
async fn node_classes(
    client: &kube::Client,
    wanted: &BTreeMap<String, Option<u32>>,
) -> Result<Vec<(String, Option<u32>)>, StepError> {
    if wanted.is_empty() {
        return Ok(vec![]);
    }
    let all = k8s::list_crd::<Ec2NodeClass>(client, "EC2NodeClasses")
        .await?
        .unwrap_or_default();
    Ok(all
        .into_iter()
        .filter_map(|nc| {
            let name = nc.metadata.name.clone()?;
            wanted
                .contains_key(&name)
                .then(|| (name, nc.spec.kubelet.as_ref().and_then(|k| k.max_pods)))
        })
        .collect())
}

impl Produces for RestoreKarpenter {
    type Output = RestoreKarpenterOutputs;
}

#[async_trait]
impl Unit<Env> for RestoreKarpenter {
    type Checkpoint = ();

    fn id(&self) -> &str {
        ids::RESTORE_KARPENTER
    }

    fn describe(&self) -> String {
        match self.target() {
            Some(t) => format!("put RESERVED_ENIS back on {}/{}", t.namespace, t.deployment),
            None => "put Karpenter's settings back (the apply did not change them)".into(),
        }
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let plan = StepPlan::new(self.id(), self.describe());
        let Some(t) = self.target() else {
            return Ok(plan.note("the apply did not configure Karpenter"));
        };
        let client = kube(env)?;
        let api: Api<Deployment> = Api::namespaced(client.clone(), t.namespace);
        let what = format!("{}/{}", t.namespace, t.deployment);
        let d = with_retry(&format!("get Deployment {what}"), || api.get(t.deployment)).await?;
        let have = env_value(&d, &self.container, "RESERVED_ENIS");
        let mut plan = plan.with(if have.as_deref() == t.reserved_before {
            Change::new(Action::NoOp, "kubernetes_deployment_env", &what).because("RESERVED_ENIS as before the apply")
        } else {
            Change::new(Action::Update, "kubernetes_deployment_env", &what).change(
                "env.RESERVED_ENIS",
                have,
                t.reserved_before,
            )
        });
        for (name, have) in node_classes(client, &t.max_pods_before).await? {
            let was = t.max_pods_before.get(&name).copied().flatten();
            plan = plan.with(if have == was {
                Change::new(Action::NoOp, "karpenter_ec2nodeclass", &name)
            } else {
                Change::new(Action::Update, "karpenter_ec2nodeclass", &name).change("spec.kubelet.maxPods", have, was)
            });
        }
        if let Some(values) = self.record.as_ref().and_then(|k| k.helm_values.as_deref()) {
            plan = plan.note(format!(
                "the controller is Helm-managed: also take these values out of the release, or the next `helm upgrade` sets them again:\n{values}"
            ));
        }
        Ok(plan)
    }

    async fn apply(&self, env: &Env, _ctx: &mut UnitCtx<'_, '_, ()>) -> Result<RestoreKarpenterOutputs, StepError> {
        let Some(t) = self.target() else {
            return Ok(RestoreKarpenterOutputs {
                skipped: true,
                ..Default::default()
            });
        };
        let client = kube(env)?;
        let api: Api<Deployment> = Api::namespaced(client.clone(), t.namespace);
        let what = format!("{}/{}", t.namespace, t.deployment);
        let d = with_retry(&format!("get Deployment {what}"), || api.get(t.deployment)).await?;
        if env_value(&d, &self.container, "RESERVED_ENIS").as_deref() != t.reserved_before {
            env.status(self.id(), &format!("putting RESERVED_ENIS back on {what}"));
            // Applying the entry's old value keeps it; applying the
            // container without it releases podnet's entry, which only
            // podnet owned because it was unset before.
            let container = match t.reserved_before {
                Some(v) => json!({ "name": self.container, "env": [ { "name": "RESERVED_ENIS", "value": v } ] }),
                None => json!({ "name": self.container }),
            };
            let body = json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": { "name": t.deployment, "namespace": t.namespace },
                "spec": { "template": { "spec": { "containers": [ container ] } } }
            });
            k8s::apply_owned(&api, t.deployment, &body, &format!("Deployment {what}")).await?;
        }
        let nc_api: Api<Ec2NodeClass> = Api::all(client.clone());
        let mut max_pods = BTreeMap::new();
        for (name, have) in node_classes(client, &t.max_pods_before).await? {
            let was = t.max_pods_before.get(&name).copied().flatten();
            if have != was {
                let spec = match was {
                    Some(m) => json!({ "kubelet": { "maxPods": m } }),
                    None => json!({}),
                };
                let body = json!({
                    "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass",
                    "metadata": { "name": name },
                    "spec": spec
                });
                k8s::apply_owned(&nc_api, &name, &body, &format!("EC2NodeClass {name}")).await?;
            }
            max_pods.insert(name, was);
        }
        let progress = |m: String| env.status(ids::RESTORE_KARPENTER, &m);
        ops::wait_deployment_rollout(
            client,
            t.namespace,
            t.deployment,
            env.waits.karpenter_rollout,
            &progress,
        )
        .await?;
        let d = with_retry(&format!("get Deployment {what}"), || api.get(t.deployment)).await?;
        let now = env_value(&d, &self.container, "RESERVED_ENIS");
        if now.as_deref() != t.reserved_before {
            return Err(StepError::new(
                ErrorClass::Failed,
                format!(
                    "RESERVED_ENIS on {what} is {} after the restore, not {}",
                    now.as_deref().unwrap_or("unset"),
                    t.reserved_before.unwrap_or("unset")
                ),
            )
            .hint("another writer (Helm?) owns the entry now; set it by hand, then run `podnet rollback` again"));
        }
        Ok(RestoreKarpenterOutputs {
            skipped: false,
            reserved_enis: now,
            max_pods,
        })
    }
}

/// `current` with each key podnet set put back to its value before the
/// apply, or removed when it was unset; every other key stays as it is now.
/// An `env` left empty is dropped, so a configuration that had none before
/// has none again.
pub fn restored_config(current: Option<&str>, before: &BTreeMap<String, Option<String>>) -> Result<Value, StepError> {
    Ok(parse_config(current)?.with_env(before).value)
}

/// restore-vpc-cni: custom networking off, by putting back the keys the
/// apply set.
pub struct RestoreVpcCni {
    pub cluster: String,
    pub record: Option<EnableCustomNetworkingOutputs>,
    pub managed_addon: bool,
    pub resolve_conflicts: String,
}

/// One token and one update per attempt, as in enable-custom-networking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct RestoreVpcCniCheckpoint {
    pub client_request_token: Option<String>,
    pub update_id: Option<String>,
    pub failed_updates: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreVpcCniOutputs {
    pub skipped: bool,
    pub update_id: Option<String>,
    /// The addon's configuration values after the restore.
    pub configuration_values: Option<String>,
    /// The nodes marked for replacement ([`REPLACE_ANNOTATION`]).
    #[serde(default)]
    pub marked: Vec<String>,
}

/// Marks every Linux node running now as one to replace. aws-node has
/// restarted everywhere with custom networking off, which takes the
/// eniConfig label off each node (amazon-vpc-cni-k8s `pkg/ipamd/ipamd.go`,
/// `nodeInit`), yet each keeps its ENIs in the pod subnets until it is
/// replaced: the mark is what tells the replacement units which nodes
/// those are. A node launched from here on starts without custom
/// networking and is never marked.
async fn mark_nodes(env: &Env, step: &str) -> Result<Vec<String>, StepError> {
    let client = kube(env)?;
    let api: Api<Node> = Api::all(client.clone());
    let nodes = list_all(&api, &ListParams::default(), "nodes").await?;
    let mut marked = vec![];
    for n in nodes {
        let summary = k8s::snapshot::node_summary(&n);
        if summary.os == "windows" {
            continue;
        }
        if summary.replace_mark.is_none() {
            env.status(step, &format!("marking {} for replacement", summary.name));
            let patch =
                Patch::Merge(json!({ "metadata": { "annotations": { REPLACE_ANNOTATION: "off-custom-networking" } } }));
            let pp = PatchParams::default();
            with_retry(&format!("annotate node {}", summary.name), || {
                api.patch(&summary.name, &pp, &patch)
            })
            .await?;
        }
        marked.push(summary.name);
    }
    Ok(marked)
}

impl RestoreVpcCni {
    fn before(&self) -> Option<&BTreeMap<String, Option<String>>> {
        self.record.as_ref()?.env_before.as_ref()
    }

    /// What to send: the configuration as it was before when that is what
    /// the restore comes to (byte for byte, `{}` for none), else the
    /// restored value.
    fn wanted(&self, current: Option<&str>) -> Result<(Value, String), StepError> {
        let before = self.before().cloned().unwrap_or_default();
        let restored = parse_config(current)?.with_env(&before);
        let was = self
            .record
            .as_ref()
            .and_then(|r| r.configuration_values_before.as_ref())
            .and_then(|p| p.value.clone())
            .filter(|t| !t.trim().is_empty());
        let text = match parse_config(was.as_deref()) {
            Ok(v) if v.value == restored.value => was.unwrap_or_else(|| "{}".into()),
            _ => restored.render(),
        };
        Ok((restored.value, text))
    }

    fn env_changes(&self, have: &BTreeMap<String, String>, what: &str, name: &str) -> Change {
        let before = self.before().cloned().unwrap_or_default();
        let differ: Vec<_> = before.iter().filter(|(k, v)| have.get(*k) != v.as_ref()).collect();
        if differ.is_empty() {
            return Change::new(Action::NoOp, what, name).because("the keys podnet set are as before the apply");
        }
        let mut c = Change::new(Action::Update, what, name);
        for (k, v) in differ {
            c = c.change(format!("env.{k}"), have.get(k), v);
        }
        c
    }

    async fn restore_daemonset(&self, env: &Env) -> Result<RestoreVpcCniOutputs, StepError> {
        let client = kube(env)?;
        let have = daemonset_env(client).await?;
        let before = self.before().cloned().unwrap_or_default();
        if before.iter().any(|(k, v)| have.get(k) != v.as_ref()) {
            let kept: Vec<Value> = before
                .iter()
                .filter_map(|(k, v)| Some(json!({ "name": k, "value": v.as_ref()? })))
                .collect();
            let body = json!({
                "apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": { "name": "aws-node", "namespace": "kube-system" },
                "spec": { "template": { "spec": { "containers": [ { "name": "aws-node", "env": kept } ] } } }
            });
            let api: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
            k8s::apply_owned(&api, "aws-node", &body, "DaemonSet kube-system/aws-node").await?;
        }
        let rollout = |m: String| env.status(ids::RESTORE_VPC_CNI, &m);
        ops::wait_daemonset_rollout(client, "kube-system", "aws-node", env.waits.aws_node_rollout, &rollout).await?;
        let now = daemonset_env(client).await?;
        if let Some((k, _)) = before.iter().find(|(k, v)| now.get(*k) != v.as_ref()) {
            return Err(StepError::new(
                ErrorClass::Failed,
                format!("after the restore aws-node's {k} is not as it was before the apply"),
            )
            .hint("another field manager owns that env entry too; set it by hand, then run `podnet rollback` again"));
        }
        let marked = mark_nodes(env, self.id()).await?;
        Ok(RestoreVpcCniOutputs {
            marked,
            ..Default::default()
        })
    }

    async fn current_config(&self, env: &Env) -> Result<Option<String>, StepError> {
        let addon = env
            .aws
            .eks
            .describe_addon(&self.cluster, VPC_CNI_ADDON)
            .await?
            .ok_or_else(|| StepError::new(ErrorClass::NotFound, "the vpc-cni addon is gone"))?;
        Ok(addon.configuration_values)
    }
}

impl Produces for RestoreVpcCni {
    type Output = RestoreVpcCniOutputs;
}

#[async_trait]
impl Unit<Env> for RestoreVpcCni {
    type Checkpoint = RestoreVpcCniCheckpoint;

    fn id(&self) -> &str {
        ids::RESTORE_VPC_CNI
    }

    fn describe(&self) -> String {
        match (self.before(), self.managed_addon) {
            (None, _) => "turn custom networking off (the apply did not change the vpc-cni)".into(),
            (Some(_), true) => "put the vpc-cni addon's configuration back".into(),
            (Some(_), false) => "put the aws-node DaemonSet's env back".into(),
        }
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let plan = StepPlan::new(self.id(), self.describe());
        if self.before().is_none() {
            return Ok(plan.note("the apply did not change the vpc-cni configuration"));
        }
        if !self.managed_addon {
            let have = daemonset_env(kube(env)?).await?;
            return Ok(plan.with(self.env_changes(&have, "kubernetes_daemonset_env", "kube-system/aws-node")));
        }
        let current = self.current_config(env).await?;
        let have = env_of(&merged_config(current.as_deref(), &BTreeMap::new())?);
        Ok(plan.with(self.env_changes(&have, "aws_eks_addon", VPC_CNI_ADDON)).note(
            "every other key of the configuration stays as it is; running nodes keep custom networking until replaced",
        ))
    }

    async fn apply(&self, env: &Env, ctx: &mut UnitCtx<'_, '_, Self::Checkpoint>) -> Result<Self::Output, StepError> {
        if self.before().is_none() {
            return Ok(RestoreVpcCniOutputs {
                skipped: true,
                ..Default::default()
            });
        }
        if !self.managed_addon {
            return self.restore_daemonset(env).await;
        }
        // A token from an earlier attempt means that attempt may have sent
        // the update and lost the answer: sending it again with the same
        // token makes EKS answer with that update instead of a second one.
        let sent_before = ctx.checkpoint().client_request_token.is_some();
        let token = ctx.once(|c| &mut c.client_request_token, || uuid::Uuid::new_v4().to_string())?;
        let update_id = match ctx.checkpoint().update_id.clone() {
            Some(id) => Some(id),
            None => {
                let current = self.current_config(env).await?;
                let (restored, text) = self.wanted(current.as_deref())?;
                if !sent_before && restored == merged_config(current.as_deref(), &BTreeMap::new())? {
                    None
                } else {
                    env.status(self.id(), "updating the vpc-cni addon: custom networking off");
                    let u = env
                        .aws
                        .eks
                        .update_addon(
                            &self.cluster,
                            VPC_CNI_ADDON,
                            &AddonUpdate {
                                version: None,
                                configuration_values: Some(text),
                                resolve_conflicts: self.resolve_conflicts.clone(),
                                client_request_token: token,
                            },
                        )
                        .await?;
                    ctx.save(|c| c.update_id = Some(u.id.clone()))?;
                    Some(u.id)
                }
            }
        };
        if let Some(id) = &update_id {
            let u = wait_addon_update(env, &self.cluster, id, self.id()).await?;
            if u.status != "Successful" {
                ctx.save(|c| {
                    c.failed_updates.push(id.clone());
                    c.client_request_token = None;
                    c.update_id = None;
                })?;
                let errs: Vec<String> = u.errors.iter().map(|e| format!("{}: {}", e.code, e.message)).collect();
                return Err(StepError::new(
                    ErrorClass::Failed,
                    format!(
                        "the vpc-cni addon update {id} {}: {}",
                        u.status.to_lowercase(),
                        errs.join("; ")
                    ),
                )
                .hint("see `aws eks describe-update`; fix the cause, then run `podnet rollback` again"));
            }
        }
        let client = kube(env)?;
        let rollout = |m: String| env.status(ids::RESTORE_VPC_CNI, &m);
        ops::wait_daemonset_rollout(client, "kube-system", "aws-node", env.waits.aws_node_rollout, &rollout).await?;
        let config = self.current_config(env).await?;
        let have = env_of(&merged_config(config.as_deref(), &BTreeMap::new())?);
        if let Some((k, _)) = self
            .before()
            .into_iter()
            .flatten()
            .find(|(k, v)| have.get(*k) != v.as_ref())
        {
            return Err(StepError::new(
                ErrorClass::Failed,
                format!("after the update the addon's {k} is not as it was before the apply"),
            )
            .hint("another writer changed the addon's configuration; check it, then run `podnet rollback` again"));
        }
        let marked = mark_nodes(env, self.id()).await?;
        Ok(RestoreVpcCniOutputs {
            skipped: false,
            update_id,
            configuration_values: config,
            marked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn before(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn restoring_puts_back_only_podnets_keys() {
        let now = r#"{"env":{"AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG":"true","ENI_CONFIG_LABEL_DEF":"topology.kubernetes.io/zone","WARM_IP_TARGET":"5"},"init":{"env":{}}}"#;
        let b = before(&[
            ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", Some("false")),
            ("ENI_CONFIG_LABEL_DEF", None),
        ]);
        let v = restored_config(Some(now), &b).unwrap();
        assert_eq!(
            v,
            json!({"env":{"AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG":"false","WARM_IP_TARGET":"5"},"init":{"env":{}}})
        );
    }

    #[test]
    fn a_configuration_that_had_no_env_has_none_again() {
        let now = r#"{"env":{"AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG":"true","ENI_CONFIG_LABEL_DEF":"x"}}"#;
        let b = before(&[
            ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", None),
            ("ENI_CONFIG_LABEL_DEF", None),
        ]);
        assert_eq!(restored_config(Some(now), &b).unwrap(), json!({}));
        assert_eq!(restored_config(None, &b).unwrap(), json!({}));
    }

    #[test]
    fn the_old_text_is_sent_back_when_the_restore_comes_to_it() {
        let was = r#"{ "env": { "WARM_IP_TARGET": "5" } }"#;
        let unit = |was: Option<&str>| RestoreVpcCni {
            cluster: "c".into(),
            record: Some(EnableCustomNetworkingOutputs {
                configuration_values_before: Some(crate::steps::Prior::of(was.map(str::to_string))),
                env_before: Some(before(&[("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", None)])),
                ..Default::default()
            }),
            managed_addon: true,
            resolve_conflicts: "OVERWRITE".into(),
        };
        let now = r#"{"env":{"WARM_IP_TARGET":"5","AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG":"true"}}"#;
        assert_eq!(unit(Some(was)).wanted(Some(now)).unwrap().1, was);
        assert_eq!(
            unit(None)
                .wanted(Some(r#"{"env":{"AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG":"true"}}"#))
                .unwrap()
                .1,
            "{}"
        );
        // Someone added a key since: it stays, so the text is the restored value.
        let later =
            r#"{"env":{"WARM_IP_TARGET":"5","MINIMUM_IP_TARGET":"2","AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG":"true"}}"#;
        let (v, text) = unit(Some(was)).wanted(Some(later)).unwrap();
        assert_eq!(v, json!({"env":{"WARM_IP_TARGET":"5","MINIMUM_IP_TARGET":"2"}}));
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
    }
}
