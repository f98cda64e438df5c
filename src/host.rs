//! What is known about the host binary of the last successful build, derived once per build
//! (as ripgrep derives its high-level arguments once from the low-level ones): the build,
//! its symbols (for the ABI gate), which crate compiles which file, how patches are linked,
//! and one record per boundary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::abi::{CrateSource, HostImage, LoadedDefinitions, SourceSnapshot};
use crate::build::{self, BoundaryUnit, HostBuild, UnitObjects};
use crate::classify::{BoundaryFiles, DependencyTree};
use crate::events::Events;
use crate::metadata::{BoundaryKind, Plan};
use crate::patch::PatchLinker;

pub struct HostState {
    pub build: HostBuild,
    pub tree: DependencyTree,
    /// Present when the build can be patched (not in restart-only mode).
    pub patching: Option<Patching>,
    /// One record per boundary, in build order (`tree.boundaries` has their files at the
    /// same index: see [`HostState::boundary`]).
    pub boundaries: Vec<BoundaryState>,
    /// Which hot crates each depends on, and the generation of each one's newest compile
    /// (see `span`).
    pub crates: crate::span::Crates,
    /// How the code outside the hot crates (the host's own, excluded crates') reaches them;
    /// None until read (see [`HostState::read_program_views`]), Err why it could not be.
    pub outside: Option<Result<crate::patch::reach::Outside, String>>,
    /// The warm-up compiles of this build, run one at a time (see `warmup`).
    warmups: Option<crate::warmup::Queue>,
    /// The local packages' sources when this build started: what its crates were compiled
    /// from, as far as a rebuild without cargo needs to know (see `rebuild`).
    pub sources_built: SourcesBefore,
    /// Every file the workspace crates cargo hot can rebuild without cargo are compiled from.
    pub workspace_sources: std::collections::HashSet<PathBuf>,
    /// The workspace crates (unit keys) one of whose files changed while this build ran: what
    /// it compiled of them is not known (see `rebuild`).
    pub changed_during_build: std::collections::HashSet<String>,
    /// The reading of how the program reaches its hot crates, while it runs (see
    /// [`HostState::read_program_views`]).
    views: Option<std::thread::JoinHandle<ProgramViews>>,
    /// The hot crates (unit keys) a patch compiled in cargo's own directories since this build
    /// (see `patch::Flags::Cargo`): cargo's library of each holds an edited version, and the
    /// next rebuild compiles it again whatever its sources say.
    pub cargo_outputs_patched: std::collections::HashSet<String>,
}

/// What checking and linking patches of this build needs.
pub struct Patching {
    pub image: HostImage,
    pub linker: PatchLinker,
}

/// A boundary of the running build.
pub struct BoundaryState {
    /// Its compiler command and objects.
    pub unit: BoundaryUnit,
    /// Every version of its type definitions the program has loaded (the build's, then each
    /// applied patch's); None when an edit raced the build, so the next edit restarts.
    pub loaded: Option<LoadedDefinitions>,
    /// Its last patch did not compile (the diagnostics' text): a change that could fix it
    /// retries it.
    pub compile_failed: Option<String>,
    /// Where its patches are compiled (cargo hot's own output and incremental directories).
    pub dirs: crate::patch::CompileDirs,
    /// The compile that warms the patch's incremental cache after the build, if queued or
    /// running (see `warmup`).
    pub warmup: Option<crate::warmup::Warmup>,
    /// The compile that warms the cache of the full-debug-info compile (a library boundary's
    /// edits that could change a layout), at idle priority.
    pub types_warmup: Option<crate::warmup::Warmup>,
    /// What the running program runs of this boundary, and how the rest of the program
    /// reaches it; None when it could not be read (every edit then restarts, saying why).
    pub running: Result<RunningCode, String>,
}

impl BoundaryState {
    /// Where its patches are compiled: cargo's own directories for the binary's crate (its
    /// patches have cargo's flags, and its incremental cache is cargo's, warm) and for a library
    /// compiled with cargo's flags (see `patch::Flags::Cargo`); cargo hot's own otherwise.
    pub fn compile_dirs(&self) -> crate::patch::CompileDirs {
        let binary = matches!(self.unit.objects, UnitObjects::Binary { .. });
        let cargo_flags = self.running.as_ref().is_ok_and(|r| r.flags == crate::patch::Flags::Cargo);
        if binary || cargo_flags {
            crate::patch::CompileDirs::cargo(&self.unit, &self.dirs)
        } else {
            self.dirs.clone()
        }
    }
}

