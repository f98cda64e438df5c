//! The ABI gate: a patch is sent to the running program only when it is proven compatible.
//! Anything unproven is a restart, with a one-line reason. Falling back is always correct;
//! loading an incompatible patch never is.
//!
//! Checks, on the real artifacts:
//! 1. the boundary's exports are the same set in the host binary and in the patch (an export
//!    name carries a hash of its signature, so a changed signature is a changed name);
//! 2. the layout record of each export (size and alignment of every argument and of the
//!    return value) is byte-for-byte the same;
//! 3. every strong undefined symbol of the patch is defined by the host binary or by a
//!    library it loads;
//! 4. (source level, see [`source`]) no type definition of the boundary changed.

pub mod elf;
pub mod source;
pub mod surface;

use std::collections::HashSet;
use std::path::Path;

use anyhow::Result;

pub use elf::{ElfSymbols, StaticSymbol};
pub use source::{CrateSource, LoadedDefinitions, SourceSnapshot, TypeDefinitions};

/// What the gate knows about the running host binary. Read once per host build.
#[derive(Debug, Clone)]
pub struct HostImage {
    pub symbols: ElfSymbols,
    /// Symbols defined by the libraries the host loads, one set per library (read once per
    /// version of each: see [`library_symbols`]).
    pub library_symbols: Vec<std::sync::Arc<HashSet<String>>>,
    /// Libraries the host needs that could not be found (their symbols are unknown).
    pub missing_libraries: Vec<String>,
    /// The boundaries' statics and thread-locals, whose running copies patches use.
    pub statics: Vec<StaticSymbol>,
    /// Link-time address of the runtime's anchor (see `hot::protocol::ANCHOR_SYMBOL`); None
    /// when the binary has no symbol table (stripped) or no runtime.
    pub anchor: Option<u64>,
}

impl HostImage {
    /// Reads what the gate and the binding of statics need from the host executable;
    /// `boundary_crates` are the crate names whose statics patches bind.
    pub fn read(executable: &Path, boundary_crates: &[String]) -> Result<Self> {
        let (symbols, statics, anchor) = elf::read_host(executable, boundary_crates, hot::protocol::ANCHOR_SYMBOL)?;
        let mut library_symbols = Vec::new();
        let mut missing_libraries = Vec::new();
        for (name, path) in elf::needed_libraries(executable, &symbols) {
            match path.and_then(|p| self::library_symbols(&p)) {
                Some(defined) => library_symbols.push(defined),
                None => missing_libraries.push(name),
            }
        }
        Ok(HostImage { symbols, library_symbols, missing_libraries, statics, anchor })
    }

    /// Export keys of one boundary crate.
    pub fn exports_of<'a>(&'a self, crate_name: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.symbols.exports.keys().filter(move |key| belongs_to(key, crate_name))
    }

    /// Whether the running program (or a library it loads) defines `name`.
    pub fn defines(&self, name: &str) -> bool {
        self.symbols.defined.contains(name) || self.library_symbols.iter().any(|library| library.contains(name))
    }
}

/// The symbols a shared library defines, read once per version of the file: the host's
/// dependencies' library (see `deps_library`) has hundreds of thousands, and stays the same from
/// one restart to the next.
fn library_symbols(path: &Path) -> Option<std::sync::Arc<HashSet<String>>> {
    type Cache = std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, (std::time::SystemTime, u64, std::sync::Arc<HashSet<String>>)>>;
    static READ: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let metadata = std::fs::metadata(path).ok()?;
    let version = (metadata.modified().ok()?, metadata.len());
    let cache = READ.get_or_init(Default::default);
    if let Some((modified, len, defined)) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(path) {
        if (*modified, *len) == version {
            return Some(defined.clone());
        }
    }
    let defined = std::sync::Arc::new(elf::read(path).ok()?.defined);
    cache.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_path_buf(), (version.0, version.1, defined.clone()));
    Some(defined)
}

fn belongs_to(key: &str, crate_name: &str) -> bool {
    key.strip_prefix(crate_name).is_some_and(|rest| rest.starts_with("::"))
}

/// `handlers::index::h0123` → `handlers::index` (the export without its signature hash).
fn export_path(key: &str) -> &str {
    key.rsplit_once("::h").map(|(path, _)| path).unwrap_or(key)
}

/// A patch the gate let through: the exports to switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    pub exports: Vec<String>,
}

