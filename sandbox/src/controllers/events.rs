//! core/v1 Events as the real components record them: one object per
//! (object, reason), its `count` and `lastTimestamp` bumped when the same
//! thing happens again, at most once per [`super::Behaviour::event_interval`]
//! of simulated time so a stuck pod does not flood the store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Ctx, edit, s};
use crate::kube::ops::now_rfc3339;
use crate::kube::resources::EVENT;
use crate::kube::{Store, WriteOptions};

#[derive(Default)]
pub struct Recorder {
    /// (involved uid, component/reason) → (event namespace, event name, last
    /// emitted).
    seen: Mutex<HashMap<(String, String), Recorded>>,
}

/// Where an event lives (namespace, name) and when it was last emitted.
type Recorded = (String, String, Duration);

/// Who reports an event.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    Scheduler,
    Kubelet(&'a str),
    Karpenter,
    NodeController,
    ReplicaSetController,
    DaemonSetController,
}

impl Source<'_> {
    fn component(&self) -> &'static str {
        match self {
            Source::Scheduler => "default-scheduler",
            Source::Kubelet(_) => "kubelet",
            Source::Karpenter => "karpenter",
            Source::NodeController => "node-controller",
            Source::ReplicaSetController => "replicaset-controller",
            Source::DaemonSetController => "daemonset-controller",
        }
    }
}

impl Recorder {
    /// Record `reason` on `obj` (any object with apiVersion/kind/metadata).
    pub fn emit(&self, ctx: &Ctx, obj: &Value, warning: bool, reason: &str, message: &str, source: Source<'_>) {
        let uid = s(obj, "/metadata/uid").to_string();
        // One event per reporting component too, as the apiserver's
        // aggregation keys on the source: the scheduler's FailedScheduling
        // must not swallow Karpenter's.
        let key = (uid.clone(), format!("{}/{reason}", source.component()));
        let now = ctx.now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((ns, name, last)) = seen.get(&key).cloned() {
            if now.saturating_sub(last) < ctx.behaviour.event_interval {
                return;
            }
            let ts = now_rfc3339();
            let msg = message.to_string();
            let bumped = edit(&ctx.store, EVENT, &ns, &name, |e| {
                let count = e.get("count").and_then(Value::as_i64).unwrap_or(1);
                e["count"] = json!(count + 1);
                e["lastTimestamp"] = json!(ts);
                e["message"] = json!(msg);
            });
            if bumped.is_ok() {
                seen.insert(key, (ns, name, now));
                return;
            }
        }
        if let Some((ns, name)) = create(&ctx.store, obj, warning, reason, message, source) {
            seen.insert(key, (ns, name, now));
        }
    }

    /// Forget an object's events (it was deleted).
    pub fn forget(&self, uid: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|(u, _), _| u != uid);
    }
}

fn create(
    store: &Store,
    obj: &Value,
    warning: bool,
    reason: &str,
    message: &str,
    source: Source<'_>,
) -> Option<(String, String)> {
    let ns = match s(obj, "/metadata/namespace") {
        "" => "default",
        n => n,
    }
    .to_string();
    let name = format!(
        "{}.{:x}",
        s(obj, "/metadata/name"),
        uuid::Uuid::new_v4().as_u128() & 0xffff_ffff_ffff_ffff
    );
    let ts = now_rfc3339();
    let mut src = json!({"component": source.component()});
    if let Source::Kubelet(host) = source {
        src["host"] = json!(host);
    }
    let ev = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {
            "apiVersion": s(obj, "/apiVersion"),
            "kind": s(obj, "/kind"),
            "name": s(obj, "/metadata/name"),
            "namespace": obj.pointer("/metadata/namespace").cloned().unwrap_or(Value::Null),
            "uid": s(obj, "/metadata/uid"),
            "resourceVersion": s(obj, "/metadata/resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "source": src,
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "count": 1,
        "type": if warning { "Warning" } else { "Normal" },
        "reportingComponent": source.component(),
        "reportingInstance": "",
    });
    match store.create(EVENT, &ns, ev, &WriteOptions::internal()) {
        Ok(_) => Some((ns, name)),
        Err(e) => {
            tracing::debug!("recording event {reason}: {e}");
            None
        }
    }
}
