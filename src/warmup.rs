//! Warm-up compiles: each hot crate compiled unchanged right after a full build, so that the
//! patch's own incremental cache is ready when the first edit comes (without it the first
//! patch of a session pays a whole compile of the crate: on the example 560-670 ms against
//! 150 ms), and so that a library's patches have a baseline to be compared with (see
//! `patch::reach`: at `-C opt-level=0` debug info changes the machine code, so cargo's own
//! objects, with full debug info, are no baseline for a patch compiled with line tables).
//!
//! A workspace has several hot crates and the machine two cores: the warm-ups run **one at a
//! time**, in a queue, at low priority (the types' compiles, with full debug info, only when
//! the machine is idle), so that they never compete with the program starting or with each
//! other. A patch that needs a crate's warm-up still queued runs it at once itself, at normal
//! priority; dropping a warm-up cancels it, or kills it if it is running.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::Result;

use crate::build::BoundaryUnit;
use crate::patch::CompileDirs;

/// Why a warm-up gave no baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unwarmed {
    /// The crate was edited before rustc read its sources: what it compiled is not what the
    /// program runs (the crate's patches are then compared with cargo's own objects, compiled
    /// with cargo's flags: see `patch::Flags::Cargo`).
    Edited(String),
    Failed(String),
}

impl std::fmt::Display for Unwarmed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unwarmed::Edited(why) | Unwarmed::Failed(why) => f.write_str(why),
        }
    }
}

/// One crate's warm-up compile.
pub struct Warmup {
    shared: Arc<Shared>,
    /// The crate's sources when the warm-up was queued (as the program was built).
    sources: crate::abi::SourceSnapshot,
    /// Written by rustc once it has read every source file.
    dep_info: PathBuf,
    /// Where the compile's outputs say what they were compiled from, once they are a baseline
    /// (see [`Baseline`]); None for the types' compiles.
    baseline: Option<Baseline>,
}

/// What the outputs of a crate's compile in cargo hot's directories were compiled from: its
/// arguments (which name its dependencies' files, whose sizes and times count too) and its
/// sources' contents. Recorded beside them once they are known to be the running program's
/// code, so that the next build's warm-up, finding the same, compiles nothing: after a restart
/// that did not compile the crate again, or in the next session, its first patch is compiled
/// with line tables at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    file: PathBuf,
    digest: u64,
}

impl Baseline {
    /// What a compile in `dirs` with `args` of `sources` is.
    pub fn of(dirs: &CompileDirs, args: &[String], sources: &crate::abi::SourceSnapshot) -> Self {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        args.hash(&mut hasher);
        sources.whole_digest().hash(&mut hasher);
        for path in args.iter().filter_map(|a| a.split_once('=').map(|(_, path)| Path::new(path))).filter(|p| p.is_absolute()) {
            if let Ok(meta) = std::fs::metadata(path) {
                use std::os::unix::fs::MetadataExt;
                (path, meta.len(), meta.mtime(), meta.mtime_nsec()).hash(&mut hasher);
            }
        }
        Baseline { file: dirs.out.join(".hot-baseline"), digest: hasher.finish() }
    }

    /// Whether the outputs are this compile's.
    pub fn recorded(&self) -> bool {
        std::fs::read_to_string(&self.file).is_ok_and(|text| text.trim() == format!("{:016x}", self.digest))
    }

    /// Says that the outputs are this compile's.
    pub fn record(&self) {
        let _ = std::fs::write(&self.file, format!("{:016x}\n", self.digest));
    }

    /// Says that the outputs are being replaced (a compile starts there).
    pub fn forget(dirs: &CompileDirs) {
        let _ = std::fs::remove_file(dirs.out.join(".hot-baseline"));
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
enum State {
    Queued {
        command: Box<Command>,
        priority: Priority,
    },
    /// Taken from the queue, about to be spawned.
    #[default]
    Starting,
    Running {
        pid: u32,
    },
    Ended(Result<ExitStatus, String>),
    Cancelled,
}

/// How a queued warm-up runs when the queue reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// `nice 10`: the patch compiles' caches.
    Low,
    /// Only when the machine is otherwise idle: the types' compiles.
    Idle,
}

/// The queue of a build's warm-ups, run one at a time by a thread of its own.
pub struct Queue {
    pending: Arc<Mutex<VecDeque<Arc<Shared>>>>,
    wake: Arc<Condvar>,
}

impl Default for Queue {
    fn default() -> Self {
        Self::new()
    }
}

impl Queue {
    pub fn new() -> Self {
        let pending: Arc<Mutex<VecDeque<Arc<Shared>>>> = Arc::default();
        let wake: Arc<Condvar> = Arc::default();
        let (queue, signal) = (pending.clone(), wake.clone());
        let _ = std::thread::Builder::new().name("hot-warm-up".into()).spawn(move || run_queue(&queue, &signal));
        Queue { pending, wake }
    }

