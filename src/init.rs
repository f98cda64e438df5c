//! `cargo hot init`: sets a workspace up for cargo hot. It adds the runtime (`hot-runtime`,
//! used as `hot::...`) to the host package, with the features the app needs, and, when
//! asked, names a boundary under `[package.metadata.hot]`; it edits `Cargo.toml` with
//! `toml_edit`, so comments and formatting survive, and running it again changes nothing.
//! Then it says which lines of the host to change, from what it found there.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use cargo_metadata::{Metadata, Package, PackageId};
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table};

use crate::cli::InitArgs;
use crate::metadata;

/// The runtime's package name on crates.io (its library is `hot`).
pub const RUNTIME_PACKAGE: &str = "hot-runtime";

/// Where the runtime comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeSource {
    Path(PathBuf),
    Version(String),
}

impl RuntimeSource {
    /// `--runtime-path`, else the checkout this cargo-hot was built from (if it is still
    /// there: installed from a clone), else the matching version from crates.io.
    pub fn choose(explicit: Option<&Path>) -> Result<Self> {
        if let Some(path) = explicit {
            let path = path.canonicalize().with_context(|| format!("--runtime-path {}: no such directory", path.display()))?;
            if !is_runtime(&path) {
                bail!("--runtime-path {}: not the `{RUNTIME_PACKAGE}` package (its Cargo.toml should say name = \"{RUNTIME_PACKAGE}\")", path.display());
            }
            return Ok(RuntimeSource::Path(path));
        }
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime");
        if is_runtime(&checkout) {
            return Ok(RuntimeSource::Path(checkout));
        }
        let version = env!("CARGO_PKG_VERSION");
        let major_minor: Vec<&str> = version.split('.').take(2).collect();
        Ok(RuntimeSource::Version(major_minor.join(".")))
    }
}

fn is_runtime(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|text| text.contains(&format!("name = \"{RUNTIME_PACKAGE}\"")))
}

/// What an edit of one manifest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    Added(String),
    Unchanged(String),
}

