//! Managed node group operations of the simulated EKS: `ListNodegroups`,
//! `DescribeNodegroup`, `UpdateNodegroupVersion`, `UpdateNodegroupConfig`,
//! and applying a node group update's effect once it succeeds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::model::{LaunchTemplateRef, Nodegroup, Update, UpdateEffect, UpdateTarget, epoch_now};
use super::render::{nodegroup_json, page, update_json, with_next};
use super::{Eks, EksError};

impl Eks {
    pub fn add_nodegroup(&self, cluster: &str, ng: Nodegroup) -> Result<(), EksError> {
        let mut all = self.lock();
        let cs = all
            .get_mut(cluster)
            .ok_or_else(|| EksError::cluster_not_found(cluster))?;
        cs.nodegroups.insert(ng.name.clone(), ng);
        Ok(())
    }

    pub fn nodegroup(&self, cluster: &str, name: &str) -> Option<Nodegroup> {
        self.lock().get(cluster).and_then(|c| c.nodegroups.get(name).cloned())
    }

    pub fn list_nodegroups(&self, cluster: &str, q: &HashMap<String, String>) -> Result<Value, EksError> {
        self.with_cluster(cluster, |cs| {
            let names: Vec<String> = cs.nodegroups.keys().cloned().collect();
            let (items, next) = page(&names, q)?;
            Ok(with_next(json!({"nodegroups": items}), next))
        })
    }

    pub(super) fn nodegroup_not_found(ng: &str, cluster: &str) -> EksError {
        EksError::not_found(format!("No node group found for name: {ng}."))
            .with("clusterName", cluster)
            .with("nodegroupName", ng)
    }

    pub fn describe_nodegroup(&self, cluster: &str, ng: &str) -> Result<Value, EksError> {
        self.with_cluster(cluster, |cs| {
            let n = cs
                .nodegroups
                .get(ng)
                .ok_or_else(|| Self::nodegroup_not_found(ng, cluster))?;
            Ok(json!({"nodegroup": nodegroup_json(cluster, n)}))
        })
    }

    /// `UpdateNodegroupVersion`.
    pub fn update_nodegroup_version(
        self: &Arc<Self>,
        cluster: &str,
        ng: &str,
        body: &Value,
    ) -> Result<Value, EksError> {
        let token = body
            .get("clientRequestToken")
            .and_then(Value::as_str)
            .map(str::to_string);
        let lt = body.get("launchTemplate");
        let (update, fresh) = self.with_cluster(cluster, |cs| {
            let cluster_version = cs.cluster.version.clone();
            let n = cs
                .nodegroups
                .get(ng)
                .ok_or_else(|| Self::nodegroup_not_found(ng, cluster))?;
            if let Some(t) = &token
                && let Some(id) = cs.tokens.get(&(ng.to_string(), t.clone()))
                && let Some(u) = cs.updates.iter().find(|u| &u.id == id)
            {
                return Ok((u.clone(), false));
            }
            if n.status != "ACTIVE" {
                return Err(EksError::in_use(format!(
                    "Nodegroup {ng} cannot be updated as it is currently in {} state",
                    n.status
                ))
                .with("clusterName", cluster)
                .with("nodegroupName", ng));
            }
            // A custom AMI group is updated only through its launch template
            // (EKS API Reference, UpdateNodegroupVersion: "If you specify
            // launchTemplate, and your launch template uses a custom AMI,
            // then don't specify version, or the node group update will
            // fail"; without launchTemplate EKS answers as modelled here).
            if n.ami_type == "CUSTOM" {
                if lt.is_none() {
                    return Err(EksError::invalid_parameter(
                        "Launch template details can't be null for Custom ami type node group".to_string(),
                    )
                    .with("nodegroupName", ng));
                }
                if body.get("version").is_some() || body.get("releaseVersion").is_some() {
                    return Err(EksError::invalid_parameter(
                        "You cannot specify a Kubernetes version or AMI release version for a node group that uses a custom AMI in its launch template".to_string(),
                    )
                    .with("nodegroupName", ng));
                }
            }
            let mut params = Vec::new();
            let mut lt_version = None;
            if let Some(lt) = lt {
                lt_version = Some(launch_template_version(
                    cluster,
                    ng,
                    n.launch_template.as_ref(),
                    lt,
                    &mut params,
                )?);
            }
            let version = body.get("version").and_then(Value::as_str).map(str::to_string);
            if let Some(v) = &version {
                if *v != cluster_version && *v != n.version {
                    return Err(EksError::invalid_parameter(format!(
                        "Requested Nodegroup version {v} is not supported for cluster version {cluster_version}"
                    ))
                    .with("nodegroupName", ng));
                }
                params.push(("Version".to_string(), v.clone()));
            }
            let release = body.get("releaseVersion").and_then(Value::as_str).map(str::to_string);
            if let Some(r) = &release {
                params.push(("ReleaseVersion".to_string(), r.clone()));
            }
            if lt.is_none() && version.is_none() && release.is_none() {
                params.push(("Version".to_string(), n.version.clone()));
                params.push(("ReleaseVersion".to_string(), n.release_version.clone()));
            }
            let u = Update {
                id: uuid::Uuid::new_v4().to_string(),
                status: "InProgress".into(),
                kind: "VersionUpdate".into(),
                params,
                created_at: epoch_now(),
                errors: vec![],
                target: UpdateTarget::Nodegroup(ng.to_string()),
                apply: UpdateEffect::NodegroupVersion {
                    launch_template_version: lt_version,
                    release_version: release,
                    version,
                    force: body.get("force").and_then(Value::as_bool).unwrap_or(false),
                },
            };
            if let Some(t) = &token {
                cs.tokens.insert((ng.to_string(), t.clone()), u.id.clone());
            }
            if let Some(n) = cs.nodegroups.get_mut(ng) {
                n.status = "UPDATING".into();
                n.modified_at = epoch_now();
            }
            cs.updates.push(u.clone());
            Ok((u, true))
        })?;
        if fresh && self.auto_complete_nodegroup_updates.load(Ordering::SeqCst) {
            self.schedule(cluster, &update.id, self.timings.nodegroup_version);
        }
        Ok(json!({"update": update_json(&update)}))
    }

