//! What an edit means: patch, restart or nothing. Decided from what rustc actually compiled
//! (dep-info files), never from directory names, and always with a reason ([`Why`], a value
//! the UI turns into words).
//!
//! The rules, first match wins:
//! 1. the target directory, `.git` and cargo hot's own output files → ignored;
//! 2. `ignore` patterns → ignored;
//! 3. `restart` patterns, `watch` entries and the `env-file` → restart;
//! 4. manifests, the lock file, build scripts, `.env`, cargo's and rustup's configuration → restart;
//! 5. a file only one boundary compiles → patch that boundary, unless another boundary
//!    depends on it (that boundary's compiled code calls the old functions directly), or the
//!    file says `hot::decline!()` (now or in the version the program runs) → restart;
//! 6. a file any other crate of the host compiles → restart;
//! 7. anything else (git-ignored or not) → ignored: no crate compiles it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::build::HostBuild;
use crate::config::PathRule;
use crate::depinfo;
use crate::metadata::Plan as HostPlan;
use crate::rules::{self, Excluded, RestartFile};

/// The effect of a change to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Recompile the boundary with this index and patch it in.
    Patch(usize),
    Restart,
    Ignore,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub why: Why,
}

/// Why a change to a file means what it means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "why", rename_all = "kebab-case")]
pub enum Why {
    /// The target directory, `.git`, or a file cargo hot writes itself.
    NotSource {
        what: rules::NotSource,
    },
    IgnorePattern {
        pattern: String,
        origin: String,
    },
    RestartPattern {
        pattern: String,
        origin: String,
    },
    WatchedFile {
        pattern: String,
        origin: String,
    },
    EnvFile,
    RestartFile {
        file: RestartFile,
    },
    OnlyBoundary {
        boundary: String,
    },
    Declines {
        boundary: String,
    },
    /// The file no longer says `hot::decline!()`, but the version the program runs did.
    DeclinedVersion {
        boundary: String,
    },
    TwoBoundaries {
        first: String,
        second: String,
    },
    BoundaryAndOther {
        boundary: String,
        other: String,
    },
    OtherCrate {
        package: String,
    },
    /// The host binary's own crate (not a boundary).
    Binary {
        bin: String,
    },
    /// Compiled into the host, by no local crate (a file of a dependency).
    Host {
        bin: String,
    },
    NoCrate {
        host: String,
        git_ignored: bool,
    },
    /// Restart-only mode: an edit that would otherwise have been patched.
    RestartOnly,
}

/// The rules that do not come from the compiler: configuration and git.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub restart: Vec<PathRule>,
    pub ignore: Vec<PathRule>,
    pub watch: Vec<PathRule>,
    pub env_file: Option<PathBuf>,
    pub gitignore: Option<ignore::gitignore::Gitignore>,
}

impl Rules {
    pub fn from_plan(plan: &HostPlan) -> Self {
        let gitignore = {
            let (gitignore, _) = ignore::gitignore::Gitignore::new(plan.workspace_root.join(".gitignore"));
            (!gitignore.is_empty()).then_some(gitignore)
        };
        Rules {
            restart: plan.config.restart.clone(),
            ignore: plan.config.ignore.clone(),
            watch: plan.config.watch.clone(),
            env_file: plan.config.env_file.clone(),
            gitignore,
        }
    }
}

/// What one boundary compiles, as classification needs it.
#[derive(Debug, Clone, Default)]
pub struct BoundaryFiles {
    pub package: String,
    pub files: HashSet<PathBuf>,
    /// Other boundaries that depend on this one.
    pub dependents: Vec<String>,
}

/// The files of a local crate outside the boundaries.
#[derive(Debug, Clone, Default)]
pub struct CrateFiles {
    pub package: String,
    /// The host binary's own crate (`main.rs` and its modules), not a library.
    pub binary: bool,
    pub files: HashSet<PathBuf>,
}

/// Which crate compiles which file, for one host build.
#[derive(Debug, Clone, Default)]
pub struct DependencyTree {
    /// One record per boundary, in build order.
    pub boundaries: Vec<BoundaryFiles>,
    pub rules: Rules,
    /// Every other local crate, the host binary's own included.
    pub others: Vec<CrateFiles>,
    /// Every file of every crate of the host, the host's own included.
    pub all: HashSet<PathBuf>,
    /// The files of `all` that no boundary compiled when the host was built: `all` is these
    /// plus the boundaries' current files (a patch may add or drop a module).
    outside_boundaries: HashSet<PathBuf>,
    pub host: String,
    pub excluded: Excluded,
    /// Boundary files whose loaded version says `hot::decline!()`.
    pub declined: HashSet<PathBuf>,
}

