//! The `RUSTC_WORKSPACE_WRAPPER` role: during the host's normal `cargo build`, cargo runs
//! `cargo-hot <rustc> <args>` for every workspace crate. We record the exact command of each
//! unit (argv, environment, working directory), so that a boundary edit can replay its
//! rustc invocation directly (no cargo, same features, same symbol hashes), and we swap in
//! cargo-hot as the linker of the host binary (see `linker`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Directory where the wrapper writes one record per compiled unit.
pub const CAPTURE_DIR_ENV: &str = "CARGO_HOT_CAPTURE_DIR";
/// Comma-separated package names of the boundaries.
pub const BOUNDARIES_ENV: &str = "CARGO_HOT_BOUNDARIES";
/// `package:bin` of the host.
pub const HOST_ENV: &str = "CARGO_HOT_HOST";
/// A workspace wrapper the user had configured, which we call in turn.
pub const INNER_WRAPPER_ENV: &str = "CARGO_HOT_INNER_WRAPPER";

/// Variables that only make sense inside the cargo process that spawned rustc: the jobserver
/// file descriptors are gone when the command is replayed.
const NOT_REPLAYED_ENV: &[&str] = &["CARGO_MAKEFLAGS", "MAKEFLAGS", "MFLAGS", "RUSTC_WORKSPACE_WRAPPER", "RUSTC_WRAPPER"];

/// One rustc invocation, exactly as cargo made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RustcInvocation {
    pub rustc: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
}

impl RustcInvocation {
    /// The value of `--flag value` or `--flag=value`.
    pub fn flag(&self, flag: &str) -> Option<&str> {
        let prefix = format!("{flag}=");
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            if arg == flag {
                return args.next().map(String::as_str);
            }
            if let Some(value) = arg.strip_prefix(&prefix) {
                return Some(value);
            }
        }
        None
    }

    /// The value of a codegen option, `-C name=value` or `-Cname=value`.
    pub fn codegen_option(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}=");
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            let option = if arg == "-C" || arg == "--codegen" {
                args.next().map(String::as_str)
            } else {
                arg.strip_prefix("-C").or_else(|| arg.strip_prefix("--codegen="))
            };
            if let Some(value) = option.and_then(|o| o.strip_prefix(&prefix)) {
                return Some(value);
            }
        }
        None
    }

    /// The crate's root source file (absolute): the one positional `.rs` argument.
    pub fn crate_root(&self) -> Option<PathBuf> {
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            if matches!(
                arg.as_str(),
                "--cfg" | "--check-cfg" | "-C" | "--codegen" | "-L" | "--extern" | "--out-dir" | "--crate-name" | "--edition" | "--crate-type"
                    | "--cap-lints" | "--error-format" | "--json" | "-A" | "-W" | "-D" | "-F" | "--target" | "--emit"
            ) {
                args.next();
                continue;
            }
            if !arg.starts_with('-') && arg.ends_with(".rs") {
                return Some(self.cwd.join(arg));
            }
        }
        None
    }

    pub fn crate_name(&self) -> Option<&str> {
        self.flag("--crate-name")
    }

    /// `<crate-name><extra-filename>`, e.g. `handlers-1a2b3c4d`: unique per unit.
    pub fn unit_key(&self) -> Option<String> {
        Some(format!("{}{}", self.crate_name()?, self.codegen_option("extra-filename").unwrap_or("")))
    }

    /// Where rustc writes the unit's outputs.
    pub fn out_dir(&self) -> Option<PathBuf> {
        self.flag("--out-dir").map(|dir| self.cwd.join(dir))
    }

    /// The library the unit's command writes (`lib<key>.rlib` in its output directory).
    pub fn rlib_path(&self) -> Option<PathBuf> {
        Some(self.out_dir()?.join(format!("lib{}.rlib", self.unit_key()?)))
    }

    /// The executable the command of a binary writes (`<key>` in its output directory).
    pub fn executable_path(&self) -> Option<PathBuf> {
        Some(self.out_dir()?.join(self.unit_key()?))
    }

    /// The dep-info (`.d`) file listing every source file of the unit.
    pub fn dep_info_path(&self) -> Option<PathBuf> {
        Some(self.out_dir()?.join(format!("{}.d", self.unit_key()?)))
    }

    /// Whether this unit is compiled with `debug_assertions` (which `#[hot::export]` needs).
    pub fn debug_assertions(&self) -> bool {
        match self.codegen_option("debug-assertions") {
            Some(value) => matches!(value, "on" | "yes" | "y" | "true"),
            None => matches!(self.codegen_option("opt-level"), None | Some("0")),
        }
    }

    /// Runs the recorded command again, in its recorded directory and environment.
    pub fn command(&self) -> Command {
        self.command_with(&self.args)
    }

    /// The recorded compiler, directory and environment with other arguments (a patch's).
    pub fn command_with(&self, args: &[String]) -> Command {
        let mut command = Command::new(&self.rustc);
        command.args(args).current_dir(&self.cwd).env_clear().envs(&self.env);
        command
    }

    /// Where the record of the unit with this key lives.
    pub fn record_path(capture_dir: &Path, unit_key: &str) -> PathBuf {
        capture_dir.join(format!("{unit_key}.json"))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a compiler record; delete it and rebuild", path.display()))
    }
}

/// Where the host crate's own object files of its last link are kept (see `linker`).
pub fn host_objects_dir(capture_dir: &Path, unit_key: &str) -> PathBuf {
    capture_dir.join(format!("objects-{unit_key}"))
}

