//! The linker role, used for the host binary only. rustc runs `cargo-hot <linker args>`;
//! we add what hot patching needs and run the real linker driver with rustc's own
//! arguments (its `-fuse-ld=lld` and `-B` stay):
//!
//! - every `.rlib` is wrapped in `--whole-archive`, so every function of every Rust
//!   dependency is in the binary, including those the old code never called;
//! - `--export-dynamic`, so a patch's undefined symbols resolve to the host's own copies
//!   (one std, one tokio runtime, one allocator).
//!
//! The final command is recorded; patches are linked with the same driver and flags.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The linker the host would have used without cargo hot (`cc` unless configured).
pub const REAL_LINKER_ENV: &str = "CARGO_HOT_REAL_LINKER";
/// Where to record the final link command.
pub const LINK_RECORD_ENV: &str = "CARGO_HOT_LINK_RECORD";
/// Link records are `link-<unit key>.json` in the capture directory: one per host unit, so
/// workspaces sharing a target directory do not overwrite each other's.
pub const LINK_RECORD_PREFIX: &str = "link-";
/// After the host's link: keep the host crate's own object files in this directory (the code
/// the running program started with, which a patch of the binary is compared against).
pub const SAVE_OBJECTS_ENV: &str = "CARGO_HOT_SAVE_OBJECTS";
/// Patch mode, when a patch of the binary is compiled: put the crate's own object files in
/// this directory and link nothing (linking the whole executable is not what a patch needs).
pub const PATCH_OBJECTS_ENV: &str = "CARGO_HOT_PATCH_OBJECTS";

/// The host's link command as actually run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LinkRecord {
    pub driver: String,
    pub args: Vec<String>,
    pub output: Option<PathBuf>,
    /// How long the host's link took (the benchmark reports it).
    #[serde(default)]
    pub duration_ms: u64,
    /// The shared library the host's dependencies were linked into (see `deps_library`).
    #[serde(default)]
    pub deps_library: Option<PathBuf>,
    /// Why the host was linked whole although cargo hot asked for its dependencies apart.
    #[serde(default)]
    pub split_failure: Option<String>,
}

impl LinkRecord {
    /// Driver flags that select the linker and the target: what a patch link must repeat.
    pub fn driver_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            if arg.starts_with("-fuse-ld=") || arg.starts_with("--target=") || arg.starts_with("--sysroot=") || arg == "-m64" || arg == "-m32" {
                flags.push(arg.clone());
            } else if arg == "-B" || arg == "-target" || arg == "--sysroot" {
                flags.push(arg.clone());
                flags.extend(args.next().cloned());
            } else if arg.starts_with("-B") {
                flags.push(arg.clone());
            }
        }
        flags
    }
}

impl LinkRecord {
    /// rustc's bundled `rust-lld`, when the host was linked with it (`-fuse-ld=lld` with a
    /// `-B <sysroot>/.../gcc-ld` directory, the default on x86_64 Linux since Rust 1.90).
    /// Calling it directly saves the `cc` → `collect2` → `ld.lld` chain of processes.
    pub fn bundled_lld(&self) -> Option<PathBuf> {
        let flags = self.driver_flags();
        if !flags.iter().any(|f| f == "-fuse-ld=lld") {
            return None;
        }
        let mut dirs = Vec::new();
        let mut iter = flags.iter();
        while let Some(flag) = iter.next() {
            if flag == "-B" {
                dirs.extend(iter.next().map(PathBuf::from));
            } else if let Some(dir) = flag.strip_prefix("-B") {
                dirs.push(PathBuf::from(dir));
            }
        }
        dirs.into_iter()
            .filter(|dir| dir.join("ld.lld").is_file())
            .find_map(|dir| Some(dir.parent()?.join("rust-lld")).filter(|lld| lld.is_file()))
    }
}

pub fn is_linker_invocation() -> bool {
    std::env::var_os(REAL_LINKER_ENV).is_some()
}

