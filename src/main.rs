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
            // The whole chain, each cause once: many messages already
            // quote their cause, and `{:#}` would say it twice.
            let mut text = err.to_string();
            for cause in err.chain().skip(1) {
                let cause = cause.to_string();
                if !text.contains(&cause) {
                    text.push_str(": ");
                    text.push_str(&cause);
                }
            }
            eprintln!("error: {text}");
            ExitCode::FAILURE
        }
    }
}
