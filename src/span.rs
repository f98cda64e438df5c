//! The crates a patch spans. An edit to one hot crate compiles that crate; the workspace's
//! other hot crates are compiled again with it only when the new code could not be called
//! otherwise (they hold a copy of its changed generic or `#[inline]` code, or create the
//! `async` state it changed: see `patch::reach`), or when the compiler needs them to see
//! one consistent version of every crate.
//!
//! rustc checks that the crates it reads agree on each other's versions (each rlib records
//! the hash of the metadata of every crate it was compiled against). Every hot crate
//! therefore has a *generation*: 0 for cargo's build, then the number of the last patch that
//! compiled it. A compile of the span reads, for each hot crate it depends on, the newest
//! compile of that crate (cargo's rlib, or the one in its patch directory), and such a compile
//! can be reused only if none of the crates *it* depends on was compiled after it; otherwise
//! it joins the span and is compiled again, in dependency order (lowest first).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What the span is decided from: for each hot crate (by boundary index, in build order), the
/// hot crates it depends on (directly or not) and its generation.
#[derive(Debug, Clone, Default)]
pub struct Crates {
    pub depends_on: Vec<BTreeSet<usize>>,
    pub generations: Vec<u64>,
}

impl Crates {
    /// `members` and every crate that must be compiled with them (see the module's doc):
    /// a dependency of a member that depends, directly or not, on a member or on a crate
    /// compiled after it.
    pub fn close(&self, members: &BTreeSet<usize>) -> BTreeSet<usize> {
        let mut span = members.clone();
        loop {
            let mut added = false;
            let needed: BTreeSet<usize> = span.iter().flat_map(|m| self.depends_on[*m].iter().copied()).collect();
            for dependency in needed.difference(&span.clone()) {
                let newer_below =
                    self.depends_on[*dependency].iter().any(|below| span.contains(below) || self.generations[*below] > self.generations[*dependency]);
                if newer_below {
                    span.insert(*dependency);
                    added = true;
                }
            }
            if !added {
                return span;
            }
        }
    }

    /// For each member of `span` that must be read for the layouts of crates in `moved` (whose
    /// type definitions this patch or an earlier one changed), those crates: a crate's own
    /// compiled code describes only the types it uses itself, so the members compiled against
    /// it describe the rest. The `edited` crate reads its own; an unedited member's own types
    /// are as the patch that last compiled it described them.
    pub fn layout_readers(&self, span: &BTreeSet<usize>, moved: &BTreeSet<usize>, edited: usize) -> BTreeMap<usize, BTreeSet<usize>> {
        span.iter()
            .map(|&member| {
                let read: BTreeSet<usize> = moved.iter().copied().filter(|&c| (c == member && member == edited) || self.depends(member, c)).collect();
                (member, read)
            })
            .filter(|(_, read)| !read.is_empty())
            .collect()
    }

    /// Whether `upper` depends on `lower`.
    pub fn depends(&self, upper: usize, lower: usize) -> bool {
        self.depends_on.get(upper).is_some_and(|deps| deps.contains(&lower))
    }
}

/// Where a compile finds the newest version of a hot crate: the file name cargo gave its
/// library (`libdomain-1a2b3c.rlib`, or `.rmeta` where cargo pipelines) and the directory
/// holding a newer compile of it.
#[derive(Debug, Clone)]
pub struct Newer {
    /// The unit's file stem, `libdomain-1a2b3c`.
    pub stem: String,
    pub dir: PathBuf,
}

impl Newer {
    pub fn of(cargo_rlib: &Path, dir: &Path) -> Option<Self> {
        Some(Newer { stem: cargo_rlib.file_stem()?.to_string_lossy().into_owned(), dir: dir.to_path_buf() })
    }
}