/// Removes a user-configured `-C linker=...` from rustc's arguments and returns it.
pub fn take_linker_option(args: Vec<String>) -> (Vec<String>, Option<String>) {
    let mut kept = Vec::with_capacity(args.len());
    let mut linker = None;
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        if arg == "-C" || arg == "--codegen" {
            match iter.next() {
                Some(option) if option.starts_with("linker=") => linker = Some(option["linker=".len()..].to_string()),
                Some(option) => kept.extend([arg, option]),
                None => kept.push(arg),
            }
        } else if let Some(value) = arg.strip_prefix("-Clinker=").or_else(|| arg.strip_prefix("--codegen=linker=")) {
            linker = Some(value.to_string());
        } else {
            kept.push(arg);
        }
    }
    (kept, linker)
}

/// Whether a configured linker is a C compiler driver (which takes `-Wl,` options), as
/// opposed to a bare linker such as `ld.lld`, `mold` or `rust-lld`.
pub fn is_compiler_driver(linker: &str) -> bool {
    let name = Path::new(linker).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let bare = ["ld", "lld", "rust-lld", "mold", "gold", "wild"];
    !(bare.contains(&name.as_str()) || name.starts_with("ld.") || name.ends_with("-ld") || name.contains("-ld."))
}

/// Rewrites rustc's linker arguments for a patchable host.
pub fn host_link_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len() + 64);
    out.push("-Wl,--export-dynamic".to_string());
    for arg in args {
        if arg.ends_with(".rlib") && !arg.starts_with('-') {
            out.push("-Wl,--whole-archive".to_string());
            out.push(arg.clone());
            out.push("-Wl,--no-whole-archive".to_string());
        } else {
            out.push(arg.clone());
        }
    }
    out
}

pub fn run_linker() -> ExitCode {
    match link() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("cargo-hot (linker): {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn link() -> Result<ExitCode> {
    let driver = std::env::var(REAL_LINKER_ENV)?;
    let mut args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        let arg = arg.into_string().map_err(|arg| anyhow::anyhow!("a linker argument is not UTF-8: {arg:?}"))?;
        match arg.strip_prefix('@') {
            Some(file) => args.extend(read_response_file(Path::new(file))?),
            None => args.push(arg),
        }
    }
    let output = args.iter().position(|a| a == "-o").and_then(|i| args.get(i + 1)).map(PathBuf::from);
    let own_objects = output.as_deref().map(|output| crate_objects(&args, output)).unwrap_or_default();
    if let Some(dir) = std::env::var_os(PATCH_OBJECTS_ENV) {
        keep_objects(&own_objects, Path::new(&dir))?;
        return Ok(ExitCode::SUCCESS);
    }
    let started = std::time::Instant::now();
    let HostLink { status, args, deps_library, split_failure } = link_host(&driver, &args, &own_objects)?;
    let duration_ms = started.elapsed().as_millis() as u64;
    if let (true, Some(dir)) = (status.success(), std::env::var_os(SAVE_OBJECTS_ENV)) {
        let dir = Path::new(&dir);
        let kept = keep_objects(&own_objects, dir).and_then(|()| keep_symbols_object(&args, dir));
        if let Err(err) = kept {
            eprintln!("cargo-hot (linker): cannot keep the host's objects: {err:#}");
        }
    }
    // Recorded only once the binary exists: the record also says "this binary is patchable".
    if let (true, Some(record_path)) = (status.success(), std::env::var_os(LINK_RECORD_ENV)) {
        let record = LinkRecord { driver: driver.clone(), args: args.clone(), output, duration_ms, deps_library, split_failure };
        std::fs::write(&record_path, serde_json::to_string_pretty(&record)?)
            .with_context(|| format!("cannot write {}", PathBuf::from(&record_path).display()))?;
    }
    Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
}

/// The host's link as it was run.
struct HostLink {
    status: std::process::ExitStatus,
    /// The executable's final arguments.
    args: Vec<String>,
    /// The library the dependencies were linked into, if they were linked apart.
    deps_library: Option<PathBuf>,
    /// Why the host was linked whole when a split was asked for.
    split_failure: Option<String>,
}

