//! `podnet resume`: continue an interrupted or failed apply. It replays the
//! saved plan (it never plans again), refuses if the plan file changed since,
//! re-observes succeeded steps for drift, and runs the rest.

use anyhow::{Result, bail};

use super::{Context, ExitStatus, run_report};
use crate::cli::ResumeArgs;
use crate::engine::session::{self, PlanFile, Resumable};
use crate::migration::{self, Approved};
use crate::output::progress::RunProgress;
use crate::spec::{self, Overrides};

pub async fn run(ctx: &Context, args: &ResumeArgs) -> Result<ExitStatus> {
    let p = &ctx.printer;
    // The plan file may be gone; the saved plan is what resume runs. The
    // state directory comes from the flags, the plan file, or --state-dir.
    let file_spec = spec::load(
        &ctx.global.file,
        &Overrides {
            cluster: ctx.global.cluster.clone(),
            region: ctx.global.region.clone(),
        },
    );
    let state = match (&file_spec, &ctx.global.state_dir) {
        (_, Some(_)) | (Err(_), None) => ctx.state_dir()?,
        (Ok(s), None) => ctx.state_dir_for(s)?,
    };
    let guard = state.lock("resume")?;
    // Shared state: what the store holds now that no one else can write it.
    state.pull()?;
    if let Some(prev) = &guard.took_over {
        p.warn(format!("took over the lock left by {prev}, which is no longer running"));
    }
    // An unfinished rollback is what `resume` continues: its step errors
    // say "run `podnet resume`" like apply's.
    let rstate = crate::rollback::saga::state_dir(&state);
    if super::rollback::finished(&rstate)? {
        bail!(
            "the migration in {} was rolled back: there is nothing to resume; run `podnet apply` to migrate again",
            state.location()
        );
    }
    if let Some(saved) = super::rollback::unfinished(&rstate)? {
        let args = crate::cli::RollbackArgs {
            auto_approve: args.auto_approve,
            stop_after: args.stop_after.clone(),
        };
        let status = super::rollback::continue_saved(ctx, &args, &rstate, &saved).await?;
        drop(guard);
        return Ok(status);
    }
    let plan_file = PlanFile {
        path: &ctx.global.file,
        current: file_spec.as_ref().ok(),
    };
    let Resumable {
        saved, left, repaired, ..
    } = session::resumable(&state, plan_file, args.repair_journal)?;
    if let Err(e) = &file_spec {
        p.warn(format!(
            "cannot read the plan file ({e}); resuming the saved plan of {}",
            saved.created_at
        ));
    }
    if let Some(aside) = repaired {
        p.warn(format!("set the torn last journal line aside in {}", aside.display()));
    }
    let approved = Approved::load(&saved)?;
    p.info(format!(
        "Resuming the migration of {} ({}) planned at {}.",
        saved.cluster, saved.region, saved.created_at
    ));
    if left.is_empty() {
        p.info("Every step has succeeded; checking them for drift.");
    } else {
        p.info(format!("Steps left: {}", left.join(", ")));
        if !args.auto_approve {
            if !p.can_prompt() {
                bail!("refusing to resume without confirmation: stdin is not a terminal; pass --auto-approve");
            }
            if !p.confirm("Continue?") {
                p.info("Resume cancelled.");
                return Ok(ExitStatus::Failure);
            }
        }
    }
    let progress = RunProgress::new(p.clone());
    let env = migration::connect(&ctx.target(&saved.cluster, &saved.region), progress).await?;
    let outcome = approved.run(env, &state, "resume", args.stop_after.as_deref()).await?;
    drop(guard);
    Ok(run_report(ctx, &outcome, None))
}
