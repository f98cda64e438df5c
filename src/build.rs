//! The full build of the host: the developer's own `cargo build`, with cargo-hot as the
//! workspace rustc wrapper (to capture the boundary's exact compiler command) and as the
//! host's linker (to make the binary patchable). Cargo shows its progress and diagnostics
//! as usual; we read its JSON messages to learn where every artifact is.

use std::io::{BufReader, IsTerminal};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cargo_metadata::Message;

use crate::capture::{self, RustcInvocation};
use crate::linker::LinkRecord;
use crate::metadata::{Boundary, Plan};

/// A boundary as compiled into the current host binary.
#[derive(Debug, Clone)]
pub struct BoundaryUnit {
    pub boundary: Boundary,
    /// The exact rustc command cargo used; replaying it compiles a patch.
    pub invocation: RustcInvocation,
    pub rlib: PathBuf,
    pub dep_info: PathBuf,
}

/// A library of a local (path) package in the host's build, with its dep-info.
#[derive(Debug, Clone)]
pub struct LocalUnit {
    pub package: String,
    pub dep_info: PathBuf,
    pub manifest_dir: PathBuf,
}

/// Everything a successful host build produced.
#[derive(Debug, Clone)]
pub struct HostBuild {
    pub executable: PathBuf,
    /// cargo's dep-info next to the executable: every source file of every crate linked.
    pub host_dep_info: PathBuf,
    pub boundaries: Vec<BoundaryUnit>,
    pub local_units: Vec<LocalUnit>,
    pub link: LinkRecord,
    pub duration: Duration,
}

pub enum BuildOutcome {
    Built(Box<HostBuild>),
    /// Cargo failed; it has already shown the diagnostics.
    Failed,
}

pub fn capture_dir(plan: &Plan) -> PathBuf {
    plan.session_dir().join("capture")
}

/// Builds the host. If cargo considered a unit fresh whose capture we do not have (the
/// target dir was built by another tool), its outputs are removed and the build runs once more.
///
/// `tool` is the cargo-hot executable that cargo runs as the rustc wrapper and linker.
pub fn build_host(plan: &Plan, tool: &Path) -> Result<BuildOutcome> {
    let started = Instant::now();
    for attempt in 0..2 {
        let Some(artifacts) = run_cargo(plan, tool)? else { return Ok(BuildOutcome::Failed) };
        match assemble(plan, artifacts, started)? {
            Assembled::Ready(build) => return Ok(BuildOutcome::Built(Box::new(build))),
            Assembled::Stale(outputs) if attempt == 0 => {
                for output in outputs {
                    let _ = std::fs::remove_file(&output);
                }
            }
            Assembled::Stale(outputs) => bail!(
                "cargo did not rebuild {} with cargo hot's wrapper; run `cargo clean -p {}` and try again",
                outputs.first().map(|p| p.display().to_string()).unwrap_or_default(),
                plan.host.package
            ),
        }
    }
    unreachable!("the loop returns on its second attempt")
}

struct Artifacts {
    executable: PathBuf,
    /// (package name, manifest dir, rlib path) of every local library.
    local_libs: Vec<(String, PathBuf, PathBuf)>,
}

