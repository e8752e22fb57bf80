//! `simulate`: the whole loop in one process.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A compile child compiles one component under its budget and exits here.
    c2ssi_sandbox::compile_child_hook();
    let args = cli::SimulateArgs::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIMULATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli::simulate(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
