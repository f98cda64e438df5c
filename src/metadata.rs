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
}

/// A hot crate: edits to files only it compiles are patched into the running host.
#[derive(Debug, Clone)]
pub struct Boundary {
    pub package: String,
    /// The lib target's crate name (`-` replaced by `_`), as rustc knows it.
    pub crate_name: String,
    pub manifest_dir: PathBuf,
    /// Other boundaries that depend on this one (an edit here then restarts).
    pub dependents: Vec<String>,
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
}

/// Configuration warnings are shown at once: if planning then fails (a misspelled
/// `boundray` key leaves no boundary), the warning explains why.
fn warn_all(warnings: Vec<String>) {
    for warning in warnings {
        crate::ui::warn(warning);
    }
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
pub fn plan(selection: &Selection, options: &HotOptions) -> Result<Plan> {
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
    let host = Host {
        package: host_package.name.to_string(),
        bin,
        manifest_dir: manifest_dir(host_package),
    };

    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let flags = options.as_table();
    warn_all(config.apply(&ConfigSource { table: &flags, base_dir: &cwd, origin: "the command line".into() })?);
    if config.boundaries.is_empty() {
        bail!(
            "no hot boundary is configured for `{}`.\n\
             Name the crate whose edits should be patched in, either on the command line:\n    \
             cargo hot run --boundary crates/handlers\n\
             or in {}:\n    [package.metadata.hot]\n    boundary = \"handlers\"",
            host.package,
            host_package.manifest_path
        );
    }

    let host_deps = normal_dependencies(&metadata, &host_package.id);
    let mut boundaries: Vec<Boundary> = Vec::new();
    let mut ids: Vec<PackageId> = Vec::new();
    for spec in &config.boundaries {
        let package = resolve_boundary(&metadata, spec)?;
        let is_host = package.id == host_package.id;
        let Some(lib) = package.targets.iter().find(|t| t.is_lib() || t.kind.contains(&TargetKind::RLib)) else {
            if is_host {
                bail!(
                    "the boundary `{}` ({}) is the host package itself, which has no library target. \
                     The boundary is a library the binary uses: move the code to patch into src/lib.rs \
                     (the binary calls it as `{}::...`) or into its own crate, e.g. crates/handlers",
                    spec.value,
                    spec.origin,
                    host.package.replace('-', "_")
                );
            }
            bail!("the boundary `{}` ({}) has no library target; a boundary must be a library crate", package.name, spec.origin);
        };
        // The host package's own library (src/lib.rs beside src/main.rs) is a fine boundary.
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
        if boundaries.iter().any(|b| b.package == package.name.as_str()) {
            continue;
        }
        boundaries.push(Boundary {
            package: package.name.to_string(),
            crate_name: lib.name.replace('-', "_"),
            manifest_dir: manifest_dir(package),
            dependents: Vec::new(),
        });
        ids.push(package.id.clone());
    }

    for (index, id) in ids.iter().enumerate() {
        let deps = normal_dependencies(&metadata, id);
        for (other, other_id) in ids.iter().enumerate() {
            if other != index && deps.contains(other_id) {
                let name = boundaries[index].package.clone();
                boundaries[other].dependents.push(name);
            }
        }
    }

    let local_package_dirs = metadata
        .packages
        .iter()
        .filter(|p| p.source.is_none() && host_deps_or_self(&host_deps, &host_package.id, &p.id))
        .map(manifest_dir)
        .collect();

    Ok(Plan {
        workspace_root,
        target_dir: metadata.target_directory.clone().into_std_path_buf(),
        host,
        boundaries,
        config,
        selection: selection.clone(),
        local_package_dirs,
    })
}

fn host_deps_or_self(deps: &HashSet<PackageId>, host: &PackageId, id: &PackageId) -> bool {
    id == host || deps.contains(id)
}

fn manifest_dir(package: &Package) -> PathBuf {
    package.manifest_path.parent().map(|p| p.as_std_path().to_path_buf()).unwrap_or_default()
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
        cargo_metadata::Error::CargoMetadata { stderr } => anyhow!(
            "cargo could not read the workspace; fix the manifest and run again:\n{}",
            stderr.trim_end()
        ),
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
        let dir = candidate.canonicalize().map_err(|_| {
            anyhow!("the boundary `{}` ({}) is not a directory: {} does not exist", spec.value, spec.origin, candidate.display())
        })?;
        let manifest = dir.join("Cargo.toml");
        if let Some(package) = metadata
            .packages
            .iter()
            .find(|p| p.manifest_path.as_std_path().canonicalize().ok().as_deref() == Some(manifest.as_path()))
        {
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
