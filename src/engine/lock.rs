//! The per-cluster apply lock: a lockfile in the state directory holding the
//! holder's pid, host, command and start time, plus an OS file lock on it
//! while held. Two podnet processes on one machine exclude each other through
//! the OS lock; the recorded holder explains who has it, lets a lock left by
//! a dead process on this host be taken over, and lets `podnet unlock`
//! release one left on another machine (shared state directories).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Who holds (or held) the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    pub command: String,
    pub started_at: Timestamp,
}

impl LockHolder {
    pub fn current(command: &str) -> LockHolder {
        LockHolder {
            pid: std::process::id(),
            host: this_host(),
            command: command.to_string(),
            started_at: Timestamp::now(),
        }
    }

    /// Whether the holder is a live process on this machine. `None` when it
    /// ran elsewhere and nobody here can tell.
    pub fn is_alive(&self) -> Option<bool> {
        if self.host != this_host() {
            return None;
        }
        Some(pid_alive(self.pid))
    }

    pub fn is_local(&self) -> bool {
        self.host == this_host()
    }
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`podnet {}` (pid {} on {}, since {})",
            self.command, self.pid, self.host, self.started_at
        )
    }
}

pub fn this_host() -> String {
    hostname()
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // on success (and we stop at the first NUL regardless).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".to_string();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 performs only the existence and permission check.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another podnet is applying to this cluster: {holder}. Wait for it to finish; if it is gone, run `podnet unlock` (lock file {})",
        path.display()
    )]
    Held { holder: LockHolder, path: PathBuf },
    #[error(
        "another podnet is using the shared state {url}: {holder}. Wait for it to finish; if it is gone, run `podnet unlock` (from any machine)"
    )]
    HeldShared { holder: LockHolder, url: String },
    #[error("cannot use the shared state's lock: {0}")]
    Remote(#[from] super::remote::RemoteError),
    #[error("cannot use lock file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A held lock; released (file removed) on drop.
#[derive(Debug)]
pub struct LockGuard {
    path: PathBuf,
    file: Option<File>,
    /// A lock left by a dead process that this acquisition replaced.
    pub took_over: Option<LockHolder>,
}

impl LockGuard {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Remove first, then let the OS lock go with the descriptor, so no
        // one can lock the file we are about to delete.
        let _ = std::fs::remove_file(&self.path);
        self.file.take();
    }
}

fn read_holder(file: &mut File) -> Option<LockHolder> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut s).ok()?;
    serde_json::from_str(&s).ok()
}

/// Reads the recorded holder, if any.
pub fn holder(path: &Path) -> Option<LockHolder> {
    let mut f = File::open(path).ok()?;
    read_holder(&mut f)
}

/// Takes the lock for `command`, or says who has it.
pub fn acquire(path: &Path, command: &str) -> Result<LockGuard, LockError> {
    let err = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    // A releasing holder unlinks the file; if we locked that unlinked inode,
    // open the path again.
    let mut file = loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut file = file;
                let holder = read_holder(&mut file).unwrap_or_else(unknown_holder);
                return Err(LockError::Held {
                    holder,
                    path: path.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(err(e)),
        }
        if same_file(&file, path) {
            break file;
        }
    };
    // We hold the OS lock, so no podnet on this host holds it. A recorded
    // holder is then a leftover: from a dead process here (take over), or
    // from a process on another host sharing this directory, which we cannot
    // see (refuse; `podnet unlock` decides).
    let previous = read_holder(&mut file);
    if let Some(prev) = &previous
        && prev.host != this_host()
    {
        return Err(LockError::Held {
            holder: prev.clone(),
            path: path.to_path_buf(),
        });
    }
    let me = LockHolder::current(command);
    let body = serde_json::to_string_pretty(&me).map_err(|e| err(std::io::Error::other(e)))?;
    file.set_len(0).map_err(err)?;
    file.seek(SeekFrom::Start(0)).map_err(err)?;
    file.write_all(body.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    Ok(LockGuard {
        path: path.to_path_buf(),
        file: Some(file),
        took_over: previous,
    })
}

fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

pub(crate) fn unknown_holder() -> LockHolder {
    LockHolder {
        pid: 0,
        host: "unknown".into(),
        command: "unknown".into(),
        started_at: Timestamp::UNIX_EPOCH,
    }
}

/// What `podnet unlock` finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    Free,
    /// Held by a live process on this host.
    HeldLive(LockHolder),
    /// Recorded, but the process is gone (this host) or unknowable (another host).
    Left(LockHolder),
}

pub fn inspect(path: &Path) -> Result<LockState, LockError> {
    let err = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LockState::Free),
        Err(e) => return Err(err(e)),
    };
    let holder = read_holder(&mut file);
    match file.try_lock() {
        Err(TryLockError::WouldBlock) => Ok(LockState::HeldLive(holder.unwrap_or_else(unknown_holder))),
        Err(TryLockError::Error(e)) => Err(err(e)),
        // Nobody holds the OS lock: whatever is recorded was left behind.
        Ok(()) => Ok(match holder {
            None => LockState::Free,
            Some(h) => LockState::Left(h),
        }),
    }
}

/// Removes a left-behind lock. Refuses one held by a live process.
pub fn release(path: &Path) -> Result<Option<LockHolder>, LockError> {
    match inspect(path)? {
        LockState::Free => {
            let _ = std::fs::remove_file(path);
            Ok(None)
        }
        LockState::HeldLive(h) => Err(LockError::Held {
            holder: h,
            path: path.to_path_buf(),
        }),
        LockState::Left(h) => {
            std::fs::remove_file(path).map_err(|source| LockError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            Ok(Some(h))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_refused_then_free_after_drop() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let g = acquire(&p, "apply").unwrap();
        assert!(g.took_over.is_none());
        let err = acquire(&p, "apply").unwrap_err();
        let LockError::Held { holder, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(holder.pid, std::process::id());
        assert!(err.to_string().contains("podnet unlock"));
        assert!(matches!(inspect(&p).unwrap(), LockState::HeldLive(_)));
        assert!(release(&p).is_err(), "a live lock is never released");
        drop(g);
        assert!(!p.exists());
        assert_eq!(inspect(&p).unwrap(), LockState::Free);
        acquire(&p, "resume").unwrap();
    }

    fn leave(p: &Path, holder: &LockHolder) {
        std::fs::write(p, serde_json::to_string(holder).unwrap()).unwrap();
    }

    #[test]
    fn stale_lock_of_a_dead_local_process_is_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        // pid_max is at most 2^22 on Linux; this pid cannot exist.
        let dead = LockHolder {
            pid: 4_194_304 + 7,
            ..LockHolder::current("apply")
        };
        assert_eq!(dead.is_alive(), Some(false));
        leave(&p, &dead);
        assert_eq!(inspect(&p).unwrap(), LockState::Left(dead.clone()));
        let g = acquire(&p, "resume").unwrap();
        assert_eq!(g.took_over, Some(dead));
        assert_eq!(holder(&p).unwrap().command, "resume");
    }

    #[test]
    fn lock_from_another_host_needs_unlock() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let remote = LockHolder {
            host: "build-agent-7".into(),
            ..LockHolder::current("apply")
        };
        leave(&p, &remote);
        let err = acquire(&p, "apply").unwrap_err();
        assert!(matches!(err, LockError::Held { .. }));
        assert_eq!(inspect(&p).unwrap(), LockState::Left(remote.clone()));
        assert_eq!(release(&p).unwrap(), Some(remote));
        assert!(!p.exists());
        acquire(&p, "apply").unwrap();
    }
}