pub fn run(args: InitArgs) -> Result<ExitCode> {
    let (metadata, host_id, bin) = metadata::host_package(&args.selection)?;
    let host = package(&metadata, &host_id);
    let source = RuntimeSource::choose(args.runtime_path.as_deref())?;
    let mut edits = Vec::new();

    // The host links the runtime: `hot::axum::router`, `hot::listener`, and the exports when
    // the binary itself is the boundary. Each manifest is edited in memory and written once.
    let mut in_server = local_dependencies(&metadata, host);
    in_server.push(host);
    let framework = Framework::of(&in_server);
    let mut host_manifest = Manifest::read(host.manifest_path.as_std_path())?;
    edits.push(host_manifest.add_runtime(host, &features_for(host, framework), &source)?);
    // Libraries of the host that already use #[hot::export] need the runtime to compile.
    let exporting: Vec<&Package> = local_dependencies(&metadata, host).into_iter().filter(|p| uses_exports(p)).collect();
    let boundary = args.boundary.as_deref().map(|b| boundary_package(&metadata, host, b)).transpose()?;
    // With no boundary named and no exports yet, the hot code goes where the app already keeps
    // its web code: the workspace libraries of the server that use its framework (every one of
    // them is hot by default, no configuration needed).
    let web_libraries: Vec<&Package> = if boundary.is_none() && exporting.is_empty() {
        local_dependencies(&metadata, host).into_iter().filter(|p| Framework::of(&[p]) != Framework::Other).collect()
    } else {
        Vec::new()
    };
    let mut libraries: Vec<&Package> = exporting.iter().chain(&web_libraries).copied().collect();
    if let Some(package) = boundary.filter(|p| p.id != host.id && !exporting.iter().any(|e| e.id == p.id)) {
        libraries.push(package);
    }
    for package in libraries {
        let features = features_for(package, Framework::of(&[package]));
        let mut manifest = Manifest::read(package.manifest_path.as_std_path())?;
        edits.push(manifest.add_runtime(package, &features, &source)?);
        manifest.write()?;
    }
    if let Some(package) = boundary {
        // By package name: a path would be read relative to the manifest, not to where
        // `cargo hot init` ran.
        edits.push(host_manifest.name_boundary(&package.name)?);
    }
    // `-p` or `--bin` picked a server the workspace would not pick by itself: it is written
    // down, so that `cargo hot run` and `cargo hot explain` need no flag.
    if args.selection.package.is_some() || args.selection.bin.is_some() {
        let plain = crate::cli::Selection { manifest_path: args.selection.manifest_path.clone(), ..Default::default() };
        let by_itself = metadata::host_package(&plain).ok().map(|(_, id, bin)| (id, bin));
        if by_itself.as_ref() != Some(&(host_id.clone(), bin.clone())) {
            let root_manifest = metadata.workspace_root.join("Cargo.toml").into_std_path_buf();
            if root_manifest == host.manifest_path.as_std_path() {
                edits.push(host_manifest.name_bin(&bin)?);
            } else {
                let mut root = Manifest::read(&root_manifest)?;
                edits.push(root.name_bin(&bin)?);
                root.write()?;
            }
        }
    }
    host_manifest.write()?;
    // Where the hot code is (or goes): what `cargo hot run` will choose.
    let hot = match (boundary, exporting.as_slice()) {
        (Some(package), _) if package.id != host.id => HotCode::Library(package.name.to_string(), lib_name(package)),
        (None, [one]) => HotCode::Library(one.name.to_string(), lib_name(one)),
        (None, []) if !web_libraries.is_empty() => HotCode::Library(web_libraries[0].name.to_string(), lib_name(web_libraries[0])),
        _ if host.targets.iter().any(|t| t.is_lib()) => HotCode::PackageLibrary(lib_name(host)),
        _ => HotCode::BinaryModule,
    };

    for edit in &edits {
        match edit {
            Edit::Added(what) => println!("added {what}"),
            Edit::Unchanged(what) => println!("unchanged: {what}"),
        }
    }
    if let RuntimeSource::Path(path) = &source {
        println!("(the runtime comes from this cargo-hot's checkout, {}; pass --runtime-path to use another)", path.display());
    }
    let main = host.targets.iter().find(|t| t.is_bin() && t.name == bin).map(|t| t.src_path.clone().into_std_path_buf());
    println!();
    for line in next_steps(main.as_deref(), framework, &hot) {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A `Cargo.toml` being edited: written only if something changed.
pub struct Manifest {
    path: PathBuf,
    document: DocumentMut,
    changed: bool,
}

impl Manifest {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let document = text
            .parse::<DocumentMut>()
            .map_err(|err| anyhow!("{} is not valid TOML; fix it and run cargo hot init again:\n{err}", path.display()))?;
        Ok(Manifest { path: path.to_path_buf(), document, changed: false })
    }

    pub fn write(&self) -> Result<()> {
        if self.changed {
            std::fs::write(&self.path, self.document.to_string()).with_context(|| format!("cannot write {}", self.path.display()))?;
        }
        Ok(())
    }

    /// Adds `hot-runtime` to `[dependencies]`, unless `package` already depends on it (cargo
    /// metadata sees renames, `workspace = true` and target-specific tables alike).
    pub fn add_runtime(&mut self, package: &Package, features: &[&str], source: &RuntimeSource) -> Result<Edit> {
        if package.dependencies.iter().any(|d| d.name == RUNTIME_PACKAGE) {
            return Ok(Edit::Unchanged(format!("{} already depends on {RUNTIME_PACKAGE}", self.path.display())));
        }
        self.add_runtime_entry(features, source)
    }

    fn add_runtime_entry(&mut self, features: &[&str], source: &RuntimeSource) -> Result<Edit> {
        let path = self.path.display().to_string();
        if !self.document.contains_key("dependencies") {
            self.document["dependencies"] = Item::Table(Table::new());
        }
        let dependencies = self.document["dependencies"].as_table_like_mut().ok_or_else(|| anyhow!("{path}: [dependencies] is not a table"))?;
        let present = dependencies.iter().any(|(name, item)| {
            name == RUNTIME_PACKAGE || item.as_table_like().and_then(|t| t.get("package")).and_then(|p| p.as_str()) == Some(RUNTIME_PACKAGE)
        });
        if present {
            return Ok(Edit::Unchanged(format!("{path} already depends on {RUNTIME_PACKAGE}")));
        }
        let mut entry = InlineTable::new();
        match source {
            RuntimeSource::Path(runtime) => {
                entry.insert("path", runtime.display().to_string().into());
            }
            RuntimeSource::Version(version) => {
                entry.insert("version", version.as_str().into());
            }
        }
        if !features.is_empty() {
            entry.insert("features", Array::from_iter(features.iter().copied()).into());
        }
        dependencies.insert(RUNTIME_PACKAGE, toml_edit::value(entry));
        self.changed = true;
        Ok(Edit::Added(format!("{RUNTIME_PACKAGE} to {path}")))
    }

    /// Writes `boundary = "..."` under `[package.metadata.hot]`, unless a boundary is named
    /// there already.
    pub fn name_boundary(&mut self, boundary: &str) -> Result<Edit> {
        let path = self.path.display().to_string();
        let missing = "run cargo hot init in the server's package, or name it with -p";
        Ok(match self.set_hot_key("package", missing, "boundary", boundary)? {
            Some(existing) => Edit::Unchanged(format!("{path} already names the boundary {existing}")),
            None => Edit::Added(format!("boundary = {boundary:?} to [package.metadata.hot] of {path}")),
        })
    }

    /// Writes `bin = "..."` under `[workspace.metadata.hot]` (the server to run), unless one is
    /// named there already.
    pub fn name_bin(&mut self, bin: &str) -> Result<Edit> {
        let path = self.path.display().to_string();
        let missing = "cannot remember the server; pass -p or --bin to each cargo hot command";
        Ok(match self.set_hot_key("workspace", missing, "bin", bin)? {
            Some(existing) => Edit::Unchanged(format!("{path} already names the server's binary {existing}")),
            None => Edit::Added(format!("bin = {bin:?} to [workspace.metadata.hot] of {path}: cargo hot run needs no -p")),
        })
    }

    /// Sets `key = value` under `[<section>.metadata.hot]`, unless the key is there already:
    /// then its value, as written. A manifest without `[<section>]` is an error saying `missing`.
    fn set_hot_key(&mut self, section: &str, missing: &str, key: &str, value: &str) -> Result<Option<String>> {
        let path = self.path.display().to_string();
        let table = self.document.get_mut(section).and_then(Item::as_table_like_mut).ok_or_else(|| anyhow!("{path} has no [{section}]: {missing}"))?;
        let metadata = table.entry("metadata").or_insert(implicit_table());
        let metadata = metadata.as_table_like_mut().ok_or_else(|| anyhow!("{path}: {section}.metadata is not a table"))?;
        let hot = metadata.entry("hot").or_insert(Item::Table(Table::new()));
        let hot = hot.as_table_like_mut().ok_or_else(|| anyhow!("{path}: {section}.metadata.hot is not a table"))?;
        if let Some(existing) = hot.get(key) {
            return Ok(Some(existing.to_string().trim().to_string()));
        }
        hot.insert(key, toml_edit::value(value));
        self.changed = true;
        Ok(None)
    }
}

fn package<'a>(metadata: &'a Metadata, id: &PackageId) -> &'a Package {
    metadata.packages.iter().find(|p| &p.id == id).expect("cargo metadata lists the host package")
}

