//! `podnet status`: what the journal says: every unit, its state, times,
//! outputs and last error, the unit in flight, and whether the apply lock
//! is held; and a rollback's units when one was journaled. Where the migration stands is the engine's [`Overview`]; this
//! module only prints it.
use anyhow::Result;
use jiff::Timestamp;
use serde_json::json;

use super::{Context, ExitStatus};
use crate::engine::lock::LockState;
use crate::engine::{JournalState, Overview, SavedPlan, StateDir, StepState, StepStatus, journal};
use crate::output::{Printer, paint, style, table};

pub fn run(ctx: &Context) -> Result<ExitStatus> {
    let p = &ctx.printer;
    let state = ctx.state_dir()?;
    state.pull()?;
    let lock_state = state.inspect_lock()?;
    let lock_json = match &lock_state {
        LockState::Free => json!({ "state": "free" }),
        LockState::HeldLive(h) => json!({ "state": "held", "holder": h }),
        LockState::Left(h) => json!({ "state": "left", "holder": h }),
    };
    if !state.has_journal() {
        p.json(&json!({ "state_dir": state.location(), "migration": "none", "lock": lock_json }));
        p.out(if state.remote().is_some() {
            format!("No migration is recorded in the shared state {}.", state.location())
        } else {
            format!(
                "No migration has been applied from this machine (state directory {}).",
                state.location()
            )
        });
        return Ok(ExitStatus::Success);
    }
    // Status reads a damaged journal too far as it can be read; it reports
    // the damage instead of failing without output.
    let records = match journal::read(&state.journal_path()) {
        Ok(r) => r,
        Err(e) => {
            p.json(&json!({ "state_dir": state.location(), "migration": "unreadable", "error": e.to_string(), "lock": lock_json }));
            p.error(&e);
            return Ok(ExitStatus::Failure);
        }
    };
    let folded = JournalState::from_records(&records);
    let saved = state.load_plan().ok().flatten();
    let overview = Overview::of(&folded, saved.as_ref());
    let phase = overview.phase.as_str();
    let steps = &overview.units;
    let rollback = rollback_overview(p, &state);
    p.json(&json!({
        "state_dir": state.location(),
        "migration": phase,
        "cluster": saved.as_ref().map(|s| &s.cluster),
        "region": saved.as_ref().map(|s| &s.region),
        "plan_fingerprint": saved.as_ref().map(|s| &s.fingerprint),
        "runs": folded.runs,
        "steps": steps,
        "in_flight": overview.in_flight,
        "lock": lock_json,
        "rollback": rollback.as_ref().map(|r| json!({
            "phase": r.phase.as_str(),
            "steps": r.units,
            "in_flight": r.in_flight,
        })),
    }));
    if p.is_json() {
        return Ok(ExitStatus::Success);
    }
    print_header(p, &state, saved.as_ref(), phase, &lock_state, &overview);
    print_units(p, steps);
    for s in steps {
        print_unit_details(p, s);
    }
    if let Some(r) = &rollback {
        p.out("");
        p.out(format!("Rollback: {}", paint(style::BOLD, r.phase.as_str())));
        if let Some(unit) = &r.in_flight {
            p.out(format!("In flight or interrupted: {}", paint(style::BOLD, unit)));
        }
        print_units(p, &r.units);
        for s in r.units.iter().filter(|s| s.status == StepStatus::Failed) {
            print_unit_details(p, s);
        }
    }
    let rollback_open = rollback.as_ref().is_some_and(|r| r.phase.as_str() != "complete");
    if rollback_open {
        p.out("");
        p.out("Continue the rollback with `podnet rollback` (or `podnet resume`).");
    } else if phase != "complete" {
        p.out("");
        p.out("Continue with `podnet resume`.");
    }
    Ok(ExitStatus::Success)
}

