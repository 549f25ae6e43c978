//! `podnet rollback`: undo the recorded apply. It takes the apply's lock,
//! continues an unfinished rollback from its journal (the saved reverse plan,
//! never planned again), or plans a new one: refused while the apply is
//! unfinished or while anything podnet did not create stands in the way,
//! shown with the same symbols as `plan`, confirmed, saved in
//! `<state>/rollback/`, and run through the engine. Nothing left to undo
//! means no journal and no change.

use anyhow::{Result, bail};
use serde_json::json;

use super::{Context, ExitStatus};
use crate::cli::RollbackArgs;
use crate::engine::journal;
use crate::engine::{self, JournalState, RunOutcome, SavedPlan, StateDir, Step, StepCtx};
use crate::migration;
use crate::output::plan_view;
use crate::output::progress::RunProgress;
use crate::output::{paint, style};
use crate::rollback::saga::{self, RollbackInputs};
use crate::rollback::{self as rb, RollbackPlan};
use crate::spec::Spec;
use crate::steps::Env;

pub async fn run(ctx: &Context, args: &RollbackArgs) -> Result<ExitStatus> {
    let p = &ctx.printer;
    let spec = ctx.spec()?;
    let state = ctx.state_dir_for(&spec)?;
    state.ensure()?;
    let guard = state.lock("rollback")?;
    // Shared state: what the store holds now that no one else can write it.
    state.pull()?;
    if let Some(prev) = &guard.took_over {
        p.warn(format!("took over the lock left by {prev}, which is no longer running"));
    }
    let rstate = saga::state_dir(&state);
    let status = match unfinished(&rstate)? {
        Some(saved) => continue_saved(ctx, args, &rstate, &saved).await?,
        None => plan_and_run(ctx, args, &state, &rstate).await?,
    };
    drop(guard);
    Ok(status)
}

/// The rollback plan saved in `rstate` when its journal is unfinished (a
/// finished one is archived only once a new rollback is approved).
pub(super) fn unfinished(rstate: &StateDir) -> Result<Option<SavedPlan>> {
    if !rstate.has_journal() {
        return Ok(None);
    }
    let history = JournalState::from_records(&journal::read(&rstate.journal_path())?);
    if history.is_complete() {
        return Ok(None);
    }
    match rstate.load_plan()? {
        Some(saved) => Ok(Some(saved)),
        None => bail!(
            "{} holds a rollback journal without its plan: podnet cannot tell what it was doing; move the directory aside after checking the cluster",
            rstate.location()
        ),
    }
}

/// Whether a rollback journaled in `rstate` finished: the apply it undid is
/// over, and nothing of it may be resumed.
pub(super) fn finished(rstate: &StateDir) -> Result<bool> {
    if !rstate.has_journal() {
        return Ok(false);
    }
    Ok(JournalState::from_records(&journal::read(&rstate.journal_path())?).is_complete())
}

fn load(saved: &SavedPlan) -> Result<(RollbackInputs, saga::Units)> {
    let inputs: RollbackInputs = serde_json::from_value(saved.inputs.clone()).map_err(|e| {
        anyhow::anyhow!("the saved rollback plan does not decode ({e}); it was not written by this podnet")
    })?;
    let units = saga::build(&inputs);
    engine::check_plan(saved, &units)?;
    Ok((inputs, units))
}

pub(super) async fn continue_saved(
    ctx: &Context,
    args: &RollbackArgs,
    rstate: &StateDir,
    saved: &SavedPlan,
) -> Result<ExitStatus> {
    let p = &ctx.printer;
    saved.written_by_this_version()?;
    let (inputs, units) = load(saved)?;
    p.info(format!(
        "Continuing the rollback of {} ({}) planned at {} (journal: {}).",
        saved.cluster,
        saved.region,
        saved.created_at,
        rstate.journal_path().display()
    ));
    if !confirm(ctx, args, "Continue the rollback?")? {
        return Ok(ExitStatus::Failure);
    }
    let env = migration::connect(&ctx.target(&saved.cluster, &saved.region), RunProgress::new(p.clone())).await?;
    execute(ctx, env, &inputs, &units, rstate, saved, args).await
}

/// A rollback planned against the cluster as it is now: the findings of
/// the record-based check, and each unit's observation of what is left to
/// undo (the record-based preview when the findings stop it, since the
/// units would refuse anyway). What `plan --rollback` shows and
/// `rollback` runs.
pub(super) struct Prepared {
    pub env: Env,
    pub inputs: RollbackInputs,
    pub units: saga::Units,
    pub plan: RollbackPlan,
}

