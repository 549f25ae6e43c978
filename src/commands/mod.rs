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

    /// The state directory of the plan's cluster: `--state-dir`, or the
    /// per-user default for its cluster and region.
    pub fn state_dir_for(&self, spec: &Spec) -> Result<StateDir> {
        match &self.global.state_dir {
            Some(d) => Ok(StateDir::at(d)),
            None => Ok(StateDir::default_for(&spec.cluster, &spec.region)?),
        }
    }

    /// This cluster's state directory: `--state-dir`, or the per-user default
    /// for the plan's (or the flags') cluster and region.
    pub fn state_dir(&self) -> Result<StateDir> {
        if let Some(d) = &self.global.state_dir {
            return Ok(StateDir::at(d));
        }
        let (cluster, region) = match (&self.global.cluster, &self.global.region) {
            (Some(c), Some(r)) => (c.clone(), r.clone()),
            _ => {
                let spec = self.spec().map_err(|e| {
                    anyhow::anyhow!("{e}\n(the state directory is found from the plan file's cluster and region; pass --state-dir, or --cluster and --region)")
                })?;
                (spec.cluster, spec.region)
            }
        };
        Ok(StateDir::default_for(&cluster, &region)?)
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
