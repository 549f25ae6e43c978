//! podnet: migrate a live Amazon EKS cluster from "pods share the node
//! subnets" to VPC CNI custom networking on a secondary CIDR, with a plan
//! first, a journal throughout, and resume after any failure.
//!
//! The binary (`main.rs`) only parses the command line and calls
//! [`commands::run`]. The library is layered:
//! - [`cli`]: the clap types;
//! - [`commands`]: one thin module per subcommand;
//! - [`spec`]: plan files and their validation;
//! - [`engine`]: steps, the journal, the lock, the runner;
//! - [`network`], [`capacity`], [`userdata`]: pure CIDR, max-pods and
//!   launch template user data rules;
//! - [`aws`]: SDK configuration and calls;
//! - [`output`]: the one [`output::Printer`].

pub mod aws;
pub mod capacity;
pub mod cli;
pub mod commands;
pub mod discovery;
pub mod dry_run;
pub mod engine;
pub mod error_class;
pub mod iam;
pub mod init;
pub mod k8s;
pub mod migration;
pub mod network;
pub mod output;
pub mod planner;
pub mod rollback;
pub mod simulate;
pub mod spec;
pub mod steps;
pub mod userdata;
pub mod verify;

use std::process::ExitCode;

use clap::Parser;

/// The whole program: parse, set up output and logging, run, map the result
/// to an exit code. Errors reach the user once, through the printer.
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let g = &cli.global;
    let color = !g.no_color && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let verbosity: i8 = if g.quiet { -1 } else { g.verbose.min(3) as i8 };
    let printer = output::Printer::new(g.output, verbosity, color, !g.no_progress);
    init_tracing(g.verbose, color);
    if let Some(profile) = &g.profile {
        // SAFETY: set before the runtime (and any other thread) starts.
        unsafe { std::env::set_var("AWS_PROFILE", profile) };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            printer.error(format!("cannot start the async runtime: {e}"));
            return commands::ExitStatus::Failure.into();
        }
    };
    let json_errors = printer.is_json();
    let result = runtime.block_on(async {
        let run = commands::run(cli, printer);
        tokio::select! {
            r = run => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    match result {
        Some(Ok(status)) => status.into(),
        Some(Err(e)) => {
            let p = output::Printer::new(
                if json_errors {
                    output::OutputFormat::Json
                } else {
                    output::OutputFormat::Human
                },
                0,
                color,
                false,
            );
            p.json(&serde_json::json!({ "error": format!("{e:#}") }));
            p.error(format!("{e:#}"));
            commands::ExitStatus::Failure.into()
        }
        None => {
            eprintln!("interrupted; the journal keeps where it stopped: run `podnet resume` to continue");
            commands::ExitStatus::Interrupted.into()
        }
    }
}

/// Logs go to stderr. Dependencies' own loggers (kube-rs, hyper, the AWS
/// SDK) stay silent by default: podnet's printer owns the terminal and
/// reports what matters (a retried 503 is not news). `-v` shows their
/// warnings and errors, `-vv` their info and podnet's debug lines, `-vvv`
/// everything; `PODNET_LOG` overrides. No escape codes unless stderr is a
/// terminal and colour is on.
fn init_tracing(verbose: u8, color: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "off,podnet=warn",
        1 => "warn,podnet=info",
        2 => "info,podnet=debug",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("PODNET_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color && std::io::stderr().is_terminal())
        .with_target(verbose >= 2)
        .try_init();
}
