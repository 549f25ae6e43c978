//! Update bookkeeping of the simulated EKS: `ListUpdates`,
//! `DescribeUpdate`, and the completion of an update on the scaled clock
//! (or by the node group rollout controller), which applies its effect.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::model::{Update, UpdateEffect, UpdateTarget, epoch_now};
use super::nodegroups::apply_nodegroup_effect;
use super::render::{page, update_json, with_next};
use super::{Eks, EksError};

impl Eks {
    pub fn updates(&self, cluster: &str) -> Vec<Update> {
        self.lock().get(cluster).map(|c| c.updates.clone()).unwrap_or_default()
    }

    pub fn describe_update(&self, cluster: &str, id: &str, q: &HashMap<String, String>) -> Result<Value, EksError> {
        self.with_cluster(cluster, |cs| {
            if let Some(ng) = q.get("nodegroupName")
                && !cs.nodegroups.contains_key(ng)
            {
                return Err(Self::nodegroup_not_found(ng, cluster));
            }
            if let Some(a) = q.get("addonName")
                && !cs.addons.contains_key(a)
            {
                return Err(Self::addon_not_found(a, cluster));
            }
            let want = match (q.get("nodegroupName"), q.get("addonName")) {
                (Some(ng), _) => Some(UpdateTarget::Nodegroup(ng.clone())),
                (None, Some(a)) => Some(UpdateTarget::Addon(a.clone())),
                _ => None,
            };
            let u = cs
                .updates
                .iter()
                .find(|u| u.id == id && want.as_ref() == Some(&u.target))
                .ok_or_else(|| {
                    EksError::not_found(format!("No update found for ID: {id}")).with("clusterName", cluster)
                })?;
            Ok(json!({"update": update_json(u)}))
        })
    }

    pub fn list_updates(&self, cluster: &str, q: &HashMap<String, String>) -> Result<Value, EksError> {
        self.with_cluster(cluster, |cs| {
            let want = match (q.get("nodegroupName"), q.get("addonName")) {
                (Some(ng), _) => {
                    if !cs.nodegroups.contains_key(ng) {
                        return Err(Self::nodegroup_not_found(ng, cluster));
                    }
                    Some(UpdateTarget::Nodegroup(ng.clone()))
                }
                (None, Some(a)) => {
                    if !cs.addons.contains_key(a) {
                        return Err(Self::addon_not_found(a, cluster));
                    }
                    Some(UpdateTarget::Addon(a.clone()))
                }
                _ => None,
            };
            let ids: Vec<String> = cs
                .updates
                .iter()
                .filter(|u| want.as_ref() == Some(&u.target))
                .map(|u| u.id.clone())
                .collect();
            let (items, next) = page(&ids, q)?;
            Ok(with_next(json!({"updateIds": items}), next))
        })
    }

    pub(super) fn schedule(self: &Arc<Self>, cluster: &str, id: &str, after: Duration) {
        let me = Arc::clone(self);
        let (cluster, id) = (cluster.to_string(), id.to_string());
        // Without a runtime (plain unit tests) the update stays InProgress.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                me.clock.sleep(after).await;
                if let Err(e) = me.complete_update(&cluster, &id, Ok(())) {
                    tracing::warn!("completing update {id}: {e}");
                }
            });
        }
    }

    /// Finish an update: `Ok` makes it Successful and applies its effect,
    /// `Err(errors)` makes it Failed with those `ErrorDetail`s.
    pub fn complete_update(&self, cluster: &str, id: &str, outcome: Result<(), Vec<Value>>) -> Result<(), EksError> {
        let (update, c) = self.with_cluster(cluster, |cs| {
            let i = cs
                .updates
                .iter()
                .position(|u| u.id == id)
                .ok_or_else(|| EksError::not_found(format!("No update found for ID: {id}")))?;
            if cs.updates[i].status != "InProgress" {
                return Ok((None, cs.cluster.clone()));
            }
            let now = epoch_now();
            let u = &mut cs.updates[i];
            match &outcome {
                Ok(()) => u.status = "Successful".into(),
                Err(errors) => {
                    u.status = "Failed".into();
                    u.errors = errors.clone();
                }
            }
            let u = u.clone();
            match (&u.target, &u.apply) {
                (
                    UpdateTarget::Addon(name),
                    UpdateEffect::Addon {
                        version,
                        configuration_values,
                    },
                ) => {
                    if let Some(a) = cs.addons.get_mut(name) {
                        a.modified_at = now;
                        if outcome.is_ok() {
                            a.version = version.clone();
                            if let Some(cv) = configuration_values {
                                a.configuration_values = (!cv.trim().is_empty()).then(|| cv.clone());
                            }
                            a.status = "ACTIVE".into();
                        } else {
                            a.status = "UPDATE_FAILED".into();
                        }
                    }
                }
                (UpdateTarget::Nodegroup(name), effect) => {
                    if let Some(n) = cs.nodegroups.get_mut(name) {
                        n.modified_at = now;
                        n.status = "ACTIVE".into();
                        if outcome.is_ok() {
                            apply_nodegroup_effect(n, effect);
                        }
                    }
                }
                _ => {}
            }
            Ok((Some(u), cs.cluster.clone()))
        })?;
        if let (Some(u), Ok(())) = (update, outcome)
            && let UpdateTarget::Addon(name) = &u.target
        {
            let addon = self.addon(cluster, name);
            if let Some(a) = addon {
                self.apply_addon_to_cluster(&c, &a);
            }
        }
        Ok(())
    }
}
