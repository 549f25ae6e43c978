//! Add-on operations of the simulated EKS: `ListAddons`, `DescribeAddon`,
//! `DescribeAddonVersions`, `DescribeAddonConfiguration`, `UpdateAddon`, and
//! applying an add-on's version and configuration to the cluster's
//! workloads once its update succeeds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};

use super::addon_catalog::{ADDON_VERSIONS, addon_schema, aws_node_env, ecr_registry, vpc_cni_default_env};
use super::model::{Addon, Cluster, Update, UpdateEffect, UpdateTarget, epoch_now};
use super::render::{addon_json, page, update_json, with_next};
use super::{Eks, EksError, schema};
use crate::kube::resources::{DAEMONSET, DEPLOYMENT};

impl Eks {
    pub fn add_addon(&self, cluster: &str, addon: Addon) -> Result<(), EksError> {
        let mut all = self.lock();
        let cs = all
            .get_mut(cluster)
            .ok_or_else(|| EksError::cluster_not_found(cluster))?;
        cs.addons.insert(addon.name.clone(), addon);
        Ok(())
    }

    pub fn addon(&self, cluster: &str, name: &str) -> Option<Addon> {
        self.lock().get(cluster).and_then(|c| c.addons.get(name).cloned())
    }

    pub(super) fn addon_not_found(addon: &str, cluster: &str) -> EksError {
        EksError::not_found(format!("No addon: {addon} found in cluster: {cluster}"))
            .with("clusterName", cluster)
            .with("addonName", addon)
    }

    pub fn list_addons(&self, cluster: &str, q: &HashMap<String, String>) -> Result<Value, EksError> {
        self.with_cluster(cluster, |cs| {
            let names: Vec<String> = cs.addons.keys().cloned().collect();
            let (items, next) = page(&names, q)?;
            Ok(with_next(json!({"addons": items}), next))
        })
    }

    pub fn describe_addon(&self, cluster: &str, addon: &str) -> Result<Value, EksError> {
        self.with_cluster(cluster, |cs| {
            let a = cs
                .addons
                .get(addon)
                .ok_or_else(|| Self::addon_not_found(addon, cluster))?;
            Ok(json!({"addon": addon_json(cluster, a)}))
        })
    }

    pub fn describe_addon_versions(&self, q: &HashMap<String, String>) -> Result<Value, EksError> {
        let kv = q.get("kubernetesVersion");
        let name = q.get("addonName");
        let mut by_addon: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        for v in ADDON_VERSIONS {
            if name.is_some_and(|n| n != v.addon) {
                continue;
            }
            let clusters: Vec<&&str> = v.clusters.iter().filter(|c| kv.is_none_or(|k| k == **c)).collect();
            if clusters.is_empty() {
                continue;
            }
            let compat: Vec<Value> = clusters
                .iter()
                .map(|c| json!({"clusterVersion": c, "platformVersions": ["*"], "defaultVersion": v.default_for.contains(c)}))
                .collect();
            by_addon.entry(v.addon).or_default().push(json!({
                "addonVersion": v.version,
                "architecture": ["amd64", "arm64"],
                "computeTypes": ["ec2", "hybrid"],
                "compatibilities": compat,
                "requiresConfiguration": false,
                "requiresIamPermissions": v.addon == "vpc-cni",
            }));
        }
        if let Some(n) = name
            && by_addon.is_empty()
            && !ADDON_VERSIONS.iter().any(|v| v.addon == n)
        {
            return Err(EksError::not_found(format!("Addon {n} not found")).with("addonName", n));
        }
        let addons: Vec<Value> = by_addon
            .into_iter()
            .map(|(a, versions)| {
                json!({
                    "addonName": a,
                    "type": "networking",
                    "addonVersions": versions,
                    "publisher": "eks",
                    "owner": "aws",
                    "defaultNamespace": "kube-system",
                })
            })
            .collect();
        let (items, next) = page(&addons, q)?;
        Ok(with_next(json!({"addons": items}), next))
    }

