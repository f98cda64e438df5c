//! cargo-hot: backend hot module replacement for Rust workspaces.
//!
//! One executable, three roles:
//! - `cargo hot run ...`: the developer-facing command ([`session`]);
//! - the workspace rustc wrapper during the host's build ([`capture`]), detected by
//!   cargo hot's capture variable;
//! - the host binary's linker ([`linker`]), detected by the real-linker variable.
//!
//! The modules, one concern each: [`metadata`] and [`config`] plan (which host, which
//! boundaries); [`build`], [`capture`] and [`linker`] build a patchable host (its dependencies
//! linked apart once: [`deps_library`]; rebuilt without cargo when only workspace sources
//! changed: [`rebuild`]), from which
//! [`host`] derives the session's state once per build; [`rules`], [`depinfo`] and
//! [`classify`] decide what an edit means; [`watch`], [`keys`] and [`signals`] wake the
//! [`session`] loop (see [`wake`]); [`warmup`] readies each hot crate's compile after a
//! build; [`span`] decides which hot crates a patch compiles; [`patch`] builds a patch
//! (what of its code takes effect how: [`codediff`], `patch::reach`, [`redirect`], [`layout`],
//! and [`inlined`] for what other crates compile in from source); [`abi`] gates it; [`ipc`]
//! sends it; [`supervisor`] owns the program's lifecycle and [`process`] runs it with the
//! [`environment`] `cargo run` would give it; everything that happens is an [`events`] value,
//! which [`ui`] renders for a terminal or as JSON; [`tool`] keeps the copy of cargo-hot that
//! the other processes run.

pub mod abi;
pub mod build;
pub mod capture;
pub mod classify;
pub mod cli;
pub mod codediff;
pub mod config;
pub mod depinfo;
pub mod downstream;
pub mod deps_library;
pub mod environment;
pub mod events;
pub mod explain;
pub mod held_ports;
pub mod host;
pub mod housekeeping;
pub mod init;
pub mod inlined;
pub mod ipc;
pub mod keys;
pub mod last_build;
pub mod layout;
pub mod linker;
pub mod metadata;
pub mod patch;
pub mod process;
pub mod rebuild;
pub mod redirect;
pub mod rules;
pub mod session;
pub mod signals;
pub mod sockets;
pub mod span;
pub mod supervisor;
pub mod sys;
pub mod thin;
pub mod tool;
pub mod ui;
pub mod wake;
pub mod warmup;
pub mod watch;

use std::process::ExitCode;

/// The whole program: dispatches to the role this process was started for.
pub fn main_entry() -> ExitCode {
    if sockets::is_trampoline() {
        return sockets::run_trampoline();
    }
    if linker::is_linker_invocation() {
        return linker::run_linker();
    }
    if capture::is_wrapper_invocation() {
        return capture::run_wrapper();
    }
    let cli::CargoCli::Hot(cli) = cli::parse_from_env();
    let result = match cli.command {
        cli::Command::Run(args) => session::run(args),
        cli::Command::Explain(args) => explain::run(args),
        cli::Command::Init(args) => init::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            ui::error(format!("{err:#}"));
            ExitCode::FAILURE
        }
    }
}
