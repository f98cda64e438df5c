//! The program's supervisor: one state machine for the program's life, driven by requests
//! (start, restart with drain, stop, reload a patch) from the session and by news from the
//! program (it exited, it accepts connections) that arrive as events, never by polling.
//! Modelled on watchexec's supervisor: the logic runs against a [`Spawner`], so the tests
//! drive it with a fake child.
//!
//! States: `Stopped` (nothing ever ran, or cargo hot stopped it), `Starting` (spawned, not yet
//! accepting), `Running` (accepting, or a program that never listens), `Crashed` (it exited
//! on its own; with restart-on-crash, when it starts again).

use std::process::ExitStatus;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use anyhow::Result;
use hot::protocol::ReloadOutcome;

use crate::events::{ms, AfterCrash, Crashed, Event, Events, RestartCause, StartCause, Trigger};
use crate::ipc::{IpcServer, ProgramInfo};
use crate::process::{describe_exit, LastOutput, Launch, Program, Stopped};
use crate::held_ports::HeldPorts;
use crate::sockets::Listeners;
use crate::ui::OutputSink;
use crate::wake::{ProgramEvent, Wake};

/// After a drain, time for the old program to read the requests of connections it had just
/// accepted, so that its graceful shutdown waits for them instead of closing them.
const DRAIN_GRACE: Duration = Duration::from_millis(100);
/// The first wait of restart-on-crash; doubled while the program keeps crashing within
/// [`QUICK_CRASH`] of its start, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const QUICK_CRASH: Duration = Duration::from_secs(10);
/// How long a program may take to accept connections before it counts as one that never
/// listens (a worker).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts programs. The real one is [`Processes`]; tests use a fake.
pub trait Spawner {
    type Child: Child;
    fn spawn(&mut self, launch: &Launch) -> Result<Self::Child>;
}

/// A started program, as the supervisor handles it.
pub trait Child {
    fn pid(&self) -> u32;
    fn started(&self) -> Instant;
    /// SIGTERM, without waiting.
    fn terminate(&self);
    /// Waits up to `timeout` for the exit asked for, then kills it.
    fn finish(&self, timeout: Duration) -> Stopped;
    /// Its exit status, once it has exited.
    fn exited(&self) -> Option<std::process::ExitStatus>;
    fn last_output(&self) -> LastOutput;
}

impl Child for Program {
    fn pid(&self) -> u32 {
        Program::pid(self)
    }
    fn started(&self) -> Instant {
        Program::started(self)
    }
    fn terminate(&self) {
        Program::terminate(self)
    }
    fn finish(&self, timeout: Duration) -> Stopped {
        Program::finish(self, timeout)
    }
    fn exited(&self) -> Option<std::process::ExitStatus> {
        Program::exited(self)
    }
    fn last_output(&self) -> LastOutput {
        Program::last_output(self)
    }
}

/// Real processes: each reports its exit, and its first accepting socket, on the session's
/// channel.
pub struct Processes {
    pub wake: Sender<Wake>,
    pub output: OutputSink,
}

impl Spawner for Processes {
    type Child = Program;

    fn spawn(&mut self, launch: &Launch) -> Result<Program> {
        let wake = self.wake.clone();
        let program = Program::spawn(launch, self.output.clone(), move |pid, status| {
            let _ = wake.send(Wake::Program(ProgramEvent::Exited { pid, status }));
        })?;
        watch_readiness(program.pid(), self.wake.clone());
        Ok(program)
    }
}

