//! Watching the files the build depends on. Every directory of the workspace (and of local
//! packages outside it) gets its own non-recursive watch, found with the `ignore` walker so
//! that the target directory, `.git` and git-ignored trees cost nothing; directories created
//! later are added when they appear.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::rules::Excluded;
use crate::wake::Wake;

pub struct FileWatcher {
    watcher: RecommendedWatcher,
    watched: HashSet<PathBuf>,
    excluded: Excluded,
}

impl FileWatcher {
    /// Watches `roots` recursively, except for what is `excluded` (the target dir, `.git`,
    /// cargo hot's own output files: see `rules`).
    pub fn new(roots: &[PathBuf], excluded: Excluded, wake: Sender<Wake>) -> Result<Self> {
        let filter_excluded = excluded.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let message = match event {
                Ok(event) => {
                    if !matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any) {
                        return;
                    }
                    if matches!(event.kind, EventKind::Modify(notify::event::ModifyKind::Metadata(_))) {
                        return;
                    }
                    let paths: Vec<PathBuf> =
                        event.paths.into_iter().filter(|p| !filter_excluded.contains(p)).collect();
                    if paths.is_empty() {
                        return;
                    }
                    Wake::Changed(paths)
                }
                Err(err) => Wake::WatchError(err.to_string()),
            };
            let _ = wake.send(message);
        })
        .context("cannot start the file watcher")?;
        let mut this = FileWatcher { watcher, watched: HashSet::new(), excluded };
        for root in roots {
            this.add_tree(root)?;
        }
        Ok(this)
    }

    /// Adds watches for `dir` and every directory below it that is not excluded or ignored.
    pub fn add_tree(&mut self, dir: &Path) -> Result<()> {
        self.add_tree_with(dir, true)
    }

    /// Adds watches for a tree the user named (`watch`), git-ignored or not.
    pub fn add_named_tree(&mut self, dir: &Path) -> Result<()> {
        self.add_tree_with(dir, false)
    }

    /// Watches the directories holding files a crate compiles, even git-ignored ones
    /// (generated code included with `include!`).
    pub fn add_directories(&mut self, dirs: impl IntoIterator<Item = PathBuf>) {
        for dir in dirs {
            if !self.watched.contains(&dir)
                && dir.is_dir()
                && !self.excluded.contains(&dir)
                && self.watcher.watch(&dir, RecursiveMode::NonRecursive).is_ok()
            {
                self.watched.insert(dir);
            }
        }
    }

    fn add_tree_with(&mut self, dir: &Path, respect_gitignore: bool) -> Result<()> {
        let dir = dir.canonicalize().with_context(|| format!("cannot watch {}", dir.display()))?;
        let excluded = self.excluded.clone();
        let walker = ignore::WalkBuilder::new(&dir)
            .hidden(false)
            .require_git(false)
            .git_ignore(respect_gitignore)
            .ignore(respect_gitignore)
            .filter_entry(move |entry| {
                entry.file_type().is_some_and(|t| t.is_dir()) && !excluded.contains(entry.path())
            })
            .build();
        for entry in walker.flatten() {
            let path = entry.into_path();
            if self.watched.insert(path.clone()) {
                if let Err(err) = self.watcher.watch(&path, RecursiveMode::NonRecursive) {
                    self.watched.remove(&path);
                    // A directory removed while we walk is not an error worth stopping for.
                    if path.exists() {
                        return Err(err).with_context(|| format!("cannot watch {}", path.display()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Called with the paths of a burst: new directories get watched. Returns the files
    /// already inside them, which may have been written before their watch existed
    /// (`mkdir -p a/b && echo > a/b/c.rs`).
    pub fn follow_new_directories(&mut self, paths: &[PathBuf]) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for path in paths {
            // A directory in a burst is new, or was removed and created again (a generator's
            // `rm -rf` then regenerate): its old watch died with it, so watch it afresh.
            if path.is_dir() && !self.excluded.contains(path) {
                if let Ok(canonical) = path.canonicalize() {
                    self.watched.retain(|w| !w.starts_with(&canonical));
                }
                let _ = self.add_tree(path);
                found.extend(
                    ignore::WalkBuilder::new(path)
                        .hidden(false)
                        .require_git(false)
                        .build()
                        .flatten()
                        .filter(|e| e.file_type().is_some_and(|t| t.is_file()))
                        .map(|e| e.into_path()),
                );
            }
        }
        self.watched.retain(|p| p.exists());
        found
    }

    /// Number of directories watched (shown at start).
    pub fn directory_count(&self) -> usize {
        self.watched.len()
    }
}

/// The longest a burst may last before it is handled anyway.
const MAX_BURST: Duration = Duration::from_secs(2);

/// Collects one burst: `first`, then every change that follows within `debounce` of the
/// previous one. A save, an editor's write-rename dance or a `git checkout` of hundreds of
/// files is one burst; changes made while the caller was busy (building) are already
/// waiting in the channel and join the next burst. Each path appears once. A signal ends
/// the collection, and is returned with the paths (as is anything else that is not a change)
/// to be handled after them, in order.
pub fn collect_burst(wake: &Receiver<Wake>, first: Vec<PathBuf>, debounce: Duration) -> (Vec<PathBuf>, Vec<Wake>) {
    let mut paths = first;
    let mut others = Vec::new();
    // A file written without pause (a database, a log) must not hold the loop forever.
    let deadline = std::time::Instant::now() + MAX_BURST;
    while std::time::Instant::now() < deadline {
        match wake.recv_timeout(debounce) {
            Ok(Wake::Changed(more)) => paths.extend(more),
            Ok(signal @ Wake::Signal(_)) => {
                others.push(signal);
                break;
            }
            Ok(other) => others.push(other),
            Err(_) => break,
        }
    }
    let mut seen = HashSet::new();
    paths.retain(|p| seen.insert(p.clone()));
    (paths, others)
}
