//! Everything a `cargo hot run` session decides and everything that happens to the program,
//! as values. The session loop emits events and never formats text; the renderers (`ui`)
//! turn them into terminal lines or JSON objects. Reasons are values too ([`Why`],
//! [`Refusal`], [`RestartCause`]), put into words only by the renderer.
//!
//! Durations are whole milliseconds (`*_ms`), paths are as the session saw them (absolute),
//! and the JSON form is `{"kind": "<kind>", ...fields}` (see the README's schema).

use std::path::PathBuf;

use serde::Serialize;

pub use crate::classify::Why;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Event {
    /// The session starts: what runs, what is hot, what is watched.
    SessionStarted {
        /// The workspace root (the terminal shows paths relative to it).
        workspace: PathBuf,
        host: String,
        /// Empty when nothing is configured (see [`Event::BoundaryChosen`]).
        boundaries: Vec<String>,
        watched_directories: usize,
        listen: Vec<String>,
        /// Set when every edit restarts (`--no-hot`, or a platform without patching).
        restart_only: Option<RestartOnly>,
        /// Whether the keys (r, c, q) are read.
        keys: bool,
    },
    /// The crate chosen as the boundary when none is configured.
    BoundaryChosen {
        boundary: String,
        choice: BoundaryChoice,
    },
    /// A burst of changes, and what the session does about it.
    Change {
        paths: Vec<PathBuf>,
        action: ChangeAction,
    },
    /// A changed file that is no change for the program (said once per file, then only
    /// with `-v`).
    Ignored {
        path: PathBuf,
        why: Why,
        again: bool,
    },
    /// A full build starts (`cargo build` through cargo hot's wrapper and linker), or a
    /// rebuild without cargo of the workspace crates named in `without_cargo` (see `rebuild`).
    BuildStarted {
        target: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        without_cargo: Vec<String>,
    },
    /// Cargo's progress: units compiled (fresh ones included) out of about `total`.
    BuildProgress {
        done: usize,
        total: usize,
        unit: Option<String>,
    },
    /// A compiler diagnostic (warning or error) of a build or a patch.
    Diagnostic(Box<Diagnostic>),
    /// A line cargo printed itself: a status line (`Compiling serde v1.0.0`, shown when no
    /// progress bar is) or a message (an unreadable manifest, a failed build's summary).
    CargoOutput {
        text: String,
        status: bool,
    },
    BuildFinished {
        ok: bool,
        duration_ms: u64,
    },
    /// A command run for the session (`-v`).
    Command {
        command: String,
    },
    /// Why the session does what it does, in more detail than the outcome says (`-v`): why a
    /// build is cargo's, why a rebuild compiles a crate.
    Detail {
        message: String,
    },
    /// A patch of a boundary is being built.
    PatchStarted {
        boundary: String,
    },
    /// The program runs the new code.
    Patched(Box<Patched>),
    /// The boundary did not compile: the program keeps running the last good code.
    CompileFailed {
        boundary: String,
    },
    /// The boundary changed again while it compiled: the newer change is handled next.
    Raced {
        boundary: String,
    },
    /// The patch cannot be applied safely; a restart follows.
    PatchRejected {
        boundary: String,
        refusal: Refusal,
    },
    /// The program (a new process) started after a build.
    Started {
        pid: u32,
        build_ms: u64,
        cause: StartCause,
    },
    /// The program was replaced by a new process with the new build.
    Restarted {
        pid: u32,
        previous_pid: u32,
        build_ms: u64,
        cause: RestartCause,
    },
    /// The program bound `address` itself and was handed the socket cargo hot holds for it:
    /// restarts queue its connections instead of refusing them (said once per address).
    PortHeld {
        address: String,
    },
    /// The program accepts connections.
    Ready {
        pid: u32,
        address: String,
        since_trigger_ms: u64,
        trigger: Trigger,
        build_ms: u64,
        start_to_accept_ms: u64,
    },
    /// The program exited on its own (crash, panic, exit).
    Crashed(Box<Crashed>),
    /// The program was stopped by cargo hot.
    Stopped {
        pid: u32,
        forced: bool,
        timeout_ms: u64,
    },
    /// Something worth knowing that needs no action now.
    Warning {
        message: String,
    },
    /// Something failed; the session goes on (the program keeps running, if it was).
    Error {
        message: String,
        program_running: bool,
    },
    /// Something failed that ends the session (a workspace cargo cannot read, a port in use).
    Fatal {
        message: String,
    },
    /// The screen was cleared (`c`).
    Cleared,
    /// The session ends (signal or `q`), after stopping the program (`program`, when one ran).
    SessionEnded {
        signal: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        program: Option<u32>,
    },
}

