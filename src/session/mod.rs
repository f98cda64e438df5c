//! `cargo hot run`: the loop that builds, runs, watches, and for every burst of edits decides
//! between a patch and a restart. It emits events (see `events`) and formats no text.
//!
//! Invariants:
//! - a failed build or a refused patch never stops the running program: the last good code
//!   keeps serving;
//! - a patch is sent only after the ABI gate approved it against the running host binary;
//! - edits that arrive while a build runs are queued and handled by the next burst;
//! - with no program running (it crashed) or no good build, only a change that could fix it
//!   builds: the files a program writes never start it again and again.

mod attempt;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::build::{self, BuildMode, BuildOutcome};
use crate::classify::{self, Action, Why};
use crate::cli::{HotOptions, RunArgs};
use crate::events::{BoundaryChoice, BuildCause, ChangeAction, Event, Events, RestartCause, RestartOnly, Trigger};
use crate::host::{HostState, SourcesBefore};
use crate::ipc::IpcServer;
use crate::metadata::{self, BoundaryKind, Plan};
use crate::patch::bind::Homes;
use crate::process::Launch;
use crate::rules::{self, Excluded};
use crate::supervisor::{Processes, Settings, StartRequest, Supervisor};
use crate::ui::{self, Ui};
use crate::wake::{Key, Wake};
use crate::watch::FileWatcher;
use attempt::{Attempt, PatchOutcome};

/// How many ignored files one burst reports at most (a `git checkout` of a docs tree).
const IGNORED_PER_BURST: usize = 10;

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let options = ui::Options::detect(args.output.format(), args.output.verbosity());
    let ui = Ui::start(options);
    let events = ui.events();
    let restart_only = if !cfg!(target_os = "linux") {
        Some(RestartOnly::Platform)
    } else if args.no_hot {
        Some(RestartOnly::Requested)
    } else {
        None
    };
    let (sender, wake) = mpsc::channel();
    let interactive = options.format == ui::Format::Human && options.bars;
    // Keys only on a terminal, in the terminal format; the guard restores the terminal.
    let keys = if interactive { crate::keys::start(sender.clone()) } else { None };
    let outcome =
        Session::new(args, restart_only, events.clone(), ui.output(), sender, wake, keys.is_some(), interactive).and_then(|mut session| session.run());
    let code = match outcome {
        Ok(code) => code,
        Err(err) => {
            events.emit(Event::Fatal { message: format!("{err:#}") });
            ExitCode::FAILURE
        }
    };
    ui.finish();
    drop(keys);
    Ok(code)
}

/// What the session knows about failures, to tell which change could fix them.
enum Broken {
    /// Everything is fine (or the program merely crashed: see the supervisor).
    No,
    /// The last full build failed; its diagnostics, to recognise a file they name.
    Build { diagnostics: String },
}

