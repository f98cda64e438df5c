//! `cargo hot explain FILE` per function: how an edit of each function of a patched file
//! would take effect in the program as built, read from its compiled code the way a patch is
//! judged (see `patch::reach`): through an export, by redirecting the running copies, or not
//! at all (a copy compiled into another crate, code only start-up runs, a function the host
//! calls that cannot be redirected).

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result};

use crate::build::{BoundaryUnit, HostBuild, UnitObjects};
use crate::codediff::Code;
use crate::metadata::Plan;
use crate::patch::reach::{self, Outside};
use crate::patch::ObjectSource;

/// What an edit of one function's body would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Reached through the exports (or not by the running program at all): patched.
    Patch,
    /// The host (or a vtable made before the patch) reaches it directly: its running copies
    /// are redirected to the new code.
    Redirect,
    /// Restarts, and why.
    Restart(String),
}

/// One function of the file and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionVerdict {
    pub name: String,
    pub verdict: Verdict,
}

/// The functions `file` defines (read with `syn`), each judged against the boundary's compiled
/// code and what the rest of the host refers to.
pub fn of_file(file: &Path, unit: &BoundaryUnit, build: &HostBuild, plan: &Plan) -> Result<Vec<FunctionVerdict>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let syntax = syn::parse_file(&text).with_context(|| format!("cannot parse {}", file.display()))?;
    let functions = source_functions(&syntax);
    let (source, has_main) = match &unit.objects {
        UnitObjects::Rlib(rlib) => (ObjectSource::Rlib(rlib.clone()), false),
        UnitObjects::Binary { baseline } => (ObjectSource::Dir(baseline.clone()), true),
    };
    let objects = source.read()?;
    let code = Code::read(&objects)?;
    let defined: HashSet<String> = code.function_names().map(str::to_string).collect();
    let outside =
        if has_main { Outside::default() } else { Outside::read(&unit.boundary.crate_name, &defined, &crate::host::other_objects(unit, build, plan)?)? };
    // As a patch is judged: what the host's code (and `main`) reaches without going through
    // an export, and what the exports reach.
    let references: Vec<&str> = outside.references.iter().map(String::as_str).filter(|n| code.defines(n)).collect();
    let mut roots = code.nodes_of(&references);
    if has_main {
        roots.extend(code.main_nodes());
    }
    let from_outside: HashSet<String> = code.reachable(&roots, true);
    let through_exports: HashSet<String> = code.reachable(code.entries(), false);
    let module = crate::abi::source::module_of_file(file);
    Ok(functions
        .into_iter()
        .map(|function| {
            let symbols: Vec<&String> = defined.iter().filter(|s| names(&reach::item_path(s), &function.path, module.as_deref())).collect();
            let copies: Vec<&(String, String)> = outside.copies.iter().filter(|(item, _)| names(item, &function.path, module.as_deref())).collect();
            let verdict = if function.is_export {
                // Its body is the export's entry, which the patch switches; what the host
                // calls is the unchanged wrapper that reads the slot.
                Verdict::Patch
            } else if let Some((_, owner)) = copies.first() {
                Verdict::Restart(format!("`{owner}` compiled its own copy of this generic or `#[inline]` function"))
            } else if symbols.iter().any(|s| from_outside.contains(*s)) && !symbols.iter().any(|s| through_exports.contains(*s)) {
                let who = if has_main { "start-up code (`main`)" } else { "the host's own code" };
                Verdict::Restart(format!("only {who} reaches it, not an export"))
            } else if symbols.iter().any(|s| from_outside.contains(*s)) {
                if function.is_async {
                    Verdict::Restart("the host reaches it too, and an `async fn` cannot be redirected".to_string())
                } else {
                    Verdict::Redirect
                }
            } else {
                Verdict::Patch
            };
            FunctionVerdict { name: function.path, verdict }
        })
        .collect())
}

struct SourceFunction {
    /// `name`, or `Type::name` for a method.
    path: String,
    is_async: bool,
    is_export: bool,
}

fn is_export(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| a.path().segments.last().is_some_and(|s| s.ident == "export"))
}

fn source_functions(syntax: &syn::File) -> Vec<SourceFunction> {
    let mut out = Vec::new();
    for item in &syntax.items {
        match item {
            syn::Item::Fn(f) => out.push(SourceFunction { path: f.sig.ident.to_string(), is_async: f.sig.asyncness.is_some(), is_export: is_export(&f.attrs) }),
            syn::Item::Impl(block) => {
                let ty = match &*block.self_ty {
                    syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default(),
                    _ => continue,
                };
                for inner in &block.items {
                    if let syn::ImplItem::Fn(f) = inner {
                        out.push(SourceFunction { path: format!("{ty}::{}", f.sig.ident), is_async: f.sig.asyncness.is_some(), is_export: false });
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Whether a compiled item path (`web::render::note`, `<web::Store as web::Describe>::describe`)
/// is the function `path` of the file's module.
fn names(item: &str, path: &str, module: Option<&str>) -> bool {
    let item = item.trim_start_matches('<');
    let (own, _) =
        item.split_once(" as ").map(|(ty, rest)| (format!("{ty}::{}", rest.rsplit("::").next().unwrap_or_default()), ())).unwrap_or((item.to_string(), ()));
    let own = own.trim_end_matches('>');
    let matches_path = own.ends_with(&format!("::{path}"));
    matches_path && module.is_none_or(|m| own.contains(&format!("::{m}::")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_items_are_matched_to_the_file_s_functions() {
        assert!(names("web::render::note", "note", Some("render")));
        assert!(!names("web::other::note", "note", Some("render")));
        assert!(names("web::note", "note", None));
        assert!(names("<web::Store as web::Describe>::describe", "Store::describe", None));
        assert!(!names("web::renote", "note", None));
        assert_eq!(crate::abi::source::module_of_file(Path::new("/c/src/routes/mod.rs")).as_deref(), Some("routes"));
        assert_eq!(crate::abi::source::module_of_file(Path::new("/c/src/lib.rs")), None);
    }
}
