//! The real watcher on real files: editors' save patterns, a storm of changes, changes
//! queued while a build runs, new directories, and what is never watched.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use cargo_hot::rules::Excluded;
use cargo_hot::wake::Wake;
use cargo_hot::watch::{collect_burst, FileWatcher};

const DEBOUNCE: Duration = Duration::from_millis(100);
const FIRST_EVENT: Duration = Duration::from_secs(10);

struct Tree {
    dir: tempfile::TempDir,
    watcher: FileWatcher,
    wake: Receiver<Wake>,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("crates/handlers/src")).unwrap();
        std::fs::create_dir_all(dir.path().join("target/debug")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join("crates/handlers/src/lib.rs"), "v0").unwrap();
        let (sender, wake) = mpsc::channel();
        let root = dir.path().canonicalize().unwrap();
        // cargo hot's own output redirected into the workspace (`cargo hot run > dev.log`).
        let excluded = Excluded { dirs: vec![root.join("target")], files: vec![root.join("dev.log")] };
        let watcher = FileWatcher::new(std::slice::from_ref(&root), excluded, sender).unwrap();
        Tree { dir, watcher, wake }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().canonicalize().unwrap().join(relative)
    }

    /// The next burst, or None if nothing happens within `wait`.
    fn burst(&mut self, wait: Duration) -> Option<Vec<PathBuf>> {
        match self.wake.recv_timeout(wait) {
            Ok(Wake::Changed(first)) => {
                let (mut paths, others) = collect_burst(&self.wake, first, DEBOUNCE);
                assert!(others.is_empty(), "only changes here");
                let found = self.watcher.follow_new_directories(&paths);
                paths.extend(found);
                Some(paths)
            }
            Ok(Wake::WatchError(err)) => panic!("watcher error: {err}"),
            Ok(other) => unreachable!("only changes here: {other:?}"),
            Err(_) => None,
        }
    }
}

fn contains(paths: &[PathBuf], path: &Path) -> bool {
    paths.iter().any(|p| p == path)
}

#[test]
fn every_editor_save_pattern_is_seen() {
    let mut tree = Tree::new();
    let lib = tree.path("crates/handlers/src/lib.rs");

    // In place (VS Code, most editors).
    std::fs::write(&lib, "v1").unwrap();
    assert!(contains(&tree.burst(FIRST_EVENT).unwrap(), &lib), "in-place write");

    // Write a temporary file, then rename it over the original (vim, JetBrains "safe write").
    let temp = tree.path("crates/handlers/src/.lib.rs.tmp");
    std::fs::write(&temp, "v2").unwrap();
    std::fs::rename(&temp, &lib).unwrap();
    assert!(contains(&tree.burst(FIRST_EVENT).unwrap(), &lib), "write then rename over");

    // Delete, then create (some tools regenerate files).
    std::fs::remove_file(&lib).unwrap();
    std::fs::write(&lib, "v3").unwrap();
    assert!(contains(&tree.burst(FIRST_EVENT).unwrap(), &lib), "delete then create");
    assert_eq!(std::fs::read_to_string(&lib).unwrap(), "v3");
}

#[test]
fn a_storm_of_changes_is_one_burst() {
    let mut tree = Tree::new();
    // Like a `git checkout` touching hundreds of files.
    let files: Vec<PathBuf> = (0..300).map(|i| tree.path(&format!("crates/handlers/src/m{i}.rs"))).collect();
    for file in &files {
        std::fs::write(file, "pub fn f() {}").unwrap();
    }
    let burst = tree.burst(FIRST_EVENT).unwrap();
    let missing = files.iter().filter(|f| !contains(&burst, f)).count();
    assert_eq!(missing, 0, "all 300 files are in the one burst");
    assert_eq!(tree.burst(Duration::from_millis(500)), None, "and no second burst follows");
}

#[test]
fn changes_during_a_build_are_queued_and_the_last_content_wins() {
    let mut tree = Tree::new();
    let lib = tree.path("crates/handlers/src/lib.rs");
    std::fs::write(&lib, "first").unwrap();
    let first = tree.burst(FIRST_EVENT).unwrap();
    assert!(contains(&first, &lib));

    // "Building": the caller is busy while three more saves happen.
    for version in ["second", "third", "last"] {
        std::fs::write(&lib, version).unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    let queued = tree.burst(Duration::from_millis(10)).expect("the edits made during the build are waiting");
    assert_eq!(queued.iter().filter(|p| **p == lib).count(), 1, "one entry per path: {queued:?}");
    assert_eq!(std::fs::read_to_string(&lib).unwrap(), "last");
    assert_eq!(tree.burst(Duration::from_millis(500)), None, "one build for the queue, not one per edit");
}

#[test]
fn new_directories_and_the_files_in_them_are_picked_up() {
    let mut tree = Tree::new();
    let dir = tree.path("crates/handlers/src/routes/admin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mod.rs"), "pub fn f() {}").unwrap();
    let mut seen = tree.burst(FIRST_EVENT).unwrap();
    if !contains(&seen, &dir.join("mod.rs")) {
        seen.extend(tree.burst(FIRST_EVENT).unwrap_or_default());
    }
    assert!(contains(&seen, &dir.join("mod.rs")), "{seen:?}");

    // And the new directory stays watched.
    std::fs::write(dir.join("users.rs"), "pub fn g() {}").unwrap();
    assert!(contains(&tree.burst(FIRST_EVENT).unwrap(), &dir.join("users.rs")));
}

#[test]
fn the_target_dir_git_and_cargo_hots_own_output_are_never_reported() {
    let mut tree = Tree::new();
    std::fs::write(tree.path("target/debug/server"), "binary").unwrap();
    std::fs::write(tree.path(".git/index"), "index").unwrap();
    for line in 0..20 {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new().create(true).append(true).open(tree.path("dev.log")).unwrap();
        writeln!(log, "[hot] line {line}").unwrap();
    }
    assert_eq!(tree.burst(Duration::from_millis(500)), None);
    // Another file beside it is seen.
    std::fs::write(tree.path("notes.txt"), "x").unwrap();
    assert!(contains(&tree.burst(FIRST_EVENT).unwrap(), &tree.path("notes.txt")));
}