/// The rollback journaled beside the apply, when there is one (a journal
/// that does not read is reported, and left out).
fn rollback_overview(p: &Printer, state: &StateDir) -> Option<Overview> {
    let rstate = crate::rollback::saga::state_dir(state);
    if !rstate.has_journal() {
        return None;
    }
    let records = match journal::read(&rstate.journal_path()) {
        Ok(r) => r,
        Err(e) => {
            p.error(format!("the rollback journal does not read: {e}"));
            return None;
        }
    };
    let folded = JournalState::from_records(&records);
    let saved = rstate.load_plan().ok().flatten();
    Some(Overview::of(&folded, saved.as_ref()))
}

/// Whose migration, where it stands, the lock, and the unit in flight.
fn print_header(
    p: &Printer,
    state: &StateDir,
    saved: Option<&SavedPlan>,
    phase: &str,
    lock_state: &LockState,
    overview: &Overview,
) {
    if let Some(plan) = saved {
        p.out(format!(
            "Migration of {} ({}): {}",
            plan.cluster,
            plan.region,
            paint(style::BOLD, phase)
        ));
    } else {
        p.out(format!("Migration: {}", paint(style::BOLD, phase)));
    }
    p.out(format!("State: {}", state.location()));
    // A holder on another machine may well be running: nobody here can
    // tell, so it is neither called left behind nor interrupted.
    let elsewhere = matches!(lock_state, LockState::Left(h) if !h.is_local());
    match lock_state {
        LockState::Free => {}
        LockState::HeldLive(h) => p.out(format!("Lock: held by {h}")),
        LockState::Left(h) if elsewhere => p.out(format!(
            "Lock: held by {h}, on another machine: it may still be running; if it is gone, `podnet unlock` releases it"
        )),
        LockState::Left(h) => p.out(format!("Lock: left by {h} (release with `podnet unlock`)")),
    }
    if let Some(unit) = &overview.in_flight {
        p.out(match lock_state {
            LockState::HeldLive(_) => format!("In flight: {}", paint(style::BOLD, unit)),
            _ if elsewhere => format!(
                "In flight or interrupted during: {} (the lock's holder on {} knows which)",
                paint(style::BOLD, unit),
                match lock_state {
                    LockState::Left(h) => h.host.as_str(),
                    _ => "another machine",
                }
            ),
            _ => format!(
                "Interrupted during: {} (`podnet resume` runs it again)",
                paint(style::BOLD, unit)
            ),
        });
    }
    p.out("");
}

fn print_units(p: &Printer, steps: &[StepState]) {
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|s| {
            let st = match s.status {
                StepStatus::Succeeded => paint(style::GREEN, "succeeded"),
                StepStatus::Failed => paint(style::RED, "failed"),
                StepStatus::Started => paint(style::YELLOW, "started"),
                StepStatus::Pending => paint(style::DIM, "pending"),
            };
            vec![
                s.step.clone(),
                st,
                s.attempts.to_string(),
                s.started_at.map(short_time).unwrap_or_else(|| "-".into()),
                s.finished_at.map(short_time).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    for l in table(&["STEP", "STATE", "ATTEMPTS", "STARTED", "FINISHED"], &rows) {
        p.out(l);
    }
}

/// A unit's outputs, its last error when it failed, and its drift.
fn print_unit_details(p: &Printer, s: &StepState) {
    let interesting = s.outputs.as_ref().is_some_and(|o| !o.is_null() && o != &json!({}));
    if interesting {
        p.out("");
        p.out(format!("{} outputs:", s.step));
        let text = serde_json::to_string_pretty(s.outputs.as_ref().unwrap_or(&json!(null))).unwrap_or_default();
        for l in text.lines() {
            p.out(format!("  {l}"));
        }
    }
    if let Some(e) = &s.last_error
        && s.status == StepStatus::Failed
    {
        p.out("");
        p.out(format!("{} last error ({:?}):", s.step, e.class));
        for l in e.to_string().lines() {
            p.out(format!("  {l}"));
        }
    }
    if let Some(d) = &s.drift {
        p.out("");
        p.out(format!("{} drifted since it succeeded:", s.step));
        for l in d {
            p.out(format!("  {l}"));
        }
    }
}

fn short_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%SZ").to_string()
}
