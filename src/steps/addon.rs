//! enable-custom-networking: one `UpdateAddon` that merges
//! `AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG=true` and `ENI_CONFIG_LABEL_DEF` into
//! the vpc-cni addon's *existing* configuration values (the user's other keys
//! survive, in the JSON or YAML they were written in), then waits for the update and the aws-node rollout. The
//! request token is generated once and journaled, and the update id is
//! journaled as soon as EKS returns it, so a resumed run never issues a
//! second update. A self-managed aws-node gets its DaemonSet env patched.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::Api;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Env, Prior, ids};
use crate::aws::addon_config::AddonConfig;
use crate::aws::eks::{AddonUpdate, UpdateInfo};
use crate::discovery::VPC_CNI_ADDON;
use crate::engine::{Action, Change, ErrorClass, Produces, StepCtx, StepError, StepPlan, Unit, UnitCtx};
use crate::k8s::{ops, with_retry};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcCniInputs {
    /// The CNI is the `vpc-cni` EKS addon (else a self-managed DaemonSet).
    pub managed_addon: bool,
    /// `NONE`, `OVERWRITE` or `PRESERVE`.
    pub resolve_conflicts: String,
    /// Env values to merge in.
    pub env: BTreeMap<String, String>,
}

pub struct EnableCustomNetworking {
    pub cluster: String,
    pub cni: VpcCniInputs,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EnableCustomNetworkingOutputs {
    pub update_id: Option<String>,
    /// The addon's configuration values after the update.
    pub configuration_values: Option<String>,
    pub env: BTreeMap<String, String>,
    /// The addon's configuration values before podnet's first attempt. `None`
    /// for a self-managed aws-node, or in journals written before podnet
    /// recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_values_before: Option<Prior<String>>,
    /// The values of the keys podnet set (`env`), before: in the addon's
    /// configuration, or on a self-managed aws-node (`None`: unset). What a
    /// rollback puts back, key by key, leaving every other key as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_before: Option<BTreeMap<String, Option<String>>>,
}

/// The add-on's configuration values, parsed (JSON or YAML).
pub fn parse_config(current: Option<&str>) -> Result<AddonConfig, StepError> {
    AddonConfig::parse(current).map_err(|e| {
        StepError::new(ErrorClass::Invalid, format!("vpc-cni: {e}"))
            .hint("fix them with `aws eks update-addon --configuration-values`, then run `podnet resume`")
    })
}

/// Values to set, as a merge patch's entries.
pub fn to_set(env: &BTreeMap<String, String>) -> BTreeMap<String, Option<String>> {
    env.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect()
}

/// `current` with `env` merged into its `env` object; every other key kept.
pub fn merged_config(current: Option<&str>, env: &BTreeMap<String, String>) -> Result<Value, StepError> {
    Ok(parse_config(current)?.with_env(&to_set(env)).value)
}

pub fn env_of(config: &Value) -> BTreeMap<String, String> {
    config["env"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn kube(env: &Env) -> Result<&kube::Client, StepError> {
    env.kube
        .as_ref()
        .ok_or_else(|| StepError::failed("no Kubernetes client"))
}

pub async fn daemonset_env(client: &kube::Client) -> Result<BTreeMap<String, String>, StepError> {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    let ds = with_retry("get DaemonSet kube-system/aws-node", || api.get("aws-node")).await?;
    Ok(ds
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().find(|c| c.name == "aws-node"))
        .and_then(|c| c.env)
        .map(|e| e.into_iter().filter_map(|e| Some((e.name, e.value?))).collect())
        .unwrap_or_default())
}

impl EnableCustomNetworking {
    fn changes(&self, have: &BTreeMap<String, String>, name: &str, what: &str) -> Vec<Change> {
        let missing: Vec<(&String, &String)> = self.cni.env.iter().filter(|(k, v)| have.get(*k) != Some(*v)).collect();
        if missing.is_empty() {
            return vec![Change::new(Action::NoOp, what, name).because("custom networking is configured")];
        }
        let mut c = Change::new(Action::Update, what, name);
        for (k, v) in missing {
            c = c.change(format!("env.{k}"), have.get(k), v);
        }
        vec![c]
    }

    /// A VPC CNI that is not an EKS add-on: podnet owns the env entries it
    /// sets on the aws-node DaemonSet (server-side apply) and waits for the
    /// rollout.
    /// The values podnet's keys have in `env` (`None`: not set).
    fn keys_before(&self, env: &BTreeMap<String, String>) -> BTreeMap<String, Option<String>> {
        self.cni.env.keys().map(|k| (k.clone(), env.get(k).cloned())).collect()
    }

    async fn apply_self_managed(
        &self,
        env: &Env,
        client: &kube::Client,
        ctx: &mut UnitCtx<'_, '_, EnableCustomNetworkingCheckpoint>,
    ) -> Result<EnableCustomNetworkingOutputs, StepError> {
        let rollout = |m: String| env.status(ids::ENABLE_CUSTOM_NETWORKING, &m);
        let have = daemonset_env(client).await?;
        let before = ctx.once(|c| &mut c.env_before, || self.keys_before(&have))?;
        if self.cni.env.iter().any(|(k, v)| have.get(k) != Some(v)) {
            let env_list: Vec<Value> = self
                .cni
                .env
                .iter()
                .map(|(k, v)| json!({ "name": k, "value": v }))
                .collect();
            let body = json!({
                "apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": { "name": "aws-node", "namespace": "kube-system" },
                "spec": { "template": { "spec": { "containers": [ { "name": "aws-node", "env": env_list } ] } } }
            });
            let api: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
            crate::k8s::apply_owned(&api, "aws-node", &body, "DaemonSet kube-system/aws-node").await?;
        }
        ops::wait_daemonset_rollout(client, "kube-system", "aws-node", env.waits.aws_node_rollout, &rollout).await?;
        Ok(EnableCustomNetworkingOutputs {
            update_id: None,
            configuration_values: None,
            env: self.cni.env.clone(),
            configuration_values_before: None,
            env_before: Some(before),
        })
    }
}

/// Waits until the vpc-cni addon update `update_id` leaves `InProgress`;
/// returns it whatever its end. `step` names the unit in progress lines.
pub async fn wait_addon_update(env: &Env, cluster: &str, update_id: &str, step: &str) -> Result<UpdateInfo, StepError> {
    let deadline = Instant::now() + env.waits.addon_update;
    loop {
        let u = env
            .aws
            .eks
            .describe_update(cluster, update_id, None, Some(VPC_CNI_ADDON))
            .await?;
        if u.is_done() {
            return Ok(u);
        }
        if Instant::now() >= deadline {
            return Err(StepError::new(
                ErrorClass::Timeout,
                format!(
                    "the vpc-cni addon update {update_id} is still {} after {}",
                    u.status,
                    humantime::format_duration(env.waits.addon_update)
                ),
            )
            .hint("run `podnet resume` to keep waiting (or raise waits.addon_update in the plan file)"));
        }
        env.status(step, &format!("waiting for addon update {update_id} ({})", u.status));
        tokio::time::sleep(env.waits.poll).await;
    }
}

/// What an interrupted attempt leaves: one token and one update per
/// attempt. An update that ended Failed or Cancelled is set aside in
/// `failed_updates` so that the next resume makes a new one instead of
/// finding the old.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct EnableCustomNetworkingCheckpoint {
    pub failed_updates: Vec<String>,
    pub client_request_token: Option<String>,
    pub update_id: Option<String>,
    /// What the first attempt found, before any update.
    pub configuration_before: Option<Prior<String>>,
    pub env_before: Option<BTreeMap<String, Option<String>>>,
}

impl Produces for EnableCustomNetworking {
    type Output = EnableCustomNetworkingOutputs;
}

#[async_trait]
impl Unit<Env> for EnableCustomNetworking {
    type Checkpoint = EnableCustomNetworkingCheckpoint;

