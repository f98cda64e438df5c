//! Rebuilding the host without cargo: when every change since the last build is in the sources
//! of workspace crates, cargo hot knows exactly which crates must be compiled again and replays
//! their captured rustc commands itself, in dependency order, then links the host through its
//! linker role as cargo would have. What it compiles: the crates whose files changed, and the
//! workspace crates that depend on one of them only when they compiled in something of it that
//! changed (see `downstream`: a plain function's body stays in its crate); when the host's own
//! crate is not among them, the host is only linked again (`linker::relink`). cargo would
//! compile every dependent, and start by reading the workspace and fingerprinting every unit.
//!
//! The commands are replayed as they are, writing where cargo writes (under cargo's own lock
//! on the build directory): rustc's incremental cache is keyed by the output directory too
//! (measured on test-fixtures/axum-app: the host crate compiled again in 2.2 s instead of
//! 0.46 s when its `--out-dir` changed, and again when it changed back), so writing elsewhere
//! would make every first rebuild, and cargo's next build, a cold compile. cargo's fingerprints
//! are left as they were: its next build sees the sources newer than them and compiles those
//! crates again itself.
//!
//! Anything cargo would do differently sends the build to cargo: a changed file that no
//! captured crate compiles (a manifest, a build script's input, a file of a path dependency
//! outside the workspace), a build script that would run again, a crate cargo hot has no
//! command of, a link that fails.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context as _, Result};

use crate::build::{HostBuild, WorkspaceUnit};
use crate::downstream::Downstream;
use crate::events::{Event, Events};
use crate::host::SourcesBefore;
use crate::linker::LinkRecord;
use std::os::unix::process::CommandExt;

/// Which crates a rebuild compiles, in dependency order (indices into the build's
/// [`HostBuild::workspace_units`]). When the host's own crate is not among them, the host is
/// linked again from its last link (see `linker::relink`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub order: Vec<usize>,
    /// The crates whose files changed (the others are compiled because they depend on them).
    pub edited: BTreeSet<usize>,
    /// Why the crates that depend on an edited one are compiled too, for each edited one that
    /// makes them (`-v`).
    pub reasons: Vec<String>,
}

impl Replay {
    /// Whether the host's own crate is compiled (else it is only linked again).
    pub fn compiles_host(&self, build: &HostBuild) -> bool {
        self.order.iter().any(|i| build.workspace_units[*i].binary)
    }
}

/// What became of a rebuild.
pub enum Replayed {
    Built(Box<HostBuild>),
    /// A crate does not compile: its diagnostics were emitted, their text is here.
    Failed { diagnostics: String },
    /// cargo must build instead (why).
    NeedsCargo(String),
}

