//! What of a boundary's changed code the running program can still reach, and how each
//! change takes effect. A patch switches the exports' slots, and new code calls its own new
//! copies; everything else the program holds keeps pointing at the old code: host code that
//! calls a boundary function directly, vtables and function pointers built before the patch
//! (a `Box<dyn Trait>` made at start-up), drop glue, copies of generic and `#[inline]`
//! functions compiled into other crates, constants and statics the host read, and code that
//! ran once at start-up. Decided from the compiled code (see [`crate::codediff`]):
//!
//! - a changed ordinary function is **redirected**: its old copies jump to the new one, so
//!   every caller, old or new, runs the new code from its next call (see `hot`'s loader);
//! - a function that cannot be redirected (a closure or an `async` body, whose captured state
//!   or suspended state machine may have changed; an `async fn`, whose future's layout may
//!   have) takes effect through what creates it: the functions referring to it are redirected
//!   in turn, up to an export entry;
//! - changed code that only the host's own code or start-up reaches (nothing an export
//!   reaches), or that the host compiled its own copy of, or a value the host read, cannot
//!   take effect: the edit restarts, naming it.
//!
//! Values built before the patch keep the closures and `async` blocks they hold (an old
//! router that is not rebuilt by `hot::axum::router`, a task spawned at start-up): those run
//! their old code until they are built again.

use std::collections::{BTreeSet, HashSet, VecDeque};

use anyhow::Result;

use crate::codediff::{self, Code, FunctionDiff, Node, SymbolNames};

use super::ObjectFile;

/// How code outside the boundary reaches it, read from the other objects of the host's link.
#[derive(Debug, Clone, Default)]
pub struct Outside {
    /// Boundary symbols (mangled) that code outside the boundary refers to.
    pub references: HashSet<String>,
    /// Boundary functions compiled into other crates (generic instances, `#[inline]`
    /// copies): readable path of the item → the crate that holds a copy.
    pub copies: Vec<(String, String)>,
    /// The boundary is the binary: `main` and what it reaches is start-up code.
    pub has_main: bool,
}

impl Outside {
    /// Reads `objects` (the host crate's and other workspace crates', with each one's crate
    /// name) for references to and copies of `crate_name`'s code, whose own objects define the
    /// functions `defined`.
    pub fn read(crate_name: &str, defined: &HashSet<String>, objects: &[(String, Vec<ObjectFile>)]) -> Result<Self> {
        let mut outside = Outside::default();
        for (owner, files) in objects {
            let names = SymbolNames::read(files)?;
            outside.references.extend(names.undefined);
            for name in &names.functions {
                if defined.contains(name) {
                    continue;
                }
                let item = item_path(name);
                if belongs_to(&item, crate_name) {
                    outside.copies.push((item, owner.clone()));
                }
            }
        }
        outside.copies.sort();
        outside.copies.dedup();
        Ok(outside)
    }
}

/// Why a changed function cannot take effect in the running program.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unreached {
    /// Only start-up code or the host's own code reaches it, not an export.
    StartUp,
    /// The host calls or awaits it directly, and it cannot be redirected.
    CalledByHost,
    /// Another crate compiled its own copy (a generic or `#[inline]` function).
    CompiledInto { crate_name: String },
    /// The host read a constant or static whose value changed.
    ValueReadByHost,
    /// It must be redirected, and cannot be: why.
    NotRedirectable { why: String },
}

/// One change that cannot take effect without a restart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stale {
    pub function: String,
    pub why: Unreached,
}

/// How an edit's compiled changes take effect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    pub diff: FunctionDiff,
    /// Functions (mangled) whose running copies must jump to the new code.
    pub redirect: Vec<String>,
    /// Changes that cannot take effect: the edit must restart (sorted, readable names).
    pub stale: Vec<Stale>,
    /// Redirected functions that start-up also ran (the binary is the boundary): start-up
    /// ran their old version.
    pub also_run_at_start_up: Vec<String>,
}

/// Why a function is not redirected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRedirected {
    /// A closure or `async` body, or a function whose result's layout its body decides (an
    /// `async fn`'s future, an `impl Trait`): it takes effect through the functions that call
    /// or create it.
    ThroughCreators,
    /// Its running copies must not jump to the new code (why): a change that needs it
    /// restarts.
    Cannot(String),
}

/// What decides whether a function may be redirected, from outside the compiled code (the
/// running program's copy of it, the source's surface).
pub type CanRedirect<'a> = dyn Fn(&str) -> Result<(), NotRedirected> + 'a;

