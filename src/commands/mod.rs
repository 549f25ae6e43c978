//! One thin module per subcommand: read the flags, call the library, hand the
//! result to the [`Printer`]. The process exit code is an [`ExitStatus`].

mod max_pods;
mod status;
mod unlock;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::engine::StateDir;
use crate::output::Printer;
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
    pub printer: Printer,
}

impl Context {
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
        printer,
    };
    match cli.command {
        Command::Validate => validate::run(&ctx),
        Command::MaxPods(args) => max_pods::run(&ctx, &args).await,
        Command::Status => status::run(&ctx),
        Command::Unlock(args) => unlock::run(&ctx, &args),
        Command::Plan(_) => not_available(&ctx, "plan", "cluster discovery and preflight checks"),
        Command::Apply(_) => not_available(&ctx, "apply", "the AWS and Kubernetes migration steps"),
        Command::Resume(_) => not_available(&ctx, "resume", "the AWS and Kubernetes migration steps"),
        Command::Verify => not_available(&ctx, "verify", "cluster verification"),
    }
}

/// A command whose machinery is not in this build: say so plainly and fail.
fn not_available(ctx: &Context, command: &str, needs: &str) -> Result<ExitStatus> {
    let msg = format!(
        "`podnet {command}` is not available yet in podnet {}: it needs {needs}, which this release does not include. \
         Available now: validate, max-pods, status, unlock.",
        env!("CARGO_PKG_VERSION")
    );
    ctx.printer
        .json(&serde_json::json!({ "error": "not-available", "command": command, "message": msg }));
    ctx.printer.error(msg);
    Ok(ExitStatus::Failure)
}