    /// `UpdateNodegroupConfig`.
    pub fn update_nodegroup_config(self: &Arc<Self>, cluster: &str, ng: &str, body: &Value) -> Result<Value, EksError> {
        let token = body
            .get("clientRequestToken")
            .and_then(Value::as_str)
            .map(str::to_string);
        let (update, fresh) = self.with_cluster(cluster, |cs| {
            let n = cs
                .nodegroups
                .get(ng)
                .ok_or_else(|| Self::nodegroup_not_found(ng, cluster))?;
            if let Some(t) = &token
                && let Some(id) = cs.tokens.get(&(ng.to_string(), t.clone()))
                && let Some(u) = cs.updates.iter().find(|u| &u.id == id)
            {
                return Ok((u.clone(), false));
            }
            if n.status != "ACTIVE" {
                return Err(EksError::in_use(format!(
                    "Nodegroup {ng} cannot be updated as it is currently in {} state",
                    n.status
                ))
                .with("clusterName", cluster)
                .with("nodegroupName", ng));
            }
            let mut params = Vec::new();
            let mut scaling = None;
            if let Some(sc) = body.get("scalingConfig") {
                scaling = Some(scaling_change(cluster, ng, n, sc, &mut params)?);
            }
            let (add_labels, remove_labels) = body
                .get("labels")
                .map(|l| label_changes(l, &mut params))
                .unwrap_or_default();
            let mut max_unavailable = None;
            if let Some(uc) = body.get("updateConfig") {
                if let Some(m) = uc.get("maxUnavailable").and_then(Value::as_i64) {
                    max_unavailable = Some(m);
                    params.push(("MaxUnavailable".to_string(), m.to_string()));
                }
                if let Some(p) = uc.get("maxUnavailablePercentage").and_then(Value::as_i64) {
                    params.push(("MaxUnavailablePercentage".to_string(), p.to_string()));
                }
            }
            if params.is_empty() {
                return Err(
                    EksError::invalid_parameter("No changes needed for the nodegroup configuration.")
                        .with("clusterName", cluster)
                        .with("nodegroupName", ng),
                );
            }
            let u = Update {
                id: uuid::Uuid::new_v4().to_string(),
                status: "InProgress".into(),
                kind: "ConfigUpdate".into(),
                params,
                created_at: epoch_now(),
                errors: vec![],
                target: UpdateTarget::Nodegroup(ng.to_string()),
                apply: UpdateEffect::NodegroupConfig {
                    scaling,
                    add_labels,
                    remove_labels,
                    max_unavailable,
                },
            };
            if let Some(t) = &token {
                cs.tokens.insert((ng.to_string(), t.clone()), u.id.clone());
            }
            if let Some(n) = cs.nodegroups.get_mut(ng) {
                n.status = "UPDATING".into();
                n.modified_at = epoch_now();
            }
            cs.updates.push(u.clone());
            Ok((u, true))
        })?;
        if fresh {
            self.schedule(cluster, &update.id, self.timings.nodegroup_config);
        }
        Ok(json!({"update": update_json(&update)}))
    }
}

