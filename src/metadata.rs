//! From `cargo metadata` to a plan: which binary is the host, which crates are boundaries,
//! where the target directory is. Every impossible setting is reported here, before
//! anything is built.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use cargo_metadata::{DependencyKind, Metadata, MetadataCommand, Package, PackageId, TargetKind};

use crate::cli::{HotOptions, Selection};
use crate::config::{BoundarySpec, ConfigSource, HotConfig};

/// The host: the binary that `cargo hot run` builds and runs.
#[derive(Debug, Clone)]
pub struct Host {
    pub package: String,
    pub bin: String,
    pub manifest_dir: PathBuf,
    /// What `cargo run` tells the program about its package: `CARGO_MANIFEST_DIR`,
    /// `CARGO_MANIFEST_PATH` and the `CARGO_PKG_*` variables.
    pub package_env: Vec<(String, String)>,
}

/// A hot crate: edits to files only it compiles are patched into the running host.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Boundary {
    pub package: String,
    /// The target's crate name (`-` replaced by `_`), as rustc knows it.
    pub crate_name: String,
    pub manifest_dir: PathBuf,
    /// Other boundaries that depend on this one, directly or not: a patch of this one may
    /// have to compile them again (see `span`).
    pub dependents: Vec<String>,
    /// Other boundaries this one depends on, directly or not.
    pub depends_on: Vec<String>,
    /// The local packages that are not boundaries and depend on this one, directly or not
    /// (the host's package always): code there that names one of its `const`s has the value
    /// compiled in (see `inlined`).
    pub local_dependents: Vec<String>,
    pub kind: BoundaryKind,
    /// Chosen because nothing was configured (see [`plan`]): a library without exports then
    /// gives way to the binary.
    pub by_default: bool,
}

/// Which crate of its package a boundary is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BoundaryKind {
    /// A library the host links (its own `src/lib.rs`, or another crate).
    Library,
    /// The host binary itself: `#[hot::export]` functions in the modules of `main.rs`.
    Binary,
}

/// Everything decided before the first build.
#[derive(Debug, Clone)]
pub struct Plan {
    pub workspace_root: PathBuf,
    pub target_dir: PathBuf,
    pub host: Host,
    pub boundaries: Vec<Boundary>,
    pub config: HotConfig,
    pub selection: Selection,
    /// Directories holding the sources of local (non-registry) packages: what to watch.
    pub local_package_dirs: Vec<PathBuf>,
    /// About how many units a build of the host has (for the progress bar): estimated from
    /// the dependency graph, then the last build's count.
    pub expected_units: usize,
}

impl Plan {
    /// cargo hot's own files for this host: captured compiler commands, patches, the socket.
    pub fn session_dir(&self) -> PathBuf {
        self.target_dir.join("hot").join(&self.host.bin)
    }

    /// Where the copy of cargo-hot that cargo and the programs run is kept (see `tool`).
    pub fn tool_dir(&self) -> PathBuf {
        self.target_dir.join("hot").join("tool")
    }
}