/// A compiler diagnostic: the text as cargo renders it (ANSI colours included; the JSON
/// stream has them stripped) and where it points.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    /// "error", "warning", "note", "help", "failure-note".
    pub level: String,
    pub message: String,
    /// The crate being compiled, when known.
    pub crate_name: Option<String>,
    /// The primary span's file (absolute), line and column (1-based).
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub rendered: String,
}

/// A patch applied, with its timings and what the runtime rebuilt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Patched {
    pub boundary: String,
    pub pid: u32,
    pub total_ms: u64,
    pub compile_ms: u64,
    /// Each crate the patch compiled, in the order it was compiled (the edited one, and those
    /// that had to be compiled again with it: see `span`), with its compile time.
    pub crates: Vec<CrateCompile>,
    pub link_ms: u64,
    pub check_ms: u64,
    pub load_ms: u64,
    pub exports_switched: usize,
    pub static_references_kept: usize,
    pub thread_local_references_kept: usize,
    pub rebuilt: Vec<hot::protocol::Rebuilt>,
    /// Changed functions that `main` reached too: start-up ran their old version.
    pub also_run_at_start_up: Vec<String>,
    /// Functions whose running copies now jump to the new code (readable names), and how
    /// many running copies that was.
    pub redirected: Vec<String>,
    pub redirected_copies: usize,
    /// Functions whose compiled code changed.
    pub functions_changed: usize,
    /// Functions the patch carries, and functions it left out: they jump to the running
    /// program's copies (see `thin`).
    pub functions_carried: usize,
    pub functions_left_out: usize,
    /// The boundary's types whose layout changed, none of whose old values can meet the new
    /// code (request-local types: see `layout`).
    pub layouts_changed: Vec<String>,
}

/// One crate compiled by a patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrateCompile {
    pub package: String,
    pub compile_ms: u64,
}

/// A program that exited on its own.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Crashed {
    pub pid: u32,
    /// "exited with status 101", "killed by SIGSEGV (core dumped)".
    pub status: String,
    pub ran_ms: u64,
    /// The panic message and the first lines after it (a backtrace), if it panicked.
    pub panic: Vec<String>,
    /// Its last lines of output.
    pub last_output: Vec<String>,
    /// What happens next.
    pub next: AfterCrash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "then", rename_all = "kebab-case")]
