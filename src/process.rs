//! One run of the program: started in its own process group with the parent-death signal
//! set (so it never outlives cargo hot), its output passed on as it comes (through a
//! pseudo-terminal when cargo hot runs on one, so the program keeps its colours), its last
//! lines and its last panic kept for a crash report, and its exit reported by a thread that
//! owns the child (no polling). Stopping is SIGTERM to the whole group, then SIGKILL after a
//! timeout, so a server that binds its own port can bind it again.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::sys;
use crate::ui::{OutputSink, Stream};

/// How to start the program.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    pub executable: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    /// Listening sockets to pass on (cargo hot's descriptors) and their LISTEN_FDNAMES.
    pub sockets: Vec<RawFd>,
    pub socket_names: String,
    /// The cargo-hot executable that passes them on (see `sockets::run_trampoline`).
    pub trampoline: PathBuf,
    /// Give the program a pseudo-terminal for its output (cargo hot runs on a terminal).
    pub terminal: bool,
    /// Standard input is cargo hot's (it reads keys): the program gets /dev/null instead.
    pub detach_stdin: bool,
}

/// How many lines of each output stream are kept for a crash report.
pub const KEPT_LINES: usize = 10;
/// How many lines of a panic are kept: the panic line, its message, the first lines of a
/// backtrace.
const PANIC_LINES: usize = 12;

/// What a crash report shows of the program's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastOutput {
    /// The last panic: "thread 'main' panicked at src/main.rs:3:5:", the message, and the
    /// first lines after it.
    pub panic: Vec<String>,
    /// The last lines of standard output, then those of standard error (each stream on its
    /// own: two pipes have no common order). One stream on a pseudo-terminal.
    pub lines: Vec<String>,
}

/// A running (or exited) program.
pub struct Program {
    pid: u32,
    started: Instant,
    exit: Arc<ExitCell>,
    kept: Arc<Mutex<Kept>>,
}

/// The exit status, set once by the waiter thread.
#[derive(Default)]
struct ExitCell {
    status: Mutex<Option<ExitStatus>>,
    changed: Condvar,
}

impl ExitCell {
    fn wait(&self, timeout: Duration) -> Option<ExitStatus> {
        let guard = self.status.lock().expect("exit lock");
        let (guard, _) = self.changed.wait_timeout_while(guard, timeout, |status| status.is_none()).expect("exit lock");
        *guard
    }
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    pub status: ExitStatus,
    /// It did not stop within the timeout after SIGTERM and was killed.
    pub forced: bool,
}