/// The boundary's code as the running program has it: the compiled code of its newest
/// version (the build's, then each applied patch's), the source surface of its functions,
/// and how the rest of the program reaches it.
pub struct RunningCode {
    /// None until the warm-up compile gave them (a library boundary; see `warmup`).
    pub objects: Option<Vec<crate::patch::ObjectFile>>,
    /// How its patches are compiled: with line tables (compared with its warm-up's objects),
    /// or with cargo's flags (compared with cargo's objects, when the crate was edited before
    /// its warm-up read it).
    pub flags: crate::patch::Flags,
    pub surface: crate::abi::surface::Surface,
    /// What of its source could change a layout, as the running program was compiled.
    pub skeleton: crate::layout::skeleton::Skeleton,
    /// Its sources as the running code was compiled from them, and the statics they declare:
    /// a patch of another crate that must compile this one again (see `span`) needs both.
    pub sources: crate::abi::SourceSnapshot,
    pub declared: crate::abi::source::DeclaredStatics,
    /// The file whose edit changed a type definition, once a patch with such an edit was
    /// loaded: the running program's layouts of this crate's types are then known only as far
    /// as compiled code described them, and the crates compiled against the new definitions
    /// must describe the rest (see `span::Crates::layout_readers`).
    pub layouts_moved: Option<PathBuf>,
    /// What the crate's users compile in, as the running program was compiled (see `inlined`).
    pub inlined: crate::inlined::Inlined,
    /// None until read, once the program has started (see
    /// [`HostState::read_program_views`]).
    pub program: Option<ProgramView>,
}

/// Where each of the boundary's functions has copies in the running program, and what the
/// program's other code refers to: read from the host binary and the other objects of its
/// link, which takes a while on a large host.
pub struct ProgramView {
    pub copies: crate::redirect::RunningCopies,
    /// The layouts of the boundary's types and where the program may hold their values, read
    /// from the host's debug info (and updated by each patch); an error says why they could
    /// not be (a changed layout then restarts).
    pub types: TypesOfProgram,
}

/// What [`HostState::read_program_views`] reads: each boundary's view (None for one whose
/// running code is not known), and how the code outside them reaches them.
struct ProgramViews {
    programs: Vec<Option<Result<ProgramView, String>>>,
    outside: Result<crate::patch::reach::Outside, String>,
}

/// The running program's [`crate::layout::TypeFacts`], read on a thread of its own once the
/// program has started: a large host's debug info takes a second to read, and only an edit
/// that could change a layout needs it (it then waits for the thread).
pub enum TypesOfProgram {
    Reading(std::thread::JoinHandle<Result<crate::layout::TypeFacts, String>>),
    Read(Result<crate::layout::TypeFacts, String>),
}

impl TypesOfProgram {
    /// The facts, waiting for the reading thread if it is still running.
    pub fn wait(&mut self) -> &mut Result<crate::layout::TypeFacts, String> {
        if let TypesOfProgram::Reading(_) = self {
            let TypesOfProgram::Reading(thread) = std::mem::replace(self, TypesOfProgram::Read(Err(String::new()))) else { unreachable!() };
            *self = TypesOfProgram::Read(thread.join().unwrap_or_else(|_| Err("reading the program's debug info panicked".to_string())));
        }
        match self {
            TypesOfProgram::Read(result) => result,
            TypesOfProgram::Reading(_) => unreachable!("joined above"),
        }
    }

    /// The facts, if they have been read ([`TypesOfProgram::wait`] makes sure they are).
    pub fn read(&self) -> Option<&Result<crate::layout::TypeFacts, String>> {
        match self {
            TypesOfProgram::Read(result) => Some(result),
            TypesOfProgram::Reading(_) => None,
        }
    }
}

impl RunningCode {
    fn new(unit: &BoundaryUnit, source: CrateSource) -> Result<Self> {
        let CrateSource { definitions, surface, skeleton, inlined, snapshot } = source;
        // A patch of the binary is compiled with cargo's own flags: its objects compare as
        // they are. A library's patch has its own flags: the warm-up gives its baseline.
        let objects = match &unit.objects {
            UnitObjects::Binary { baseline } => Some(crate::patch::ObjectSource::Dir(baseline.clone()).read()?),
            UnitObjects::Rlib(_) => None,
        };
        Ok(RunningCode {
            objects,
            flags: crate::patch::Flags::LineTables,
            surface,
            skeleton,
            program: None,
            sources: snapshot,
            declared: definitions.declared_statics().clone(),
            layouts_moved: None,
            inlined,
        })
    }
}

