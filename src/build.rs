//! The full build of the host: the developer's own `cargo build`, with cargo-hot as the
//! workspace rustc wrapper (to capture the boundary's exact compiler command) and as the
//! host's linker (to make the binary patchable). Cargo's JSON messages say where every
//! artifact is and feed the event stream: progress (units done, the unit being compiled),
//! each diagnostic as cargo renders it, cargo's own messages.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cargo_metadata::Message;

use crate::capture::{self, RustcInvocation};
use crate::events::{ms, Diagnostic, Event, Events};
use crate::linker::LinkRecord;
use crate::metadata::{Boundary, BoundaryKind, Plan};
use std::os::unix::process::CommandExt;

/// A boundary as compiled into the current host binary.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BoundaryUnit {
    pub boundary: Boundary,
    /// The exact rustc command cargo used; replaying it compiles a patch.
    pub invocation: RustcInvocation,
    pub objects: UnitObjects,
    pub dep_info: PathBuf,
}

/// Where a boundary's compiled code (rustc's codegen units) is found.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum UnitObjects {
    /// A library: the members of the rlib its command writes.
    Rlib(PathBuf),
    /// The host binary: a replay leaves them where the patch asks (see `linker`); `baseline`
    /// holds those the running program was linked from.
    Binary { baseline: PathBuf },
}

/// A library of a local (path) package in the host's build, with its dep-info.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LocalUnit {
    pub package: String,
    pub dep_info: PathBuf,
    pub manifest_dir: PathBuf,
    /// The library's rlib (None for the host binary's own unit).
    pub rlib: Option<PathBuf>,
}

/// A crate of the workspace as the host was last built with it: the package and the rustc
/// command that compiled it, whose `--out-dir` says where its outputs are (cargo's directory,
/// or cargo hot's after a rebuild without cargo: see `rebuild`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WorkspaceUnit {
    pub package: String,
    pub invocation: RustcInvocation,
    /// The host binary's own crate (the others are libraries).
    pub binary: bool,
}

/// Everything a successful host build produced.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HostBuild {
    pub executable: PathBuf,
    /// cargo's dep-info next to the executable: every source file of every crate linked.
    pub host_dep_info: PathBuf,
    pub boundaries: Vec<BoundaryUnit>,
    pub local_units: Vec<LocalUnit>,
    pub link: LinkRecord,
    pub duration: Duration,
    /// What the host package's build script told cargo to give its programs
    /// (`cargo:rustc-env`), and the library directories every build script linked from.
    pub build_script_env: Vec<(String, String)>,
    pub build_script_library_dirs: Vec<PathBuf>,
    /// How many units cargo reported (fresh ones included): the next build's progress total.
    pub units: usize,
    /// Every workspace crate linked into the host whose command cargo hot captured, the
    /// binary's last (what a rebuild without cargo replays).
    pub workspace_units: Vec<WorkspaceUnit>,
    /// Built by replaying those commands rather than by cargo (see `rebuild`).
    pub without_cargo: bool,
}

pub enum BuildOutcome {
    Built(Box<HostBuild>),
    /// Cargo failed; its diagnostics were emitted as events, and their text (without
    /// colours) is here too, to recognise a file they name.
    Failed {
        diagnostics: String,
    },
}

/// How the host is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildMode {
    /// Through cargo hot's wrapper and linker: a binary that can be patched.
    Hot,
    /// A plain `cargo build` (restart-only mode): nothing is captured, nothing can be patched.
    Plain,
}

pub fn capture_dir(plan: &Plan) -> PathBuf {
    plan.session_dir().join("capture")
}

/// Where the host's dependencies are linked apart (see `deps_library`); None when
/// `CARGO_HOT_SPLIT_LINK=0` asks for the host linked whole.
pub fn deps_library_dir(plan: &Plan) -> Option<PathBuf> {
    let off = std::env::var("CARGO_HOT_SPLIT_LINK").is_ok_and(|v| matches!(v.as_str(), "0" | "false" | "no" | "off"));
    (!off).then(|| plan.session_dir().join("deps"))
}