pub(super) async fn prepare(ctx: &Context, spec: &Spec, state: &StateDir) -> Result<Prepared> {
    let (inputs, record) = rb::applied(state)?;
    let env = migration::connect(
        &ctx.target(&spec.cluster, &spec.region),
        RunProgress::new(ctx.printer.clone()),
    )
    .await?;
    let d = migration::discover(&env, spec).await;
    env.progress.phase_done();
    let d = d?;
    let preview = rb::plan::plan(&inputs, &record, &d);
    let rinputs = RollbackInputs::new(&inputs, record, &d, Some(ctx.plan_file()));
    let units = saga::build(&rinputs);
    let steps = if preview.has_errors() {
        preview.steps
    } else {
        let outputs = Default::default();
        let mut steps = vec![];
        for u in &units {
            let plan = u
                .observe(&env, &StepCtx::planning(u.id(), &outputs))
                .await
                .map_err(|e| anyhow::anyhow!("cannot plan {}: {}", u.id(), e.before_any_change()))?;
            steps.push(plan);
        }
        steps
    };
    Ok(Prepared {
        env,
        inputs: rinputs,
        units,
        plan: RollbackPlan {
            findings: preview.findings,
            steps,
        },
    })
}

async fn plan_and_run(ctx: &Context, args: &RollbackArgs, state: &StateDir, rstate: &StateDir) -> Result<ExitStatus> {
    let p = &ctx.printer;
    let spec = ctx.spec()?;
    let Prepared {
        env,
        inputs,
        units,
        plan,
    } = prepare(ctx, &spec, state).await?;
    for l in plan_view::render_rollback(&spec.cluster, &plan) {
        p.out(l);
    }
    if plan.has_errors() {
        p.json(&json!({ "rollback": true, "findings": plan.findings, "steps": plan.steps, "applied": false, "reason": "errors" }));
        return Ok(ExitStatus::Failure);
    }
    if !plan.steps.iter().any(|s| s.has_changes()) {
        p.json(&json!({ "rollback": true, "findings": plan.findings, "steps": plan.steps, "applied": false, "reason": "no changes" }));
        p.info("Nothing to roll back: the cluster is as it was before the apply.");
        return Ok(ExitStatus::Success);
    }
    if !confirm(ctx, args, "\nDo you want podnet to roll the migration back?")? {
        return Ok(ExitStatus::Failure);
    }
    let saved = SavedPlan::new(
        &spec.cluster,
        &spec.region,
        Some(ctx.plan_file()),
        engine::fingerprint(&spec),
        plan.steps.clone(),
        serde_json::to_value(&inputs)?,
    );
    rstate.ensure()?;
    // A finished earlier rollback stays in place until this one is
    // approved: while it is there, `resume` and `apply` know the migration
    // was undone.
    if rstate.has_journal() {
        let to = rstate.archive()?;
        p.info(format!(
            "The previous rollback's journal is archived in {}.",
            to.display()
        ));
    }
    rstate.save_plan(&saved)?;
    p.info(format!("\nRolling back (journal: {})", rstate.journal_path().display()));
    execute(ctx, env, &inputs, &units, rstate, &saved, args).await
}

fn confirm(ctx: &Context, args: &RollbackArgs, question: &str) -> Result<bool> {
    let p = &ctx.printer;
    if args.auto_approve {
        return Ok(true);
    }
    if !p.can_prompt() {
        bail!(
            "refusing to roll back without confirmation: stdin is not a terminal. Review `podnet plan --rollback`, then pass --auto-approve"
        );
    }
    if p.confirm(question) {
        Ok(true)
    } else {
        p.info("Rollback cancelled; nothing more was changed.");
        Ok(false)
    }
}

async fn execute(
    ctx: &Context,
    mut env: Env,
    inputs: &RollbackInputs,
    units: &[Box<dyn Step<Env>>],
    rstate: &StateDir,
    saved: &SavedPlan,
    args: &RollbackArgs,
) -> Result<ExitStatus> {
    env.waits = inputs.waits;
    let observer = env.progress.clone();
    let outcome = engine::execute(engine::Run {
        env: &env,
        steps: units,
        state: rstate,
        saved,
        command: "rollback",
        observer: observer.as_ref(),
        hooks: None,
        retry: Default::default(),
        stop_after: args.stop_after.as_deref(),
    })
    .await?;
    Ok(report(ctx, &outcome))
}

fn report(ctx: &Context, outcome: &RunOutcome) -> ExitStatus {
    let p = &ctx.printer;
    p.json(&json!({ "rollback": true, "applied": true, "outcome": outcome }));
    match outcome {
        RunOutcome::Succeeded { outputs } => {
            p.out(format!(
                "{} {} step(s) done; the cluster is back on its node subnets.",
                paint(style::GREEN.bold(), "Rollback complete:"),
                outputs.len()
            ));
            ExitStatus::Success
        }
        RunOutcome::Failed { step, error } => {
            p.error(format!("step {step} failed: {error}"));
            p.info("Nothing after it ran. Fix the cause, then run `podnet rollback` (or `podnet resume`) to continue.");
            ExitStatus::Failure
        }
        RunOutcome::Stopped { after, .. } => {
            p.out(format!(
                "Stopped after {after}, as asked. `podnet rollback` continues from the next step."
            ));
            ExitStatus::Success
        }
        RunOutcome::Interrupted { step } => {
            p.warn(format!(
                "stopped while {step} was running; run `podnet rollback` to continue"
            ));
            ExitStatus::Interrupted
        }
    }
}