impl ProgramView {
    fn read(unit: &BoundaryUnit, build: &HostBuild, plan: &Plan) -> Result<Self> {
        let names = crate::codediff::SymbolNames::read(&unit_objects(unit).read()?)?.functions;
        let copies = crate::redirect::RunningCopies::of_host(&build.executable, &names)?;
        let (unit, executable, workspace) = (unit.clone(), build.executable.clone(), plan.workspace_root.clone());
        let types = std::thread::Builder::new()
            .name("hot-read-types".into())
            .spawn(move || {
                crate::sys::lower_this_thread_priority();
                read_types(&unit, &executable, &workspace).map_err(|err| format!("{err:#}"))
            })
            .map(TypesOfProgram::Reading)
            .unwrap_or_else(|err| TypesOfProgram::Read(Err(format!("cannot start a thread: {err}"))));
        Ok(ProgramView { copies, types })
    }
}

/// The objects cargo's build compiled of a hot crate (the running program's code, with
/// cargo's debug info).
pub fn unit_objects(unit: &BoundaryUnit) -> crate::patch::ObjectSource {
    match &unit.objects {
        UnitObjects::Rlib(rlib) => crate::patch::ObjectSource::Rlib(rlib.clone()),
        UnitObjects::Binary { baseline } => crate::patch::ObjectSource::Dir(baseline.clone()),
    }
}

/// The code of the program outside its hot crates, each with its crate's name: the host
/// crate's own objects (kept by the linker role) unless the binary is hot, and the workspace
/// libraries that are not hot (excluded ones). Only this code can reach the hot crates other
/// than through their exports.
pub fn outside_objects(build: &HostBuild, units: &[BoundaryUnit], plan: &Plan) -> Result<Vec<(String, Vec<crate::patch::ObjectFile>)>> {
    use crate::patch::ObjectSource;
    let mut others = Vec::new();
    let binary_is_hot = units.iter().any(|b| matches!(b.objects, UnitObjects::Binary { .. }));
    let host_key = build.link.output.as_deref().and_then(|out| out.file_name()).map(|n| n.to_string_lossy().into_owned());
    if let (false, Some(key)) = (binary_is_hot, host_key) {
        let dir = crate::capture::host_objects_dir(&build::capture_dir(plan), &key);
        if dir.is_dir() {
            others.push((plan.host.bin.clone(), ObjectSource::Dir(dir).read()?));
        }
    }
    for local in &build.local_units {
        if let Some(rlib) = &local.rlib {
            others.push((local.package.clone(), ObjectSource::Rlib(rlib.clone()).read()?));
        }
    }
    Ok(others)
}

/// How code outside the hot crates (`units`) reaches them (see [`outside_objects`]).
pub fn read_outside(build: &HostBuild, units: &[BoundaryUnit], plan: &Plan) -> Result<crate::patch::reach::Outside> {
    let mut defined = std::collections::HashSet::new();
    let mut crates = Vec::new();
    for unit in units {
        defined.extend(crate::codediff::SymbolNames::read(&unit_objects(unit).read()?)?.functions);
        crates.push(unit.boundary.crate_name.clone());
    }
    let mut outside = crate::patch::reach::Outside::read(&crates, &defined, &outside_objects(build, units, plan)?)?;
    outside.has_main = units.iter().any(|b| matches!(b.objects, UnitObjects::Binary { .. }));
    Ok(outside)
}

/// The boundary's types as the host was compiled with them, from its DWARF: the boundary's
/// own compile units, and those of the workspace's other crates (the only code outside the
/// boundary that can name its types).
fn read_types(unit: &BoundaryUnit, executable: &Path, workspace: &Path) -> Result<crate::layout::TypeFacts> {
    use crate::layout::dwarf::Role;
    let boundary_root = unit.invocation.crate_root().context("the boundary's command names no crate root")?;
    let role = |root: &str| -> Option<Role> {
        let root = Path::new(root);
        if root == boundary_root {
            Some(Role::Boundary)
        } else {
            root.starts_with(workspace).then_some(Role::Outside)
        }
    };
    let data = std::fs::read(executable).with_context(|| format!("cannot read {}", executable.display()))?;
    let mut facts = crate::layout::TypeFacts::default();
    if !crate::layout::dwarf::read(&data, &unit.boundary.crate_name, &role, &mut facts)? {
        anyhow::bail!(
            "`{}` was built without debug info of its types (set `debug = \"full\"` or leave `debug` unset in the dev profile)",
            executable.display()
        );
    }
    Ok(facts)
}