/// Reads the workspace and decides the plan. Command-line `options` override the manifests.
///
/// Configuration warnings go to `events` at once: if planning then fails (a misspelled
/// `boundray` key leaves no boundary), the warning explains why.
pub fn plan(selection: &Selection, options: &HotOptions, events: &crate::events::Events) -> Result<Plan> {
    let warn_all = |warnings: Vec<String>| warnings.into_iter().for_each(|w| events.warn(w));
    let metadata = read_metadata(selection)?;
    let workspace_root = metadata.workspace_root.clone().into_std_path_buf();

    // Workspace-level configuration first: it can name the bin.
    let mut config = HotConfig::default();
    let workspace_manifest = workspace_root.join("Cargo.toml");
    if let Some(table) = metadata.workspace_metadata.get("hot") {
        warn_all(config.apply(&ConfigSource::manifest(table, &workspace_manifest, "workspace.metadata.hot"))?);
    }
    let host_package = select_host_package(&metadata, selection, config.bin.as_deref())?;
    if let Some(table) = host_package.metadata.get("hot") {
        warn_all(config.apply(&ConfigSource::manifest(table, host_package.manifest_path.as_std_path(), "package.metadata.hot"))?);
    }
    let bin = select_bin(host_package, selection.bin.as_deref().or(config.bin.as_deref()))?;
    let host = Host { package: host_package.name.to_string(), bin, manifest_dir: manifest_dir(host_package), package_env: package_env(host_package) };

    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let flags = options.as_table();
    warn_all(config.apply(&ConfigSource { table: &flags, base_dir: &cwd, origin: "the command line".into() })?);
    let host_deps = normal_dependencies(&metadata, &host_package.id);
    let mut excluded: Vec<PackageId> = Vec::new();
    for spec in &config.exclude {
        let package = resolve_boundary(&metadata, spec)?;
        if package.id != host_package.id && !host_deps.contains(&package.id) {
            bail!(
                "`exclude` names `{}` ({}), which `{}` does not depend on: nothing to exclude. Name a crate the host uses",
                package.name,
                spec.origin,
                host.package
            );
        }
        excluded.push(package.id.clone());
    }
    let mut boundaries: Vec<Boundary> = Vec::new();
    let mut ids: Vec<PackageId> = Vec::new();
    if config.boundaries.is_empty() {
        // Nothing configured: the host package's own library if it has one (its exports are
        // what the binary calls), otherwise the binary itself; and every library of the
        // workspace that the host links, lowest first (a patch spans them in that order).
        if !excluded.contains(&host_package.id) {
            boundaries.push(package_boundary(host_package, &host.bin, true));
            ids.push(host_package.id.clone());
        }
        for package in workspace_libraries_in_build_order(&metadata, &host_deps) {
            if !excluded.contains(&package.id) {
                boundaries.push(package_boundary(package, &host.bin, true));
                ids.push(package.id.clone());
            }
        }
    }
    for spec in &config.boundaries {
        let package = resolve_boundary(&metadata, spec)?;
        let is_host = package.id == host_package.id;
        if !is_host && !package.targets.iter().any(is_library) {
            bail!("the boundary `{}` ({}) has no library target; a boundary must be a library crate, or the host's own package", package.name, spec.origin);
        }
        // The host package's own library, or its binary, is a fine boundary.
        if !is_host && !host_deps.contains(&package.id) {
            bail!(
                "the boundary `{}` ({}) is not a dependency of `{}`: nothing it compiles ends up in the program.\n\
                 Add it to [dependencies] in {}, or choose a crate the host uses",
                package.name,
                spec.origin,
                host.package,
                host_package.manifest_path
            );
        }
        if excluded.contains(&package.id) {
            bail!("`{}` is both a boundary ({}) and excluded: remove it from one of the two", package.name, spec.origin);
        }
        if boundaries.iter().any(|b| b.package == package.name.as_str()) {
            continue;
        }
        boundaries.push(package_boundary(package, &host.bin, false));
        ids.push(package.id.clone());
    }
    // Configured boundaries patch in dependency order too.
    let order = build_order(&metadata, &ids);
    let mut paired: Vec<(Boundary, PackageId)> = boundaries.into_iter().zip(ids).collect();
    paired.sort_by_key(|(_, id)| order.iter().position(|o| o == id).unwrap_or(usize::MAX));
    let (mut boundaries, ids): (Vec<Boundary>, Vec<PackageId>) = paired.into_iter().unzip();

    for (index, id) in ids.iter().enumerate() {
        let deps = normal_dependencies(&metadata, id);
        for (other, other_id) in ids.iter().enumerate() {
            if other != index && deps.contains(other_id) {
                let name = boundaries[index].package.clone();
                boundaries[other].dependents.push(name);
                let lower = boundaries[other].package.clone();
                boundaries[index].depends_on.push(lower);
            }
        }
    }

    for (boundary, id) in boundaries.iter_mut().zip(&ids) {
        let local = metadata.packages.iter().filter(|p| p.source.is_none() && host_deps_or_self(&host_deps, &host_package.id, &p.id));
        boundary.local_dependents = local
            .filter(|p| p.id == host_package.id || normal_dependencies(&metadata, &p.id).contains(id))
            .map(|p| p.name.to_string())
            .collect();
    }
    let local_package_dirs =
        metadata.packages.iter().filter(|p| p.source.is_none() && host_deps_or_self(&host_deps, &host_package.id, &p.id)).map(manifest_dir).collect();

    Ok(Plan {
        workspace_root,
        target_dir: metadata.target_directory.clone().into_std_path_buf(),
        expected_units: build_units(&metadata, &host_package.id),
        host,
        boundaries,
        config,
        selection: selection.clone(),
        local_package_dirs,
    })
}

