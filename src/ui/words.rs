//! Events and reasons in words: the only place where the session's values become sentences.
//! The terminal prints these lines; the JSON renderer adds them as `message`.

use std::fmt;
use std::path::Path;

use crate::abi::Rejection;
use crate::events::*;
use crate::layout::Place;
use crate::rules::RestartFile;

/// How a line is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Info,
    Success,
    Warning,
    Error,
    /// Compiler output, printed as is (no prefix).
    Raw,
}

/// One line (or block) of text for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub style: Style,
    pub text: String,
}

impl Line {
    fn new(style: Style, text: impl Into<String>) -> Self {
        Line { style, text: text.into() }
    }
}

/// `142 ms`, `1.24 s`.
pub fn duration(millis: u64) -> String {
    if millis >= 1000 {
        format!("{:.2} s", millis as f64 / 1000.0)
    } else {
        format!("{millis} ms")
    }
}

/// A path as the developer thinks of it: relative to the workspace root when inside it.
fn show(path: &Path, root: Option<&Path>) -> String {
    root.and_then(|root| path.strip_prefix(root).ok()).unwrap_or(path).display().to_string()
}

/// The lines of an event (none for events shown only as progress). Paths are shown relative
/// to `root`, the workspace root.
pub fn lines(event: &Event, root: Option<&Path>) -> Vec<Line> {
    use Style::*;
    let show = |path: &Path| show(path, root);
    match event {
        Event::SessionStarted { host, boundaries, watched_directories, listen, restart_only, keys, .. } => {
            let mut lines = vec![if restart_only.is_some() {
                Line::new(Info, format!("running `{host}`; watching {watched_directories} directories"))
            } else if boundaries.is_empty() {
                Line::new(
                    Info,
                    format!(
                        "running `{host}` (no boundary is configured: the hot crate is chosen after the build); watching {watched_directories} directories"
                    ),
                )
            } else {
                let names: Vec<String> = boundaries.iter().map(|b| format!("`{b}`")).collect();
                Line::new(Info, format!("running `{host}` with hot boundary {}; watching {watched_directories} directories", names.join(", ")))
            }];
            match restart_only {
                Some(RestartOnly::Requested) => lines.push(Line::new(Info, "restart-only mode (--no-hot): every edit rebuilds and restarts the program")),
                Some(RestartOnly::Platform) => lines.push(Line::new(
                    Warning,
                    "warning: hot patching is implemented for Linux (ELF) only; on this platform every edit rebuilds and restarts the program",
                )),
                None => {}
            }
            if !listen.is_empty() {
                lines.push(Line::new(Info, format!("holding {} for the program (LISTEN_FDS): no connection is refused across restarts", listen.join(", "))));
            }
            if *keys {
                lines.push(Line::new(Info, "keys: r rebuild and restart now · c clear the screen · q quit"));
            }
            lines
        }
        Event::BoundaryChosen { boundary, choice } => {
            let why = match choice {
                BoundaryChoice::PackageLibrary => "the package's library".to_string(),
                BoundaryChoice::Binary => "the binary's own crate".to_string(),
                BoundaryChoice::OnlyLibraryWithExports { host } => format!("the one crate of `{host}` with #[hot::export] functions"),
                BoundaryChoice::Workspace { crates } => {
                    return vec![Line::new(
                        Info,
                        format!(
                            "hot crates `{}` (every library of the workspace the server uses; `exclude = [\"crate\"]` under [workspace.metadata.hot] keeps one restarting, `boundary` names the only ones)",
                            crates.join("`, `")
                        ),
                    )];
                }
            };
            vec![Line::new(Info, format!("hot boundary `{boundary}` ({why}; set `boundary` under [package.metadata.hot] to choose another)"))]
        }
        Event::Change { paths, action } => {
            let shown: Vec<String> = paths.iter().take(3).map(|p| show(p)).collect();
            let more = if paths.len() > 3 { format!(" and {} more", paths.len() - 3) } else { String::new() };
            let paths = format!("{}{more}", shown.join(", "));
            match action {
                ChangeAction::Patch { boundaries } => {
                    let names: Vec<String> = boundaries.iter().map(|b| format!("`{b}`")).collect();
                    vec![Line::new(Info, format!("{paths} changed → trying a patch of {}", names.join(", ")))]
                }
                ChangeAction::Restart { why, .. } => vec![Line::new(Info, format!("{paths} changed → restart ({why})"))],
                ChangeAction::Build { cause } => {
                    let why = match cause {
                        BuildCause::AfterFailedBuild => "the last build failed",
                        BuildCause::AfterCrash => "the program is not running",
                    };
                    vec![Line::new(Info, format!("{paths} changed → build ({why})"))]
                }
                ChangeAction::Nothing => vec![],
            }
        }
        Event::Ignored { path, why, .. } => vec![Line::new(Info, format!("{} changed → ignored ({why})", show(path)))],
        Event::BuildStarted { target, without_cargo } if without_cargo.is_empty() => vec![Line::new(Info, format!("building `{target}`…"))],
        Event::BuildStarted { target, without_cargo } => {
            let crates: Vec<String> = without_cargo.iter().map(|c| format!("`{c}`")).collect();
            vec![Line::new(Info, format!("building `{target}` (compiling {} without cargo)…", crates.join(", ")))]
        }
        Event::BuildProgress { .. } | Event::PatchStarted { .. } | Event::Cleared => vec![],
        Event::SessionEnded { signal, program } => {
            let why = match signal {
                Some(2) => "Ctrl-C".to_string(),
                Some(15) => "SIGTERM".to_string(),
                Some(1) => "SIGHUP".to_string(),
                Some(other) => format!("signal {other}"),
                None => "q".to_string(),
            };
            let what = match program {
                Some(pid) => format!("stopped pid {pid}, session ended"),
                None => "session ended".to_string(),
            };
            vec![Line::new(Info, format!("{what} ({why})"))]
        }
        Event::Diagnostic(diagnostic) => vec![Line::new(Raw, diagnostic.rendered.clone())],
        Event::CargoOutput { text, .. } => vec![Line::new(Raw, format!("{text}\n"))],
        // A failed build is told by what follows it (the session's error, explain's refusal).
        Event::BuildFinished { .. } => vec![],
        Event::Command { command } => vec![Line::new(Info, format!("$ {command}"))],
        Event::Detail { message } => vec![Line::new(Info, message.clone())],
        Event::Patched(patched) => patched_lines(patched),
        Event::CompileFailed { boundary } => {
            vec![Line::new(Error, format!("error: `{boundary}` does not compile; the program keeps running the last good code. Fix the error and save again"))]
        }
        Event::Raced { boundary } => vec![Line::new(Info, format!("`{boundary}` changed while compiling; waiting for that change"))],
        Event::PatchRejected { boundary, refusal } => {
            vec![Line::new(Warning, format!("warning: cannot patch `{boundary}`: {refusal} → restart"))]
        }
        Event::Started { pid, build_ms, cause } => vec![Line::new(
            Success,
            match cause {
                StartCause::CrashRecovery => format!("started pid {pid} again (restart-on-crash)"),
                StartCause::SessionStart | StartCause::AfterChange => format!("started pid {pid} (build {})", duration(*build_ms)),
            },
        )],
        Event::Restarted { pid, build_ms, cause, .. } => {
            // The change or the refused patch has just been said: the reason is not repeated.
            let head = format!("restarted (pid {pid}, build {})", duration(*build_ms));
            vec![Line::new(
                Success,
                match cause {
                    RestartCause::Requested => format!("{head} because {cause}"),
                    _ => head,
                },
            )]
        }
        Event::Ready { pid, address, since_trigger_ms, trigger, build_ms, start_to_accept_ms } => {
            let trigger = match trigger {
                Trigger::SessionStart => "start of cargo hot",
                Trigger::Edit => "edit",
                Trigger::ScheduledStart => "scheduled start",
                Trigger::Key => "key press",
            };
            vec![Line::new(
                Success,
                format!(
                    "pid {pid} accepting on {address}: ready {} after the {trigger} (build {}, start to first accept {})",
                    duration(*since_trigger_ms),
                    duration(*build_ms),
                    duration(*start_to_accept_ms)
                ),
            )]
        }
        Event::PortHeld { address } => {
            vec![Line::new(Info, format!("holding {address} for the program: its connections wait through restarts (hold-ports = false turns this off)"))]
        }
        Event::Crashed(crashed) => crashed_lines(crashed),
        Event::Stopped { pid, forced: true, timeout_ms } => {
            vec![Line::new(Warning, format!("warning: pid {pid} did not stop within {} of SIGTERM and was killed", duration(*timeout_ms)))]
        }
        Event::Stopped { pid, forced: false, .. } => vec![Line::new(Info, format!("stopped pid {pid}"))],
        Event::Warning { message } => vec![Line::new(Warning, format!("warning: {message}"))],
        Event::Error { message, program_running } => {
            let still = if *program_running { "the program keeps running" } else { "nothing is running" };
            vec![Line::new(Error, format!("error: {message}\n      {still}; cargo hot tries again on the next change"))]
        }
        Event::Fatal { message } => vec![Line::new(Error, format!("error: {message}"))],
    }
}

