//! Building a patch: run the boundary's captured rustc command with the patch's own output
//! and incremental directories and line tables for debug info (incremental, ~the cost of
//! compiling that one crate; see [`patch_args`]), bind its statics to the running program's copies ([`bind`]),
//! then link only the boundary's own object files into a small shared object whose every
//! other symbol stays undefined, to be resolved against the running host at `dlopen`.

pub mod bind;
pub mod reach;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use object::read::archive::ArchiveFile;

use crate::build::{BoundaryUnit, UnitObjects};
use crate::events::Diagnostic;
use crate::linker::{self, LinkRecord};
use bind::{Bound, Homes, Unbindable};
use std::os::unix::process::CommandExt;

/// One object file of a patch: rustc's name for it and its contents.
#[derive(Clone)]
pub struct ObjectFile {
    pub name: String,
    pub data: Vec<u8>,
}

/// Where a compiled patch's object files are.
#[derive(Debug, Clone)]
pub enum ObjectSource {
    /// The members of an rlib (a library boundary).
    Rlib(PathBuf),
    /// The `*.rcgu.o` files of a directory (the binary's, left there by the linker role).
    Dir(PathBuf),
}

impl ObjectSource {
    /// Whether the file or directory is there.
    pub fn exists(&self) -> bool {
        match self {
            ObjectSource::Rlib(rlib) => rlib.is_file(),
            ObjectSource::Dir(dir) => dir.is_dir(),
        }
    }

    /// Every object file, in a stable order.
    pub fn read(&self) -> Result<Vec<ObjectFile>> {
        let mut objects = Vec::new();
        match self {
            ObjectSource::Rlib(rlib) => {
                let data = crate::sys::map_file(rlib)?;
                let archive = ArchiveFile::parse(&*data).with_context(|| format!("{} is not an archive", rlib.display()))?;
                for member in archive.members() {
                    let member = member?;
                    let name = String::from_utf8_lossy(member.name()).into_owned();
                    if name.ends_with(".o") {
                        objects.push(ObjectFile { name, data: member.data(&*data)?.to_vec() });
                    }
                }
            }
            ObjectSource::Dir(dir) => {
                for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
                    let path = entry?.path();
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    if name.ends_with(".o") {
                        let data = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
                        // A binary's units include rustc's allocator shim; the patch allocates
                        // through the program's, whose hidden symbols it could not link to.
                        if !is_allocator_shim(&data) {
                            objects.push(ObjectFile { name, data });
                        }
                    }
                }
            }
        }
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(objects)
    }
}

/// Whether an object is the allocator shim rustc adds to an executable: every symbol it
/// defines is one of the shim's (`__rust_alloc` and its kin, forwarding to std's hidden
/// `__rdl_alloc`). With a `#[global_allocator]`, rustc puts these functions in the crate's own
/// object instead, beside `main`: that object stays.
pub fn is_allocator_shim(data: &[u8]) -> bool {
    use object::{Object, ObjectSymbol};
    let Ok(file) = object::File::parse(data) else { return false };
    let defined: Vec<String> = file
        .symbols()
        .filter(|s| s.is_definition() && s.is_global())
        .filter_map(|s| s.name().ok().map(|name| format!("{:#}", rustc_demangle::demangle(name))))
        .collect();
    let last = |name: &str| name.rsplit("::").next().unwrap_or(name).to_string();
    defined.iter().any(|name| last(name) == "__rust_alloc") && defined.iter().all(|name| last(name).starts_with("__rust_"))
}

/// The result of recompiling a boundary.
pub struct Compiled {
    /// rustc's arguments (what the outputs were compiled from, with the sources).
    pub args: Vec<String>,
    pub duration: Duration,
    /// Its diagnostics (warnings or errors), rendered exactly as cargo would show them.
    pub diagnostics: Vec<Diagnostic>,
    pub success: bool,
}

impl Compiled {
    /// The diagnostics' text, as a terminal shows it.
    pub fn rendered(&self) -> String {
        self.diagnostics.iter().map(|d| d.rendered.as_str()).collect()
    }
}

/// Where a boundary's patches are compiled: cargo hot's own output and incremental
/// directories for that unit, kept across sessions. cargo's files are never written (its next
/// build finds its own rlib and cache as it left them), and the patch's incremental cache
/// matches the patch's flags, so rustc reuses it from the second compile on (see
/// `warmup`).
#[derive(Debug, Clone)]
pub struct CompileDirs {
    pub out: PathBuf,
    pub incremental: PathBuf,
    /// Where a patch of the binary leaves its object files (see `linker`).
    pub binary_objects: PathBuf,
}

