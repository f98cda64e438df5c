//! Command-line interface: `cargo hot run ...`, also reachable as `cargo-hot hot run ...`
//! and `cargo-hot run ...`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo", bin_name = "cargo", styles = clap::builder::styling::Styles::styled())]
pub enum CargoCli {
    /// Hot-patch a running Rust server: boundary edits are patched in, others restart it.
    #[command(name = "hot", version, about, long_about = None, after_help = HOT_EXAMPLES)]
    Hot(HotCli),
}

const HOT_EXAMPLES: &str = "\
Examples:
  cargo hot init                          set a workspace up (adds hot-runtime, says what to change)
  cargo hot run                           build, run and hot-patch the workspace's server
  cargo hot run -p api -- --port 8080     the `api` package's binary, with arguments
  cargo hot explain src/routes.rs         what an edit of that file would do, and why

Run `cargo hot run --help` for the flags of a session.";

const RUN_EXAMPLES: &str = "\
Examples:
  cargo hot run                                  the workspace's server; hot crate chosen after the build
  cargo hot run --boundary crates/handlers       patch edits of crates/handlers, restart for the rest
  cargo hot run --listen 127.0.0.1:3000          hold the port: no request fails during a restart
  cargo hot run --restart 'templates/**' -v      restart on template edits; say every decision
  cargo hot run --message-format json | jq .     the event stream, one JSON object per line
  cargo hot run --no-hot                         restarts only (cargo-watch style), same loop

Keys (on a terminal): r rebuild and restart now · c clear the screen · q quit";

#[derive(Debug, Args)]
pub struct HotCli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build and run the server, patch edits of the boundary crate into it, restart for the rest.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Say what a change to each path would do (patch, restart or ignored) and why; with no
    /// path, summarise the dependency tree and the rules.
    Explain(ExplainArgs),
    /// Set a workspace up for cargo hot: add the runtime to the server's Cargo.toml (and to the
    /// boundary's, with --boundary) and say which lines to change. Running it again changes
    /// nothing.
    Init(InitArgs),
}

#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// The library crate to make hot (a path or a package name), written to
    /// [package.metadata.hot]. Without it, every library of the workspace the server uses is
    /// hot (init adds the runtime to those using the server's web framework), and the server's
    /// own crate when it has exports.
    #[arg(long, value_name = "PATH|PACKAGE")]
    pub boundary: Option<String>,
    /// Use the runtime at this path (a checkout's `runtime` directory) instead of the one
    /// cargo hot picks (its own checkout, else crates.io).
    #[arg(long, value_name = "PATH")]
    pub runtime_path: Option<PathBuf>,
}

/// Settings that can also be written under `[package.metadata.hot]` or
/// `[workspace.metadata.hot]`; a flag overrides the manifests' key of the same name.
#[derive(Debug, Clone, Default, Args)]
pub struct HotOptions {
    /// The hot crate whose edits are patched in: a path (crates/handlers) or a package name.
    /// Repeat for several.
    #[arg(long, value_name = "PATH|PACKAGE")]
    pub boundary: Vec<String>,
    /// A crate of the workspace whose edits always restart (a path or a package name;
    /// repeatable): every other library crate the server depends on is hot.
    #[arg(long, value_name = "PATH|PACKAGE")]
    pub exclude: Vec<String>,
    /// Files whose change restarts the program (glob, repeatable).
    #[arg(long, value_name = "GLOB")]
    pub restart: Vec<String>,
    /// Files whose change does nothing (glob, repeatable).
    #[arg(long, value_name = "GLOB")]
    pub ignore: Vec<String>,
    /// Extra files the program reads at run time: watched, a change restarts (repeatable).
    #[arg(long, value_name = "PATH|GLOB")]
    pub watch: Vec<String>,
    /// Quiet period that ends a burst of changes (e.g. 10ms).
    #[arg(long, value_name = "DURATION")]
    pub debounce: Option<String>,
    /// A dotenv file loaded into the program's environment.
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<String>,
    /// How long a stopping program gets after SIGTERM before SIGKILL (e.g. 5s).
    #[arg(long, value_name = "DURATION")]
    pub shutdown_timeout: Option<String>,
    /// Bind this address once and hand it to every program started (LISTEN_FDS); repeatable.
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Start a crashed program again by itself, with backoff.
    #[arg(long)]
    pub restart_on_crash: bool,
    /// Do not hold the ports the program binds itself across restarts (no LD_PRELOAD shim):
    /// connections are then refused while it restarts.
    #[arg(long)]
    pub no_hold_ports: bool,
}

