//! The append-only intent log of a migration (`journal.jsonl`).
//!
//! Every line is `{"sum": <first 16 hex of SHA-256 of rec>, "rec": {...}}` and
//! is fsynced before the call that wrote it returns, so `StepStarted` is on
//! disk before a step's side effects begin and `StepSucceeded` after they end.
//! The newline is the commit mark: a last line without one is *torn* (podnet
//! died mid-write), and any bad checksum, unparsable line or sequence gap is
//! *corruption*. Both are reported, never silently truncated; a torn tail
//! can be set aside explicitly with [`repair_torn_tail`].

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::error::StepError;

/// A unit's output or checkpoint field in the journal (JSON).
pub type Recorded = serde_json::Value;

/// Hears every durable append (crash points, installed by `main`).
pub type AppendObserver = fn(&Event);

static APPEND_OBSERVER: std::sync::OnceLock<AppendObserver> = std::sync::OnceLock::new();

/// Installs the process's append observer; the first one installed stays.
pub fn observe_appends(observer: AppendObserver) {
    let _ = APPEND_OBSERVER.set(observer);
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunEnd {
    Succeeded,
    Failed,
    Interrupted,
    /// Stopped after a step on request (`--stop-after`); resume continues.
    Stopped,
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        /// `apply` or `resume`.
        command: String,
        podnet_version: String,
        pid: u32,
        host: String,
        plan_fingerprint: String,
    },
    StepStarted {
        step: String,
        attempt: u32,
    },
    /// A step's own checkpoint (a request token, a node done).
    StepProgress {
        step: String,
        key: String,
        value: Recorded,
    },
    StepSucceeded {
        step: String,
        outputs: Recorded,
    },
    StepFailed {
        step: String,
        error: StepError,
    },
    /// On resume, a succeeded step's re-observation found differences.
    StepDrift {
        step: String,
        summary: Vec<String>,
    },
    RunFinished {
        run_id: String,
        outcome: RunEnd,
    },
}

/// A journal line's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub at: Timestamp,
    pub event: Event,
}

#[derive(Serialize, Deserialize)]
struct Line<'a> {
    sum: &'a str,
    #[serde(borrow)]
    rec: &'a RawValue,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "journal {} ends with a torn record on line {line} ({bytes} bytes without the final newline): podnet was stopped while writing it. \
         Every step is idempotent, so setting it aside is safe: run `podnet resume --repair-journal` (the torn bytes are kept next to the journal)",
        path.display()
    )]
    Torn { path: PathBuf, line: usize, bytes: usize },
    #[error(
        "journal {} is corrupt at line {line}: {reason}. podnet will not guess what happened; move the state directory aside \
         (or restore it from a backup) and check the cluster with `podnet plan`",
        path.display()
    )]
    Corrupt { path: PathBuf, line: usize, reason: String },
    #[error("cannot encode a journal record: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("cannot record in the shared journal: {0}")]
    Remote(#[from] super::remote::RemoteError),
}

fn checksum(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads and verifies every record.
pub fn read(path: &Path) -> Result<Vec<Record>, JournalError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    parse(path, &bytes)
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<Record>, JournalError> {
    let mut records = Vec::new();
    let mut rest = bytes;
    let mut line_no = 0;
    while !rest.is_empty() {
        line_no += 1;
        let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
            return Err(JournalError::Torn {
                path: path.to_path_buf(),
                line: line_no,
                bytes: rest.len(),
            });
        };
        let line = &rest[..nl];
        rest = &rest[nl + 1..];
        let corrupt = |reason: String| JournalError::Corrupt {
            path: path.to_path_buf(),
            line: line_no,
            reason,
        };
        let text = std::str::from_utf8(line).map_err(|_| corrupt("not UTF-8".into()))?;
        let parsed: Line<'_> = serde_json::from_str(text).map_err(|e| corrupt(format!("not a journal line ({e})")))?;
        if checksum(parsed.rec.get().as_bytes()) != parsed.sum {
            return Err(corrupt(
                "checksum mismatch (the line was changed after it was written)".into(),
            ));
        }
        let rec: Record =
            serde_json::from_str(parsed.rec.get()).map_err(|e| corrupt(format!("unreadable record ({e})")))?;
        if rec.seq != records.len() as u64 {
            return Err(corrupt(format!(
                "record number {} where {} was expected (lines missing)",
                rec.seq,
                records.len()
            )));
        }
        records.push(rec);
    }
    Ok(records)
}

