//! `collective simulate`: runs the `simulate` program (the whole loop in one
//! process), found beside this one or on the PATH, with the same arguments.
//! The simulation holds wallets, a broker and an aggregator; the consumer's
//! own program does not, so it lives in a program of its own.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// The simulation's arguments (`simulate --help` lists them)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

fn program() -> PathBuf {
    let name = format!("simulate{}", std::env::consts::EXE_SUFFIX);
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(&name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

pub(crate) fn forward(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let program = program();
    let status = std::process::Command::new(&program)
        .args(&args.args)
        .status()
        .with_context(|| {
            format!(
                "starting {} (build it with `cargo build --release -p simulate`)",
                program.display()
            )
        })?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}
