//! What an edit means: patch, restart or nothing. Decided from what rustc actually compiled
//! (dep-info files), never from directory names, and always with a reason.
//!
//! The rules, first match wins:
//! 1. the target directory and `.git` → ignored;
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

use crate::build::HostBuild;
use crate::config::PathRule;
use crate::depinfo;
use crate::metadata::Plan as HostPlan;

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
    pub reason: String,
}

impl Decision {
    fn new(action: Action, reason: impl Into<String>) -> Self {
        Decision { action, reason: reason.into() }
    }
}

/// Files whose change always means rebuilding and restarting, by name.
const RESTART_FILES: &[(&str, &str)] = &[
    ("Cargo.toml", "a manifest changed"),
    ("Cargo.lock", "the lock file changed"),
    ("build.rs", "a build script changed"),
    (".env", "the environment file changed"),
    ("rust-toolchain.toml", "the toolchain file changed"),
    ("rust-toolchain", "the toolchain file changed"),
];

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

/// Which crate compiles which file, for one host build.
#[derive(Debug, Clone, Default)]
pub struct DependencyTree {
    /// (package name, files) of each boundary, in plan order.
    pub boundaries: Vec<(String, HashSet<PathBuf>)>,
    /// For each boundary, the other boundaries that depend on it.
    pub dependents: Vec<Vec<String>>,
    pub rules: Rules,
    /// (package name, files) of every other local library.
    pub others: Vec<(String, HashSet<PathBuf>)>,
    /// Every file of every crate of the host, the host's own included.
    pub all: HashSet<PathBuf>,
    /// The files of `all` that no boundary compiled when the host was built: `all` is these
    /// plus the boundaries' current files (a patch may add or drop a module).
    outside_boundaries: HashSet<PathBuf>,
    pub host: String,
    pub excluded: Vec<PathBuf>,
    /// Boundary files whose loaded version says `hot::decline!()`.
    pub declined: HashSet<PathBuf>,
}

impl DependencyTree {
    pub fn load(build: &HostBuild, plan: &HostPlan) -> Result<Self> {
        let workspace_root = plan.workspace_root.as_path();
        let mut tree = DependencyTree {
            host: plan.host.bin.clone(),
            excluded: vec![plan.target_dir.clone()],
            rules: Rules::from_plan(plan),
            ..Default::default()
        };
        for unit in &build.boundaries {
            let files = depinfo::read(&unit.dep_info, &unit.invocation.cwd)?;
            tree.boundaries.push((unit.boundary.package.clone(), files.into_iter().collect()));
            tree.dependents.push(unit.boundary.dependents.clone());
        }
        for unit in &build.local_units {
            // cargo runs rustc from the workspace root for members, from the package root otherwise.
            let Ok(text) = std::fs::read_to_string(&unit.dep_info) else { continue };
            let files = depinfo::entries(&text)
                .into_iter()
                .map(|file| {
                    let from_root = depinfo::normalize(&workspace_root.join(&file));
                    if from_root.exists() { from_root } else { depinfo::normalize(&unit.manifest_dir.join(&file)) }
                })
                .collect();
            tree.others.push((unit.package.clone(), files));
        }
        let mut outside: HashSet<PathBuf> = depinfo::read(&build.host_dep_info, workspace_root)?.into_iter().collect();
        for (_, files) in &tree.others {
            outside.extend(files.iter().cloned());
        }
        for (_, files) in &tree.boundaries {
            outside.retain(|file| !files.contains(file));
        }
        tree.outside_boundaries = outside;
        tree.recompute_all();
        Ok(tree)
    }

    /// Re-reads one boundary's files after it was recompiled (a module may have been added
    /// or dropped: a file it no longer compiles is then compiled by no crate).
    pub fn update_boundary(&mut self, index: usize, files: Vec<PathBuf>) {
        self.boundaries[index].1 = files.into_iter().collect();
        self.recompute_all();
    }

    fn recompute_all(&mut self) {
        self.all = self.outside_boundaries.clone();
        for (_, files) in &self.boundaries {
            self.all.extend(files.iter().cloned());
        }
    }

    pub fn boundary_files(&self, index: usize) -> Vec<PathBuf> {
        self.boundaries[index].1.iter().cloned().collect()
    }

