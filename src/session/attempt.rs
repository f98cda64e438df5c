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
use crate::host::{HostState, ProgramView, RunningCode};
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
        let Some(pid) = self.supervisor.pid() else {
            return refuse(Refusal::NotRunning);
        };
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
        // With the layouts of the running program's types at hand (its DWARF), only a static's
        // type does: a type's layout is proven from the compiled code below.
        let files = self.host.tree.boundary_files(index);
        self.events.emit(Event::Command { command: format!("{} (the boundary's command, for a patch)", unit.invocation.rustc.display()) });
        let compiling = patch::start_compile(&unit, self.tool, &dirs)?;
        let parsed = CrateSource::read(&files);
        let binary = matches!(unit.objects, UnitObjects::Binary { .. });
        let mut types_compile = None;
        // Only an edit that could change a layout needs the running program's types (and
        // waits for them to be read).
        let layout_edit = parsed.as_ref().is_ok_and(|source| self.skeleton_change(index, source).is_some());
        let mut layouts_known = layout_edit && self.types_known(index);
        if let (Ok(source), Some(loaded)) = (&parsed, &self.host.boundaries[index].loaded) {
            let changed =
                if layouts_known || !layout_edit { loaded.first_static_difference(&source.definitions) } else { loaded.first_difference(&source.definitions) };
            if let Some(what) = changed {
                compiling.abandon();
                return refuse(Refusal::TypeChanged { what, boundary });
            }
            if layouts_known && !binary {
                types_compile = Some({
                    // Its directories are the types warm-up's: stop it (it is done, or too late).
                    self.host.boundaries[index].types_warmup = None;
                    patch::start_types_compile(&unit, self.tool, &dirs)?
                });
            }
        }
        let compiled = compiling.finish();
        for diagnostic in &compiled.diagnostics {
            self.events.emit(Event::Diagnostic(Box::new(diagnostic.clone())));
        }
        if !compiled.success {
            types_compile.map(patch::Compiling::abandon);
            return Ok(PatchOutcome::CompileFailed { diagnostics: crate::ui::strip_ansi(&compiled.rendered()) });
        }
        let new_files = crate::depinfo::read(&dirs.dep_info(&unit), &unit.invocation.cwd).unwrap_or_else(|_| files.clone());
        // A module was added or removed: read the crate's files as rustc just listed them.
        let reread = sorted(&new_files) != sorted(&files);
        let parsed = if reread { CrateSource::read(&new_files) } else { parsed };
        let CrateSource { definitions: current, surface, skeleton, snapshot, .. } = match parsed {
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
        if reread {
            layouts_known = self.types_known(index);
        }
        match &self.host.boundaries[index].loaded {
            Some(loaded) if reread => {
                let changed = if layouts_known { loaded.first_static_difference(&current) } else { loaded.first_difference(&current) };
                if let Some(what) = changed {
                    return refuse(Refusal::TypeChanged { what, boundary });
                }
            }
            Some(_) => {}
            None => return refuse(Refusal::ChangedDuringBuild { boundary }),
        }

        // An edit that could change a layout: the new layouts, from the compiled types.
        let skeleton_change = self.host.boundaries[index].running.as_ref().ok().and_then(|r| r.skeleton.first_change(&skeleton));
        if skeleton_change.is_some() {
            layouts_known = self.types_known(index);
        }
        let mut fallback_failed = None;
        if skeleton_change.is_some() && !layouts_known && !binary {
            match self.layouts_of_unchanged_crate(index, &unit, &dirs) {
                Ok(()) => layouts_known = true,
                Err(why) => fallback_failed = Some(why),
            }
        }
        let new_types = match (&skeleton_change, layouts_known) {
            (None, _) => None,
            (Some(file), false) => {
                let why = match &self.host.boundaries[index].running {
                    Ok(RunningCode { program: Some(ProgramView { types, .. }), .. }) => match types.read() {
                        Some(Err(why)) => why.clone(),
                        _ => "the running program's types were not read".to_string(),
                    },
                    Err(why) => why.clone(),
                    _ => "the running program's types were not read".to_string(),
                };
                let why = match fallback_failed {
                    Some(also) => format!("{why}; and the layouts of the unchanged crate could not be read either ({also})"),
                    None => why,
                };
                return refuse(Refusal::LayoutUnproven { file: file.clone(), why });
            }
            (Some(_), true) => {
                let types_dirs = dirs.for_types();
                let source = if binary {
                    dirs.objects(&unit)
                } else {
                    // A module added since the compile started can make the edit one that
                    // could change a layout only now.
                    let compile = match types_compile.take() {
                        Some(compile) => compile,
                        None => {
                            // Its directories are the types warm-up's: stop it (it is done, or too late).
                            self.host.boundaries[index].types_warmup = None;
                            patch::start_types_compile(&unit, self.tool, &dirs)?
                        }
                    };
                    if !compile.finish().success {
                        return refuse(Refusal::Failed { message: "the boundary compiled, but not with full debug info (for its types' layouts)".to_string() });
                    }
                    // Both compiles must have seen the sources the checks read.
                    if !snapshot.unchanged() {
                        return Ok(PatchOutcome::Raced);
                    }
                    types_dirs.objects(&unit)
                };
                let objects = source.read()?;
                match crate::layout::dwarf::read_objects(&objects, &unit.boundary.crate_name) {
                    Ok(facts) => Some(facts),
                    Err(err) => return refuse(Refusal::Failed { message: format!("cannot read the layouts of the new code: {err:#}") }),
                }
            }
        };
        let Some(patching) = self.host.patching.as_ref() else {
            return refuse(Refusal::NotRunning);
        };

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
        // A changed layout patches only when no old value of it can meet the new code.
        let types = program.types.read().and_then(|types| types.as_ref().ok());
        let changed_layouts = match (&new_types, types) {
            (Some(new), Some(running_types)) => {
                if let Some((function, was, now)) = crate::layout::changed_signature(running_types, new, &analysis.redirect) {
                    let why = format!("its compiled signature changed (`{was}` → `{now}`), so its callers would pass what it no longer takes");
                    return refuse(Refusal::Stale {
                        changes: vec![patch::reach::Stale {
                            function: patch::reach::readable(&function),
                            why: patch::reach::Unreached::NotRedirectable { why },
                        }],
                    });
                }
                if let Some((path, was, now)) = crate::layout::changed_static(running_types, new) {
                    let what = format!("the compiled type of the static `{path}` changed (`{was}` → `{now}`), so the value the program holds cannot be kept");
                    return refuse(Refusal::TypeChanged { what, boundary });
                }
                let changed = crate::layout::changed_layouts(running_types, new);
                if let Err(held) = crate::layout::check(running_types, &changed, &analysis.redirect) {
                    return refuse(Refusal::LayoutHeld { held, boundary });
                }
                changed
            }
            (Some(_), None) => return refuse(Refusal::Failed { message: "the running program's types were not read, so the new layouts cannot be compared".to_string() }),
            // No layout changed; values of a layout an earlier patch changed must still not reach
            // a function redirected now.
            (None, Some(running_types)) => {
                if let Err(held) = crate::layout::check(running_types, &[], &analysis.redirect) {
                    return refuse(Refusal::LayoutHeld { held, boundary });
                }
                Vec::new()
            }
            (None, None) => Vec::new(),
        };
        // A patch without type information: does it bring a downcastable vtable of a type it
        // does not describe?
        let unknown_downcasts = new_types.is_none() && {
            let before = crate::layout::downcast_instances(
                crate::codediff::SymbolNames::read(baseline).map(|n| n.functions).unwrap_or_default().iter().map(String::as_str),
            );
            let after = crate::codediff::SymbolNames::read(&objects).map(|n| n.functions).unwrap_or_default();
            crate::layout::downcast_instances(after.iter().map(String::as_str)).difference(&before).next().is_some()
        };
        let also_run_at_start_up = analysis.also_run_at_start_up.clone();
        let new_objects = objects.clone();
        let patch_path = self.patch_dir.join(format!("{}-{}.so", unit.boundary.crate_name, self.number));
        std::fs::create_dir_all(&self.patch_dir)?;
        let linked = match patch::link(objects, &patching.linker, &self.patch_dir.join("objects"), &patch_path, homes)? {
            Ok(linked) => linked,
            Err(unbindable) => return refuse(Refusal::Unbindable { reason: unbindable.0 }),
        };
        // A static the program has that the patch keeps a copy of anyway starts again from its
        // initializer: never silently.
        if let Ok((defined, _)) = abi::elf::read_statics(&patch_path, std::slice::from_ref(&unit.boundary.crate_name), "") {
            let fresh = homes.fresh_copies(&defined);
            if let Some(first) = fresh.first() {
                let more = if fresh.len() > 1 { format!(" (and {} more)", fresh.len() - 1) } else { String::new() };
                self.events.warn(format!(
                    "the new code has its own copy of the static `{first}`{more}, which starts again from its initializer: \
                     its source declaration was not recognised (a static made by a macro?); press r to restart if its value matters"
                ));
            }
        }
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
                    running.skeleton = skeleton;
                    // A patch that was not checked for layouts need not wait for them.
                    if let Some(Ok(types)) = running.program.as_mut().map(|p| p.types.wait()).filter(|_| new_types.is_some() || unknown_downcasts) {
                        match new_types {
                            Some(new) => {
                                types.changed_ever.extend(changed_layouts.iter().cloned());
                                types.absorb(new)
                            }
                            None if unknown_downcasts => {
                                types.unknown_downcasts.get_or_insert_with(|| patch_path.file_name().unwrap_or_default().to_string_lossy().into_owned());
                            }
                            None => {}
                        }
                    }
                    if let Some(Err(err)) = running.program.as_mut().map(|program| program.copies.add_patch(&patch_path, base)) {
                        self.events.warn(format!("cannot read the functions of {}: {err:#}", patch_path.display()));
                    }
                }
                // An export's entry is switched through its slot; redirecting its copy too is
                // not news.
                let mut redirected: Vec<String> =
                    analysis.redirect.iter().filter(|n| !n.starts_with(crate::abi::elf::ENTRY_PREFIX)).map(|n| patch::reach::readable(n)).collect();
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
                    layouts_changed: changed_layouts.iter().filter(|t| !t.contains('<')).cloned().collect(),
                })))
            }
            ReloadOutcome::Error { message } => refuse(Refusal::LoadFailed { message }),
        }
    }
}