impl CompileDirs {
    pub fn of(unit: &BoundaryUnit, session_dir: &Path) -> Self {
        let key = unit.invocation.unit_key().unwrap_or_else(|| unit.boundary.crate_name.clone());
        let base = session_dir.join("patch-build").join(key);
        CompileDirs { out: base.join("out"), incremental: base.join("incremental"), binary_objects: base.join("binary-objects") }
    }

    /// cargo's own output and incremental directories for the unit (a patch of the binary
    /// leaves its objects in `patch`'s `binary_objects`): a compile there replays cargo's command
    /// exactly, and finds rustc's incremental cache as cargo's last build of the crate left it
    /// (that cache is keyed by the output directory too: elsewhere the first compile is cold).
    pub fn cargo(unit: &BoundaryUnit, patch: &CompileDirs) -> Self {
        let out = unit.invocation.out_dir().unwrap_or_else(|| patch.out.clone());
        let incremental = unit.invocation.codegen_option("incremental").map(|dir| unit.invocation.cwd.join(dir)).unwrap_or_else(|| patch.incremental.clone());
        CompileDirs { out, incremental, binary_objects: patch.binary_objects.clone() }
    }

    /// Where the same crate is compiled with full debug info, for the layouts of its types
    /// (see [`start_types_compile`]): its own directories, whose incremental cache matches
    /// those flags.
    pub fn for_types(&self) -> CompileDirs {
        let base = self.out.parent().unwrap_or(&self.out).join("types");
        CompileDirs { out: base.join("out"), incremental: base.join("incremental"), binary_objects: base.join("binary-objects") }
    }

    /// The file rustc writes at `cargo_path` in cargo's directory, in the patch's.
    fn output(&self, cargo_path: &Path) -> PathBuf {
        self.out.join(cargo_path.file_name().unwrap_or_default())
    }

    /// The dep-info of the last compile: the crate's files as rustc read them.
    pub fn dep_info(&self, unit: &BoundaryUnit) -> PathBuf {
        self.output(&unit.dep_info)
    }

    /// Where the compiled patch's object files are.
    pub fn objects(&self, unit: &BoundaryUnit) -> ObjectSource {
        match &unit.objects {
            UnitObjects::Rlib(rlib) => ObjectSource::Rlib(self.output(rlib)),
            UnitObjects::Binary { .. } => ObjectSource::Dir(self.binary_objects.clone()),
        }
    }
}

/// cargo's rustc arguments for the patch: its own output and incremental directories, and
/// line tables as the only debug information (backtraces keep files and lines; full debug
/// info made each patch compile 2.2× slower on the example, see the README's performance
/// notes). Everything that decides symbol names and code (`-C metadata`, features, cfgs,
/// opt-level) is cargo's.
///
/// A patch of the binary keeps cargo's debug info: whether an edit only changes start-up code
/// is decided by comparing its objects with those the program was linked from (see
/// [`reach`]), which must come from the same flags.
pub fn patch_args(args: &[String], dirs: &CompileDirs, line_tables: bool) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out-dir" => {
                args.next();
                out.extend(["--out-dir".to_string(), dirs.out.display().to_string()]);
            }
            a if a.starts_with("--out-dir=") => out.push(format!("--out-dir={}", dirs.out.display())),
            "-C" | "--codegen" => {
                let Some(option) = args.next() else {
                    out.push(arg.clone());
                    break;
                };
                out.extend([arg.clone(), patch_codegen_option(option, dirs, line_tables)]);
            }
            a if a.starts_with("-C") && a.len() > 2 => out.push(format!("-C{}", patch_codegen_option(&a[2..], dirs, line_tables))),
            _ => out.push(arg.clone()),
        }
    }
    out
}

/// The arguments with full debug info, whatever cargo's profile asked (`debug = 0` passes no
/// `-C debuginfo` at all): the compile of a library's types needs their DWARF.
fn with_full_debug_info(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len() + 2);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-C" | "--codegen" => match args.next() {
                Some(option) if option.starts_with("debuginfo=") || option.starts_with("split-debuginfo=") => {}
                Some(option) => out.extend([arg, option]),
                None => out.push(arg),
            },
            a if a.starts_with("-Cdebuginfo=") || a.starts_with("-Csplit-debuginfo=") => {}
            _ => out.push(arg),
        }
    }
    // In the objects themselves, not in `.dwo` files beside them.
    out.extend(["-C".to_string(), "debuginfo=2".to_string(), "-C".to_string(), "split-debuginfo=off".to_string()]);
    out
}

