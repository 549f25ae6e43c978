//! Cluster-level operations of the simulated EKS: registering a cluster
//! (the scenario seeds them) and `ListClusters`/`DescribeCluster`.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::render::{cluster_json, page, with_next};
use super::{Cluster, ClusterState, Eks, EksError};

impl Eks {
    pub fn add_cluster(&self, c: Cluster) {
        self.lock().insert(
            c.name.clone(),
            ClusterState {
                cluster: c,
                nodegroups: BTreeMap::new(),
                addons: BTreeMap::new(),
                updates: Vec::new(),
                tokens: HashMap::new(),
            },
        );
    }

    /// A copy of a cluster's description.
    pub fn cluster(&self, name: &str) -> Option<Cluster> {
        self.lock().get(name).map(|c| c.cluster.clone())
    }

    pub fn list_clusters(&self, q: &HashMap<String, String>) -> Result<Value, EksError> {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        let (items, next) = page(&names, q)?;
        Ok(with_next(json!({"clusters": items}), next))
    }

    pub fn describe_cluster(&self, name: &str) -> Result<Value, EksError> {
        self.with_cluster(name, |cs| Ok(json!({"cluster": cluster_json(&cs.cluster)})))
    }
}