/// Links the host: its dependencies apart, in a shared library linked once (see
/// `deps_library`), unless cargo hot did not ask for it or the split cannot link; then whole.
fn link_host(driver: &str, args: &[String], own_objects: &[PathBuf]) -> Result<HostLink> {
    use crate::deps_library;
    let whole = |why: Option<String>| -> Result<HostLink> {
        let args = host_link_args(args);
        Ok(HostLink { status: run_with_response_file(driver, &args)?, args, deps_library: None, split_failure: why })
    };
    let Some(dir) = std::env::var_os(deps_library::DEPS_DIR_ENV).map(PathBuf::from) else { return whole(None) };
    let capture = std::env::var_os(crate::capture::CAPTURE_DIR_ENV).map(PathBuf::from);
    // A workspace crate's unit was compiled through the wrapper, which recorded it.
    let workspace = |rlib: &Path| -> bool {
        let key = rlib.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("lib")).and_then(|n| n.strip_suffix(".rlib"));
        match (key, &capture) {
            (Some(key), Some(capture)) => crate::capture::RustcInvocation::record_path(capture, key).is_file(),
            _ => false,
        }
    };
    // The shim is a small object of its own (a few kilobytes; the crate's other codegen units,
    // with their debug info, are larger): only small ones are read.
    let small = |o: &&PathBuf| std::fs::metadata(o).is_ok_and(|m| m.len() < 64 * 1024);
    let shim = own_objects.iter().filter(small).find(|o| std::fs::read(o).is_ok_and(|data| crate::patch::is_allocator_shim(&data)));
    let split = match deps_library::plan(args, own_objects, shim.map(PathBuf::as_path), &workspace) {
        Ok(split) => split,
        Err(why) => return whole(Some(why)),
    };
    let link = |args: &[String]| -> std::result::Result<(), String> {
        let output = run_capturing(driver, args).map_err(|err| format!("{err:#}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(linker_complaint(&output.stderr))
        }
    };
    let library = match deps_library::ensure(&split, &dir, &link) {
        Ok(library) => library,
        Err(why) => return whole(Some(why)),
    };
    let executable = host_link_args(&split.executable_args(&library));
    let output = run_capturing(driver, &executable)?;
    if output.status.success() {
        return Ok(HostLink { status: output.status, args: executable, deps_library: Some(library), split_failure: None });
    }
    let why = format!("linking the workspace's code against its dependencies' library failed: {}", linker_complaint(&output.stderr));
    deps_library::remember_failure(&dir, &split.key, &why);
    whole(Some(why))
}

/// The first lines of a linker's error output.
fn linker_complaint(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(6).collect();
    if lines.is_empty() {
        "the linker failed".to_string()
    } else {
        lines.join("\n")
    }
}

/// The object files of the crate being linked into `output`: rustc's codegen units
/// `<output file name>.<unit>.rcgu.o` (its dependencies come as rlibs).
pub fn crate_objects(args: &[String], output: &Path) -> Vec<PathBuf> {
    let Some(stem) = output.file_name().map(|n| format!("{}.", n.to_string_lossy())) else { return Vec::new() };
    args.iter()
        .filter(|a| a.ends_with(".rcgu.o") && Path::new(a).file_name().is_some_and(|n| n.to_string_lossy().starts_with(&stem)))
        .map(PathBuf::from)
        .collect()
}

/// Makes `dir` hold exactly `objects` (hard links: rustc deletes its copies after the link).
fn keep_objects(objects: &[PathBuf], dir: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for object in objects {
        let kept = dir.join(object.file_name().unwrap_or_default());
        if std::fs::hard_link(object, &kept).is_err() {
            std::fs::copy(object, &kept).with_context(|| format!("cannot copy {} to {}", object.display(), kept.display()))?;
        }
    }
    Ok(())
}

