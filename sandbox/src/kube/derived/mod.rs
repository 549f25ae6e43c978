//! Status that the real cluster's controllers derive from pods, kept current
//! synchronously inside each write: PodDisruptionBudget status (the
//! disruption controller's arithmetic), ReplicaSet, Deployment and DaemonSet
//! replica counts. The eviction subresource, which reads these PDB statuses,
//! lives in `kube/eviction.rs`.
//!
//! Pod creation and deletion by controllers (ReplicaSet recreation, the
//! DaemonSet controller) are the next sandbox issue's business; this module
//! only derives numbers from whatever pods exist, so those controllers need
//! not maintain status themselves.
//!
//! The pieces: `pods` (predicates shared with the controllers), `status`
//! (writing a status back), `pdb` and `replicas` (the computations).
//! This module only dispatches: which statuses a write can have changed.

mod pdb;
mod pods;
mod replicas;
mod status;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::resources::{DAEMONSET, DEPLOYMENT, NODE, PDB, POD, REPLICASET};
use super::store::{Inner, Key, Stored};
use pdb::{recompute_pdb, recompute_pdbs_in};
use replicas::{recompute_deployment, recompute_ds, recompute_rs};

pub(crate) use pdb::pdb_selector;
pub use pods::{controller_of, node_selected, pod_ready};
pub(crate) use pods::{deleting, labels_of, pod_phase};
pub(crate) use status::{scaled, set_status};

fn keys_of(inner: &Inner, rt: usize) -> Vec<Key> {
    inner.tables[rt].objects.keys().cloned().collect()
}

/// Recompute every derived status (after bulk loading).
pub(crate) fn recompute_all(inner: &mut Inner) {
    for k in keys_of(inner, REPLICASET) {
        recompute_rs(inner, &k);
    }
    for k in keys_of(inner, DEPLOYMENT) {
        recompute_deployment(inner, &k);
    }
    for k in keys_of(inner, DAEMONSET) {
        recompute_ds(inner, &k);
    }
    for k in keys_of(inner, PDB) {
        recompute_pdb(inner, &k);
    }
}

/// Hook run after every committed write (outside bulk mode).
pub(crate) fn after_write(inner: &mut Inner, rt: usize, old: Option<&Arc<Stored>>, new: Option<&Arc<Stored>>) {
    if inner.bulk_depth > 0 {
        return;
    }
    let any = new.or(old);
    let Some(any) = any else { return };
    let ns = any.namespace().to_string();
    let spec_changed = match (old, new) {
        (Some(o), Some(n)) => o.value.get("spec") != n.value.get("spec"),
        _ => true,
    };
    match rt {
        POD => {
            let vals: Vec<&Value> = [old, new].into_iter().flatten().map(|s| &s.value).collect();
            let mut owners = BTreeMap::new();
            for v in &vals {
                if let Some((kind, name, _)) = controller_of(v) {
                    owners.insert((kind, name), ());
                }
            }
            for (kind, name) in owners.into_keys() {
                let key = (ns.clone(), name);
                match kind.as_str() {
                    "ReplicaSet" => recompute_rs(inner, &key),
                    "DaemonSet" => recompute_ds(inner, &key),
                    _ => {}
                }
            }
            let vals: Vec<Value> = vals.into_iter().cloned().collect();
            let refs: Vec<&Value> = vals.iter().collect();
            recompute_pdbs_in(inner, &ns, &refs);
        }
        PDB => {
            if let Some(n) = new
                && spec_changed
            {
                recompute_pdb(inner, &(ns, n.name().to_string()));
            }
        }
        REPLICASET if spec_changed => {
            if let Some(n) = new {
                recompute_rs(inner, &(ns.clone(), n.name().to_string()));
            } else if let Some((kind, name, _)) = old.and_then(|o| controller_of(&o.value))
                && kind == "Deployment"
            {
                recompute_deployment(inner, &(ns.clone(), name));
            }
            recompute_pdbs_in(inner, &ns, &[]);
        }
        DEPLOYMENT if spec_changed => {
            if let Some(n) = new {
                recompute_deployment(inner, &(ns.clone(), n.name().to_string()));
            }
            recompute_pdbs_in(inner, &ns, &[]);
        }
        DAEMONSET if spec_changed => {
            if let Some(n) = new {
                recompute_ds(inner, &(ns, n.name().to_string()));
            }
        }
        NODE => {
            let labels_changed = match (old, new) {
                (Some(o), Some(n)) => labels_of(&o.value) != labels_of(&n.value),
                _ => true,
            };
            if labels_changed {
                for k in keys_of(inner, DAEMONSET) {
                    recompute_ds(inner, &k);
                }
            }
        }
        _ => {}
    }
}
