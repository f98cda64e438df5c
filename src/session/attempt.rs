//! One patch attempt of one boundary: compile, check the types the program has loaded, bind
//! and link, gate, load. It returns a typed outcome and never restarts anything itself: the
//! session matches on the outcome once (record, retry, or restart).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use hot::protocol::ReloadOutcome;

use crate::abi::{self, CrateSource};
use crate::build::UnitObjects;
use crate::events::{ms, Event, Events, Patched, Refusal};
use crate::host::{HostState, RunningCode};
use crate::patch::reach::NotRedirected;
use crate::patch::{self, bind::Homes};
use crate::supervisor::Supervisor;

/// How long the program may take to load a patch before cargo hot gives up and restarts it.
/// Includes the app's rebuilds (a router builder, jobs that take seconds to stop).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// What became of a patch attempt.
#[derive(Debug)]
pub enum PatchOutcome {
    /// The program runs the new code.
    Applied(Box<Patched>),
    /// The boundary does not compile (its diagnostics were emitted); the program keeps the
    /// last good code. The text of the diagnostics says which new file could fix it.
    CompileFailed { diagnostics: String },
    /// The boundary changed again while it compiled; that change is handled next.
    Raced,
    /// The patch cannot be applied safely: a restart is due.
    Refused(Refusal),
}

/// What an attempt works with.
pub struct Attempt<'a> {
    pub host: &'a mut HostState,
    pub supervisor: &'a mut Supervisor,
    /// Where the running program keeps the boundaries' statics, and its pid.
    pub homes: &'a mut Option<(u32, Homes)>,
    /// The cargo-hot executable (the linker of a patch of the binary).
    pub tool: &'a Path,
    /// This session's patch directory, and the attempt's number in the session.
    pub patch_dir: PathBuf,
    pub number: u64,
    pub events: &'a Events,
}