fn depends_on(package: &Package, name: &str) -> bool {
    package.dependencies.iter().any(|d| d.name == name && d.kind == cargo_metadata::DependencyKind::Normal)
}

/// The runtime's feature for the server's framework (`axum` implies `tokio`), `tokio` for
/// another tokio app (for `hot::scope`), nothing else.
fn features_for(host: &Package, framework: Framework) -> Vec<&'static str> {
    match framework.feature() {
        Some(feature) => vec![feature],
        None if depends_on(host, "tokio") => vec!["tokio"],
        None => vec![],
    }
}

fn boundary_package<'a>(metadata: &'a Metadata, host: &Package, boundary: &str) -> Result<&'a Package> {
    let as_dir = std::env::current_dir()?.join(boundary).join("Cargo.toml");
    metadata
        .packages
        .iter()
        .filter(|p| p.source.is_none())
        .find(|p| p.name.as_str() == boundary || p.manifest_path.as_std_path().canonicalize().ok() == as_dir.canonicalize().ok())
        .ok_or_else(|| {
            anyhow!(
                "--boundary {boundary}: neither a package of this workspace nor a crate directory with a Cargo.toml; \
                 name the library crate whose edits should be patched (or leave --boundary out: `{}` itself is then hot)",
                host.name
            )
        })
}