/// An estimate of the units cargo reports for a build of `host`: every package it needs
/// (normal and build dependencies, transitively) once, its build script twice (compiled,
/// then run), and the binary. Dependencies of other platforms make it an overestimate.
fn build_units(metadata: &Metadata, host: &PackageId) -> usize {
    let Some(resolve) = &metadata.resolve else { return 0 };
    let mut seen = HashSet::from([host.clone()]);
    let mut queue = VecDeque::from([host.clone()]);
    let mut units = 1;
    while let Some(id) = queue.pop_front() {
        if let Some(package) = metadata.packages.iter().find(|p| p.id == id) {
            units += package.targets.iter().filter(|t| is_library(t) || t.is_proc_macro()).count().min(1);
            units += 2 * package.targets.iter().filter(|t| t.is_custom_build()).count().min(1);
        }
        let Some(node) = resolve.nodes.iter().find(|n| n.id == id) else { continue };
        for dep in &node.deps {
            let needed = dep.dep_kinds.iter().any(|k| k.kind != DependencyKind::Development);
            if needed && seen.insert(dep.pkg.clone()) {
                queue.push_back(dep.pkg.clone());
            }
        }
    }
    units
}

/// The variables cargo sets for a package's programs (cargo's `Compilation::fill_env`).
fn package_env(package: &Package) -> Vec<(String, String)> {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let version = &package.version;
    vec![
        ("CARGO_MANIFEST_DIR".into(), manifest_dir(package).display().to_string()),
        ("CARGO_MANIFEST_PATH".into(), package.manifest_path.to_string()),
        ("CARGO_PKG_NAME".into(), package.name.to_string()),
        ("CARGO_PKG_VERSION".into(), version.to_string()),
        ("CARGO_PKG_VERSION_MAJOR".into(), version.major.to_string()),
        ("CARGO_PKG_VERSION_MINOR".into(), version.minor.to_string()),
        ("CARGO_PKG_VERSION_PATCH".into(), version.patch.to_string()),
        ("CARGO_PKG_VERSION_PRE".into(), version.pre.to_string()),
        ("CARGO_PKG_AUTHORS".into(), package.authors.join(":")),
        ("CARGO_PKG_DESCRIPTION".into(), text(&package.description)),
        ("CARGO_PKG_HOMEPAGE".into(), text(&package.homepage)),
        ("CARGO_PKG_REPOSITORY".into(), text(&package.repository)),
        ("CARGO_PKG_LICENSE".into(), text(&package.license)),
        ("CARGO_PKG_LICENSE_FILE".into(), package.license_file.as_ref().map(|p| p.to_string()).unwrap_or_default()),
        ("CARGO_PKG_RUST_VERSION".into(), package.rust_version.as_ref().map(|v| v.to_string()).unwrap_or_default()),
        ("CARGO_PKG_README".into(), package.readme.as_ref().map(|p| p.to_string()).unwrap_or_default()),
    ]
}

fn is_library(target: &cargo_metadata::Target) -> bool {
    target.is_lib() || target.kind.contains(&TargetKind::RLib)
}

/// The boundary of `package`: its library, or (the host's package without one) the binary.
fn package_boundary(package: &Package, bin: &str, by_default: bool) -> Boundary {
    let (crate_name, kind) = match package.targets.iter().find(|t| is_library(t)) {
        Some(lib) => (lib.name.replace('-', "_"), BoundaryKind::Library),
        None => (bin.replace('-', "_"), BoundaryKind::Binary),
    };
    Boundary {
        package: package.name.to_string(),
        crate_name,
        manifest_dir: manifest_dir(package),
        dependents: Vec::new(),
        local_dependents: Vec::new(),
        depends_on: Vec::new(),
        kind,
        by_default,
    }
}

impl Plan {
    /// The boundary chosen for the host's own package when nothing was configured (its
    /// library, or its binary), if there is one.
    pub fn host_package_default(&self) -> Option<usize> {
        self.boundaries.iter().position(|b| b.by_default && b.package == self.host.package)
    }

    /// After a build showed that the default boundary of the host's package (its library)
    /// has no exports while the binary has: the binary becomes that boundary.
    pub fn prefer_binary_boundary(&mut self) {
        if let Some(index) = self.host_package_default() {
            let boundary = &mut self.boundaries[index];
            if boundary.kind == BoundaryKind::Library {
                boundary.kind = BoundaryKind::Binary;
                boundary.crate_name = self.host.bin.replace('-', "_");
            }
        }
    }

