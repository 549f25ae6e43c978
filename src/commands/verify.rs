//! `podnet verify`: is the cluster fully on custom networking? A table of
//! checks (or JSON); exit 1 if any fails.

use anyhow::Result;
use serde_json::json;

use super::{Context, ExitStatus};
use crate::output::progress::RunProgress;
use crate::output::{paint, style};
use crate::{discovery, migration, planner, verify};

pub async fn run(ctx: &Context) -> Result<ExitStatus> {
    let p = &ctx.printer;
    let spec = ctx.spec()?;
    let env = migration::connect(&ctx.target(&spec.cluster, &spec.region), RunProgress::new(p.clone())).await?;
    let kube = env
        .kube
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no Kubernetes client"))?;
    let d = discovery::discover(&env.aws, kube, &spec, env.progress.as_ref()).await;
    env.progress.phase_done();
    let d = d.map_err(|e| anyhow::anyhow!("{e}\n  hint: {}", e.hint()))?;
    let planned = planner::plan(&spec, &d);
    let report = verify::verify(&env.aws, kube, &planned.inputs.expect).await?;
    p.json(&json!({ "cluster": spec.cluster, "passed": report.passed(), "checks": report.checks }));
    for c in &report.checks {
        let mark = if c.passed {
            paint(style::GREEN, "✓")
        } else if c.warning {
            paint(style::YELLOW, "!")
        } else {
            paint(style::RED, "✗")
        };
        p.out(format!("{mark} {:<32} {}", c.id, c.summary));
        for f in &c.failures {
            p.out(format!("    {f}"));
        }
    }
    if report.passed() {
        p.out(paint(
            style::GREEN.bold(),
            format!("Verified: {} runs on VPC CNI custom networking.", spec.cluster),
        ));
        Ok(ExitStatus::Success)
    } else {
        p.out(paint(
            style::RED.bold(),
            format!("{} check(s) failed.", report.failed().len()),
        ));
        Ok(ExitStatus::Failure)
    }
}
