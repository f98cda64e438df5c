//! One patch attempt of one boundary: compile, check the types the program has loaded, bind
//! and link, gate, load. It returns a typed outcome and never restarts anything itself: the
//! session matches on the outcome once (record, retry, or restart).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hot::protocol::ReloadOutcome;

use crate::abi::{self, CrateSource};
use crate::build::UnitObjects;
use crate::events::{ms, CrateCompile, Event, Events, Patched, Refusal};
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
        // The patch has the machine to itself: warm-ups still compiling wait.
        self.host.pause_warm_ups(true);
        let outcome = match self.patch(index) {
            Ok(outcome) => outcome,
            Err(err) => PatchOutcome::Refused(Refusal::Failed { message: format!("{err:#}") }),
        };
        self.host.pause_warm_ups(false);
        outcome
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
        // The crates this patch compiles: this one, and those that must be compiled with it
        // for the compiler to see one version of each (see `span`); more may join below.
        let mut span = self.host.crates.close(&BTreeSet::from([index]));
        // How the program reaches its code is read while the first patch compiles; companions
        // are checked against it first.
        if span.len() > 1 {
            self.host.program_views();
        }
        for &member in &span {
            self.take_warm_up(member);
            if member != index {
                if let Err(refusal) = self.companion_as_running(member, index) {
                    return refuse(refusal);
                }
            }
        }
        let compile_dirs = self.compile_dirs(index);
        let mut compiles: Vec<CrateCompile> = Vec::new();
        // An earlier patch changed type definitions of this crate or one it is compiled
        // against: its new code describes those layouts (see `layouts_across`).
        let moved_before = self.moved_crates();
        let mut member_types = MemberTypes { moved: moved_before.keys().copied().collect(), compiles: Default::default() };
        // Those below it first: it is compiled against their new rlibs.
        for member in span.iter().copied().filter(|m| *m < index).collect::<Vec<_>>() {
            if let Some(outcome) = self.compile_member(member, index, &span, &mut compiles, &mut member_types)? {
                return Ok(outcome);
            }
        }
        // The boundary's type definitions are read while rustc compiles the same files; a
        // changed definition the program has loaded restarts at once, abandoning the compile.
        // With the layouts of the running program's types at hand (its DWARF), only a static's
        // type does: a type's layout is proven from the compiled code below.
        let files = self.host.tree.boundary_files(index);
        self.events.emit(Event::Command { command: format!("{} (the boundary's command, for a patch)", unit.invocation.rustc.display()) });
        let newer = self.newer_crates(index, &span);
        let flags = self.host.boundaries[index].running.as_ref().map_or(patch::Flags::LineTables, |r| r.flags);
        let compiling = patch::start_compile(&unit, self.tool, &compile_dirs, flags, &newer)?;
        self.host.program_views();
        let parsed = CrateSource::read(&files);
        let binary = matches!(unit.objects, UnitObjects::Binary { .. });
        let mut types_compile = None;
        // Only an edit that could change a layout needs the running program's types (and
        // waits for them to be read).
        let layout_edit = parsed.as_ref().is_ok_and(|source| self.skeleton_change(index, source).is_some());
        let mut layouts_known = layout_edit && self.types_known(index);
        let reads_moved = !self.host.crates.layout_readers(&BTreeSet::from([index]), &moved_before.keys().copied().collect(), index).is_empty();
        if let (Ok(source), Some(loaded)) = (&parsed, &self.host.boundaries[index].loaded) {
            let changed =
                if layouts_known || !layout_edit { loaded.first_static_difference(&source.definitions) } else { loaded.first_difference(&source.definitions) };
            if let Some(what) = changed {
                compiling.abandon();
                return refuse(Refusal::TypeChanged { what, boundary });
            }
            if (layouts_known || reads_moved) && !binary {
                types_compile = Some({
                    // Its directories are the types warm-up's: stop it (it is done, or too late).
                    self.host.boundaries[index].types_warmup = None;
                    patch::start_types_compile(&unit, self.tool, &dirs, &newer)?
                });
            }
        }
        let compiled = compiling.finish();
        for diagnostic in &compiled.diagnostics {
            self.events.emit(Event::Diagnostic(Box::new(diagnostic.clone())));
        }
        if !compiled.success {
            if let Some(compile) = types_compile { compile.abandon() }
            return Ok(PatchOutcome::CompileFailed { diagnostics: crate::ui::strip_ansi(&compiled.rendered()) });
        }
        compiles.push(CrateCompile { package: boundary.clone(), compile_ms: ms(compiled.duration) });
        let new_files = crate::depinfo::read(&compile_dirs.dep_info(&unit), &unit.invocation.cwd).unwrap_or_else(|_| files.clone());
        // A module was added or removed: read the crate's files as rustc just listed them.
        let reread = sorted(&new_files) != sorted(&files);
        let parsed = if reread { CrateSource::read(&new_files) } else { parsed };
        let CrateSource { definitions: current, surface, skeleton, snapshot, inlined } = match parsed {
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
        if compile_dirs.out == dirs.out {
            // What its outputs in cargo hot's directory are (see `warmup::Baseline`).
            crate::warmup::Baseline::of(&dirs, &compiled.args, &snapshot).record();
        }

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
                            patch::start_types_compile(&unit, self.tool, &dirs, &newer)?
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
        // A changed `const`, `const fn` or `macro_rules!` is compiled into the code that uses
        // it: every hot crate above is compiled again (its compiled code then shows the new
        // value), and code outside the hot crates that names it restarts.
        let inlined_changed = match &self.host.boundaries[index].running {
            Ok(running) => running.inlined.changed(&inlined),
            Err(_) => Default::default(),
        };
        if !inlined_changed.is_empty() {
            let crate_name = unit.boundary.crate_name.clone();
            let dependents = &unit.boundary.local_dependents;
            for other in self.host.tree.others.iter().filter(|o| dependents.contains(&o.package)) {
                if let Some((_, name)) = crate::inlined::first_use(&other.files, &inlined_changed) {
                    let why = patch::reach::Unreached::ValueCompiledInto { crate_name: other.package.clone() };
                    return refuse(Refusal::Stale { changes: vec![patch::reach::Stale { function: format!("{crate_name}::{name}"), why }] });
                }
            }
            let users: BTreeSet<usize> = (0..self.host.boundaries.len()).filter(|m| self.host.crates.depends(*m, index)).collect();
            let grown = self.host.crates.close(&span.union(&users).copied().collect());
            for &member in grown.difference(&span) {
                self.take_warm_up(member);
                if let Err(refusal) = self.companion_as_running(member, index) {
                    return refuse(refusal);
                }
            }
            span = grown;
        }
        if skeleton_change.is_some() {
            member_types.moved.insert(index);
        }
        // The crates above it that must be compiled with it, in dependency order.
        for member in span.iter().copied().filter(|m| *m > index).collect::<Vec<_>>() {
            if let Some(outcome) = self.compile_member(member, index, &span, &mut compiles, &mut member_types)? {
                return Ok(outcome);
            }
        }
        let mut declared = current.declared_statics().clone();

        // How each change of the compiled code takes effect in the running program: through
        // the switched exports, by redirecting the running copies, or not at all (restart).
        // Hot crates the patch does not compile that must run new code for it to take effect
        // join it, and the whole is judged again.
        let mut joined_rounds = 0;
        let (analysis, span_objects) = loop {
            let (analysis, span_objects) = match self.analyse(index, &span, &surface) {
                Ok(result) => result,
                Err(refusal) => return refuse(refusal),
            };
            if analysis.needs.is_empty() {
                break (analysis, span_objects);
            }
            joined_rounds += 1;
            let grown = self.host.crates.close(&span.union(&analysis.needs).copied().collect());
            if joined_rounds > self.host.boundaries.len() {
                return refuse(Refusal::Failed { message: "the crates this patch must compile did not settle".to_string() });
            }
            let joined: BTreeSet<usize> = grown.difference(&span).copied().collect();
            for &member in &joined {
                self.take_warm_up(member);
                if let Err(refusal) = self.companion_as_running(member, index) {
                    return refuse(refusal);
                }
            }
            // Every joining crate, and every member above one of them, is compiled (again).
            let again: Vec<usize> = grown.iter().copied().filter(|m| joined.contains(m) || joined.iter().any(|j| self.host.crates.depends(*m, *j))).collect();
            span = grown;
            for member in again {
                if let Some(outcome) = self.compile_member(member, index, &span, &mut compiles, &mut member_types)? {
                    return Ok(outcome);
                }
            }
        };
        for &member in span.iter().filter(|m| **m != index) {
            if let Ok(running) = &self.host.boundaries[member].running {
                declared.merge(&running.declared);
            }
        }
        if !analysis.stale.is_empty() {
            let start_up_only = analysis.stale.iter().all(|s| s.why == patch::reach::Unreached::StartUp);
            let has_main = self.host.outside.as_ref().and_then(|o| o.as_ref().ok()).is_some_and(|o| o.has_main);
            return refuse(if start_up_only && has_main {
                Refusal::StartUpOnly { functions: analysis.stale.iter().map(|s| s.function.clone()).collect() }
            } else {
                Refusal::Stale { changes: analysis.stale }
            });
        }
        let mut moved = moved_before;
        if let Some(file) = &skeleton_change {
            moved.insert(index, file.clone());
        }
        let across = match self.layouts_across(index, &span, &moved, &mut types_compile, &mut member_types.compiles, new_types.is_some(), &analysis.redirect)? {
            Ok(across) => across,
            Err(outcome) => return Ok(outcome),
        };
        let Some(patching) = self.host.patching.as_ref() else {
            return refuse(Refusal::NotRunning);
        };
        let crate_names: Vec<String> = span.iter().map(|m| self.host.boundaries[*m].unit.boundary.crate_name.clone()).collect();

        // A changed layout patches only when no old value of it can meet the new code.
        let program = match &self.host.boundaries[index].running {
            Ok(RunningCode { program: Some(program), .. }) => program,
            _ => return refuse(Refusal::Failed { message: "how the running program reaches the boundary was not read".to_string() }),
        };
        let types = program.types.read().and_then(|types| types.as_ref().ok());
        let changed_layouts = match (&new_types, types) {
            (Some(new), Some(running_types)) => match crate::layout::judge(running_types, new, &analysis.redirect) {
                Ok(changed) => changed,
                Err(incompatible) => return refuse(incompatible_refusal(incompatible, boundary)),
            },
            (Some(_), None) => {
                return refuse(Refusal::Failed { message: "the running program's types were not read, so the new layouts cannot be compared".to_string() })
            }
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
            let names = |objects: &[patch::ObjectFile]| crate::codediff::SymbolNames::read(objects).map(|n| n.functions).unwrap_or_default();
            let (mut before, mut after) = (std::collections::HashSet::new(), std::collections::HashSet::new());
            for (member, objects) in &span_objects {
                if let Ok(RunningCode { objects: Some(baseline), .. }) = &self.host.boundaries[*member].running {
                    before.extend(names(baseline));
                }
                after.extend(names(objects));
            }
            let before = crate::layout::downcast_instances(before.iter().map(String::as_str));
            crate::layout::downcast_instances(after.iter().map(String::as_str)).difference(&before).next().is_some()
        };

        // Where the running program keeps the crates' statics: the patch uses those copies.
        if self.homes.as_ref().is_none_or(|(of, _)| *of != pid) {
            let info = self.supervisor.program_info(Duration::from_secs(3))?;
            let image = &patching.image;
            *self.homes = Some((pid, Homes::of_program(&image.statics, patch::bind::load_bias(info.executable_bias, image.anchor, info.anchor), info.tls_offset)));
        }
        let (_, homes) = self.homes.as_mut().expect("found above");
        homes.declare(declared);
        let also_run_at_start_up = analysis.also_run_at_start_up.clone();
        // Only what must be new: the other functions jump to the running program's copies.
        let carried: std::collections::HashSet<String> = analysis.carried.iter().cloned().collect();
        let bias = homes.bias;
        let mut objects: Vec<patch::ObjectFile> = Vec::new();
        let mut left_out = crate::thin::Stubbed::default();
        for (member, member_objects) in &span_objects {
            let copies = match &self.host.boundaries[*member].running {
                Ok(RunningCode { program: Some(program), .. }) => Some(&program.copies),
                _ => None,
            };
            let running = |name: &str| copies.and_then(|c| c.running_address(name, bias));
            for object in member_objects {
                let mut data = object.data.clone();
                left_out += crate::thin::stub_object(&mut data, &carried, &running).with_context(|| format!("cannot read the object {}", object.name))?;
                objects.push(patch::ObjectFile { name: object.name.clone(), data });
            }
        }
        let patch_path = self.patch_dir.join(format!("{}-{}.so", unit.boundary.crate_name, self.number));
        std::fs::create_dir_all(&self.patch_dir)?;
        let linked = match patch::link(objects, &patching.linker, &self.patch_dir.join("objects"), &patch_path, homes, left_out.functions > 0)? {
            Ok(linked) => linked,
            Err(unbindable) => return refuse(Refusal::Unbindable { reason: unbindable.0 }),
        };
        // A static the program has that the patch keeps a copy of anyway starts again from its
        // initializer: never silently.
        if let Ok((defined, _)) = abi::elf::read_statics(&patch_path, &crate_names, "") {
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
        let mut approved = match abi::check_file(&patching.image, &crate_names, &patch_path, if analysis.redirect.is_empty() { abi::Reach::ExportsOnly } else { abi::Reach::Redirects })? {
            Ok(approved) => approved,
            Err(rejection) => return refuse(Refusal::Gate { rejection }),
        };
        // An export whose code is the running program's needs no switch.
        approved.exports.retain(|key| carried.contains(&format!("{}{key}", crate::abi::elf::ENTRY_PREFIX)));
        let redirects = match self.plan_redirects(&analysis.redirect, &span_objects, &patch_path) {
            Ok(redirects) => redirects,
            Err(stale) => return refuse(Refusal::Stale { changes: vec![stale] }),
        };
        let check_time = checked.elapsed();

        match self.supervisor.reload(&patch_path, &approved.exports, &redirects, RELOAD_TIMEOUT)? {
            ReloadOutcome::Ok { load_micros, switched, redirected: _, base, rebuilt } => {
                for (member, objects) in span_objects {
                    self.host.crates.generations[member] = self.number;
                    let Ok(running) = &mut self.host.boundaries[member].running else { continue };
                    running.objects = Some(objects);
                    if let Some(Err(err)) = running.program.as_mut().map(|program| program.copies.add_patch(&patch_path, base, &carried)) {
                        self.events.warn(format!("cannot read the functions of {}: {err:#}", patch_path.display()));
                    }
                }
                for (member, new, changed) in across {
                    if let Ok(RunningCode { program: Some(program), .. }) = &mut self.host.boundaries[member].running {
                        if let Ok(types) = program.types.wait() {
                            types.changed_ever.extend(changed);
                            types.absorb(new);
                        }
                    }
                }
                if let Ok(running) = &mut self.host.boundaries[index].running {
                    running.inlined = inlined;
                    if skeleton_change.is_some() {
                        running.layouts_moved = skeleton_change.clone();
                    }
                    running.surface = surface;
                    running.skeleton = skeleton;
                    running.sources = snapshot;
                    running.declared = current.declared_statics().clone();
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
                // Crates patched with cargo's command get a compile of their running code with
                // line tables, so that their next patches can be (see `take_warm_up`).
                let members: Vec<usize> = span.iter().copied().collect();
                for member in members {
                    let state = &self.host.boundaries[member];
                    if state.running.as_ref().is_ok_and(|r| r.flags == patch::Flags::Cargo) && state.warmup.is_none() {
                        let newer = self.newer_crates(member, &BTreeSet::new());
                        self.host.warm_up_again(member, self.tool, &newer);
                    }
                }
                // Statics this patch introduced keep their values in later patches too (if the
                // program said where it loaded the patch).
                match abi::elf::read_statics(&patch_path, &crate_names, "") {
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
                    compile_ms: compiles.iter().map(|c| c.compile_ms).sum(),
                    crates: compiles,
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
                    functions_carried: carried.len(),
                    functions_left_out: left_out.functions,
                    layouts_changed: changed_layouts.iter().filter(|t| !t.contains('<')).cloned().collect(),
                })))
            }
            ReloadOutcome::Error { message } => refuse(Refusal::LoadFailed { message }),
        }
    }
}

