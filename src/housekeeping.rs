//! What cargo hot leaves on disk, and when it goes. Under `target/hot/<bin>/`:
//!
//! - `patches/<session pid>/<program pid>/`: the patches of one running program (and the
//!   objects they were linked from). Only that process can load them: the directory goes when
//!   the program is replaced by a restart, the session's when it ends, and those of sessions
//!   that died without cleaning up when the next one starts.
//! - `patch-build/<unit>/`: the output and incremental cache of each hot crate's patch
//!   compiles, kept across sessions (the next session's warm-up starts from it), and
//!   `capture/objects-<unit>/`: the host crate's objects of its last link (the baseline of a
//!   patch of the binary, and what a rebuild links again). Both are named by cargo's unit key,
//!   which a new copy of the workspace, profile or feature set changes: those unused for a week
//!   are removed when a session starts.
//! - `deps/`: the libraries the host's dependencies are linked into; the newest three are
//!   kept (see `deps_library`).

use std::path::Path;
use std::time::{Duration, SystemTime};

/// Caches unused for this long are removed.
const UNUSED_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where the patches of the program `pid` of this session are (see the module's documentation).
pub fn program_patches(session_patches: &Path, pid: Option<u32>) -> std::path::PathBuf {
    session_patches.join(pid.map_or_else(|| "none".to_string(), |pid| pid.to_string()))
}

/// Removes the patch directories in `session` other than `current`'s: their programs are gone.
pub fn remove_other_programs(session: &Path, current: &Path) {
    let Ok(entries) = std::fs::read_dir(session) else { return };
    for entry in entries.flatten().filter(|e| e.path() != current) {
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// Removes the patches of sessions that have ended (`patches`: the directory of every
/// session's, named by their pids): their programs are gone with them.
pub fn remove_dead_sessions(patches: &Path) {
    let Ok(entries) = std::fs::read_dir(patches) else { return };
    for entry in entries.flatten() {
        let alive = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()).is_some_and(crate::sys::process_exists);
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Marks a cache directory as used now.
pub fn mark_used(dir: &Path) {
    if let Ok(file) = std::fs::File::open(dir) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// Removes the caches of `session_dir` unused for a week: patch-compile directories and kept
/// host objects of units no build has used since.
pub fn remove_unused_caches(session_dir: &Path) {
    let old = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age > UNUSED_FOR));
    let mut candidates = Vec::new();
    if let Ok(entries) = std::fs::read_dir(session_dir.join("patch-build")) {
        candidates.extend(entries.flatten().map(|e| e.path()));
    }
    if let Ok(entries) = std::fs::read_dir(session_dir.join("capture")) {
        candidates.extend(entries.flatten().map(|e| e.path()).filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("objects-"))));
    }
    for dir in candidates.into_iter().filter(|d| d.is_dir() && old(d)) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_unused_for_a_week_go_and_the_others_stay() {
        let session = tempfile::tempdir().unwrap();
        let (stale, fresh) = (session.path().join("patch-build/web-1"), session.path().join("patch-build/web-2"));
        let (objects, record) = (session.path().join("capture/objects-server-1"), session.path().join("capture/server-1.json"));
        for dir in [&stale, &fresh, &objects] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&record, "{}").unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(8 * 24 * 3600);
        for path in [&stale, &objects, &record] {
            std::fs::File::open(path).unwrap().set_modified(long_ago).unwrap();
        }
        remove_unused_caches(session.path());
        assert!(!stale.exists() && !objects.exists());
        assert!(fresh.exists() && record.exists(), "capture records are the builds' own");
    }
}