impl Program {
    /// Starts the program. Its output goes to `output`; `on_exit` is called once, from
    /// another thread, after it exited and its output was read to the end.
    pub fn spawn(launch: &Launch, output: OutputSink, on_exit: impl FnOnce(u32, ExitStatus) + Send + 'static) -> Result<Self> {
        let mut command = if launch.sockets.is_empty() {
            let mut command = Command::new(&launch.executable);
            command.args(&launch.args);
            command
        } else {
            // The trampoline (cargo-hot itself) puts the sockets on 3.. and sets LISTEN_PID.
            let mut command = Command::new(&launch.trampoline);
            command.arg(&launch.executable).args(&launch.args);
            let fds: Vec<String> = launch.sockets.iter().map(|fd| fd.to_string()).collect();
            command.env(crate::sockets::TRAMPOLINE_ENV, fds.join(",")).env("LISTEN_FDNAMES", &launch.socket_names);
            sys::inherit_fds(&mut command, launch.sockets.clone());
            command
        };
        command.envs(launch.env.iter().map(|(k, v)| (k, v)));
        if launch.detach_stdin {
            command.stdin(Stdio::null());
        }
        let terminal = if launch.terminal { sys::open_pty().ok() } else { None };
        let readers: Vec<(Stream, OwnedFd)> = match terminal {
            Some((master, slave)) => {
                command.stdout(Stdio::from(slave.try_clone()?)).stderr(Stdio::from(slave));
                vec![(Stream::Stdout, master)]
            }
            None => {
                command.stdout(Stdio::piped()).stderr(Stdio::piped());
                Vec::new()
            }
        };
        // Its own process group: Ctrl-C in the terminal reaches cargo hot, which stops the
        // program gracefully, and a stop reaches every process the program started.
        command.process_group(0);
        sys::kill_with_parent(&mut command);
        let mut child = command.spawn().with_context(|| format!("cannot start {}", launch.executable.display()))?;
        // Our copies of the terminal's program side go with the command: reading the other
        // side then ends when the program (and whatever it started) has closed it.
        drop(command);
        let pid = child.id();
        let kept = Arc::new(Mutex::new(Kept::default()));
        let mut forwarders = Vec::new();
        for (stream, fd) in readers {
            forwarders.push(forward(std::fs::File::from(fd), stream, output.clone(), kept.clone()));
        }
        if let Some(out) = child.stdout.take() {
            forwarders.push(forward(out, Stream::Stdout, output.clone(), kept.clone()));
        }
        if let Some(err) = child.stderr.take() {
            forwarders.push(forward(err, Stream::Stderr, output, kept.clone()));
        }
        let exit = Arc::new(ExitCell::default());
        let waiter_exit = exit.clone();
        std::thread::Builder::new().name(format!("program-{pid}")).spawn(move || {
            let status = child.wait().unwrap_or_else(|_| ExitStatus::from_raw(127 << 8));
            // Whatever the program started (workers, a shell's children) goes with it, and
            // with them the last writers of its output.
            sys::signal_group(pid, libc::SIGKILL);
            let deadline = Instant::now() + Duration::from_millis(500);
            for forwarder in forwarders {
                while !forwarder.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            *waiter_exit.status.lock().expect("exit lock") = Some(status);
            waiter_exit.changed.notify_all();
            on_exit(pid, status);
        })?;
        Ok(Program { pid, started: Instant::now(), exit, kept })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// The exit status, once it has exited (and its output was read).
    pub fn exited(&self) -> Option<ExitStatus> {
        *self.exit.status.lock().expect("exit lock")
    }

    /// What a crash report shows of its output.
    pub fn last_output(&self) -> LastOutput {
        self.kept.lock().map(|kept| kept.report()).unwrap_or_default()
    }

    /// SIGTERM to the process group, without waiting.
    pub fn terminate(&self) {
        if self.exited().is_none() {
            sys::signal_group(self.pid, libc::SIGTERM);
        }
    }

    /// Waits up to `timeout` for an exit that was asked for, then SIGKILL.
    pub fn finish(&self, timeout: Duration) -> Stopped {
        if let Some(status) = self.exit.wait(timeout) {
            return Stopped { status, forced: false };
        }
        sys::signal_group(self.pid, libc::SIGKILL);
        let status = self.exit.wait(Duration::from_secs(10)).unwrap_or_else(|| ExitStatus::from_raw(libc::SIGKILL));
        Stopped { status, forced: true }
    }

    /// SIGTERM, then SIGKILL after `timeout`.
    pub fn stop(&self, timeout: Duration) -> Stopped {
        self.terminate();
        self.finish(timeout)
    }
}

/// The lines kept of one program's output.
#[derive(Default)]
struct Kept {
    stdout: VecDeque<String>,
    stderr: VecDeque<String>,
    panic: Vec<String>,
    /// Lines of the current panic still to keep.
    panic_left: usize,
}

impl Kept {
    fn push(&mut self, stream: Stream, line: String) {
        if is_panic_line(&line) {
            self.panic = vec![line.clone()];
            self.panic_left = PANIC_LINES - 1;
        } else if self.panic_left > 0 {
            self.panic.push(line.clone());
            self.panic_left -= 1;
        }
        let lines = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        lines.push_back(line);
        while lines.len() > KEPT_LINES {
            lines.pop_front();
        }
    }

    /// The panic, then the last lines that are not already part of it.
    fn report(&self) -> LastOutput {
        let lines = self.stdout.iter().chain(&self.stderr).filter(|line| !self.panic.contains(line)).cloned().collect();
        LastOutput { panic: self.panic.clone(), lines }
    }
}

/// `thread 'main' panicked at src/main.rs:3:5:`, or with the thread's id as newer Rust
/// prints it, `thread 'tokio-rt-worker' (19400) panicked at ...` (Rust 1.73 and later put the
/// message on the next line; earlier ones after the location).
fn is_panic_line(line: &str) -> bool {
    line.starts_with("thread '") && line.contains(" panicked at ")
}

/// Passes the program's output on as it comes (partial lines included) and keeps its lines
/// (without colours) for a crash report.
fn forward(mut from: impl Read + Send + 'static, stream: Stream, to: OutputSink, kept: Arc<Mutex<Kept>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        let mut partial = Vec::new();
        let keep = |bytes: &[u8]| {
            let line = crate::ui::strip_ansi(String::from_utf8_lossy(bytes).trim_end());
            if let Ok(mut kept) = kept.lock() {
                kept.push(stream, line);
            }
        };
        loop {
            // A pseudo-terminal reports EIO once the program side is closed: the end, too.
            let read = match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            to.write(stream, &buffer[..read]);
            partial.extend_from_slice(&buffer[..read]);
            while let Some(end) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                keep(&line);
            }
        }
        if !partial.is_empty() {
            keep(&partial);
        }
    })
}

