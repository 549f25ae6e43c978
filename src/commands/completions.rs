//! `podnet completions SHELL` and `podnet man`: both generated from the clap
//! types in [`crate::cli`] (clap_complete, clap_mangen), so they cannot
//! drift from the flags podnet accepts. Neither reads the plan file or
//! reaches AWS.

use anyhow::Result;
use clap::CommandFactory;

use super::{Context, ExitStatus};
use crate::cli::{Cli, CompletionsArgs};

pub fn completions(ctx: &Context, args: &CompletionsArgs) -> Result<ExitStatus> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "podnet", &mut script);
    ctx.printer.out(String::from_utf8(script)?.trim_end());
    Ok(ExitStatus::Success)
}

pub fn man(ctx: &Context) -> Result<ExitStatus> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    ctx.printer.out(String::from_utf8(page)?.trim_end());
    Ok(ExitStatus::Success)
}