impl Attempt<'_> {
    /// When the host has no debug info of its types: the layouts of the unchanged crate from
    /// its full-debug-info warm-up, as the running program's, with holders unknown (every
    /// changed layout restarts; an edit that changes none patches). Whether they were found.
    fn layouts_of_unchanged_crate(&mut self, index: usize, unit: &crate::build::BoundaryUnit, dirs: &patch::CompileDirs) -> Result<(), String> {
        let warmup = self.host.boundaries[index].types_warmup.take().ok_or("no compile of the unchanged crate with full debug info ran")?;
        // It runs at idle priority: waiting for it costs this edit what its own compile would.
        warmup.wait()?;
        let objects = dirs.for_types().objects(unit).read().map_err(|err| format!("{err:#}"))?;
        let mut facts = crate::layout::dwarf::read_objects(&objects, &unit.boundary.crate_name).map_err(|err| format!("{err:#}"))?;
        let Ok(RunningCode { program: Some(program), .. }) = &mut self.host.boundaries[index].running else {
            return Err("how the running program reaches the boundary was not read".to_string());
        };
        let why = match program.types.read() {
            Some(Err(why)) => why.clone(),
            _ => "the running program's types were not read".to_string(),
        };
        facts.holders_unknown = Some(why);
        program.types = crate::host::TypesOfProgram::Read(Ok(facts));
        Ok(())
    }

    /// Whether the running program's types were read (waiting for them if need be).
    fn types_known(&mut self, index: usize) -> bool {
        match &mut self.host.boundaries[index].running {
            Ok(RunningCode { program: Some(program), .. }) => program.types.wait().is_ok(),
            _ => false,
        }
    }

    /// The first file of the boundary whose edit could change a layout (see
    /// `layout::skeleton`), compared with the running program's version.
    fn skeleton_change(&self, index: usize, source: &CrateSource) -> Option<PathBuf> {
        self.host.boundaries[index].running.as_ref().ok().and_then(|r| r.skeleton.first_change(&source.skeleton))
    }
}

fn sorted(files: &[PathBuf]) -> Vec<&PathBuf> {
    let mut sorted: Vec<&PathBuf> = files.iter().collect();
    sorted.sort();
    sorted
}