/// The sources of every local package when a build started: compared afterwards, they say
/// whether the build compiled what the files now say, and which crates a later rebuild must
/// compile again (see `rebuild`).
#[derive(Debug, Clone, Default)]
pub struct SourcesBefore {
    /// Every `.rs` file of each local package.
    by_dir: HashMap<PathBuf, SourceSnapshot>,
    /// The other files the last build's crates were compiled from (`include_str!` files,
    /// modules outside their package's directory).
    others: SourceSnapshot,
    /// Every file's contents as read then: what the build compiled, when the file is unchanged
    /// since (see `rebuild`, which compares what dependents compile of a crate).
    contents: std::sync::Arc<HashMap<PathBuf, Vec<u8>>>,
}

impl SourcesBefore {
    /// `compiled`: the files the last build's crates were compiled from (none before the first).
    pub fn take(plan: &Plan, tree_excluded: &crate::rules::Excluded, compiled: &[PathBuf]) -> Self {
        let mut contents = HashMap::new();
        let mut keep = |path: &Path, bytes: Vec<u8>| {
            contents.insert(path.to_path_buf(), bytes);
        };
        let dirs = plan.local_package_dirs.iter().chain(plan.boundaries.iter().map(|b| &b.manifest_dir));
        let by_dir: HashMap<PathBuf, SourceSnapshot> =
            dirs.map(|dir| (dir.clone(), SourceSnapshot::of_dir_keeping(dir, tree_excluded, &mut keep))).collect();
        let others: Vec<PathBuf> = compiled.iter().filter(|f| !by_dir.values().any(|s| s.digest(f).is_some())).cloned().collect();
        let others = SourceSnapshot::of_files_keeping(&others, &mut keep);
        SourcesBefore { others, by_dir, contents: std::sync::Arc::new(contents) }
    }

    /// A file's contents when the snapshot was taken.
    pub fn contents(&self, file: &Path) -> Option<&[u8]> {
        self.contents.get(file).map(Vec::as_slice)
    }

    /// Whether `file` has the contents it had when the snapshot was taken; None when it was not
    /// in the snapshot.
    pub fn unchanged(&self, file: &Path) -> Option<bool> {
        let before = self.by_dir.values().chain([&self.others]).find_map(|s| s.digest(file))?;
        Some(SourceSnapshot::digest_now(file) == Some(before))
    }
}

impl HostState {
    /// Derives everything from a successful build. Warnings (a boundary that cannot be
    /// patched as built) go to `events`.
    pub fn derive(mut build: HostBuild, plan: &Plan, before: &SourcesBefore, events: &Events) -> Result<Self> {
        let mut tree = DependencyTree::load(&build, plan)?;
        let units = std::mem::take(&mut build.boundaries);
        let patching = if units.is_empty() {
            None
        } else {
            let crates: Vec<String> = units.iter().map(|unit| unit.boundary.crate_name.clone()).collect();
            let image = HostImage::read(&build.executable, &crates)?;
            let rustc = units.first().map(|unit| unit.invocation.rustc.clone()).unwrap_or_else(|| "rustc".into());
            Some(Patching { linker: PatchLinker::find(&build.link, &rustc), image })
        };
        // v0-mangled names carry no hash of a static's type: its imports are checked instead.
        let v0_mangling = patching.as_ref().is_some_and(|p| p.image.statics.iter().any(|s| s.name.starts_with("_R")));
        // A crate without exports is reached through the others' (see `patch::reach`).
        let any_exports = units.iter().any(|unit| build::unit_is_reachable_by_patches(unit).unwrap_or(true));
        let mut boundaries = Vec::new();
        for (index, unit) in units.into_iter().enumerate() {
            let dir = &unit.boundary.manifest_dir;
            let unchanged = before.by_dir.get(dir) == Some(&SourceSnapshot::of_dir(dir, &tree.excluded));
            let source = if unchanged { CrateSource::read(&tree.boundary_files(index)).ok() } else { None };
            if let Some(source) = &source {
                tree.declined.extend(source.definitions.declining_files().iter().cloned());
            }
            warn_if_unpatchable(&unit, any_exports, plan, events);
            let (loaded, running) = match source {
                Some(source) => {
                    let definitions = source.definitions.clone();
                    let running = match &patching {
                        Some(_) => RunningCode::new(&unit, source).map_err(|err| format!("{err:#}")),
                        None => Err("the program cannot be patched".to_string()),
                    };
                    (Some(LoadedDefinitions::new(definitions).with_static_imports(v0_mangling)), running)
                }
                None => (None, Err("the boundary changed while the program was being built".to_string())),
            };
            let dirs = crate::patch::CompileDirs::of(&unit, &plan.session_dir());
            if let Some(build_dir) = dirs.out.parent() {
                crate::housekeeping::mark_used(build_dir);
            }
            boundaries.push(BoundaryState { unit, loaded, compile_failed: None, dirs, warmup: None, types_warmup: None, running });
        }
        let names: Vec<String> = boundaries.iter().map(|b| b.unit.boundary.package.clone()).collect();
        let crates = crate::span::Crates {
            depends_on: boundaries
                .iter()
                .map(|b| b.unit.boundary.depends_on.iter().filter_map(|name| names.iter().position(|n| n == name)).collect())
                .collect(),
            generations: vec![0; boundaries.len()],
        };
        let workspace_sources = crate::rebuild::sources(&build);
        let changed_during_build = crate::rebuild::changed_since(&build, before);
        Ok(HostState {
            build,
            tree,
            patching,
            boundaries,
            crates,
            outside: None,
            warmups: None,
            sources_built: before.clone(),
            workspace_sources,
            changed_during_build,
            cargo_outputs_patched: Default::default(),
            views: None,
        })
    }

