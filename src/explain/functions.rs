//! `cargo hot explain FILE` per function: how an edit of each function of a patched file
//! would take effect in the program as built, read from its compiled code the way a patch is
//! judged (see `patch::reach`): through an export, by redirecting the running copies, or not
//! at all (a copy compiled into another crate, code only start-up runs, a function the host
//! calls that cannot be redirected).

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result};

use crate::build::{HostBuild, UnitObjects};
use crate::codediff::Code;
use crate::metadata::Plan;
use crate::patch::reach;

/// What an edit of one function's body would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Reached through the exports (or not by the running program at all): patched.
    Patch,
    /// The host (or a vtable made before the patch) reaches it directly: its running copies
    /// are redirected to the new code.
    Redirect,
    /// Patched, compiling these other hot crates again with it (they hold a copy of it, or
    /// create the future of an `async fn`: see `span`).
    Spans(Vec<String>),
    /// Restarts, and why.
    Restart(String),
}

/// One function of the file and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionVerdict {
    pub name: String,
    pub verdict: Verdict,
}

/// The functions `file` defines (read with `syn`), each judged against the compiled code of
/// the whole program as built: the hot crates' code as one program (calls between them are
/// edges), and what the code outside them refers to. `index` is the file's crate.
pub fn of_file(file: &Path, index: usize, build: &HostBuild, plan: &Plan) -> Result<Vec<FunctionVerdict>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let syntax = syn::parse_file(&text).with_context(|| format!("cannot parse {}", file.display()))?;
    let functions = source_functions(&syntax);
    let unit = &build.boundaries[index];
    let has_main = matches!(unit.objects, UnitObjects::Binary { .. });
    let objects: Vec<Vec<crate::patch::ObjectFile>> = build.boundaries.iter().map(|u| crate::host::unit_objects(u).read()).collect::<Result<_>>()?;
    let parts: Vec<(usize, &[crate::patch::ObjectFile])> = objects.iter().enumerate().map(|(i, o)| (i, o.as_slice())).collect();
    let code = Code::read_parts(&parts)?;
    let defined: HashSet<String> = crate::codediff::SymbolNames::read(&objects[index])?.functions;
    let outside = crate::host::read_outside(build, &build.boundaries, plan)?;
    // As a patch is judged: what the host's code (and `main`) reaches without going through
    // an export, and what the exports reach, across the hot crates.
    let reach::Reached { from_exports: through_exports, from_outside, .. } = reach::reached(&code, &outside);
    let module = crate::abi::source::module_of_file(file);
    let package = |i: usize| build.boundaries[i].boundary.package.clone();
    Ok(functions
        .into_iter()
        .map(|function| {
            let matches = |item: &str| names(item, &function.path, module.as_deref());
            let symbols: Vec<&String> = defined.iter().filter(|s| matches(&reach::item_path(s))).collect();
            let copies: Vec<&(String, String)> = outside.copies.iter().filter(|(item, _)| matches(item)).collect();
            // Other hot crates that hold a copy of it, or call it: a patch compiles them again
            // when it changes (a copy), or when it is `async` (they create its future).
            let mut spans: Vec<String> = code
                .functions_with_owners()
                .filter(|(name, owners)| owners.iter().any(|o| *o != index) && matches(&reach::item_path(name)))
                .flat_map(|(_, owners)| owners.into_iter().filter(|o| *o != index))
                .map(package)
                .collect();
            if function.is_async {
                for node in symbols.iter().flat_map(|s| code.nodes_of(&[s.as_str()])) {
                    spans.extend(code.referrers(node).iter().map(|r| code.owner(*r)).filter(|o| *o != index).map(package));
                }
            }
            spans.sort();
            spans.dedup();
            let by_outside = symbols.iter().any(|s| from_outside.contains(*s));
            let verdict = if function.is_export {
                // Its body is the export's entry, which the patch switches; what the host
                // calls is the unchanged wrapper that reads the slot.
                Verdict::Patch
            } else if let Some((_, owner)) = copies.first() {
                Verdict::Restart(format!("`{owner}` compiled its own copy of this generic or `#[inline]` function, and is not hot"))
            } else if by_outside && !symbols.iter().any(|s| through_exports.contains(*s)) {
                let who = if has_main { "start-up code (`main`)" } else { "the host's own code" };
                Verdict::Restart(format!("only {who} reaches it, not an export"))
            } else if by_outside && function.is_async {
                Verdict::Restart("the host reaches it too, and an `async fn` cannot be redirected".to_string())
            } else if !spans.is_empty() {
                Verdict::Spans(spans)
            } else if by_outside {
                Verdict::Redirect
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