/// Reports when `pid` first accepts connections (read from /proc: see `sockets::accepting`):
/// often at first, since a restart's time is counted to that moment, then less often.
fn watch_readiness(pid: u32, wake: Sender<Wake>) {
    let _ = std::thread::Builder::new().name(format!("ready-{pid}")).spawn(move || {
        let started = Instant::now();
        while crate::sys::process_exists(pid as i32) {
            if let Some(address) = crate::sockets::accepting(pid) {
                let _ = wake.send(Wake::Program(ProgramEvent::Ready { pid, address: address.to_string() }));
                return;
            }
            let waited = started.elapsed();
            if waited > READY_TIMEOUT {
                let _ = wake.send(Wake::Program(ProgramEvent::NeverReady { pid }));
                return;
            }
            std::thread::sleep(if waited < Duration::from_secs(2) { Duration::from_millis(5) } else { Duration::from_millis(50) });
        }
    });
}

/// Why a program is started.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub launch: Launch,
    pub build_ms: u64,
    /// What led to it, and when (for "ready N ms after the edit").
    pub trigger: Trigger,
    pub trigger_at: Instant,
    /// Said if a running program is replaced.
    pub cause: RestartCause,
}

/// The program's state.
pub enum State<C> {
    Stopped,
    Starting(Run<C>),
    Running(Run<C>),
    Crashed {
        pid: u32,
        /// restart-on-crash: when it starts again.
        restart_at: Option<Instant>,
    },
}

/// One run of the program.
pub struct Run<C> {
    child: C,
    trigger: Trigger,
    trigger_at: Instant,
    build_ms: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub shutdown_timeout: Duration,
    pub restart_on_crash: bool,
}

pub struct Supervisor<S: Spawner = Processes> {
    spawner: S,
    state: State<S::Child>,
    ipc: IpcServer,
    listeners: Listeners,
    /// Ports the program binds itself, held across restarts (see `held_ports`).
    held: Option<HeldPorts>,
    events: Events,
    settings: Settings,
    /// The last launch, for restart-on-crash.
    launch: Option<Launch>,
    backoff: Duration,
    started_before: bool,
}