/// rustc's `symbols.o` (in a scratch directory it removes after the link), kept beside the
/// crate's objects under a name that is not an object's (`*.o` files there are the crate's
/// code): what linking the host again without rustc needs (see [`relink`]).
const KEPT_SYMBOLS_OBJECT: &str = "symbols.o.kept";

fn keep_symbols_object(args: &[String], dir: &Path) -> Result<()> {
    if let Some(symbols) = args.iter().find(|a| a.ends_with("/symbols.o")) {
        std::fs::copy(symbols, dir.join(KEPT_SYMBOLS_OBJECT)).with_context(|| format!("cannot keep {symbols}"))?;
    }
    Ok(())
}

/// Links the host again as `record` did, without rustc: the binary crate's own objects (and
/// rustc's `symbols.o`) from where the linker role kept them (`objects`), the libraries from
/// their paths (compiled again in place), into `output`. For a rebuild that compiled libraries
/// whose dependents' code stays valid (see `rebuild`). Returns the new record.
pub fn relink(record: &LinkRecord, objects: &Path, output: &Path) -> Result<LinkRecord> {
    let mut args = Vec::with_capacity(record.args.len());
    let mut iter = record.args.iter();
    while let Some(arg) = iter.next() {
        let name = Path::new(arg).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if arg == "-o" {
            iter.next();
            args.extend(["-o".to_string(), output.display().to_string()]);
        } else if arg.ends_with("/symbols.o") {
            let kept = objects.join(KEPT_SYMBOLS_OBJECT);
            anyhow::ensure!(kept.is_file(), "rustc's symbols.o of the last link was not kept");
            args.push(kept.display().to_string());
        } else if arg.ends_with(".rcgu.o") && objects.join(&name).is_file() {
            args.push(objects.join(&name).display().to_string());
        } else {
            args.push(arg.clone());
        }
    }
    let started = std::time::Instant::now();
    let output_status = run_capturing(&record.driver, &args)?;
    anyhow::ensure!(output_status.status.success(), "linking the host again failed: {}", linker_complaint(&output_status.stderr));
    Ok(LinkRecord { args, output: Some(output.to_path_buf()), duration_ms: started.elapsed().as_millis() as u64, ..record.clone() })
}

/// Runs a linker driver, passing long argument lists through a response file as rustc does.
pub fn run_with_response_file(driver: &str, args: &[String]) -> Result<std::process::ExitStatus> {
    let (mut command, _response_dir) = linker_command(driver, args)?;
    command.status().with_context(|| format!("cannot run the linker `{driver}`"))
}

/// [`run_with_response_file`], with the linker's output collected.
fn run_capturing(driver: &str, args: &[String]) -> Result<std::process::Output> {
    let (mut command, _response_dir) = linker_command(driver, args)?;
    command.output().with_context(|| format!("cannot run the linker `{driver}`"))
}

/// The command that runs `driver` with `args`, and the directory of its response file (removed
/// when dropped: keep it until the linker has run).
fn linker_command(driver: &str, args: &[String]) -> Result<(Command, Option<TempDir>)> {
    let total: usize = args.iter().map(|a| a.len() + 1).sum();
    let mut command = Command::new(driver);
    // The real linker (or anything it runs) must not mistake itself for cargo-hot's roles.
    command.env_remove(REAL_LINKER_ENV).env_remove(LINK_RECORD_ENV).env_remove(crate::capture::CAPTURE_DIR_ENV);
    let response_dir = if total > 64 * 1024 {
        let dir = tempfile_dir()?;
        let file = dir.join("linker-arguments");
        std::fs::write(&file, write_response_file(args))?;
        command.arg(format!("@{}", file.display()));
        Some(TempDir(dir))
    } else {
        command.args(args);
        None
    };
    Ok((command, response_dir))
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("cargo-hot-link-{}-{}", std::process::id(), nanos()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// rustc's response files: one argument per line, `\` escaping the next character.
fn read_response_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(parse_response_file(&text))
}

fn parse_response_file(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    for line in text.lines() {
        let mut arg = String::with_capacity(line.len());
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                arg.extend(chars.next());
            } else {
                arg.push(c);
            }
        }
        args.push(arg);
    }
    args
}