    /// The build as it was produced, its boundaries' units included (they live in
    /// [`HostState::boundaries`] since the state was derived).
    pub fn whole_build(&self) -> HostBuild {
        HostBuild { boundaries: self.boundaries.iter().map(|b| b.unit.clone()).collect(), ..self.build.clone() }
    }

    /// Queues the warm-up compile of every boundary that can be patched (see `warmup`): the
    /// highest crates first (the most edited, and the ones a lower crate's patch may span),
    /// then the compiles of the libraries' types, at idle priority.
    ///
    /// `early`: the warm-ups the build started (see `warmup::Early`); a boundary's is used if
    /// there is one for its unit.
    pub fn warm_up(&mut self, tool: &Path, events: &Events, early: Option<crate::warmup::Early>) {
        if self.patching.is_none() {
            return;
        }
        let started: std::collections::HashMap<usize, crate::warmup::Warmup> = match &early {
            Some(early) => (0..self.boundaries.len())
                .filter_map(|i| Some((i, early.take(&self.boundaries[i].unit.invocation.unit_key()?)?)))
                .collect(),
            None => Default::default(),
        };
        let mut started = started;
        let queue = early.map(crate::warmup::Early::into_queue).unwrap_or_default();
        // The binary's patches compile in cargo's directories, whose cache cargo left warm.
        let warmable: Vec<usize> = (0..self.boundaries.len())
            .rev()
            .filter(|i| self.boundaries[*i].loaded.is_some() && self.boundaries[*i].unit.invocation.debug_assertions())
            .filter(|i| matches!(self.boundaries[*i].unit.objects, UnitObjects::Rlib(_)))
            .collect();
        for &index in &warmable {
            let state = &mut self.boundaries[index];
            if let Some(warmup) = started.remove(&index) {
                state.warmup = Some(warmup);
                continue;
            }
            match queue.push(&state.unit, tool, &state.dirs, &self.tree.boundary_files(index), crate::warmup::Priority::Low, &[]) {
                Ok(warmup) => state.warmup = Some(warmup),
                Err(err) => events.warn(format!("cannot warm up the patch compile of `{}`: {err:#}", state.unit.boundary.package)),
            }
        }
        // Without it the first edit that could change a layout pays a whole compile.
        for &index in &warmable {
            let state = &mut self.boundaries[index];
            if matches!(state.unit.objects, UnitObjects::Rlib(_)) {
                state.types_warmup = queue.push(&state.unit, tool, &state.dirs, &self.tree.boundary_files(index), crate::warmup::Priority::Idle, &[]).ok();
            }
        }
        self.warmups = Some(queue);
    }