impl Attempt<'_> {
    /// Patches boundary `index` into the running program.
    pub fn run(mut self, index: usize) -> PatchOutcome {
        self.events.emit(Event::PatchStarted { boundary: self.host.boundaries[index].unit.boundary.package.clone() });
        match self.patch(index) {
            Ok(outcome) => outcome,
            Err(err) => PatchOutcome::Refused(Refusal::Failed { message: format!("{err:#}") }),
        }
    }

    fn patch(&mut self, index: usize) -> Result<PatchOutcome> {
        let started = Instant::now();
        let unit = self.host.boundaries[index].unit.clone();
        let refuse = |refusal| Ok(PatchOutcome::Refused(refusal));
        let Some(pid) = self.supervisor.pid() else { return refuse(Refusal::NotRunning) };
        if matches!(unit.objects, UnitObjects::Binary { .. }) && unit.invocation.codegen_option("split-debuginfo") == Some("packed") {
            // rustc would package the debug info of an executable the patch never links.
            return refuse(Refusal::PackedDebugInfo);
        }
        let boundary = unit.boundary.package.clone();
        let dirs = self.host.boundaries[index].dirs.clone();
        // The warm-up compile fills the patch's incremental cache: the patch builds on it.
        // It is also the baseline of a library's code (see `patch::Warmup`): read it before
        // the patch's compile overwrites it.
        if let Some(warmup) = self.host.boundaries[index].warmup.take() {
            let baseline = warmup.wait().and_then(|()| dirs.objects(&unit).read().map_err(|err| format!("{err:#}")));
            if let Ok(running) = &mut self.host.boundaries[index].running {
                if running.objects.is_none() {
                    match baseline {
                        Ok(objects) => running.objects = Some(objects),
                        Err(why) => self.host.boundaries[index].running = Err(why),
                    }
                }
            }
        }
        // The boundary's type definitions are read while rustc compiles the same files; a
        // changed definition the program has loaded restarts at once, abandoning the compile.
        let files = self.host.tree.boundary_files(index);
        self.events.emit(Event::Command { command: format!("{} (the boundary's command, for a patch)", unit.invocation.rustc.display()) });
        let compiling = patch::start_compile(&unit, self.tool, &dirs)?;
        let parsed = CrateSource::read(&files);
        if let (Ok(source), Some(loaded)) = (&parsed, &self.host.boundaries[index].loaded) {
            if let Some(what) = loaded.first_difference(&source.definitions) {
                compiling.abandon();
                return refuse(Refusal::TypeChanged { what, boundary });
            }
        }
        let compiled = compiling.finish();
        for diagnostic in &compiled.diagnostics {
            self.events.emit(Event::Diagnostic(Box::new(diagnostic.clone())));
        }
        if !compiled.success {
            return Ok(PatchOutcome::CompileFailed { diagnostics: crate::ui::strip_ansi(&compiled.rendered()) });
        }
        let new_files = crate::depinfo::read(&dirs.dep_info(&unit), &unit.invocation.cwd).unwrap_or_else(|_| files.clone());
        // A module was added or removed: read the crate's files as rustc just listed them.
        let reread = sorted(&new_files) != sorted(&files);
        let parsed = if reread { CrateSource::read(&new_files) } else { parsed };
        let CrateSource { definitions: current, surface, .. } = match parsed {
            Ok(source) if source.snapshot.unchanged() => source,
            // rustc and the type check may have seen different contents; the edit that raced
            // is queued, and its own burst will patch it.
            Ok(_) => return Ok(PatchOutcome::Raced),
            Err(err) => {
                let message = format!("cannot read the type definitions of `{}`: {err:#}", unit.boundary.package);
                return refuse(Refusal::Failed { message });
            }
        };
        self.host.tree.update_boundary(index, new_files);
        self.host.tree.declined.extend(current.declining_files().iter().cloned());

        // No type definition that the running program has loaded may change (the files read
        // before the compile were checked then).
        match &self.host.boundaries[index].loaded {
            Some(loaded) if reread => {
                if let Some(what) = loaded.first_difference(&current) {
                    return refuse(Refusal::TypeChanged { what, boundary });
                }
            }
            Some(_) => {}
            None => return refuse(Refusal::ChangedDuringBuild { boundary }),
        }
        let Some(patching) = self.host.patching.as_ref() else { return refuse(Refusal::NotRunning) };

        // Where the running program keeps the boundary's statics: the patch uses those copies.
        if self.homes.as_ref().is_none_or(|(of, _)| *of != pid) {
            let info = self.supervisor.program_info(Duration::from_secs(3))?;
            let image = &patching.image;
            *self.homes = Some((pid, Homes::of_program(&image.statics, image.anchor, info.anchor, info.tls_offset)));
        }
        let (_, homes) = self.homes.as_mut().expect("found above");
        homes.declare(current.declared_statics().clone());
        let objects = dirs.objects(&unit).read()?;
        // How each change of the compiled code takes effect in the running program: through
        // the switched exports, by redirecting the running copies, or not at all (restart).
        let (running, program) = match &self.host.boundaries[index].running {
            Ok(running @ RunningCode { program: Some(program), .. }) => (running, program),
            Ok(_) => return refuse(Refusal::Failed { message: "how the running program reaches the boundary was not read".to_string() }),
            Err(why) => return refuse(Refusal::Failed { message: format!("cannot compare the new code with the running program's: {why}") }),
        };
        let surface_change = running.surface.first_difference(&surface);
        let can_redirect = |name: &str| -> Result<(), NotRedirected> {
            if let Some(change) = &surface_change {
                return Err(NotRedirected::Cannot(format!("{change}, so the same function may now take other arguments")));
            }
            // An `async fn`'s future or an `impl Trait`: its layout is its body's.
            let item = patch::reach::item_path(name);
            let last = item.rsplit("::").next().unwrap_or(&item);
            if surface.has_opaque_result(last) || running.surface.has_opaque_result(last) {
                return Err(NotRedirected::ThroughCreators);
            }
            program.copies.check(name).map_err(NotRedirected::Cannot)
        };
        let Some(baseline) = &running.objects else {
            return refuse(Refusal::Failed { message: "the code the program runs was not compiled for comparison (no warm-up compile ran)".to_string() });
        };
        // A copy another crate compiled is not in the patch: the source tells whether the body
        // of a function of that name changed.
        let body_changed = |item: &str| running.surface.body_changed(&surface, item.rsplit("::").next().unwrap_or(item));
        let analysis = match patch::reach::analyse(baseline, &objects, &program.outside, &can_redirect, &body_changed) {
            Ok(analysis) => analysis,
            Err(err) => return refuse(Refusal::Failed { message: format!("cannot compare the new code with the running program's: {err:#}") }),
        };
        if !analysis.stale.is_empty() {
            let start_up_only = analysis.stale.iter().all(|s| s.why == patch::reach::Unreached::StartUp);
            return refuse(if start_up_only && program.outside.has_main {
                Refusal::StartUpOnly { functions: analysis.stale.iter().map(|s| s.function.clone()).collect() }
            } else {
                Refusal::Stale { changes: analysis.stale }
            });
        }
        let also_run_at_start_up = analysis.also_run_at_start_up.clone();
        let new_objects = objects.clone();
        let patch_path = self.patch_dir.join(format!("{}-{}.so", unit.boundary.crate_name, self.number));
        std::fs::create_dir_all(&self.patch_dir)?;
        let linked = match patch::link(objects, &patching.linker, &self.patch_dir.join("objects"), &patch_path, homes)? {
            Ok(linked) => linked,
            Err(unbindable) => return refuse(Refusal::Unbindable { reason: unbindable.0 }),
        };
        let checked = Instant::now();
        let approved = match abi::check_file(&patching.image, &unit.boundary.crate_name, &patch_path)? {
            Ok(approved) => approved,
            Err(rejection) => return refuse(Refusal::Gate { rejection }),
        };
        let redirects = match program.copies.plan(&analysis.redirect, &patch_path, homes.bias) {
            Ok(redirects) => redirects,
            Err(stale) => return refuse(Refusal::Stale { changes: vec![stale] }),
        };
        let check_time = checked.elapsed();

        match self.supervisor.reload(&patch_path, &approved.exports, &redirects, RELOAD_TIMEOUT)? {
            ReloadOutcome::Ok { load_micros, switched, redirected: _, base, rebuilt } => {
                if let Ok(running) = &mut self.host.boundaries[index].running {
                    running.objects = Some(new_objects);
                    running.surface = surface;
                    if let Some(Err(err)) = running.program.as_mut().map(|program| program.copies.add_patch(&patch_path, base)) {
                        self.events.warn(format!("cannot read the functions of {}: {err:#}", patch_path.display()));
                    }
                }
                let mut redirected: Vec<String> = analysis.redirect.iter().map(|n| patch::reach::readable(n)).collect();
                redirected.sort();
                redirected.dedup();
                if let Some(loaded) = &mut self.host.boundaries[index].loaded {
                    loaded.absorb(current);
                }
                // Statics this patch introduced keep their values in later patches too (if the
                // program said where it loaded the patch).
                match abi::elf::read_statics(&patch_path, std::slice::from_ref(&unit.boundary.crate_name), "") {
                    Ok((introduced, _)) if base != 0 => {
                        if let Some((_, homes)) = self.homes.as_mut() {
                            homes.add_patch(&introduced, base);
                        }
                    }
                    Ok(_) => {}
                    Err(err) => self.events.warn(format!("cannot read the statics of {}: {err:#}", patch_path.display())),
                }
                Ok(PatchOutcome::Applied(Box::new(Patched {
                    boundary,
                    pid,
                    total_ms: ms(started.elapsed()),
                    compile_ms: ms(compiled.duration),
                    link_ms: ms(linked.duration),
                    check_ms: ms(check_time),
                    load_ms: ms(Duration::from_micros(load_micros)),
                    exports_switched: switched,
                    static_references_kept: linked.bound.statics,
                    thread_local_references_kept: linked.bound.thread_locals,
                    rebuilt,
                    also_run_at_start_up,
                    redirected,
                    redirected_copies: redirects.len(),
                    functions_changed: analysis.diff.changed.len(),
                })))
            }
            ReloadOutcome::Error { message } => refuse(Refusal::LoadFailed { message }),
        }
    }
}

fn sorted(files: &[PathBuf]) -> Vec<&PathBuf> {
    let mut sorted: Vec<&PathBuf> = files.iter().collect();
    sorted.sort();
    sorted
}