/// Decides whether the host can be rebuilt without cargo, and what that compiles: every
/// workspace crate one of whose files differs from `compiled` (the sources when `build`
/// started), and every crate that depends on one of those, unless what its dependents compile
/// of it is as it was (see `downstream`).
/// `raced`: the crates (unit keys) whose files changed while `build` ran (what it compiled of
/// them is not known); `overwritten`: those whose library in cargo's directory a patch
/// compiled again since (compiled again whatever their sources say).
pub fn plan(build: &HostBuild, compiled: &SourcesBefore, raced: &HashSet<String>, overwritten: &HashSet<String>) -> Result<Replay, String> {
    let units = &build.workspace_units;
    if units.is_empty() || !units.last().is_some_and(|u| u.binary) {
        return Err("the host's own rustc command was not captured".to_string());
    }
    let mut edited = BTreeSet::new();
    let mut changed_files: HashMap<usize, Vec<PathBuf>> = HashMap::new();
    for (index, unit) in units.iter().enumerate() {
        let dep_info = unit.invocation.dep_info_path().ok_or_else(|| format!("the command of `{}` has no --out-dir", unit.package))?;
        let files = crate::depinfo::read(&dep_info, &unit.invocation.cwd).map_err(|err| format!("{err:#}"))?;
        let changed: Vec<PathBuf> = files.into_iter().filter(|f| compiled.unchanged(f) != Some(true)).collect();
        let overwritten = unit.invocation.unit_key().is_some_and(|key| overwritten.contains(&key));
        if !changed.is_empty() || overwritten {
            edited.insert(index);
            changed_files.insert(index, changed);
        }
    }
    if edited.is_empty() {
        return Err("no workspace crate's sources changed".to_string());
    }
    for (&index, files) in &changed_files {
        if let Some(why) = build_script_reruns(&units[index], files) {
            return Err(why);
        }
    }
    let depends_on = dependencies(units);
    // The edited crates whose dependents compiled in something that changed.
    let mut reasons = Vec::new();
    let mut reaching = BTreeSet::new();
    for &index in &edited {
        let unit = &units[index];
        let files = crate::depinfo::read(&unit.invocation.dep_info_path().unwrap_or_default(), &unit.invocation.cwd).unwrap_or_default();
        // As compiled: the contents read when the build started, if none changed while it ran.
        let raced_here = unit.invocation.unit_key().is_some_and(|key| raced.contains(&key));
        let before = (!raced_here)
            .then(|| {
                let read = |file: &Path| compiled.contents(file).map(<[u8]>::to_vec).ok_or_else(|| anyhow::anyhow!("{} was not read", file.display()));
                Downstream::of(&files, &read).ok()
            })
            .flatten();
        let why = if !crate::downstream::bodies_stay_home(&unit.invocation) {
            "it is optimised or uses LTO (its code may be inlined into them)"
        } else if before.is_none() {
            "what they compile of it is not known as it was compiled"
        } else if Downstream::of_files(&files).ok() != before {
            "what they compile of it changed (more than the bodies of its plain functions)"
        } else {
            continue;
        };
        reaching.insert(index);
        if depends_on.iter().any(|deps| deps.contains(&index)) {
            reasons.push(format!("the crates that depend on `{}` are compiled again: {why}", unit.package));
        }
    }
    // Those crates' dependents, directly or not.
    let mut chosen = edited.clone();
    let mut dirty = reaching;
    loop {
        let grown: BTreeSet<usize> = (0..units.len()).filter(|i| dirty.contains(i) || depends_on[*i].iter().any(|d| dirty.contains(d))).collect();
        if grown == dirty {
            break;
        }
        dirty = grown;
    }
    chosen.extend(dirty);
    Ok(Replay { order: topological(&chosen, &depends_on), edited, reasons })
}

/// The workspace crates of `build` (unit keys) one of whose files differs from `compiled`.
pub fn changed_since(build: &HostBuild, compiled: &SourcesBefore) -> HashSet<String> {
    let mut changed = HashSet::new();
    for unit in &build.workspace_units {
        let (Some(key), Some(dep_info)) = (unit.invocation.unit_key(), unit.invocation.dep_info_path()) else { continue };
        let files = crate::depinfo::read(&dep_info, &unit.invocation.cwd).unwrap_or_default();
        if files.is_empty() || files.iter().any(|f| compiled.unchanged(f) != Some(true)) {
            changed.insert(key);
        }
    }
    changed
}

/// Every file the workspace crates of `build` were compiled from.
pub fn sources(build: &HostBuild) -> std::collections::HashSet<PathBuf> {
    let mut files = std::collections::HashSet::new();
    for unit in &build.workspace_units {
        if let Some(dep_info) = unit.invocation.dep_info_path() {
            files.extend(crate::depinfo::read(&dep_info, &unit.invocation.cwd).unwrap_or_default());
        }
    }
    files
}