/// Builds the host, settling the default boundary. With nothing configured it is the first of
/// these that has `#[hot::export]` functions: the host package's library, the binary's own
/// crate, the one local library of the host that has them. Several such libraries: the
/// default stays, and the warning names them. `plan` says what was chosen from then on.
/// The build is announced and timed in events (`build-started`, progress, `build-finished`).
///
/// `replay`: the last build and the crates to compile again without cargo (see `rebuild`);
/// cargo builds if that cannot (the plan is as the last build settled it). `early`: where the
/// hot crates' warm-ups start as soon as each is compiled (see `warmup::Early`).
pub fn build_host_settling_boundary(
    plan: &mut Plan,
    tool: &Path,
    events: &Events,
    mode: BuildMode,
    replay: Option<(HostBuild, crate::rebuild::Replay)>,
    early: Option<&crate::warmup::Early>,
) -> Result<BuildOutcome> {
    let started = Instant::now();
    let replayed_crates = replay.as_ref().map(|(build, replay)| replay.order.iter().map(|i| build.workspace_units[*i].package.clone()).collect());
    for reason in replay.iter().flat_map(|(_, replay)| &replay.reasons) {
        events.emit(Event::Detail { message: reason.clone() });
    }
    events.emit(Event::BuildStarted { target: plan.host.bin.clone(), without_cargo: replayed_crates.unwrap_or_default() });
    let replayed = match replay {
        Some((last, replay)) => {
            let capture = capture_dir(plan);
            let deps = deps_library_dir(plan);
            let context = crate::rebuild::Workplace { capture_dir: &capture, deps_dir: deps.as_deref(), tool, events, early };
            match crate::rebuild::run(&last, &replay, &context) {
                Ok(crate::rebuild::Replayed::Built(build)) => Some(Ok(BuildOutcome::Built(build))),
                Ok(crate::rebuild::Replayed::Failed { diagnostics }) => Some(Ok(BuildOutcome::Failed { diagnostics })),
                Ok(crate::rebuild::Replayed::NeedsCargo(why)) => {
                    events.emit(Event::Detail { message: format!("building with cargo: the rebuild without it gave way ({why})") });
                    None
                }
                Err(err) => {
                    events.emit(Event::Detail { message: format!("building with cargo: the rebuild without it gave way ({err:#})") });
                    None
                }
            }
        }
        None => None,
    };
    let outcome = match (replayed, mode) {
        (Some(outcome), _) => outcome,
        (None, BuildMode::Hot) => settle_boundary(plan, tool, events, early),
        (None, BuildMode::Plain) => build_host_with(plan, tool, events, BuildMode::Plain, None),
    };
    let ok = matches!(outcome, Ok(BuildOutcome::Built(_)));
    if let Ok(BuildOutcome::Built(build)) = &outcome {
        plan.expected_units = build.units;
    }
    if !crate::signals::stopping() {
        events.emit(Event::BuildFinished { ok, duration_ms: ms(started.elapsed()) });
    }
    outcome
}

fn settle_boundary(plan: &mut Plan, tool: &Path, events: &Events, early: Option<&crate::warmup::Early>) -> Result<BuildOutcome> {
    let outcome = build_host_with(plan, tool, events, BuildMode::Hot, early)?;
    let BuildOutcome::Built(build) = &outcome else { return Ok(outcome) };
    let Some(index) = plan.host_package_default() else { return Ok(outcome) };
    let Some(unit) = build.boundaries.iter().find(|u| u.boundary.package == plan.boundaries[index].package) else { return Ok(outcome) };
    if unit_has_exports(unit)? {
        return Ok(outcome);
    }
    let boundary = &plan.boundaries[index];
    let others_have_exports = || -> Result<bool> {
        for other in build.boundaries.iter().filter(|u| u.boundary.package != boundary.package) {
            if unit_has_exports(other)? {
                return Ok(true);
            }
        }
        Ok(false)
    };
    if boundary.kind == BoundaryKind::Library {
        let binary = crate::capture::host_objects_dir(&capture_dir(plan), &link_key(build));
        if objects_have_exports(&crate::patch::ObjectSource::Dir(binary))? {
            plan.prefer_binary_boundary();
            return build_host_with(plan, tool, events, BuildMode::Hot, early); // cargo has nothing to do: only the plan's units change
        }
    } else if others_have_exports()? {
        // `main.rs` without exports, beside hot libraries: its edits restart, as those of a
        // crate outside the boundaries do (no build needed: only the plan changes).
        plan.drop_binary_boundary();
        let BuildOutcome::Built(mut build) = outcome else { unreachable!("matched above") };
        if let Some(position) = build.boundaries.iter().position(|u| u.boundary.kind == BoundaryKind::Binary) {
            let unit = build.boundaries.remove(position);
            build.local_units.push(LocalUnit {
                package: plan.host.bin.clone(),
                dep_info: unit.dep_info,
                manifest_dir: unit.invocation.cwd.clone(),
                rlib: None,
            });
        }
        return Ok(BuildOutcome::Built(build));
    }
    Ok(outcome)
}

