//! cargo-hot's own executable as the other processes of a session run it: cargo runs it as
//! the rustc wrapper and the host's linker, and it starts programs as the socket trampoline.
//!
//! A session runs a copy in the target directory, named by the executable's contents, rather
//! than the file it was started from: rebuilding or reinstalling cargo-hot while a session
//! runs replaces that file (`current_exe()` then reads `... (deleted)`, and cargo could no
//! longer run the wrapper), and two versions of cargo-hot never share a path.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

/// Copies unused for this long (a session touches its copy at every build), other than the
/// current one, are removed.
const KEEP_OLD_COPIES: Duration = Duration::from_secs(7 * 24 * 3600);

/// The path of this executable's copy under `dir` (made if missing).
pub fn stable_copy(dir: &Path) -> Result<PathBuf> {
    let current = std::env::current_exe().context("cannot find cargo-hot's own executable")?;
    let bytes = std::fs::read(&current).with_context(|| format!("cannot read {}", current.display()))?;
    let copy = named_by_content(dir, "cargo-hot", "", &bytes, 0o755)?;
    remove_old_copies(dir, &copy);
    Ok(copy)
}

/// `bytes` as the file `<stem>-<hash of bytes><extension>` under `dir`, written once (to a
/// partial file renamed into place: a reader never sees half of it) with permissions `mode`,
/// and marked in use. Two versions of a file never share a path.
pub fn named_by_content(dir: &Path, stem: &str, extension: &str, bytes: &[u8], mode: u32) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    let path = dir.join(format!("{stem}-{:016x}{extension}", hasher.finish()));
    if !path.is_file() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let partial = dir.join(format!(".{stem}-{}.partial", std::process::id()));
        std::fs::write(&partial, bytes).with_context(|| format!("cannot write {}", partial.display()))?;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(mode)).with_context(|| format!("cannot set the permissions of {}", partial.display()))?;
        std::fs::rename(&partial, &path).with_context(|| format!("cannot create {}", path.display()))?;
    }
    keep_alive(&path);
    Ok(path)
}

/// Marks a copy as in use (sessions of other versions remove copies unused for a week).
pub fn keep_alive(copy: &Path) {
    if let Ok(file) = std::fs::File::options().write(true).open(copy) {
        let _ = file.set_modified(SystemTime::now());
    }
}

fn remove_old_copies(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let path = entry.path();
        let old = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| now.duration_since(t).unwrap_or_default() > KEEP_OLD_COPIES);
        if path != keep && old && entry.file_name().to_string_lossy().starts_with("cargo-hot-") {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_named_by_content_and_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = stable_copy(dir.path()).unwrap();
        let inode = |path: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap());
        let made = inode(&first);
        let second = stable_copy(dir.path()).unwrap();
        assert_eq!(first, second);
        assert_eq!(inode(&second), made, "not copied again");
        assert_eq!(std::fs::read(&first).unwrap(), std::fs::read(std::env::current_exe().unwrap()).unwrap());
    }
}