/// Sets a torn last line aside (into `journal.jsonl.torn-<unix-seconds>`)
/// and truncates the journal to its last complete record. Refuses anything
/// but a torn tail.
pub fn repair_torn_tail(path: &Path) -> Result<Option<PathBuf>, JournalError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    match parse(path, &bytes) {
        Ok(_) => Ok(None),
        Err(JournalError::Torn { .. }) => {
            let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            // The complete part must itself be sound before we cut anything.
            parse(path, &bytes[..keep])?;
            let aside = path.with_extension(format!("jsonl.torn-{}", Timestamp::now().as_second()));
            std::fs::write(&aside, &bytes[keep..]).map_err(io(&aside))?;
            let f = OpenOptions::new().write(true).open(path).map_err(io(path))?;
            f.set_len(keep as u64).map_err(io(path))?;
            f.sync_all().map_err(io(path))?;
            Ok(Some(aside))
        }
        Err(e) => Err(e),
    }
}

/// An open journal, appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    next_seq: u64,
    /// Shared state: each record is created in the store first.
    remote: Option<super::remote::Remote>,
}

impl Journal {
    /// Opens (creating if needed) and verifies the journal; returns it with
    /// every record so far.
    pub fn open(path: &Path) -> Result<(Journal, Vec<Record>), JournalError> {
        let existed = path.exists();
        let records = if existed { read(path)? } else { Vec::new() };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io(path))?;
        if !existed {
            // Make the new directory entry itself durable.
            if let Some(dir) = path.parent()
                && let Ok(d) = File::open(dir)
            {
                let _ = d.sync_all();
            }
        }
        let next_seq = records.len() as u64;
        Ok((
            Journal {
                path: path.to_path_buf(),
                file,
                next_seq,
                remote: None,
            },
            records,
        ))
    }

    /// Records go to the shared state's store too, before the local copy.
    pub fn with_remote(mut self, remote: Option<super::remote::Remote>) -> Journal {
        self.remote = remote;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and fsyncs it before returning.
    pub fn append(&mut self, event: Event) -> Result<Record, JournalError> {
        let rec = Record {
            seq: self.next_seq,
            at: Timestamp::now(),
            event,
        };
        let body = serde_json::to_string(&rec)?;
        // The line is assembled around the exact body bytes the checksum
        // covers; re-serialising through a Value could reorder keys.
        let line = format!("{{\"sum\":\"{}\",\"rec\":{body}}}\n", checksum(body.as_bytes()));
        // The store first: it is the truth another machine resumes from,
        // and its create-if-absent refuses a second writer of this record.
        if let Some(r) = &self.remote {
            r.append(rec.seq, &line)?;
        }
        self.file.write_all(line.as_bytes()).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))?;
        self.next_seq += 1;
        if let Some(observer) = APPEND_OBSERVER.get() {
            observer(&rec.event);
        }
        Ok(rec)
    }
}

/// Where a step stands according to the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    Pending,
    /// Started and not finished: interrupted, or still running elsewhere.
    Started,
    Succeeded,
    Failed,
}

/// Everything the journal says about one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepState {
    pub step: String,
    pub status: StepStatus,
    pub attempts: u32,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub outputs: Option<Recorded>,
    pub last_error: Option<StepError>,
    pub progress: BTreeMap<String, Recorded>,
    pub drift: Option<Vec<String>>,
}

