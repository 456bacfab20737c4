//! `punktfunk`: the host trust service of a punktfunk game-streaming host.
//!
//! `main` only parses the command line, runs it, and turns an error into a
//! message and an exit code; everything else lives in the library
//! (`src/lib.rs`), which `m3-host` shares.

use std::process::ExitCode;

use clap::Parser;
use punktfunk::cli;

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