/// Why the build script of `unit`'s package would run again for these changed files, if it
/// would: it declared no `rerun-if-changed` (cargo then runs it again on any change of its
/// package), or one of the files is among those it declared.
fn build_script_reruns(unit: &WorkspaceUnit, changed: &[PathBuf]) -> Option<String> {
    let out_dir = unit.invocation.env.get("OUT_DIR")?;
    let output = Path::new(out_dir).parent()?.join("output");
    let package_dir = unit.invocation.env.get("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| unit.invocation.cwd.clone());
    let Ok(text) = std::fs::read_to_string(&output) else {
        return Some(format!("the output of `{}`'s build script cannot be read", unit.package));
    };
    let mut declared = false;
    let mut watched = Vec::new();
    for line in text.lines() {
        let directive = line.strip_prefix("cargo::").or_else(|| line.strip_prefix("cargo:")).unwrap_or("");
        if let Some(path) = directive.strip_prefix("rerun-if-changed=") {
            declared = true;
            watched.push(crate::depinfo::normalize(&package_dir.join(path)));
        } else if directive.starts_with("rerun-if-env-changed=") {
            declared = true;
        }
    }
    if !declared {
        return Some(format!("`{}`'s build script runs again on any change of its package", unit.package));
    }
    changed
        .iter()
        .find(|file| watched.iter().any(|w| file.starts_with(w)))
        .map(|file| format!("`{}`'s build script runs again when {} changes", unit.package, file.display()))
}

/// For each unit, the units it names with `--extern`.
fn dependencies(units: &[WorkspaceUnit]) -> Vec<BTreeSet<usize>> {
    let stems: Vec<Option<String>> = units.iter().map(|u| u.invocation.unit_key().map(|key| format!("lib{key}"))).collect();
    units
        .iter()
        .map(|unit| {
            externs(&unit.invocation.args)
                .iter()
                .filter_map(|path| {
                    let stem = path.file_stem()?.to_string_lossy().into_owned();
                    stems.iter().position(|s| s.as_deref() == Some(stem.as_str()))
                })
                .collect()
        })
        .collect()
}

/// The paths of `--extern name=path` arguments.
fn externs(args: &[String]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let value = if arg == "--extern" { iter.next().map(String::as_str) } else { arg.strip_prefix("--extern=") };
        if let Some((_, path)) = value.and_then(|v| v.split_once('=')) {
            found.push(PathBuf::from(path));
        }
    }
    found
}

/// `chosen` ordered so that every unit comes after the units it depends on.
fn topological(chosen: &BTreeSet<usize>, depends_on: &[BTreeSet<usize>]) -> Vec<usize> {
    fn visit(unit: usize, chosen: &BTreeSet<usize>, depends_on: &[BTreeSet<usize>], done: &mut Vec<usize>) {
        if done.contains(&unit) {
            return;
        }
        for &dependency in &depends_on[unit] {
            if chosen.contains(&dependency) {
                visit(dependency, chosen, depends_on, done);
            }
        }
        done.push(unit);
    }
    let mut order = Vec::new();
    for &unit in chosen {
        visit(unit, chosen, depends_on, &mut order);
    }
    order
}

/// Where a rebuild works, and what it reports to.
pub struct Workplace<'a> {
    pub capture_dir: &'a Path,
    /// Where the host's dependencies are linked apart (None: linked whole).
    pub deps_dir: Option<&'a Path>,
    /// The copy of cargo-hot that links the host.
    pub tool: &'a Path,
    pub events: &'a Events,
    /// Where the hot crates' warm-ups start as soon as each is compiled (see `warmup::Early`).
    pub early: Option<&'a crate::warmup::Early>,
}

