//! `podnet resume`: continue an interrupted or failed apply. It replays the
//! saved plan (it never plans again), refuses if the plan file changed since,
//! re-observes succeeded steps for drift, and runs the rest.

use anyhow::{Context as _, Result, bail};

use super::{Context, ExitStatus, run_report};
use crate::cli::ResumeArgs;
use crate::engine::{self, JournalError, JournalState, Overview, Run, fingerprint, journal, lock};
use crate::migration;
use crate::output::progress::RunProgress;
use crate::spec::{self, Overrides};
use crate::steps::{self, MigrationInputs};

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
    let guard = lock::acquire(&state.lock_path(), "resume")?;
    if let Some(prev) = &guard.took_over {
        p.warn(format!("took over the lock left by {prev}, which is no longer running"));
    }
    let saved = state.load_plan()?.with_context(|| {
        format!(
            "nothing to resume: no saved plan in {} (start with `podnet apply`)",
            state.root().display()
        )
    })?;
    if args.repair_journal
        && let Some(aside) = journal::repair_torn_tail(&state.journal_path())?
    {
        p.warn(format!("set the torn last journal line aside in {}", aside.display()));
    }
    let records = match journal::read(&state.journal_path()) {
        Ok(r) => r,
        Err(JournalError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(e.into()),
    };
    let history = JournalState::from_records(&records);

    match &file_spec {
        Ok(current) => {
            if fingerprint(current) != saved.spec_fingerprint {
                bail!(
                    "{} changed since this apply began; resume replays the approved plan and would ignore the change. \
                     Restore the file to continue, or run `podnet apply --replan` to plan again with it",
                    ctx.global.file.display()
                );
            }
        }
        Err(e) => p.warn(format!(
            "cannot read the plan file ({e}); resuming the saved plan of {}",
            saved.created_at
        )),
    }

    saved.written_by_this_version()?;
    let inputs: MigrationInputs = serde_json::from_value(saved.inputs.clone())
        .context("the saved plan's inputs do not decode; run `podnet apply --replan` to plan again")?;
    let steps = steps::build(&inputs);
    engine::check_plan(&saved, &steps)?;
    let left = Overview::of(&history, Some(&saved)).left;
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
    let mut env = migration::connect(&ctx.target(&saved.cluster, &saved.region), progress.clone()).await?;
    // The bounds the approved plan was saved with, not today's file.
    env.waits = inputs.waits;
    let outcome = engine::execute(Run {
        env: &env,
        steps: &steps,
        state: &state,
        saved: &saved,
        command: "resume",
        observer: progress.as_ref(),
        hooks: None,
        retry: Default::default(),
        stop_after: args.stop_after.as_deref(),
    })
    .await?;
    drop(guard);
    Ok(run_report(ctx, &outcome, None))
}
