//! Building a patch: replay the boundary's captured rustc command (incremental, ~the cost of
//! compiling that one crate), bind its statics to the running program's copies ([`bind`]),
//! then link only the boundary's own object files into a small shared object whose every
//! other symbol stays undefined, to be resolved against the running host at `dlopen`.

pub mod bind;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use object::read::archive::ArchiveFile;

use crate::build::BoundaryUnit;
use crate::linker::{self, LinkRecord};
use bind::{Bound, Homes, Unbindable};

/// The result of recompiling a boundary.
pub struct Compiled {
    pub duration: Duration,
    /// Rendered diagnostics (warnings or errors), exactly as cargo would show them.
    pub diagnostics: String,
    pub success: bool,
}

/// Replays the recorded rustc command of `unit`. Diagnostics are collected, not printed.
pub fn compile(unit: &BoundaryUnit) -> Result<Compiled> {
    let started = Instant::now();
    let output = unit
        .invocation
        .command()
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", unit.invocation.rustc.display()))?;
    let mut diagnostics = String::new();
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        diagnostics.push_str(&render_rustc_line(line));
    }
    Ok(Compiled { duration: started.elapsed(), diagnostics, success: output.status.success() })
}

/// rustc runs with `--error-format=json` under cargo: show the `rendered` text of each
/// diagnostic, skip artifact notifications, pass anything else through.
fn render_rustc_line(line: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(value) => match value.get("$message_type").and_then(|t| t.as_str()) {
            Some("diagnostic") | None => {
                value.get("rendered").and_then(|r| r.as_str()).map(str::to_string).unwrap_or_default()
            }
            Some(_) => String::new(),
        },
        Err(_) => format!("{line}\n"),
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

/// Links the objects of `rlib`, with their statics bound to `homes`, into the shared object
/// `output`. `Ok(Err(_))` when a static cannot be bound: the patch is not linked.
///
/// `-Bsymbolic`: calls inside the patch go to the patch's own (new) functions, not to the
/// host's old copies of the same names. Everything else stays undefined until `dlopen`,
/// where it resolves to the host's own copies.
pub fn link(rlib: &Path, linker: &PatchLinker, work_dir: &Path, output: &Path, homes: &Homes) -> Result<Result<Linked, Unbindable>> {
    let started = Instant::now();
    let can_bind = matches!(linker, PatchLinker::Lld(_));
    let (objects, bound) = match extract_objects(rlib, work_dir, homes, can_bind)? {
        Ok(extracted) => extracted,
        Err(unbindable) => return Ok(Err(unbindable)),
    };
    if objects.is_empty() {
        bail!("{} contains no object files", rlib.display());
    }
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

/// Writes the `.o` members of an rlib (rustc's codegen units) into `dir`, each with its
/// statics bound to `homes`. Without `can_bind`, an object that would need binding refuses
/// the patch.
fn extract_objects(rlib: &Path, dir: &Path, homes: &Homes, can_bind: bool) -> Result<Result<(Vec<PathBuf>, Bound), Unbindable>> {
    let data = crate::sys::map_file(rlib)?;
    let archive = ArchiveFile::parse(&*data).with_context(|| format!("{} is not an archive", rlib.display()))?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut objects = Vec::new();
    let mut total = Bound::default();
    for member in archive.members() {
        let member = member?;
        let name = String::from_utf8_lossy(member.name()).into_owned();
        if !name.ends_with(".o") {
            continue;
        }
        let original = member.data(&*data)?;
        let mut object = original.to_vec();
        if !homes.is_empty() {
            match bind::bind_object(&mut object, homes).with_context(|| format!("cannot read {name} of {}", rlib.display()))? {
                Ok(bound) if bound == Bound::default() => object = original.to_vec(),
                Ok(_) if !can_bind => {
                    return Ok(Err(Unbindable(
                        "the statics of the new code can keep their values only in a patch linked with rust-lld, \
                         which this toolchain lacks"
                            .to_string(),
                    )))
                }
                Ok(bound) => total += bound,
                Err(unbindable) => return Ok(Err(unbindable)),
            }
        }
        let path = dir.join(&name);
        std::fs::write(&path, object).with_context(|| format!("cannot write {}", path.display()))?;
        objects.push(path);
    }
    Ok(Ok((objects, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_rendered_diagnostics_and_hides_artifact_notices() {
        let diag = r#"{"$message_type":"diagnostic","message":"x","rendered":"error[E0308]: mismatched types\n"}"#;
        let artifact = r#"{"$message_type":"artifact","artifact":"/t/libh.rlib","emit":"link"}"#;
        assert_eq!(render_rustc_line(diag), "error[E0308]: mismatched types\n");
        assert_eq!(render_rustc_line(artifact), "");
        assert_eq!(render_rustc_line("plain text"), "plain text\n");
    }
}