impl Attempt<'_> {
    /// Settles what a patch of `member` is compared with and how it is compiled. The first
    /// time: with line tables against the objects of its warm-up (see `warmup`), if that has
    /// ended. If it has not (the edit came right after the start, and the crate, or one it
    /// depends on, had changed since its last compile with line tables), the crate's patches
    /// replay cargo's own command in cargo's directories, whose cache cargo's build left warm,
    /// and compare with cargo's objects (see `patch::Flags::Cargo`): no patch waits for a
    /// warm-up, nor competes with one (it is paused while a patch is built: see
    /// `HostState::pause_warm_ups`). Once a compile of the running code with line tables has
    /// ended (the warm-up, or one queued after a patch: see `HostState::warm_up_again`), the
    /// crate's patches are compiled with line tables again.
    fn take_warm_up(&mut self, member: usize) {
        let state = &mut self.host.boundaries[member];
        let library = matches!(state.unit.objects, UnitObjects::Rlib(_));
        let unknown = state.running.as_ref().is_ok_and(|r| r.objects.is_none());
        if let (Ok(running), false) = (&mut state.running, unknown) {
            if running.flags != patch::Flags::Cargo {
                return;
            }
            match state.warmup.take() {
                // One that compiled older sources is dropped: another follows this patch.
                Some(warmup) if warmup.ended() => {
                    if *warmup.sources() == running.sources && warmup.wait().is_ok() {
                        if let Ok(objects) = state.dirs.objects(&state.unit).read() {
                            running.objects = Some(objects);
                            running.flags = patch::Flags::LineTables;
                        }
                    }
                }
                still_compiling => state.warmup = still_compiling,
            }
            return;
        }
        if !(library && unknown) && state.warmup.is_none() {
            return;
        }
        let cargo = |state: &crate::host::BoundaryState| (patch::Flags::Cargo, crate::host::unit_objects(&state.unit).read().map_err(|err| format!("{err:#}")));
        let (flags, baseline) = match state.warmup.take() {
            Some(warmup) if warmup.ended() => match warmup.wait() {
                Ok(()) => (patch::Flags::LineTables, state.dirs.objects(&state.unit).read().map_err(|err| format!("{err:#}"))),
                Err(_) if library => cargo(state),
                Err(unwarmed) => (patch::Flags::LineTables, Err(unwarmed.to_string())),
            },
            // It goes on, for later patches.
            Some(warmup) if library => {
                state.warmup = Some(warmup);
                cargo(state)
            }
            Some(warmup) => (patch::Flags::LineTables, Err(warmup.wait().err().map(|u| u.to_string()).unwrap_or_default())),
            None if library => cargo(state),
            None => return,
        };
        if let Ok(running) = &mut state.running {
            if running.objects.is_none() {
                match baseline {
                    Ok(objects) => {
                        running.objects = Some(objects);
                        running.flags = flags;
                    }
                    Err(why) => state.running = Err(why),
                }
            }
        }
    }

    /// Where `member`'s patch compiles (see `BoundaryState::compile_dirs`); one in cargo's
    /// directories leaves an edited version of the crate there, which the next rebuild must
    /// compile again.
    fn compile_dirs(&mut self, member: usize) -> patch::CompileDirs {
        let state = &self.host.boundaries[member];
        let dirs = state.compile_dirs();
        if dirs.out != state.dirs.out {
            if let Some(key) = state.unit.invocation.unit_key() {
                self.host.cargo_outputs_patched.insert(key);
            }
        }
        dirs
    }

    /// A crate the patch of `index` compiles again must be as the running program has it:
    /// its sources unedited (its own patch checks an edit), its code known.
    fn companion_as_running(&self, member: usize, index: usize) -> Result<(), Refusal> {
        let state = &self.host.boundaries[member];
        let refusal = |why: String| Refusal::SpanEdited {
            crate_name: state.unit.boundary.package.clone(),
            boundary: self.host.boundaries[index].unit.boundary.package.clone(),
            why,
        };
        match &state.running {
            Ok(running) if !running.sources.unchanged() => {
                let file = running.sources.changed_files().into_iter().next().map(|f| f.display().to_string()).unwrap_or_default();
                Err(refusal(format!("{file} was edited too: both are applied by the restart")))
            }
            Ok(RunningCode { objects: Some(_), program: Some(_), .. }) => Ok(()),
            Ok(_) => Err(refusal("its running code is not known yet (its warm-up compile did not run)".to_string())),
            Err(why) => Err(refusal(format!("its running code is not known: {why}"))),
        }
    }

    /// The hot crates `member` depends on whose newest compile is not cargo's: those of the
    /// span (compiled before it, lowest first) and those an earlier patch compiled.
    fn newer_crates(&self, member: usize, span: &BTreeSet<usize>) -> Vec<crate::span::Newer> {
        let crates = &self.host.crates;
        crates.depends_on[member]
            .iter()
            .filter(|d| span.contains(d) || crates.generations[**d] > 0)
            .filter_map(|d| {
                let state = &self.host.boundaries[*d];
                match &state.unit.objects {
                    UnitObjects::Rlib(rlib) => crate::span::Newer::of(rlib, &state.compile_dirs().out),
                    UnitObjects::Binary { .. } => None,
                }
            })
            .collect()
    }

    /// Compiles a crate of the span other than the edited one (or again, after crates below
    /// it joined), against the span's new rlibs. Some(outcome) ends the attempt.
    fn compile_member(
        &mut self,
        member: usize,
        edited: usize,
        span: &BTreeSet<usize>,
        compiles: &mut Vec<CrateCompile>,
        types: &mut MemberTypes,
    ) -> Result<Option<PatchOutcome>> {
        let newer = self.newer_crates(member, span);
        let state = &self.host.boundaries[member];
        let (unit, dirs) = (state.unit.clone(), state.dirs.clone());
        let compile_dirs = self.compile_dirs(member);
        self.events
            .emit(Event::Command { command: format!("{} (`{}`, compiled again with the patch)", unit.invocation.rustc.display(), unit.boundary.package) });
        let flags = self.host.boundaries[member].running.as_ref().map_or(patch::Flags::LineTables, |r| r.flags);
        let compiling = patch::start_compile(&unit, self.tool, &compile_dirs, flags, &newer)?;
        // A member that must describe moved layouts is compiled with its types meanwhile
        // (its own directories: the two compiles run side by side).
        let reads = !self.host.crates.layout_readers(&BTreeSet::from([member]), &types.moved, edited).is_empty();
        if reads && !matches!(unit.objects, UnitObjects::Binary { .. }) {
            self.host.boundaries[member].types_warmup = None;
            types.compiles.insert(member, patch::start_types_compile(&unit, self.tool, &dirs, &newer)?);
        }
        let compiled = compiling.finish();
        for diagnostic in compiled.diagnostics.iter().filter(|d| !compiled.success || d.level == "error") {
            self.events.emit(Event::Diagnostic(Box::new(diagnostic.clone())));
        }
        if !compiled.success {
            return Ok(Some(PatchOutcome::CompileFailed { diagnostics: crate::ui::strip_ansi(&compiled.rendered()) }));
        }
        // (The edited crate's sources were checked when it was first compiled; the others must
        // be as the program runs them.)
        match &self.host.boundaries[member].running {
            Ok(running) if member != edited && !running.sources.unchanged() => return Ok(Some(PatchOutcome::Raced)),
            Ok(running) if member != edited && compile_dirs.out == dirs.out => {
                crate::warmup::Baseline::of(&dirs, &compiled.args, &running.sources).record();
            }
            _ => {}
        }
        compiles.retain(|c| c.package != unit.boundary.package);
        compiles.push(CrateCompile { package: unit.boundary.package.clone(), compile_ms: ms(compiled.duration) });
        Ok(None)
    }

    /// Judges the span's new code against the running program's (see `patch::reach`). Also
    /// returns each member's new objects.
    #[allow(clippy::type_complexity)]
    fn analyse(
        &self,
        index: usize,
        span: &BTreeSet<usize>,
        surface: &crate::abi::surface::Surface,
    ) -> Result<(patch::reach::Analysis, Vec<(usize, Vec<patch::ObjectFile>)>), Refusal> {
        let failed = |message: String| Refusal::Failed { message };
        let boundaries = &self.host.boundaries;
        let outside = match &self.host.outside {
            Some(Ok(outside)) => outside,
            Some(Err(why)) => return Err(failed(format!("cannot read how the host's own code reaches the hot crates: {why}"))),
            None => return Err(failed("how the host's own code reaches the hot crates was not read".to_string())),
        };
        let mut span_objects = Vec::new();
        for &member in span {
            let state = &boundaries[member];
            match &state.running {
                Ok(RunningCode { objects: Some(_), program: Some(_), .. }) => {}
                Ok(RunningCode { objects: None, .. }) => {
                    return Err(failed(format!(
                        "the code the program runs of `{}` was not compiled for comparison (no warm-up compile ran)",
                        state.unit.boundary.package
                    )))
                }
                Ok(_) => return Err(failed(format!("how the running program reaches `{}` was not read", state.unit.boundary.package))),
                Err(why) => return Err(failed(format!("cannot compare the new code with the running program's: {why}"))),
            }
            let objects = state.compile_dirs().objects(&state.unit).read().map_err(|err| failed(format!("{err:#}")))?;
            span_objects.push((member, objects));
        }
        // The running code of every hot crate, as one program: the span's baselines, the
        // others' newest code (a patch's, a warm-up's, or cargo's).
        let mut read_now: Vec<(usize, Vec<patch::ObjectFile>)> = Vec::new();
        for (other, state) in boundaries.iter().enumerate() {
            if !matches!(&state.running, Ok(RunningCode { objects: Some(_), .. })) {
                read_now.push((other, crate::host::unit_objects(&state.unit).read().map_err(|err| failed(format!("{err:#}")))?));
            }
        }
        let mut parts: Vec<(usize, &[patch::ObjectFile])> = read_now.iter().map(|(i, o)| (*i, o.as_slice())).collect();
        for (other, state) in boundaries.iter().enumerate() {
            if let Ok(RunningCode { objects: Some(objects), .. }) = &state.running {
                parts.push((other, objects.as_slice()));
            }
        }
        let baseline = |member: usize| match &boundaries[member].running {
            Ok(RunningCode { objects: Some(objects), .. }) => objects.as_slice(),
            _ => &[],
        };
        let old: Vec<(usize, &[patch::ObjectFile])> = span.iter().map(|m| (*m, baseline(*m))).collect();
        let new: Vec<(usize, &[patch::ObjectFile])> = span_objects.iter().map(|(m, o)| (*m, o.as_slice())).collect();
        let running_code = crate::codediff::Code::read_parts(&parts).map_err(|err| failed(format!("cannot read the running program's code: {err:#}")))?;

        let edited = match &boundaries[index].running {
            Ok(running) => running,
            Err(why) => return Err(failed(why.clone())),
        };
        let surface_change = edited.surface.first_difference(surface);
        let owner = |name: &str| running_code.owners_of(name).into_iter().find(|o| span.contains(o)).unwrap_or(index);
        let running_of = |member: usize| boundaries[member].running.as_ref().ok();
        let can_redirect = |name: &str| -> Result<(), NotRedirected> {
            let owner = owner(name);
            if let (true, Some(change)) = (owner == index, &surface_change) {
                return Err(NotRedirected::Cannot(format!("{change}, so the same function may now take other arguments")));
            }
            // An `async fn`'s future or an `impl Trait`: its layout is its body's.
            let item = patch::reach::item_path(name);
            let last = item.rsplit("::").next().unwrap_or(&item);
            let now = if owner == index { Some(surface) } else { running_of(owner).map(|r| &r.surface) };
            if now.is_some_and(|s| s.has_opaque_result(last)) || running_of(owner).is_some_and(|r| r.surface.has_opaque_result(last)) {
                return Err(NotRedirected::ThroughCreators);
            }
            match running_of(owner).and_then(|r| r.program.as_ref()) {
                Some(program) => program.copies.check(name).map_err(NotRedirected::Cannot),
                None => Err(NotRedirected::Cannot("its running copies are not known".to_string())),
            }
        };
        // A copy another crate compiled is not in the patch: the source tells whether the body
        // of a function of the edited crate changed.
        let edited_crate = boundaries[index].unit.boundary.crate_name.clone();
        let body_changed =
            |item: &str| patch::reach::belongs_to(item, &edited_crate) && edited.surface.body_changed(surface, item.rsplit("::").next().unwrap_or(item));
        let span_crates: Vec<String> = span.iter().map(|m| boundaries[*m].unit.boundary.crate_name.clone()).collect();
        let crate_of_item = |item: &str| span.iter().copied().find(|m| patch::reach::belongs_to(item, &boundaries[*m].unit.boundary.crate_name));
        let scope = patch::reach::Scope {
            running: &running_code,
            span,
            span_crates: &span_crates,
            outside,
            can_redirect: &can_redirect,
            body_changed: &body_changed,
            crate_of_item: &crate_of_item,
        };
        let mut analysis =
            patch::reach::analyse(&old, &new, &scope).map_err(|err| failed(format!("cannot compare the new code with the running program's: {err:#}")))?;
        // New code that calls what only an earlier patch of another hot crate added (a new
        // function): patches keep their symbols to themselves, so that crate's newest code
        // joins this patch.
        if let Some(patching) = &self.host.patching {
            let mut needed = std::collections::HashSet::new();
            for (_, objects) in &span_objects {
                needed.extend(crate::codediff::SymbolNames::read(objects).map(|n| n.undefined).unwrap_or_default());
            }
            needed.retain(|name| !patching.image.defines(name));
            for (other, generation) in self.host.crates.generations.iter().enumerate() {
                if *generation == 0 || span.contains(&other) {
                    continue;
                }
                if let Ok(RunningCode { objects: Some(objects), .. }) = &boundaries[other].running {
                    let defined = crate::codediff::SymbolNames::read(objects).map(|n| n.functions).unwrap_or_default();
                    if needed.iter().any(|name| defined.contains(name)) {
                        analysis.needs.insert(other);
                    }
                }
            }
        }
        Ok((analysis, span_objects))
    }

    /// The jumps that send the running copies of `names` to the patch: each function's copies
    /// as the crate of the span that compiled it knows them.
    fn plan_redirects(
        &self,
        names: &[String],
        span_objects: &[(usize, Vec<patch::ObjectFile>)],
        patch_path: &Path,
    ) -> Result<Vec<hot::protocol::Redirect>, patch::reach::Stale> {
        let bias = self.homes.as_ref().and_then(|(_, homes)| homes.bias);
        let defined: Vec<(usize, std::collections::HashSet<String>)> = span_objects
            .iter()
            .map(|(member, objects)| (*member, crate::codediff::SymbolNames::read(objects).map(|n| n.functions).unwrap_or_default()))
            .collect();
        let mut redirects: Vec<hot::protocol::Redirect> = Vec::new();
        for (member, functions) in &defined {
            let mine: Vec<String> = names.iter().filter(|n| functions.contains(*n)).cloned().collect();
            let Ok(RunningCode { program: Some(program), .. }) = &self.host.boundaries[*member].running else { continue };
            for redirect in program.copies.plan(&mine, patch_path, bias)? {
                if !redirects.iter().any(|r| r.from == redirect.from) {
                    redirects.push(redirect);
                }
            }
        }
        Ok(redirects)
    }

    /// The hot crates an earlier patch changed type definitions of, with the file edited.
    fn moved_crates(&self) -> std::collections::BTreeMap<usize, PathBuf> {
        let moved = |(i, state): (usize, &crate::host::BoundaryState)| Some((i, state.running.as_ref().ok()?.layouts_moved.clone()?));
        self.host.boundaries.iter().enumerate().filter_map(moved).collect()
    }

    /// The new layouts of the crates whose type definitions changed (`moved`: in this patch
    /// or an earlier one), as the members of the span compiled against them describe them,
    /// each judged against the running program's. A crate's own compiled code describes only
    /// the types it uses itself: a field added to a type that only an upper crate reads shows
    /// only in that crate's debug info, and the upper crate's next patch must not read it
    /// from values the old layout made. Each such member is compiled again with full debug
    /// info (the edited crate's compile with its types, `types_compile`, is reused; `own_read`:
    /// the edited crate's own types were judged already). Returns, for each crate, its new
    /// facts and changed layouts, to absorb once the patch is loaded.
    #[allow(clippy::type_complexity)]
    fn layouts_across(
        &mut self,
        index: usize,
        span: &BTreeSet<usize>,
        moved: &std::collections::BTreeMap<usize, PathBuf>,
        types_compile: &mut Option<patch::Compiling>,
        member_compiles: &mut std::collections::BTreeMap<usize, patch::Compiling>,
        own_read: bool,
        redirected: &[String],
    ) -> Result<Result<Vec<(usize, crate::layout::TypeFacts, Vec<String>)>, PatchOutcome>> {
        let refuse = |refusal| Ok(Err(PatchOutcome::Refused(refusal)));
        let readers = self.host.crates.layout_readers(span, &moved.keys().copied().collect(), index);
        let mut found: std::collections::BTreeMap<usize, crate::layout::TypeFacts> = Default::default();
        for (member, crates) in readers {
            let crates: Vec<usize> = crates.into_iter().filter(|c| !(member == index && *c == index && own_read)).collect();
            if crates.is_empty() {
                continue;
            }
            let (unit, dirs) = (self.host.boundaries[member].unit.clone(), self.host.boundaries[member].dirs.clone());
            let objects = if matches!(unit.objects, UnitObjects::Binary { .. }) {
                // A binary's patch is compiled with cargo's flags, its types included.
                dirs.objects(&unit)
            } else {
                // The edited crate's types compile, when its own types were judged, is done.
                if !(member == index && own_read) {
                    let started = if member == index { types_compile.take() } else { member_compiles.remove(&member) };
                    let compile = match started {
                        Some(compile) => compile,
                        None => {
                            // Its directories are the types warm-up's: stop it (it is done, or too late).
                            self.host.boundaries[member].types_warmup = None;
                            let newer = self.newer_crates(member, span);
                            patch::start_types_compile(&unit, self.tool, &dirs, &newer)?
                        }
                    };
                    if !compile.finish().success {
                        let message = format!("`{}` compiled, but not with full debug info (for the layouts of the types it uses)", unit.boundary.package);
                        return refuse(Refusal::Failed { message });
                    }
                    match &self.host.boundaries[member].running {
                        Ok(running) if member != index && !running.sources.unchanged() => return Ok(Err(PatchOutcome::Raced)),
                        _ => {}
                    }
                }
                dirs.for_types().objects(&unit)
            };
            let objects = objects.read()?;
            for of in crates {
                let crate_name = &self.host.boundaries[of].unit.boundary.crate_name;
                match crate::layout::dwarf::read_objects(&objects, crate_name) {
                    Ok(facts) => found.entry(of).or_default().absorb(facts),
                    Err(err) => {
                        let message = format!("cannot read the layouts of `{crate_name}`'s types in the new code of `{}`: {err:#}", unit.boundary.package);
                        return refuse(Refusal::Failed { message });
                    }
                }
            }
        }
        let mut judged = Vec::new();
        for (of, new) in found {
            let package = self.host.boundaries[of].unit.boundary.package.clone();
            let running = match &mut self.host.boundaries[of].running {
                Ok(RunningCode { program: Some(program), .. }) => program.types.wait(),
                _ => {
                    return refuse(Refusal::LayoutUnproven {
                        file: moved[&of].clone(),
                        why: "how the running program reaches the crate was not read".to_string(),
                    })
                }
            };
            let running = match running {
                Ok(types) => types,
                Err(why) => return refuse(Refusal::LayoutUnproven { file: moved[&of].clone(), why: why.clone() }),
            };
            match crate::layout::judge(running, &new, redirected) {
                Ok(changed) => judged.push((of, new, changed)),
                Err(incompatible) => return refuse(incompatible_refusal(incompatible, package)),
            }
        }
        Ok(Ok(judged))
    }

    /// When the host has no debug info of its types: the layouts of the unchanged crate from
    /// its full-debug-info warm-up, as the running program's, with holders unknown (every
    /// changed layout restarts; an edit that changes none patches). Whether they were found.
    fn layouts_of_unchanged_crate(&mut self, index: usize, unit: &crate::build::BoundaryUnit, dirs: &patch::CompileDirs) -> Result<(), String> {
        let warmup = self.host.boundaries[index].types_warmup.take().ok_or("no compile of the unchanged crate with full debug info ran")?;
        // It runs at idle priority: waiting for it costs this edit what its own compile would.
        warmup.wait().map_err(|unwarmed| unwarmed.to_string())?;
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

/// The refusal for new layouts that cannot meet the running program (`boundary`: the package
/// whose types they are).
fn incompatible_refusal(incompatible: crate::layout::Incompatible, boundary: String) -> Refusal {
    use crate::layout::Incompatible;
    match incompatible {
        Incompatible::Signature { function, was, now } => {
            let why = format!("its compiled signature changed (`{was}` → `{now}`), so its callers would pass what it no longer takes");
            Refusal::Stale {
                changes: vec![patch::reach::Stale { function: patch::reach::readable(&function), why: patch::reach::Unreached::NotRedirectable { why } }],
            }
        }
        Incompatible::Static { path, was, now } => {
            let what = format!("the compiled type of the static `{path}` changed (`{was}` → `{now}`), so the value the program holds cannot be kept");
            Refusal::TypeChanged { what, boundary }
        }
        Incompatible::Held(held) => Refusal::LayoutHeld { held, boundary },
    }
}

/// The compiles with full debug info of the span's members that must describe the layouts of
/// crates whose type definitions changed (`moved`: see `Attempt::layouts_across`), started
/// beside their patch compiles.
struct MemberTypes {
    moved: BTreeSet<usize>,
    compiles: std::collections::BTreeMap<usize, patch::Compiling>,
}

fn sorted(files: &[PathBuf]) -> Vec<&PathBuf> {
    let mut sorted: Vec<&PathBuf> = files.iter().collect();
    sorted.sort();
    sorted
}