    /// Queues the compile of `unit` with the patch's flags (`line_tables`) or with full debug
    /// info in `dirs` (see `patch::start_types_compile`), against the `newer` compiles of the
    /// hot crates it depends on (see `span`).
    pub fn push(&self, unit: &BoundaryUnit, tool: &Path, dirs: &CompileDirs, files: &[PathBuf], priority: Priority, newer: &[crate::span::Newer]) -> Result<Warmup> {
        let line_tables = priority == Priority::Low;
        let dirs = if line_tables { dirs.clone() } else { dirs.for_types() };
        let sources = crate::abi::SourceSnapshot::of_files(files);
        let dep_info = dirs.dep_info(unit);
        let flags = if line_tables { crate::patch::Flags::LineTables } else { crate::patch::Flags::FullDebug };
        let mut command = crate::patch::compile_command(unit, tool, &dirs, flags, newer)?;
        let args: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let baseline = line_tables.then(|| Baseline::of(&dirs, &args, &sources));
        if baseline.as_ref().is_some_and(Baseline::recorded) && dirs.objects(unit).exists() {
            // Its outputs are already this compile's.
            use std::os::unix::process::ExitStatusExt;
            let ended = State::Ended(Ok(ExitStatus::from_raw(0)));
            return Ok(Warmup { shared: Arc::new(Shared { state: Mutex::new(ended), changed: Condvar::new() }), sources, dep_info, baseline });
        }
        Baseline::forget(&dirs);
        // Its dep-info says when it has read the sources: the previous compile's must not.
        let _ = std::fs::remove_file(&dep_info);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let shared = Arc::new(Shared { state: Mutex::new(State::Queued { command: Box::new(command), priority }), changed: Condvar::new() });
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).push_back(shared.clone());
        self.wake.notify_all();
        Ok(Warmup { shared, sources, dep_info, baseline })
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // The thread ends once the queue is empty and no one holds it.
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.wake.notify_all();
    }
}

fn run_queue(pending: &Arc<Mutex<VecDeque<Arc<Shared>>>>, wake: &Condvar) {
    loop {
        let next = {
            let mut queue = pending.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(next) = queue.pop_front() {
                    break next;
                }
                // Only the Queue itself and this thread hold it: nothing more can come.
                if Arc::strong_count(pending) == 1 {
                    return;
                }
                queue = wake.wait_timeout(queue, Duration::from_secs(1)).map(|(q, _)| q).unwrap_or_else(|p| p.into_inner().0);
            }
        };
        let taken = {
            let mut state = next.state.lock().unwrap_or_else(|p| p.into_inner());
            match std::mem::take(&mut *state) {
                State::Queued { command, priority } => Some((command, priority)),
                other => {
                    *state = other;
                    None
                }
            }
        };
        match taken {
            Some((mut command, priority)) => {
                match priority {
                    Priority::Low => crate::sys::at_low_priority(&mut command),
                    Priority::Idle => crate::sys::at_idle_priority(&mut command),
                }
                run(&next, &mut command);
            }
            // A patch took it, and runs it: one at a time, so wait for it.
            None => next.wait_ended(),
        }
    }
}

/// Runs the compile of a warm-up whose state was taken, recording its end.
fn run(shared: &Shared, command: &mut Command) {
    let child = command.spawn();
    let result = match child {
        Ok(mut child) => {
            let pid = child.id();
            {
                let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                if matches!(*state, State::Cancelled) {
                    let _ = child.kill();
                }
                *state = State::Running { pid };
            }
            let _registered = crate::signals::register_build(pid);
            child.wait().map_err(|err| format!("cannot wait for the warm-up compile: {err}"))
        }
        Err(err) => Err(format!("cannot run the warm-up compile: {err}")),
    };
    let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    *state = State::Ended(result);
    shared.changed.notify_all();
}