    pub fn classify(&self, path: &Path) -> Decision {
        if self.excluded.iter().any(|e| path.starts_with(e)) {
            return Decision::new(Action::Ignore, "build output");
        }
        if path.components().any(|c| c.as_os_str() == ".git") {
            return Decision::new(Action::Ignore, "git metadata");
        }
        let rules = &self.rules;
        if let Some(rule) = rules.ignore.iter().find(|r| r.matches(path)) {
            return Decision::new(Action::Ignore, format!("matches ignore pattern `{}` of {}", rule.pattern, rule.origin));
        }
        if let Some(rule) = rules.restart.iter().find(|r| r.matches(path)) {
            return Decision::new(Action::Restart, format!("matches restart pattern `{}` of {}", rule.pattern, rule.origin));
        }
        if let Some(rule) = rules.watch.iter().find(|r| r.matches(path)) {
            return Decision::new(Action::Restart, format!("a watched file (`{}` of {})", rule.pattern, rule.origin));
        }
        if rules.env_file.as_deref() == Some(path) {
            return Decision::new(Action::Restart, "the env-file changed");
        }
        if let Some(reason) = restart_by_name(path) {
            return Decision::new(Action::Restart, reason);
        }
        let in_boundaries: Vec<usize> =
            self.boundaries.iter().enumerate().filter(|(_, (_, files))| files.contains(path)).map(|(i, _)| i).collect();
        let in_others: Vec<&str> =
            self.others.iter().filter(|(_, files)| files.contains(path)).map(|(name, _)| name.as_str()).collect();
        match (in_boundaries.as_slice(), in_others.first()) {
            ([index], None) => match self.dependents.get(*index).and_then(|d| d.first()) {
                Some(dependent) => Decision::new(
                    Action::Restart,
                    format!(
                        "compiled by the boundary `{}`, which the boundary `{dependent}` depends on: its compiled code calls the old functions directly",
                        self.boundaries[*index].0
                    ),
                ),
                None if crate::abi::source::declines(path) => Decision::new(
                    Action::Restart,
                    format!("it says `hot::decline!()`: edits to it always restart (`{}`)", self.boundaries[*index].0),
                ),
                None if self.declined.contains(path) => Decision::new(
                    Action::Restart,
                    format!("the version the program runs says `hot::decline!()` (`{}`)", self.boundaries[*index].0),
                ),
                None => Decision::new(Action::Patch(*index), format!("compiled only by the boundary `{}`", self.boundaries[*index].0)),
            },
            ([first, second, ..], _) => Decision::new(
                Action::Restart,
                format!("compiled by two boundaries, `{}` and `{}`", self.boundaries[*first].0, self.boundaries[*second].0),
            ),
            ([index], Some(other)) => Decision::new(
                Action::Restart,
                format!("compiled by the boundary `{}` and also by `{other}`", self.boundaries[*index].0),
            ),
            ([], Some(other)) => Decision::new(Action::Restart, format!("compiled by `{other}`, outside the boundary")),
            ([], None) if self.all.contains(path) => {
                Decision::new(Action::Restart, format!("compiled into `{}`, outside the boundary", self.host))
            }
            ([], None) => {
                let git_ignored = rules
                    .gitignore
                    .as_ref()
                    .is_some_and(|g| g.matched_path_or_any_parents(path, path.is_dir()).is_ignore());
                let why = if git_ignored { "git ignores it, and " } else { "" };
                Decision::new(Action::Ignore, format!("{why}no crate of `{}` compiles it", self.host))
            }
        }
    }
}

/// Files whose change may change the plan itself (boundaries, their dependencies, rules):
/// manifests, the lock file and cargo's configuration.
pub fn is_manifest(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "Cargo.toml" || name == "Cargo.lock" || path.parent().and_then(|p| p.file_name()).is_some_and(|d| d == ".cargo")
}

fn restart_by_name(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?;
    if name == "build.rs" && !path.with_file_name("Cargo.toml").is_file() {
        return None; // a module named build.rs, not a package's build script
    }
    if let Some((_, reason)) = RESTART_FILES.iter().find(|(file, _)| *file == name) {
        return Some(reason);
    }
    let in_cargo_dir = path.parent().and_then(|p| p.file_name()).is_some_and(|d| d == ".cargo");
    (in_cargo_dir && (name == "config.toml" || name == "config")).then_some("cargo's configuration changed")
}

/// The decision for a burst of changes: one restart wins over patches; patches of several
/// boundaries are applied in plan order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Restart { path: PathBuf, reason: String },
    Patch { boundaries: Vec<usize>, paths: Vec<PathBuf> },
    Nothing { ignored: Vec<(PathBuf, String)> },
}

