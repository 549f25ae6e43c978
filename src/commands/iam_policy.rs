//! `podnet iam-policy`: the IAM policy (or, with `--rbac`, the ClusterRole)
//! a command needs, from [`crate::iam`]. The cluster and region come from
//! the flags or the plan file; nothing reaches AWS, so it works before the
//! role it describes exists.

use anyhow::{Result, bail};

use super::{Context, ExitStatus};
use crate::aws::actions::Phase;
use crate::cli::{IamPolicyArgs, PolicyFor};
use crate::iam::{self, Target};

pub fn run(ctx: &Context, args: &IamPolicyArgs) -> Result<ExitStatus> {
    let p = &ctx.printer;
    let command = match args.command {
        PolicyFor::Plan => Phase::Plan,
        PolicyFor::Apply => Phase::Apply,
        PolicyFor::Rollback => Phase::Rollback,
    };
    if args.rbac {
        let role = iam::cluster_role(command, "podnet");
        p.json(&serde_json::json!({ "cluster_role": role }));
        p.out(role.trim_end());
        return Ok(ExitStatus::Success);
    }
    let spec = ctx.spec();
    let (cluster, region) = match (&ctx.global.cluster, &ctx.global.region, &spec) {
        (Some(c), Some(r), _) => (c.clone(), r.clone()),
        (_, _, Ok(spec)) => (spec.cluster.clone(), spec.region.clone()),
        (_, _, Err(e)) => {
            bail!("{e}\n(the policy names the cluster: pass --cluster and --region, or a plan file with -f)")
        }
    };
    let state = match ctx
        .global
        .state_url
        .clone()
        .or_else(|| spec.as_ref().ok().and_then(|s| s.state_url.clone()))
    {
        Some(url) => {
            Some(crate::engine::remote::parse_s3_url(&url).map_err(|e| anyhow::anyhow!("--state / [state] url: {e}"))?)
        }
        None => None,
    };
    if let Some(a) = &args.account
        && (a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
    {
        bail!("--account {a:?} is not an AWS account id: twelve digits, e.g. 123456789012");
    }
    if let Some(v) = &args.vpc_id
        && !v.starts_with("vpc-")
    {
        bail!("--vpc-id {v:?} is not a VPC id: it starts with vpc-, e.g. vpc-0abc1234");
    }
    let policy = iam::policy(
        command,
        &Target {
            cluster,
            region,
            account: args.account.clone(),
            vpc_id: args.vpc_id.clone(),
            partition: args.partition.clone(),
            state,
        },
    );
    // The document itself, in either output mode: it is what
    // `aws iam create-policy --policy-document` takes.
    p.json(&policy);
    p.out(serde_json::to_string_pretty(&policy)?);
    Ok(ExitStatus::Success)
}