/// Whether a boundary's compiled code defines export entries. Decided from its own objects:
/// a package's library and binary share a crate name, so export names cannot tell them apart.
pub fn unit_has_exports(unit: &BoundaryUnit) -> Result<bool> {
    objects_have(&unit_objects(unit), false)
}

/// Whether a patch of a boundary can take effect without a restart: its code defines export
/// entries, or instantiates a build the runtime runs again after each patch
/// (`hot::axum::router` in a router generic over its database).
pub fn unit_is_reachable_by_patches(unit: &BoundaryUnit) -> Result<bool> {
    objects_have(&unit_objects(unit), true)
}

fn unit_objects(unit: &BoundaryUnit) -> crate::patch::ObjectSource {
    match &unit.objects {
        UnitObjects::Rlib(rlib) => crate::patch::ObjectSource::Rlib(rlib.clone()),
        UnitObjects::Binary { baseline } => crate::patch::ObjectSource::Dir(baseline.clone()),
    }
}

fn objects_have_exports(source: &crate::patch::ObjectSource) -> Result<bool> {
    objects_have(source, false)
}

/// Whether `source` defines export entries, or (`or_rebuilds`) instantiates the runtime's
/// rebuilds (local symbols: `hot::axum::router::<{closure}>`).
fn objects_have(source: &crate::patch::ObjectSource, or_rebuilds: bool) -> Result<bool> {
    use object::{Object, ObjectSymbol};
    if let crate::patch::ObjectSource::Rlib(rlib) = source {
        // An rlib's archive symbol index lists what its members define (their global symbols).
        let data = crate::sys::map_file(rlib)?;
        let archive = object::read::archive::ArchiveFile::parse(&*data)?;
        if let Ok(Some(mut symbols)) = archive.symbols() {
            let found = symbols.any(|s| s.is_ok_and(|s| s.name().starts_with(crate::abi::elf::ENTRY_PREFIX.as_bytes())));
            if found || !or_rebuilds {
                return Ok(found);
            }
        }
    }
    let wanted = |name: &str| {
        name.starts_with(crate::abi::elf::ENTRY_PREFIX) || (or_rebuilds && name.contains("3hot") && crate::patch::reach::rebuilt_by_the_runtime(name))
    };
    Ok(source.read()?.iter().any(|o| {
        object::File::parse(&*o.data).is_ok_and(|file| file.symbols().any(|s| s.is_definition() && s.name().is_ok_and(wanted)))
    }))
}