    pub fn describe_addon_configuration(&self, q: &HashMap<String, String>) -> Result<Value, EksError> {
        let (Some(name), Some(version)) = (q.get("addonName"), q.get("addonVersion")) else {
            return Err(EksError::invalid_parameter("addonName and addonVersion are required."));
        };
        if !ADDON_VERSIONS.iter().any(|v| v.addon == name) {
            return Err(EksError::not_found(format!("Addon {name} not found")).with("addonName", name));
        }
        if !ADDON_VERSIONS.iter().any(|v| v.addon == name && v.version == version) {
            return Err(EksError::invalid_parameter(format!(
                "Addon version {version} is not supported for addon {name}"
            ))
            .with("addonName", name));
        }
        let schema = addon_schema(name).unwrap_or(json!({}));
        let mut out = json!({
            "addonName": name,
            "addonVersion": version,
            "configurationSchema": schema.to_string(),
        });
        if name == "vpc-cni" {
            out["podIdentityConfiguration"] = json!([{
                "serviceAccount": "aws-node",
                "recommendedManagedPolicies": ["arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"]
            }]);
        }
        Ok(out)
    }

    /// `UpdateAddon`.
    pub fn update_addon(self: &Arc<Self>, cluster: &str, addon: &str, body: &Value) -> Result<Value, EksError> {
        let token = body
            .get("clientRequestToken")
            .and_then(Value::as_str)
            .map(str::to_string);
        let version = body.get("addonVersion").and_then(Value::as_str);
        let resolve = body.get("resolveConflicts").and_then(Value::as_str);
        if let Some(r) = resolve
            && !matches!(r, "OVERWRITE" | "NONE" | "PRESERVE")
        {
            return Err(EksError::invalid_parameter(format!(
                "resolveConflicts {r} is not valid; valid values are OVERWRITE, NONE, PRESERVE"
            )));
        }
        let config = body.get("configurationValues").and_then(Value::as_str);
        let (update, fresh) = self.with_cluster(cluster, |cs| {
            let a = cs
                .addons
                .get(addon)
                .ok_or_else(|| Self::addon_not_found(addon, cluster))?;
            if let Some(t) = &token
                && let Some(id) = cs.tokens.get(&(addon.to_string(), t.clone()))
                && let Some(u) = cs.updates.iter().find(|u| &u.id == id)
            {
                return Ok((u.clone(), false));
            }
            if a.status == "UPDATING" {
                return Err(EksError::in_use(format!(
                    "Addon {addon} cannot be updated as it is currently in UPDATING state"
                ))
                .with("clusterName", cluster)
                .with("addonName", addon));
            }
            let new_version = version.unwrap_or(&a.version).to_string();
            if !ADDON_VERSIONS
                .iter()
                .any(|v| v.addon == addon && v.version == new_version)
            {
                return Err(EksError::invalid_parameter(format!(
                    "Addon version specified is not supported for {addon}: {new_version}"
                ))
                .with("clusterName", cluster)
                .with("addonName", addon));
            }
            if let Some(text) = config {
                let parsed = schema::parse_configuration(text).map_err(|m| {
                    EksError::invalid_parameter(m)
                        .with("clusterName", cluster)
                        .with("addonName", addon)
                })?;
                let schema = addon_schema(addon).unwrap_or(json!({}));
                schema::validate(&schema, &parsed).map_err(|errs| {
                    EksError::invalid_parameter(format!(
                        "ConfigurationValue provided in request is not supported: Json schema validation failed with error: [{}]",
                        errs.join(", ")
                    ))
                    .with("clusterName", cluster)
                    .with("addonName", addon)
                })?;
            }
            let mut params = vec![("AddonVersion".to_string(), new_version.clone())];
            if let Some(r) = resolve {
                params.push(("ResolveConflicts".to_string(), r.to_string()));
            }
            if let Some(c) = config {
                params.push(("ConfigurationValues".to_string(), c.to_string()));
            }
            let u = Update {
                id: uuid::Uuid::new_v4().to_string(),
                status: "InProgress".into(),
                kind: "AddonUpdate".into(),
                params,
                created_at: epoch_now(),
                errors: vec![],
                target: UpdateTarget::Addon(addon.to_string()),
                apply: UpdateEffect::Addon {
                    version: new_version,
                    configuration_values: config.map(str::to_string),
                },
            };
            if let Some(t) = &token {
                cs.tokens.insert((addon.to_string(), t.clone()), u.id.clone());
            }
            if let Some(a) = cs.addons.get_mut(addon) {
                a.status = "UPDATING".into();
                a.modified_at = epoch_now();
            }
            cs.updates.push(u.clone());
            Ok((u, true))
        })?;
        if fresh {
            self.schedule(cluster, &update.id, self.timings.addon);
        }
        Ok(json!({"update": update_json(&update)}))
    }