impl<S: Spawner> Supervisor<S> {
    pub fn new(spawner: S, ipc: IpcServer, listeners: Listeners, settings: Settings, events: Events) -> Self {
        Supervisor {
            spawner,
            state: State::Stopped,
            ipc,
            listeners,
            held: None,
            events,
            settings,
            launch: None,
            // Doubled at the first crash: the first automatic start waits FIRST_BACKOFF.
            backoff: FIRST_BACKOFF / 2,
            started_before: false,
        }
    }

    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
    }

    pub fn ipc_path(&self) -> &std::path::Path {
        self.ipc.path()
    }

    pub fn listeners(&self) -> &Listeners {
        &self.listeners
    }

    /// Hold the ports the programs bind themselves from now on.
    pub fn hold_ports(&mut self, held: HeldPorts) {
        self.held = Some(held);
    }

    pub fn held_ports(&self) -> Option<&HeldPorts> {
        self.held.as_ref()
    }

    /// The running program (starting or accepting).
    pub fn pid(&self) -> Option<u32> {
        match &self.state {
            State::Starting(run) | State::Running(run) => Some(run.child.pid()),
            State::Stopped | State::Crashed { .. } => None,
        }
    }

    /// Whether the program exited on its own (and was not started again since).
    pub fn crashed(&self) -> bool {
        matches!(self.state, State::Crashed { .. })
    }

    pub fn state(&self) -> &State<S::Child> {
        &self.state
    }

    /// Starts the program, or replaces the running one: with `listen` sockets, the old one
    /// stops accepting first (drain), the new one starts while the old one finishes its
    /// requests; otherwise the old one stops, then the new one starts.
    pub fn start(&mut self, request: StartRequest) -> Result<u32> {
        self.launch = Some(request.launch.clone());
        match std::mem::replace(&mut self.state, State::Stopped) {
            State::Starting(old) | State::Running(old) => self.replace(old, request),
            State::Stopped | State::Crashed { .. } => {
                let cause = if self.started_before { StartCause::AfterChange } else { StartCause::SessionStart };
                let pid = self.spawn(&request)?;
                self.events.emit(Event::Started { pid, build_ms: request.build_ms, cause });
                Ok(pid)
            }
        }
    }

    fn spawn(&mut self, request: &StartRequest) -> Result<u32> {
        if let Some(held) = &self.held {
            held.next_run();
        }
        let child = self.spawner.spawn(&request.launch)?;
        let pid = child.pid();
        self.started_before = true;
        self.state = State::Starting(Run { child, trigger: request.trigger, trigger_at: request.trigger_at, build_ms: request.build_ms });
        Ok(pid)
    }

    fn replace(&mut self, old: Run<S::Child>, request: StartRequest) -> Result<u32> {
        let previous_pid = old.child.pid();
        let mut drained = false;
        let held = self.held.as_ref().map(HeldPorts::identities).unwrap_or_default();
        if !self.listeners.is_empty() || !held.is_empty() {
            // Stop the old program accepting first: a connection it accepted just before
            // SIGTERM but had not read yet would be reset by a graceful shutdown.
            if let Ok(descriptors) = self.ipc.drain(previous_pid, held, Duration::from_secs(1)) {
                drained = descriptors > 0;
            }
        }
        self.ipc.disconnect();
        let spawned = if drained {
            // It accepts nothing more: the new program can take the queue while the old one
            // finishes its requests (a long-lived stream must not hold everyone up). The new
            // one starts at once; the old one has the grace, overlapping that start, to read
            // what it had just accepted before it is asked to stop.
            let spawned = self.spawn(&request);
            std::thread::sleep(DRAIN_GRACE);
            old.child.terminate();
            self.report_stop(&old.child, old.child.finish(self.settings.shutdown_timeout));
            // The new one may have needed something the old one still held (a database's
            // lock file, a UDP port): if it ended while the old one was stopping, it starts
            // again now that the old one is gone.
            match (&spawned, self.exited_while_overlapping()) {
                (Ok(_), Some(status)) => {
                    self.events.emit(Event::Detail {
                        message: format!("the new program ended ({}) while the old one was stopping; starting it again", describe_exit(status)),
                    });
                    self.spawn(&request)
                }
                _ => spawned,
            }
        } else {
            self.report_stop(&old.child, old.child.finish_after_term(self.settings.shutdown_timeout));
            self.spawn(&request)
        };
        let pid = spawned?;
        self.events.emit(Event::Restarted { pid, previous_pid, build_ms: request.build_ms, cause: request.cause });
        Ok(pid)
    }

    /// The exit status of the program just started, if it has already ended.
    fn exited_while_overlapping(&self) -> Option<std::process::ExitStatus> {
        match &self.state {
            State::Starting(run) | State::Running(run) => run.child.exited(),
            _ => None,
        }
    }

    fn report_stop(&self, child: &S::Child, stopped: Stopped) {
        self.events.emit(Event::Stopped {
            pid: child.pid(),
            forced: stopped.forced,
            timeout_ms: ms(self.settings.shutdown_timeout),
        });
    }

    /// Stops the program, if one runs.
    pub fn stop(&mut self) {
        if let State::Starting(run) | State::Running(run) = std::mem::replace(&mut self.state, State::Stopped) {
            self.ipc.disconnect();
            self.report_stop(&run.child, run.child.finish_after_term(self.settings.shutdown_timeout));
        }
    }

    /// News from the program's watchers. Exits and readiness of programs that were already
    /// replaced or stopped are ignored.
    pub fn handle(&mut self, event: ProgramEvent) {
        match event {
            ProgramEvent::Exited { pid, status } if self.pid() == Some(pid) => self.crashed_with(status),
            ProgramEvent::Ready { pid, address } => {
                if let Some(run) = self.take_starting(pid) {
                    self.events.emit(Event::Ready {
                        pid,
                        address,
                        since_trigger_ms: ms(run.trigger_at.elapsed()),
                        trigger: run.trigger,
                        build_ms: run.build_ms,
                        start_to_accept_ms: ms(run.child.started().elapsed()),
                    });
                    self.state = State::Running(run);
                }
            }
            ProgramEvent::NeverReady { pid } => {
                if let Some(run) = self.take_starting(pid) {
                    self.state = State::Running(run);
                }
            }
            _ => {}
        }
    }

    /// The run of `pid` if it is starting (the state is then left `Stopped` for the caller to set).
    fn take_starting(&mut self, pid: u32) -> Option<Run<S::Child>> {
        match &self.state {
            State::Starting(run) if run.child.pid() == pid => match std::mem::replace(&mut self.state, State::Stopped) {
                State::Starting(run) => Some(run),
                _ => None,
            },
            _ => None,
        }
    }

    fn crashed_with(&mut self, status: ExitStatus) {
        let (State::Starting(run) | State::Running(run)) = std::mem::replace(&mut self.state, State::Stopped) else { return };
        self.ipc.disconnect();
        let ran = run.child.started().elapsed();
        let output = run.child.last_output();
        let restart_at = if self.settings.restart_on_crash {
            self.backoff = if ran < QUICK_CRASH { (self.backoff * 2).min(MAX_BACKOFF) } else { FIRST_BACKOFF };
            Some(Instant::now() + self.backoff)
        } else {
            None
        };
        self.events.emit(Event::Crashed(Box::new(Crashed {
            pid: run.child.pid(),
            status: describe_exit(status),
            ran_ms: ms(ran),
            panic: output.panic,
            last_output: output.lines,
            next: match restart_at {
                Some(_) => AfterCrash::StartAgain { in_ms: ms(self.backoff) },
                None => AfterCrash::WaitForFix,
            },
        })));
        self.state = State::Crashed { pid: run.child.pid(), restart_at };
    }

    /// When restart-on-crash starts the program again.
    pub fn due(&self) -> Option<Instant> {
        match self.state {
            State::Crashed { restart_at, .. } => restart_at,
            _ => None,
        }
    }

    /// restart-on-crash: starts the crashed program again if its time has come.
    pub fn start_again_if_due(&mut self) -> Result<()> {
        let Some(at) = self.due() else { return Ok(()) };
        let Some(launch) = self.launch.clone().filter(|_| Instant::now() >= at) else { return Ok(()) };
        let request =
            StartRequest { launch, build_ms: 0, trigger: Trigger::ScheduledStart, trigger_at: Instant::now(), cause: RestartCause::Rebuilt };
        self.state = State::Stopped;
        let pid = self.spawn(&request)?;
        self.events.emit(Event::Started { pid, build_ms: 0, cause: StartCause::CrashRecovery });
        Ok(())
    }

    /// What the running program's runtime said when it connected.
    pub fn program_info(&mut self, timeout: Duration) -> Result<ProgramInfo> {
        let pid = self.pid().ok_or_else(|| anyhow::anyhow!("the program is not running"))?;
        self.ipc.program_info(pid, timeout)
    }

    /// Asks the running program to load `patch` and switch `exports`.
    pub fn reload(&mut self, patch: &std::path::Path, exports: &[String], redirects: &[hot::protocol::Redirect], timeout: Duration) -> Result<ReloadOutcome> {
        let pid = self.pid().ok_or_else(|| anyhow::anyhow!("the program is not running"))?;
        self.ipc.reload(pid, patch, exports, redirects, timeout)
    }
}