/// One change that cannot take effect, in words.
fn stale_words(stale: &crate::patch::reach::Stale) -> String {
    use crate::patch::reach::Unreached;
    let function = &stale.function;
    match &stale.why {
        Unreached::StartUp => format!("`{function}` changed, and only start-up code or the host's own code reaches it, not a #[hot::export] function or a build the runtime runs again"),
        Unreached::CalledByHost => {
            format!("`{function}` changed, and the host calls it directly; it cannot be redirected (a closure, an async body or an `async fn`)")
        }
        Unreached::CompiledInto { crate_name } => {
            format!(
                "`{function}` changed, and `{crate_name}`, which is not hot, runs its own compiled copy of it (a generic or #[inline] \
                 function; a router generic over its database is compiled where the database is named): make `{crate_name}` hot too \
                 (list it in `boundary`, or drop `boundary` to make the whole workspace hot) so that its copy is patched"
            )
        }
        Unreached::ValueCompiledInto { crate_name } => {
            format!("the value of `{function}` changed, and `{crate_name}`, which is not hot, has it compiled in (a `const`, a `const fn` or a macro)")
        }
        Unreached::ValueReadByHost => format!("the value of `{function}` changed, and the host reads it directly"),
        Unreached::NotRedirectable { why } => format!("`{function}` changed and its running copy cannot jump to the new code: {why}"),
    }
}