    /// Make the cluster's workloads reflect an add-on's version and
    /// configuration (what the EKS add-on manager's apply does).
    pub fn apply_addon_to_cluster(&self, c: &Cluster, a: &Addon) {
        let reg = ecr_registry(&self.region);
        let config = a
            .configuration_values
            .as_deref()
            .and_then(|t| schema::parse_configuration(t).ok())
            .unwrap_or(json!({}));
        let result = match a.name.as_str() {
            "vpc-cni" => {
                let env = aws_node_env(&vpc_cni_default_env(&c.name, &c.vpc_id, &a.version), &config);
                let image = format!("{reg}/amazon-k8s-cni:{}", a.version);
                let init_image = format!("{reg}/amazon-k8s-cni-init:{}", a.version);
                self.mutate_and_roll(DAEMONSET, "aws-node", true, |ds| {
                    set_container(ds, "containers", "aws-node", |c| {
                        c["env"] = json!(env);
                        c["image"] = json!(image);
                    });
                    set_container(ds, "initContainers", "aws-vpc-cni-init", |c| {
                        c["image"] = json!(init_image);
                    });
                })
            }
            "kube-proxy" => {
                let tag = a.version.replacen("-eksbuild", "-minimal-eksbuild", 1);
                let image = format!("{reg}/eks/kube-proxy:{tag}");
                self.mutate_and_roll(DAEMONSET, "kube-proxy", true, |ds| {
                    set_container(ds, "containers", "kube-proxy", |c| c["image"] = json!(image));
                })
            }
            "coredns" => {
                let image = format!("{reg}/eks/coredns:{}", a.version);
                let replicas = config.get("replicaCount").and_then(Value::as_i64);
                self.mutate_and_roll(DEPLOYMENT, "coredns", false, |d| {
                    set_container(d, "containers", "coredns", |c| c["image"] = json!(image));
                    if let Some(r) = replicas {
                        d["spec"]["replicas"] = json!(r);
                    }
                })
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!("applying add-on {} to the cluster: {e}", a.name);
        }
    }

    fn mutate_and_roll(
        &self,
        rt: usize,
        name: &str,
        daemonset: bool,
        f: impl FnOnce(&mut Value),
    ) -> Result<(), crate::kube::ApiError> {
        let api = self.store.dyn_api(rt);
        let mut cur = api.get("kube-system", name)?;
        f(&mut cur);
        api.replace(cur)?;
        if daemonset {
            crate::workloads::rollout_daemonset(&self.store, "kube-system", name)?;
        }
        Ok(())
    }
}

/// Change the named container of a workload's pod template.
fn set_container(obj: &mut Value, list: &str, name: &str, f: impl FnOnce(&mut Value)) {
    if let Some(cs) = obj
        .pointer_mut(&format!("/spec/template/spec/{list}"))
        .and_then(Value::as_array_mut)
        && let Some(c) = cs
            .iter_mut()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
    {
        f(c);
    }
}