impl Shared {
    fn wait_ended(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while matches!(*state, State::Running { .. } | State::Starting) {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Warmup {
    /// The crate's sources when the compile was queued: what it compiles, if
    /// [`Warmup::wait`] says so.
    pub fn sources(&self) -> &crate::abi::SourceSnapshot {
        &self.sources
    }

    /// Stops (`paused`) or resumes the compile if it is running (its process group).
    pub fn pause(&self, paused: bool) {
        if let State::Running { pid } = *self.shared.state.lock().unwrap_or_else(|p| p.into_inner()) {
            crate::sys::signal_group(pid, if paused { libc::SIGSTOP } else { libc::SIGCONT });
        }
    }

    /// Whether the compile has ended (or never will run): [`Warmup::wait`] then does not wait.
    pub fn ended(&self) -> bool {
        matches!(*self.shared.state.lock().unwrap_or_else(|p| p.into_inner()), State::Ended(_) | State::Cancelled)
    }

    /// Waits until the warm-up has ended, running it now (at normal priority) if it is still
    /// queued. Ok when it compiled the sources the program was built from: every file edited
    /// since it was queued was written after rustc had read the sources.
    pub fn wait(self) -> Result<(), Unwarmed> {
        let taken = {
            let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            match std::mem::take(&mut *state) {
                State::Queued { command, .. } => Some(command),
                other => {
                    *state = other;
                    None
                }
            }
        };
        if let Some(mut command) = taken {
            // Its sources are read now: an edit made since it was queued is in them.
            if let Some(path) = self.sources.changed_files().into_iter().next() {
                return Err(Unwarmed::Edited(format!("{} changed before the unchanged crate was compiled", path.display())));
            }
            run(&self.shared, &mut command);
        }
        self.shared.wait_ended();
        let status = match &*self.shared.state.lock().unwrap_or_else(|p| p.into_inner()) {
            State::Ended(Ok(status)) => *status,
            State::Ended(Err(why)) => return Err(Unwarmed::Failed(why.clone())),
            _ => return Err(Unwarmed::Failed("the warm-up compile did not run".to_string())),
        };
        if !status.success() {
            return Err(Unwarmed::Failed(format!("the compile of the unchanged crate failed ({status})")));
        }
        let read_at = std::fs::metadata(&self.dep_info)
            .and_then(|m| m.modified())
            .map_err(|err| Unwarmed::Failed(format!("cannot read {}: {err}", self.dep_info.display())))?;
        for path in self.sources.changed_files() {
            let written = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            if written.is_none_or(|written| written <= read_at) {
                return Err(Unwarmed::Edited(format!("{} changed while the unchanged crate was being compiled", path.display())));
            }
        }
        if let Some(baseline) = &self.baseline {
            baseline.record();
        }
        Ok(())
    }
}

impl Drop for Warmup {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        match &*state {
            State::Queued { .. } | State::Starting => *state = State::Cancelled,
            // The pid is the warm-up's rustc, not reaped yet: its end is recorded under this lock.
            State::Running { pid } => crate::sys::signal_group(*pid, libc::SIGKILL),
            _ => {}
        }
    }
}

/// Warm-ups started while the build runs: a hot crate's as soon as cargo (or a rebuild
/// without it) has compiled the crate, beside the rest of the build (the host crate's compile
/// and its link, the program's start), so that it has usually ended when the first edit comes,
/// and that edit is compiled with line tables at once (see the README's performance notes).
pub struct Early {
    queue: Queue,
    tool: PathBuf,
    session_dir: PathBuf,
    capture_dir: PathBuf,
    /// The plan's library boundaries (the binary's patches need no warm-up).
    boundaries: Vec<crate::metadata::Boundary>,
    started: Mutex<std::collections::HashMap<String, Warmup>>,
}

impl Early {
    pub fn new(plan: &crate::metadata::Plan, tool: &Path) -> Self {
        let boundaries = plan.boundaries.iter().filter(|b| b.kind == crate::metadata::BoundaryKind::Library).cloned().collect();
        Early {
            queue: Queue::new(),
            tool: tool.to_path_buf(),
            session_dir: plan.session_dir(),
            capture_dir: crate::build::capture_dir(plan),
            boundaries,
            started: Mutex::default(),
        }
    }

    /// The workspace library `package` was compiled into `rlib`: if it is a hot crate, its
    /// warm-up is queued now.
    pub fn library_built(&self, package: &str, rlib: &Path) {
        let Some(boundary) = self.boundaries.iter().find(|b| b.package == package) else { return };
        let Some(key) = rlib.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("lib")?.strip_suffix(".rlib")) else { return };
        let Ok(invocation) = crate::capture::RustcInvocation::load(&crate::capture::RustcInvocation::record_path(&self.capture_dir, key)) else { return };
        if invocation.env.get("CARGO_MANIFEST_DIR").map(PathBuf::from).as_deref() != Some(boundary.manifest_dir.as_path()) || !invocation.debug_assertions() {
            return;
        }
        let Some(dep_info) = invocation.dep_info_path() else { return };
        let Ok(files) = crate::depinfo::read(&dep_info, &invocation.cwd) else { return };
        let unit = BoundaryUnit { boundary: boundary.clone(), invocation, objects: crate::build::UnitObjects::Rlib(rlib.to_path_buf()), dep_info };
        let dirs = CompileDirs::of(&unit, &self.session_dir);
        if let Ok(warmup) = self.queue.push(&unit, &self.tool, &dirs, &files, Priority::Low, &[]) {
            self.started.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_string(), warmup);
        }
    }

    /// The warm-up started for the unit `key`, if one was.
    pub fn take(&self, key: &str) -> Option<Warmup> {
        self.started.lock().unwrap_or_else(|p| p.into_inner()).remove(key)
    }

    /// The queue, for the warm-ups the build did not start (the others are cancelled).
    pub fn into_queue(self) -> Queue {
        self.queue
    }
}
