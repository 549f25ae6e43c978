//! `podnet validate`: the static checks of a plan file, every problem with its
//! field path and a fix. No AWS calls.

use anyhow::Result;
use serde_json::json;

use super::{Context, ExitStatus};
use crate::output::{paint, style};
use crate::spec::PodSubnetPlan;

pub fn run(ctx: &Context) -> Result<ExitStatus> {
    let file = ctx.plan_file();
    let p = &ctx.printer;
    match ctx.spec() {
        Ok(spec) => {
            let subnets = match &spec.pod_subnets {
                PodSubnetPlan::Auto => "auto-sized per AZ".to_string(),
                PodSubnetPlan::Explicit { subnets } => {
                    let parts: Vec<String> = subnets
                        .iter()
                        .map(|s| format!("{} {}", s.availability_zone, s.cidr))
                        .collect();
                    parts.join(", ")
                }
            };
            p.json(&json!({ "file": file.display().to_string(), "valid": true, "problems": [], "spec": spec }));
            p.out(format!(
                "{} {} is valid",
                paint(style::GREEN.bold(), "✓"),
                file.display()
            ));
            p.out(format!("  cluster          {} ({})", spec.cluster, spec.region));
            p.out(format!("  secondary CIDR   {}", spec.secondary_cidr));
            p.out(format!("  pod subnets      {subnets}"));
            p.out(format!("  SG patches       {}", spec.security_group_patches.len()));
            Ok(ExitStatus::Success)
        }
        Err(e) => {
            let problems = e.problems();
            p.json(&json!({ "file": file.display().to_string(), "valid": false, "problems": problems }));
            p.out(format!(
                "{} {} has {} problem{}:",
                paint(style::RED.bold(), "✗"),
                file.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            ));
            for prob in &problems {
                let at = if prob.path.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", paint(style::BOLD, &prob.path))
                };
                p.out(format!("  - {at}{}", prob.message));
                p.out(format!("    fix: {}", prob.fix));
            }
            Ok(ExitStatus::Failure)
        }
    }
}