/// "exited with status 101", "killed by SIGSEGV (core dumped)".
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    let signal = status.signal().unwrap_or(0);
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        _ => "",
    };
    let core = if status.core_dumped() { " (core dumped)" } else { "" };
    if name.is_empty() {
        format!("killed by signal {signal}{core}")
    } else {
        format!("killed by {name}{core}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn launch(script: &str) -> Launch {
        Launch { executable: "/bin/sh".into(), args: vec!["-c".into(), script.into()], ..Default::default() }
    }

    fn spawn(script: &str) -> (Program, mpsc::Receiver<(u32, ExitStatus)>) {
        let (sender, exits) = mpsc::channel();
        let program = Program::spawn(&launch(script), OutputSink::discard(), move |pid, status| {
            let _ = sender.send((pid, status));
        })
        .unwrap();
        (program, exits)
    }

    #[test]
    fn stop_is_graceful_first() {
        let (program, _) = spawn("trap 'exit 7' TERM; while :; do sleep 0.01; done");
        std::thread::sleep(Duration::from_millis(200));
        let stopped = program.stop(Duration::from_secs(10));
        assert_eq!((stopped.status.code(), stopped.forced), (Some(7), false), "{}", describe_exit(stopped.status));
    }

    #[test]
    fn a_program_ignoring_sigterm_is_killed() {
        let (program, _) = spawn("trap '' TERM; while :; do sleep 0.01; done");
        std::thread::sleep(Duration::from_millis(200));
        let stopped = program.stop(Duration::from_millis(300));
        assert_eq!((stopped.status.signal(), stopped.forced), (Some(libc::SIGKILL), true));
        assert_eq!(describe_exit(stopped.status), "killed by SIGKILL");
    }

    #[test]
    fn an_exit_is_reported_once_with_the_pid() {
        let (program, exits) = spawn("exit 3");
        let (pid, status) = exits.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(pid, program.pid());
        assert_eq!(describe_exit(status), "exited with status 3");
        assert_eq!(program.exited(), Some(status));
        assert!(exits.recv_timeout(Duration::from_millis(100)).is_err(), "reported once");
    }

    #[test]
    fn the_last_lines_of_output_are_kept_for_a_crash_report() {
        let (program, exits) = spawn("for i in $(seq 1 40); do echo line $i; done; echo oops >&2; exit 1");
        exits.recv_timeout(Duration::from_secs(10)).unwrap();
        let output = program.last_output();
        assert_eq!(output.lines.len(), KEPT_LINES + 1, "{output:?}");
        assert_eq!(output.lines[KEPT_LINES - 1], "line 40");
        assert_eq!(output.lines.last().map(String::as_str), Some("oops"), "stderr comes last");
        assert!(!output.lines.contains(&"line 1".to_string()), "only the last lines are kept");
        assert!(output.panic.is_empty());
    }

    #[test]
    fn a_panic_is_kept_even_when_a_backtrace_follows() {
        let mut script = String::from("echo 'thread '\"'\"'main'\"'\"' panicked at src/main.rs:3:5:' >&2; echo 'no DATABASE_URL' >&2; echo 'stack backtrace:' >&2;");
        script.push_str("for i in $(seq 0 30); do echo \"  $i: frame\" >&2; done; exit 101");
        let (program, exits) = spawn(&script);
        exits.recv_timeout(Duration::from_secs(10)).unwrap();
        let output = program.last_output();
        assert_eq!(output.panic[0], "thread 'main' panicked at src/main.rs:3:5:");
        assert_eq!(output.panic[1], "no DATABASE_URL");
        assert_eq!(output.panic.len(), PANIC_LINES, "the first lines of the backtrace: {output:?}");
        assert_eq!(output.lines.last().map(String::as_str), Some("  30: frame"));
    }

    #[test]
    fn panic_lines_with_and_without_the_thread_id() {
        assert!(is_panic_line("thread 'main' panicked at src/main.rs:3:5:"));
        assert!(is_panic_line("thread 'tokio-rt-worker' (19400) panicked at crates/web/src/lib.rs:38:75:"));
        assert!(!is_panic_line("  12: std::panicking::begin_panic"));
    }

    #[test]
    fn on_a_terminal_the_program_sees_a_terminal_and_its_colours_pass() {
        let (sender, received) = mpsc::channel();
        let sink = OutputSink::forwarding(sender);
        let mut launch = launch("if [ -t 1 ] && [ -t 2 ]; then printf '\\033[32mgreen\\033[0m\\n'; else echo pipe; fi");
        launch.terminal = true;
        let (exit_sender, exits) = mpsc::channel();
        let program = Program::spawn(&launch, sink, move |_, status| {
            let _ = exit_sender.send(status);
        })
        .unwrap();
        exits.recv_timeout(Duration::from_secs(10)).unwrap();
        let bytes: Vec<u8> = received.try_iter().flatten().collect();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("\x1b[32mgreen"), "{text:?}");
        assert_eq!(program.last_output().lines, vec!["green"], "kept without colours or \\r");
    }
}