    /// The host's binary crate by default, with no exports while other crates are hot: its
    /// edits restart as any crate's outside the boundaries do.
    pub fn drop_binary_boundary(&mut self) {
        if let Some(index) = self.host_package_default() {
            if self.boundaries[index].kind == BoundaryKind::Binary && self.boundaries.len() > 1 {
                let dropped = self.boundaries.remove(index);
                for boundary in &mut self.boundaries {
                    boundary.dependents.retain(|d| *d != dropped.package);
                }
            }
        }
    }
}

fn host_deps_or_self(deps: &HashSet<PackageId>, host: &PackageId, id: &PackageId) -> bool {
    id == host || deps.contains(id)
}

fn manifest_dir(package: &Package) -> PathBuf {
    package.manifest_path.parent().map(|p| p.as_std_path().to_path_buf()).unwrap_or_default()
}

/// The workspace, the host package and its binary, chosen as [`plan`] chooses them but
/// without needing a boundary (for `cargo hot init`).
pub fn host_package(selection: &Selection) -> Result<(Metadata, PackageId, String)> {
    let metadata = read_metadata(selection)?;
    let configured_bin = metadata.workspace_metadata.get("hot").and_then(|t| t.get("bin")).and_then(|b| b.as_str()).map(str::to_string);
    let package = select_host_package(&metadata, selection, configured_bin.as_deref())?;
    let bin = select_bin(package, selection.bin.as_deref().or(configured_bin.as_deref()))?;
    let id = package.id.clone();
    Ok((metadata, id, bin))
}

fn read_metadata(selection: &Selection) -> Result<Metadata> {
    let mut command = MetadataCommand::new();
    if let Some(path) = &selection.manifest_path {
        if !path.is_file() {
            bail!("--manifest-path {}: no such file", path.display());
        }
        command.manifest_path(path);
    }
    command.other_options(selection.feature_args());
    command.exec().map_err(|err| match err {
        cargo_metadata::Error::CargoMetadata { stderr } => anyhow!("cargo could not read the workspace (fix the manifest it names):\n{}", stderr.trim_end()),
        other => anyhow!("cannot run `cargo metadata`: {other}"),
    })
}

fn bins(package: &Package) -> Vec<&str> {
    package.targets.iter().filter(|t| t.is_bin()).map(|t| t.name.as_str()).collect()
}

/// `-p`, then the package that owns `--bin`/`bin`, then the package of the manifest in
/// the current directory, then the only member with a binary.
fn select_host_package<'a>(metadata: &'a Metadata, selection: &Selection, bin: Option<&str>) -> Result<&'a Package> {
    let members = metadata.workspace_packages();
    if let Some(spec) = &selection.package {
        return members
            .iter()
            .copied()
            .find(|p| p.name.as_str() == spec.as_str())
            .ok_or_else(|| anyhow!("-p {spec}: no such package in this workspace; members are {}", names(&members)));
    }
    if let Some(bin) = selection.bin.as_deref().or(bin) {
        let owners: Vec<&Package> = members.iter().copied().filter(|p| bins(p).contains(&bin)).collect();
        return match owners.as_slice() {
            [one] => Ok(one),
            [] => bail!("no binary named `{bin}` in this workspace; binaries are {}", all_bins(&members)),
            many => bail!("several packages have a binary `{bin}` ({}); pick one with -p", names(many)),
        };
    }
    if let Some(root) = metadata.root_package() {
        if !bins(root).is_empty() {
            return Ok(root);
        }
    }
    let with_bins: Vec<&Package> = members.iter().copied().filter(|p| !bins(p).is_empty()).collect();
    match with_bins.as_slice() {
        [one] => Ok(one),
        [] => bail!("no package in this workspace has a binary target to run"),
        many => bail!(
            "several packages have binaries ({}); pick the server with -p PACKAGE or --bin NAME, \
             or set bin = \"NAME\" under [workspace.metadata.hot]",
            names(many)
        ),
    }
}

fn select_bin(package: &Package, bin: Option<&str>) -> Result<String> {
    let available = bins(package);
    if let Some(bin) = bin {
        if available.contains(&bin) {
            return Ok(bin.to_string());
        }
        bail!("package `{}` has no binary `{bin}`; its binaries are {}", package.name, available.join(", "));
    }
    if let Some(default_run) = &package.default_run {
        return Ok(default_run.clone());
    }
    match available.as_slice() {
        [one] => Ok(one.to_string()),
        [] => bail!("package `{}` has no binary target to run", package.name),
        many => bail!("package `{}` has several binaries ({}); pick one with --bin NAME", package.name, many.join(", ")),
    }
}

