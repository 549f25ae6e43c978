//! `podnet apply`: take the lock, plan, show the plan, ask, save the approved
//! plan, and run it through the engine with a journal. Preflight errors stop
//! it before any change; no changes means no journal and no AWS writes.

use anyhow::{Result, bail};
use serde_json::json;

use super::{Context, ExitStatus, run_report};
use crate::cli::ApplyArgs;
use crate::engine::SavedPlan;
use crate::engine::session::{self, Previous};
use crate::migration::{self, Approved};
use crate::output::plan_view;
use crate::output::progress::RunProgress;

pub async fn run(ctx: &Context, args: &ApplyArgs) -> Result<ExitStatus> {
    let p = &ctx.printer;
    let spec = ctx.spec()?;
    let state = ctx.state_dir_for(&spec)?;
    state.ensure()?;
    let guard = state.lock("apply")?;
    // Shared state: what the store holds now that no one else can write it.
    state.pull()?;
    if let Some(prev) = &guard.took_over {
        p.warn(format!("took over the lock left by {prev}, which is no longer running"));
    }
    let rstate = crate::rollback::saga::state_dir(&state);
    if super::rollback::unfinished(&rstate)?.is_some() {
        bail!(
            "a rollback of this cluster is unfinished: finish it with `podnet rollback` (or `podnet resume`) before applying again"
        );
    }
    if super::rollback::finished(&rstate)? {
        // The migration was rolled back: its journal (however far it got)
        // and the rollback's are history; this apply starts afresh.
        let rolled_back = rstate.archive()?;
        let applied = state.archive()?;
        p.info(format!(
            "The last migration was rolled back; its journals are archived in {} and {}.",
            applied.display(),
            rolled_back.display()
        ));
    }
    match session::begin_apply(&state, args.replan)? {
        Previous::None => {}
        Previous::Finished(to) => p.info(format!(
            "The previous migration finished; its journal is archived in {}.",
            to.display()
        )),
        Previous::SetAside(to) => p.warn(format!(
            "set the unfinished apply aside (archived in {}); planning again from the cluster as it is",
            to.display()
        )),
    }

    let progress = RunProgress::new(p.clone());
    let mut env = migration::connect(&ctx.target(&spec.cluster, &spec.region), progress).await?;
    env.waits = spec.waits;
    let doc = migration::prepare(&env, &spec).await?;
    for l in plan_view::render(&doc) {
        p.out(l);
    }
    if doc.has_errors() {
        p.json(&json!({ "plan": doc, "applied": false, "reason": "preflight errors" }));
        p.error("preflight found errors; nothing was changed");
        return Ok(ExitStatus::Failure);
    }
    if !doc.changes_pending {
        p.json(&json!({ "plan": doc, "applied": false, "reason": "no changes" }));
        return Ok(ExitStatus::Success);
    }
    if !args.auto_approve {
        if !p.can_prompt() {
            bail!(
                "refusing to apply without confirmation: stdin is not a terminal. Review `podnet plan`, then pass --auto-approve"
            );
        }
        if !p.confirm("\nDo you want podnet to perform these actions on the cluster?") {
            p.info("Apply cancelled; nothing was changed.");
            return Ok(ExitStatus::Failure);
        }
    }

    let inputs = serde_json::to_value(&doc.inputs)?;
    let saved = SavedPlan::new(
        &spec.cluster,
        &spec.region,
        Some(ctx.plan_file()),
        doc.spec_fingerprint.clone(),
        doc.steps.clone(),
        inputs,
    );
    state.save_plan(&saved)?;
    let approved = Approved::load(&saved)?;
    p.info(match state.remote() {
        Some(r) => format!(
            "\nApplying (journal: {}/journal, working copy {})",
            r.url(),
            state.journal_path().display()
        ),
        None => format!("\nApplying (journal: {})", state.journal_path().display()),
    });
    let outcome = approved.run(env, &state, "apply", args.stop_after.as_deref()).await?;
    drop(guard);
    Ok(run_report(ctx, &outcome, Some(&doc)))
}
