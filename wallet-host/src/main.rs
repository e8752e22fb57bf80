//! `wallet`: the individual's command line. Creates and unlocks the encrypted
//! wallet, brings data into it, and runs algorithms on it locally to show
//! exactly what would leave it.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A compile child compiles one component under its budget and exits here.
    c2ssi_sandbox::compile_child_hook();
    let args = cli::Cli::parse();
    cli::init_logging(args.global.verbose);
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
