//! The program cargo hot runs: started in its own process group with the parent-death
//! signal set (so it never outlives cargo hot), stopped with SIGTERM to the whole group and
//! SIGKILL after a timeout, so a server that binds its own port can bind it again.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};

use crate::sys;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How to start the program.
#[derive(Debug, Clone)]
pub struct Launch {
    pub executable: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

pub struct RunningProgram {
    child: Child,
}

impl RunningProgram {
    pub fn spawn(launch: &Launch) -> Result<Self> {
        let mut command = Command::new(&launch.executable);
        command.args(&launch.args).envs(launch.env.iter().map(|(k, v)| (k, v)));
        // Its own process group: Ctrl-C in the terminal reaches cargo hot, which stops the
        // program gracefully, and a stop reaches every process the program started.
        command.process_group(0);
        sys::kill_with_parent(&mut command);
        let child = command.spawn().with_context(|| format!("cannot start {}", launch.executable.display()))?;
        Ok(RunningProgram { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the program has exited (crashed or finished) on its own.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM to the process group, then SIGKILL after `timeout`. Returns the exit status.
    pub fn stop(mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.try_exit() {
            sys::signal_group(self.pid(), libc::SIGKILL);
            return Ok(status);
        }
        sys::signal_group(self.pid(), libc::SIGTERM);
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
        Launch { executable: "/bin/sh".into(), args: vec!["-c".into(), script.into()], env: vec![] }
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
}