fn run_cargo(plan: &Plan, tool: &Path) -> Result<Option<Artifacts>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.arg("build").arg("--message-format=json-render-diagnostics");
    if std::io::stderr().is_terminal() {
        command.arg("--color=always");
    }
    command.args(["-p", &plan.host.package, "--bin", &plan.host.bin]);
    command.args(plan.selection.feature_args());
    match plan.selection.profile_name() {
        "dev" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    if let Some(manifest) = &plan.selection.manifest_path {
        command.arg("--manifest-path").arg(manifest);
    }
    let user_wrapper = std::env::var_os("RUSTC_WORKSPACE_WRAPPER").unwrap_or_default();
    command
        .env("RUSTC_WORKSPACE_WRAPPER", tool)
        .env(capture::INNER_WRAPPER_ENV, user_wrapper)
        .env(capture::CAPTURE_DIR_ENV, capture_dir(plan))
        .env(capture::HOST_ENV, format!("{}:{}", plan.host.package, plan.host.bin))
        .env(capture::BOUNDARIES_ENV, plan.boundaries.iter().map(|b| b.package.as_str()).collect::<Vec<_>>().join(","))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn().context("cannot run cargo")?;
    let stdout = child.stdout.take().expect("piped");
    let mut executable = None;
    let mut local_libs = Vec::new();
    for message in Message::parse_stream(BufReader::new(stdout)) {
        let Message::CompilerArtifact(artifact) = message.context("cannot read cargo's output")? else { continue };
        let package_id = &artifact.package_id.repr;
        let is_local = package_id.starts_with("path+") || !package_id.contains('+');
        if artifact.target.is_bin() && artifact.target.name == plan.host.bin {
            executable = artifact.executable.map(|p| p.into_std_path_buf());
        } else if is_local && (artifact.target.is_lib() || artifact.target.is_rlib()) {
            if let Some(rlib) = artifact.filenames.iter().find(|f| f.as_str().ends_with(".rlib")) {
                let manifest_dir = artifact.manifest_path.parent().map(|p| p.as_std_path().to_path_buf()).unwrap_or_default();
                local_libs.push((package_name(package_id, &artifact.target.name), manifest_dir, rlib.clone().into_std_path_buf()));
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Ok(None);
    }
    let executable = executable.ok_or_else(|| anyhow!("cargo built no binary named `{}`", plan.host.bin))?;
    Ok(Some(Artifacts { executable, local_libs }))
}

/// The package name of a package id (`path+file:///ws/crates/x#name@0.1.0` or `...#0.1.0`).
fn package_name(package_id: &str, target_name: &str) -> String {
    let fragment = package_id.rsplit('#').next().unwrap_or("");
    match fragment.split_once('@') {
        Some((name, _)) => name.to_string(),
        None => {
            // `path+file:///ws/crates/handlers#0.1.0`: the name is the directory's.
            let path = package_id.split('#').next().unwrap_or("");
            path.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or(target_name).to_string()
        }
    }
}

enum Assembled {
    Ready(HostBuild),
    /// Outputs to delete so that cargo rebuilds them through cargo hot.
    Stale(Vec<PathBuf>),
}

fn assemble(plan: &Plan, artifacts: Artifacts, started: Instant) -> Result<Assembled> {
    let capture = capture_dir(plan);
    let mut stale = Vec::new();
    let mut boundaries = Vec::new();
    for boundary in &plan.boundaries {
        let Some((_, _, rlib)) = artifacts.local_libs.iter().find(|(package, _, _)| *package == boundary.package) else {
            bail!("cargo did not build the boundary `{}` as part of `{}`", boundary.package, plan.host.bin);
        };
        let key = unit_key(rlib).ok_or_else(|| anyhow!("unexpected library file name {}", rlib.display()))?;
        let record = RustcInvocation::record_path(&capture, key);
        if !record.is_file() {
            stale.push(rlib.clone());
            stale.push(rlib.with_extension("rmeta"));
            continue;
        }
        let invocation = RustcInvocation::load(&record)?;
        // Cargo names units of path packages by their path relative to the workspace root:
        // a copy of the workspace building in the same target dir shares the names. A record
        // made for another copy must not be replayed here.
        let recorded_dir = invocation.env.get("CARGO_MANIFEST_DIR").map(PathBuf::from);
        if recorded_dir.as_deref() != Some(boundary.manifest_dir.as_path()) {
            stale.push(rlib.clone());
            stale.push(rlib.with_extension("rmeta"));
            continue;
        }
        let dep_info = invocation.dep_info_path().ok_or_else(|| anyhow!("the captured command of `{}` has no --out-dir", boundary.package))?;
        boundaries.push(BoundaryUnit { boundary: boundary.clone(), invocation, rlib: rlib.clone(), dep_info });
    }

    let link = find_link_record(&capture, &artifacts.executable);
    if link.is_none() {
        stale.push(artifacts.executable.clone());
        stale.extend(deps_copies(&artifacts.executable));
    }
    if !stale.is_empty() {
        return Ok(Assembled::Stale(stale));
    }

    let local_units: Vec<LocalUnit> = artifacts
        .local_libs
        .into_iter()
        .filter(|(package, _, _)| !plan.boundaries.iter().any(|b| b.package == *package))
        .filter_map(|(package, manifest_dir, rlib)| {
            let dep_info = rlib.with_file_name(format!("{}.d", unit_key(&rlib)?));
            Some(LocalUnit { package, dep_info, manifest_dir })
        })
        .collect();
    let host_dep_info = artifacts.executable.with_extension("d");
    // The bin crate's own files (main.rs and its modules), from its captured command.
    let host_unit = link
        .as_ref()
        .and_then(|l| l.output.as_deref())
        .and_then(|out| out.file_name())
        .and_then(|key| RustcInvocation::load(&RustcInvocation::record_path(&capture, &key.to_string_lossy())).ok())
        .and_then(|invocation| Some((invocation.dep_info_path()?, invocation.cwd)));
    let mut local_units = local_units;
    if let Some((dep_info, cwd)) = host_unit {
        local_units.push(LocalUnit { package: format!("{} (the host binary)", plan.host.bin), dep_info, manifest_dir: cwd });
    }
    Ok(Assembled::Ready(HostBuild {
        executable: artifacts.executable,
        host_dep_info,
        boundaries,
        local_units,
        link: link.expect("checked above"),
        duration: started.elapsed(),
    }))
}

/// `libhandlers-0f1e.rlib` → `handlers-0f1e`: the unit's key, as its capture record and
/// dep-info are named.
fn unit_key(rlib: &Path) -> Option<&str> {
    rlib.file_name()?.to_str()?.strip_prefix("lib")?.strip_suffix(".rlib")
}

/// The record of the link that produced `executable`, if cargo hot's linker made it.
fn find_link_record(capture: &Path, executable: &Path) -> Option<LinkRecord> {
    let entries = std::fs::read_dir(capture).ok()?;
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(crate::linker::LINK_RECORD_PREFIX))
        .filter_map(|e| serde_json::from_str::<LinkRecord>(&std::fs::read_to_string(e.path()).ok()?).ok())
        .find(|record| record.output.as_deref().is_some_and(|out| same_file(out, executable)))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino() || (a.len() == b.len() && a.mtime() == b.mtime()),
        _ => false,
    }
}

/// `target/debug/deps/server-<hash>` files that are the same file as `target/debug/server`.
fn deps_copies(executable: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (executable.parent(), executable.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{}-", name.replace('-', "_"));
    let Ok(entries) = std::fs::read_dir(dir.join("deps")) else { return Vec::new() };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && !n.contains('.'))
                && same_file(p, executable)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_from_both_id_formats() {
        assert_eq!(package_name("path+file:///ws/crates/handlers#0.1.0", "handlers"), "handlers");
        assert_eq!(package_name("path+file:///ws/crates/h#my-handlers@0.1.0", "my_handlers"), "my-handlers");
    }
}