trait FinishAfterTerm {
    fn finish_after_term(&self, timeout: Duration) -> Stopped;
}

impl<C: Child> FinishAfterTerm for C {
    /// SIGTERM, then wait, then SIGKILL.
    fn finish_after_term(&self, timeout: Duration) -> Stopped {
        self.terminate();
        self.finish(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::os::unix::process::ExitStatusExt;
    use std::rc::Rc;

    /// What happened to the fake children, in order.
    type Log = Rc<RefCell<Vec<String>>>;

    struct FakeChild {
        pid: u32,
        started: Instant,
        ignores_sigterm: bool,
        log: Log,
    }

    impl Child for FakeChild {
        fn pid(&self) -> u32 {
            self.pid
        }
        fn started(&self) -> Instant {
            self.started
        }
        fn terminate(&self) {
            self.log.borrow_mut().push(format!("term {}", self.pid));
        }
        fn finish(&self, _: Duration) -> Stopped {
            self.log.borrow_mut().push(format!("finish {}", self.pid));
            let status = if self.ignores_sigterm { ExitStatus::from_raw(libc::SIGKILL) } else { ExitStatus::from_raw(0) };
            Stopped { status, forced: self.ignores_sigterm }
        }
        fn exited(&self) -> Option<ExitStatus> {
            None
        }
        fn last_output(&self) -> LastOutput {
            LastOutput { panic: vec!["thread 'main' panicked at src/main.rs:1:1:".into(), "boom".into()], lines: vec!["last".into()] }
        }
    }

    struct FakeSpawner {
        next_pid: u32,
        ignores_sigterm: bool,
        fail: bool,
        log: Log,
    }

    impl Spawner for FakeSpawner {
        type Child = FakeChild;
        fn spawn(&mut self, _: &Launch) -> Result<FakeChild> {
            if self.fail {
                anyhow::bail!("cannot start it");
            }
            self.next_pid += 1;
            self.log.borrow_mut().push(format!("spawn {}", self.next_pid));
            Ok(FakeChild { pid: self.next_pid, started: Instant::now(), ignores_sigterm: self.ignores_sigterm, log: self.log.clone() })
        }
    }

    struct Harness {
        supervisor: Supervisor<FakeSpawner>,
        events: std::sync::mpsc::Receiver<crate::ui::Message>,
        log: Log,
        _dir: tempfile::TempDir,
    }

    impl Harness {
        fn new(restart_on_crash: bool) -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let ipc = IpcServer::bind(&dir.path().join("ipc.sock")).unwrap();
            let log = Log::default();
            let spawner = FakeSpawner { next_pid: 100, ignores_sigterm: false, fail: false, log: log.clone() };
            let (events, receiver) = Events::collecting();
            let settings = Settings { shutdown_timeout: Duration::from_millis(300), restart_on_crash };
            let supervisor = Supervisor::new(spawner, ipc, Listeners::bind(&[]).unwrap(), settings, events);
            Harness { supervisor, events: receiver, log, _dir: dir }
        }

        fn events(&self) -> Vec<Event> {
            self.events.try_iter().filter_map(|m| if let crate::ui::Message::Event(e) = m { Some(e) } else { None }).collect()
        }

        fn start(&mut self) -> u32 {
            let request = StartRequest {
                launch: Launch::default(),
                build_ms: 42,
                trigger: Trigger::Edit,
                trigger_at: Instant::now(),
                cause: RestartCause::Rebuilt,
            };
            self.supervisor.start(request).unwrap()
        }

        fn log(&self) -> Vec<String> {
            self.log.borrow().clone()
        }
    }

    fn exited(pid: u32, code: i32) -> ProgramEvent {
        ProgramEvent::Exited { pid, status: ExitStatus::from_raw(code << 8) }
    }

    #[test]
    fn start_ready_and_a_crash_that_waits_for_a_fix() {
        let mut h = Harness::new(false);
        let pid = h.start();
        assert!(matches!(h.supervisor.state(), State::Starting(_)));
        h.supervisor.handle(ProgramEvent::Ready { pid, address: "127.0.0.1:3000".into() });
        assert!(matches!(h.supervisor.state(), State::Running(_)));
        h.supervisor.handle(exited(pid, 101));
        assert!(h.supervisor.crashed() && h.supervisor.pid().is_none() && h.supervisor.due().is_none());
        let events = h.events();
        assert!(matches!(events[0], Event::Started { pid: p, build_ms: 42, cause: StartCause::SessionStart } if p == pid), "{events:?}");
        assert!(matches!(&events[1], Event::Ready { pid: p, address, build_ms: 42, .. } if *p == pid && address == "127.0.0.1:3000"));
        let Event::Crashed(crashed) = &events[2] else { panic!("{events:?}") };
        assert_eq!((crashed.pid, crashed.status.as_str(), crashed.next), (pid, "exited with status 101", AfterCrash::WaitForFix));
        assert_eq!(crashed.panic[1], "boom");
        // The next start after a crash is a start, not a restart.
        let again = h.start();
        assert!(matches!(h.events()[..], [Event::Started { pid: p, cause: StartCause::AfterChange, .. }] if p == again));
    }

    #[test]
    fn a_restart_stops_the_old_program_then_starts_the_new_one() {
        let mut h = Harness::new(false);
        let first = h.start();
        let second = h.start();
        assert_eq!(h.log(), vec![format!("spawn {first}"), format!("term {first}"), format!("finish {first}"), format!("spawn {second}")]);
        let events = h.events();
        assert!(matches!(events[1], Event::Stopped { pid, forced: false, .. } if pid == first), "{events:?}");
        assert!(matches!(events[2], Event::Restarted { pid, previous_pid, .. } if pid == second && previous_pid == first));
        // The old program's exit and readiness arrive late: they are not this program's.
        h.supervisor.handle(exited(first, 0));
        h.supervisor.handle(ProgramEvent::Ready { pid: first, address: "127.0.0.1:1".into() });
        assert!(h.events().is_empty() && h.supervisor.pid() == Some(second));
        assert!(matches!(h.supervisor.state(), State::Starting(_)));
    }

    #[test]
    fn a_program_ignoring_sigterm_is_reported_as_killed() {
        let mut h = Harness::new(false);
        h.supervisor.spawner.ignores_sigterm = true;
        let pid = h.start();
        h.supervisor.stop();
        assert!(matches!(h.events()[..], [Event::Started { .. }, Event::Stopped { pid: p, forced: true, timeout_ms: 300 }] if p == pid));
        assert!(matches!(h.supervisor.state(), State::Stopped));
        h.supervisor.stop();
        assert!(h.events().is_empty(), "stopping nothing says nothing");
    }

    #[test]
    fn restart_on_crash_backs_off_while_it_keeps_crashing() {
        let mut h = Harness::new(true);
        let pid = h.start();
        h.supervisor.handle(exited(pid, 1));
        let first = h.supervisor.due().expect("scheduled");
        assert!(first > Instant::now() + Duration::from_millis(300));
        let events = h.events();
        assert!(matches!(&events[1], Event::Crashed(c) if c.next == AfterCrash::StartAgain { in_ms: 500 }), "{events:?}");
        h.supervisor.start_again_if_due().unwrap();
        assert!(h.supervisor.crashed(), "not yet due");
        std::thread::sleep(first - Instant::now());
        h.supervisor.start_again_if_due().unwrap();
        let again = h.supervisor.pid().expect("started again");
        h.supervisor.handle(exited(again, 1));
        let events = h.events();
        assert!(matches!(events[0], Event::Started { cause: StartCause::CrashRecovery, build_ms: 0, .. }), "{events:?}");
        assert!(matches!(&events[1], Event::Crashed(c) if c.next == AfterCrash::StartAgain { in_ms: 1000 }), "doubled: {events:?}");
    }

    #[test]
    fn a_program_that_cannot_start_leaves_nothing_running() {
        let mut h = Harness::new(false);
        h.start();
        h.supervisor.spawner.fail = true;
        let request =
            StartRequest { launch: Launch::default(), build_ms: 1, trigger: Trigger::Edit, trigger_at: Instant::now(), cause: RestartCause::Rebuilt };
        assert!(h.supervisor.start(request).is_err());
        assert!(matches!(h.supervisor.state(), State::Stopped));
    }
}