fn patched_lines(patched: &Patched) -> Vec<Line> {
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let kept = match (patched.static_references_kept, patched.thread_local_references_kept) {
        (0, 0) => String::new(),
        (s, 0) => format!(" · {} kept", plural(s, "static reference")),
        (0, t) => format!(" · {} kept", plural(t, "thread-local reference")),
        (s, t) => format!(" · {} and {} kept", plural(s, "static reference"), plural(t, "thread-local reference")),
    };
    let done: Vec<String> = patched.rebuilt.iter().filter(|r| r.error.is_none() && r.kind != "hook").map(|r| format!("{} ({})", r.kind, r.name)).collect();
    let rebuilt = if done.is_empty() { String::new() } else { format!(" · rebuilt {}", done.join(", ")) };
    let redirected = match patched.redirected.as_slice() {
        [] => String::new(),
        [one] => format!(" · `{one}` redirected"),
        [first, rest @ ..] => format!(" · {} functions redirected (`{first}` and {} more)", rest.len() + 1, rest.len()),
    };
    let layouts = match patched.layouts_changed.as_slice() {
        [] => String::new(),
        [one] => format!(" · new layout of `{one}` (no old value is held)"),
        [first, rest @ ..] => format!(" · new layouts of `{first}` and {} more (no old value is held)", rest.len()),
    };
    // An edit that takes effect through redirects alone switches no export: nothing to say.
    let switched = match patched.exports_switched {
        0 if !patched.redirected.is_empty() => String::new(),
        n => format!(" · {} switched", plural(n, "export")),
    };
    // A patch that spans crates says what each one cost.
    let compile = match patched.crates.as_slice() {
        [] | [_] => duration(patched.compile_ms),
        crates => format!(
            "{}: {}",
            duration(patched.compile_ms),
            crates.iter().map(|c| format!("{} {}", c.package, duration(c.compile_ms))).collect::<Vec<_>>().join(", ")
        ),
    };
    let mut lines = vec![Line::new(
        Style::Success,
        format!(
            "patched `{}` in {} (compile {}, link {}, check {}, load {}){switched}{redirected}{layouts}{kept}{rebuilt} · pid {} kept",
            patched.boundary,
            duration(patched.total_ms),
            compile,
            duration(patched.link_ms),
            duration(patched.check_ms),
            duration(patched.load_ms),
            patched.pid
        ),
    )];
    if let Some(first) = patched.also_run_at_start_up.first() {
        let more = match patched.also_run_at_start_up.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        lines.push(Line::new(
            Style::Warning,
            format!(
                "warning: `{first}`{more} changed, and start-up code reaches it too: calls made through #[hot::export] functions run the new version, \
                 but what start-up already did with it (a value it computed, a route or function pointer `main` kept) stays old. Press r (or restart cargo hot) if that matters"
            ),
        ));
    }
    for item in &patched.rebuilt {
        if let Some(error) = &item.error {
            lines.push(Line::new(
                Style::Warning,
                format!(
                    "warning: the {} created at {} was not rebuilt: {error}. The previous one keeps running; the next patch tries again",
                    item.kind, item.name
                ),
            ));
        }
        if let Some(warning) = &item.warning {
            lines.push(Line::new(Style::Warning, format!("warning: the {} created at {}: {warning}", item.kind, item.name)));
        }
    }
    lines
}