    /// Starts reading how the running program reaches each boundary (see [`ProgramView`]) and
    /// how the code outside them does, on a thread of its own: after the program has started,
    /// so that a restart does not wait for it, and beside the first patch's compile (see
    /// [`HostState::program_views`]).
    pub fn read_program_views(&mut self, plan: &Plan) {
        // (The build's units are the boundaries' now.)
        let units: Vec<(BoundaryUnit, bool)> = self.boundaries.iter().map(|b| (b.unit.clone(), b.running.is_ok())).collect();
        let (build, plan) = (self.build.clone(), plan.clone());
        let read = move || -> ProgramViews {
            let programs = units
                .iter()
                .map(|(unit, running)| running.then(|| ProgramView::read(unit, &build, &plan).map_err(|err| format!("{err:#}"))))
                .collect();
            let units: Vec<BoundaryUnit> = units.into_iter().map(|(unit, _)| unit).collect();
            ProgramViews { programs, outside: read_outside(&build, &units, &plan).map_err(|err| format!("{err:#}")) }
        };
        self.views = std::thread::Builder::new().name("hot-read-program".into()).spawn(read).ok();
    }

    /// The views [`HostState::read_program_views`] started reading, in place once read (waits
    /// for them). A boundary whose view cannot be read restarts on every edit, saying why.
    pub fn program_views(&mut self) {
        let Some(reading) = self.views.take() else { return };
        let views = reading.join().unwrap_or_else(|_| ProgramViews {
            programs: self.boundaries.iter().map(|_| Some(Err("reading the running program panicked".to_string()))).collect(),
            outside: Err("reading the running program panicked".to_string()),
        });
        for (state, view) in self.boundaries.iter_mut().zip(views.programs) {
            match (&mut state.running, view) {
                (Ok(running), Some(Ok(view))) => running.program = Some(view),
                (Ok(_), Some(Err(why))) => state.running = Err(why),
                _ => {}
            }
        }
        self.outside = Some(views.outside);
    }

    /// Queues a compile of hot crate `index` as the program now runs it, with the patch's flags
    /// in cargo hot's directories, against the `newer` compiles of the hot crates it depends on:
    /// its patches replay cargo's command (see `patch::Flags::Cargo`), and from the first one
    /// after this compile has ended they are compiled with line tables again (see
    /// `Attempt::take_warm_up`).
    pub fn warm_up_again(&mut self, index: usize, tool: &Path, newer: &[crate::span::Newer]) {
        let queue = self.warmups.get_or_insert_with(crate::warmup::Queue::new);
        let files = self.tree.boundary_files(index);
        let state = &mut self.boundaries[index];
        state.warmup = queue.push(&state.unit, tool, &state.dirs, &files, crate::warmup::Priority::Low, newer).ok();
    }

    /// Stops (`paused`) or resumes the warm-up compiles still running (not the types'
    /// compiles, which a patch may wait for, and which run only when the machine is idle).
    pub fn pause_warm_ups(&self, paused: bool) {
        for warmup in self.boundaries.iter().filter_map(|b| b.warmup.as_ref()) {
            warmup.pause(paused);
        }
    }

    /// Kills the warm-up compiles still running (dropping one kills it).
    pub fn stop_warm_ups(&mut self) {
        self.boundaries.iter_mut().for_each(|b| {
            b.warmup = None;
            b.types_warmup = None;
        });
    }

    /// A boundary's record and its files.
    pub fn boundary(&self, index: usize) -> (&BoundaryState, &BoundaryFiles) {
        (&self.boundaries[index], &self.tree.boundaries[index])
    }
}

/// A boundary built without debug assertions, or a program without any exports, restarts on
/// every edit: say so once per session, with what to do.
fn warn_if_unpatchable(unit: &BoundaryUnit, any_exports: bool, plan: &Plan, events: &Events) {
    if !unit.invocation.debug_assertions() {
        events.warn_once(format!(
            "`{}` is built without debug_assertions (profile `{}`), where #[hot::export] emits plain functions: every edit restarts",
            unit.boundary.package,
            plan.selection.profile_name()
        ));
    } else if !any_exports {
        let what = match unit.boundary.kind {
            BoundaryKind::Binary => format!("the binary `{}`", plan.host.bin),
            BoundaryKind::Library => format!("`{}`", unit.boundary.package),
        };
        events.warn_once(format!(
            "{what} has no #[hot::export] functions: every edit restarts. Put #[hot::export] on the functions the server calls \
             (see `cargo hot init`), or name the crate that has them with --boundary"
        ));
    }
}