impl DependencyTree {
    pub fn load(build: &HostBuild, plan: &HostPlan) -> Result<Self> {
        let workspace_root = plan.workspace_root.as_path();
        let mut tree =
            DependencyTree { host: plan.host.bin.clone(), excluded: Excluded::new(&plan.target_dir), rules: Rules::from_plan(plan), ..Default::default() };
        for unit in &build.boundaries {
            let files = depinfo::read(&unit.dep_info, &unit.invocation.cwd)?;
            tree.boundaries.push(BoundaryFiles {
                package: unit.boundary.package.clone(),
                files: files.into_iter().collect(),
                dependents: unit.boundary.dependents.clone(),
            });
        }
        for unit in &build.local_units {
            // cargo runs rustc from the workspace root for members, from the package root otherwise.
            let Ok(text) = std::fs::read_to_string(&unit.dep_info) else { continue };
            let files = depinfo::entries(&text)
                .into_iter()
                .map(|file| {
                    let from_root = depinfo::normalize(&workspace_root.join(&file));
                    if from_root.exists() {
                        from_root
                    } else {
                        depinfo::normalize(&unit.manifest_dir.join(&file))
                    }
                })
                .collect();
            tree.others.push(CrateFiles { package: unit.package.clone(), binary: unit.rlib.is_none(), files });
        }
        let mut outside: HashSet<PathBuf> = depinfo::read(&build.host_dep_info, workspace_root)?.into_iter().collect();
        for other in &tree.others {
            outside.extend(other.files.iter().cloned());
        }
        for boundary in &tree.boundaries {
            outside.retain(|file| !boundary.files.contains(file));
        }
        tree.outside_boundaries = outside;
        tree.recompute_all();
        Ok(tree)
    }

    /// Re-reads one boundary's files after it was recompiled (a module may have been added
    /// or dropped: a file it no longer compiles is then compiled by no crate).
    pub fn update_boundary(&mut self, index: usize, files: Vec<PathBuf>) {
        self.boundaries[index].files = files.into_iter().collect();
        self.recompute_all();
    }

    fn recompute_all(&mut self) {
        self.all = self.outside_boundaries.clone();
        for boundary in &self.boundaries {
            self.all.extend(boundary.files.iter().cloned());
        }
    }

    pub fn boundary_files(&self, index: usize) -> Vec<PathBuf> {
        self.boundaries[index].files.iter().cloned().collect()
    }

    pub fn classify(&self, path: &Path) -> Decision {
        let decide = |action: Action, why: Why| Decision { action, why };
        if let Some(what) = self.excluded.why(path) {
            return decide(Action::Ignore, Why::NotSource { what });
        }
        let rules = &self.rules;
        let rule = |rule: &PathRule| (rule.pattern.clone(), rule.origin.clone());
        if let Some((pattern, origin)) = rules.ignore.iter().find(|r| r.matches(path)).map(rule) {
            return decide(Action::Ignore, Why::IgnorePattern { pattern, origin });
        }
        if let Some((pattern, origin)) = rules.restart.iter().find(|r| r.matches(path)).map(rule) {
            return decide(Action::Restart, Why::RestartPattern { pattern, origin });
        }
        if let Some((pattern, origin)) = rules.watch.iter().find(|r| r.matches(path)).map(rule) {
            return decide(Action::Restart, Why::WatchedFile { pattern, origin });
        }
        if rules.env_file.as_deref() == Some(path) {
            return decide(Action::Restart, Why::EnvFile);
        }
        if let Some(file) = rules::restart_file(path) {
            return decide(Action::Restart, Why::RestartFile { file });
        }
        let in_boundaries: Vec<usize> = self.boundaries.iter().enumerate().filter(|(_, b)| b.files.contains(path)).map(|(i, _)| i).collect();
        let in_others: Vec<&CrateFiles> = self.others.iter().filter(|other| other.files.contains(path)).collect();
        let name = |index: usize| self.boundaries[index].package.clone();
        match (in_boundaries.as_slice(), in_others.first()) {
            // A boundary other boundaries depend on patches too: the patch spans what must be
            // compiled again (see `span`).
            ([index], None) if crate::abi::source::declines(path) => decide(Action::Restart, Why::Declines { boundary: name(*index) }),
            ([index], None) if self.declined.contains(path) => decide(Action::Restart, Why::DeclinedVersion { boundary: name(*index) }),
            ([index], None) => decide(Action::Patch(*index), Why::OnlyBoundary { boundary: name(*index) }),
            ([first, second, ..], _) => decide(Action::Restart, Why::TwoBoundaries { first: name(*first), second: name(*second) }),
            ([index], Some(other)) => decide(Action::Restart, Why::BoundaryAndOther { boundary: name(*index), other: other.package.clone() }),
            ([], Some(other)) if other.binary => decide(Action::Restart, Why::Binary { bin: other.package.clone() }),
            ([], Some(other)) => decide(Action::Restart, Why::OtherCrate { package: other.package.clone() }),
            ([], None) if self.all.contains(path) => decide(Action::Restart, Why::Host { bin: self.host.clone() }),
            ([], None) => {
                // (The matcher asserts that the path is under its root.)
                let git_ignored =
                    rules.gitignore.as_ref().is_some_and(|g| path.starts_with(g.path()) && g.matched_path_or_any_parents(path, path.is_dir()).is_ignore());
                decide(Action::Ignore, Why::NoCrate { host: self.host.clone(), git_ignored })
            }
        }
    }

