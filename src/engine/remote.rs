//! Shared state: a state directory whose truth lives in an object store
//! (S3), so a team can apply from one machine and resume, watch or roll
//! back from another. The local directory stays the working copy every
//! reader uses; this module keeps it in step with the store:
//!
//! ```text
//! <prefix>/plan.json                  the approved plan (replaced on save)
//! <prefix>/journal/00000000000000000000.json   one journal record each,
//!                                     created only if absent
//! <prefix>/lock                       the lock: who, where, since when
//! <prefix>/rollback/…                 a rollback's plan and journal
//! <prefix>/archive/<time>/…           finished migrations
//! ```
//!
//! Every journal record is written with `If-None-Match: *` before it is
//! appended locally, so two writers can never both record step N: the
//! second is refused (a podnet that lost its lock is fenced off). The lock
//! is an object created the same way, holding its owner; a lock left behind
//! is reported with its owner and released only by `podnet unlock`.
//! S3 has offered conditional writes since 2024 ("Conditional writes",
//! Amazon S3 User Guide).

use std::path::Path;
use std::sync::Arc;

use super::lock::LockHolder;

/// `s3://BUCKET/PREFIX` parsed: the bucket (S3's naming rules: 3–63
/// lowercase letters, digits, dots and hyphens, starting and ending with a
/// letter or digit) and the key prefix, without slashes at its ends.
pub fn parse_s3_url(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| {
        format!("{url:?} is not an S3 URL: write s3://BUCKET/PREFIX, e.g. s3://acme-podnet-state/prod-eks")
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !(3..=63).contains(&bucket.len()) || !ok_chars || !ends(bucket.bytes().next()) || !ends(bucket.bytes().last()) {
        return Err(format!(
            "{bucket:?} is not an S3 bucket name: 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!("{prefix:?}: a state prefix cannot hold . or .. segments"));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// Why the object store could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url}: {message}")]
pub struct RemoteError {
    pub url: String,
    pub message: String,
}

/// The blocking object operations shared state needs; keys are relative
/// to the store's prefix.
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// `s3://bucket/prefix`, for messages.
    fn url(&self) -> String;
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RemoteError>;
    /// Creates or replaces.
    fn put(&self, key: &str, body: &[u8]) -> Result<(), RemoteError>;
    /// Creates only when absent (`If-None-Match: *`); `false` when the key
    /// exists already.
    fn create(&self, key: &str, body: &[u8]) -> Result<bool, RemoteError>;
    fn delete(&self, key: &str) -> Result<(), RemoteError>;
    /// Every key under `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError>;
}

/// One state directory in the store: the root, or `rollback/` under it.
#[derive(Debug, Clone)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    /// `""` or `"rollback/"`.
    dir: String,
}

const PLAN: &str = "plan.json";
const JOURNAL: &str = "journal/";
const LOCK: &str = "lock";
/// In a working copy: the URL of the store it copies.
const MARKER: &str = ".shared-state";
/// The sub-directories a state directory has.
const CHILDREN: &[&str] = &["rollback"];

fn record_key(seq: u64) -> String {
    format!("{JOURNAL}{seq:020}.json")
}

impl Remote {
    pub fn new(store: Arc<dyn ObjectStore>) -> Remote {
        Remote {
            store,
            dir: String::new(),
        }
    }

    pub fn child(&self, name: &str) -> Remote {
        Remote {
            store: self.store.clone(),
            dir: format!("{}{name}/", self.dir),
        }
    }

    /// Where this directory is, as a URL.
    pub fn url(&self) -> String {
        format!("{}/{}", self.store.url().trim_end_matches('/'), self.dir)
            .trim_end_matches('/')
            .to_string()
    }

    fn key(&self, k: &str) -> String {
        format!("{}{k}", self.dir)
    }

    fn error(&self, message: impl Into<String>) -> RemoteError {
        RemoteError {
            url: self.url(),
            message: message.into(),
        }
    }

    /// Makes `local` (and its sub-directories) a copy of the store's plan
    /// and journal: what the store has replaces what the machine had.
    pub fn pull(&self, local: &Path) -> Result<(), RemoteError> {
        // A directory with a journal of its own that is not a copy of this
        // store (local state, `--state-dir` pointed at it with `--state`)
        // is never overwritten.
        let marker = local.join(MARKER);
        let copy_of = std::fs::read_to_string(&marker).ok();
        if self.dir.is_empty()
            && copy_of.as_deref() != Some(self.url().as_str())
            && local.join("journal.jsonl").exists()
        {
            return Err(self.error(format!(
                "{} holds a journal that is not a copy of this shared state; use another --state-dir for the working copy, or drop --state to go on with the local state",
                local.display()
            )));
        }
        let write = |name: &str, body: Option<Vec<u8>>| -> Result<(), RemoteError> {
            let path = local.join(name);
            let result = match body {
                Some(b) => std::fs::create_dir_all(local).and_then(|_| std::fs::write(&path, b)),
                None => match std::fs::remove_file(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    other => other,
                },
            };
            result.map_err(|e| self.error(format!("writing the local copy {}: {e}", path.display())))
        };
        write("plan.json", self.store.get(&self.key(PLAN))?)?;
        let keys = self.store.list(&self.key(JOURNAL))?;
        let journal = if keys.is_empty() {
            None
        } else {
            let mut all = Vec::new();
            for (i, k) in keys.iter().enumerate() {
                if *k != self.key(&record_key(i as u64)) {
                    return Err(self.error(format!(
                        "journal record {i} is missing (found {k}): the shared journal has a gap"
                    )));
                }
                let body = self
                    .store
                    .get(k)?
                    .ok_or_else(|| self.error(format!("{k} vanished while it was read")))?;
                all.extend_from_slice(&body);
            }
            Some(all)
        };
        write("journal.jsonl", journal)?;
        if self.dir.is_empty() {
            for c in CHILDREN {
                self.child(c).pull(&local.join(c))?;
            }
            std::fs::write(&marker, self.url())
                .map_err(|e| self.error(format!("writing {}: {e}", marker.display())))?;
        }
        Ok(())
    }

    pub fn save_plan(&self, body: &[u8]) -> Result<(), RemoteError> {
        self.store.put(&self.key(PLAN), body)
    }

    /// Records journal line `seq`, only if no writer has recorded it.
    pub fn append(&self, seq: u64, line: &str) -> Result<(), RemoteError> {
        let key = self.key(&record_key(seq));
        // A create that timed out may have landed and its retry been
        // refused: the very same bytes there are this record, written.
        if self.store.create(&key, line.as_bytes())? || self.store.get(&key)?.as_deref() == Some(line.as_bytes()) {
            Ok(())
        } else {
            Err(self.error(format!(
                "journal record {seq} was written by another podnet meanwhile: this run no longer holds the shared state (its lock was taken over); stop, and see `podnet status`"
            )))
        }
    }

    /// Moves the plan and journal to `archive/<stamp>/`: copied, then
    /// deleted (S3 has no rename); a run stopped half-way leaves copies in
    /// the archive and the journal in place, and archiving again is safe.
    pub fn archive(&self, stamp: &str) -> Result<String, RemoteError> {
        let to = format!("archive/{stamp}/");
        let mut keys = vec![self.key(PLAN)];
        keys.extend(self.store.list(&self.key(JOURNAL))?);
        for k in &keys {
            if let Some(body) = self.store.get(k)? {
                let rest = k.strip_prefix(&self.dir).unwrap_or(k);
                self.store.put(&self.key(&format!("{to}{rest}")), &body)?;
            }
        }
        // The highest record first and the plan last: a run stopped half-way
        // leaves a shorter journal without a gap (readable, archived again
        // next time), never records after a hole.
        for k in keys.iter().rev() {
            self.store.delete(k)?;
        }
        Ok(format!("{}/{}", self.url(), to.trim_end_matches('/')))
    }

    /// The recorded lock holder, if any (the root's lock: a rollback runs
    /// under the apply's).
    pub fn holder(&self) -> Result<Option<LockHolder>, RemoteError> {
        Ok(self
            .store
            .get(LOCK)?
            .map(|b| serde_json::from_slice(&b).unwrap_or_else(|_| super::lock::unknown_holder())))
    }

    /// Takes the lock for `me`: `Ok(None)` when taken, `Ok(Some(h))`
    /// when `h` holds it. A holder on this machine whose process is gone is
    /// replaced; the replaced holder is returned through `took_over`.
    pub fn lock(&self, me: &LockHolder, took_over: &mut Option<LockHolder>) -> Result<Option<LockHolder>, RemoteError> {
        let body = serde_json::to_vec(me).map_err(|e| self.error(e.to_string()))?;
        for _ in 0..3 {
            if self.store.create(LOCK, &body)? {
                return Ok(None);
            }
            let Some(h) = self.holder()? else { continue };
            // Our own create, landed and retried by the SDK.
            if &h == me {
                return Ok(None);
            }
            if h.is_alive() == Some(false) {
                // Whoever creates it next has it: only one create succeeds.
                self.store.delete(LOCK)?;
                *took_over = Some(h);
                continue;
            }
            return Ok(Some(h));
        }
        Err(self.error(
            "the lock kept changing hands while podnet tried to take it: another podnet is starting on this state; try again in a moment",
        ))
    }

    /// Deletes the lock if `mine` still holds it.
    pub fn unlock_if(&self, mine: &LockHolder) -> Result<(), RemoteError> {
        if self.holder()?.as_ref() == Some(mine) {
            self.store.delete(LOCK)?;
        }
        Ok(())
    }

    /// Deletes the lock whoever holds it (`podnet unlock`).
    pub fn release(&self) -> Result<(), RemoteError> {
        self.store.delete(LOCK)
    }
}

/// An object store in memory, for tests of everything above it.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: std::sync::Mutex<std::collections::BTreeMap<String, Vec<u8>>>,
}

