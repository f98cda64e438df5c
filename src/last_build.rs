//! The last build of a running session, written down for `cargo hot explain`.
//!
//! `explain` needs a build to know which crate compiles which file. Run beside a session, its
//! own `cargo build` would find cargo's outputs changed by the session's patches and rebuilds
//! without cargo, and build again (8 s on atuin). So each session writes its last successful
//! build to `target/hot/<bin>/last-build.json`, and `explain` reads that while the session
//! runs, with the same features and profile, and builds only otherwise.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::build::HostBuild;
use crate::cli::Selection;
use crate::metadata::{Boundary, Plan};

const FILE: &str = "last-build.json";

#[derive(Serialize, Deserialize)]
pub struct LastBuild {
    /// The session's process.
    pub session: u32,
    /// What selects the build besides the binary: features and profile (see [`selection_key`]).
    pub selection: String,
    /// The boundaries as the build settled them.
    pub boundaries: Vec<Boundary>,
    pub build: HostBuild,
}

fn path(plan: &Plan) -> PathBuf {
    plan.session_dir().join(FILE)
}

/// The features and profile of a selection, in a form two of them can be compared by.
pub fn selection_key(selection: &Selection) -> String {
    format!("{:?} {:?} {:?}", selection.feature_args(), selection.release, selection.profile)
}

/// Writes this session's build down (whole or not at all: a reader never sees half a file).
pub fn record(plan: &Plan, build: &HostBuild) {
    let last = LastBuild { session: std::process::id(), selection: selection_key(&plan.selection), boundaries: plan.boundaries.clone(), build: build.clone() };
    let Ok(text) = serde_json::to_string(&last) else { return };
    let target = path(plan);
    let partial = target.with_extension(format!("json.{}", std::process::id()));
    if std::fs::write(&partial, text).is_ok() {
        let _ = std::fs::rename(&partial, &target);
    }
}

/// Removes this session's record (at its end).
pub fn forget(plan: &Plan) {
    if read(plan).is_some_and(|last| last.session == std::process::id()) {
        let _ = std::fs::remove_file(path(plan));
    }
}

fn read(plan: &Plan) -> Option<LastBuild> {
    serde_json::from_str(&std::fs::read_to_string(path(plan)).ok()?).ok()
}

/// The build of the session running for this plan's binary, with the same features and
/// profile, if there is one and its program is still on disk.
pub fn of_running_session(plan: &Plan) -> Option<LastBuild> {
    let last = read(plan)?;
    let running = last.session != std::process::id() && is_cargo_hot(last.session);
    (running && last.selection == selection_key(&plan.selection) && last.build.executable.is_file()).then_some(last)
}

/// Whether `pid` is a cargo-hot process (not another that took the pid of one that died).
fn is_cargo_hot(pid: u32) -> bool {
    let Ok(command) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let program = command.split(|b| *b == 0).next().unwrap_or_default();
    let name = std::path::Path::new(std::ffi::OsStr::from_bytes(program));
    name.file_name().is_some_and(|n| n.to_string_lossy().starts_with("cargo-hot"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_live_cargo_hot_process_counts_as_a_session() {
        let mut sleeper = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        assert!(!is_cargo_hot(sleeper.id()), "another program");
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        assert!(!is_cargo_hot(sleeper.id()), "gone");
    }
}