fn crashed_lines(crashed: &Crashed) -> Vec<Line> {
    let mut report = format!("error: the program (pid {}) {} after {}", crashed.pid, crashed.status, duration(crashed.ran_ms));
    if !crashed.panic.is_empty() {
        report.push_str("; it panicked:");
        for line in &crashed.panic {
            report.push_str(&format!("\n      | {line}"));
        }
    }
    if !crashed.last_output.is_empty() {
        report.push_str(if crashed.panic.is_empty() { "; its last output:" } else { "\n      its last output:" });
        for line in &crashed.last_output {
            report.push_str(&format!("\n      | {line}"));
        }
    }
    let next = match crashed.next {
        AfterCrash::WaitForFix => "cargo hot keeps watching, and builds and starts the program on the next change that could fix it".to_string(),
        AfterCrash::StartAgain { in_ms } => format!("restart-on-crash: starting it again in {}", duration(in_ms)),
    };
    vec![Line::new(Style::Error, report), Line::new(Style::Info, next)]
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::NotSource { what } => f.write_str(match what {
                crate::rules::NotSource::TargetDir => "in the target directory",
                crate::rules::NotSource::VcsMetadata => "git metadata",
                crate::rules::NotSource::OwnOutput => "cargo hot's own output",
            }),
            Why::IgnorePattern { pattern, origin } => write!(f, "matches ignore pattern `{pattern}` of {origin}"),
            Why::RestartPattern { pattern, origin } => write!(f, "matches restart pattern `{pattern}` of {origin}"),
            Why::WatchedFile { pattern, origin } => write!(f, "a watched file (`{pattern}` of {origin})"),
            Why::EnvFile => f.write_str("the env-file changed"),
            Why::RestartFile { file } => f.write_str(match file {
                RestartFile::Manifest => "a manifest changed",
                RestartFile::LockFile => "the lock file changed",
                RestartFile::BuildScript => "a build script changed",
                RestartFile::DotEnv => "the environment file changed",
                RestartFile::Toolchain => "the toolchain file changed",
                RestartFile::CargoConfig => "cargo's configuration changed",
            }),
            Why::OnlyBoundary { boundary } => write!(f, "compiled only by the boundary `{boundary}`"),
            Why::Declines { boundary } => write!(f, "it says `hot::decline!()`: edits to it always restart (`{boundary}`)"),
            Why::DeclinedVersion { boundary } => write!(f, "the version the program runs says `hot::decline!()` (`{boundary}`)"),
            Why::TwoBoundaries { first, second } => write!(f, "compiled by two boundaries, `{first}` and `{second}`"),
            Why::BoundaryAndOther { boundary, other } => write!(f, "compiled by the boundary `{boundary}` and also by `{other}`"),
            Why::OtherCrate { package } => write!(f, "compiled by `{package}`, outside the boundary"),
            Why::Binary { bin } => write!(f, "compiled into the binary `{bin}` (its main.rs and modules), outside the boundary"),
            Why::Host { bin } => write!(f, "compiled into `{bin}` by a dependency, outside the boundary"),
            Why::RestartOnly => f.write_str("restart-only mode"),
            Why::NoCrate { host, git_ignored } => {
                write!(f, "{}no crate of `{host}` compiles it", if *git_ignored { "git ignores it, and " } else { "" })
            }
        }
    }
}

