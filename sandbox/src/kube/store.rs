//! The in-memory object store behind the Kubernetes API: objects as JSON
//! (each kept as an `Arc` with its serialized bytes, so listing 30,000 pods
//! copies pointers, not objects), one global monotonically increasing
//! resourceVersion, secondary indexes (pods by node, objects by controller
//! owner), a bounded event history for watches that resume from a
//! resourceVersion, and a broadcast channel for live watches.
//!
//! Every write — HTTP or in-process — ends in [`Inner::commit`], which bumps
//! the resourceVersion, updates the indexes and publishes the event; the
//! write semantics (validation, conflicts, finalizers) live in `ops.rs`,
//! derived status (PDBs, workloads) in `derived/`, and the list call's
//! options, tokens and field values in `listing.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::broadcast;

pub(crate) use super::listing::too_large_rv;
pub use super::listing::{ListOptions, ListResult, field_value};
use super::listing::{decode_token, encode_token};
use super::resources::{self, POD, ResourceType};
use super::status::ApiError;

/// (namespace, name); the namespace is empty for cluster-scoped objects.
pub type Key = (String, String);

pub use super::stored::{Stored, meta_str};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub rt: usize,
    pub kind: EventType,
    pub object: Arc<Stored>,
    /// The previous state (for MODIFIED and DELETED), so selector-filtered
    /// watches can turn "stopped matching" into DELETED.
    pub old: Option<Arc<Stored>>,
}

#[derive(Debug, Default)]
pub(crate) struct Table {
    pub objects: BTreeMap<Key, Arc<Stored>>,
}

pub(crate) struct Inner {
    pub rv: u64,
    pub tables: Vec<Table>,
    pub pods_by_node: HashMap<String, BTreeSet<Key>>,
    /// controller-owner uid → dependents (rt, key); also used by GC.
    pub by_owner: HashMap<String, BTreeSet<(usize, Key)>>,
    pub history: VecDeque<Arc<Event>>,
    history_cap: usize,
    pub tx: broadcast::Sender<Arc<Event>>,
    /// While > 0, derived-status hooks are deferred (bulk seeding).
    pub bulk_depth: u32,
    /// The API server's reach into the VPC, for admission webhooks; `None`
    /// reaches every address.
    pub control_plane: Option<Arc<crate::control_plane::ControlPlane>>,
}

/// How many past events a watch can resume from.
const HISTORY: usize = 200_000;
const BROADCAST: usize = 65_536;