fn patch_codegen_option(option: &str, dirs: &CompileDirs, line_tables: bool) -> String {
    match option.split_once('=') {
        Some(("incremental", _)) => format!("incremental={}", dirs.incremental.display()),
        Some(("debuginfo", "2" | "full" | "1" | "limited" | "true")) if line_tables => "debuginfo=line-tables-only".to_string(),
        _ => option.to_string(),
    }
}

/// The rustc command of a patch of `unit` (see [`patch_args`]). A library's command writes
/// its rlib. The binary's would link the whole executable: it runs with `tool` (cargo-hot) as
/// the linker in patch mode, which puts the crate's own object files in
/// `dirs.binary_objects` and links nothing.
///
/// `newer`: the hot crates it depends on whose newest compile is a patch's (see `span`).
pub(crate) fn compile_command(
    unit: &BoundaryUnit,
    tool: &Path,
    dirs: &CompileDirs,
    flags: Flags,
    newer: &[crate::span::Newer],
) -> Result<std::process::Command> {
    let line_tables = flags == Flags::LineTables;
    std::fs::create_dir_all(&dirs.out).with_context(|| format!("cannot create {}", dirs.out.display()))?;
    let binary = matches!(unit.objects, UnitObjects::Binary { .. });
    let args = crate::span::with_newer_crates(&unit.invocation.args, newer);
    let mut args = patch_args(&args, dirs, line_tables && !binary);
    if flags == Flags::FullDebug && !binary {
        args = with_full_debug_info(args);
    }
    if binary {
        args = linker::take_linker_option(args).0;
        args.extend(["-C".to_string(), format!("linker={}", tool.display())]);
    }
    let mut command = unit.invocation.command_with(&args);
    if binary {
        command.env(linker::REAL_LINKER_ENV, "cc").env(linker::PATCH_OBJECTS_ENV, &dirs.binary_objects);
        let _ = std::fs::remove_dir_all(&dirs.binary_objects);
    }
    // Its own process group: Ctrl-C stops it at once (see `signals`), and so does a kill.
    command.stdin(Stdio::null()).process_group(0);
    Ok(command)
}

/// The debug info a compile of a library asks for (a patch of the binary always keeps cargo's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flags {
    /// A patch's: line tables only (see [`patch_args`]).
    LineTables,
    /// The types' compile: full debug info in the objects (see [`start_types_compile`]).
    FullDebug,
    /// cargo's own, in cargo's own directories (see [`CompileDirs::cargo`]), for a crate
    /// whose running code is compared with cargo's objects: its warm-up had not given a baseline
    /// when the first edit came (see `warmup`).
    Cargo,
}

/// Compiles a patch of `unit`. Diagnostics are collected, not printed.
pub fn compile(unit: &BoundaryUnit, tool: &Path, dirs: &CompileDirs, flags: Flags, newer: &[crate::span::Newer]) -> Result<Compiled> {
    Ok(start(unit, tool, dirs, flags, newer)?.finish())
}

/// A patch compile in progress: the caller can check the edit's types meanwhile and abandon
/// it ([`Compiling::abandon`]) when a restart is due anyway.
pub struct Compiling {
    /// None once waited for; a compile dropped unfinished is killed (see `Drop`).
    child: Option<std::process::Child>,
    args: Vec<String>,
    started: Instant,
    crate_name: Option<String>,
    cwd: PathBuf,
    _registered: crate::signals::Registered,
}

pub fn start_compile(unit: &BoundaryUnit, tool: &Path, dirs: &CompileDirs, flags: Flags, newer: &[crate::span::Newer]) -> Result<Compiling> {
    start(unit, tool, dirs, flags, newer)
}

/// Compiles a library boundary as the patch is compiled but with full debug info, in its own
/// directories ([`CompileDirs::for_types`]), beside the patch's compile: the DWARF of its
/// types is what a patch's layouts are proven from (`layout`). Only an edit that could change
/// a layout pays for it (see `layout::skeleton`); a patch of the binary has full debug info
/// already.
pub fn start_types_compile(unit: &BoundaryUnit, tool: &Path, dirs: &CompileDirs, newer: &[crate::span::Newer]) -> Result<Compiling> {
    start(unit, tool, &dirs.for_types(), Flags::FullDebug, newer)
}

