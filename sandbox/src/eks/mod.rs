//! The simulated EKS control plane: clusters, managed node groups, add-ons
//! and their updates, with the REST-JSON shapes of the EKS API (see
//! `handlers.rs` for the routes). Updates are recorded with their
//! `clientRequestToken`, stay `InProgress` for a while on the scaled clock
//! and then become `Successful`; a vpc-cni update then writes its `env`
//! values into the aws-node DaemonSet and rolls it.
//!
//! Node group rollouts themselves (new instances, drains) belong to the next
//! sandbox issue: it turns `auto_complete_nodegroup_updates` off and calls
//! [`Eks::complete_update`] when its rollout ends.

mod addon_catalog;
mod addons;
pub mod authorize;
mod clusters;
pub mod error;
pub mod handlers;
mod model;
mod nodegroups;
mod render;
pub mod schema;
mod updates;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::clock::Clock;
use crate::kube::Store;
pub use addon_catalog::{ADDON_VERSIONS, AddonVersion, addon_schema, aws_node_env, ecr_registry, vpc_cni_default_env};
pub use error::EksError;
pub use model::{Addon, Cluster, LaunchTemplateRef, Nodegroup, Timings, Update, UpdateEffect, UpdateTarget, epoch_now};
pub use render::{addon_json, cluster_json, nodegroup_json, update_json};

struct ClusterState {
    cluster: Cluster,
    nodegroups: BTreeMap<String, Nodegroup>,
    addons: BTreeMap<String, Addon>,
    updates: Vec<Update>,
    tokens: HashMap<(String, String), String>,
}

/// The simulated EKS service.
pub struct Eks {
    clusters: Mutex<BTreeMap<String, ClusterState>>,
    pub region: String,
    pub account: String,
    pub clock: Clock,
    pub timings: Timings,
    store: Arc<Store>,
    /// When false, node group updates stay InProgress until someone calls
    /// [`Eks::complete_update`] (the rollout controller of the next issue).
    pub auto_complete_nodegroup_updates: AtomicBool,
}

impl Eks {
    pub fn new(store: Arc<Store>, region: &str, account: &str, clock: Clock, timings: Timings) -> Self {
        Eks {
            clusters: Mutex::new(BTreeMap::new()),
            region: region.to_string(),
            account: account.to_string(),
            clock,
            timings,
            store,
            auto_complete_nodegroup_updates: AtomicBool::new(true),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, ClusterState>> {
        self.clusters.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn arn(&self, resource: &str) -> String {
        format!("arn:aws:eks:{}:{}:{resource}", self.region, self.account)
    }

    fn with_cluster<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut ClusterState) -> Result<R, EksError>,
    ) -> Result<R, EksError> {
        let mut all = self.lock();
        let cs = all.get_mut(name).ok_or_else(|| EksError::cluster_not_found(name))?;
        f(cs)
    }
}