pub enum AfterCrash {
    /// Built and started again on the next change that could fix it.
    WaitForFix,
    /// `restart-on-crash`: started again after this backoff.
    StartAgain { in_ms: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartOnly {
    /// `--no-hot`.
    Requested,
    /// Patching is implemented for Linux (ELF) only.
    Platform,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BoundaryChoice {
    /// The package's own library (`src/lib.rs` beside `src/main.rs`).
    PackageLibrary,
    /// The binary's own crate (`main.rs` and its modules).
    Binary,
    /// The one local library of the host with `#[hot::export]` functions.
    OnlyLibraryWithExports { host: String },
    /// Every library of the workspace the host uses (and the host package's own crate, if it
    /// has exports): `crates`, lowest first; `boundary` is the highest.
    Workspace { crates: Vec<String> },
}

/// What a burst of changes leads to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum ChangeAction {
    /// Trying a patch of these boundaries.
    Patch { boundaries: Vec<String> },
    /// A rebuild and restart, because of `path`.
    Restart { path: PathBuf, why: Why },
    /// A build (no build to patch: the last one failed, or the program crashed).
    Build { cause: BuildCause },
    /// Nothing: every file is ignored (each is reported by [`Event::Ignored`]).
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuildCause {
    /// The last full build failed.
    AfterFailedBuild,
    /// The program crashed (or never started).
    AfterCrash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartCause {
    /// The first start of the session.
    SessionStart,
    /// After a crash, on a change (or with no program running).
    AfterChange,
    /// `restart-on-crash`.
    CrashRecovery,
}

/// Why the program was restarted.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "cause", rename_all = "kebab-case")]
pub enum RestartCause {
    /// A change that cannot be patched, by classification.
    Change { path: PathBuf, why: Why },
    /// A patch that was refused.
    Refused { refusal: Refusal },
    /// A change after a failed build.
    Rebuilt,
    /// `r` was pressed.
    Requested,
    /// Restart-only mode: the change would otherwise have been patched.
    RestartOnly { path: PathBuf },
}

/// Why a patch cannot be applied; a restart follows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "refusal", rename_all = "kebab-case")]
pub enum Refusal {
    /// A type definition the program has loaded changed (or a static's type).
    TypeChanged {
        what: String,
        boundary: String,
    },
    /// A type's layout changed and values of it made by the old code can meet the new code
    /// (or the reverse): decided from the compiled types (see `layout`).
    LayoutHeld {
        held: crate::layout::HeldLayout,
        boundary: String,
    },
    /// An edit that could change a layout, which cannot be checked (why).
    LayoutUnproven {
        file: PathBuf,
        why: String,
    },
    /// The boundary changed while the program was being built.
    ChangedDuringBuild {
        boundary: String,
    },
    /// The ABI gate refused the patch.
    Gate {
        rejection: crate::abi::Rejection,
    },
    /// A static cannot keep its value in the new code.
    Unbindable {
        reason: String,
    },
    /// The edit changes code only start-up runs (the binary is the boundary).
    StartUpOnly {
        functions: Vec<String>,
    },
    /// Changed code the running program reaches other than through the patch: the old copy
    /// would keep answering (see `patch::reach`).
    Stale {
        changes: Vec<crate::patch::reach::Stale>,
    },
    /// A crate the patch must compile again with the edited one (see `span`) was edited too,
    /// or is not as the running program has it.
    SpanEdited {
        crate_name: String,
        boundary: String,
        why: String,
    },
    /// `split-debuginfo = "packed"`: a patch of the binary cannot be built.
    PackedDebugInfo,
    NotRunning,
    /// The program could not load the patch.
    LoadFailed {
        message: String,
    },
    /// Building, checking or sending the patch failed.
    Failed {
        message: String,
    },
}

/// What led to a program start, for "ready N ms after the …".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    SessionStart,
    Edit,
    ScheduledStart,
    Key,
}

/// Where events go: the UI thread (see `ui`).
#[derive(Clone)]
pub struct Events {
    sender: std::sync::mpsc::Sender<crate::ui::Message>,
    /// Warnings already given by [`Events::warn_once`].
    said: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl Events {
    pub fn new(sender: std::sync::mpsc::Sender<crate::ui::Message>) -> Self {
        Events { sender, said: Default::default() }
    }

    pub fn emit(&self, event: Event) {
        let _ = self.sender.send(crate::ui::Message::Event(event));
    }

    pub fn warn(&self, message: impl Into<String>) {
        self.emit(Event::Warning { message: message.into() });
    }

    /// A warning about the workspace's set-up, which every rebuild would find again: given once
    /// per session.
    pub fn warn_once(&self, message: impl Into<String>) {
        let message = message.into();
        if self.said.lock().unwrap_or_else(|e| e.into_inner()).insert(message.clone()) {
            self.warn(message);
        }
    }

    /// A sink that drops everything (library use without a UI, tests).
    pub fn discard() -> Self {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || for _ in receiver {});
        Events { sender, said: Default::default() }
    }

    /// A collector for tests: every event emitted, in order.
    pub fn collecting() -> (Self, std::sync::mpsc::Receiver<crate::ui::Message>) {
        let (sender, receiver) = std::sync::mpsc::channel();
        (Events { sender, said: Default::default() }, receiver)
    }
}

/// Milliseconds of a duration, as events carry them.
pub fn ms(duration: std::time::Duration) -> u64 {
    duration.as_millis().min(u128::from(u64::MAX)) as u64
}