fn start(unit: &BoundaryUnit, tool: &Path, dirs: &CompileDirs, flags: Flags, newer: &[crate::span::Newer]) -> Result<Compiling> {
    let started = Instant::now();
    let mut command = compile_command(unit, tool, dirs, flags, newer)?;
    let args: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    // The outputs there are being replaced: they are no one's baseline any more.
    crate::warmup::Baseline::forget(dirs);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command.spawn().with_context(|| format!("cannot run {}", unit.invocation.rustc.display()))?;
    let registered = crate::signals::register_build(child.id());
    Ok(Compiling {
        child: Some(child),
        args,
        started,
        crate_name: unit.invocation.crate_name().map(str::to_string),
        cwd: unit.invocation.cwd.clone(),
        _registered: registered,
    })
}

impl Compiling {
    /// Waits for rustc and collects its diagnostics.
    pub fn finish(self) -> Compiled {
        let mut this = self;
        let (started, crate_name, cwd, args) = (this.started, this.crate_name.take(), this.cwd.clone(), std::mem::take(&mut this.args));
        let Some(child) = this.child.take() else {
            return Compiled { args, duration: started.elapsed(), diagnostics: vec![], success: false };
        };
        let output = match child.wait_with_output() {
            Ok(output) => output,
            Err(err) => {
                let message = format!("cannot wait for rustc: {err}");
                let diagnostic =
                    Diagnostic { level: "error".into(), rendered: format!("{message}\n"), message, crate_name, file: None, line: None, column: None };
                return Compiled { args, duration: started.elapsed(), diagnostics: vec![diagnostic], success: false };
            }
        };
        let diagnostics = String::from_utf8_lossy(&output.stderr).lines().filter_map(|line| rustc_diagnostic(line, &cwd, crate_name.as_deref())).collect();
        Compiled { args, duration: started.elapsed(), diagnostics, success: output.status.success() }
    }

    /// Stops rustc: its work is not needed.
    pub fn abandon(self) {}
}

