//! One thin module per subcommand: read the flags, call the library, hand the
//! result to the [`Printer`]. The process exit code is an [`ExitStatus`].

mod apply;
mod completions;
mod iam_policy;
mod init;
mod max_pods;
mod plan;
mod resume;
mod rollback;
mod status;
mod unlock;
mod validate;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::engine::{RunOutcome, StateDir};
use crate::migration::PlanDocument;
use crate::output::{Printer, paint, style};
use crate::spec::{self, Overrides, Spec};

/// How the process ends (documented in `podnet --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Done; for `plan`, nothing to change.
    Success,
    /// An error, an invalid plan, a failed check.
    Failure,
    /// `plan` found changes to make (Terraform's `-detailed-exitcode` 2).
    Changes,
    /// Stopped by Ctrl-C; `podnet resume` continues.
    Interrupted,
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        ExitCode::from(match s {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Changes => 2,
            ExitStatus::Interrupted => 130,
        })
    }
}

/// What every command gets: the global flags and the printer.
pub struct Context {
    pub global: GlobalArgs,
    pub printer: Arc<Printer>,
}

impl Context {
    /// Which cluster to connect to, and how: the kubeconfig only when
    /// asked for (`--kubeconfig`, `--kube-context` or `KUBECONFIG`).
    pub fn target(&self, cluster: &str, region: &str) -> crate::migration::Target {
        use crate::k8s::connect::KubeAccess;
        let g = &self.global;
        let env_kubeconfig = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty());
        let kube = if g.kubeconfig.is_some() || g.kube_context.is_some() || env_kubeconfig.is_some() {
            KubeAccess::Kubeconfig {
                path: g.kubeconfig.clone(),
                context: g.kube_context.clone(),
            }
        } else {
            KubeAccess::Direct
        };
        crate::migration::Target {
            cluster: cluster.to_string(),
            region: region.to_string(),
            profile: g.profile.clone(),
            kube,
        }
    }

    pub fn overrides(&self) -> Overrides {
        Overrides {
            cluster: self.global.cluster.clone(),
            region: self.global.region.clone(),
        }
    }

    /// The validated plan file.
    pub fn spec(&self) -> Result<Spec, spec::SpecError> {
        spec::load(&self.global.file, &self.overrides())
    }

    /// The state directory of the plan's cluster: shared state when
    /// `--state` or the plan's `[state] url` names one, else `--state-dir`,
    /// or the per-user default for its cluster and region.
    pub fn state_dir_for(&self, spec: &Spec) -> Result<StateDir> {
        let url = self.global.state_url.clone().or_else(|| spec.state_url.clone());
        if let Some(url) = url {
            return self.shared_state(&url, &spec.region);
        }
        match &self.global.state_dir {
            Some(d) => Ok(StateDir::at(d)),
            None => Ok(StateDir::default_for(&spec.cluster, &spec.region)?),
        }
    }

    /// Shared state at `url` (s3://BUCKET/PREFIX), its working copy in
    /// `--state-dir` or the per-user cache. Nothing is read yet: readers
    /// pull, writers pull once they hold the lock.
    fn shared_state(&self, url: &str, region: &str) -> Result<StateDir> {
        let (bucket, prefix) =
            crate::engine::remote::parse_s3_url(url).map_err(|e| anyhow::anyhow!("--state / [state] url: {e}"))?;
        let cache = match &self.global.state_dir {
            Some(d) => d.clone(),
            None => dirs::cache_dir()
                .ok_or(crate::engine::StateError::NoHome)?
                .join("podnet")
                .join("shared-state")
                .join(&bucket)
                .join(if prefix.is_empty() { "_root" } else { prefix.as_str() }),
        };
        let store = crate::aws::s3::S3Objects::connect(&crate::aws::s3::S3Target {
            bucket,
            prefix,
            region: region.to_string(),
            profile: self.global.profile.clone(),
        })?;
        Ok(StateDir::shared(
            cache,
            crate::engine::remote::Remote::new(std::sync::Arc::new(store)),
        ))
    }

    /// This cluster's state directory: `--state-dir`, or the per-user default
    /// for the plan's (or the flags') cluster and region.
    pub fn state_dir(&self) -> Result<StateDir> {
        // The plan file may name shared state; it is optional here when the
        // flags say enough.
        let spec = self.spec();
        let url = self
            .global
            .state_url
            .clone()
            .or_else(|| spec.as_ref().ok().and_then(|s| s.state_url.clone()));
        if url.is_none()
            && let Some(d) = &self.global.state_dir
        {
            return Ok(StateDir::at(d));
        }
        let (cluster, region) = match (&self.global.cluster, &self.global.region, spec) {
            (Some(c), Some(r), _) => (c.clone(), r.clone()),
            (_, _, Ok(spec)) => (spec.cluster, spec.region),
            (_, _, Err(e)) => anyhow::bail!(
                "{e}\n(the state directory is found from the plan file's cluster and region; pass --state-dir, or --cluster and --region)"
            ),
        };
        match url {
            Some(url) => self.shared_state(&url, &region),
            None => Ok(StateDir::default_for(&cluster, &region)?),
        }
    }

    pub fn plan_file(&self) -> PathBuf {
        self.global.file.clone()
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli, printer: Printer) -> Result<ExitStatus> {
    let ctx = Context {
        global: cli.global,
        printer: Arc::new(printer),
    };
    match cli.command {
        Command::Init(args) => init::run(&ctx, &args).await,
        Command::Validate => validate::run(&ctx),
        Command::MaxPods(args) => max_pods::run(&ctx, &args).await,
        Command::Status => status::run(&ctx),
        Command::Unlock(args) => unlock::run(&ctx, &args),
        Command::Plan(args) if args.rollback => plan::rollback(&ctx).await,
        Command::Plan(_) => plan::run(&ctx).await,
        Command::Apply(args) => apply::run(&ctx, &args).await,
        Command::Resume(args) => resume::run(&ctx, &args).await,
        Command::Rollback(args) => rollback::run(&ctx, &args).await,
        Command::IamPolicy(args) => iam_policy::run(&ctx, &args),
        Command::Completions(args) => completions::completions(&ctx, &args),
        Command::Man => completions::man(&ctx),
        Command::Verify => verify::run(&ctx).await,
    }
}

/// Reports how a run ended and maps it to the exit status.
pub(crate) fn run_report(ctx: &Context, outcome: &RunOutcome, plan: Option<&PlanDocument>) -> ExitStatus {
    let p = &ctx.printer;
    p.json(&serde_json::json!({ "plan": plan, "applied": true, "outcome": outcome }));
    match outcome {
        RunOutcome::Succeeded { outputs } => {
            p.out(format!(
                "{} {} step(s) done.",
                paint(style::GREEN.bold(), "Apply complete:"),
                outputs.len()
            ));
            ExitStatus::Success
        }
        RunOutcome::Failed { step, error } => {
            p.error(format!("step {step} failed: {error}"));
            p.info(
                "Nothing after it ran. Fix the cause, then run `podnet resume` (`podnet status` shows the journal).",
            );
            ExitStatus::Failure
        }
        RunOutcome::Stopped { after, .. } => {
            p.out(format!(
                "Stopped after {after}, as asked. `podnet resume` continues from the next step."
            ));
            ExitStatus::Success
        }
        RunOutcome::Interrupted { step } => {
            p.warn(format!(
                "stopped while {step} was running; run `podnet resume` to continue"
            ));
            ExitStatus::Interrupted
        }
    }
}