/// Why a patch must not be loaded (put into words by `ui`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "rejection", rename_all = "kebab-case")]
pub enum Rejection {
    /// The running program has no export of this crate: nothing could be switched.
    NoExports {
        crate_name: String,
    },
    SignatureChanged {
        export: String,
    },
    NewExport {
        export: String,
    },
    ExportRemoved {
        export: String,
    },
    /// The size or alignment of an argument or of the result changed.
    LayoutChanged {
        export: String,
    },
    /// A symbol the new code needs is not in the running program (`more`: how many others).
    MissingSymbol {
        symbol: String,
        more: usize,
        unchecked_libraries: Vec<String>,
    },
}

/// What a patch's new code takes effect through, besides the exports the gate checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Only through exports: a program without any has nothing a patch could switch.
    ExportsOnly,
    /// Also through redirected functions (see `patch::reach`): the code the runtime builds
    /// again after each patch (a router generic over its database) needs no export.
    Redirects,
}

/// Checks 1-3 for the patch of `crates` (the edited crate first, then any other it spans) at
/// `patch`. A crate without exports of its own is reached through other crates' (its changed
/// functions are redirected: see `patch::reach`); a program without any has nothing a patch
/// could switch, unless the patch redirects (`reach`).
pub fn check(host: &HostImage, crates: &[String], patch: &ElfSymbols, reach: Reach) -> Result<Approved, Rejection> {
    let of_crates = |key: &&String| crates.iter().any(|c| belongs_to(key, c));
    let host_exports: Vec<&String> = host.symbols.exports.keys().filter(of_crates).collect();
    let patch_exports: Vec<&String> = patch.exports.keys().filter(of_crates).collect();
    if host.symbols.exports.is_empty() && reach == Reach::ExportsOnly {
        return Err(Rejection::NoExports { crate_name: crates.first().cloned().unwrap_or_default() });
    }
    // A new export has no slot in the running program, and no compiled code of it calls
    // the export (it did not exist): only the new code does, which calls its own copy. It is
    // patched, and not switched.
    let (patch_exports, new): (Vec<&String>, Vec<&String>) = patch_exports.into_iter().partition(|key| host_exports.contains(key));
    for key in new {
        let export = export_path(key).to_string();
        if host_exports.iter().any(|h| export_path(h) == export) {
            return Err(Rejection::SignatureChanged { export });
        }
    }
    for key in &host_exports {
        if !patch_exports.contains(key) {
            let path = export_path(key);
            if !patch_exports.iter().any(|p| export_path(p) == path) {
                return Err(Rejection::ExportRemoved { export: path.to_string() });
            }
        }
    }
    for key in &patch_exports {
        let host_layout = &host.symbols.exports[*key];
        let patch_layout = &patch.exports[*key];
        if host_layout.is_empty() || host_layout != patch_layout {
            return Err(Rejection::LayoutChanged { export: export_path(key).to_string() });
        }
    }
    let missing: Vec<&str> = patch.undefined.iter().filter(|(name, weak)| !weak && !host.defines(name)).map(|(name, _)| name.as_str()).collect();
    if let Some(first) = missing.first() {
        return Err(Rejection::MissingSymbol {
            symbol: format!("{:#}", rustc_demangle::demangle(first)),
            more: missing.len() - 1,
            unchecked_libraries: host.missing_libraries.clone(),
        });
    }
    Ok(Approved { exports: patch_exports.into_iter().cloned().collect() })
}