/// True when this process was started by cargo as the workspace wrapper of a cargo hot build.
pub fn is_wrapper_invocation() -> bool {
    std::env::var_os(CAPTURE_DIR_ENV).is_some()
        && std::env::args_os().nth(1).is_some_and(|arg| !arg.to_string_lossy().starts_with('-') && arg != "hot")
}

/// Runs as the wrapper: records the invocation, adjusts the host's link, then becomes rustc.
pub fn run_wrapper() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let rustc = PathBuf::from(args.next().expect("checked by is_wrapper_invocation"));
    let args: Vec<OsString> = args.collect();
    match prepare(&rustc, &args) {
        Ok(mut command) => {
            let err = command.exec();
            eprintln!("cargo-hot: cannot run {}: {err}", rustc.display());
        }
        Err(err) => eprintln!("cargo-hot: {err:#}"),
    }
    ExitCode::FAILURE
}

fn prepare(rustc: &Path, raw_args: &[OsString]) -> Result<Command> {
    let inner_wrapper = std::env::var_os(INNER_WRAPPER_ENV).filter(|w| !w.is_empty());
    let mut command = match &inner_wrapper {
        Some(wrapper) => {
            let mut command = Command::new(wrapper);
            command.arg(rustc);
            command
        }
        None => Command::new(rustc),
    };
    let Some(args) = raw_args.iter().map(|a| a.to_str().map(str::to_string)).collect::<Option<Vec<String>>>() else {
        command.args(raw_args);
        return Ok(command);
    };
    let invocation = RustcInvocation {
        rustc: rustc.to_path_buf(),
        args: args.clone(),
        cwd: std::env::current_dir()?,
        env: std::env::vars().filter(|(k, _)| !NOT_REPLAYED_ENV.contains(&k.as_str())).collect(),
    };
    let package = std::env::var("CARGO_PKG_NAME").unwrap_or_default();
    let is_host = std::env::var(HOST_ENV).ok().is_some_and(|host| {
        std::env::var("CARGO_BIN_NAME").is_ok_and(|bin| host == format!("{package}:{bin}"))
            && invocation.flag("--crate-type") == Some("bin")
    });
    let capture_dir = PathBuf::from(std::env::var_os(CAPTURE_DIR_ENV).expect("checked by is_wrapper_invocation"));
    let unit_key = invocation.unit_key();
    if let Some(key) = &unit_key {
        // Probes such as `rustc -vV` have no crate name and are not recorded.
        std::fs::create_dir_all(&capture_dir)?;
        let record = serde_json::to_string_pretty(&invocation)?;
        let path = RustcInvocation::record_path(&capture_dir, key);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, record)?;
        std::fs::rename(&tmp, &path)?;
    }
    if let (true, Some(key)) = (is_host, unit_key) {
        let self_exe = std::env::current_exe().context("cannot find cargo-hot's own executable")?;
        link_through(&mut command, args, &self_exe, &capture_dir, &key)?;
    } else {
        command.args(args);
    }
    Ok(command)
}

/// Gives `command`, the rustc command of the host binary (unit `key`), the arguments `args`
/// with cargo-hot (`tool`) as its linker, which links the host patchable, records the link
/// and keeps the crate's own objects (see `linker`). A bare linker configured by the user is
/// refused: cargo hot links through a C compiler driver.
pub fn link_through(command: &mut Command, args: Vec<String>, tool: &Path, capture_dir: &Path, key: &str) -> Result<()> {
    let (args, user_linker) = crate::linker::take_linker_option(args);
    if let Some(linker) = user_linker.as_deref().filter(|l| !crate::linker::is_compiler_driver(l)) {
        anyhow::bail!(
            "the host is linked with `{linker}`, a bare linker; cargo hot links through a C compiler driver \
             (cc, gcc, clang). Configure `linker = \"clang\"` (or cc) with `-C link-arg=-fuse-ld={}` instead",
            Path::new(linker).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        );
    }
    command.args(args).arg("-C").arg(format!("linker={}", tool.display()));
    command.env(crate::linker::REAL_LINKER_ENV, user_linker.unwrap_or_else(|| "cc".to_string()));
    command.env(crate::linker::LINK_RECORD_ENV, link_record_path(capture_dir, key));
    command.env(crate::linker::SAVE_OBJECTS_ENV, host_objects_dir(capture_dir, key));
    Ok(())
}

/// Where the linker role records the link of the host unit `key`.
pub fn link_record_path(capture_dir: &Path, key: &str) -> PathBuf {
    capture_dir.join(format!("{}{key}.json", crate::linker::LINK_RECORD_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(args: &[&str]) -> RustcInvocation {
        RustcInvocation {
            rustc: "rustc".into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            cwd: "/ws".into(),
            env: BTreeMap::new(),
        }
    }

    #[test]
    fn derives_unit_paths_from_cargo_arguments() {
        let inv = invocation(&[
            "--crate-name", "handlers", "--edition=2021", "src/lib.rs", "--crate-type", "lib",
            "-C", "metadata=abc", "-C", "extra-filename=-0f1e2d", "--out-dir", "/ws/target/debug/deps",
        ]);
        assert_eq!(inv.unit_key().unwrap(), "handlers-0f1e2d");
        assert_eq!(inv.dep_info_path().unwrap(), PathBuf::from("/ws/target/debug/deps/handlers-0f1e2d.d"));
        assert_eq!(inv.flag("--edition"), Some("2021"));
        assert!(inv.debug_assertions());
    }

    #[test]
    fn debug_assertions_follow_cargo_flags() {
        assert!(!invocation(&["-C", "opt-level=3"]).debug_assertions());
        assert!(invocation(&["-C", "opt-level=3", "-C", "debug-assertions=on"]).debug_assertions());
        assert!(!invocation(&["-Cdebug-assertions=off"]).debug_assertions());
    }
}