/// The packages of the user's workspace that the host depends on, transitively. Path
/// dependencies outside the workspace (a clone of the runtime itself, a vendored crate) are
/// not the user's to edit.
fn local_dependencies<'a>(metadata: &'a Metadata, host: &Package) -> Vec<&'a Package> {
    let Some(resolve) = &metadata.resolve else { return Vec::new() };
    let mut seen = std::collections::HashSet::from([host.id.clone()]);
    let mut queue = vec![host.id.clone()];
    while let Some(id) = queue.pop() {
        for dep in resolve.nodes.iter().filter(|n| n.id == id).flat_map(|n| &n.deps) {
            if seen.insert(dep.pkg.clone()) {
                queue.push(dep.pkg.clone());
            }
        }
    }
    metadata.packages.iter().filter(|p| metadata.workspace_members.contains(&p.id) && p.id != host.id && seen.contains(&p.id)).collect()
}

/// Whether a package's sources already say `#[hot::export]`.
fn uses_exports(package: &Package) -> bool {
    let Some(dir) = package.manifest_path.parent() else { return false };
    ignore::WalkBuilder::new(dir.join("src"))
        .build()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
        .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|text| text.contains("#[hot::export")))
}

/// The crate name of a package's library (`my-api` → `my_api`).
fn lib_name(package: &Package) -> String {
    package.targets.iter().find(|t| t.is_lib()).map(|t| t.name.replace('-', "_")).unwrap_or_else(|| package.name.replace('-', "_"))
}

/// Where the hot code is, or should go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotCode {
    /// Another library: (package, crate name).
    Library(String, String),
    /// The host package's own library (its crate name).
    PackageLibrary(String),
    /// A module of the binary.
    BinaryModule,
}

fn implicit_table() -> Item {
    let mut table = Table::new();
    table.set_implicit(true);
    Item::Table(table)
}

/// The web framework the server uses (its package's or its local libraries' dependencies):
/// which of the runtime's rebuilds the next steps suggest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    Axum,
    Actix,
    /// tonic, or hyper and tower directly.
    Tower,
    Other,
}

impl Framework {
    fn of(packages: &[&Package]) -> Framework {
        let any = |name: &str| packages.iter().any(|p| depends_on(p, name));
        if any("axum") {
            Framework::Axum
        } else if any("actix-web") {
            Framework::Actix
        } else if any("tonic") || any("hyper") || any("tower") {
            Framework::Tower
        } else {
            Framework::Other
        }
    }

    /// The runtime's feature for it.
    fn feature(self) -> Option<&'static str> {
        match self {
            Framework::Axum => Some("axum"),
            Framework::Actix => Some("actix"),
            Framework::Tower => Some("tower"),
            Framework::Other => None,
        }
    }
}