impl StepState {
    pub(crate) fn new(step: &str) -> Self {
        StepState {
            step: step.to_string(),
            status: StepStatus::Pending,
            attempts: 0,
            started_at: None,
            finished_at: None,
            outputs: None,
            last_error: None,
            progress: BTreeMap::new(),
            drift: None,
        }
    }
}

/// One `apply` or `resume` invocation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    pub run_id: String,
    pub command: String,
    pub podnet_version: String,
    pub pid: u32,
    pub host: String,
    pub plan_fingerprint: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub outcome: Option<RunEnd>,
}

/// The journal folded into per-step state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JournalState {
    pub runs: Vec<RunInfo>,
    /// In the order steps first appear.
    pub steps: Vec<StepState>,
}

impl JournalState {
    pub fn from_records(records: &[Record]) -> JournalState {
        let mut s = JournalState::default();
        for r in records {
            match &r.event {
                Event::RunStarted {
                    run_id,
                    command,
                    podnet_version,
                    pid,
                    host,
                    plan_fingerprint,
                } => {
                    s.runs.push(RunInfo {
                        run_id: run_id.clone(),
                        command: command.clone(),
                        podnet_version: podnet_version.clone(),
                        pid: *pid,
                        host: host.clone(),
                        plan_fingerprint: plan_fingerprint.clone(),
                        started_at: r.at,
                        finished_at: None,
                        outcome: None,
                    });
                }
                Event::RunFinished { run_id, outcome } => {
                    if let Some(run) = s.runs.iter_mut().rev().find(|x| &x.run_id == run_id) {
                        run.finished_at = Some(r.at);
                        run.outcome = Some(*outcome);
                    }
                }
                Event::StepStarted { step, attempt } => {
                    let st = s.step_mut(step);
                    st.status = StepStatus::Started;
                    st.attempts = (*attempt).max(st.attempts);
                    st.started_at = Some(r.at);
                    st.finished_at = None;
                }
                Event::StepProgress { step, key, value } => {
                    s.step_mut(step).progress.insert(key.clone(), value.clone());
                }
                Event::StepSucceeded { step, outputs } => {
                    let st = s.step_mut(step);
                    st.status = StepStatus::Succeeded;
                    st.finished_at = Some(r.at);
                    st.outputs = Some(outputs.clone());
                }
                Event::StepFailed { step, error } => {
                    let st = s.step_mut(step);
                    st.status = StepStatus::Failed;
                    st.finished_at = Some(r.at);
                    st.last_error = Some(error.clone());
                }
                Event::StepDrift { step, summary } => {
                    s.step_mut(step).drift = Some(summary.clone());
                }
            }
        }
        s
    }

    fn step_mut(&mut self, step: &str) -> &mut StepState {
        if let Some(i) = self.steps.iter().position(|s| s.step == step) {
            &mut self.steps[i]
        } else {
            self.steps.push(StepState::new(step));
            self.steps.last_mut().expect("just pushed")
        }
    }

    pub fn step(&self, step: &str) -> Option<&StepState> {
        self.steps.iter().find(|s| s.step == step)
    }

    pub fn last_run(&self) -> Option<&RunInfo> {
        self.runs.last()
    }

