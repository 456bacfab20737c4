//! `punktfunk`: the host trust service of a punktfunk game-streaming host.
//!
//! `main` only parses the command line, runs it, and turns an error into a
//! message and an exit code; everything else lives in the modules below.

use std::process::ExitCode;

use clap::Parser;

mod admin_cli;
mod cli;
mod config;
mod console;
mod control;
mod host;
mod lan;
mod mdns;
mod native_cli;
mod net;
mod startup;
mod tls;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