/// Compares `new` with `old` (the code the running program runs) and decides how each change
/// takes effect. `body_changed` tells, from the source, whether the item of a copy another
/// crate compiled changed: the boundary may have no compiled copy of it to compare.
pub fn analyse(
    old: &[ObjectFile],
    new: &[ObjectFile],
    outside: &Outside,
    can_redirect: &CanRedirect,
    body_changed: &dyn Fn(&str) -> bool,
) -> Result<Analysis> {
    let old = Code::read(old)?;
    let new = Code::read(new)?;
    let diff = codediff::diff(&old, &new);
    let mut analysis = Analysis::default();
    let mut stale: BTreeSet<(String, Unreached)> = BTreeSet::new();

    // Values the host read: a changed read-only static it refers to by name.
    for name in &outside.references {
        if old.is_data(name) && new.is_data(name) && old.data_fingerprint(name) != new.data_fingerprint(name) {
            stale.insert((readable(name), Unreached::ValueReadByHost));
        }
    }
    // Copies other crates compiled: a changed item of which the host holds its own copy.
    let changed_items: HashSet<String> = diff.changed.iter().map(|n| item_path(n)).collect();
    for (item, owner) in &outside.copies {
        if changed_items.contains(item) || body_changed(item) {
            stale.insert((item.clone(), Unreached::CompiledInto { crate_name: owner.clone() }));
        }
    }

    if !diff.changed.is_empty() {
        let from_exports = old.reachable(old.entries(), false);
        let references: Vec<&str> = outside.references.iter().map(String::as_str).filter(|n| old.defines(n)).collect();
        let mut roots = old.nodes_of(&references);
        if outside.has_main {
            roots.extend(old.main_nodes());
        }
        let from_outside = old.reachable(&roots, true);
        let root_nodes: HashSet<Node> = roots.iter().copied().collect();

        let mut redirect: BTreeSet<String> = BTreeSet::new();
        let mut seen: HashSet<Node> = HashSet::new();
        let mut queue: VecDeque<Node> = VecDeque::new();
        for name in &diff.changed {
            let (by_export, by_outside) = (from_exports.contains(name), from_outside.contains(name));
            if by_outside && !by_export {
                stale.insert((readable(name), Unreached::StartUp));
                continue;
            }
            match redirectable(name, can_redirect) {
                Ok(()) => {
                    redirect.insert(name.clone());
                    if by_outside && outside.has_main {
                        analysis.also_run_at_start_up.push(readable(name));
                    }
                }
                // Its creators must run new code instead.
                Err(NotRedirected::ThroughCreators) => queue.extend(old.nodes_of(&[name.as_str()])),
                Err(NotRedirected::Cannot(why)) => {
                    stale.insert((readable(name), Unreached::NotRedirectable { why }));
                }
            }
        }
        // Up from each function that takes effect through its creators, through what refers to
        // it (its callers, the vtables that hold it and the code that builds them), to
        // functions that are redirected, or to export entries, which the patch switches. A
        // creator that cannot be redirected would keep creating the old one: restart.
        while let Some(node) = queue.pop_front() {
            if !seen.insert(node) {
                continue;
            }
            let function = old.function_at(node).map(str::to_string);
            if root_nodes.contains(&node) {
                let name = function.clone().unwrap_or_else(|| old.globals_at(node).first().map(|n| n.to_string()).unwrap_or_default());
                stale.insert((readable(&name), Unreached::CalledByHost));
                continue;
            }
            for referrer in old.referrers(node) {
                if old.is_entry(*referrer) || seen.contains(referrer) {
                    continue;
                }
                let Some(caller) = old.function_at(*referrer) else {
                    queue.push_back(*referrer); // data: a vtable, a table of function pointers
                    continue;
                };
                match redirectable(caller, can_redirect) {
                    Ok(()) if new.defines(caller) => {
                        redirect.insert(caller.to_string());
                    }
                    Ok(()) => {
                        let why = "the new code no longer has it, and code built before the patch may still call it".to_string();
                        stale.insert((readable(caller), Unreached::NotRedirectable { why }));
                    }
                    Err(NotRedirected::ThroughCreators) => queue.push_back(*referrer),
                    Err(NotRedirected::Cannot(why)) => {
                        stale.insert((readable(caller), Unreached::NotRedirectable { why }));
                    }
                }
            }
        }
        analysis.redirect = redirect.into_iter().collect();
    }
    analysis.also_run_at_start_up.sort();
    analysis.also_run_at_start_up.dedup();
    analysis.stale = stale.into_iter().map(|(function, why)| Stale { function, why }).collect();
    analysis.diff = diff;
    Ok(analysis)
}