struct Session {
    plan: Plan,
    /// The command line's settings, to plan again after a manifest changes.
    options: HotOptions,
    program_args: Vec<OsString>,
    restart_only: Option<RestartOnly>,
    events: Events,
    wake: Receiver<Wake>,
    watcher: FileWatcher,
    supervisor: Supervisor,
    /// The last good build (kept when a later build fails: the program runs it).
    host: Option<HostState>,
    broken: Broken,
    /// Where the running program keeps the boundaries' statics (found at its first patch).
    homes: Option<(u32, Homes)>,
    patches: u64,
    /// A change since the last cargo build that only cargo builds (see `rebuild`).
    cargo_due: Option<PathBuf>,
    /// The default boundary last announced.
    announced_boundary: Option<String>,
    /// The copy of cargo-hot that cargo runs as wrapper and linker (see `tool`).
    tool: PathBuf,
    /// Ignored files already reported (each is reported once; again only with `-v`).
    reported: HashSet<PathBuf>,
    /// Contents of the restart files when the last build ran: a write that changes nothing
    /// (cargo rewriting Cargo.lock after `cargo add`, an editor's save without edits) is no
    /// change.
    restart_files: HashMap<PathBuf, u64>,
    excluded: Excluded,
    /// What led to the work under way, and when (for "ready N ms after the edit").
    trigger: (Trigger, Instant),
    /// The program gets a pseudo-terminal, and cargo hot's standard input is for keys.
    terminal: bool,
    keys: bool,
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    fn new(
        args: RunArgs,
        restart_only: Option<RestartOnly>,
        events: Events,
        output: ui::OutputSink,
        sender: mpsc::Sender<Wake>,
        wake: Receiver<Wake>,
        keys: bool,
        terminal: bool,
    ) -> Result<Self> {
        crate::signals::install(sender.clone())?;
        let plan = metadata::plan(&args.selection, &args.options, &events)?;
        let session_dir = plan.session_dir();
        std::fs::create_dir_all(&session_dir).with_context(|| format!("cannot create {}", session_dir.display()))?;
        crate::housekeeping::remove_dead_sessions(&session_dir.join("patches"));
        crate::housekeeping::remove_unused_caches(&session_dir);
        // Bound before anything is built: a port in use is reported at once.
        let listeners = crate::sockets::Listeners::bind(&plan.config.listen)?;
        let tool = crate::tool::stable_copy(&plan.tool_dir())?;
        let ipc_path = private_socket_path()?;
        let ipc = IpcServer::bind(&ipc_path)?;
        let excluded = Excluded::new(&plan.target_dir);
        let mut roots = vec![plan.workspace_root.clone()];
        roots.extend(plan.local_package_dirs.iter().cloned());
        roots.sort();
        roots.dedup_by(|inner, outer| inner.starts_with(outer));
        let mut watcher = FileWatcher::new(&roots, excluded.clone(), sender.clone())?;
        // What the user asked to watch is watched even where .gitignore says otherwise.
        for root in plan.config.watch.iter().map(|rule| rule.watch_root()).filter(|dir| dir.is_dir()) {
            watcher.add_named_tree(&root)?;
        }
        let settings = Settings { shutdown_timeout: plan.config.shutdown_timeout, restart_on_crash: plan.config.restart_on_crash };
        let mut supervisor = Supervisor::new(Processes { wake: sender, output }, ipc, listeners, settings, events.clone());
        if plan.config.hold_ports {
            let private_dir = ipc_path.parent().expect("the IPC socket is in a directory of its own");
            match crate::held_ports::HeldPorts::start(&plan.tool_dir(), private_dir, supervisor.listeners(), events.clone()) {
                Ok(held) => supervisor.hold_ports(held),
                Err(err) => events.warn(format!(
                    "restarts cannot hold the ports the program binds itself ({err:#}): connections are refused while it restarts, unless it takes its socket from `hot::listener` under --listen ADDR"
                )),
            }
        }
        Ok(Session {
            plan,
            options: args.options,
            program_args: args.program_args,
            restart_only,
            events,
            wake,
            watcher,
            supervisor,
            host: None,
            broken: Broken::No,
            homes: None,
            patches: 0,
            cargo_due: None,
            announced_boundary: None,
            tool,
            reported: HashSet::new(),
            restart_files: HashMap::new(),
            excluded,
            trigger: (Trigger::SessionStart, Instant::now()),
            terminal,
            keys,
        })
    }

