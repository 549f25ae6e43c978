//! Watches: the initial state (synthetic ADDED events, or with
//! `sendInitialEvents` the same followed by the `initial-events-end`
//! bookmark), replay from a resourceVersion out of the bounded history (410
//! Expired once it has been trimmed), then live events from the broadcast
//! channel, filtered by namespace and selectors with the apiserver's
//! "stopped matching means DELETED" rule.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::resources;
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{Event, EventType, Store, Stored, field_value, too_large_rv};

/// Options of a watch.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// `None` or `Some(0)`: start with the current state as ADDED events.
    pub resource_version: Option<u64>,
    pub send_initial_events: bool,
}

/// One item a watch yields.
#[derive(Debug, Clone)]
pub enum WatchItem {
    Event(EventType, Arc<Stored>),
    /// A progress marker at this resourceVersion; `initial_end` marks the end
    /// of `sendInitialEvents`.
    Bookmark {
        rv: u64,
        initial_end: bool,
    },
    Error(ApiError),
}

pub struct Watcher {
    rt: usize,
    opts: WatchOptions,
    backlog: VecDeque<WatchItem>,
    rx: broadcast::Receiver<Arc<Event>>,
    /// Events at or below this were covered by the initial state or replay.
    covered_rv: u64,
    /// The newest resourceVersion this watch has seen (of any type).
    pub progress_rv: u64,
    ended: bool,
}

impl Store {
    /// Start a watch on resource type `rt`.
    pub fn watch(&self, rt: usize, opts: WatchOptions) -> Result<Watcher, ApiError> {
        for t in &opts.fields.terms {
            if field_value(rt, &Value::Null, &t.field).is_none() {
                return Err(ApiError::bad_request(format!("field label not supported: {}", t.field)));
            }
        }
        let inner = self.read();
        let rx = inner.tx.subscribe();
        let now = inner.rv;
        let mut backlog = VecDeque::new();
        let matches = |s: &Arc<Stored>| object_matches(rt, &opts, &s.value);
        match opts.resource_version.filter(|rv| *rv != 0 && !opts.send_initial_events) {
            None => {
                let ns = opts.namespace.as_deref().filter(|_| resources::get(rt).namespaced);
                for s in inner.iter_ns(rt, ns).filter(|s| matches(s)) {
                    backlog.push_back(WatchItem::Event(EventType::Added, s.clone()));
                }
                if opts.send_initial_events {
                    backlog.push_back(WatchItem::Bookmark {
                        rv: now,
                        initial_end: true,
                    });
                }
            }
            Some(from) => {
                if from > now {
                    return Err(too_large_rv());
                }
                let oldest = inner.history.front().map(|e| e.rv).unwrap_or(now + 1);
                if from + 1 < oldest && from < now {
                    backlog.push_back(WatchItem::Error(ApiError::expired(format!(
                        "too old resource version: {from} ({now})"
                    ))));
                } else {
                    let start = inner.history.partition_point(|e| e.rv <= from);
                    for ev in inner.history.range(start..) {
                        if let Some(item) = transform(rt, &opts, ev) {
                            backlog.push_back(item);
                        }
                    }
                }
            }
        }
        drop(inner);
        Ok(Watcher {
            rt,
            opts,
            backlog,
            rx,
            covered_rv: now,
            progress_rv: now,
            ended: false,
        })
    }
}

fn object_matches(rt: usize, opts: &WatchOptions, v: &Value) -> bool {
    if let Some(ns) = &opts.namespace
        && resources::get(rt).namespaced
        && v.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns.as_str())
    {
        return false;
    }
    opts.labels.matches_object(v) && opts.fields.matches(|f| field_value(rt, v, f).unwrap_or_default())
}

fn transform(rt: usize, opts: &WatchOptions, ev: &Event) -> Option<WatchItem> {
    if ev.rt != rt {
        return None;
    }
    let new_m = object_matches(rt, opts, &ev.object.value);
    let old_m = ev.old.as_ref().is_some_and(|o| object_matches(rt, opts, &o.value));
    let kind = match (ev.kind, old_m, new_m) {
        (EventType::Added, _, true) => EventType::Added,
        (EventType::Modified, true, true) => EventType::Modified,
        (EventType::Modified, false, true) => EventType::Added,
        (EventType::Modified, true, false) => EventType::Deleted,
        (EventType::Deleted, o, n) if o || n => EventType::Deleted,
        _ => return None,
    };
    Some(WatchItem::Event(kind, ev.object.clone()))
}

impl Watcher {
    /// The next item; `None` once the watch has ended (the channel lagged
    /// too far behind, or the store is gone): clients then re-list or resume
    /// from their last resourceVersion, as they do with a real apiserver.
    pub async fn next(&mut self) -> Option<WatchItem> {
        if let Some(item) = self.backlog.pop_front() {
            if let WatchItem::Event(_, s) = &item {
                self.progress_rv = self.progress_rv.max(s.rv);
            }
            if matches!(item, WatchItem::Error(_)) {
                self.ended = true;
                self.backlog.clear();
            }
            return Some(item);
        }
        if self.ended {
            return None;
        }
        loop {
            match self.rx.recv().await {
                Ok(ev) => {
                    if ev.rv <= self.covered_rv {
                        continue;
                    }
                    self.progress_rv = self.progress_rv.max(ev.rv);
                    if let Some(item) = transform(self.rt, &self.opts, &ev) {
                        return Some(item);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => {
                    self.ended = true;
                    return None;
                }
            }
        }
    }

    /// The watch event as the apiserver streams it (one JSON line).
    pub fn encode(rt: usize, item: &WatchItem) -> Vec<u8> {
        let mut out = Vec::new();
        match item {
            WatchItem::Event(kind, obj) => {
                out.extend_from_slice(b"{\"type\":\"");
                out.extend_from_slice(kind.as_str().as_bytes());
                out.extend_from_slice(b"\",\"object\":");
                out.extend_from_slice(&obj.json);
                out.extend_from_slice(b"}\n");
            }
            WatchItem::Bookmark { rv, initial_end } => {
                let t = resources::get(rt);
                let mut meta = json!({"resourceVersion": rv.to_string()});
                if *initial_end {
                    meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
                }
                let v = json!({"type": "BOOKMARK", "object": {
                    "kind": t.kind, "apiVersion": t.api_version(), "metadata": meta
                }});
                out = serde_json::to_vec(&v).unwrap_or_default();
                out.push(b'\n');
            }
            WatchItem::Error(e) => {
                let v = json!({"type": "ERROR", "object": e.to_status()});
                out = serde_json::to_vec(&v).unwrap_or_default();
                out.push(b'\n');
            }
        }
        out
    }
}