/// Compiles the crates of `replay` and links the host, as `build` was built but for them.
pub fn run(build: &HostBuild, replay: &Replay, context: &Workplace) -> Result<Replayed> {
    let started = Instant::now();
    let units = &build.workspace_units;
    let host = units.last().expect("planned with the host's command");
    let key = host.invocation.unit_key().context("the host's command has no crate name")?;
    let deps_dir = host.invocation.out_dir().context("the host's command has no --out-dir")?;
    // cargo's lock on its build directory: a `cargo build` started meanwhile waits for this
    // rebuild, as for another cargo.
    let _lock = lock_build_directory(&deps_dir)?;
    // The libraries compiled already are final: their warm-ups can start.
    let library_ready = |unit: &WorkspaceUnit| {
        if let (Some(early), false, Some(rlib)) = (context.early, unit.binary, unit.invocation.rlib_path()) {
            early.library_built(&unit.package, &rlib);
        }
    };
    units.iter().enumerate().filter(|(i, _)| !replay.order.contains(i)).for_each(|(_, unit)| library_ready(unit));
    let mut diagnostics = String::new();
    let total = replay.order.len();
    for (done, &index) in replay.order.iter().enumerate() {
        let unit = &units[index];
        context.events.emit(Event::BuildProgress { done, total, unit: Some(unit.package.clone()) });
        let invocation = &unit.invocation;
        let mut command = if unit.binary {
            let mut command = invocation.command_with(&[]);
            crate::capture::link_through(&mut command, invocation.args.clone(), context.tool, context.capture_dir, &key)?;
            command.env(crate::capture::CAPTURE_DIR_ENV, context.capture_dir);
            match context.deps_dir {
                Some(deps) => command.env(crate::deps_library::DEPS_DIR_ENV, deps),
                None => command.env_remove(crate::deps_library::DEPS_DIR_ENV),
            };
            command
        } else {
            invocation.command()
        };
        context.events.emit(Event::Command { command: format!("{} (`{}`, without cargo)", invocation.rustc.display(), unit.package) });
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).process_group(0);
        let mut child = command.spawn().with_context(|| format!("cannot run {}", invocation.rustc.display()))?;
        let _registered = crate::signals::register_build(child.id());
        let stderr = child.stderr.take().expect("piped");
        let mut errors = false;
        let mut link_failed = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Some(diagnostic) = crate::patch::rustc_diagnostic(&line, &invocation.cwd, invocation.crate_name()) else { continue };
            if diagnostic.level == "error" {
                errors = true;
                link_failed |= diagnostic.message.starts_with("linking with") || diagnostic.message.contains("linker");
                diagnostics.push_str(&crate::ui::strip_ansi(&diagnostic.rendered));
            }
            context.events.emit(Event::Diagnostic(Box::new(diagnostic)));
        }
        let status = child.wait()?;
        if !status.success() {
            if crate::signals::stopping() {
                return Ok(Replayed::Failed { diagnostics });
            }
            if link_failed || !errors {
                return Ok(Replayed::NeedsCargo(format!("compiling `{}` without cargo failed ({status})", unit.package)));
            }
            return Ok(Replayed::Failed { diagnostics });
        }
        library_ready(unit);
    }
    let compiled = host.invocation.executable_path().context("the host's command has no --out-dir")?;
    let record = crate::capture::link_record_path(context.capture_dir, &key);
    let link = if replay.compiles_host(build) {
        std::fs::read_to_string(&record)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .filter(|link: &LinkRecord| link.output.as_deref() == Some(compiled.as_path()))
            .ok_or_else(|| anyhow::anyhow!("the host was linked, but its link was not recorded in {}", record.display()))?
    } else {
        // Its code is as it was: the libraries compiled again are linked with it anew.
        context.events.emit(Event::BuildProgress { done: total, total: total + 1, unit: Some(host.package.clone()) });
        let objects = crate::capture::host_objects_dir(context.capture_dir, &key);
        let link = match crate::linker::relink(&build.link, &objects, &compiled) {
            Ok(link) => link,
            Err(err) => return Ok(Replayed::NeedsCargo(format!("{err:#}"))),
        };
        let _ = std::fs::write(&record, serde_json::to_string_pretty(&link)?);
        link
    };
    // Where cargo puts the binary for its users (`target/debug/<bin>`, a link to the one it
    // compiled): the program is started from there, and so is the user's own run of it.
    if build.executable != compiled {
        uplift(&compiled, &build.executable).with_context(|| format!("cannot update {}", build.executable.display()))?;
    }
    // The bar ends full, as after cargo's builds.
    let steps = if replay.compiles_host(build) { total } else { total + 1 };
    context.events.emit(Event::BuildProgress { done: steps, total: steps, unit: None });
    let mut rebuilt = build.clone();
    rebuilt.without_cargo = true;
    rebuilt.link = link;
    rebuilt.duration = started.elapsed();
    Ok(Replayed::Built(Box::new(rebuilt)))
}

