//! `cargo hot run`: the loop that builds, runs, watches, and for every burst of edits
//! decides between a patch and a restart, and says why.
//!
//! Invariants:
//! - a failed build or a rejected patch never stops the running program: the last good code
//!   keeps serving;
//! - a patch is sent only after the ABI gate approved it against the running host binary;
//! - edits that arrive while a build runs are queued and handled by the next burst.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hot::protocol::ReloadOutcome;

use crate::abi::{self, HostImage, LoadedDefinitions, SourceSnapshot, TypeDefinitions};
use crate::build::{self, BuildOutcome, HostBuild, UnitObjects};
use crate::classify::{self, DependencyTree};
use crate::cli::RunArgs;
use crate::ipc::IpcServer;
use crate::metadata::{self, Plan};
use crate::patch::{self, bind::Homes};
use crate::process::{self, Launch, RunningProgram};
use crate::ui;
use crate::watch::{FileWatcher, Wake};

/// How long the program may take to load a patch before cargo hot gives up and restarts it.
/// Includes the app's rebuilds (a router builder, jobs that take seconds to stop).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(args: RunArgs) -> Result<ExitCode> {
    if !cfg!(target_os = "linux") {
        ui::warn("hot patching is implemented for Linux (ELF) only; on this platform every edit restarts the program");
    }
    let plan = metadata::plan(&args.selection, &args.options)?;
    let mut session = Session::new(plan, args.options, args.program_args)?;
    session.run()
}

/// What is known about the current host binary.
struct Active {
    build: HostBuild,
    /// How patches of this build are linked.
    patch_linker: patch::PatchLinker,
    image: HostImage,
    tree: DependencyTree,
    /// Every version of the type definitions of each boundary loaded in the program (the
    /// host build's, then each applied patch's); None when an edit raced the build (then
    /// the next boundary edit restarts, to be safe).
    types: Vec<Option<LoadedDefinitions>>,
}

/// What failed last, so that the next change retries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// A full build failed: dependencies may have changed on disk, so no patch is safe
    /// until a build succeeds. Every change rebuilds.
    Build,
    /// The boundary with this index did not compile: any change in its package retries it
    /// (the fix may be a file no crate compiled yet, such as a missing module).
    Compile(usize),
}

struct Session {
    plan: Plan,
    /// The command line's settings, to plan again after a manifest changes.
    options: crate::cli::HotOptions,
    program_args: Vec<OsString>,
    wake: Receiver<Wake>,
    watcher: FileWatcher,
    ipc: IpcServer,
    active: Option<Active>,
    program: Option<RunningProgram>,
    patches: u64,
    /// Where the running program keeps the boundaries' statics (None until its first patch).
    homes: Option<Homes>,
    /// The default boundary last announced.
    announced_boundary: Option<String>,
    failure: Option<Failure>,
    /// Sockets cargo hot holds for the whole session (`listen`).
    listeners: crate::sockets::Listeners,
    /// The copy of cargo-hot that cargo runs as wrapper and linker (see `tool`).
    tool: PathBuf,
    /// When the change being handled arrived, for "ready N ms after the edit", and what it was.
    change_started: Instant,
    trigger: &'static str,
    /// A started program that has not yet begun accepting connections.
    awaiting_ready: Option<AwaitingReady>,
    /// restart-on-crash: when to start the crashed program again, and the current backoff.
    scheduled_start: Option<Instant>,
    crash_backoff: Duration,
}

struct AwaitingReady {
    build: Duration,
    spawned: Instant,
}