/// What to change in the host, from what its `main` does and where the hot code is.
pub fn next_steps(main: Option<&Path>, framework: Framework, hot: &HotCode) -> Vec<String> {
    let source = main.and_then(|m| std::fs::read_to_string(m).ok()).unwrap_or_default();
    // What the code does, not what its comments say.
    let source: String = source.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let main_name = main.map(|m| m.display().to_string()).unwrap_or_else(|| "src/main.rs".into());
    let (module, crate_path) = match hot {
        HotCode::Library(package, crate_name) => (format!("the library `{package}`"), crate_name.clone()),
        HotCode::PackageLibrary(crate_name) => ("the package's library (src/lib.rs or one of its modules)".to_string(), crate_name.clone()),
        HotCode::BinaryModule => ("a module of the binary (e.g. src/routes.rs, declared with `mod routes;`)".to_string(), "routes".to_string()),
    };
    let mut steps = vec!["Next:".to_string()];
    match framework {
        _ if ["hot::axum::router", "hot::actix::configure", "hot::tower::service"].iter().any(|rebuilt| source.contains(rebuilt)) => {
            steps.push(format!("  {main_name} already serves its routes through the runtime: nothing to change there."));
        }
        Framework::Axum if source.contains("Router::new()") || source.contains("axum::serve") => {
            steps.push(format!("  1. Build your axum Router in a function of {module}, marked as the entry point (if it is not already):"));
            steps.push("       #[hot::export]".to_string());
            steps.push("       pub fn router(state: Arc<AppState>) -> Router { Router::new().route(...).with_state(state) }".to_string());
            steps.push(format!("  2. In {main_name}, serve it through the runtime, which rebuilds it after each patch:"));
            steps.push(format!("       let app = hot::axum::router(move || {crate_path}::router(state.clone()));"));
        }
        Framework::Axum => {
            steps.push("  1. Where the app builds its axum Router (a `router(...)` function its `launch` or `serve` calls), serve it".to_string());
            steps.push("     through the runtime, which rebuilds it with the newest code after each patch:".to_string());
            steps.push("       let app = hot::axum::router(move || router(state.clone()));".to_string());
            steps.push("     A router generic over its database (`router::<DB>`) needs no wrapper: its copy is patched where it is compiled.".to_string());
        }
        Framework::Actix => {
            steps.push(format!("  1. Register your routes in a function of {module}, marked as the entry point:"));
            steps.push("       #[hot::export]".to_string());
            steps.push("       pub fn configure(config: &mut web::ServiceConfig) { config.route(\"/\", web::get().to(index)); }".to_string());
            steps.push(format!("  2. In the App factory of {main_name}, take them from the runtime, which configures them again after each patch:"));
            steps.push(format!("       App::new().configure(hot::actix::configure({crate_path}::configure))"));
            steps.push("     An exported async handler whose future is not Send (a Session, an HttpRequest held across .await) needs #[hot::export(local)].".to_string());
        }
        Framework::Tower => {
            steps.push(format!("  1. Build your tower service (a tonic server's routes, a hyper service) in a #[hot::export] function of {module}."));
            steps.push(format!("  2. In {main_name}, serve it through the runtime, which rebuilds it after each patch:"));
            steps.push(format!("       let service = hot::tower::service(move || {crate_path}::service(state.clone()));"));
        }
        Framework::Other => {
            steps.push(format!(
                "  1. Put #[hot::export] on the functions your server calls for each request (in {module}); {main_name} keeps calling them as before."
            ));
        }
    }
    steps.push("Then run `cargo hot run`; edits to the hot code are patched into the running server, and a restart keeps the port".to_string());
    steps.push("the server binds open, so no connection is refused while it restarts.".to_string());
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "# The server.\n[package]\nname = \"server\" # keep me\nversion = \"0.1.0\"\n\n[dependencies]\n# web framework\naxum = \"0.8\"\n";

    #[test]
    fn adds_the_runtime_keeping_comments_and_changes_nothing_the_second_time() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(&manifest, MANIFEST).unwrap();
        let source = RuntimeSource::Version("0.1".into());
        let add = |features: &[&str]| {
            let mut edited = Manifest::read(&manifest).unwrap();
            let edit = edited.add_runtime_entry(features, &source).unwrap();
            edited.write().unwrap();
            edit
        };
        assert!(matches!(add(&["axum"]), Edit::Added(_)));
        let text = std::fs::read_to_string(&manifest).unwrap();
        assert!(text.starts_with("# The server.\n[package]\nname = \"server\" # keep me\n"), "{text}");
        assert!(text.contains("# web framework\naxum = \"0.8\"\nhot-runtime = { version = \"0.1\", features = [\"axum\"] }\n"), "{text}");
        assert!(matches!(add(&["axum"]), Edit::Unchanged(_)));
        assert_eq!(std::fs::read_to_string(&manifest).unwrap(), text, "idempotent");
    }

    #[test]
    fn a_renamed_runtime_counts_as_present_and_boundaries_are_named_once() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(&manifest, format!("{MANIFEST}hot = {{ package = \"hot-runtime\", path = \"../rt\" }}\n")).unwrap();
        let mut edited = Manifest::read(&manifest).unwrap();
        assert!(matches!(edited.add_runtime_entry(&[], &RuntimeSource::Version("0.1".into())).unwrap(), Edit::Unchanged(_)));
        assert!(matches!(edited.name_boundary("handlers").unwrap(), Edit::Added(_)));
        edited.write().unwrap();
        let text = std::fs::read_to_string(&manifest).unwrap();
        assert!(text.contains("[package.metadata.hot]\nboundary = \"handlers\"\n"), "{text}");
        assert!(!text.contains("[package.metadata]\n"), "no empty parent table: {text}");
        let mut again = Manifest::read(&manifest).unwrap();
        assert!(matches!(again.name_boundary("other").unwrap(), Edit::Unchanged(_)));
        again.write().unwrap();
        assert_eq!(std::fs::read_to_string(&manifest).unwrap(), text);
        // An inline metadata table is extended in place.
        std::fs::write(&manifest, "[package]\nname = \"s\"\nmetadata = { docs = 1 }\n").unwrap();
        let mut inline = Manifest::read(&manifest).unwrap();
        assert!(matches!(inline.name_boundary("handlers").unwrap(), Edit::Added(_)));
        inline.write().unwrap();
        let text = std::fs::read_to_string(&manifest).unwrap();
        assert!(text.contains("docs = 1") && text.contains("boundary = \"handlers\""), "{text}");
    }

    #[test]
    fn a_broken_manifest_is_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(&manifest, "[package\nname = ").unwrap();
        let err = Manifest::read(&manifest).err().unwrap().to_string();
        assert!(err.contains("is not valid TOML") && err.contains("Cargo.toml"), "{err}");
    }

    #[test]
    fn next_steps_follow_what_main_does() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("main.rs");
        std::fs::write(&main, "let app = Router::new();\nlet l = TcpListener::bind(addr).await?;\naxum::serve(l, app)").unwrap();
        let steps = next_steps(Some(&main), Framework::Axum, &HotCode::BinaryModule).join("\n");
        assert!(steps.contains("hot::axum::router(move || routes::router(state.clone()))"), "{steps}");
        assert!(!steps.contains("hot::listener"), "ports are held without it: {steps}");
        assert!(steps.contains("keeps the port"), "{steps}");
        let steps = next_steps(Some(&main), Framework::Axum, &HotCode::PackageLibrary("my_app".into())).join("\n");
        assert!(steps.contains("the package's library") && steps.contains("my_app::router(state.clone())"), "{steps}");
        std::fs::write(&main, "fn main() { run(launch::<Postgres>(settings)) }").unwrap();
        let steps = next_steps(Some(&main), Framework::Axum, &HotCode::Library("server".into(), "server".into())).join("\n");
        assert!(steps.contains("hot::axum::router(move || router(state.clone()))") && steps.contains("generic"), "{steps}");
        std::fs::write(&main, "fn main() { serve_forever() }").unwrap();
        let steps = next_steps(Some(&main), Framework::Other, &HotCode::Library("handlers".into(), "handlers".into())).join("\n");
        assert!(steps.contains("Put #[hot::export] on the functions") && steps.contains("the library `handlers`"), "{steps}");
        std::fs::write(&main, "HttpServer::new(|| App::new().service(index))").unwrap();
        let steps = next_steps(Some(&main), Framework::Actix, &HotCode::Library("site".into(), "site".into())).join("\n");
        assert!(steps.contains("App::new().configure(hot::actix::configure(site::configure))"), "{steps}");
        assert!(steps.contains("#[hot::export(local)]"), "{steps}");
        let steps = next_steps(Some(&main), Framework::Tower, &HotCode::Library("api".into(), "api".into())).join("\n");
        assert!(steps.contains("hot::tower::service(move || api::service(state.clone()))"), "{steps}");
        std::fs::write(&main, "let app = hot::axum::router(move || api::router(s.clone()));").unwrap();
        let steps = next_steps(Some(&main), Framework::Axum, &HotCode::Library("api".into(), "api".into())).join("\n");
        assert!(steps.contains("already serves its routes through the runtime") && !steps.contains("Build your axum Router"), "{steps}");
    }
}
