//! `cargo hot explain [PATH...]`: what a change to each path would do, and why; with no
//! path, a summary of the dependency tree and the rules. It builds the host the way `run`
//! does (the dependency tree comes from what rustc compiled), so it reads the same
//! configuration and takes the same flags. Cargo's progress goes to stderr, the answer to
//! stdout.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::build::{self, BuildOutcome};
use crate::classify::{Action, DependencyTree};
use crate::cli::ExplainArgs;
use crate::metadata::{self, BoundaryKind, Plan};
use crate::ui;

pub fn run(args: ExplainArgs) -> Result<ExitCode> {
    let mut plan = metadata::plan(&args.selection, &args.options)?;
    let tool = crate::tool::stable_copy(&plan.tool_dir())?;
    let BuildOutcome::Built(build) = build::build_host_settling_boundary(&mut plan, &tool)? else {
        bail!("the build failed; `explain` needs a successful build to know which crate compiles which file");
    };
    let tree = DependencyTree::load(&build, &plan)?;
    let cwd = std::env::current_dir()?;
    if args.paths.is_empty() {
        print!("{}", summary(&plan, &tree));
    } else {
        for path in &args.paths {
            let absolute = absolute(&cwd.join(path));
            let decision = tree.classify(&absolute);
            let (word, note) = match decision.action {
                Action::Patch(index) if build.boundaries.get(index).is_some_and(|u| u.boundary.kind == BoundaryKind::Binary) => {
                    ("patch", "; an edit to code only start-up runs, such as `main`, restarts")
                }
                Action::Patch(_) => ("patch", ""),
                Action::Restart => ("restart", ""),
                Action::Ignore => ("ignored", ""),
            };
            println!("{}: {word} ({}{note})", path.display(), decision.reason);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The path as the dependency tree spells it: resolved through symlinks when it exists.
fn absolute(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| crate::depinfo::normalize(path))
}

fn summary(plan: &Plan, tree: &DependencyTree) -> String {
    let root = &plan.workspace_root;
    let show = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    let in_workspace = |files: &HashSet<PathBuf>| files.iter().filter(|f| f.starts_with(root)).count();
    let mut out = String::new();
    out.push_str(&format!("host: `{}` (package `{}`), workspace {}\n", plan.host.bin, plan.host.package, root.display()));
    out.push_str("boundaries (an edit patches the running program):\n");
    for ((name, files), boundary) in tree.boundaries.iter().zip(&plan.boundaries) {
        let name = match (&boundary.kind, boundary.by_default) {
            (BoundaryKind::Binary, true) => format!("{name} (the binary's own crate: no boundary is configured)"),
            (BoundaryKind::Binary, false) => format!("{name} (the binary's own crate)"),
            (BoundaryKind::Library, true) => format!("{name} (the package's library: no boundary is configured)"),
            (BoundaryKind::Library, false) => name.clone(),
        };
        let dependents = if boundary.dependents.is_empty() {
            String::new()
        } else {
            format!("; `{}` depends on it, so its edits restart", boundary.dependents.join("`, `"))
        };
        out.push_str(&format!("  {name}: {} files in {}{dependents}\n", files.len(), show(&boundary.manifest_dir)));
    }
    out.push_str("other local crates (an edit restarts):\n");
    for (name, files) in &tree.others {
        let count = |n: usize| format!("{n} file{}", if n == 1 { "" } else { "s" });
        let outside = files.len() - in_workspace(files);
        let place = if outside == 0 { String::new() } else { format!(" ({} outside the workspace)", count(outside)) };
        out.push_str(&format!("  {name}: {}{place}\n", count(files.len())));
    }
    out.push_str(&format!(
        "files compiled into `{}`: {} ({} in the workspace)\n",
        plan.host.bin,
        tree.all.len(),
        in_workspace(&tree.all)
    ));
    out.push_str("restart: Cargo.toml, Cargo.lock, build.rs, .env, rust-toolchain(.toml), .cargo/config(.toml)");
    if let Some(env_file) = &plan.config.env_file {
        out.push_str(&format!(", env-file {}", show(env_file)));
    }
    out.push('\n');
    for (kind, rule) in plan.config.rules() {
        out.push_str(&format!("{kind}: `{}` ({})\n", rule.pattern, rule.origin));
    }
    out.push_str(&format!(
        "ignored: the target dir {}, .git, and files no crate compiles{}\n",
        show(&plan.target_dir),
        if tree.rules.gitignore.is_some() { " (git-ignored ones included)" } else { "" }
    ));
    out.push_str(&format!(
        "debounce: {} · shutdown-timeout: {}\n",
        ui::ms(plan.config.debounce),
        ui::ms(plan.config.shutdown_timeout)
    ));
    out
}