impl HotOptions {
    /// The flags as a settings table, in the manifests' key names.
    pub fn as_table(&self) -> serde_json::Value {
        use serde_json::Value;
        let list = |values: &[String]| Value::Array(values.iter().cloned().map(Value::String).collect());
        let mut pairs = Vec::new();
        if self.restart_on_crash {
            pairs.push(("restart-on-crash", Value::Bool(true)));
        }
        if self.no_hold_ports {
            pairs.push(("hold-ports", Value::Bool(false)));
        }
        for (key, values) in [
            ("boundary", &self.boundary),
            ("exclude", &self.exclude),
            ("restart", &self.restart),
            ("ignore", &self.ignore),
            ("watch", &self.watch),
            ("listen", &self.listen),
        ] {
            if !values.is_empty() {
                pairs.push((key, list(values)));
            }
        }
        for (key, value) in [("debounce", &self.debounce), ("env-file", &self.env_file), ("shutdown-timeout", &self.shutdown_timeout)] {
            if let Some(value) = value {
                pairs.push((key, Value::String(value.clone())));
            }
        }
        crate::config::cli_table(pairs)
    }
}

#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub selection: Selection,
    #[command(flatten)]
    pub options: HotOptions,
    /// Files to explain (relative to the current directory).
    #[arg(value_name = "PATH")]
    pub paths: Vec<std::path::PathBuf>,
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
    #[command(flatten)]
    pub options: HotOptions,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Restart on every edit, patch nothing (the same loop: watching, builds, zero-downtime
    /// restarts). Automatic on platforms other than Linux.
    #[arg(long)]
    pub no_hot: bool,
    /// Arguments passed to the program.
    #[arg(last = true, value_name = "ARGS")]
    pub program_args: Vec<OsString>,
}

/// How cargo hot reports what it does.
#[derive(Debug, Clone, Default, Args)]
pub struct OutputArgs {
    /// `human` (lines, colours and progress bars on a terminal) or `json` (one event object
    /// per line on stdout, for editors and scripts; the schema is in the README).
    #[arg(long, value_name = "FMT", default_value = "human", value_parser = ["human", "json"])]
    pub message_format: String,
    /// Outcomes and errors only.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also every ignored change, each command run and each program stop.
    #[arg(short, long)]
    pub verbose: bool,
}

impl OutputArgs {
    pub fn format(&self) -> crate::ui::Format {
        match self.message_format.as_str() {
            "json" => crate::ui::Format::Json,
            _ => crate::ui::Format::Human,
        }
    }

    pub fn verbosity(&self) -> crate::ui::Verbosity {
        match (self.quiet, self.verbose) {
            (true, _) => crate::ui::Verbosity::Quiet,
            (_, true) => crate::ui::Verbosity::Verbose,
            _ => crate::ui::Verbosity::Normal,
        }
    }
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
        let Command::Run(run) = cli.command else { panic!("not run") };
        run
    }

    #[test]
    fn explain_takes_paths_and_the_same_flags() {
        let CargoCli::Hot(cli) = CargoCli::try_parse_from(["cargo", "hot", "explain", "-p", "server", "--restart", "tpl/**", "a.rs", "b.rs"]).unwrap();
        let Command::Explain(explain) = cli.command else { panic!("not explain") };
        assert_eq!(explain.paths.len(), 2);
        assert_eq!(explain.selection.package.as_deref(), Some("server"));
        assert_eq!(explain.options.as_table()["restart"], serde_json::json!(["tpl/**"]));
    }

    #[test]
    fn run_takes_cargo_run_flags_and_program_args() {
        let run = parse(&[
            "cargo",
            "hot",
            "run",
            "--boundary",
            "crates/handlers",
            "-p",
            "server",
            "--bin",
            "api",
            "--features",
            "a,b",
            "--no-default-features",
            "--release",
            "--",
            "--port",
            "8080",
        ]);
        assert_eq!(run.options.boundary, vec!["crates/handlers"]);
        assert_eq!(run.selection.package.as_deref(), Some("server"));
        assert_eq!(run.selection.bin.as_deref(), Some("api"));
        assert_eq!(run.selection.feature_args(), vec!["--features", "a,b", "--no-default-features"]);
        assert_eq!(run.selection.profile_name(), "release");
        assert_eq!(run.program_args, vec![OsString::from("--port"), OsString::from("8080")]);
    }

    #[test]
    fn output_flags() {
        let run = parse(&["cargo", "hot", "run", "--message-format", "json", "-v"]);
        assert_eq!((run.output.format(), run.output.verbosity()), (crate::ui::Format::Json, crate::ui::Verbosity::Verbose));
        let run = parse(&["cargo", "hot", "run", "-q", "--no-hot"]);
        assert_eq!((run.output.format(), run.output.verbosity(), run.no_hot), (crate::ui::Format::Human, crate::ui::Verbosity::Quiet, true));
        assert!(CargoCli::try_parse_from(["cargo", "hot", "run", "--message-format", "xml"]).is_err());
        assert!(CargoCli::try_parse_from(["cargo", "hot", "run", "-q", "-v"]).is_err());
    }

    #[test]
    fn release_and_profile_conflict() {
        assert!(CargoCli::try_parse_from(["cargo", "hot", "run", "--release", "--profile", "dev"]).is_err());
    }
}