#[cfg(test)]
impl MemoryStore {
    pub fn keys(&self) -> Vec<String> {
        self.objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
impl ObjectStore for MemoryStore {
    fn url(&self) -> String {
        "memory://state".into()
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        Ok(self.objects.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned())
    }

    fn put(&self, key: &str, body: &[u8]) -> Result<(), RemoteError> {
        self.objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), body.to_vec());
        Ok(())
    }

    fn create(&self, key: &str, body: &[u8]) -> Result<bool, RemoteError> {
        let mut o = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        if o.contains_key(key) {
            return Ok(false);
        }
        o.insert(key.to_string(), body.to_vec());
        Ok(true)
    }

    fn delete(&self, key: &str) -> Result<(), RemoteError> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError> {
        Ok(self
            .objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_name_a_valid_bucket_and_a_prefix() {
        assert_eq!(
            parse_s3_url("s3://acme-state/prod/eks-1/"),
            Ok(("acme-state".into(), "prod/eks-1".into()))
        );
        assert_eq!(
            parse_s3_url("s3://acme-state"),
            Ok(("acme-state".into(), String::new()))
        );
        for bad in [
            "acme-state/x",
            "s3:/acme",
            "s3://Acme/x",
            "s3://ab/x",
            "s3://-acme/x",
            "s3://acme/../x",
        ] {
            assert!(parse_s3_url(bad).is_err(), "{bad}");
        }
    }

    fn line(seq: u64) -> String {
        format!("{{\"sum\":\"x\",\"rec\":{{\"seq\":{seq}}}}}\n")
    }

    #[test]
    fn a_second_machine_pulls_the_plan_and_journal_and_a_second_writer_is_fenced() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::default());
        let a = Remote::new(store.clone());
        a.save_plan(b"{}").unwrap();
        a.append(0, &line(0)).unwrap();
        a.append(1, &line(1)).unwrap();
        a.child("rollback").append(0, &line(0)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("journal.jsonl"), "local").unwrap();
        let refused = Remote::new(store.clone()).pull(dir.path()).unwrap_err();
        assert!(refused.message.contains("not a copy"), "{refused}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap(),
            "local"
        );
        std::fs::write(dir.path().join(MARKER), "memory://state").unwrap();
        std::fs::write(dir.path().join("journal.jsonl"), "stale").unwrap();
        Remote::new(store.clone()).pull(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap(),
            format!("{}{}", line(0), line(1))
        );
        assert_eq!(std::fs::read(dir.path().join("plan.json")).unwrap(), b"{}");
        assert!(dir.path().join("rollback/journal.jsonl").exists());
        // Record 1 exists: a writer that did not see it is refused; the
        // same bytes again (an SDK retry of a create that landed) are not.
        let e = Remote::new(store.clone())
            .append(1, "{\"sum\":\"y\",\"rec\":{\"seq\":1}}\n")
            .unwrap_err();
        assert!(e.message.contains("another podnet"), "{e}");
        Remote::new(store.clone()).append(1, &line(1)).unwrap();
        // Archived: the journal and plan move under archive/, and a pull
        // then clears the working copy.
        let to = a.archive("20261203T000000Z").unwrap();
        assert_eq!(to, "memory://state/archive/20261203T000000Z");
        Remote::new(store.clone()).pull(dir.path()).unwrap();
        assert!(!dir.path().join("journal.jsonl").exists());
        assert!(!dir.path().join("plan.json").exists());
        let store = store.clone();
        let keys = store.list("archive/").unwrap();
        assert!(
            keys.contains(&"archive/20261203T000000Z/journal/00000000000000000001.json".to_string()),
            "{keys:?}"
        );
    }

    #[test]
    fn the_lock_is_one_object_and_a_holder_elsewhere_keeps_it() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::default());
        let r = Remote::new(store.clone());
        let me = LockHolder::current("apply");
        let mut took = None;
        assert_eq!(r.lock(&me, &mut took).unwrap(), None);
        let other = LockHolder {
            host: "ci-runner-7".into(),
            ..LockHolder::current("resume")
        };
        assert_eq!(r.lock(&other, &mut took).unwrap(), Some(me.clone()), "held");
        r.unlock_if(&other).unwrap();
        assert_eq!(r.holder().unwrap(), Some(me.clone()), "only the holder unlocks");
        r.unlock_if(&me).unwrap();
        assert_eq!(r.holder().unwrap(), None);
        // A dead holder on this machine is taken over.
        let dead = LockHolder {
            pid: u32::MAX - 1,
            ..LockHolder::current("apply")
        };
        store.put("lock", &serde_json::to_vec(&dead).unwrap()).unwrap();
        assert_eq!(r.lock(&me, &mut took).unwrap(), None);
        assert_eq!(took, Some(dead));
    }
}