fn write_response_file(args: &[String]) -> String {
    let mut text = String::new();
    for arg in args {
        for c in arg.chars() {
            if matches!(c, '\\' | ' ' | '\'' | '"' | '\t') {
                text.push('\\');
            }
            text.push(c);
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn wraps_every_rlib_and_exports_dynamic() {
        let out = host_link_args(&strings(&["-m64", "/t/libfoo-1.rlib", "-Wl,-Bdynamic", "-lc", "-o", "/t/server"]));
        assert_eq!(out[0], "-Wl,--export-dynamic");
        let i = out.iter().position(|a| a == "/t/libfoo-1.rlib").unwrap();
        assert_eq!(out[i - 1], "-Wl,--whole-archive");
        assert_eq!(out[i + 1], "-Wl,--no-whole-archive");
        assert!(out.contains(&"-lc".to_string()));
    }

    #[test]
    fn the_crate_s_own_objects_are_told_from_the_rest() {
        let args = strings(&[
            "/t/deps/rustcXYZ/symbols.o",
            "/t/deps/server-1a.0abc.1x.rcgu.o",
            "/t/deps/server-1a.1def.1x.rcgu.o",
            "/t/deps/server-1abc.9.rcgu.o",
            "/t/deps/libtokio-3.rlib",
            "-o",
            "/t/deps/server-1a",
        ]);
        let own = crate_objects(&args, Path::new("/t/deps/server-1a"));
        assert_eq!(own, [PathBuf::from("/t/deps/server-1a.0abc.1x.rcgu.o"), PathBuf::from("/t/deps/server-1a.1def.1x.rcgu.o")]);
    }

    #[test]
    fn takes_user_linker_in_every_spelling() {
        let (kept, linker) = take_linker_option(strings(&["-C", "linker=clang", "-C", "opt-level=0"]));
        assert_eq!(linker.as_deref(), Some("clang"));
        assert_eq!(kept, strings(&["-C", "opt-level=0"]));
        assert_eq!(take_linker_option(strings(&["-Clinker=gcc"])).1.as_deref(), Some("gcc"));
        assert_eq!(take_linker_option(strings(&["--codegen=linker=x"])).1.as_deref(), Some("x"));
    }

    #[test]
    fn compiler_drivers_and_bare_linkers_are_told_apart() {
        for driver in ["cc", "gcc", "clang", "/usr/bin/clang-18", "x86_64-linux-gnu-gcc", "zig-cc"] {
            assert!(is_compiler_driver(driver), "{driver}");
        }
        for bare in ["ld", "ld.lld", "/usr/bin/ld.mold", "mold", "rust-lld", "x86_64-linux-gnu-ld", "x86_64-linux-gnu-ld.bfd"] {
            assert!(!is_compiler_driver(bare), "{bare}");
        }
    }

    #[test]
    fn response_files_round_trip_with_escapes() {
        let args = strings(&["-o", "/a b/c\\d", "it's", "\"q\""]);
        assert_eq!(parse_response_file(&write_response_file(&args)), args);
        assert_eq!(parse_response_file("a\\ b\nc\\\\d\n"), strings(&["a b", "c\\d"]));
    }

    #[test]
    fn patch_link_keeps_linker_selection_flags() {
        let record = LinkRecord {
            driver: "cc".into(),
            args: strings(&["-m64", "x.o", "-fuse-ld=lld", "-B/sys/gcc-ld", "-B", "/other", "-lc", "-o", "out"]),
            output: None,
            duration_ms: 0,
            deps_library: None,
            split_failure: None,
        };
        assert_eq!(record.driver_flags(), strings(&["-m64", "-fuse-ld=lld", "-B/sys/gcc-ld", "-B", "/other"]));
    }
}