/// Reads the patch and runs [`check`].
pub fn check_file(host: &HostImage, crates: &[String], patch: &Path, reach: Reach) -> Result<Result<Approved, Rejection>> {
    let symbols = elf::read(patch)?;
    Ok(check(host, crates, &symbols, reach))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn host(exports: &[(&str, &[u8])], defined: &[&str]) -> HostImage {
        HostImage {
            symbols: ElfSymbols {
                defined: defined.iter().map(|s| s.to_string()).collect(),
                exports: exports.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect::<BTreeMap<_, _>>(),
                ..Default::default()
            },
            library_symbols: vec![std::sync::Arc::new(["malloc".to_string()].into())],
            missing_libraries: vec![],
            statics: vec![],
            anchor: None,
        }
    }

    fn patch(exports: &[(&str, &[u8])], undefined: &[(&str, bool)]) -> ElfSymbols {
        ElfSymbols {
            exports: exports.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect(),
            undefined: undefined.iter().map(|(n, w)| (n.to_string(), *w)).collect(),
            ..Default::default()
        }
    }

    const L: &[u8] = &[8, 0, 0, 0, 0, 0, 0, 0];

    #[test]
    fn same_exports_and_resolvable_symbols_pass() {
        let host = host(&[("h::a::h1", L), ("other::x::h9", L)], &["_ZN5tokio4time5sleep17h1E"]);
        let p = patch(&[("h::a::h1", L)], &[("_ZN5tokio4time5sleep17h1E", false), ("malloc", false), ("__gmon_start__", true)]);
        assert_eq!(check(&host, &h(), &p, Reach::ExportsOnly), Ok(Approved { exports: vec!["h::a::h1".into()] }));
    }

    #[test]
    fn changed_added_and_removed_exports_are_named() {
        let host = host(&[("h::a::h1", L), ("h::b::h2", L)], &[]);
        let changed = check(&host, &h(), &patch(&[("h::a::h7", L), ("h::b::h2", L)], &[]), Reach::ExportsOnly).unwrap_err();
        assert_eq!(changed, Rejection::SignatureChanged { export: "h::a".into() });
        let added = check(&host, &h(), &patch(&[("h::a::h1", L), ("h::b::h2", L), ("h::c::h3", L)], &[]), Reach::ExportsOnly);
        assert_eq!(added, Ok(Approved { exports: vec!["h::a::h1".into(), "h::b::h2".into()] }), "a new export is patched, not switched");
        let removed = check(&host, &h(), &patch(&[("h::a::h1", L)], &[]), Reach::ExportsOnly).unwrap_err();
        assert_eq!(removed, Rejection::ExportRemoved { export: "h::b".into() });
    }

    #[test]
    fn layout_change_and_missing_symbol_are_rejected() {
        let host = host(&[("h::a::h1", L)], &[]);
        let layout = check(&host, &h(), &patch(&[("h::a::h1", &[16, 0, 0, 0, 0, 0, 0, 0])], &[]), Reach::ExportsOnly).unwrap_err();
        assert_eq!(layout, Rejection::LayoutChanged { export: "h::a".into() });
        let missing = check(&host, &h(), &patch(&[("h::a::h1", L)], &[("_ZN10serde_json2to17h0123456789abcdefE", false)]), Reach::ExportsOnly).unwrap_err();
        assert!(matches!(missing, Rejection::MissingSymbol { ref symbol, more: 0, .. } if symbol == "serde_json::to"), "{missing:?}");
    }

    fn h() -> Vec<String> {
        vec!["h".to_string()]
    }

    #[test]
    fn a_host_without_exports_cannot_be_patched() {
        let err = check(&host(&[], &[]), &h(), &patch(&[], &[]), Reach::ExportsOnly).unwrap_err();
        assert_eq!(err, Rejection::NoExports { crate_name: "h".into() });
    }

    #[test]
    fn a_host_without_exports_patches_through_redirects_with_its_symbols_still_checked() {
        let host = host(&[], &["h::f"]);
        assert_eq!(check(&host, &h(), &patch(&[], &[("h::f", false)]), Reach::Redirects), Ok(Approved { exports: vec![] }));
        let missing = check(&host, &h(), &patch(&[], &[("h::gone", false)]), Reach::Redirects).unwrap_err();
        assert!(matches!(missing, Rejection::MissingSymbol { .. }), "{missing:?}");
    }

    #[test]
    fn a_crate_without_exports_patches_beside_one_that_has_them() {
        // `store` has none: its changed functions are redirected; `web`'s are checked.
        let host = host(&[("web::a::h1", L)], &[]);
        let crates = vec!["store".to_string(), "web".to_string()];
        assert_eq!(check(&host, &crates[..1], &patch(&[], &[]), Reach::ExportsOnly), Ok(Approved { exports: vec![] }));
        let removed = check(&host, &crates, &patch(&[], &[]), Reach::ExportsOnly).unwrap_err();
        assert_eq!(removed, Rejection::ExportRemoved { export: "web::a".into() });
        assert_eq!(check(&host, &crates, &patch(&[("web::a::h1", L)], &[]), Reach::ExportsOnly), Ok(Approved { exports: vec!["web::a::h1".into()] }));
    }

    #[test]
    fn crate_prefix_must_end_at_a_path_separator() {
        let host = host(&[("handlers_extra::a::h1", L)], &[]);
        assert_eq!(host.exports_of("handlers").count(), 0);
    }
}