pub fn plan_burst(tree: &DependencyTree, paths: &[PathBuf]) -> Plan {
    let mut boundaries = Vec::new();
    let mut patched_paths = Vec::new();
    let mut ignored = Vec::new();
    for path in paths {
        let decision = tree.classify(path);
        match decision.action {
            Action::Restart => return Plan::Restart { path: path.clone(), reason: decision.reason },
            Action::Patch(index) => {
                if !boundaries.contains(&index) {
                    boundaries.push(index);
                }
                patched_paths.push(path.clone());
            }
            Action::Ignore => ignored.push((path.clone(), decision.reason)),
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
        let boundaries = vec![("handlers".to_string(), set(&["/ws/h/src/lib.rs", "/ws/h/src/page.html", "/ws/common.txt"]))];
        let others = vec![("shared".to_string(), set(&["/ws/s/src/lib.rs", "/ws/common.txt"]))];
        let mut all = set(&["/ws/server/src/main.rs", "/home/.cargo/registry/tokio/lib.rs"]);
        for (_, files) in boundaries.iter().chain(&others) {
            all.extend(files.iter().cloned());
        }
        let restart = vec![PathRule::for_tests("templates/**", "/ws")];
        let ignore = vec![PathRule::for_tests("**/*.md", "/ws")];
        let watch = vec![PathRule::for_tests("migrations", "/ws")];
        let rules = Rules { restart, ignore, watch, env_file: Some("/ws/dev.env".into()), gitignore: None };
        DependencyTree {
            boundaries,
            dependents: vec![vec![]],
            rules,
            others,
            all,
            host: "server".into(),
            excluded: vec!["/ws/target".into()],
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
        assert_eq!(shared.action, Action::Restart);
        assert!(shared.reason.contains("`shared`"), "{}", shared.reason);
        assert_eq!(action("/ws/common.txt"), Action::Restart);
        let host = tree().classify(Path::new("/ws/server/src/main.rs"));
        assert_eq!(host.action, Action::Restart);
        assert!(host.reason.contains("`server`"));
    }

    #[test]
    fn manifests_and_config_files_restart_wherever_they_are() {
        for path in ["/ws/Cargo.toml", "/ws/h/Cargo.toml", "/ws/Cargo.lock", "/ws/.env", "/ws/.cargo/config.toml", "/ws/rust-toolchain.toml"] {
            assert_eq!(action(path), Action::Restart, "{path}");
        }
    }

    #[test]
    fn build_rs_is_a_build_script_only_beside_a_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), "").unwrap();
        assert_eq!(restart_by_name(&dir.path().join("build.rs")), Some("a build script changed"));
        assert_eq!(restart_by_name(&dir.path().join("src/build.rs")), None, "a module named build.rs");
    }

    #[test]
    fn configured_rules_come_before_the_compiler() {
        assert_eq!(action("/ws/templates/a/index.html"), Action::Restart);
        assert_eq!(action("/ws/migrations/001_init.sql"), Action::Restart);
        assert_eq!(action("/ws/dev.env"), Action::Restart);
        let ignored = tree().classify(Path::new("/ws/h/src/NOTES.md"));
        assert_eq!(ignored.action, Action::Ignore);
        assert!(ignored.reason.contains("`**/*.md`"), "{}", ignored.reason);
    }

    #[test]
    fn a_boundary_another_boundary_depends_on_restarts() {
        let mut t = tree();
        t.dependents = vec![vec!["jobs".to_string()]];
        let decision = t.classify(Path::new("/ws/h/src/lib.rs"));
        assert_eq!(decision.action, Action::Restart);
        assert!(decision.reason.contains("`jobs` depends on"), "{}", decision.reason);
    }

    #[test]
    fn a_file_a_patch_dropped_from_the_boundary_is_compiled_by_no_crate() {
        let mut t = tree();
        t.outside_boundaries = t.all.iter().filter(|f| !t.boundaries[0].1.contains(*f)).cloned().collect();
        t.outside_boundaries.insert("/ws/common.txt".into());
        t.update_boundary(0, vec!["/ws/h/src/lib.rs".into(), "/ws/h/src/users.rs".into()]);
        assert_eq!(t.classify(Path::new("/ws/h/src/users.rs")).action, Action::Patch(0));
        t.update_boundary(0, vec!["/ws/h/src/lib.rs".into()]);
        assert_eq!(t.classify(Path::new("/ws/h/src/users.rs")).action, Action::Ignore, "deleting it is no restart");
        assert_eq!(t.classify(Path::new("/ws/h/src/page.html")).action, Action::Ignore);
        assert_eq!(t.classify(Path::new("/ws/server/src/main.rs")).action, Action::Restart, "the host's files stay");
        assert_eq!(t.classify(Path::new("/ws/common.txt")).action, Action::Restart);
    }

    #[test]
    fn unrelated_files_target_and_git_are_ignored() {
        assert_eq!(action("/ws/README.txt"), Action::Ignore);
        assert_eq!(action("/ws/h/src/unused.rs"), Action::Ignore);
        assert_eq!(action("/ws/target/debug/server"), Action::Ignore);
        assert_eq!(action("/ws/.git/index"), Action::Ignore);
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
