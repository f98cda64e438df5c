//! The rules about files that classifying, watching, explaining and the source check share:
//! which files always restart by their name, which change the plan itself, and which are
//! never changes at all (the target directory, `.git`, cargo hot's own output).

use std::path::{Path, PathBuf};

use serde::Serialize;

/// A file whose change always rebuilds and restarts, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartFile {
    Manifest,
    LockFile,
    BuildScript,
    DotEnv,
    Toolchain,
    CargoConfig,
}

/// The names `explain` lists.
pub const RESTART_FILE_NAMES: &str = "Cargo.toml, Cargo.lock, build.rs, .env, rust-toolchain(.toml), .cargo/config(.toml)";

/// The restart file `path` is, if any (`build.rs` only beside a `Cargo.toml`: elsewhere it is
/// a module named `build`).
pub fn restart_file(path: &Path) -> Option<RestartFile> {
    let name = path.file_name()?.to_str()?;
    let in_cargo_dir = path.parent().and_then(|p| p.file_name()).is_some_and(|d| d == ".cargo");
    match name {
        "Cargo.toml" => Some(RestartFile::Manifest),
        "Cargo.lock" => Some(RestartFile::LockFile),
        "build.rs" if path.with_file_name("Cargo.toml").is_file() => Some(RestartFile::BuildScript),
        ".env" => Some(RestartFile::DotEnv),
        "rust-toolchain.toml" | "rust-toolchain" => Some(RestartFile::Toolchain),
        "config.toml" | "config" if in_cargo_dir => Some(RestartFile::CargoConfig),
        _ => None,
    }
}

/// Files whose change may change the plan itself (boundaries, their dependencies, rules,
/// the environment): manifests, the lock file and cargo's configuration.
pub fn changes_the_plan(path: &Path) -> bool {
    matches!(restart_file(path), Some(RestartFile::Manifest | RestartFile::LockFile | RestartFile::CargoConfig))
}

/// Whether `path` is in version-control metadata (`.git`).
pub fn in_vcs_metadata(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == ".git")
}

/// Directories and files that are never changes: the target directory (builds, patches,
/// cargo hot's session files) and the files cargo hot itself writes to (its own output
/// redirected into the workspace).
#[derive(Debug, Clone, Default)]
pub struct Excluded {
    pub dirs: Vec<PathBuf>,
    pub files: Vec<PathBuf>,
}

impl Excluded {
    pub fn new(target_dir: &Path) -> Self {
        let target = target_dir.canonicalize().unwrap_or_else(|_| target_dir.to_path_buf());
        let mut dirs = vec![target_dir.to_path_buf()];
        if target != target_dir {
            dirs.push(target);
        }
        Excluded { dirs, files: own_output_files() }
    }

    pub fn contains(&self, path: &Path) -> bool {
        self.why(path).is_some()
    }

    /// Why `path` is never a change, if it is not.
    pub fn why(&self, path: &Path) -> Option<NotSource> {
        if self.dirs.iter().any(|d| path.starts_with(d)) {
            Some(NotSource::TargetDir)
        } else if in_vcs_metadata(path) {
            Some(NotSource::VcsMetadata)
        } else if self.files.iter().any(|f| f == path) {
            Some(NotSource::OwnOutput)
        } else {
            None
        }
    }
}

/// Why a file is never a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotSource {
    /// Builds, patches, cargo hot's session files.
    TargetDir,
    /// `.git`.
    VcsMetadata,
    /// cargo hot's own standard output or error, redirected to a file.
    OwnOutput,
}

/// The regular files cargo hot's standard output and error are redirected to
/// (`cargo hot run > dev.log 2>&1` in the workspace): writing to them must not count as an
/// edit, or every line cargo hot prints would be one more change.
fn own_output_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for fd in [1, 2] {
        if let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{fd}")) {
            if target.is_file() && !files.contains(&target) {
                files.push(target);
            }
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_files_by_name_and_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), "").unwrap();
        assert_eq!(restart_file(&dir.path().join("build.rs")), Some(RestartFile::BuildScript));
        assert_eq!(restart_file(&dir.path().join("src/build.rs")), None, "a module named build.rs");
        assert_eq!(restart_file(Path::new("/ws/.cargo/config.toml")), Some(RestartFile::CargoConfig));
        assert_eq!(restart_file(Path::new("/ws/config.toml")), None);
        assert!(changes_the_plan(Path::new("/ws/Cargo.lock")) && !changes_the_plan(Path::new("/ws/.env")));
    }

    #[test]
    fn excluded_covers_target_git_and_own_output() {
        let excluded = Excluded { dirs: vec!["/ws/target".into()], files: vec!["/ws/dev.log".into()] };
        assert!(excluded.contains(Path::new("/ws/target/debug/server")));
        assert!(excluded.contains(Path::new("/ws/.git/index")));
        assert_eq!(excluded.why(Path::new("/ws/dev.log")), Some(NotSource::OwnOutput));
        assert!(!excluded.contains(Path::new("/ws/src/main.rs")));
    }
}
