//! Crash points: `PODNET_CRASH_AT` makes podnet kill itself with SIGKILL
//! right after the journal has durably recorded a chosen event. That is
//! exactly `kill -9` at that instant — no destructors run, the lock file
//! stays behind, a request may be in flight — placed deterministically, so
//! tests and rehearsals can prove that `podnet resume` finishes any
//! interrupted migration with the same end state.
//!
//! A point is `<unit>:started`, `<unit>:progress[:<key prefix>]` (a unit's
//! checkpoint: a request token, an update id, a node done) or
//! `<unit>:succeeded`, optionally with `@<n>` to fire at the n-th event it
//! names instead of the first (a unit checkpoints `replaced` once per node);
//! several may be given, separated by commas. A step the plan expands into
//! units names each of them (`replace-karpenter-nodes` is
//! `replace-karpenter-nodes/batch-1`, `…/batch-2`, …), so a point on it
//! fires in the first that reaches it. Unset (the normal case), nothing
//! happens. [`points_of`] lists every point a journal passed, for a crash
//! matrix.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::journal::{Event, Record};
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

/// How many events each point has named so far in this process.
fn seen() -> &'static [AtomicUsize] {
    static SEEN: OnceLock<Vec<AtomicUsize>> = OnceLock::new();
    SEEN.get_or_init(|| points().iter().map(|_| AtomicUsize::new(0)).collect())
}

/// `point@n` → (`point`, n); no suffix is the first occurrence.
fn occurrence(point: &str) -> (&str, usize) {
    match point.rsplit_once('@') {
        Some((base, n)) => match n.parse() {
            Ok(n) => (base, n),
            Err(_) => (point, 1),
        },
        None => (point, 1),
    }
}

/// Called after each durable journal append.
fn after_append(event: &Event) {
    let fired = points().iter().zip(seen()).find(|(p, seen)| {
        let (base, n) = occurrence(p);
        matches(base, event) && seen.fetch_add(1, Ordering::SeqCst) + 1 == n
    });
    let Some((point, _)) = fired else {
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

/// Every crash point a journal passed, in order, each naming exactly one
/// event (`<unit>:progress:<key>@<n>` for the n-th of its kind): what a
/// crash matrix kills at.
pub fn points_of(records: &[Record]) -> Vec<String> {
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    records
        .iter()
        .filter(|r| {
            matches!(
                r.event,
                Event::StepStarted { .. } | Event::StepProgress { .. } | Event::StepSucceeded { .. }
            )
        })
        .map(|r| {
            let l = label(&r.event);
            let n = counts.entry(l.clone()).or_default();
            *n += 1;
            format!("{l}@{n}")
        })
        .collect()
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

    #[test]
    fn every_event_gets_a_point_of_its_own() {
        let at = |event: Event| Record {
            seq: 0,
            at: jiff::Timestamp::UNIX_EPOCH,
            event,
        };
        let records = vec![
            at(Event::StepStarted {
                step: "u".into(),
                attempt: 1,
            }),
            at(progress("u", "replaced")),
            at(progress("u", "replaced")),
            at(Event::StepSucceeded {
                step: "u".into(),
                outputs: serde_json::Value::Null,
            }),
        ];
        assert_eq!(
            points_of(&records),
            [
                "u:started@1",
                "u:progress:replaced@1",
                "u:progress:replaced@2",
                "u:succeeded@1"
            ]
        );
        assert_eq!(occurrence("u:progress:replaced@2"), ("u:progress:replaced", 2));
        assert_eq!(occurrence("u:started"), ("u:started", 1));
        assert!(matches(
            occurrence("u:progress:replaced@2").0,
            &progress("u", "replaced")
        ));
    }
}