    fn run(&mut self) -> Result<ExitCode> {
        let configured = !self.plan.boundaries.iter().any(|b| b.by_default) && self.restart_only.is_none();
        self.events.emit(Event::SessionStarted {
            workspace: self.plan.workspace_root.clone(),
            host: self.plan.host.bin.clone(),
            boundaries: if configured { self.plan.boundaries.iter().map(|b| b.package.clone()).collect() } else { Vec::new() },
            watched_directories: self.watcher.directory_count(),
            listen: self.supervisor.listeners().addresses().iter().map(|a| a.to_string()).collect(),
            restart_only: self.restart_only,
            keys: self.keys,
        });
        let started = self.rebuild_and_restart(RestartCause::Rebuilt);
        self.report(started);
        loop {
            let timeout = self.supervisor.due().map_or(Duration::from_secs(3600), |at| at.saturating_duration_since(Instant::now()));
            match self.wake.recv_timeout(timeout) {
                Ok(wake) => {
                    if let Some(code) = self.handle(wake) {
                        return Ok(code);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => anyhow::bail!("the file watcher stopped"),
            }
            self.trigger = (Trigger::ScheduledStart, Instant::now());
            let started = self.supervisor.start_again_if_due();
            self.report(started);
        }
    }

    /// Handles one wake-up; Some(exit code) when the session ends.
    fn handle(&mut self, wake: Wake) -> Option<ExitCode> {
        match wake {
            Wake::Signal(signal) => return Some(self.shutdown(Some(signal))),
            Wake::WatchError(err) => self.events.warn(format!("file watcher: {err}")),
            Wake::Changed(paths) => {
                self.trigger = (Trigger::Edit, Instant::now());
                let (mut paths, others) = crate::watch::collect_burst(&self.wake, paths, self.plan.config.debounce);
                let found = self.watcher.follow_new_directories(&paths);
                paths.extend(found);
                let handled = self.handle_changes(paths);
                self.report(handled);
                for other in others {
                    if let Some(code) = self.handle(other) {
                        return Some(code);
                    }
                }
            }
            Wake::Key(Key::Quit) => return Some(self.shutdown(None)),
            Wake::Key(Key::Clear) => self.events.emit(Event::Cleared),
            Wake::Key(Key::Restart) => {
                self.trigger = (Trigger::Key, Instant::now());
                let restarted = self.rebuild_and_restart(RestartCause::Requested);
                self.report(restarted);
            }
            Wake::Program(event) => self.supervisor.handle(event),
        }
        None
    }

    /// An error that ends this attempt but not the session.
    fn report<T>(&self, result: Result<T>) {
        if let Err(err) = result {
            self.events.emit(Event::Error { message: format!("{err:#}"), program_running: self.supervisor.pid().is_some() });
        }
    }

    fn handle_changes(&mut self, paths: Vec<PathBuf>) -> Result<()> {
        let paths: Vec<PathBuf> = paths
            .into_iter()
            .filter(|p| !self.excluded.contains(p) && !self.unchanged_restart_file(p) && !self.came_and_went(p))
            .collect();
        if paths.is_empty() {
            return Ok(());
        }
        let down = self.supervisor.pid().is_none();
        let cause = match (&self.host, &self.broken) {
            (None, _) | (_, Broken::Build { .. }) => Some(BuildCause::AfterFailedBuild),
            (Some(_), Broken::No) if down => Some(BuildCause::AfterCrash),
            _ => None,
        };
        if let Some(cause) = cause {
            // Nothing to patch: only a change that could fix the failure or the crash builds.
            let (fixing, ignored): (Vec<PathBuf>, Vec<PathBuf>) = paths.into_iter().partition(|p| self.could_fix(p, cause));
            if fixing.is_empty() {
                let ignored: Vec<(PathBuf, Why)> = ignored.into_iter().map(|p| (p.clone(), self.why_ignored(&p))).collect();
                self.report_ignored(ignored);
                return Ok(());
            }
            self.events.emit(Event::Change { paths: fixing.clone(), action: ChangeAction::Build { cause } });
            self.note_what_only_cargo_builds(&fixing);
            if fixing.iter().any(|p| rules::changes_the_plan(p)) {
                self.replan()?;
            }
            return self.rebuild_and_restart(RestartCause::Rebuilt);
        }
        let host = self.host.as_ref().expect("checked above");
        let mut plan = classify::plan_burst(&host.tree, &paths);
        if let classify::Plan::Nothing { .. } = &plan {
            if let Some(retry) = self.retry_after_compile_error(&paths) {
                plan = retry;
            }
        }
        match plan {
            classify::Plan::Restart { path, why } => {
                self.note_what_only_cargo_builds(&paths);
                let why = if self.restart_only.is_some() { restart_only_why(why) } else { why };
                self.events.emit(Event::Change { paths: vec![path.clone()], action: ChangeAction::Restart { path: path.clone(), why: why.clone() } });
                if paths.iter().any(|p| rules::changes_the_plan(p)) {
                    self.replan()?;
                }
                self.rebuild_and_restart(RestartCause::Change { path, why })
            }
            classify::Plan::Patch { boundaries, paths } => self.patch(boundaries, paths),
            classify::Plan::Nothing { ignored } => {
                self.report_ignored(ignored);
                Ok(())
            }
        }
    }

    /// Patches each boundary of the burst in build order, and acts on each outcome.
    fn patch(&mut self, boundaries: Vec<usize>, paths: Vec<PathBuf>) -> Result<()> {
        if self.restart_only.is_some() {
            let path = paths[0].clone();
            self.events.emit(Event::Change { paths, action: ChangeAction::Restart { path: path.clone(), why: Why::RestartOnly } });
            return self.rebuild_and_restart(RestartCause::RestartOnly { path });
        }
        let host = self.host.as_ref().expect("a build to patch");
        let names = boundaries.iter().map(|i| host.boundaries[*i].unit.boundary.package.clone()).collect();
        self.events.emit(Event::Change { paths, action: ChangeAction::Patch { boundaries: names } });
        for index in boundaries {
            self.patches += 1;
            let patch_dir = self.program_patches();
            let host = self.host.as_mut().expect("a build to patch");
            let boundary = host.boundaries[index].unit.boundary.package.clone();
            let outcome = Attempt {
                host,
                supervisor: &mut self.supervisor,
                homes: &mut self.homes,
                tool: &self.tool,
                patch_dir,
                number: self.patches,
                events: &self.events,
            }
            .run(index);
            if crate::signals::stopping() {
                return Ok(()); // Ctrl-C during the patch: no outcome to report or act on.
            }
            let state = &mut self.host.as_mut().expect("a build to patch").boundaries[index];
            match outcome {
                PatchOutcome::Applied(patched) => {
                    state.compile_failed = None;
                    self.events.emit(Event::Patched(patched));
                }
                PatchOutcome::CompileFailed { diagnostics } => {
                    state.compile_failed = Some(diagnostics);
                    self.events.emit(Event::CompileFailed { boundary });
                    return Ok(());
                }
                PatchOutcome::Raced => {
                    self.events.emit(Event::Raced { boundary });
                    return Ok(());
                }
                PatchOutcome::Refused(refusal) => {
                    state.compile_failed = None;
                    self.events.emit(Event::PatchRejected { boundary, refusal: refusal.clone() });
                    return self.rebuild_and_restart(RestartCause::Refused { refusal });
                }
            }
        }
        Ok(())
    }

    /// A boundary whose last patch did not compile is retried by a change that could fix
    /// it: one of its files, or a file its errors name (a module file created after `mod x;`).
    fn retry_after_compile_error(&self, paths: &[PathBuf]) -> Option<classify::Plan> {
        let host = self.host.as_ref()?;
        for (index, state) in host.boundaries.iter().enumerate() {
            let Some(diagnostics) = &state.compile_failed else { continue };
            let dir = &state.unit.boundary.manifest_dir;
            let retry: Vec<PathBuf> = paths.iter().filter(|p| p.starts_with(dir) && (is_rust_source(p) || named_in(p, diagnostics))).cloned().collect();
            if !retry.is_empty() {
                return Some(classify::Plan::Patch { boundaries: vec![index], paths: retry });
            }
        }
        None
    }

    /// Whether a change to `path` could fix a failed build or a crashed program. After a
    /// crash: a file some crate compiles, a manifest or configuration, a restart rule (a log
    /// the program writes would only start the same program again). After a failed build,
    /// also a Rust file of a local package or a file the errors name (a new module).
    fn could_fix(&self, path: &Path, cause: BuildCause) -> bool {
        let Some(host) = &self.host else { return true };
        if host.tree.classify(path).action != Action::Ignore {
            return true;
        }
        match (&self.broken, cause) {
            (Broken::Build { diagnostics }, BuildCause::AfterFailedBuild) => {
                let local = self.plan.local_package_dirs.iter().any(|dir| path.starts_with(dir));
                local && (is_rust_source(path) || named_in(path, diagnostics))
            }
            _ => false,
        }
    }

    fn why_ignored(&self, path: &Path) -> Why {
        match &self.host {
            Some(host) => host.tree.classify(path).why,
            None => Why::NoCrate { host: self.plan.host.bin.clone(), git_ignored: false },
        }
    }

    /// Reports ignored files that still exist (editors' temporary files come and go), each
    /// once (again only with `-v`).
    fn report_ignored(&mut self, ignored: Vec<(PathBuf, Why)>) {
        for (path, why) in ignored.into_iter().filter(|(p, _)| p.is_file()).take(IGNORED_PER_BURST) {
            let again = !self.reported.insert(path.clone());
            self.events.emit(Event::Ignored { path, why, again });
        }
    }

    /// A restart file whose content is what it was at the last build.
    /// A file that is gone, that no build read and that no rule names came and went within
    /// the burst: `sed -i`'s or an editor's temporary file, not a change to tell.
    fn came_and_went(&self, path: &Path) -> bool {
        !path.exists()
            && self.host.as_ref().is_some_and(|host| !host.tree.all.contains(path))
            && !self.plan.config.rules().any(|(_, rule)| rule.matches(path))
    }

    fn unchanged_restart_file(&self, path: &Path) -> bool {
        self.restart_files.get(path).is_some_and(|digest| content_digest(path) == Some(*digest))
    }

    /// Remembers the contents of the workspace's restart files after a build.
    fn remember_restart_files(&mut self) {
        let mut files = vec![self.plan.workspace_root.join("Cargo.lock"), self.plan.workspace_root.join("Cargo.toml")];
        files.extend(self.plan.local_package_dirs.iter().map(|dir| dir.join("Cargo.toml")));
        self.restart_files = files.into_iter().filter_map(|f| Some((f.clone(), content_digest(&f)?))).collect();
    }

    /// A manifest changed: boundaries, their dependencies and the rules may have too.
    /// (Sockets are bound once per session: a new `listen` needs a new cargo hot.)
    fn replan(&mut self) -> Result<()> {
        let plan = metadata::plan(&self.plan.selection, &self.options, &self.events)?;
        if plan.config.listen != self.plan.config.listen {
            self.events.warn("`listen` changed: restart cargo hot to bind the new addresses");
        }
        self.supervisor.set_settings(Settings { shutdown_timeout: plan.config.shutdown_timeout, restart_on_crash: plan.config.restart_on_crash });
        // What the manifests name now is watched from now on: a `watch` entry added during the
        // session (outside the workspace too), a local package added outside it.
        for root in plan.config.watch.iter().map(|rule| rule.watch_root()).filter(|dir| dir.is_dir()) {
            self.watcher.add_named_tree(&root)?;
        }
        for dir in plan.local_package_dirs.iter().filter(|dir| dir.is_dir()) {
            self.watcher.add_tree(dir)?;
        }
        self.plan = plan;
        Ok(())
    }

    /// Says which crate was chosen as the boundary when none is configured (once, and again
    /// if the choice changes).
    fn announce_default_boundary(&mut self) {
        if let [.., top] = self.plan.boundaries.as_slice() {
            let crates: Vec<String> = self.plan.boundaries.iter().map(|b| b.package.clone()).collect();
            let key = crates.join(",");
            if crates.len() > 1 && top.by_default && self.restart_only.is_none() && self.announced_boundary.as_deref() != Some(key.as_str()) {
                self.events.emit(Event::BoundaryChosen { boundary: top.package.clone(), choice: BoundaryChoice::Workspace { crates } });
                self.announced_boundary = Some(key);
                return;
            }
        }
        let [boundary] = self.plan.boundaries.as_slice() else { return };
        if !boundary.by_default || self.restart_only.is_some() || self.announced_boundary.as_deref() == Some(boundary.package.as_str()) {
            return;
        }
        let choice = match boundary.kind {
            BoundaryKind::Binary => BoundaryChoice::Binary,
            BoundaryKind::Library if boundary.package == self.plan.host.package => BoundaryChoice::PackageLibrary,
            BoundaryKind::Library => BoundaryChoice::OnlyLibraryWithExports { host: self.plan.host.bin.clone() },
        };
        self.events.emit(Event::BoundaryChosen { boundary: boundary.package.clone(), choice });
        self.announced_boundary = Some(boundary.package.clone());
    }

    /// Remembers a change among `paths` that a rebuild without cargo would not see (a manifest,
    /// a build script's input, a file of a package outside the workspace): the next build is
    /// cargo's.
    fn note_what_only_cargo_builds(&mut self, paths: &[PathBuf]) {
        let Some(host) = &self.host else { return };
        let cargo_only = paths.iter().find(|p| host.tree.classify(p).action != Action::Ignore && !host.workspace_sources.contains(*p));
        if let (None, Some(path)) = (&self.cargo_due, cargo_only) {
            self.cargo_due = Some(path.clone());
        }
    }

    /// What the next build can compile without cargo (see `rebuild`), if it can.
    fn replay(&self, cause: &RestartCause) -> Option<crate::rebuild::Replay> {
        let host = self.host.as_ref()?;
        let why = match (cause, &self.cargo_due) {
            _ if self.restart_only.is_some() => return None,
            (RestartCause::Requested, _) => "`r` asks cargo for a whole build".to_string(),
            (_, Some(path)) => format!("{} changed, which only cargo builds", path.display()),
            _ => match crate::rebuild::plan(&host.build, &host.sources_built, &host.changed_during_build, &host.cargo_outputs_patched) {
                Ok(replay) => return Some(replay),
                Err(why) => why,
            },
        };
        self.events.emit(Event::Detail { message: format!("building with cargo: {why}") });
        None
    }

    /// Full build, then the new program replaces the old one (see the supervisor). A failed
    /// build keeps the old program running.
    fn rebuild_and_restart(&mut self, cause: RestartCause) -> Result<()> {
        let tool = self.tool.clone();
        crate::tool::keep_alive(&tool);
        // A warm-up for the build being replaced would only slow this one down.
        if let Some(host) = self.host.as_mut() {
            host.stop_warm_ups();
        }
        // What the boundaries' sources were when cargo started: if they differ afterwards,
        // the built program may hold other type definitions than the files now say.
        let compiled: Vec<PathBuf> = self.host.as_ref().map(|h| h.tree.all.iter().cloned().collect()).unwrap_or_default();
        let before = SourcesBefore::take(&self.plan, &self.excluded, &compiled);
        let mode = if self.restart_only.is_some() { BuildMode::Plain } else { BuildMode::Hot };
        let replay = self.replay(&cause);
        let last = self.host.as_ref().map(HostState::whole_build);
        // The hot crates' warm-ups start as soon as each is compiled.
        let early = (mode == BuildMode::Hot).then(|| crate::warmup::Early::new(&self.plan, &tool));
        let outcome = build::build_host_settling_boundary(&mut self.plan, &tool, &self.events, mode, last.zip(replay), early.as_ref())?;
        let build = match outcome {
            BuildOutcome::Built(build) => *build,
            // Ctrl-C stopped cargo: that is no failure to report, the session is ending.
            BuildOutcome::Failed { .. } if crate::signals::stopping() => return Ok(()),
            BuildOutcome::Failed { diagnostics } => {
                let program_running = self.supervisor.pid().is_some();
                self.events.emit(Event::Error { message: "the build failed".into(), program_running });
                self.broken = Broken::Build { diagnostics };
                return Ok(());
            }
        };
        self.broken = Broken::No;
        if !build.without_cargo {
            self.cargo_due = None;
        }
        if let Some(why) = &build.link.split_failure {
            self.events.warn_once(format!("the host is linked whole, its dependencies included, so restarts take longer: {why}"));
        }
        self.remember_restart_files();
        self.announce_default_boundary();
        crate::last_build::record(&self.plan, &build);
        let host = HostState::derive(build, &self.plan, &before, &self.events)?;
        let root = &self.plan.workspace_root;
        let compiled_dirs: std::collections::BTreeSet<PathBuf> =
            host.tree.all.iter().filter(|f| f.starts_with(root)).filter_map(|f| f.parent().map(PathBuf::from)).collect();
        self.watcher.add_directories(compiled_dirs);
        // Read before anything is replaced or stopped: a broken env-file keeps the old program
        // running, with the description of the build it runs (its statics' addresses).
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let mut env = crate::environment::program_environment(&self.plan, &host.build, &cwd, &self.events)?;
        env.push((hot::IPC_ENV.into(), self.supervisor.ipc_path().into()));
        if let Some(held) = self.supervisor.held_ports().filter(|_| self.plan.config.hold_ports) {
            let preloaded = env.iter().rev().find(|(name, _)| name == "LD_PRELOAD").map(|(_, value)| value.clone());
            env.extend(held.environment(preloaded.as_deref()));
        }
        let listeners = self.supervisor.listeners();
        let launch = Launch {
            executable: host.build.executable.clone(),
            args: self.program_args.clone(),
            env,
            sockets: listeners.raw_fds(),
            socket_names: listeners.names(),
            trampoline: self.tool.clone(),
            terminal: self.terminal,
            detach_stdin: self.keys,
        };
        let build_ms = crate::events::ms(host.build.duration);
        self.host = Some(host);
        self.homes = None;
        let (trigger, trigger_at) = self.trigger;
        // The warm-up compiles the code the program is about to run, and is what a library's
        // patches are compared with once it has ended; an edit that comes first is patched by
        // cargo's own command instead (see `Attempt::take_warm_up`): the program does not wait.
        if self.restart_only.is_none() {
            self.host.as_mut().expect("set above").warm_up(&self.tool, &self.events, early);
        }
        self.supervisor.start(StartRequest { launch, build_ms, trigger, trigger_at, cause })?;
        // The programs before it are gone, and with them the only process that could load
        // their patches.
        crate::housekeeping::remove_other_programs(&self.session_patches(), &self.program_patches());
        if self.restart_only.is_none() {
            self.host.as_mut().expect("set above").read_program_views(&self.plan);
        }
        Ok(())
    }

    /// This session's patch directory (see [`session_patches_dir`]).
    fn session_patches(&self) -> PathBuf {
        session_patches_dir(&self.plan)
    }

    /// The running program's patches: removed once it is gone (a restart, the session's end).
    fn program_patches(&self) -> PathBuf {
        crate::housekeeping::program_patches(&self.session_patches(), self.supervisor.pid())
    }

    fn shutdown(&mut self, signal: Option<i32>) -> ExitCode {
        let program = self.supervisor.pid();
        self.supervisor.stop();
        let _ = std::fs::remove_dir_all(self.session_patches());
        crate::last_build::forget(&self.plan);
        self.events.emit(Event::SessionEnded { signal, program });
        match signal {
            Some(signal) => ExitCode::from((128 + signal).clamp(0, 255) as u8),
            None => ExitCode::SUCCESS,
        }
    }
}

/// In restart-only mode, a change to compiled code restarts because of the mode.
fn restart_only_why(why: Why) -> Why {
    match why {
        Why::OtherCrate { .. } | Why::Host { .. } | Why::BoundaryAndOther { .. } | Why::OnlyBoundary { .. } => Why::RestartOnly,
        other => other,
    }
}

fn is_rust_source(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "rs")
}

/// Whether compiler output names the file (`create file "src/users.rs"`, `couldn't read
/// `src/page.html``).
fn named_in(path: &Path, diagnostics: &str) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|name| diagnostics.contains(name))
}

fn content_digest(path: &Path) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(path).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
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

/// Where this session's patches are: one directory per program it starts.
fn session_patches_dir(plan: &Plan) -> PathBuf {
    plan.session_dir().join("patches").join(std::process::id().to_string())
}

