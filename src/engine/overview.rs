//! Where a migration stands, from its journal and saved plan: the phase,
//! every unit of the saved plan with its state (those not yet reached are
//! pending), the unit in flight, and the units left. `status` prints it,
//! `resume` says what it will run from it; neither works it out itself.

use serde::Serialize;

use super::journal::{JournalState, RunEnd, StepState, StepStatus};
use super::state::SavedPlan;

/// The migration as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Complete,
    Failed,
    /// Stopped after a unit on request (`--stop-after`).
    Paused,
    /// Running now, or stopped without a word (killed, lost its machine).
    InProgress,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Complete => "complete",
            Phase::Failed => "failed",
            Phase::Paused => "paused",
            Phase::InProgress => "in-progress",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    pub phase: Phase,
    /// The saved plan's units in order (then any the journal has that the
    /// plan lacks), with what the journal says of each.
    pub units: Vec<StepState>,
    /// The unit started last and not finished: running now, or where a
    /// killed run stopped.
    pub in_flight: Option<String>,
    /// Units that have not succeeded, in plan order.
    pub left: Vec<String>,
}

impl Overview {
    pub fn of(history: &JournalState, saved: Option<&SavedPlan>) -> Overview {
        let phase = if history.is_complete() {
            Phase::Complete
        } else if history.steps.iter().any(|s| s.status == StepStatus::Failed) {
            Phase::Failed
        } else if history.last_run().and_then(|r| r.outcome) == Some(RunEnd::Stopped) {
            Phase::Paused
        } else {
            Phase::InProgress
        };
        let mut units: Vec<StepState> = match saved {
            Some(plan) => plan
                .steps
                .iter()
                .map(|p| {
                    history
                        .step(&p.step)
                        .cloned()
                        .unwrap_or_else(|| StepState::new(&p.step))
                })
                .collect(),
            None => Vec::new(),
        };
        for s in &history.steps {
            if !units.iter().any(|u| u.step == s.step) {
                units.push(s.clone());
            }
        }
        let in_flight = units
            .iter()
            .filter(|s| s.status == StepStatus::Started)
            .max_by_key(|s| s.started_at)
            .map(|s| s.step.clone());
        let left = units
            .iter()
            .filter(|s| s.status != StepStatus::Succeeded)
            .map(|s| s.step.clone())
            .collect();
        Overview {
            phase,
            units,
            in_flight,
            left,
        }
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::engine::journal::{Event, Record};
    use crate::engine::{StepError, StepPlan};

    fn rec(seq: u64, event: Event) -> Record {
        Record {
            seq,
            at: Timestamp::from_second(1_800_000_000 + seq as i64).unwrap(),
            event,
        }
    }

    fn started(seq: u64, step: &str) -> Record {
        rec(
            seq,
            Event::StepStarted {
                step: step.into(),
                attempt: 1,
            },
        )
    }

    fn plan(units: &[&str]) -> SavedPlan {
        let steps = units.iter().map(|u| StepPlan::new(*u, "x")).collect();
        SavedPlan::new("c", "r", None, "f".into(), steps, serde_json::json!({}))
    }

    #[test]
    fn names_the_unit_in_flight_and_what_is_left() {
        let saved = plan(&[
            "enable-custom-networking",
            "replace-karpenter-nodes/batch-1",
            "replace-karpenter-nodes/batch-2",
            "replace-karpenter-nodes/batch-3",
            "verify",
        ]);
        let history = JournalState::from_records(&[
            started(0, "enable-custom-networking"),
            rec(
                1,
                Event::StepSucceeded {
                    step: "enable-custom-networking".into(),
                    outputs: serde_json::json!({}),
                },
            ),
            started(2, "replace-karpenter-nodes/batch-1"),
            rec(
                3,
                Event::StepSucceeded {
                    step: "replace-karpenter-nodes/batch-1".into(),
                    outputs: serde_json::json!({}),
                },
            ),
            started(4, "replace-karpenter-nodes/batch-2"),
        ]);
        let o = Overview::of(&history, Some(&saved));
        assert_eq!(o.phase, Phase::InProgress);
        assert_eq!(o.in_flight.as_deref(), Some("replace-karpenter-nodes/batch-2"));
        assert_eq!(
            o.left,
            [
                "replace-karpenter-nodes/batch-2",
                "replace-karpenter-nodes/batch-3",
                "verify"
            ]
        );
        assert_eq!(o.units.len(), 5);
        assert_eq!(o.units[3].status, StepStatus::Pending);
    }

    #[test]
    fn a_failed_unit_makes_the_phase_failed_and_nothing_is_in_flight() {
        let saved = plan(&["associate-cidr", "verify"]);
        let history = JournalState::from_records(&[
            started(0, "associate-cidr"),
            rec(
                1,
                Event::StepFailed {
                    step: "associate-cidr".into(),
                    error: StepError::failed("no"),
                },
            ),
        ]);
        let o = Overview::of(&history, Some(&saved));
        assert_eq!(o.phase, Phase::Failed);
        assert_eq!(o.in_flight, None);
        assert_eq!(o.left, ["associate-cidr", "verify"]);
    }
}