/// `UpdateNodegroupVersion`'s `launchTemplate`: it must name the node
/// group's own template; yields the requested version (`$Default` if none).
fn launch_template_version(
    cluster: &str,
    ng: &str,
    current: Option<&LaunchTemplateRef>,
    lt: &Value,
    params: &mut Vec<(String, String)>,
) -> Result<String, EksError> {
    let Some(cur) = current else {
        return Err(EksError::invalid_parameter(
            "You cannot specify a launch template for a node group that was not created with one.",
        )
        .with("clusterName", cluster)
        .with("nodegroupName", ng));
    };
    let id = lt.get("id").and_then(Value::as_str);
    let name = lt.get("name").and_then(Value::as_str);
    if id.is_some_and(|i| i != cur.id) || name.is_some_and(|x| x != cur.name) {
        return Err(EksError::invalid_parameter(
            "The launch template specified does not match the node group's launch template.",
        )
        .with("clusterName", cluster)
        .with("nodegroupName", ng));
    }
    let v = lt
        .get("version")
        .and_then(Value::as_str)
        .unwrap_or("$Default")
        .to_string();
    params.push(("LaunchTemplateName".to_string(), cur.name.clone()));
    params.push(("LaunchTemplateVersion".to_string(), v.clone()));
    Ok(v)
}

/// `UpdateNodegroupConfig`'s `scalingConfig`, with unset sizes kept from
/// the node group: the new (min, max, desired), once they are consistent.
fn scaling_change(
    cluster: &str,
    ng: &str,
    n: &Nodegroup,
    sc: &Value,
    params: &mut Vec<(String, String)>,
) -> Result<(i64, i64, i64), EksError> {
    let get = |k: &str, d: i64| sc.get(k).and_then(Value::as_i64).unwrap_or(d);
    let (min, max, desired) = (
        get("minSize", n.min_size),
        get("maxSize", n.max_size),
        get("desiredSize", n.desired_size),
    );
    if min < 0 || max < 1 || min > max || desired < min || desired > max {
        return Err(EksError::invalid_parameter(
            "Minimum capacity must be less than or equal to desired capacity, and desired capacity must be less than or equal to maximum capacity.",
        )
        .with("clusterName", cluster)
        .with("nodegroupName", ng));
    }
    for (k, v) in [("MinSize", min), ("MaxSize", max), ("DesiredSize", desired)] {
        if sc.get(format!("{}{}", k[..1].to_lowercase(), &k[1..])).is_some() {
            params.push((k.to_string(), v.to_string()));
        }
    }
    Ok((min, max, desired))
}

/// `UpdateNodegroupConfig`'s `labels`: the labels to add or update and the
/// ones to remove.
fn label_changes(l: &Value, params: &mut Vec<(String, String)>) -> (BTreeMap<String, String>, Vec<String>) {
    let mut add_labels = BTreeMap::new();
    let mut remove_labels = Vec::new();
    if let Some(m) = l.get("addOrUpdateLabels").and_then(Value::as_object) {
        for (k, v) in m {
            add_labels.insert(k.clone(), v.as_str().unwrap_or("").to_string());
        }
        params.push(("LabelsToAdd".to_string(), Value::Object(m.clone()).to_string()));
    }
    if let Some(a) = l.get("removeLabels").and_then(Value::as_array) {
        remove_labels = a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect();
        params.push(("LabelsToRemove".to_string(), json!(remove_labels).to_string()));
    }
    (add_labels, remove_labels)
}

pub(super) fn apply_nodegroup_effect(n: &mut Nodegroup, effect: &UpdateEffect) {
    match effect {
        UpdateEffect::NodegroupVersion {
            launch_template_version,
            release_version,
            version,
            ..
        } => {
            if let (Some(v), Some(lt)) = (launch_template_version, n.launch_template.as_mut()) {
                lt.version = v.clone();
            }
            if let Some(r) = release_version {
                n.release_version = r.clone();
            }
            if let Some(v) = version {
                n.version = v.clone();
            }
        }
        UpdateEffect::NodegroupConfig {
            scaling,
            add_labels,
            remove_labels,
            max_unavailable,
        } => {
            if let Some((min, max, desired)) = scaling {
                n.min_size = *min;
                n.max_size = *max;
                n.desired_size = *desired;
            }
            for (k, v) in add_labels {
                n.labels.insert(k.clone(), v.clone());
            }
            for k in remove_labels {
                n.labels.remove(k);
            }
            if let Some(m) = max_unavailable {
                n.max_unavailable = *m;
            }
        }
        UpdateEffect::Addon { .. } => {}
    }
}
