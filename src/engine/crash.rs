//! Crash points: `PODNET_CRASH_AT` makes podnet kill itself with SIGKILL
//! right after the journal has durably recorded a chosen event. That is
//! exactly `kill -9` at that instant — no destructors run, the lock file
//! stays behind, a request may be in flight — placed deterministically, so
//! tests and rehearsals can prove that `podnet resume` finishes any
//! interrupted migration with the same end state.
//!
//! A point is `<unit>:started`, `<unit>:progress[:<key prefix>]` (a unit's
//! checkpoint: a request token, an update id, a node done) or
//! `<unit>:succeeded`; several may be given, separated by commas. A step
//! the plan expands into units names each of them
//! (`replace-karpenter-nodes` is `replace-karpenter-nodes/batch-1`, `…/batch-2`,
//! …), so a point on it fires in the first that reaches it. Unset (the
//! normal case), nothing happens.

use std::sync::OnceLock;

use super::journal::Event;
use super::step::is_unit_of;

/// The environment variable naming the crash points.
pub const ENV: &str = "PODNET_CRASH_AT";

fn points() -> &'static [String] {
    static POINTS: OnceLock<Vec<String>> = OnceLock::new();
    POINTS.get_or_init(|| {
        std::env::var(ENV)
            .map(|v| {
                v.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Installs the crash points as the journal's append observer, when
/// `PODNET_CRASH_AT` names any (called once, by `main`).
pub fn install() {
    if !points().is_empty() {
        super::journal::observe_appends(after_append);
    }
}

/// Called after each durable journal append.
fn after_append(event: &Event) {
    let Some(point) = points().iter().find(|p| matches(p, event)) else {
        return;
    };
    let at = label(event);
    // The point as given, and the unit it fired in when it named a step.
    let unit = if at == *point {
        String::new()
    } else {
        format!(" (at {at})")
    };
    eprintln!("podnet: {ENV}: killing this process (SIGKILL) after {point}{unit}");
    // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}

fn label(event: &Event) -> String {
    match event {
        Event::StepStarted { step, .. } => format!("{step}:started"),
        Event::StepProgress { step, key, .. } => format!("{step}:progress:{key}"),
        Event::StepSucceeded { step, .. } => format!("{step}:succeeded"),
        Event::StepFailed { step, .. } => format!("{step}:failed"),
        Event::StepDrift { step, .. } => format!("{step}:drift"),
        Event::RunStarted { .. } => "run:started".into(),
        Event::RunFinished { .. } => "run:finished".into(),
    }
}

/// Whether crash point `point` names `event`.
pub(crate) fn matches(point: &str, event: &Event) -> bool {
    let mut parts = point.splitn(3, ':');
    let (Some(step), Some(kind)) = (parts.next(), parts.next()) else {
        return false;
    };
    let prefix = parts.next();
    match (event, kind) {
        (Event::StepStarted { step: s, .. }, "started") => is_unit_of(s, step) && prefix.is_none(),
        (Event::StepSucceeded { step: s, .. }, "succeeded") => is_unit_of(s, step) && prefix.is_none(),
        (Event::StepProgress { step: s, key, .. }, "progress") => {
            is_unit_of(s, step) && prefix.is_none_or(|p| key.starts_with(p))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(step: &str, key: &str) -> Event {
        Event::StepProgress {
            step: step.into(),
            key: key.into(),
            value: serde_json::Value::Null,
        }
    }

    #[test]
    fn points_name_started_progress_and_succeeded_events() {
        let started = Event::StepStarted {
            step: "associate-cidr".into(),
            attempt: 1,
        };
        assert!(matches("associate-cidr:started", &started));
        assert!(!matches("associate-cidr:succeeded", &started));
        assert!(!matches("create-pod-subnets:started", &started));
        assert!(matches(
            "enable-custom-networking:progress",
            &progress("enable-custom-networking", "update-id:1")
        ));
        assert!(matches(
            "enable-custom-networking:progress:update-id",
            &progress("enable-custom-networking", "update-id:1")
        ));
        assert!(!matches(
            "enable-custom-networking:progress:token",
            &progress("enable-custom-networking", "update-id:1")
        ));
        let done = Event::StepSucceeded {
            step: "create-pod-subnets".into(),
            outputs: serde_json::Value::Null,
        };
        assert!(matches("create-pod-subnets:succeeded", &done));
        assert!(!matches("create-pod-subnets", &done), "a point needs an event kind");
        assert!(!matches("", &done));
        let batch = progress("replace-karpenter-nodes/batch-2", "replaced");
        assert!(matches("replace-karpenter-nodes:progress:replaced", &batch));
        assert!(matches("replace-karpenter-nodes/batch-2:progress", &batch));
        assert!(!matches("replace-karpenter-nodes/batch-1:progress", &batch));
        assert!(!matches("replace-karpenter:progress", &batch));
    }
}