impl fmt::Display for RestartCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartCause::Change { path, why } => write!(f, "of {}: {why}", path.display()),
            RestartCause::Refused { refusal } => write!(f, "the patch was refused: {refusal}"),
            RestartCause::Rebuilt => f.write_str("of a rebuild"),
            RestartCause::Requested => f.write_str("r was pressed"),
            RestartCause::RestartOnly { path } => write!(f, "of {} (restart-only mode)", path.display()),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TypeChanged { what, boundary } => write!(f, "{what} in `{boundary}`"),
            Refusal::LayoutHeld { held, boundary } => {
                write!(f, "the layout of `{}` changed in `{boundary}`, and ", held.type_name)?;
                let inside = held.inside.as_ref().map(|i| format!(" (inside `{i}`)")).unwrap_or_default();
                match &held.place {
                    Place::Static { name } => write!(f, "the static `{name}` holds old values of it{inside}"),
                    Place::Export { name } => write!(f, "the export `{name}` takes or returns it{inside}: old callers pass old values"),
                    Place::TraitObject { trait_name } => write!(f, "the program may hold old values of it behind `dyn {trait_name}`{inside}"),
                    Place::Outside => write!(f, "code that is not patched (the host or another crate) uses it{inside}"),
                    Place::Redirected { function } => write!(f, "`{function}`, whose old copy is redirected to the new code, takes or returns it{inside}"),
                    Place::Unknown { why } => write!(f, "where the program holds its values cannot be read: {why}"),
                    Place::UnknownDowncast { patch } => {
                        write!(f, "{patch} put a value of a type it did not describe behind a downcastable trait object, which may be this one")
                    }
                }
            }
            Refusal::LayoutUnproven { file, why } => {
                write!(f, "{} may change a layout, which cannot be checked: {why}", file.file_name().map(|n| n.to_string_lossy()).unwrap_or_default())
            }
            Refusal::ChangedDuringBuild { boundary } => write!(f, "the boundary `{boundary}` changed while the program was being built"),
            Refusal::Gate { rejection } => rejection.fmt(f),
            Refusal::Unbindable { reason } => f.write_str(reason),
            Refusal::StartUpOnly { functions } => {
                let more = if functions.len() > 1 { format!(" (and {} more)", functions.len() - 1) } else { String::new() };
                write!(
                    f,
                    "the edit changes `{}`{more}, which neither a #[hot::export] function nor a build the runtime runs again (hot::axum::router, hot::actix::configure, hot::tower::service, Hot::new, hot::scope) reaches: only start-up code such as `main` runs it, so a patch could not switch to it",
                    functions.first().map(String::as_str).unwrap_or("?")
                )
            }
            Refusal::Stale { changes } => {
                let first = changes.first().map(stale_words).unwrap_or_default();
                let more = if changes.len() > 1 { format!(" (and {} more)", changes.len() - 1) } else { String::new() };
                write!(f, "{first}{more}, so a patch would leave the old code answering")
            }
            Refusal::SpanEdited { crate_name, boundary, why } => {
                write!(f, "the patch of `{boundary}` must compile `{crate_name}` again with it, and {why}")
            }
            Refusal::PackedDebugInfo => {
                f.write_str("a patch of the binary cannot be built with `split-debuginfo = \"packed\"` (use \"unpacked\" or \"off\" in the dev profile)")
            }
            Refusal::NotRunning => f.write_str("the program is not running"),
            Refusal::LoadFailed { message } => write!(f, "the program could not load the patch: {message}"),
            Refusal::Failed { message } => f.write_str(message),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NoExports { crate_name } => {
                write!(f, "the running program has no #[hot::export] functions from `{crate_name}`, so nothing can be switched to new code")
            }
            Rejection::SignatureChanged { export } => write!(f, "the signature of `{export}` changed"),
            Rejection::NewExport { export } => write!(f, "`{export}` is a new export"),
            Rejection::ExportRemoved { export } => write!(f, "the export `{export}` was removed"),
            Rejection::LayoutChanged { export } => write!(f, "the size or alignment of an argument or the result of `{export}` changed"),
            Rejection::MissingSymbol { symbol, more, unchecked_libraries } => {
                write!(f, "the new code needs `{symbol}`")?;
                if *more > 0 {
                    write!(f, " (and {more} more)")?;
                }
                if !unchecked_libraries.is_empty() {
                    write!(f, "; libraries not found to check: {}", unchecked_libraries.join(", "))?;
                }
                f.write_str(", which the running program does not contain")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(142), "142 ms");
        assert_eq!(duration(1240), "1.24 s");
    }

    #[test]
    fn a_refused_patch_says_what_happens_then_the_outcome() {
        let refusal = Refusal::Gate { rejection: Rejection::SignatureChanged { export: "handlers::slow".into() } };
        let rejected = lines(&Event::PatchRejected { boundary: "handlers".into(), refusal: refusal.clone() }, None);
        assert_eq!(rejected[0].text, "warning: cannot patch `handlers`: the signature of `handlers::slow` changed → restart");
        let restarted = lines(&Event::Restarted { pid: 2, previous_pid: 1, build_ms: 1120, cause: RestartCause::Refused { refusal } }, None);
        assert_eq!(restarted[0].text, "restarted (pid 2, build 1.12 s)", "the reason was said once, just before");
        let trying = lines(
            &Event::Change { paths: vec!["/ws/crates/handlers/src/lib.rs".into()], action: ChangeAction::Patch { boundaries: vec!["handlers".into()] } },
            Some(Path::new("/ws")),
        );
        assert_eq!(trying[0].text, "crates/handlers/src/lib.rs changed → trying a patch of `handlers`");
    }

    #[test]
    fn a_crash_report_leads_with_the_panic() {
        let crashed = Crashed {
            pid: 7,
            status: "exited with status 101".into(),
            ran_ms: 1500,
            panic: vec!["thread 'main' panicked at src/main.rs:3:5:".into(), "no config".into()],
            last_output: vec!["   2: server::main".into()],
            next: AfterCrash::WaitForFix,
        };
        let lines = lines(&Event::Crashed(Box::new(crashed)), None);
        assert!(lines[0].text.starts_with("error: the program (pid 7) exited with status 101 after 1.50 s; it panicked:\n      | thread 'main' panicked"));
        assert!(lines[0].text.contains("      | no config\n      its last output:\n      |    2: server::main"), "{}", lines[0].text);
    }
}

/// How an edit of one function's body would take effect (`cargo hot explain FILE`).
pub fn function_verdict(verdict: &crate::explain::functions::Verdict) -> String {
    use crate::explain::functions::Verdict;
    match verdict {
        Verdict::Patch => "patch".to_string(),
        Verdict::Redirect => "patch (the host reaches it too: its running copies are redirected)".to_string(),
        Verdict::Spans(crates) => format!("patch, compiling `{}` again with it (its own copy of it, or its callers' futures)", crates.join("`, `")),
        Verdict::Restart(why) => format!("restart ({why})"),
    }
}
