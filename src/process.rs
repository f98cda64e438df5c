//! The program cargo hot runs: started in its own process group with the parent-death
//! signal set (so it never outlives cargo hot), stopped with SIGTERM to the whole group and
//! SIGKILL after a timeout, so a server that binds its own port can bind it again.

use std::ffi::OsString;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::RawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use crate::sys;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How to start the program.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    pub executable: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    /// Listening sockets to pass on (cargo hot's descriptors) and their LISTEN_FDNAMES.
    pub sockets: Vec<RawFd>,
    /// The cargo-hot executable that passes them on (see `sockets::run_trampoline`).
    pub trampoline: PathBuf,
    pub socket_names: String,
}

/// How many lines of each output stream are kept for a crash report.
const KEPT_LINES: usize = 10;

pub struct RunningProgram {
    child: Child,
    pub started: Instant,
    stdout: Arc<Mutex<VecDeque<String>>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl RunningProgram {
    pub fn spawn(launch: &Launch) -> Result<Self> {
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
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        // Its own process group: Ctrl-C in the terminal reaches cargo hot, which stops the
        // program gracefully, and a stop reaches every process the program started.
        command.process_group(0);
        sys::kill_with_parent(&mut command);
        let mut child = command.spawn().with_context(|| format!("cannot start {}", launch.executable.display()))?;
        let (stdout, stderr) = (Arc::new(Mutex::new(VecDeque::new())), Arc::new(Mutex::new(VecDeque::new())));
        if let Some(out) = child.stdout.take() {
            forward(out, std::io::stdout(), stdout.clone());
        }
        if let Some(err) = child.stderr.take() {
            forward(err, std::io::stderr(), stderr.clone());
        }
        Ok(RunningProgram { child, started: Instant::now(), stdout, stderr })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the program printed on stdout, then those on stderr (where a panic
    /// message goes). Each stream is kept on its own: the two pipes have no common order.
    pub fn last_lines(&self) -> Vec<String> {
        let lines = |kept: &Arc<Mutex<VecDeque<String>>>| kept.lock().map(|l| l.iter().cloned().collect::<Vec<_>>()).unwrap_or_default();
        let mut all = lines(&self.stdout);
        all.extend(lines(&self.stderr));
        all
    }

    /// The exit status if the program has exited (crashed or finished) on its own.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM to the process group, then SIGKILL after `timeout`. Returns the exit status.
    pub fn stop(mut self, timeout: Duration) -> Result<ExitStatus> {
        self.terminate();
        self.finish(timeout)
    }

    /// SIGTERM to the process group, without waiting.
    pub fn terminate(&mut self) {
        if self.try_exit().is_none() {
            sys::signal_group(self.pid(), libc::SIGTERM);
        }
    }

    /// Waits up to `timeout` for an exit that was asked for, then SIGKILL.
    pub fn finish(mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.try_exit() {
                // Stragglers of the group (the program's own children) go too.
                sys::signal_group(self.pid(), libc::SIGKILL);
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        sys::signal_group(self.pid(), libc::SIGKILL);
        Ok(self.child.wait()?)
    }
}

/// Copies the program's output through as it comes (partial lines included) and keeps its
/// last lines for a crash report.
fn forward(mut from: impl Read + Send + 'static, mut to: impl Write + Send + 'static, kept: Arc<Mutex<VecDeque<String>>>) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        let mut partial = Vec::new();
        loop {
            let read = match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            let _ = to.write_all(&buffer[..read]);
            let _ = to.flush();
            partial.extend_from_slice(&buffer[..read]);
            while let Some(end) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                let mut kept = kept.lock().expect("output lock");
                kept.push_back(String::from_utf8_lossy(&line).trim_end().to_string());
                while kept.len() > KEPT_LINES {
                    kept.pop_front();
                }
            }
        }
        if !partial.is_empty() {
            if let Ok(mut kept) = kept.lock() {
                kept.push_back(String::from_utf8_lossy(&partial).trim_end().to_string());
            }
        }
    });
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

    fn launch(script: &str) -> Launch {
        Launch { executable: "/bin/sh".into(), args: vec!["-c".into(), script.into()], ..Default::default() }
    }

    #[test]
    fn stop_is_graceful_first() {
        let program = RunningProgram::spawn(&launch("trap 'exit 7' TERM; while :; do sleep 0.01; done")).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let status = program.stop(Duration::from_secs(10)).unwrap();
        assert_eq!(status.code(), Some(7), "{}", describe_exit(status));
    }

    #[test]
    fn a_program_ignoring_sigterm_is_killed() {
        let program = RunningProgram::spawn(&launch("trap '' TERM; while :; do sleep 0.01; done")).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let status = program.stop(Duration::from_millis(300)).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(describe_exit(status), "killed by SIGKILL");
    }

    #[test]
    fn exits_are_reported() {
        let mut program = RunningProgram::spawn(&launch("exit 3")).unwrap();
        let status = loop {
            if let Some(status) = program.try_exit() {
                break status;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(describe_exit(status), "exited with status 3");
    }

    #[test]
    fn the_last_lines_of_output_are_kept_for_a_crash_report() {
        let mut program = RunningProgram::spawn(&launch("for i in $(seq 1 40); do echo line $i; done; echo oops >&2; exit 1")).unwrap();
        while program.try_exit().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        let lines = program.last_lines();
        assert_eq!(lines.len(), KEPT_LINES + 1, "{lines:?}");
        assert_eq!(lines[KEPT_LINES - 1], "line 40");
        assert_eq!(lines.last().map(String::as_str), Some("oops"), "stderr comes last");
        assert!(!lines.contains(&"line 1".to_string()), "only the last lines are kept");
    }
}
