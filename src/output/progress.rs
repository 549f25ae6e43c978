//! Progress of a run as the user sees it: one line per step as it starts
//! and ends, a spinner carrying what the step is waiting for (hidden when
//! stderr is not a terminal or with `--no-progress`), and the step's status
//! messages as plain lines under `-v` — or, when no spinner is drawn (a CI
//! log, a pipe), each time a step's status changes, so a log still shows
//! which node is draining and how many pods are pending.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::ProgressBar;

use super::{Printer, paint, style};
use crate::engine::{Observer, Recorded, StepError, StepPlan};

pub struct RunProgress {
    printer: Arc<Printer>,
    spinners: Mutex<HashMap<String, ProgressBar>>,
    last_status: Mutex<HashMap<String, String>>,
    /// The spinner of the read-only phases (discovery, planning).
    phase: Mutex<Option<ProgressBar>>,
}

impl RunProgress {
    pub fn new(printer: Arc<Printer>) -> Arc<RunProgress> {
        Arc::new(RunProgress {
            printer,
            spinners: Mutex::new(HashMap::new()),
            last_status: Mutex::new(HashMap::new()),
            phase: Mutex::new(None),
        })
    }

    fn finish(&self, step: &str) {
        if let Some(pb) = self.spinners.lock().unwrap_or_else(|p| p.into_inner()).remove(step) {
            pb.finish_and_clear();
        }
    }
}

impl Observer for RunProgress {
    fn phase(&self, message: &str) {
        self.printer.debug(message);
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        phase
            .get_or_insert_with(|| self.printer.spinner("discovering"))
            .set_message(message.to_string());
    }

    fn phase_done(&self) {
        if let Some(pb) = self.phase.lock().unwrap_or_else(|p| p.into_inner()).take() {
            pb.finish_and_clear();
        }
    }

    fn status(&self, step: &str, message: &str) {
        if self.printer.is_verbose() {
            self.printer.debug(format!("  {step}: {message}"));
        } else if !self.printer.shows_progress() {
            let mut last = self.last_status.lock().unwrap_or_else(|p| p.into_inner());
            if last.get(step).map(String::as_str) != Some(message) {
                last.insert(step.to_string(), message.to_string());
                self.printer.info(paint(style::DIM, format!("  {step}: {message}")));
            }
        }
        if let Some(pb) = self.spinners.lock().unwrap_or_else(|p| p.into_inner()).get(step) {
            pb.set_message(format!("{step}: {message}"));
        }
    }

    fn step_started(&self, step: &str, description: &str, attempt: u32) {
        let again = if attempt > 1 {
            format!(" (attempt {attempt})")
        } else {
            String::new()
        };
        self.printer
            .info(format!("{} {step}: {description}{again}", paint(style::CYAN, "→")));
        let pb = self.printer.spinner(format!("{step}: {description}"));
        self.spinners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(step.to_string(), pb);
    }

    fn step_skipped(&self, step: &str) {
        self.printer
            .info(format!("{} {step}: done in an earlier run", paint(style::DIM, "✓")));
    }

    fn step_drift(&self, step: &str, plan: &StepPlan) {
        self.printer.warn(format!(
            "{step} succeeded earlier but the cluster has changed since; it is not re-applied:"
        ));
        for l in super::plan_view::step_lines(plan) {
            self.printer.info(l);
        }
    }

    fn step_retrying(&self, step: &str, error: &StepError, delay: Duration) {
        self.printer
            .warn(format!("{step}: {} — retrying in {}s", error.message, delay.as_secs()));
    }

    fn step_succeeded(&self, step: &str, _outputs: &Recorded) {
        self.finish(step);
        self.printer.info(format!("{} {step}", paint(style::GREEN, "✓")));
    }

    fn step_failed(&self, step: &str, error: &StepError) {
        self.finish(step);
        self.printer.info(format!("{} {step}", paint(style::RED, "✗")));
        let _ = error;
    }
}