impl Drop for Compiling {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// rustc runs with `--error-format=json` under cargo: each diagnostic becomes one (with its
/// `rendered` text), artifact notifications are skipped, anything else passes through.
pub(crate) fn rustc_diagnostic(line: &str, cwd: &Path, crate_name: Option<&str>) -> Option<Diagnostic> {
    let plain = |text: &str| Diagnostic {
        level: "other".into(),
        message: text.to_string(),
        crate_name: crate_name.map(str::to_string),
        file: None,
        line: None,
        column: None,
        rendered: format!("{text}\n"),
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else { return Some(plain(line)) };
    match value.get("$message_type").and_then(|t| t.as_str()) {
        Some("diagnostic") | None => match serde_json::from_value::<cargo_metadata::diagnostic::Diagnostic>(value) {
            Ok(diagnostic) => Some(crate::build::diagnostic(&diagnostic, cwd, crate_name)),
            Err(_) => Some(plain(line)),
        },
        Some(_) => None,
    }
}

/// A linked patch.
#[derive(Debug, Clone, Copy)]
pub struct Linked {
    /// Binding the statics and linking.
    pub duration: Duration,
    pub bound: Bound,
}

/// How patches are linked: rustc's bundled `rust-lld`, called directly.
///
/// Binding statics relies on how lld links a GOT load of an absolute symbol into a shared
/// object (a GOT slot holding that constant, no dynamic relocation); GNU ld and gold do
/// otherwise (gold even relaxes the load into a truncated `lea`), so patches are linked with
/// rust-lld whatever links the host. Without it, a patch that would bind a static is refused.
#[derive(Debug, Clone)]
pub enum PatchLinker {
    Lld(PathBuf),
    /// The host's own driver and its linker-selection flags (statics cannot be bound).
    Driver {
        driver: String,
        flags: Vec<String>,
    },
}

impl PatchLinker {
    /// rust-lld of the toolchain that compiled the boundary, else the host's linker driver.
    pub fn find(record: &LinkRecord, rustc: &Path) -> Self {
        match record.bundled_lld().or_else(|| toolchain_lld(rustc)) {
            Some(lld) => PatchLinker::Lld(lld),
            None => PatchLinker::Driver { driver: record.driver.clone(), flags: record.driver_flags() },
        }
    }
}

/// `<sysroot>/lib/rustlib/<host>/bin/rust-lld` of this rustc.
fn toolchain_lld(rustc: &Path) -> Option<PathBuf> {
    let print = |args: &[&str]| -> Option<String> {
        let output = std::process::Command::new(rustc).args(args).stdin(Stdio::null()).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let sysroot = PathBuf::from(print(&["--print", "sysroot"])?.trim());
    let host = print(&["-vV"])?.lines().find_map(|l| l.strip_prefix("host: ").map(str::to_string))?;
    Some(sysroot.join("lib/rustlib").join(host).join("bin/rust-lld")).filter(|lld| lld.is_file())
}

/// Links `objects`, with their statics bound to `homes`, into the shared object `output`.
/// `Ok(Err(_))` when a static cannot be bound: the patch is not linked.
///
/// `-Bsymbolic`: calls inside the patch go to the patch's own (new) functions, not to the
/// host's old copies of the same names. Everything else stays undefined until `dlopen`,
/// where it resolves to the host's own copies. `gc_sections`: the objects' left-out functions
/// are jumps (see `thin`), and what only their bodies used is dropped.
pub fn link(objects: Vec<ObjectFile>, linker: &PatchLinker, work_dir: &Path, output: &Path, homes: &Homes, gc_sections: bool) -> Result<Result<Linked, Unbindable>> {
    let started = Instant::now();
    if objects.is_empty() {
        bail!("the compiled boundary has no object files");
    }
    let can_bind = matches!(linker, PatchLinker::Lld(_));
    let (objects, bound) = match write_objects(objects, work_dir, homes, can_bind)? {
        Ok(written) => written,
        Err(unbindable) => return Ok(Err(unbindable)),
    };
    let (program, args) = match linker {
        PatchLinker::Lld(lld) => {
            // --eh-frame-hdr: without PT_GNU_EH_FRAME the unwinder cannot find the patch's
            // unwind tables, and a panic in patched code would abort the whole server.
            // (cc passes it to the linker itself.)
            let mut args: Vec<String> =
                ["-flavor", "gnu", "-shared", "-Bsymbolic", "--eh-frame-hdr", "-z", "now", "-z", "noexecstack"].map(String::from).to_vec();
            args.extend(["-o".to_string(), output.display().to_string()]);
            (lld.display().to_string(), args)
        }
        PatchLinker::Driver { driver, flags } => {
            let mut args = flags.clone();
            args.extend(["-shared".into(), "-Wl,-Bsymbolic".into(), "-o".into(), output.display().to_string()]);
            (driver.clone(), args)
        }
    };
    // Only the entries and their layout records are looked up in a patch (by the runtime's
    // dlsym and the gate); every other definition stays local. A patch is never unloaded, and
    // exporting its ~1,400 Rust symbols made its dynamic symbol table most of its read-only
    // memory.
    let version_script = work_dir.join("exports.ver");
    std::fs::write(&version_script, format!("{{ global: {}*; {}*; local: *; }};\n", crate::abi::elf::ENTRY_PREFIX, crate::abi::elf::LAYOUT_PREFIX))
        .with_context(|| format!("cannot write {}", version_script.display()))?;
    let mut args = args;
    args.push(match linker {
        PatchLinker::Lld(_) => format!("--version-script={}", version_script.display()),
        PatchLinker::Driver { .. } => format!("-Wl,--version-script={}", version_script.display()),
    });
    if gc_sections {
        args.push(match linker {
            PatchLinker::Lld(_) => "--gc-sections".to_string(),
            PatchLinker::Driver { .. } => "-Wl,--gc-sections".to_string(),
        });
    }
    args.extend(objects.iter().map(|o| o.display().to_string()));
    let status = linker::run_with_response_file(&program, &args)?;
    if !status.success() {
        bail!("linking the patch failed (`{program}` exited with {status})");
    }
    Ok(Ok(Linked { duration: started.elapsed(), bound }))
}

/// Writes `objects` into `dir`, each with its statics bound to `homes`. Without `can_bind`, an
/// object that would need binding refuses the patch.
fn write_objects(objects: Vec<ObjectFile>, dir: &Path, homes: &Homes, can_bind: bool) -> Result<Result<(Vec<PathBuf>, Bound), Unbindable>> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut paths = Vec::with_capacity(objects.len());
    let mut total = Bound::default();
    for ObjectFile { name, data } in objects {
        let mut object = data;
        if !homes.is_empty() {
            let mut bound_copy = object.clone();
            match bind::bind_object(&mut bound_copy, homes).with_context(|| format!("cannot read the object {name}"))? {
                Ok(bound) if bound == Bound::default() => {}
                Ok(_) if !can_bind => {
                    return Ok(Err(Unbindable(
                        "the statics of the new code can keep their values only in a patch linked with rust-lld, \
                         which this toolchain lacks"
                            .to_string(),
                    )))
                }
                Ok(bound) => {
                    total += bound;
                    object = bound_copy;
                }
                Err(unbindable) => return Ok(Err(unbindable)),
            }
        }
        let path = dir.join(&name);
        std::fs::write(&path, object).with_context(|| format!("cannot write {}", path.display()))?;
        paths.push(path);
    }
    Ok(Ok((paths, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_compiles_into_its_own_directories_with_line_tables() {
        let dirs = CompileDirs { out: "/s/out".into(), incremental: "/s/inc".into(), binary_objects: "/s/bin".into() };
        let args: Vec<String> = [
            "--crate-name",
            "web",
            "--emit=dep-info,metadata,link",
            "-C",
            "debuginfo=2",
            "-C",
            "metadata=7f88",
            "--out-dir",
            "/t/debug/deps",
            "-C",
            "incremental=/t/debug/incremental",
            "-Copt-level=0",
        ]
        .map(String::from)
        .to_vec();
        let patched = patch_args(&args, &dirs, true).join(" ");
        assert_eq!(
            patched,
            "--crate-name web --emit=dep-info,metadata,link -C debuginfo=line-tables-only -C metadata=7f88 --out-dir /s/out -C incremental=/s/inc -Copt-level=0"
        );
        let none = patch_args(&["-C".to_string(), "debuginfo=0".to_string(), "--out-dir=/t".to_string()], &dirs, true).join(" ");
        assert_eq!(none, "-C debuginfo=0 --out-dir=/s/out", "less debug info than line tables stays as cargo asked");
        let binary = patch_args(&args, &dirs, false).join(" ");
        assert!(binary.contains("-C debuginfo=2") && binary.contains("--out-dir /s/out"), "{binary}");
    }

    #[test]
    fn the_types_compile_has_full_debug_info_whatever_the_profile() {
        let strip = |args: &[&str]| with_full_debug_info(args.iter().map(|a| a.to_string()).collect()).join(" ");
        let full = "-C debuginfo=2 -C split-debuginfo=off";
        assert_eq!(strip(&["-C", "debuginfo=line-tables-only", "-C", "opt-level=0"]), format!("-C opt-level=0 {full}"));
        assert_eq!(strip(&["-Cdebuginfo=0", "--crate-name", "web", "-C", "split-debuginfo=unpacked"]), format!("--crate-name web {full}"));
        assert_eq!(strip(&["--crate-name", "web"]), format!("--crate-name web {full}"), "`debug = 0` passes no flag");
    }

    #[test]
    fn diagnostics_keep_their_rendering_and_location_and_artifact_notices_are_skipped() {
        let diag = r#"{"$message_type":"diagnostic","message":"mismatched types","code":{"code":"E0308","explanation":null},"level":"error","spans":[{"file_name":"src/lib.rs","byte_start":24,"byte_end":27,"line_start":2,"line_end":2,"column_start":5,"column_end":8,"is_primary":true,"text":[{"text":"    \"x\"","highlight_start":5,"highlight_end":8}],"label":"expected `u32`, found `&str`","suggested_replacement":null,"suggestion_applicability":null,"expansion":null}],"children":[],"rendered":"\u001b[1m\u001b[91merror[E0308]\u001b[0m: mismatched types\n"}"#;
        let artifact = r#"{"$message_type":"artifact","artifact":"/t/libh.rlib","emit":"link"}"#;
        let found = rustc_diagnostic(diag, Path::new("/ws/h"), Some("h")).unwrap();
        assert_eq!((found.level.as_str(), found.message.as_str()), ("error", "mismatched types"));
        assert_eq!((found.file.as_deref(), found.line, found.column), (Some(Path::new("/ws/h/src/lib.rs")), Some(2), Some(5)));
        assert_eq!(found.rendered, "\x1b[1m\x1b[91merror[E0308]\x1b[0m: mismatched types\n", "as cargo renders it");
        assert!(rustc_diagnostic(artifact, Path::new("/ws"), None).is_none());
        assert_eq!(rustc_diagnostic("plain text", Path::new("/ws"), None).unwrap().rendered, "plain text\n");
    }
}