/// Closures and `async` bodies are never redirected: an old value of one (a boxed callback, a
/// suspended future) would run new code over old captured state. Everything else is up to
/// `can_redirect`.
fn redirectable(name: &str, can_redirect: &CanRedirect) -> Result<(), NotRedirected> {
    if is_closure_or_async_body(name) {
        return Err(NotRedirected::ThroughCreators);
    }
    can_redirect(name)
}

/// Whether a symbol is a closure or a coroutine (an `async fn`'s or block's body), or code
/// generic over one: its path or generic arguments name a closure.
pub fn is_closure_or_async_body(name: &str) -> bool {
    let demangled = format!("{:#}", rustc_demangle::demangle(name));
    demangled.contains("{{closure}}") || demangled.contains("{closure#") || demangled.contains("{async")
}

/// The item a function symbol belongs to: its demangled path without hash and generic
/// arguments (`web::cached::<host::Key>` and `web::cached` are one item).
pub fn item_path(symbol: &str) -> String {
    let demangled = format!("{:#}", rustc_demangle::demangle(symbol));
    strip_generic_arguments(&demangled)
}

fn strip_generic_arguments(path: &str) -> String {
    // `::<...>` groups, at any depth of the path (v0 names carry them; legacy names do not).
    let mut out = String::with_capacity(path.len());
    let mut depth = 0usize;
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if depth == 0 && path[i..].starts_with("::<") {
            depth = 1;
            i += 3;
            continue;
        }
        if depth > 0 {
            match bytes[i] {
                b'<' => depth += 1,
                b'>' => depth -= 1,
                _ => {}
            }
            i += 1;
            continue;
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

/// Whether a demangled item path is code of `crate_name`: its own path, or a method of an
/// impl for one of its types (`<web::Store as core::ops::Drop>::drop`).
fn belongs_to(item: &str, crate_name: &str) -> bool {
    let own = |path: &str| path.strip_prefix(crate_name).is_some_and(|rest| rest.starts_with("::"));
    own(item) || item.strip_prefix('<').is_some_and(own)
}

/// The name a reader knows a changed function by: closures and drop glue are named after the
/// function or type they belong to (`main::{{closure}}` and
/// `core::ptr::drop_in_place<app::main::{{closure}}>` are both `app::main`).
pub fn readable(symbol: &str) -> String {
    let demangled = format!("{:#}", rustc_demangle::demangle(symbol));
    let mut name = demangled.as_str();
    if let Some(dropped) = name.strip_prefix("core::ptr::drop_in_place<").and_then(|rest| rest.strip_suffix('>')) {
        name = dropped;
    }
    while let Some(outer) = name.strip_suffix("::{{closure}}") {
        name = outer;
    }
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closures_and_drop_glue_are_named_after_their_function() {
        assert_eq!(readable("_ZN3app4main17h0123456789abcdefE"), "app::main");
        assert_eq!(readable("app::main::{{closure}}::{{closure}}"), "app::main");
        assert_eq!(readable("core::ptr::drop_in_place<app::main::{{closure}}>"), "app::main");
        assert_eq!(readable("<app::Config as core::default::Default>::default"), "<app::Config as core::default::Default>::default");
    }

    #[test]
    fn items_are_paths_without_generic_arguments_and_impls_belong_to_their_type_s_crate() {
        assert_eq!(strip_generic_arguments("web::cached::<host::Key>"), "web::cached");
        assert_eq!(strip_generic_arguments("<web::Store<u8> as core::ops::drop::Drop>::drop"), "<web::Store<u8> as core::ops::drop::Drop>::drop");
        assert!(belongs_to("<web::Store as core::ops::drop::Drop>::drop", "web"));
        assert!(belongs_to("web::cached", "web"));
        assert!(!belongs_to("webapp::cached", "web"));
        assert!(!belongs_to("<core::option::Option<web::X> as core::clone::Clone>::clone", "web"));
        assert!(is_closure_or_async_body("web::index::{{closure}}"));
        assert!(!is_closure_or_async_body("_ZN3web5index17h0123456789abcdefE"));
    }
}
