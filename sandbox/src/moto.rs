//! moto, the EC2 emulator: finding (or creating, through the repository's
//! `scripts/ensure-venv`) the project venv that holds it, and running
//! `moto_server -p 0` on loopback as a child that dies with the sandbox.
//!
//! The child gets its own process group (a Ctrl-C in the terminal reaches
//! the sandbox, which then stops moto itself) and `PR_SET_PDEATHSIG`, so
//! even a SIGKILL of the sandbox takes moto down. The death signal fires when
//! the *thread* that forked the child exits, so the child is spawned from a
//! dedicated keeper thread that lives exactly as long as the [`Moto`] handle.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Errors starting moto.
#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error(
        "moto_server not found in {venv} and `{script}` failed: {detail}\n  fix: run `scripts/ensure-venv` (needs python3 with venv and pip, and PyPI access), or pass --venv DIR / set PODNET_VENV to a venv with moto[server]==5.2.5"
    )]
    Bootstrap {
        venv: String,
        script: String,
        detail: String,
    },
    #[error("could not start {path}: {source}")]
    Spawn { path: String, source: std::io::Error },
    #[error("moto_server did not report its port within {secs}s; its last output:\n{output}")]
    Timeout { secs: u64, output: String },
    #[error("moto_server exited during startup; its last output:\n{output}")]
    Exited { output: String },
}

/// The repository root compiled into the binary (`sandbox/..`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn has_moto(venv: &Path) -> bool {
    venv.join("bin").join("moto_server").is_file()
}

/// Find the venv holding moto: `explicit` (`--venv`), else `$PODNET_VENV`,
/// else `<repo>/.venv`; create it with `scripts/ensure-venv` when moto is
/// missing there.
pub fn find_venv(explicit: Option<&Path>) -> Result<PathBuf, MotoError> {
    let venv = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("PODNET_VENV").map(PathBuf::from))
        .unwrap_or_else(|| repo_root().join(".venv"));
    if has_moto(&venv) {
        return Ok(venv);
    }
    let script = repo_root().join("scripts").join("ensure-venv");
    let out = Command::new(&script)
        .env("PODNET_VENV", &venv)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| MotoError::Bootstrap {
            venv: venv.display().to_string(),
            script: script.display().to_string(),
            detail: e.to_string(),
        })?;
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let made = if printed.is_empty() {
        venv.clone()
    } else {
        PathBuf::from(printed)
    };
    if out.status.success() && has_moto(&made) {
        Ok(made)
    } else {
        Err(MotoError::Bootstrap {
            venv: venv.display().to_string(),
            script: script.display().to_string(),
            detail: format!("exit status {}", out.status),
        })
    }
}

/// A running moto_server.
pub struct Moto {
    pub port: u16,
    pub endpoint: String,
    pub pid: u32,
    stop: Option<mpsc::Sender<()>>,
    keeper: Option<JoinHandle<()>>,
}

const STARTUP: Duration = Duration::from_secs(90);

fn tail(lines: &Arc<Mutex<Vec<String>>>) -> String {
    lines.lock().map(|l| l.join("\n")).unwrap_or_default()
}

fn drain(r: impl Read + Send + 'static, lines: Arc<Mutex<Vec<String>>>, port_tx: Option<mpsc::Sender<u16>>) {
    std::thread::spawn(move || {
        let mut port_tx = port_tx;
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if let Some(tx) = &port_tx
                && let Some(rest) = line.split("Running on http://").nth(1)
                && let Some(port) = rest
                    .trim()
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
            {
                let _ = tx.send(port);
                port_tx = None;
            }
            tracing::trace!(target: "moto", "{line}");
            if let Ok(mut l) = lines.lock() {
                if l.len() >= 40 {
                    l.remove(0);
                }
                l.push(line);
            }
        }
    });
}

/// The keeper thread: start moto, report its pid and port on `ready_tx`,
/// and kill its process group once `stop_rx` fires (or the handle is gone).
fn keep(bin: &Path, ready_tx: mpsc::Sender<Result<(u32, u16), MotoError>>, stop_rx: mpsc::Receiver<()>) {
    let mut child = match spawn_server(bin) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready_tx.send(Err(e));
            return;
        }
    };
    let pid = child.id();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (port_tx, port_rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        drain(out, lines.clone(), Some(port_tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        drain(err, lines.clone(), Some(port_tx));
    }
    let port = wait_for_port(&mut child, &lines, &port_rx);
    let failed = port.is_err();
    let _ = ready_tx.send(port.map(|p| (pid, p)));
    if !failed {
        // Wait until the handle is dropped (or its sender vanishes).
        let _ = stop_rx.recv();
    }
    // SAFETY: signalling our own child's process group.
    unsafe {
        libc::kill(-(pid as i32), libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `moto_server` on a free loopback port, in its own process group and
/// killed with its parent (so a crashed test leaves no moto behind).
fn spawn_server(bin: &Path) -> Result<Child, MotoError> {
    let mut cmd = Command::new(bin);
    cmd.args(["-H", "127.0.0.1", "-p", "0"])
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() == 1 {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|source| MotoError::Spawn {
        path: bin.display().to_string(),
        source,
    })
}

/// The port moto reports binding, unless it exits or takes too long.
fn wait_for_port(
    child: &mut Child,
    lines: &Arc<Mutex<Vec<String>>>,
    port_rx: &mpsc::Receiver<u16>,
) -> Result<u16, MotoError> {
    let started = std::time::Instant::now();
    loop {
        match port_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(p) => break Ok(p),
            Err(_) => {
                if let Ok(Some(_)) = child.try_wait() {
                    break Err(MotoError::Exited { output: tail(lines) });
                }
                if started.elapsed() > STARTUP {
                    break Err(MotoError::Timeout {
                        secs: STARTUP.as_secs(),
                        output: tail(lines),
                    });
                }
            }
        }
    }
}

impl Moto {
    /// Start `moto_server` from `venv` on a free loopback port and wait until
    /// it accepts connections.
    pub fn start(venv: &Path) -> Result<Moto, MotoError> {
        let bin = venv.join("bin").join("moto_server");
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(u32, u16), MotoError>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let keeper = std::thread::Builder::new()
            .name("moto-keeper".into())
            .spawn(move || keep(&bin, ready_tx, stop_rx))
            .map_err(|source| MotoError::Spawn {
                path: "moto-keeper thread".into(),
                source,
            })?;
        let (pid, port) = match ready_rx.recv() {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                let _ = keeper.join();
                return Err(e);
            }
            Err(_) => {
                let _ = keeper.join();
                return Err(MotoError::Exited {
                    output: "the keeper thread ended".into(),
                });
            }
        };
        // werkzeug prints its address right after binding; confirm it accepts.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Moto {
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            pid,
            stop: Some(stop_tx),
            keeper: Some(keeper),
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(k) = self.keeper.take() {
            let _ = k.join();
        }
    }
}