    fn id(&self) -> &str {
        ids::ENABLE_CUSTOM_NETWORKING
    }

    fn describe(&self) -> String {
        let keys: Vec<String> = self.cni.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if self.cni.managed_addon {
            format!("update the vpc-cni addon with {}", keys.join(", "))
        } else {
            format!("set {} on the aws-node DaemonSet", keys.join(", "))
        }
    }

    async fn observe(&self, env: &Env, _ctx: &StepCtx<'_>) -> Result<StepPlan, StepError> {
        let mut plan = StepPlan::new(self.id(), self.describe());
        if self.cni.managed_addon {
            let addon = env
                .aws
                .eks
                .describe_addon(&self.cluster, VPC_CNI_ADDON)
                .await?
                .ok_or_else(|| {
                    StepError::new(ErrorClass::NotFound, "the vpc-cni addon is gone").hint("run `podnet plan` again")
                })?;
            let current = merged_config(addon.configuration_values.as_deref(), &BTreeMap::new())?;
            for c in self.changes(&env_of(&current), VPC_CNI_ADDON, "aws_eks_addon") {
                plan = plan.with(c);
            }
            let kept: Vec<String> = current
                .as_object()
                .map(|o| {
                    o.iter()
                        .flat_map(|(k, v)| match (k.as_str(), v.as_object()) {
                            ("env", Some(env)) => env
                                .keys()
                                .filter(|x| !self.cni.env.contains_key(*x))
                                .map(|x| format!("env.{x}"))
                                .collect(),
                            (k, _) => vec![k.to_string()],
                        })
                        .collect()
                })
                .unwrap_or_default();
            if !kept.is_empty() {
                plan = plan.note(format!("kept from the addon's configuration: {}", kept.join(", ")));
            }
        } else {
            let have = daemonset_env(kube(env)?).await?;
            for c in self.changes(&have, "kube-system/aws-node", "kubernetes_daemonset_env") {
                plan = plan.with(c);
            }
        }
        Ok(plan)
    }

