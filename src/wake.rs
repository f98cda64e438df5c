//! What wakes the session loop: file changes, keys, signals and news of the program, all on
//! one channel, so the loop waits in one place and handles them in order.

use std::path::PathBuf;
use std::process::ExitStatus;

#[derive(Debug)]
pub enum Wake {
    /// Paths touched by one file-system event.
    Changed(Vec<PathBuf>),
    /// The watcher itself failed.
    WatchError(String),
    /// A termination signal for cargo hot.
    Signal(i32),
    /// A key pressed on the terminal (see `keys`).
    Key(Key),
    /// The program exited or began accepting connections (see `supervisor`).
    Program(ProgramEvent),
}

/// The keys cargo hot answers on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `r`: rebuild and restart now.
    Restart,
    /// `c`: clear the screen.
    Clear,
    /// `q`: stop the program and quit.
    Quit,
}

/// What a program's watchers report (each names the program, so news of a program that was
/// already replaced is recognised as such).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramEvent {
    /// It exited; its output has been read to the end.
    Exited { pid: u32, status: ExitStatus },
    /// It accepts connections on `address`.
    Ready { pid: u32, address: String },
    /// It has not accepted a connection within the time allowed (a worker, not a server).
    NeverReady { pid: u32 },
}
