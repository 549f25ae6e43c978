//! `podnet unlock`: release an apply lock whose holder is gone. A lock held by
//! a live process on this machine is never released.

use anyhow::{Result, bail};
use serde_json::json;

use super::{Context, ExitStatus};
use crate::engine::lock::LockState;

pub fn run(ctx: &Context, args: &crate::cli::UnlockArgs) -> Result<ExitStatus> {
    let p = &ctx.printer;
    let state = ctx.state_dir()?;
    let path = match state.remote() {
        Some(r) => format!("{}/lock", r.url()),
        None => state.lock_path().display().to_string(),
    };
    match state.inspect_lock()? {
        LockState::Free => {
            p.json(&json!({ "lock": path, "state": "free", "released": false }));
            p.out(format!("No lock is held ({path})."));
            Ok(ExitStatus::Success)
        }
        LockState::HeldLive(h) => {
            p.json(&json!({ "lock": path, "state": "held", "holder": h, "released": false }));
            bail!("the lock is held by a running {h}; stop that process (or wait for it) instead of unlocking");
        }
        LockState::Left(h) => {
            let why = if h.is_local() {
                "its process is no longer running".to_string()
            } else {
                format!(
                    "it was taken on another machine ({}); make sure that podnet is no longer running",
                    h.host
                )
            };
            p.info(format!("The lock at {path} was left by {h}: {why}."));
            if !args.yes {
                if !p.can_prompt() {
                    bail!("refusing to unlock without confirmation: stdin is not a terminal; pass --yes");
                }
                if !p.confirm("Release it?") {
                    p.info("Left as it was.");
                    return Ok(ExitStatus::Failure);
                }
            }
            let released = state.release_lock()?;
            p.json(&json!({ "lock": path, "state": "left", "holder": released, "released": true }));
            p.out(format!("Released the lock left by {h}."));
            Ok(ExitStatus::Success)
        }
    }
}