    /// The last run finished successfully.
    pub fn is_complete(&self) -> bool {
        self.last_run().is_some_and(|r| r.outcome == Some(RunEnd::Succeeded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn started(step: &str) -> Event {
        Event::StepStarted {
            step: step.into(),
            attempt: 1,
        }
    }

    #[test]
    fn round_trip_and_fold() {
        let d = tmp();
        let p = d.path().join("journal.jsonl");
        let (mut j, recs) = Journal::open(&p).unwrap();
        assert!(recs.is_empty());
        j.append(Event::RunStarted {
            run_id: "r1".into(),
            command: "apply".into(),
            podnet_version: "0".into(),
            pid: 1,
            host: "h".into(),
            plan_fingerprint: "f".into(),
        })
        .unwrap();
        j.append(started("a")).unwrap();
        j.append(Event::StepProgress {
            step: "a".into(),
            key: "token".into(),
            value: "t-1".into(),
        })
        .unwrap();
        j.append(Event::StepSucceeded {
            step: "a".into(),
            outputs: serde_json::json!({"id": "x", "z": 1, "b": [2]}),
        })
        .unwrap();
        j.append(started("b")).unwrap();
        j.append(Event::StepFailed {
            step: "b".into(),
            error: StepError::failed("boom"),
        })
        .unwrap();
        drop(j);
        let (_, recs) = Journal::open(&p).unwrap();
        assert_eq!(recs.len(), 6);
        let s = JournalState::from_records(&recs);
        assert_eq!(s.step("a").unwrap().status, StepStatus::Succeeded);
        assert_eq!(s.step("a").unwrap().outputs.as_ref().unwrap()["id"], "x");
        assert_eq!(s.step("a").unwrap().progress["token"], "t-1");
        assert_eq!(s.step("b").unwrap().status, StepStatus::Failed);
        assert_eq!(s.step("b").unwrap().last_error.as_ref().unwrap().message, "boom");
        assert_eq!(s.runs.len(), 1);
        assert!(!s.is_complete());
        // Every line is JSON with sum and rec.
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["sum"].is_string() && v["rec"]["seq"].is_u64());
        }
    }

    #[test]
    fn torn_tail_is_reported_and_repaired_only_on_request() {
        let d = tmp();
        let p = d.path().join("journal.jsonl");
        let (mut j, _) = Journal::open(&p).unwrap();
        j.append(started("a")).unwrap();
        j.append(started("b")).unwrap();
        drop(j);
        let full = std::fs::read(&p).unwrap();
        // Cut the last record in half, as a crash mid-write would.
        std::fs::write(&p, &full[..full.len() - 20]).unwrap();
        let err = Journal::open(&p).unwrap_err();
        assert!(matches!(err, JournalError::Torn { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("--repair-journal"));
        // Reading again changes nothing: no silent truncation.
        assert!(read(&p).is_err());
        assert_eq!(std::fs::read(&p).unwrap().len(), full.len() - 20);
        let aside = repair_torn_tail(&p).unwrap().unwrap();
        assert!(aside.exists());
        let recs = read(&p).unwrap();
        assert_eq!(recs.len(), 1);
        // Appending continues the sequence.
        let (mut j, _) = Journal::open(&p).unwrap();
        assert_eq!(j.append(started("c")).unwrap().seq, 1);
        assert_eq!(repair_torn_tail(&p).unwrap(), None);
    }

    #[test]
    fn corruption_is_reported() {
        let d = tmp();
        let p = d.path().join("journal.jsonl");
        let (mut j, _) = Journal::open(&p).unwrap();
        j.append(started("alpha")).unwrap();
        j.append(started("beta")).unwrap();
        j.append(started("gamma")).unwrap();
        drop(j);
        let good = std::fs::read_to_string(&p).unwrap();

        // A changed byte inside a record: checksum mismatch.
        std::fs::write(&p, good.replacen("beta", "bexa", 1)).unwrap();
        let err = read(&p).unwrap_err();
        assert!(matches!(err, JournalError::Corrupt { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("checksum"));

        // A missing line: sequence gap.
        let lines: Vec<&str> = good.lines().collect();
        std::fs::write(&p, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        let err = read(&p).unwrap_err();
        assert!(err.to_string().contains("lines missing"), "{err}");

        // Garbage in the middle.
        std::fs::write(&p, format!("{}\nnot json\n{}\n", lines[0], lines[1])).unwrap();
        assert!(matches!(read(&p).unwrap_err(), JournalError::Corrupt { line: 2, .. }));

        // Corruption is never "repaired".
        assert!(repair_torn_tail(&p).is_err());
        // A torn tail after a corrupt line is still corruption.
        std::fs::write(&p, format!("{}\nnot json\n{{\"sum", lines[0])).unwrap();
        assert!(matches!(
            repair_torn_tail(&p).unwrap_err(),
            JournalError::Corrupt { .. }
        ));
    }
}
