//! Ctrl-C and SIGTERM. The signal thread tells the session loop, and at once stops the
//! builds in flight (cargo and rustc run in their own process groups, registered here while
//! they run), so that stopping never waits for a build to finish.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Mutex;

use anyhow::{Context, Result};

use crate::wake::Wake;

static STOPPING: AtomicBool = AtomicBool::new(false);
static BUILDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Sends each SIGINT and SIGTERM to `wake`, after stopping the registered builds.
pub fn install(wake: Sender<Wake>) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .context("cannot install signal handlers")?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for signal in signals.forever() {
            STOPPING.store(true, Ordering::SeqCst);
            for group in BUILDS.lock().map(|g| g.clone()).unwrap_or_default() {
                crate::sys::signal_group(group, libc::SIGTERM);
            }
            if wake.send(Wake::Signal(signal)).is_err() {
                break;
            }
        }
    })?;
    Ok(())
}

/// Whether cargo hot was told to stop: a build that failed meanwhile was stopped, not broken.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// A build process group registered for stopping; unregistered when dropped.
pub struct Registered(u32);

/// Registers the process group led by `pid` (started with `process_group(0)`). If a signal
/// already came, the group is stopped at once.
pub fn register_build(pid: u32) -> Registered {
    if let Ok(mut builds) = BUILDS.lock() {
        builds.push(pid);
    }
    if stopping() {
        crate::sys::signal_group(pid, libc::SIGTERM);
    }
    Registered(pid)
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut builds) = BUILDS.lock() {
            builds.retain(|pid| *pid != self.0);
        }
    }
}