/// Makes `to` the same file as `from`, as cargo does for the artifacts it lifts out of `deps`.
fn uplift(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(to) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    std::fs::hard_link(from, to).or_else(|_| std::fs::copy(from, to).map(|_| ()))
}

/// Takes cargo's lock on the build directory that holds `deps` (`target/debug/.cargo-lock`).
fn lock_build_directory(deps: &Path) -> Result<std::fs::File> {
    let dir = deps.parent().unwrap_or(deps);
    let path = dir.join(".cargo-lock");
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::RustcInvocation;
    use std::collections::BTreeMap;

    fn unit(package: &str, key: &str, externs: &[&str], binary: bool) -> WorkspaceUnit {
        let (name, extra) = key.split_once('-').unwrap();
        let mut args: Vec<String> =
            ["--crate-name", name, "-C", &format!("extra-filename=-{extra}"), "--out-dir", "/t/debug/deps"].iter().map(|s| s.to_string()).collect();
        for dependency in externs {
            let crate_name = dependency.split('-').next().unwrap();
            args.extend(["--extern".to_string(), format!("{crate_name}=/t/debug/deps/lib{dependency}.rmeta")]);
        }
        args.extend(["--extern".to_string(), "serde=/t/debug/deps/libserde-9.rmeta".to_string()]);
        WorkspaceUnit { package: package.into(), invocation: RustcInvocation { rustc: "rustc".into(), args, cwd: "/ws".into(), env: BTreeMap::new() }, binary }
    }

    #[test]
    fn dependents_follow_the_crates_they_depend_on() {
        // server → web → domain → store; server → store.
        let units = vec![
            unit("web", "web-1", &["domain-2", "store-3"], false),
            unit("domain", "domain-2", &["store-3"], false),
            unit("store", "store-3", &[], false),
            unit("tools", "tools-4", &[], false),
            unit("server", "server-5", &["web-1", "store-3"], true),
        ];
        let depends_on = dependencies(&units);
        assert_eq!(depends_on[0], BTreeSet::from([1, 2]));
        assert_eq!(depends_on[4], BTreeSet::from([0, 2]), "serde is not a workspace crate");
        let all: BTreeSet<usize> = [0, 1, 2, 4].into();
        let order = topological(&all, &depends_on);
        assert_eq!(order, vec![2, 1, 0, 4]);
    }

    #[test]
    fn a_build_script_without_rerun_directives_runs_again_on_any_change() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("build/pkg-1/out");
        std::fs::create_dir_all(&out).unwrap();
        let mut unit = unit("pkg", "pkg-1", &[], false);
        unit.invocation.env.insert("OUT_DIR".into(), out.display().to_string());
        unit.invocation.env.insert("CARGO_MANIFEST_DIR".into(), "/ws/pkg".into());
        let changed = [PathBuf::from("/ws/pkg/src/lib.rs")];
        std::fs::write(dir.path().join("build/pkg-1/output"), "cargo:rustc-cfg=fast\n").unwrap();
        assert!(build_script_reruns(&unit, &changed).unwrap().contains("any change"));
        std::fs::write(dir.path().join("build/pkg-1/output"), "cargo:rerun-if-changed=build.rs\ncargo::rerun-if-changed=proto\n").unwrap();
        assert_eq!(build_script_reruns(&unit, &changed), None);
        assert!(build_script_reruns(&unit, &[PathBuf::from("/ws/pkg/proto/api.proto")]).unwrap().contains("api.proto"));
    }
}
