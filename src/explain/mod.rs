//! `cargo hot explain [PATH...]`: what a change to each path would do, and why; with no
//! path, a summary of the dependency tree and the rules. It builds the host the way `run`
//! does (the dependency tree comes from what rustc compiled), so it reads the same
//! configuration and takes the same flags. The build's progress goes to stderr, the answer
//! to stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::build::{self, BuildMode, BuildOutcome};
use crate::classify::{Action, DependencyTree};
use crate::cli::ExplainArgs;
use crate::metadata::{self, BoundaryKind, Plan};
use crate::ui::{self, words};

pub mod functions;

/// How many files of a directory argument are listed before the rest is counted.
const LISTED_PER_DIRECTORY: usize = 20;

pub fn run(args: ExplainArgs) -> Result<ExitCode> {
    let ui = ui::Ui::start(ui::Options::detect(ui::Format::Human, ui::Verbosity::Normal));
    let events = ui.events();
    let built = (|| {
        let mut plan = metadata::plan(&args.selection, &args.options, &events)?;
        // Beside a running session (and with no flag that changes what is hot), its last build
        // says everything explain needs: nothing is built.
        let flags_given = args.options.as_table().as_object().is_some_and(|flags| !flags.is_empty());
        if let Some(last) = crate::last_build::of_running_session(&plan).filter(|_| !flags_given) {
            eprintln!("(from the last build of the cargo hot session running as pid {}: nothing was built)", last.session);
            plan.boundaries = last.boundaries;
            return Ok::<_, anyhow::Error>((plan, BuildOutcome::Built(Box::new(last.build))));
        }
        let tool = crate::tool::stable_copy(&plan.tool_dir())?;
        let outcome = build::build_host_settling_boundary(&mut plan, &tool, &events, BuildMode::Hot, None, None)?;
        Ok::<_, anyhow::Error>((plan, outcome))
    })();
    ui.finish();
    let (plan, outcome) = built?;
    let BuildOutcome::Built(build) = outcome else {
        bail!("the build failed; `explain` needs a successful build to know which crate compiles which file");
    };
    let kinds: Vec<BoundaryKind> = build.boundaries.iter().map(|unit| unit.boundary.kind.clone()).collect();
    let tree = DependencyTree::load(&build, &plan)?;
    let cwd = std::env::current_dir()?;
    if args.paths.is_empty() {
        print!("{}", summary(&plan, &tree));
    }
    for path in &args.paths {
        let absolute = absolute(&cwd.join(path));
        if absolute.is_dir() {
            print!("{}", directory(path, &absolute, &tree, &kinds));
        } else {
            let (action, said) = decision(&tree, &kinds, &absolute);
            println!("{}: {said}", path.display());
            if let Action::Patch(index) = action {
                print!("{}", per_function(&absolute, &build, index, &plan));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Under a patched file, one line per function: how an edit of its body would take effect.
fn per_function(file: &Path, build: &build::HostBuild, index: usize, plan: &Plan) -> String {
    if index >= build.boundaries.len() {
        return String::new();
    }
    match functions::of_file(file, index, build, plan) {
        Ok(verdicts) => verdicts.iter().map(|v| format!("  {}: {}\n", v.name, words::function_verdict(&v.verdict))).collect(),
        Err(err) => format!("  (its functions cannot be told apart: {err:#})\n"),
    }
}

/// `patch (compiled only by the boundary `handlers`)`.
fn decision(tree: &DependencyTree, kinds: &[BoundaryKind], path: &Path) -> (Action, String) {
    let decision = tree.classify(path);
    let (word, note) = match decision.action {
        Action::Patch(index) if kinds.get(index) == Some(&BoundaryKind::Binary) => ("patch", "; an edit to code only start-up runs, such as `main`, restarts"),
        Action::Patch(_) => ("patch", ""),
        Action::Restart => ("restart", ""),
        Action::Ignore => ("ignored", ""),
    };
    (decision.action, format!("{word} ({}{note})", decision.why))
}

/// A directory argument: each file under it (as the watcher sees them: not git-ignored, not
/// in the target directory), then a count.
fn directory(shown: &Path, dir: &Path, tree: &DependencyTree, kinds: &[BoundaryKind]) -> String {
    let excluded = tree.excluded.clone();
    let files: Vec<PathBuf> = ignore::WalkBuilder::new(dir)
        .hidden(false)
        .require_git(false)
        .filter_entry(move |e| !excluded.contains(e.path()))
        .build()
        .flatten()
        .filter(|e| e.file_type().is_some_and(|t| t.is_file()))
        .map(|e| e.into_path())
        .collect();
    let mut counts = [0usize; 3];
    let mut out = String::new();
    let mut sorted = files;
    sorted.sort();
    for (listed, file) in sorted.iter().enumerate() {
        let (action, words) = decision(tree, kinds, file);
        counts[match action {
            Action::Patch(_) => 0,
            Action::Restart => 1,
            Action::Ignore => 2,
        }] += 1;
        if listed < LISTED_PER_DIRECTORY {
            let relative = file.strip_prefix(dir).unwrap_or(file);
            out.push_str(&format!("{}: {words}\n", shown.join(relative).display()));
        }
    }
    let files = |n: usize| format!("{n} file{}", if n == 1 { "" } else { "s" });
    out.push_str(&format!(
        "{}: a directory of {}: {} patch, {} restart, {} ignored{}\n",
        shown.display(),
        files(sorted.len()),
        counts[0],
        counts[1],
        counts[2],
        if sorted.len() > LISTED_PER_DIRECTORY { " (the first ones listed above; name a file for its reason)" } else { "" }
    ));
    out
}

/// The path as the dependency tree spells it: resolved through symlinks when it exists.
fn absolute(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| crate::depinfo::normalize(path))
}

fn summary(plan: &Plan, tree: &DependencyTree) -> String {
    let root = &plan.workspace_root;
    let show = |p: &Path| match p.strip_prefix(root) {
        Ok(relative) if relative.as_os_str().is_empty() => ".".to_string(),
        Ok(relative) => relative.display().to_string(),
        Err(_) => p.display().to_string(),
    };
    let count = |n: usize| format!("{n} file{}", if n == 1 { "" } else { "s" });
    let in_workspace = |files: &std::collections::HashSet<PathBuf>| files.iter().filter(|f| f.starts_with(root)).count();
    let mut out = String::new();
    out.push_str(&format!("host: `{}` (package `{}`), workspace {}\n", plan.host.bin, plan.host.package, root.display()));
    out.push_str("boundaries (an edit patches the running program):\n");
    for (files, boundary) in tree.boundaries.iter().zip(&plan.boundaries) {
        let chosen = "no boundary is configured";
        let name = match (&boundary.kind, boundary.by_default) {
            (BoundaryKind::Binary, true) => format!("{} (the binary's own crate: {chosen})", files.package),
            (BoundaryKind::Binary, false) => format!("{} (the binary's own crate)", files.package),
            (BoundaryKind::Library, true) if boundary.package == plan.host.package => {
                format!("{} (the package's library: {chosen})", files.package)
            }
            (BoundaryKind::Library, true) => format!("{} (a library of the workspace that `{}` uses: {chosen})", files.package, plan.host.bin),
            (BoundaryKind::Library, false) => files.package.clone(),
        };
        let dependents = if boundary.dependents.is_empty() {
            String::new()
        } else {
            format!("; a patch of it compiles `{}` again only where they hold or create its changed code", boundary.dependents.join("`, `"))
        };
        out.push_str(&format!("  {name}: {} in {}{dependents}\n", count(files.files.len()), show(&boundary.manifest_dir)));
    }
    out.push_str("other local crates (an edit restarts):\n");
    for other in &tree.others {
        let outside = other.files.len() - in_workspace(&other.files);
        let place = if outside == 0 { String::new() } else { format!(" ({} outside the workspace)", count(outside)) };
        let name = if other.binary { format!("the binary `{}` (main.rs and its modules)", other.package) } else { other.package.clone() };
        out.push_str(&format!("  {name}: {}{place}\n", count(other.files.len())));
    }
    out.push_str(&format!("files compiled into `{}`: {} ({} in the workspace)\n", plan.host.bin, tree.all.len(), in_workspace(&tree.all)));
    out.push_str(&format!("restart: {}", crate::rules::RESTART_FILE_NAMES));
    if let Some(env_file) = &plan.config.env_file {
        out.push_str(&format!(", env-file {}", show(env_file)));
    }
    out.push('\n');
    for (kind, rule) in plan.config.rules() {
        out.push_str(&format!("{kind}: `{}` ({})\n", rule.pattern, rule.origin));
    }
    out.push_str(&format!(
        "ignored: the target dir {}, .git, cargo hot's own output, and files no crate compiles{}\n",
        show(&plan.target_dir),
        if tree.rules.gitignore.is_some() { " (git-ignored ones included)" } else { "" }
    ));
    out.push_str(&format!(
        "debounce: {} · shutdown-timeout: {}\n",
        words::duration(crate::events::ms(plan.config.debounce)),
        words::duration(crate::events::ms(plan.config.shutdown_timeout))
    ));
    out
}
