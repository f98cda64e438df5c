//! Building a patch: replay the boundary's captured rustc command (incremental, ~the cost of
//! compiling that one crate), bind its statics to the running program's copies ([`bind`]),
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
use std::os::unix::process::CommandExt;
use crate::events::Diagnostic;
use crate::linker::{self, LinkRecord};
use bind::{Bound, Homes, Unbindable};

/// One object file of a patch: rustc's name for it and its contents.
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
    /// Where the patch of `unit` will find its objects; `binary_dir` is where a binary's go.
    pub fn of(unit: &BoundaryUnit, binary_dir: &Path) -> Self {
        match &unit.objects {
            UnitObjects::Rlib(rlib) => ObjectSource::Rlib(rlib.clone()),
            UnitObjects::Binary { .. } => ObjectSource::Dir(binary_dir.to_path_buf()),
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
fn is_allocator_shim(data: &[u8]) -> bool {
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

/// Replays the recorded rustc command of `unit`. Diagnostics are collected, not printed.
///
/// A library's command writes its rlib. The binary's would link the whole executable: it is
/// replayed with `tool` (cargo-hot) as the linker in patch mode, which puts the crate's own
/// object files in `binary_dir` and links nothing. Either way rustc runs cargo's exact
/// command otherwise, so its incremental cache (which cargo's builds share) stays valid.
pub fn compile(unit: &BoundaryUnit, tool: &Path, binary_dir: &Path) -> Result<Compiled> {
    let started = Instant::now();
    let mut command = unit.invocation.command();
    if let UnitObjects::Binary { .. } = unit.objects {
        let (args, _) = linker::take_linker_option(unit.invocation.args.clone());
        command = std::process::Command::new(&unit.invocation.rustc);
        command.args(args).arg("-C").arg(format!("linker={}", tool.display()));
        command.current_dir(&unit.invocation.cwd).env_clear().envs(&unit.invocation.env);
        command.env(linker::REAL_LINKER_ENV, "cc").env(linker::PATCH_OBJECTS_ENV, binary_dir);
        let _ = std::fs::remove_dir_all(binary_dir);
    }
    // Its own process group, registered for stopping: Ctrl-C stops it at once (see `signals`).
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let child = command.spawn().with_context(|| format!("cannot run {}", unit.invocation.rustc.display()))?;
    let registered = crate::signals::register_build(child.id());
    let output = child.wait_with_output().with_context(|| format!("cannot run {}", unit.invocation.rustc.display()))?;
    drop(registered);
    let crate_name = unit.invocation.crate_name().map(str::to_string);
    let diagnostics = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter_map(|line| rustc_diagnostic(line, &unit.invocation.cwd, crate_name.as_deref()))
        .collect();
    Ok(Compiled { duration: started.elapsed(), diagnostics, success: output.status.success() })
}

/// rustc runs with `--error-format=json` under cargo: each diagnostic becomes one (with its
/// `rendered` text), artifact notifications are skipped, anything else passes through.
fn rustc_diagnostic(line: &str, cwd: &Path, crate_name: Option<&str>) -> Option<Diagnostic> {
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
    Driver { driver: String, flags: Vec<String> },
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
/// where it resolves to the host's own copies.
pub fn link(objects: Vec<ObjectFile>, linker: &PatchLinker, work_dir: &Path, output: &Path, homes: &Homes) -> Result<Result<Linked, Unbindable>> {
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
            let mut args: Vec<String> = ["-flavor", "gnu", "-shared", "-Bsymbolic", "--eh-frame-hdr", "-z", "now", "-z", "noexecstack"]
                .map(String::from)
                .to_vec();
            args.extend(["-o".to_string(), output.display().to_string()]);
            (lld.display().to_string(), args)
        }
        PatchLinker::Driver { driver, flags } => {
            let mut args = flags.clone();
            args.extend(["-shared".into(), "-Wl,-Bsymbolic".into(), "-o".into(), output.display().to_string()]);
            (driver.clone(), args)
        }
    };
    let mut args = args;
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