/// How long a program may take to accept connections before cargo hot stops watching for it.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// After a drain, time for the old program to read the requests of connections it had
/// just accepted, so that its graceful shutdown waits for them instead of closing them.
const DRAIN_GRACE: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Session {
    fn new(plan: Plan, options: crate::cli::HotOptions, program_args: Vec<OsString>) -> Result<Self> {
        let session_dir = plan.session_dir();
        std::fs::create_dir_all(&session_dir).with_context(|| format!("cannot create {}", session_dir.display()))?;
        remove_dead_sessions(&session_dir.join("patches"));
        // Bound before anything is built: a port in use is reported at once.
        let listeners = crate::sockets::Listeners::bind(&plan.config.listen)?;
        let tool = crate::tool::stable_copy(&plan.tool_dir())?;
        let ipc = IpcServer::bind(&private_socket_path()?)?;
        let (sender, wake) = mpsc::channel();
        let signals = sender.clone();
        let mut roots = vec![plan.workspace_root.clone()];
        roots.extend(plan.local_package_dirs.iter().cloned());
        roots.sort();
        roots.dedup_by(|inner, outer| inner.starts_with(outer));
        let mut watcher = FileWatcher::new(&roots, std::slice::from_ref(&plan.target_dir), sender)?;
        // What the user asked to watch is watched even where .gitignore says otherwise.
        for root in plan.config.watch.iter().map(|rule| rule.watch_root()).filter(|dir| dir.is_dir()) {
            watcher.add_named_tree(&root)?;
        }
        let mut handler = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
            .context("cannot install signal handlers")?;
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            for signal in handler.forever() {
                if signals.send(Wake::Signal(signal)).is_err() {
                    break;
                }
            }
        })?;
        Ok(Session {
            plan,
            options,
            program_args,
            wake,
            watcher,
            ipc,
            active: None,
            program: None,
            patches: 0,
            homes: None,
            announced_boundary: None,
            failure: None,
            listeners,
            tool,
            change_started: Instant::now(),
            trigger: "start of cargo hot",
            awaiting_ready: None,
            scheduled_start: None,
            // Doubled at the first crash: the first automatic start waits FIRST_BACKOFF.
            crash_backoff: FIRST_BACKOFF / 2,
        })
    }

    fn run(&mut self) -> Result<ExitCode> {
        let boundaries: Vec<&str> = self.plan.boundaries.iter().map(|b| b.package.as_str()).collect();
        if self.plan.boundaries.iter().any(|b| b.by_default) {
            ui::info(format!(
                "running `{}` (no boundary is configured: the hot crate is chosen after the build); watching {} directories",
                self.plan.host.bin,
                self.watcher.directory_count()
            ));
        } else {
            ui::info(format!(
                "running `{}` with hot boundary {}; watching {} directories",
                self.plan.host.bin,
                boundaries.iter().map(|b| format!("`{b}`")).collect::<Vec<_>>().join(", "),
                self.watcher.directory_count()
            ));
        }
        if !self.listeners.is_empty() {
            let addresses: Vec<String> = self.listeners.addresses().iter().map(|a| a.to_string()).collect();
            ui::info(format!("holding {} for the program (LISTEN_FDS): no connection is refused across restarts", addresses.join(", ")));
        }
        if let Err(err) = self.rebuild_and_restart(None) {
            self.report_error(err);
        }
        loop {
            // While waiting for readiness or a scheduled start, look often; otherwise idle.
            let tick = if self.awaiting_ready.is_some() || self.scheduled_start.is_some() {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(200)
            };
            match self.wake.recv_timeout(tick) {
                Ok(Wake::Signal(signal)) => return Ok(self.shutdown(signal)),
                Ok(Wake::WatchError(err)) => ui::warn(format!("file watcher: {err}")),
                Ok(Wake::Changed(paths)) => {
                    self.change_started = Instant::now();
                    self.trigger = "edit";
                    let mut paths = match crate::watch::collect_burst(&self.wake, paths, self.plan.config.debounce) {
                        Ok(paths) => paths,
                        Err(signal) => return Ok(self.shutdown(signal)),
                    };
                    let found = self.watcher.follow_new_directories(&paths);
                    paths.extend(found);
                    if let Err(err) = self.handle_changes(paths) {
                        self.report_error(err);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => anyhow::bail!("the file watcher stopped"),
            }
            // Every turn, not only when idle: a busy workspace must not hide a crash.
            self.check_program();
            self.check_ready();
            if let Err(err) = self.run_scheduled_start() {
                self.report_error(err);
            }
        }
    }

    fn handle_changes(&mut self, paths: Vec<PathBuf>) -> Result<()> {
        let excluded = std::slice::from_ref(&self.plan.target_dir);
        let relevant: Vec<&PathBuf> = paths.iter().filter(|p| !crate::watch::is_excluded(p, excluded)).collect();
        let Some(active) = self.active.as_ref().filter(|_| self.failure != Some(Failure::Build)) else {
            // No good build to patch: any change that is not build output is worth a build.
            // Name a file that is still there (an editor's temporary file is gone by now).
            if let Some(path) = relevant.iter().find(|p| p.is_file()).or(relevant.first()) {
                ui::info(format!("{} changed → build", self.display(path)));
                if paths.iter().any(|p| classify::is_manifest(p)) {
                    self.replan()?;
                }
                self.rebuild_and_restart(None)?;
            }
            return Ok(());
        };
        let mut plan = classify::plan_burst(&active.tree, &paths);
        if let (classify::Plan::Nothing { .. }, Some(Failure::Compile(index))) = (&plan, self.failure) {
            let package_dir = &self.plan.boundaries[index].manifest_dir;
            let retry: Vec<PathBuf> = relevant.iter().filter(|p| p.starts_with(package_dir)).map(|p| (*p).clone()).collect();
            if !retry.is_empty() {
                plan = classify::Plan::Patch { boundaries: vec![index], paths: retry };
            }
        }
        match plan {
            classify::Plan::Restart { path, reason } => {
                ui::info(format!("{} changed → restart ({reason})", self.display(&path)));
                if paths.iter().any(|p| classify::is_manifest(p)) {
                    self.replan()?;
                }
                self.rebuild_and_restart(Some(reason))?;
            }
            classify::Plan::Patch { boundaries, paths } => {
                let names: Vec<String> = paths.iter().take(3).map(|p| self.display(p)).collect();
                ui::info(format!("{} changed → patch", names.join(", ")));
                for index in boundaries {
                    if !self.patch(index)? {
                        break;
                    }
                }
            }
            classify::Plan::Nothing { ignored } => {
                // Editors' temporary files come and go; report only what still exists.
                for (path, reason) in ignored.iter().filter(|(p, _)| p.is_file()).take(3) {
                    ui::info(format!("{} changed → ignored ({reason})", self.display(path)));
                }
            }
        }
        Ok(())
    }

    /// A manifest changed: boundaries, their dependencies and the rules may have too.
    /// (Sockets are bound once per session: a new `listen` needs a new cargo hot.)
    fn replan(&mut self) -> Result<()> {
        let plan = metadata::plan(&self.plan.selection, &self.options)?;
        if plan.config.listen != self.plan.config.listen {
            ui::warn("`listen` changed: restart cargo hot to bind the new addresses");
        }
        self.plan = plan;
        Ok(())
    }

    /// Says which crate was chosen as the boundary when none is configured (once, and again if
    /// the choice changes).
    fn announce_default_boundary(&mut self) {
        let [boundary] = self.plan.boundaries.as_slice() else { return };
        if !boundary.by_default || self.announced_boundary.as_deref() == Some(boundary.package.as_str()) {
            return;
        }
        let why = match boundary.kind {
            crate::metadata::BoundaryKind::Binary => "the binary's own crate".to_string(),
            crate::metadata::BoundaryKind::Library if boundary.package == self.plan.host.package => "the package's library".to_string(),
            crate::metadata::BoundaryKind::Library => format!("the one crate of `{}` with #[hot::export] functions", self.plan.host.bin),
        };
        ui::info(format!("hot boundary `{}` ({why}; set `boundary` under [package.metadata.hot] to choose another)", boundary.package));
        self.announced_boundary = Some(boundary.package.clone());
    }

    /// An error that ends this attempt but not the session: the program keeps running.
    fn report_error(&self, err: anyhow::Error) {
        let still = if self.program.is_some() { "the program keeps running" } else { "nothing is running" };
        ui::error(format!("{err:#}\n      {still}; cargo hot tries again on the next change"));
    }

    /// Recompiles boundary `index` and patches it in. Returns false when it fell back to a
    /// restart or stopped on a compile error (later boundaries of the burst are then moot).
    fn patch(&mut self, index: usize) -> Result<bool> {
        let started = Instant::now();
        let active = self.active.as_mut().expect("patch needs a build");
        let unit = active.build.boundaries[index].clone();
        let name = unit.boundary.package.clone();

        if matches!(unit.objects, UnitObjects::Binary { .. }) && unit.invocation.codegen_option("split-debuginfo") == Some("packed") {
            // rustc would package the debug info of an executable the patch never links.
            return self
                .fall_back("a patch of the binary cannot be built with `split-debuginfo = \"packed\"` (use \"unpacked\" or \"off\" in the dev profile)")
                .map(|_| false);
        }
        // The boundary's type definitions are read while rustc compiles the same files.
        let files = active.tree.boundary_files(index);
        let patch_dir = self.plan.session_dir().join("patches").join(std::process::id().to_string());
        let binary_objects = patch_dir.join("binary-objects");
        let tool = self.tool.clone();
        let (compiled, parsed) = std::thread::scope(|scope| {
            let types = scope.spawn(|| TypeDefinitions::of_files(&files));
            let compiled = patch::compile(&unit, &tool, &binary_objects);
            (compiled, types.join().expect("parsing type definitions does not panic"))
        });
        let compiled = compiled?;
        ui::diagnostics(&compiled.diagnostics);
        if !compiled.success {
            self.failure = Some(Failure::Compile(index));
            ui::error(format!(
                "`{name}` does not compile; the program keeps running the last good code. Fix the error and save again"
            ));
            return Ok(false);
        }
        let new_files = crate::depinfo::read(&unit.dep_info, &unit.invocation.cwd).unwrap_or_else(|_| files.clone());
        let parsed = if sorted(&new_files) == sorted(&files) {
            parsed
        } else {
            // A module was added or removed: read the crate's files as rustc just listed them.
            TypeDefinitions::of_files(&new_files)
        };
        let current = match parsed {
            Ok((definitions, snapshot)) if snapshot.unchanged() => definitions,
            Ok(_) => {
                // rustc and the type check may have seen different contents; the edit that
                // raced is queued, and its own burst will patch it.
                self.failure = Some(Failure::Compile(index));
                ui::info(format!("`{name}` changed while compiling; waiting for that change"));
                return Ok(false);
            }
            Err(err) => return self.fall_back(&format!("cannot read the type definitions of `{name}`: {err:#}")).map(|_| false),
        };
        let active = self.active.as_mut().expect("patch needs a build");
        active.tree.update_boundary(index, new_files);
        active.tree.declined.extend(current.declining_files().iter().cloned());

        // No type definition that the running program has loaded may change.
        let type_change = match &active.types[index] {
            Some(loaded) => loaded.first_difference(&current),
            None => Some("the boundary changed while the program was being built".to_string()),
        };
        if let Some(reason) = type_change {
            return self.fall_back(&format!("{reason} in `{name}`")).map(|_| false);
        }
        self.failure = None;

        let Some(pid) = self.program.as_ref().map(RunningProgram::pid) else {
            return self.fall_back("the program is not running").map(|_| false);
        };
        // Where the running program keeps the boundary's statics: the patch uses those copies.
        if let Err(err) = self.find_homes(pid) {
            return self.fall_back(&format!("{err:#}")).map(|_| false);
        }
        self.homes.as_mut().expect("found above").declare(current.declared_statics().clone());
        let objects = match patch::ObjectSource::of(&unit, &binary_objects).read() {
            Ok(objects) => objects,
            Err(err) => return self.fall_back(&format!("{err:#}")).map(|_| false),
        };
        // A patch of the binary brings in only what the exports reach: an edit to code that
        // ran once at start-up (`main`) takes effect by a restart.
        let mut also_run_at_start_up = Vec::new();
        if let UnitObjects::Binary { .. } = &unit.objects {
            let started_with = patch::ObjectSource::Dir(self.running_objects_dir()).read();
            match started_with.and_then(|old| patch::reach::changes(&old, &objects)) {
                Ok(changes) if changes.start_up_only.is_empty() => also_run_at_start_up = changes.also_run_at_start_up,
                Ok(changes) => return self.fall_back(&describe_start_up(&changes.start_up_only)).map(|_| false),
                Err(err) => return self.fall_back(&format!("cannot compare the new code with the running program's: {err:#}")).map(|_| false),
            }
        }
        let homes = self.homes.as_ref().expect("found above");
        self.patches += 1;
        let active = self.active.as_ref().expect("patch needs a build");
        let patch_path = patch_dir.join(format!("{}-{}.so", unit.boundary.crate_name, self.patches));
        std::fs::create_dir_all(&patch_dir)?;
        let linked = match patch::link(objects, &active.patch_linker, &patch_dir.join("objects"), &patch_path, homes) {
            Ok(Ok(linked)) => linked,
            Ok(Err(unbindable)) => return self.fall_back(&unbindable.0).map(|_| false),
            Err(err) => return self.fall_back(&format!("{err:#}")).map(|_| false),
        };
        let checked = Instant::now();
        let approved = match abi::check_file(&active.image, &unit.boundary.crate_name, &patch_path) {
            Ok(Ok(approved)) => approved,
            Ok(Err(rejection)) => return self.fall_back(&rejection.0).map(|_| false),
            Err(err) => return self.fall_back(&format!("cannot check the patch: {err:#}")).map(|_| false),
        };
        let check_time = checked.elapsed();

        match self.ipc.reload(pid, &patch_path, &approved.exports, RELOAD_TIMEOUT) {
            Ok(ReloadOutcome::Ok { load_micros, switched, base, rebuilt }) => {
                if let Some(Some(loaded)) = self.active.as_mut().map(|a| &mut a.types[index]) {
                    loaded.absorb(current);
                }
                // Statics this patch introduced keep their values in later patches too (if the
                // program said where it loaded the patch).
                match crate::abi::elf::read_statics(&patch_path, std::slice::from_ref(&unit.boundary.crate_name), "") {
                    Ok((introduced, _)) if base != 0 => {
                        if let Some(homes) = self.homes.as_mut() {
                            homes.add_patch(&introduced, base);
                        }
                    }
                    Ok(_) => {}
                    Err(err) => ui::warn(format!("cannot read the statics of {}: {err:#}", patch_path.display())),
                }
                let kept = describe_bound(linked.bound);
                let rebuilt_summary = describe_rebuilt(&rebuilt);
                ui::success(format!(
                    "patched `{name}` in {} (compile {}, link {}, check {}, load {}) · {switched} export{} switched{kept}{rebuilt_summary} · pid {pid} kept",
                    ui::ms(started.elapsed()),
                    ui::ms(compiled.duration),
                    ui::ms(linked.duration),
                    ui::ms(check_time),
                    ui::ms(Duration::from_micros(load_micros)),
                    if switched == 1 { "" } else { "s" },
                ));
                if let Some(first) = also_run_at_start_up.first() {
                    let more = if also_run_at_start_up.len() > 1 { format!(" (and {} more)", also_run_at_start_up.len() - 1) } else { String::new() };
                    ui::warn(format!(
                        "`{first}`{more} changed and runs new from now on, but start-up already ran its old version; restart cargo hot if that matters"
                    ));
                }
                for item in &rebuilt {
                    if let Some(error) = &item.error {
                        ui::warn(format!(
                            "the {} created at {} was not rebuilt: {error}. The previous one keeps running; the next patch tries again",
                            item.kind, item.name
                        ));
                    }
                    if let Some(warning) = &item.warning {
                        ui::warn(format!("the {} created at {}: {warning}", item.kind, item.name));
                    }
                }
                Ok(true)
            }
            Ok(ReloadOutcome::Error { message }) => {
                self.fall_back(&format!("the program could not load the patch: {message}")).map(|_| false)
            }
            Err(err) => self.fall_back(&format!("{err:#}")).map(|_| false),
        }
    }

    /// The homes of the boundaries' statics in the running program `pid`, from what its
    /// runtime said when it connected; computed once per program.
    fn find_homes(&mut self, pid: u32) -> Result<()> {
        if self.homes.is_none() {
            let info = self.ipc.program_info(pid, Duration::from_secs(3))?;
            let image = &self.active.as_ref().expect("patch needs a build").image;
            self.homes = Some(Homes::of_program(&image.statics, image.anchor, info.anchor, info.tls_offset));
        }
        Ok(())
    }

    fn fall_back(&mut self, reason: &str) -> Result<()> {
        ui::warn(format!("cannot patch: {reason} → restart"));
        self.rebuild_and_restart(Some(reason.to_string()))
    }

    /// Full build, then stop the old program and start the new one. A failed build keeps
    /// the old program running.
    fn rebuild_and_restart(&mut self, reason: Option<String>) -> Result<()> {
        ui::info(format!("building `{}`…", self.plan.host.bin));
        let tool = self.tool.clone();
        crate::tool::keep_alive(&tool);
        // What the boundaries' sources were when cargo started: if they differ afterwards,
        // the built program may hold other type definitions than the files now say.
        // Of every local package: with nothing configured, the build settles which is the boundary.
        let before: std::collections::HashMap<PathBuf, SourceSnapshot> = self
            .plan
            .local_package_dirs
            .iter()
            .chain(self.plan.boundaries.iter().map(|b| &b.manifest_dir))
            .map(|dir| (dir.clone(), SourceSnapshot::of_dir(dir, &self.plan.target_dir)))
            .collect();
        self.failure = Some(Failure::Build);
        let build = match build::build_host_settling_boundary(&mut self.plan, &tool)? {
            BuildOutcome::Built(build) => {
                self.announce_default_boundary();
                *build
            }
            BuildOutcome::Failed => {
                let still = if self.program.is_some() {
                    "the program keeps running the last good build"
                } else {
                    "nothing is running"
                };
                ui::error(format!("the build failed; {still}. Fix the error and save again"));
                return Ok(());
            }
        };
        let crates: Vec<String> = build.boundaries.iter().map(|unit| unit.boundary.crate_name.clone()).collect();
        let image = HostImage::read(&build.executable, &crates)?;
        let tree = DependencyTree::load(&build, &self.plan)?;
        let types = build
            .boundaries
            .iter()
            .enumerate()
            .map(|(index, unit)| {
                let dir = &unit.boundary.manifest_dir;
                let after = SourceSnapshot::of_dir(dir, &self.plan.target_dir);
                if before.get(dir) != Some(&after) {
                    return None;
                }
                TypeDefinitions::of_files(&tree.boundary_files(index)).ok().map(|(definitions, _)| definitions)
            })
            .collect::<Vec<_>>();
        let mut tree = tree;
        tree.declined.extend(types.iter().flatten().flat_map(|d| d.declining_files().iter().cloned()));
        // v0-mangled names carry no hash of a static's type: its imports are checked instead.
        let v0_mangling = image.statics.iter().any(|s| s.name.starts_with("_R"));
        let types: Vec<Option<LoadedDefinitions>> =
            types.into_iter().map(|d| d.map(|d| LoadedDefinitions::new(d).with_static_imports(v0_mangling))).collect();
        self.failure = None;
        for unit in &build.boundaries {
            if !unit.invocation.debug_assertions() {
                ui::warn(format!(
                    "`{}` is built without debug_assertions (profile `{}`), where #[hot::export] emits plain functions: every edit restarts",
                    unit.boundary.package,
                    self.plan.selection.profile_name()
                ));
            } else if !build::unit_has_exports(unit).unwrap_or(true) {
                let what = match unit.boundary.kind {
                    crate::metadata::BoundaryKind::Binary => format!("the binary `{}`", self.plan.host.bin),
                    crate::metadata::BoundaryKind::Library => format!("`{}`", unit.boundary.package),
                };
                ui::warn(format!(
                    "{what} has no #[hot::export] functions: every edit restarts. Put #[hot::export] on the functions the server calls \
                     (see `cargo hot init`), or name the crate that has them with --boundary"
                ));
            }
        }
        let build_time = build.duration;
        let root = &self.plan.workspace_root;
        let compiled_dirs: std::collections::BTreeSet<PathBuf> =
            tree.all.iter().filter(|f| f.starts_with(root)).filter_map(|f| f.parent().map(PathBuf::from)).collect();
        self.watcher.add_directories(compiled_dirs);
        let rustc = build.boundaries.first().map(|unit| unit.invocation.rustc.clone()).unwrap_or_else(|| "rustc".into());
        let patch_linker = patch::PatchLinker::find(&build.link, &rustc);
        // Read before anything is replaced or stopped: a broken env-file keeps the old program
        // running, with the description of the build it runs (its statics' addresses).
        let env = self.program_environment(&build)?;
        self.active = Some(Active { build, patch_linker, image, tree, types });
        let restarting = self.program.is_some();
        let mut stopping = None;
        if let Some(mut old) = self.program.take() {
            let pid = old.pid();
            let mut drained = false;
            if !self.listeners.is_empty() {
                // Stop the old program accepting first: a connection it accepted just before
                // SIGTERM but had not read yet would be reset by a graceful shutdown.
                if let Ok(descriptors) = self.ipc.drain(pid, Duration::from_secs(1)) {
                    if descriptors > 0 {
                        std::thread::sleep(DRAIN_GRACE);
                        drained = true;
                    }
                }
            }
            self.ipc.disconnect();
            if drained {
                // It accepts nothing more: the new program can take the queue while the old
                // one finishes its requests (a long-lived stream must not hold everyone up).
                old.terminate();
                stopping = Some(old);
            } else {
                let status = old.stop(self.plan.config.shutdown_timeout)?;
                report_forced_stop(pid, status, self.plan.config.shutdown_timeout);
            }
        }
        self.start_program_with(env)?;
        if let Some(old) = stopping {
            let pid = old.pid();
            let status = old.finish(self.plan.config.shutdown_timeout)?;
            report_forced_stop(pid, status, self.plan.config.shutdown_timeout);
        }
        self.awaiting_ready = Some(AwaitingReady { build: build_time, spawned: Instant::now() });
        let pid = self.program.as_ref().map(|p| p.pid()).unwrap_or_default();
        match (restarting, reason) {
            (true, Some(reason)) => ui::success(format!("restarted (pid {pid}, build {}) because {reason}", ui::ms(build_time))),
            (true, None) => ui::success(format!("restarted (pid {pid}, build {})", ui::ms(build_time))),
            (false, _) => ui::success(format!("started pid {pid} (build {})", ui::ms(build_time))),
        }
        Ok(())
    }

    fn start_program(&mut self) -> Result<()> {
        let env = self.program_environment(&self.active.as_ref().expect("a build exists").build)?;
        self.start_program_with(env)
    }

    /// What `cargo run` would give the program of `build`, then the env-file (see
    /// `environment`).
    fn program_environment(&self, build: &HostBuild) -> Result<Vec<(OsString, OsString)>> {
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        crate::environment::program_environment(&self.plan, build, &cwd)
    }

    /// The objects the running program was linked from, when the binary is a boundary: kept
    /// per program, since another build (`cargo hot explain`, a build that then failed to
    /// start) may link the host again meanwhile.
    fn running_objects_dir(&self) -> PathBuf {
        self.plan.session_dir().join("running-objects")
    }

    fn keep_running_objects(&self) -> Result<()> {
        let active = self.active.as_ref().expect("a build exists");
        let Some(baseline) = active.build.boundaries.iter().find_map(|unit| match &unit.objects {
            UnitObjects::Binary { baseline } => Some(baseline),
            UnitObjects::Rlib(_) => None,
        }) else {
            return Ok(());
        };
        let kept = self.running_objects_dir();
        let _ = std::fs::remove_dir_all(&kept);
        std::fs::create_dir_all(&kept).with_context(|| format!("cannot create {}", kept.display()))?;
        for entry in std::fs::read_dir(baseline).with_context(|| format!("cannot read {}", baseline.display()))? {
            let from = entry?.path();
            let to = kept.join(from.file_name().unwrap_or_default());
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).with_context(|| format!("cannot copy {}", from.display()))?;
            }
        }
        Ok(())
    }

    fn start_program_with(&mut self, env: Vec<(OsString, OsString)>) -> Result<()> {
        self.keep_running_objects()?;
        let active = self.active.as_ref().expect("a build exists");
        let mut env = env;
        env.push((hot::IPC_ENV.into(), self.ipc.path().into()));
        let launch = Launch {
            executable: active.build.executable.clone(),
            args: self.program_args.clone(),
            env,
            sockets: self.listeners.raw_fds(),
            socket_names: self.listeners.names(),
            trampoline: self.tool.clone(),
        };
        self.program = Some(RunningProgram::spawn(&launch)?);
        self.homes = None;
        Ok(())
    }

    /// Reports a program that exited on its own, with its last lines of output. The next
    /// change builds and starts it again; with restart-on-crash it is started again by itself
    /// after a backoff that grows while it keeps crashing (a crash loop never spins).
    fn check_program(&mut self) {
        let Some(program) = &mut self.program else { return };
        let Some(status) = program.try_exit() else { return };
        let pid = program.pid();
        let ran = program.started.elapsed();
        // Give the output threads a moment to pass on the last lines.
        std::thread::sleep(Duration::from_millis(20));
        let lines = program.last_lines();
        // Whatever the program started (workers, a shell's children) goes with it.
        crate::sys::signal_group(pid, libc::SIGKILL);
        self.program = None;
        self.awaiting_ready = None;
        self.ipc.disconnect();
        let mut report = format!("the program (pid {pid}) {} after {}", process::describe_exit(status), ui::ms(ran));
        if !lines.is_empty() {
            report.push_str("; its last output:");
            for line in &lines {
                report.push_str(&format!("\n      | {line}"));
            }
        }
        ui::error(report);
        if self.plan.config.restart_on_crash && self.active.is_some() {
            self.crash_backoff = if ran < Duration::from_secs(10) {
                (self.crash_backoff * 2).min(MAX_BACKOFF)
            } else {
                FIRST_BACKOFF
            };
            ui::info(format!("restart-on-crash: starting it again in {}", ui::ms(self.crash_backoff)));
            self.scheduled_start = Some(Instant::now() + self.crash_backoff);
        } else {
            ui::info("cargo hot keeps watching and builds and starts the program on the next change");
            // With nothing to patch, the next edit of any kind rebuilds and starts.
            self.active = None;
        }
    }

    fn run_scheduled_start(&mut self) -> Result<()> {
        let Some(at) = self.scheduled_start else { return Ok(()) };
        if Instant::now() < at {
            return Ok(());
        }
        self.scheduled_start = None;
        if self.program.is_some() || self.active.is_none() {
            return Ok(());
        }
        self.change_started = Instant::now();
        self.trigger = "scheduled start";
        self.start_program()?;
        self.awaiting_ready = Some(AwaitingReady { build: Duration::ZERO, spawned: Instant::now() });
        ui::success(format!("started pid {} again (restart-on-crash)", self.program.as_ref().map(|p| p.pid()).unwrap_or_default()));
        Ok(())
    }

    /// Restart time counts to the program's first accept, not to its spawn.
    fn check_ready(&mut self) {
        let (Some(waiting), Some(program)) = (&self.awaiting_ready, &self.program) else { return };
        if let Some(address) = crate::sockets::accepting(program.pid()) {
            ui::success(format!(
                "pid {} accepting on {address}: ready {} after the {} (build {}, start to first accept {})",
                program.pid(),
                ui::ms(self.change_started.elapsed()),
                self.trigger,
                ui::ms(waiting.build),
                ui::ms(waiting.spawned.elapsed()),
            ));
            self.awaiting_ready = None;
        } else if waiting.spawned.elapsed() > READY_TIMEOUT {
            self.awaiting_ready = None;
        }
    }

    fn shutdown(&mut self, signal: i32) -> ExitCode {
        if let Some(program) = self.program.take() {
            ui::info(format!("stopping pid {}", program.pid()));
            let _ = program.stop(self.plan.config.shutdown_timeout);
        }
        ExitCode::from((128 + signal).clamp(0, 255) as u8)
    }

    fn display(&self, path: &std::path::Path) -> String {
        path.strip_prefix(&self.plan.workspace_root).unwrap_or(path).display().to_string()
    }
}

