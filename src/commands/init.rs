//! `podnet init`: discover the cluster (read-only) and write a commented plan
//! file for it. Never overwrites a file without `--force`; the file it writes
//! is validated and planned before it is written, and what still needs a
//! human decision is printed.

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::json;

use super::{Context, ExitStatus};
use crate::aws::{self, AwsTarget};
use crate::cli::InitArgs;
use crate::output::progress::RunProgress;
use crate::output::{paint, style};
use crate::planner::{self, Severity};
use crate::spec::{self, Overrides};
use crate::{init, migration};

pub async fn run(ctx: &Context, args: &InitArgs) -> Result<ExitStatus> {
    let p = &ctx.printer;
    let file = ctx.plan_file();
    let Some(cluster) = ctx.global.cluster.clone() else {
        bail!("podnet init needs the cluster: pass --cluster NAME (`aws eks list-clusters` lists them)");
    };
    if file.exists() && !args.force {
        bail!(
            "{} already exists; podnet init does not overwrite a plan: pass --force to replace it, or -f to write another file",
            file.display()
        );
    }
    let region = region(ctx).await?;
    let base = init::base_spec(&cluster, &region, None).map_err(problems)?;
    let env = migration::connect(&ctx.target(&cluster, &region), RunProgress::new(p.clone())).await?;
    let d = migration::discover(&env, &base).await;
    env.progress.phase_done();
    let d = d?;
    let draft = init::draft(&cluster, &region, &d).map_err(problems)?;
    let text = init::render(&draft);
    // What is written must be what `validate` accepts: a draft that does not
    // parse is podnet's bug, reported instead of written.
    let written = spec::parse(&text, &Overrides::default())
        .map_err(|e| anyhow!("podnet wrote a plan it cannot read back (a bug; please report it): {e:?}"))?;
    let planned = planner::plan(&written, &d);
    write(&file, &text, args.force)?;

    let open: Vec<&planner::Finding> = planned
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Note)
        .collect();
    p.json(&json!({
        "file": file.display().to_string(),
        "cluster": cluster,
        "region": region,
        "secondary_cidr": draft.cidr.block,
        "secondary_cidr_reason": draft.cidr.why,
        "pod_subnets": draft.subnets.iter().map(|s| json!({
            "availability_zone": s.availability_zone, "cidr": s.cidr, "name": s.name,
        })).collect::<Vec<_>>(),
        "security_group_patches": draft.patches.iter().map(|x| json!({
            "group_id": x.suggestion.group_id, "group_name": x.suggestion.group_name, "ports": x.suggestion.ports,
        })).collect::<Vec<_>>(),
        "findings": open,
    }));
    p.out(format!(
        "{} wrote {} for {} in {}",
        paint(style::GREEN.bold(), "✓"),
        file.display(),
        cluster,
        region
    ));
    p.out(format!("  secondary CIDR   {} ({})", draft.cidr.block, draft.cidr.why));
    for s in &draft.subnets {
        p.out(format!(
            "  pod subnet       {} {} ({})",
            s.availability_zone, s.cidr, s.name
        ));
    }
    for x in &draft.patches {
        p.out(format!(
            "  SG patch         {} ({}) {}",
            x.suggestion.group_name, x.suggestion.group_id, x.suggestion.ports
        ));
    }
    if open.is_empty() {
        p.out("Nothing in it needs your decision that podnet can see.");
    } else {
        p.out(format!("{} finding(s) need your decision before `apply`:", open.len()));
        for f in open {
            let severity = if f.severity == Severity::Error {
                "error"
            } else {
                "warning"
            };
            p.out(format!("  - {severity} [{}] {}", f.id, f.reason));
            p.out(format!("    fix: {}", f.fix));
        }
    }
    p.info(format!(
        "Read it, then: podnet -f {0} validate && podnet -f {0} plan",
        file.display()
    ));
    Ok(ExitStatus::Success)
}

/// `--region`, else the AWS configuration's (AWS_REGION, the profile).
async fn region(ctx: &Context) -> Result<String> {
    if let Some(r) = &ctx.global.region {
        return Ok(r.clone());
    }
    let cfg = aws::sdk_config(&AwsTarget {
        region: None,
        profile: ctx.global.profile.clone(),
    })
    .await;
    cfg.region()
        .map(ToString::to_string)
        .ok_or_else(|| anyhow!("podnet init needs the cluster's region: pass --region REGION or set AWS_REGION"))
}

fn problems(p: Vec<spec::Problem>) -> anyhow::Error {
    let lines: Vec<String> = p.iter().map(|x| format!("  - {x}")).collect();
    anyhow!("cannot write a plan for these arguments:\n{}", lines.join("\n"))
}

/// Writes the whole text to a temporary file beside `file`, then puts it in
/// place: renamed over an existing file with `force`, else hard-linked,
/// which fails if `file` exists (so two `init`s racing for one path cannot
/// both write it). A failed write never leaves a half-written plan.
fn write(file: &Path, text: &str, force: bool) -> Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".podnet-init")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    if force {
        tmp.persist(file)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot write {}", file.display()))?;
    } else {
        std::fs::hard_link(tmp.path(), file).with_context(|| {
            format!(
                "cannot create {} (pass --force to replace an existing file)",
                file.display()
            )
        })?;
    }
    Ok(())
}
