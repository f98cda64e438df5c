//! Building a patch: replay the boundary's captured rustc command (incremental, ~the cost of
//! compiling that one crate), then link only the boundary's own object files into a small
//! shared object whose every other symbol stays undefined, to be resolved against the
//! running host at `dlopen`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use object::read::archive::ArchiveFile;

use crate::build::BoundaryUnit;
use crate::linker::{self, LinkRecord};

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

/// Links the objects of `rlib` into the shared object `output`.
///
/// `-Bsymbolic`: calls inside the patch go to the patch's own (new) functions, not to the
/// host's old copies of the same names. Everything else stays undefined until `dlopen`,
/// where it resolves to the host's own copies.
pub fn link(rlib: &Path, link_record: &LinkRecord, work_dir: &Path, output: &Path) -> Result<Duration> {
    let started = Instant::now();
    if let Some(lld) = link_record.bundled_lld() {
        // lld reads the rlib itself: its metadata member is an object without allocated sections.
        let status = std::process::Command::new(&lld)
            // --eh-frame-hdr: without PT_GNU_EH_FRAME the unwinder cannot find the patch's
            // unwind tables, and a panic in patched code would abort the whole server.
            // (cc passes it to the linker itself.)
            .args(["-flavor", "gnu", "-shared", "-Bsymbolic", "--eh-frame-hdr", "-z", "now", "-z", "noexecstack", "-o"])
            .arg(output)
            .arg("--whole-archive")
            .arg(rlib)
            .arg("--no-whole-archive")
            .status()
            .with_context(|| format!("cannot run {}", lld.display()))?;
        if !status.success() {
            bail!("linking the patch failed (`{}` exited with {status})", lld.display());
        }
        return Ok(started.elapsed());
    }
    let objects = extract_objects(rlib, work_dir)?;
    if objects.is_empty() {
        bail!("{} contains no object files", rlib.display());
    }
    let mut args: Vec<String> = link_record.driver_flags();
    args.extend(["-shared".into(), "-Wl,-Bsymbolic".into(), "-o".into()]);
    args.push(output.display().to_string());
    args.extend(objects.iter().map(|o| o.display().to_string()));
    let status = linker::run_with_response_file(&link_record.driver, &args)?;
    if !status.success() {
        bail!("linking the patch failed (`{}` exited with {status})", link_record.driver);
    }
    Ok(started.elapsed())
}

/// Writes the `.o` members of an rlib (rustc's codegen units) into `dir`.
fn extract_objects(rlib: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let data = crate::sys::map_file(rlib)?;
    let archive = ArchiveFile::parse(&*data).with_context(|| format!("{} is not an archive", rlib.display()))?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut objects = Vec::new();
    for member in archive.members() {
        let member = member?;
        let name = String::from_utf8_lossy(member.name()).into_owned();
        if !name.ends_with(".o") {
            continue;
        }
        let path = dir.join(&name);
        std::fs::write(&path, member.data(&*data)?).with_context(|| format!("cannot write {}", path.display()))?;
        objects.push(path);
    }
    Ok(objects)
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