fn owner_uids(v: &Value) -> Vec<String> {
    v.get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|o| o.get("uid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn node_of(v: &Value) -> Option<&str> {
    v.get("spec")
        .and_then(|s| s.get("nodeName"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

impl Inner {
    fn unindex(&mut self, rt: usize, key: &Key, v: &Value) {
        if rt == POD
            && let Some(n) = node_of(v)
            && let Some(set) = self.pods_by_node.get_mut(n)
        {
            set.remove(key);
            if set.is_empty() {
                self.pods_by_node.remove(n);
            }
        }
        for uid in owner_uids(v) {
            if let Some(set) = self.by_owner.get_mut(&uid) {
                set.remove(&(rt, key.clone()));
                if set.is_empty() {
                    self.by_owner.remove(&uid);
                }
            }
        }
    }

    fn index(&mut self, rt: usize, key: &Key, v: &Value) {
        if rt == POD
            && let Some(n) = node_of(v)
        {
            self.pods_by_node.entry(n.to_string()).or_default().insert(key.clone());
        }
        for uid in owner_uids(v) {
            self.by_owner.entry(uid).or_default().insert((rt, key.clone()));
        }
    }

    /// Write (or with `value == None`, remove) one object: bump the
    /// resourceVersion, stamp it, update indexes, record and publish the
    /// event. Returns the stored object (for a delete: the final state).
    pub fn commit(&mut self, rt: usize, key: Key, value: Option<Value>, deleted_final: Option<Value>) -> Arc<Stored> {
        self.rv += 1;
        let rv = self.rv;
        let old = self.tables[rt].objects.get(&key).cloned();
        if let Some(o) = &old {
            self.unindex(rt, &key, &o.value);
        }
        let (kind, stored) = match value {
            Some(mut v) => {
                set_rv(&mut v, rv);
                let stored = Stored::new(v, rv);
                self.index(rt, &key, &stored.value);
                self.tables[rt].objects.insert(key, stored.clone());
                let kind = if old.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                (kind, stored)
            }
            None => {
                self.tables[rt].objects.remove(&key);
                let mut v = deleted_final
                    .or_else(|| old.as_ref().map(|o| o.value.clone()))
                    .unwrap_or(Value::Null);
                set_rv(&mut v, rv);
                (EventType::Deleted, Stored::new(v, rv))
            }
        };
        let ev = Arc::new(Event {
            rv,
            rt,
            kind,
            object: stored.clone(),
            old,
        });
        if self.history.len() >= self.history_cap {
            self.history.pop_front();
        }
        self.history.push_back(ev.clone());
        // No receivers is fine: nobody watches yet.
        let _ = self.tx.send(ev);
        stored
    }

    pub fn get(&self, rt: usize, ns: &str, name: &str) -> Option<Arc<Stored>> {
        self.tables[rt]
            .objects
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of `rt` in namespace `ns` (all namespaces when `None`).
    pub fn iter_ns<'a>(&'a self, rt: usize, ns: Option<&'a str>) -> Box<dyn Iterator<Item = &'a Arc<Stored>> + 'a> {
        let objects = &self.tables[rt].objects;
        match ns {
            Some(ns) => Box::new(
                objects
                    .range((ns.to_string(), String::new())..)
                    .take_while(move |((n, _), _)| n == ns)
                    .map(|(_, v)| v),
            ),
            None => Box::new(objects.values()),
        }
    }

    /// Dependents of an owner uid.
    pub fn dependents(&self, uid: &str) -> Vec<(usize, Key)> {
        self.by_owner
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn namespace_exists(&self, ns: &str) -> bool {
        self.tables[resources::NAMESPACE]
            .objects
            .contains_key(&(String::new(), ns.to_string()))
    }

    /// Is a custom resource type served (its CRD exists)?
    pub fn crd_exists(&self, rt: &ResourceType) -> bool {
        rt.is_builtin()
            || self.tables[resources::CRD]
                .objects
                .contains_key(&(String::new(), rt.crd_name()))
    }
}

fn set_rv(v: &mut Value, rv: u64) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

/// A consistent list result kept for `continue` tokens.
struct Snapshot {
    created: Instant,
    rv: u64,
    items: Arc<Vec<Arc<Stored>>>,
}

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    pub(crate) inner: RwLock<Inner>,
    snapshots: Mutex<(u64, HashMap<u64, Snapshot>)>,
}

/// How long a `continue` token stays valid (the apiserver's etcd compaction
/// interval is 5 minutes).
const SNAPSHOT_TTL: Duration = Duration::from_secs(300);
const MAX_SNAPSHOTS: usize = 64;

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(BROADCAST);
        let inner = Inner {
            rv: 1000,
            tables: resources::all().iter().map(|_| Table::default()).collect(),
            pods_by_node: HashMap::new(),
            by_owner: HashMap::new(),
            history: VecDeque::new(),
            history_cap: HISTORY,
            tx,
            bulk_depth: 0,
            control_plane: None,
        };
        Store {
            inner: RwLock::new(inner),
            snapshots: Mutex::new((0, HashMap::new())),
        }
    }

    /// Judge admission webhook calls by this control plane's reach.
    pub fn set_control_plane(&self, cp: Arc<crate::control_plane::ControlPlane>) {
        self.write().control_plane = Some(cp);
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.read().rv
    }

    /// Is the resource type served right now (custom ones need their CRD)?
    pub fn served(&self, rt: usize) -> bool {
        self.read().crd_exists(resources::get(rt))
    }

    pub fn get(&self, rt: usize, ns: &str, name: &str) -> Result<Arc<Stored>, ApiError> {
        self.read()
            .get(rt, ns, name)
            .ok_or_else(|| ApiError::not_found(resources::get(rt), name))
    }

    /// Number of objects of a type (all namespaces).
    pub fn count(&self, rt: usize) -> usize {
        self.read().tables[rt].objects.len()
    }

    /// Pods bound to a node, from the index.
    pub fn pods_on_node(&self, node: &str) -> Vec<Arc<Stored>> {
        let inner = self.read();
        inner
            .pods_by_node
            .get(node)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| inner.tables[POD].objects.get(k).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// List objects: namespace, label and field selectors, pagination.
    pub fn list(&self, rt_idx: usize, ns: Option<&str>, opts: &ListOptions) -> Result<ListResult, ApiError> {
        let rt = resources::get(rt_idx);
        if let Some(token) = &opts.continue_token {
            return self.continue_list(token, opts.limit);
        }
        for t in &opts.fields.terms {
            if field_value(rt_idx, &Value::Null, &t.field).is_none() {
                return Err(ApiError::bad_request(format!("field label not supported: {}", t.field)));
            }
        }
        let inner = self.read();
        if let Some(min) = opts.min_rv
            && min > inner.rv
        {
            return Err(too_large_rv());
        }
        if let Some(exact) = opts.exact_rv
            && exact != inner.rv
        {
            return Err(ApiError::expired(format!(
                "too old resource version: {exact} ({})",
                inner.rv
            )));
        }
        let matches = |s: &Arc<Stored>| {
            opts.labels.matches_object(&s.value)
                && opts
                    .fields
                    .matches(|f| field_value(rt_idx, &s.value, f).unwrap_or_default())
        };
        let items: Vec<Arc<Stored>> = match (rt_idx, opts.fields.required("spec.nodeName")) {
            (POD, Some(node)) if !node.is_empty() => inner
                .pods_by_node
                .get(node)
                .map(|keys| {
                    keys.iter()
                        .filter(|(kns, _)| ns.is_none_or(|n| n == kns))
                        .filter_map(|k| inner.tables[POD].objects.get(k))
                        .filter(|s| matches(s))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
            _ => inner
                .iter_ns(rt_idx, ns.filter(|_| rt.namespaced))
                .filter(|s| matches(s))
                .cloned()
                .collect(),
        };
        let rv = inner.rv;
        drop(inner);
        Ok(self.paginate(Arc::new(items), rv, 0, opts.limit))
    }

    fn paginate(&self, all: Arc<Vec<Arc<Stored>>>, rv: u64, offset: usize, limit: Option<usize>) -> ListResult {
        let limit = limit.filter(|l| *l > 0);
        let end = limit.map_or(all.len(), |l| (offset + l).min(all.len()));
        let page: Vec<Arc<Stored>> = all.get(offset..end).map(<[_]>::to_vec).unwrap_or_default();
        if end >= all.len() {
            return ListResult {
                items: page,
                rv,
                continue_token: None,
                remaining: None,
            };
        }
        let remaining = (all.len() - end) as u64;
        let mut snaps = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        snaps.1.retain(|_, s| now.duration_since(s.created) < SNAPSHOT_TTL);
        if snaps.1.len() >= MAX_SNAPSHOTS
            && let Some(oldest) = snaps.1.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k)
        {
            snaps.1.remove(&oldest);
        }
        // Reuse the snapshot id when continuing a list.
        let id = match snaps.1.iter().find(|(_, s)| Arc::ptr_eq(&s.items, &all)) {
            Some((id, _)) => *id,
            None => {
                snaps.0 += 1;
                let id = snaps.0;
                snaps.1.insert(
                    id,
                    Snapshot {
                        created: now,
                        rv,
                        items: all,
                    },
                );
                id
            }
        };
        let token = encode_token(&json!({"v": "sandbox/1", "rv": rv, "id": id, "off": end}));
        ListResult {
            items: page,
            rv,
            continue_token: Some(token),
            remaining: Some(remaining),
        }
    }

    fn continue_list(&self, token: &str, limit: Option<usize>) -> Result<ListResult, ApiError> {
        let parsed =
            decode_token(token).ok_or_else(|| ApiError::bad_request(format!("continue key is not valid: {token}")))?;
        let (Some(rv), Some(id), Some(off)) = (
            parsed.get("rv").and_then(Value::as_u64),
            parsed.get("id").and_then(Value::as_u64),
            parsed.get("off").and_then(Value::as_u64),
        ) else {
            return Err(ApiError::bad_request("continue key is not valid"));
        };
        let snap = {
            let snaps = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
            snaps
                .1
                .get(&id)
                .filter(|s| s.rv == rv && s.created.elapsed() < SNAPSHOT_TTL)
                .map(|s| s.items.clone())
        };
        let Some(items) = snap else {
            return Err(ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ));
        };
        Ok(self.paginate(items, rv, off as usize, limit))
    }
}
