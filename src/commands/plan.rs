//! `podnet plan`: discover, run preflight, show every change and the
//! capacity impact; with `--rollback`, the recorded apply undone. Read-only.
//! Exit 0 no changes, 2 changes pending, 1 error.

use anyhow::Result;

use super::{Context, ExitStatus};
use crate::migration;
use crate::output::plan_view;
use crate::output::progress::RunProgress;

pub async fn run(ctx: &Context) -> Result<ExitStatus> {
    let p = &ctx.printer;
    let spec = ctx.spec()?;
    let env = migration::connect(&ctx.target(&spec.cluster, &spec.region), RunProgress::new(p.clone())).await?;
    let doc = migration::prepare(&env, &spec).await?;
    p.json(&doc);
    for l in plan_view::render(&doc) {
        p.out(l);
    }
    Ok(if doc.has_errors() {
        ExitStatus::Failure
    } else if doc.changes_pending {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}

/// `podnet plan --rollback`: the apply recorded in the state directory,
/// undone in reverse, against the cluster as it is now: exactly what
/// `podnet rollback` would show and run.
pub async fn rollback(ctx: &Context) -> Result<ExitStatus> {
    let p = &ctx.printer;
    let spec = ctx.spec()?;
    let state = ctx.state_dir_for(&spec)?;
    state.pull()?;
    let plan = super::rollback::prepare(ctx, &spec, &state).await?.plan;
    p.json(&serde_json::json!({
        "rollback": true,
        "cluster": spec.cluster,
        "region": spec.region,
        "findings": plan.findings,
        "steps": plan.steps,
    }));
    for l in plan_view::render_rollback(&spec.cluster, &plan) {
        p.out(l);
    }
    let changes = plan.steps.iter().any(|s| s.has_changes());
    Ok(if plan.has_errors() {
        ExitStatus::Failure
    } else if changes {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}