/// Why an edit of the binary restarts: it changed code only start-up runs.
fn describe_start_up(changed: &[String]) -> String {
    let more = if changed.len() > 1 { format!(" (and {} more)", changed.len() - 1) } else { String::new() };
    format!(
        "the edit changes `{}`{more}, which only start-up code runs (no #[hot::export] function reaches it), so a patch would not run it again",
        changed[0]
    )
}

/// ` · 2 statics and 1 thread-local kept` (empty when none were bound).
fn describe_bound(bound: patch::bind::Bound) -> String {
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    match (bound.statics, bound.thread_locals) {
        (0, 0) => String::new(),
        (s, 0) => format!(" · {} kept", count(s, "static reference")),
        (0, t) => format!(" · {} kept", count(t, "thread-local reference")),
        (s, t) => format!(" · {} and {} kept", count(s, "static reference"), count(t, "thread-local reference")),
    }
}

/// ` · rebuilt router (src/main.rs:31), scope (src/main.rs:24)`, the ones that succeeded.
fn describe_rebuilt(rebuilt: &[hot::protocol::Rebuilt]) -> String {
    let done: Vec<String> = rebuilt
        .iter()
        .filter(|r| r.error.is_none() && r.kind != "hook")
        .map(|r| format!("{} ({})", r.kind, r.name))
        .collect();
    if done.is_empty() {
        String::new()
    } else {
        format!(" · rebuilt {}", done.join(", "))
    }
}

fn sorted(files: &[PathBuf]) -> Vec<&PathBuf> {
    let mut sorted: Vec<&PathBuf> = files.iter().collect();
    sorted.sort();
    sorted
}

fn report_forced_stop(pid: u32, status: std::process::ExitStatus, timeout: Duration) {
    if status.code().is_none() && status.signal_is_kill() {
        ui::warn(format!("pid {pid} did not stop within {} of SIGTERM and was killed", ui::ms(timeout)));
    }
}

/// A socket path in a directory only this user can enter (and short enough for the
/// 108-byte limit of Unix socket paths, which deep target directories can exceed).
fn private_socket_path() -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("cargo-hot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new().mode(0o700).create(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir.join("ipc.sock"))
}

/// Patches are kept while their session runs (a running program may execute their code);
/// those of sessions that have ended are removed.
fn remove_dead_sessions(patches: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(patches) else { return };
    for entry in entries.flatten() {
        let alive = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()).is_some_and(crate::sys::process_exists);
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

trait ExitStatusKill {
    fn signal_is_kill(&self) -> bool;
}

impl ExitStatusKill for std::process::ExitStatus {
    fn signal_is_kill(&self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        self.signal() == Some(libc::SIGKILL)
    }
}