/// rustc's arguments with each `--extern name=…/<stem>.rlib` (or `.rmeta`) of a crate in
/// `newer` pointed at its newer compile, and those directories searched first for the crates
/// the others depend on (`-L dependency=`): rustc picks, among same-named candidates, the one
/// whose metadata hash the crate that needs it recorded.
pub fn with_newer_crates(args: &[String], newer: &[Newer]) -> Vec<String> {
    if newer.is_empty() {
        return args.to_vec();
    }
    let repoint = |value: &str| -> Option<String> {
        let (name, path) = value.split_once('=')?;
        let path = Path::new(path);
        let file = path.file_name()?.to_string_lossy();
        let found = newer.iter().find(|n| path.file_stem().is_some_and(|stem| stem.to_string_lossy() == n.stem))?;
        Some(format!("{name}={}", found.dir.join(&*file).display()))
    };
    let mut out: Vec<String> = Vec::with_capacity(args.len() + 2 * newer.len());
    for n in newer {
        let search = format!("dependency={}", n.dir.display());
        // A command already searching there (rewritten before) is not given it twice.
        if !out.contains(&search) && !args.windows(2).any(|pair| pair[0] == "-L" && pair[1] == search) {
            out.extend(["-L".to_string(), search]);
        }
    }
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--extern" {
            out.push(arg.clone());
            if let Some(value) = args.next() {
                out.push(repoint(value).unwrap_or_else(|| value.clone()));
            }
        } else if let Some(value) = arg.strip_prefix("--extern=") {
            out.push(format!("--extern={}", repoint(value).unwrap_or_else(|| value.to_string())));
        } else {
            out.push(arg.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// web (2) → domain (1) → store (0), and api (3) → store.
    fn crates(generations: [u64; 4]) -> Crates {
        let set = |items: &[usize]| items.iter().copied().collect::<BTreeSet<usize>>();
        Crates { depends_on: vec![set(&[]), set(&[0]), set(&[0, 1]), set(&[0])], generations: generations.to_vec() }
    }

    fn set(items: &[usize]) -> BTreeSet<usize> {
        items.iter().copied().collect()
    }

    #[test]
    fn a_crate_whose_dependencies_are_as_built_is_not_compiled_again() {
        assert_eq!(crates([0, 0, 0, 0]).close(&set(&[2])), set(&[2]));
        assert_eq!(crates([0, 0, 0, 0]).close(&set(&[0])), set(&[0]));
        // store was patched after domain's newest compile: web's compile needs a domain that
        // agrees with that store.
        assert_eq!(crates([2, 1, 0, 0]).close(&set(&[2])), set(&[1, 2]));
        // domain's newest compile is newer than store's: reused.
        assert_eq!(crates([1, 2, 0, 0]).close(&set(&[2])), set(&[2]));
    }

    #[test]
    fn crates_between_two_members_join_the_span() {
        // store and web: domain, between them, must be compiled against the new store.
        assert_eq!(crates([0, 0, 0, 0]).close(&set(&[0, 2])), set(&[0, 1, 2]));
        // api does not lie between them.
        assert!(!crates([0, 0, 0, 0]).close(&set(&[0, 2])).contains(&3));
    }

    #[test]
    fn the_members_compiled_against_a_moved_crate_read_its_layouts() {
        let crates = crates([0, 0, 0, 0]);
        // store (0) edited with a changed type definition; domain and web joined: both were
        // compiled against the new store and describe the store types they use.
        let readers = crates.layout_readers(&set(&[0, 1, 2]), &set(&[0]), 0);
        assert_eq!(readers, BTreeMap::from([(0, set(&[0])), (1, set(&[0])), (2, set(&[0]))]));
        // An earlier patch moved store; now web alone is edited: web reads store's, and no one
        // reads web's own (its types did not move).
        assert_eq!(crates.layout_readers(&set(&[2]), &set(&[0]), 2), BTreeMap::from([(2, set(&[0]))]));
        // Nothing moved, or a member that does not depend on what moved: nothing to read.
        assert!(crates.layout_readers(&set(&[2]), &set(&[]), 2).is_empty());
        assert!(crates.layout_readers(&set(&[0]), &set(&[1]), 0).is_empty());
        // An unedited member that moved earlier is not read for its own types.
        assert!(crates.layout_readers(&set(&[1]), &set(&[1]), 2).is_empty());
    }

    #[test]
    fn externs_of_newer_crates_are_repointed_and_their_directories_searched_first() {
        let args: Vec<String> =
            ["--crate-name", "web", "--extern", "domain=/t/deps/libdomain-1a.rmeta", "--extern=serde=/t/deps/libserde-9f.rmeta", "-L", "dependency=/t/deps"]
                .map(String::from)
                .to_vec();
        let newer = [Newer::of(Path::new("/t/deps/libdomain-1a.rlib"), Path::new("/hot/domain/out")).unwrap()];
        let out = with_newer_crates(&args, &newer);
        assert_eq!(&out[..2], ["-L", "dependency=/hot/domain/out"]);
        assert!(out.contains(&"domain=/hot/domain/out/libdomain-1a.rmeta".to_string()), "{out:?}");
        assert!(out.contains(&"--extern=serde=/t/deps/libserde-9f.rmeta".to_string()), "{out:?}");
        assert!(out.ends_with(&["-L".to_string(), "dependency=/t/deps".to_string()]));
        assert_eq!(with_newer_crates(&args, &[]), args);
    }
}