    async fn apply(&self, env: &Env, ctx: &mut UnitCtx<'_, '_, Self::Checkpoint>) -> Result<Self::Output, StepError> {
        let client = kube(env)?.clone();
        let rollout = |m: String| env.status(ids::ENABLE_CUSTOM_NETWORKING, &m);
        if !self.cni.managed_addon {
            return self.apply_self_managed(env, &client, ctx).await;
        }

        // One token and one update per attempt; a failed update is recorded
        // so that the next resume makes a new one instead of finding the old.
        // A token from an earlier attempt means it may have sent the update
        // and lost the answer: the same token makes EKS answer with that
        // update, so it is sent again even when the values already match.
        let sent_before = ctx.checkpoint().client_request_token.is_some();
        let token = ctx.once(|c| &mut c.client_request_token, || uuid::Uuid::new_v4().to_string())?;
        let update_id: Option<String> = match ctx.checkpoint().update_id.clone() {
            Some(id) => Some(id),
            None => {
                let addon = env
                    .aws
                    .eks
                    .describe_addon(&self.cluster, VPC_CNI_ADDON)
                    .await?
                    .ok_or_else(|| {
                        StepError::new(ErrorClass::NotFound, "the vpc-cni addon is gone")
                            .hint("run `podnet plan` again")
                    })?;
                ctx.once(
                    |c| &mut c.configuration_before,
                    || Prior::of(addon.configuration_values.clone()),
                )?;
                let found = env_of(&merged_config(addon.configuration_values.as_deref(), &BTreeMap::new())?);
                ctx.once(|c| &mut c.env_before, || self.keys_before(&found))?;
                let current = parse_config(addon.configuration_values.as_deref())?;
                let merged = current.with_env(&to_set(&self.cni.env));
                if merged.value == current.value && !sent_before {
                    None
                } else {
                    env.status(self.id(), "updating the vpc-cni addon");
                    let u = env
                        .aws
                        .eks
                        .update_addon(
                            &self.cluster,
                            VPC_CNI_ADDON,
                            &AddonUpdate {
                                version: None,
                                configuration_values: Some(merged.render()),
                                resolve_conflicts: self.cni.resolve_conflicts.clone(),
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
                    format!("the vpc-cni addon update {id} {}: {}", u.status.to_lowercase(), errs.join("; ")),
                )
                .hint("see `aws eks describe-update`; fix the cause, then run `podnet resume` (it makes a new update only if the configuration still differs)"));
            }
        }
        ops::wait_daemonset_rollout(&client, "kube-system", "aws-node", env.waits.aws_node_rollout, &rollout).await?;
        let addon = env.aws.eks.describe_addon(&self.cluster, VPC_CNI_ADDON).await?;
        let config = addon.and_then(|a| a.configuration_values);
        let merged_env = env_of(&merged_config(config.as_deref(), &BTreeMap::new())?);
        if let Some((k, _)) = self.cni.env.iter().find(|(k, v)| merged_env.get(*k) != Some(*v)) {
            return Err(StepError::new(
                ErrorClass::Failed,
                format!("after the update the addon's {k} is still not set"),
            )
            .hint("another writer changed the addon's configuration; check it, then run `podnet resume`"));
        }
        let out = EnableCustomNetworkingOutputs {
            update_id,
            configuration_values: config,
            env: self.cni.env.clone(),
            configuration_values_before: ctx.checkpoint().configuration_before.clone(),
            env_before: ctx.checkpoint().env_before.clone(),
        };
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_the_users_keys() {
        let env: BTreeMap<String, String> = [
            ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG".to_string(), "true".to_string()),
            (
                "ENI_CONFIG_LABEL_DEF".to_string(),
                "topology.kubernetes.io/zone".to_string(),
            ),
        ]
        .into();
        let v = merged_config(
            Some(r#"{"env":{"WARM_IP_TARGET":"2","MINIMUM_IP_TARGET":"4"},"init":{"env":{}}}"#),
            &env,
        )
        .unwrap();
        assert_eq!(v["env"]["WARM_IP_TARGET"], "2");
        assert_eq!(v["env"]["MINIMUM_IP_TARGET"], "4");
        assert_eq!(v["env"]["AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG"], "true");
        assert!(v["init"].is_object());
        assert_eq!(
            merged_config(None, &env).unwrap()["env"]["ENI_CONFIG_LABEL_DEF"],
            "topology.kubernetes.io/zone"
        );
        assert_eq!(merged_config(Some("  "), &BTreeMap::new()).unwrap(), json!({}));
        assert!(merged_config(Some("not json"), &env).is_err());
        assert!(merged_config(Some("[1]"), &env).is_err());
        assert!(merged_config(Some(r#"{"env": 3}"#), &env).is_err());
    }
}