fn names(packages: &[&Package]) -> String {
    packages.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
}

fn all_bins(packages: &[&Package]) -> String {
    packages.iter().flat_map(|p| bins(p)).collect::<Vec<_>>().join(", ")
}

/// A path (relative to where it was written) or a package name.
fn resolve_boundary<'a>(metadata: &'a Metadata, spec: &BoundarySpec) -> Result<&'a Package> {
    let candidate = spec.base_dir.join(&spec.value);
    let looks_like_path = spec.value.contains('/') || spec.value.starts_with('.') || candidate.is_dir();
    if looks_like_path {
        let dir = candidate
            .canonicalize()
            .map_err(|_| anyhow!("the boundary `{}` ({}) is not a directory: {} does not exist", spec.value, spec.origin, candidate.display()))?;
        let manifest = dir.join("Cargo.toml");
        if let Some(package) = metadata.packages.iter().find(|p| p.manifest_path.as_std_path().canonicalize().ok().as_deref() == Some(manifest.as_path())) {
            return Ok(package);
        }
        if candidate.is_dir() && !spec.value.contains('/') {
            // A bare name that happens to be a directory: fall through to package names.
        } else {
            bail!(
                "the boundary `{}` ({}) is not a package of this workspace: {} is not a manifest cargo knows. \
                 Point it at a crate directory that has a Cargo.toml and is used by the host",
                spec.value,
                spec.origin,
                manifest.display()
            );
        }
    }
    metadata.packages.iter().find(|p| p.name.as_str() == spec.value && p.source.is_none()).ok_or_else(|| {
        let locals: Vec<&Package> = metadata.packages.iter().filter(|p| p.source.is_none()).collect();
        anyhow!(
            "the boundary `{}` ({}) is neither a crate directory nor a package of this workspace; local packages are {}",
            spec.value,
            spec.origin,
            names(&locals)
        )
    })
}

/// The libraries of workspace members among `deps`, each after the ones it depends on.
fn workspace_libraries_in_build_order<'a>(metadata: &'a Metadata, deps: &HashSet<PackageId>) -> Vec<&'a Package> {
    let members: Vec<PackageId> =
        metadata.workspace_packages().into_iter().filter(|p| deps.contains(&p.id) && p.targets.iter().any(is_library)).map(|p| p.id.clone()).collect();
    build_order(metadata, &members).iter().filter_map(|id| metadata.packages.iter().find(|p| &p.id == id)).collect()
}

/// `ids` ordered so that each comes after those it depends on (ties by name, for a stable
/// order).
fn build_order(metadata: &Metadata, ids: &[PackageId]) -> Vec<PackageId> {
    let deps: Vec<HashSet<PackageId>> = ids.iter().map(|id| normal_dependencies(metadata, id)).collect();
    let name = |id: &PackageId| metadata.packages.iter().find(|p| &p.id == id).map(|p| p.name.to_string()).unwrap_or_default();
    let mut order: Vec<PackageId> = Vec::new();
    let mut left: Vec<usize> = (0..ids.len()).collect();
    left.sort_by_key(|i| name(&ids[*i]));
    while !left.is_empty() {
        // The first whose dependencies among `ids` are all placed (a cycle cannot happen
        // between libraries; should one, the rest keep their order).
        let next = left.iter().position(|i| ids.iter().enumerate().all(|(j, other)| j == *i || !deps[*i].contains(other) || order.contains(other)));
        let index = left.remove(next.unwrap_or(0));
        order.push(ids[index].clone());
    }
    order
}

/// Every package the host links: its normal dependencies, transitively.
fn normal_dependencies(metadata: &Metadata, host: &PackageId) -> HashSet<PackageId> {
    let Some(resolve) = &metadata.resolve else { return HashSet::new() };
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([host.clone()]);
    while let Some(id) = queue.pop_front() {
        let Some(node) = resolve.nodes.iter().find(|n| n.id == id) else { continue };
        for dep in &node.deps {
            let normal = dep.dep_kinds.iter().any(|k| k.kind == DependencyKind::Normal);
            if normal && seen.insert(dep.pkg.clone()) {
                queue.push_back(dep.pkg.clone());
            }
        }
    }
    seen
}