/// The key of the host binary's unit, from the name of the file its link wrote.
fn link_key(build: &HostBuild) -> String {
    build.link.output.as_deref().and_then(|o| o.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Builds the host. If cargo considered a unit fresh whose capture we do not have (the
/// target dir was built by another tool), its outputs are removed and the build runs once more.
///
/// `tool` is the cargo-hot executable that cargo runs as the rustc wrapper and linker.
pub fn build_host(plan: &Plan, tool: &Path, events: &Events) -> Result<BuildOutcome> {
    build_host_with(plan, tool, events, BuildMode::Hot, None)
}

fn build_host_with(plan: &Plan, tool: &Path, events: &Events, mode: BuildMode, early: Option<&crate::warmup::Early>) -> Result<BuildOutcome> {
    let started = Instant::now();
    for attempt in 0..2 {
        let artifacts = match run_cargo(plan, tool, events, mode, early)? {
            Ok(artifacts) => artifacts,
            Err(diagnostics) => return Ok(BuildOutcome::Failed { diagnostics }),
        };
        if mode == BuildMode::Plain {
            return Ok(BuildOutcome::Built(Box::new(plain_build(artifacts, started))));
        }
        match assemble(plan, artifacts, started)? {
            Assembled::Ready(build) => return Ok(BuildOutcome::Built(build)),
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
    units: usize,
    build_script_env: Vec<(String, String)>,
    build_script_library_dirs: Vec<PathBuf>,
    /// (package name, manifest dir, rlib path) of every local library.
    local_libs: Vec<(String, PathBuf, PathBuf)>,
}

/// Runs cargo; `Ok(Err(diagnostics))` when it fails.
fn run_cargo(plan: &Plan, tool: &Path, events: &Events, mode: BuildMode, early: Option<&crate::warmup::Early>) -> Result<Result<Artifacts, String>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    // Colours always: the renderers strip them where they do not belong.
    command.arg("build").arg("--message-format=json-diagnostic-rendered-ansi").arg("--color=always");
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
    events.emit(Event::Command { command: describe_command(&command) });
    if mode == BuildMode::Hot {
        let user_wrapper = std::env::var_os("RUSTC_WORKSPACE_WRAPPER").unwrap_or_default();
        command
            .env("RUSTC_WORKSPACE_WRAPPER", tool)
            .env(capture::INNER_WRAPPER_ENV, user_wrapper)
            .env(capture::CAPTURE_DIR_ENV, capture_dir(plan))
            .env(capture::HOST_ENV, format!("{}:{}", plan.host.package, plan.host.bin))
            .env(capture::BOUNDARIES_ENV, plan.boundaries.iter().map(|b| b.package.as_str()).collect::<Vec<_>>().join(","));
        if let Some(dir) = deps_library_dir(plan) {
            command.env(crate::deps_library::DEPS_DIR_ENV, dir);
        }
    }
    // Its own process group, registered for stopping: Ctrl-C stops it at once (see `signals`).
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child = command.spawn().context("cannot run cargo")?;
    let _registered = crate::signals::register_build(child.id());
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let progress = Progress::new(plan.expected_units, events.clone());
    let status_reader = {
        let progress = progress.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                progress.cargo_line(line);
            }
        })
    };
    let mut executable = None;
    let mut local_libs = Vec::new();
    let mut diagnostics = String::new();
    let (mut build_script_env, mut build_script_library_dirs) = (Vec::new(), Vec::new());
    for message in Message::parse_stream(BufReader::new(stdout)) {
        let artifact = match message.context("cannot read cargo's output")? {
            Message::CompilerArtifact(artifact) => artifact,
            Message::CompilerMessage(message) => {
                diagnostics.push_str(&crate::ui::strip_ansi(message.message.rendered.as_deref().unwrap_or(&message.message.message)));
                events.emit(Event::Diagnostic(Box::new(diagnostic(&message.message, &plan.workspace_root, Some(&message.target.name)))));
                continue;
            }
            Message::BuildScriptExecuted(script) => {
                progress.unit_done(None);
                // Every build script's library directories (a -sys crate's `.so`), the host
                // package's own variables.
                build_script_library_dirs
                    .extend(script.linked_paths.iter().map(|p| PathBuf::from(p.as_str().split_once('=').map_or(p.as_str(), |(_, path)| path))));
                if package_name(&script.package_id.repr, "") == plan.host.package {
                    build_script_env = script.env;
                }
                continue;
            }
            _ => continue,
        };
        progress.unit_done(None);
        let package_id = &artifact.package_id.repr;
        let is_local = package_id.starts_with("path+") || !package_id.contains('+');
        if artifact.target.is_bin() && artifact.target.name == plan.host.bin {
            executable = artifact.executable.map(|p| p.into_std_path_buf());
        } else if is_local && (artifact.target.is_lib() || artifact.target.is_rlib()) {
            if let Some(rlib) = artifact.filenames.iter().find(|f| f.as_str().ends_with(".rlib")) {
                let manifest_dir = artifact.manifest_path.parent().map(|p| p.as_std_path().to_path_buf()).unwrap_or_default();
                let package = package_name(package_id, &artifact.target.name);
                if let Some(early) = early {
                    early.library_built(&package, rlib.as_std_path());
                }
                local_libs.push((package, manifest_dir, rlib.clone().into_std_path_buf()));
            }
        }
    }
    let status = child.wait()?;
    let _ = status_reader.join();
    if !status.success() {
        return Ok(Err(diagnostics));
    }
    let executable = executable.ok_or_else(|| anyhow!("cargo built no binary named `{}`", plan.host.bin))?;
    progress.finish();
    let units = progress.done.load(Ordering::SeqCst);
    Ok(Ok(Artifacts { executable, units, build_script_env, build_script_library_dirs, local_libs }))
}

/// `cargo build --message-format=... -p server --bin server`, for `-v`.
fn describe_command(command: &Command) -> String {
    let mut words = vec![Path::new(command.get_program()).file_name().unwrap_or(command.get_program()).to_string_lossy().into_owned()];
    words.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Build progress from cargo's messages: units finished (artifacts and build-script runs,
/// fresh ones included, from standard output) and the unit being compiled (cargo's status
/// lines, from standard error). At most one event per [`PROGRESS_INTERVAL`] (a build of 400
/// units would otherwise send 800), and a last one at the end whose total is what was done:
/// the estimate came from the previous build, and a bar must end full.
#[derive(Clone)]
struct Progress {
    done: Arc<AtomicUsize>,
    /// The estimate of the units in this build (the last build's count, or the metadata's).
    total: usize,
    events: Events,
    /// When the last event was sent.
    last: Arc<std::sync::Mutex<Option<Instant>>>,
}

/// The least time between two progress events.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

impl Progress {
    fn new(total: usize, events: Events) -> Self {
        Progress { done: Arc::new(AtomicUsize::new(0)), total, events, last: Default::default() }
    }

    fn unit_done(&self, unit: Option<String>) {
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        self.report(done, unit);
    }

    fn report(&self, done: usize, unit: Option<String>) {
        let mut last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_some_and(|at| at.elapsed() < PROGRESS_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        self.events.emit(Event::BuildProgress { done, total: self.total.max(done), unit });
    }

    /// The build succeeded: the bar ends full.
    fn finish(&self) {
        let done = self.done.load(Ordering::SeqCst);
        self.events.emit(Event::BuildProgress { done, total: done, unit: None });
    }

    fn cargo_line(&self, line: String) {
        let plain = crate::ui::strip_ansi(&line);
        let status = cargo_status(&plain);
        if let Some(("Compiling", rest)) = status {
            let done = self.done.load(Ordering::SeqCst);
            let unit = rest.split_whitespace().next().map(str::to_string);
            self.report(done, unit);
        }
        self.events.emit(Event::CargoOutput { text: line, status: status.is_some() });
    }
}

/// `   Compiling serde v1.0.0` → ("Compiling", "serde v1.0.0"): cargo's right-aligned status
/// lines (one capitalised word, then what it is about).
fn cargo_status(line: &str) -> Option<(&str, &str)> {
    let trimmed = line.trim_start();
    let (word, rest) = trimmed.split_once(' ')?;
    let status = line.len() - trimmed.len() + word.len() == 12 && word.chars().next()?.is_ascii_uppercase() && word.chars().all(|c| c.is_ascii_alphabetic());
    status.then_some((word, rest))
}

/// A compiler diagnostic as an event: its rendered text (as cargo shows it) and where it
/// points (its primary span, relative paths resolved from `cwd`, where rustc ran).
pub fn diagnostic(message: &cargo_metadata::diagnostic::Diagnostic, cwd: &Path, crate_name: Option<&str>) -> Diagnostic {
    use cargo_metadata::diagnostic::DiagnosticLevel;
    let primary = message.spans.iter().find(|s| s.is_primary);
    let level = match message.level {
        DiagnosticLevel::Error | DiagnosticLevel::Ice => "error",
        DiagnosticLevel::Warning => "warning",
        DiagnosticLevel::FailureNote => "failure-note",
        DiagnosticLevel::Note => "note",
        DiagnosticLevel::Help => "help",
        _ => "other",
    };
    Diagnostic {
        level: level.to_string(),
        message: message.message.clone(),
        crate_name: crate_name.map(str::to_string),
        file: primary.map(|s| crate::depinfo::normalize(&cwd.join(&s.file_name))),
        line: primary.map(|s| s.line_start),
        column: primary.map(|s| s.column_start),
        rendered: message.rendered.clone().unwrap_or_else(|| format!("{level}: {}\n", message.message)),
    }
}

/// A plain build (restart-only mode): the executable and what the dependency tree needs.
fn plain_build(artifacts: Artifacts, started: Instant) -> HostBuild {
    let local_units = artifacts
        .local_libs
        .into_iter()
        .filter_map(|(package, manifest_dir, rlib)| {
            let dep_info = rlib.with_file_name(format!("{}.d", unit_key(&rlib)?));
            Some(LocalUnit { package, dep_info, manifest_dir, rlib: Some(rlib) })
        })
        .collect();
    HostBuild {
        host_dep_info: artifacts.executable.with_extension("d"),
        executable: artifacts.executable,
        boundaries: Vec::new(),
        local_units,
        link: LinkRecord::default(),
        duration: started.elapsed(),
        build_script_env: artifacts.build_script_env,
        build_script_library_dirs: artifacts.build_script_library_dirs,
        units: artifacts.units,
        workspace_units: Vec::new(),
        without_cargo: false,
    }
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
    Ready(Box<HostBuild>),
    /// Outputs to delete so that cargo rebuilds them through cargo hot.
    Stale(Vec<PathBuf>),
}

fn assemble(plan: &Plan, artifacts: Artifacts, started: Instant) -> Result<Assembled> {
    let capture = capture_dir(plan);
    let mut stale = Vec::new();
    let link = find_link_record(&capture, &artifacts.executable);
    let relink = |stale: &mut Vec<PathBuf>| {
        stale.push(artifacts.executable.clone());
        stale.extend(deps_copies(&artifacts.executable));
    };
    if link.is_none() {
        relink(&mut stale);
    }
    // The bin crate's own command (main.rs and its modules), keyed by the linked file's name.
    let host_key = link.as_ref().and_then(|l| l.output.as_deref()).and_then(|out| out.file_name()).map(|n| n.to_string_lossy().into_owned());
    let host_invocation = host_key.as_deref().and_then(|key| RustcInvocation::load(&RustcInvocation::record_path(&capture, key)).ok());

    let mut boundaries = Vec::new();
    for boundary in &plan.boundaries {
        if boundary.kind == BoundaryKind::Binary {
            let (Some(key), Some(invocation)) = (&host_key, &host_invocation) else {
                if link.is_some() {
                    relink(&mut stale);
                }
                continue;
            };
            let baseline = crate::capture::host_objects_dir(&capture, key);
            if !baseline.is_dir() {
                relink(&mut stale); // linked by a cargo hot that did not keep the objects
                continue;
            }
            let dep_info = invocation.dep_info_path().ok_or_else(|| anyhow!("the captured command of `{}` has no --out-dir", boundary.package))?;
            boundaries.push(BoundaryUnit { boundary: boundary.clone(), invocation: invocation.clone(), objects: UnitObjects::Binary { baseline }, dep_info });
            continue;
        }
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
        boundaries.push(BoundaryUnit { boundary: boundary.clone(), invocation, objects: UnitObjects::Rlib(rlib.clone()), dep_info });
    }
    if !stale.is_empty() {
        stale.dedup();
        return Ok(Assembled::Stale(stale));
    }

    // Every workspace library's command, as captured for this copy of the workspace.
    let mut workspace_units: Vec<WorkspaceUnit> = Vec::new();
    for (package, manifest_dir, rlib) in &artifacts.local_libs {
        let Some(key) = unit_key(rlib) else { continue };
        let Ok(invocation) = RustcInvocation::load(&RustcInvocation::record_path(&capture, key)) else { continue };
        if invocation.env.get("CARGO_MANIFEST_DIR").map(PathBuf::from).as_deref() == Some(manifest_dir.as_path()) {
            workspace_units.push(WorkspaceUnit { package: package.clone(), invocation, binary: false });
        }
    }
    if let Some(invocation) = &host_invocation {
        workspace_units.push(WorkspaceUnit { package: plan.host.package.clone(), invocation: invocation.clone(), binary: true });
    }
    let mut local_units: Vec<LocalUnit> = artifacts
        .local_libs
        .into_iter()
        .filter(|(package, _, _)| !plan.boundaries.iter().any(|b| b.package == *package && b.kind == BoundaryKind::Library))
        .filter_map(|(package, manifest_dir, rlib)| {
            let dep_info = rlib.with_file_name(format!("{}.d", unit_key(&rlib)?));
            Some(LocalUnit { package, dep_info, manifest_dir, rlib: Some(rlib) })
        })
        .collect();
    let host_dep_info = artifacts.executable.with_extension("d");
    let host_is_boundary = plan.boundaries.iter().any(|b| b.kind == BoundaryKind::Binary);
    if let (false, Some(invocation)) = (host_is_boundary, &host_invocation) {
        if let Some(dep_info) = invocation.dep_info_path() {
            local_units.push(LocalUnit { package: plan.host.bin.clone(), dep_info, manifest_dir: invocation.cwd.clone(), rlib: None });
        }
    }
    Ok(Assembled::Ready(Box::new(HostBuild {
        build_script_env: artifacts.build_script_env,
        build_script_library_dirs: artifacts.build_script_library_dirs,
        executable: artifacts.executable,
        host_dep_info,
        boundaries,
        local_units,
        link: link.expect("checked above"),
        duration: started.elapsed(),
        units: artifacts.units,
        workspace_units,
        without_cargo: false,
    })))
}

/// `libhandlers-0f1e.rlib` → `handlers-0f1e`: the unit's key, as its capture record and
/// dep-info are named.
fn unit_key(rlib: &Path) -> Option<&str> {
    rlib.file_name()?.to_str()?.strip_prefix("lib")?.strip_suffix(".rlib")
}

/// The record of the link that produced `executable`, if cargo hot's linker made it.
/// The record of the link that produced `executable`. Records of other profiles, features
/// and workspace copies pile up in the capture directory (each is tens of kilobytes of
/// arguments): they are read newest first, and the one just written is the first.
fn find_link_record(capture: &Path, executable: &Path) -> Option<LinkRecord> {
    let mut records: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(capture)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(crate::linker::LINK_RECORD_PREFIX))
        .map(|e| (e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), e.path()))
        .collect();
    records.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    records
        .into_iter()
        .filter_map(|(_, path)| serde_json::from_str::<LinkRecord>(&std::fs::read_to_string(path).ok()?).ok())
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
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && !n.contains('.')) && same_file(p, executable))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_status_lines_are_told_from_its_messages() {
        assert_eq!(cargo_status("   Compiling serde v1.0.0"), Some(("Compiling", "serde v1.0.0")));
        assert_eq!(cargo_status("    Finished `dev` profile [unoptimized + debuginfo] target(s) in 0.31s").map(|s| s.0), Some("Finished"));
        assert_eq!(cargo_status("error: could not compile `handlers` (lib) due to 1 previous error"), None);
        assert_eq!(cargo_status("warning: unused manifest key: package.metadata"), None);
    }

    #[test]
    fn progress_is_throttled_and_ends_full() {
        let (events, received) = Events::collecting();
        let progress = Progress::new(438, events);
        for _ in 0..341 {
            progress.unit_done(Some("serde".into()));
            progress.cargo_line("   Compiling serde v1.0.0".into());
        }
        progress.finish();
        let reported: Vec<(usize, usize)> = received
            .try_iter()
            .filter_map(|message| match message {
                crate::ui::Message::Event(Event::BuildProgress { done, total, .. }) => Some((done, total)),
                _ => None,
            })
            .collect();
        // 682 updates in far less than a second: a handful of events, not hundreds.
        assert!(reported.len() < 20, "{} progress events", reported.len());
        assert_eq!(reported.first(), Some(&(1, 438)), "the first update is sent at once");
        assert_eq!(reported.last(), Some(&(341, 341)), "the bar ends full, at what was done");
    }

    #[test]
    fn package_names_from_both_id_formats() {
        assert_eq!(package_name("path+file:///ws/crates/handlers#0.1.0", "handlers"), "handlers");
        assert_eq!(package_name("path+file:///ws/crates/h#my-handlers@0.1.0", "my_handlers"), "my-handlers");
    }
}