    /// Whether a change to `path` could fix a program that crashed: a file some crate
    /// compiles, a manifest or configuration, a restart rule. Anything else (a log the
    /// program writes, a note) would only start the same program again.
    pub fn could_fix_a_crash(&self, path: &Path) -> bool {
        self.classify(path).action != Action::Ignore
    }
}

/// The decision for a burst of changes: one restart wins over patches; patches of several
/// boundaries are applied in build order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Restart { path: PathBuf, why: Why },
    Patch { boundaries: Vec<usize>, paths: Vec<PathBuf> },
    Nothing { ignored: Vec<(PathBuf, Why)> },
}

pub fn plan_burst(tree: &DependencyTree, paths: &[PathBuf]) -> Plan {
    let mut boundaries = Vec::new();
    let mut patched_paths = Vec::new();
    let mut ignored = Vec::new();
    for path in paths {
        let decision = tree.classify(path);
        match decision.action {
            Action::Restart => return Plan::Restart { path: path.clone(), why: decision.why },
            Action::Patch(index) => {
                if !boundaries.contains(&index) {
                    boundaries.push(index);
                }
                patched_paths.push(path.clone());
            }
            Action::Ignore => ignored.push((path.clone(), decision.why)),
        }
    }
    if boundaries.is_empty() {
        Plan::Nothing { ignored }
    } else {
        boundaries.sort_unstable();
        Plan::Patch { boundaries, paths: patched_paths }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> DependencyTree {
        let set = |files: &[&str]| files.iter().map(PathBuf::from).collect::<HashSet<_>>();
        let boundaries = vec![BoundaryFiles {
            package: "handlers".to_string(),
            files: set(&["/ws/h/src/lib.rs", "/ws/h/src/page.html", "/ws/common.txt"]),
            dependents: vec![],
        }];
        let others = vec![
            CrateFiles { package: "shared".into(), binary: false, files: set(&["/ws/s/src/lib.rs", "/ws/common.txt"]) },
            CrateFiles { package: "server".into(), binary: true, files: set(&["/ws/server/src/main.rs"]) },
        ];
        let mut all = set(&["/home/.cargo/registry/tokio/lib.rs"]);
        for boundary in &boundaries {
            all.extend(boundary.files.iter().cloned());
        }
        for other in &others {
            all.extend(other.files.iter().cloned());
        }
        let restart = vec![PathRule::for_tests("templates/**", "/ws")];
        let ignore = vec![PathRule::for_tests("**/*.md", "/ws")];
        let watch = vec![PathRule::for_tests("migrations", "/ws")];
        let rules = Rules { restart, ignore, watch, env_file: Some("/ws/dev.env".into()), gitignore: None };
        DependencyTree {
            boundaries,
            rules,
            others,
            all,
            host: "server".into(),
            excluded: Excluded { dirs: vec!["/ws/target".into()], files: vec!["/ws/dev.log".into()] },
            declined: HashSet::new(),
            outside_boundaries: HashSet::new(),
        }
    }

    fn action(path: &str) -> Action {
        tree().classify(Path::new(path)).action
    }

    #[test]
    fn boundary_files_patch_including_included_files() {
        assert_eq!(action("/ws/h/src/lib.rs"), Action::Patch(0));
        assert_eq!(action("/ws/h/src/page.html"), Action::Patch(0));
    }

    #[test]
    fn other_crates_and_shared_files_restart() {
        let shared = tree().classify(Path::new("/ws/s/src/lib.rs"));
        assert_eq!(shared, Decision { action: Action::Restart, why: Why::OtherCrate { package: "shared".into() } });
        assert_eq!(action("/ws/common.txt"), Action::Restart);
        let host = tree().classify(Path::new("/ws/server/src/main.rs"));
        assert_eq!(host.why, Why::Binary { bin: "server".into() });
        let dependency = tree().classify(Path::new("/home/.cargo/registry/tokio/lib.rs"));
        assert_eq!(dependency.why, Why::Host { bin: "server".into() });
    }

    #[test]
    fn manifests_and_config_files_restart_wherever_they_are() {
        for path in ["/ws/Cargo.toml", "/ws/h/Cargo.toml", "/ws/Cargo.lock", "/ws/.env", "/ws/.cargo/config.toml", "/ws/rust-toolchain.toml"] {
            assert_eq!(action(path), Action::Restart, "{path}");
        }
    }

    #[test]
    fn configured_rules_come_before_the_compiler() {
        assert_eq!(action("/ws/templates/a/index.html"), Action::Restart);
        assert_eq!(action("/ws/migrations/001_init.sql"), Action::Restart);
        assert_eq!(action("/ws/dev.env"), Action::Restart);
        let ignored = tree().classify(Path::new("/ws/h/src/NOTES.md"));
        assert_eq!(ignored.action, Action::Ignore);
        assert!(matches!(ignored.why, Why::IgnorePattern { ref pattern, .. } if pattern == "**/*.md"), "{:?}", ignored.why);
    }

    #[test]
    fn a_boundary_another_boundary_depends_on_patches() {
        let mut t = tree();
        t.boundaries[0].dependents = vec!["jobs".to_string()];
        let decision = t.classify(Path::new("/ws/h/src/lib.rs"));
        assert_eq!(decision, Decision { action: Action::Patch(0), why: Why::OnlyBoundary { boundary: "handlers".into() } });
    }

    #[test]
    fn a_file_a_patch_dropped_from_the_boundary_is_compiled_by_no_crate() {
        let mut t = tree();
        t.outside_boundaries = t.all.iter().filter(|f| !t.boundaries[0].files.contains(*f)).cloned().collect();
        t.outside_boundaries.insert("/ws/common.txt".into());
        t.outside_boundaries.insert("/ws/server/src/main.rs".into());
        t.update_boundary(0, vec!["/ws/h/src/lib.rs".into(), "/ws/h/src/users.rs".into()]);
        assert_eq!(t.classify(Path::new("/ws/h/src/users.rs")).action, Action::Patch(0));
        t.update_boundary(0, vec!["/ws/h/src/lib.rs".into()]);
        assert_eq!(t.classify(Path::new("/ws/h/src/users.rs")).action, Action::Ignore, "deleting it is no restart");
        assert_eq!(t.classify(Path::new("/ws/h/src/page.html")).action, Action::Ignore);
        assert_eq!(t.classify(Path::new("/ws/server/src/main.rs")).action, Action::Restart, "the host's files stay");
        assert_eq!(t.classify(Path::new("/ws/common.txt")).action, Action::Restart);
    }

    #[test]
    fn unrelated_files_target_git_and_own_output_are_ignored() {
        assert_eq!(action("/ws/README.txt"), Action::Ignore);
        assert_eq!(action("/ws/h/src/unused.rs"), Action::Ignore);
        assert_eq!(action("/ws/target/debug/server"), Action::Ignore);
        assert_eq!(action("/ws/.git/index"), Action::Ignore);
        assert_eq!(tree().classify(Path::new("/ws/dev.log")).why, Why::NotSource { what: rules::NotSource::OwnOutput });
        assert!(!tree().could_fix_a_crash(Path::new("/ws/app.log")));
        assert!(tree().could_fix_a_crash(Path::new("/ws/h/src/lib.rs")));
    }

    #[test]
    fn a_burst_with_one_restart_restarts() {
        let t = tree();
        let paths = [PathBuf::from("/ws/h/src/lib.rs"), PathBuf::from("/ws/README.txt")];
        assert!(matches!(plan_burst(&t, &paths), Plan::Patch { ref boundaries, .. } if boundaries == &[0]));
        let paths = [PathBuf::from("/ws/h/src/lib.rs"), PathBuf::from("/ws/s/src/lib.rs")];
        assert!(matches!(plan_burst(&t, &paths), Plan::Restart { .. }));
        assert!(matches!(plan_burst(&t, &[PathBuf::from("/ws/notes.txt")]), Plan::Nothing { .. }));
        let paths = [PathBuf::from("/ws/h/src/lib.rs"), PathBuf::from("/ws/README.md")];
        assert!(matches!(plan_burst(&t, &paths), Plan::Patch { .. }));
    }
}
