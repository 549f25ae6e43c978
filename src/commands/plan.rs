//! `podnet plan`: discover, run preflight, show every change and the
//! capacity impact. Read-only. Exit 0 no changes, 2 changes pending, 1 error.

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
