//! cargo-hot: backend hot module replacement for Rust workspaces.
//!
//! One executable, three roles:
//! - `cargo hot run ...`: the developer-facing command ([`session`]);
//! - the workspace rustc wrapper during the host's build ([`capture`]), detected by
//!   cargo hot's capture variable;
//! - the host binary's linker ([`linker`]), detected by the real-linker variable.

mod abi;
mod build;
mod capture;
mod classify;
mod cli;
mod config;
mod depinfo;
mod ipc;
mod linker;
mod metadata;
mod patch;
mod process;
mod session;
mod ui;
mod watch;

use std::process::ExitCode;

fn main() -> ExitCode {
    if linker::is_linker_invocation() {
        return linker::run_linker();
    }
    if capture::is_wrapper_invocation() {
        return capture::run_wrapper();
    }
    let cli::CargoCli::Hot(cli) = cli::parse_from_env();
    let result = match cli.command {
        cli::Command::Run(args) => session::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            ui::error(format!("{err:#}"));
            ExitCode::FAILURE
        }
    }
}
