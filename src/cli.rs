//! Command-line interface: `cargo hot run ...`, also reachable as `cargo-hot hot run ...`
//! and `cargo-hot run ...`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo", bin_name = "cargo", styles = clap::builder::styling::Styles::styled())]
pub enum CargoCli {
    /// Hot-patch a running Rust server: boundary edits are patched in, others restart it.
    #[command(name = "hot", version, about, long_about = None)]
    Hot(HotCli),
}

#[derive(Debug, Args)]
pub struct HotCli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build and run the server, patch edits of the boundary crate into it, restart for the rest.
    Run(RunArgs),
}

/// Which package, binary, features and profile to build: the flags of `cargo run`.
#[derive(Debug, Clone, Default, Args)]
pub struct Selection {
    /// Package whose binary to run.
    #[arg(short = 'p', long = "package", value_name = "SPEC")]
    pub package: Option<String>,
    /// Name of the binary to run.
    #[arg(long, value_name = "NAME")]
    pub bin: Option<String>,
    /// Space or comma separated list of features to activate.
    #[arg(short = 'F', long, value_name = "FEATURES")]
    pub features: Vec<String>,
    /// Activate all available features.
    #[arg(long)]
    pub all_features: bool,
    /// Do not activate the `default` feature.
    #[arg(long)]
    pub no_default_features: bool,
    /// Build in release mode (no debug_assertions: every edit restarts).
    #[arg(short = 'r', long, conflicts_with = "profile")]
    pub release: bool,
    /// Build with the given profile.
    #[arg(long, value_name = "PROFILE-NAME")]
    pub profile: Option<String>,
    /// Path to Cargo.toml.
    #[arg(long, value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,
}

impl Selection {
    /// Flags for `cargo build` / `cargo metadata` that select features and manifest.
    pub fn feature_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if !self.features.is_empty() {
            args.push("--features".to_string());
            args.push(self.features.join(","));
        }
        if self.all_features {
            args.push("--all-features".to_string());
        }
        if self.no_default_features {
            args.push("--no-default-features".to_string());
        }
        args
    }

    /// The profile name as cargo knows it.
    pub fn profile_name(&self) -> &str {
        match (&self.profile, self.release) {
            (Some(profile), _) => profile,
            (None, true) => "release",
            (None, false) => "dev",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// The hot crate whose edits are patched in: a path (crates/handlers) or a package name.
    /// Repeat for several. Overrides `boundary` in [package.metadata.hot] / [workspace.metadata.hot].
    #[arg(long, value_name = "PATH|PACKAGE")]
    pub boundary: Vec<String>,
    /// Arguments passed to the program.
    #[arg(last = true, value_name = "ARGS")]
    pub program_args: Vec<OsString>,
}

/// Accepts `cargo hot ...` (cargo passes `hot` first), `cargo-hot hot ...` and `cargo-hot ...`.
pub fn parse_from_env() -> CargoCli {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).map(|a| a != "hot").unwrap_or(true) {
        args.insert(1, "hot".into());
    }
    CargoCli::parse_from(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> RunArgs {
        let CargoCli::Hot(cli) = CargoCli::try_parse_from(args).unwrap();
        let Command::Run(run) = cli.command;
        run
    }

    #[test]
    fn run_takes_cargo_run_flags_and_program_args() {
        let run = parse(&[
            "cargo", "hot", "run", "--boundary", "crates/handlers", "-p", "server", "--bin", "api", "--features",
            "a,b", "--no-default-features", "--release", "--", "--port", "8080",
        ]);
        assert_eq!(run.boundary, vec!["crates/handlers"]);
        assert_eq!(run.selection.package.as_deref(), Some("server"));
        assert_eq!(run.selection.bin.as_deref(), Some("api"));
        assert_eq!(run.selection.feature_args(), vec!["--features", "a,b", "--no-default-features"]);
        assert_eq!(run.selection.profile_name(), "release");
        assert_eq!(run.program_args, vec![OsString::from("--port"), OsString::from("8080")]);
    }

    #[test]
    fn release_and_profile_conflict() {
        assert!(CargoCli::try_parse_from(["cargo", "hot", "run", "--release", "--profile", "dev"]).is_err());
    }
}
