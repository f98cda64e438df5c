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

/// How code outside the hot crates reaches them, read from the other objects of the host's
/// link (the host crate's own, and workspace crates that are not hot).
#[derive(Debug, Clone, Default)]
pub struct Outside {
    /// Symbols (mangled) that code outside the hot crates refers to.
    pub references: HashSet<String>,
    /// Functions of hot crates compiled into other crates (generic instances, `#[inline]`
    /// copies): readable path of the item → the crate that holds a copy.
    pub copies: Vec<(String, String)>,
    /// The binary is hot: `main` and what it reaches is start-up code.
    pub has_main: bool,
}

impl Outside {
    /// Reads `objects` (with each one's crate name) for references to and copies of the code
    /// of `crates`, whose own objects define the functions `defined`.
    pub fn read(crates: &[String], defined: &HashSet<String>, objects: &[(String, Vec<ObjectFile>)]) -> Result<Self> {
        let mut outside = Outside::default();
        for (owner, files) in objects {
            let names = SymbolNames::read(files)?;
            outside.references.extend(names.undefined);
            for name in &names.functions {
                if defined.contains(name) || !crates.iter().any(|c| name.contains(c.as_str())) {
                    continue;
                }
                let item = item_path(name);
                if crates.iter().any(|c| belongs_to(&item, c)) {
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
    /// A `const`, `const fn` or macro that code outside the hot crates has compiled in.
    ValueCompiledInto { crate_name: String },
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
    /// Hot crates outside the patch whose code must be compiled again for the change to take
    /// effect (they hold a copy of it, or create what changed): with them in the patch, the
    /// analysis is run again (see `span`).
    pub needs: BTreeSet<usize>,
    /// The functions (mangled) the patch must carry; the others are the running program's
    /// (see `thin`).
    pub carried: std::collections::BTreeSet<String>,
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

/// What an analysis judges the two compiles against.
pub struct Scope<'a> {
    /// The code the running program runs of every hot crate, as one program (see
    /// [`Code::read_parts`]; each part is a crate's index): calls between crates are edges.
    pub running: &'a Code<'a>,
    /// The crates the patch compiles, and their crate names.
    pub span: &'a BTreeSet<usize>,
    pub span_crates: &'a [String],
    pub outside: &'a Outside,
    pub can_redirect: &'a CanRedirect<'a>,
    /// From the source: whether the body of an item of the span changed (a copy another crate
    /// compiled may have nothing to compare).
    pub body_changed: &'a dyn Fn(&str) -> bool,
    /// The crate of the span an item path belongs to.
    pub crate_of_item: &'a dyn Fn(&str) -> Option<usize>,
}

/// What the running program reaches of its hot crates: from the exports (across crates), and
/// from code outside them (the host's own, `main` when the binary is hot) without going
/// through an export; and the sections outside code refers to directly.
pub struct Reached {
    /// From the exports, and from what the runtime builds again after each patch (see
    /// [`rebuilt_by_the_runtime`]).
    pub from_exports: HashSet<String>,
    /// Of those, what the runtime's rebuilds reach: start-up's result is replaced by theirs.
    pub from_rebuilds: HashSet<String>,
    pub from_outside: HashSet<String>,
    pub roots: HashSet<Node>,
}

pub fn reached(running: &Code, outside: &Outside) -> Reached {
    let mut from_exports = running.reachable(running.entries(), false);
    let rebuilders: Vec<&str> = running.function_names().filter(|name| rebuilt_by_the_runtime(name)).collect();
    let from_rebuilds = running.reachable(&running.nodes_of(&rebuilders), false);
    from_exports.extend(from_rebuilds.iter().cloned());
    let references: Vec<&str> = outside.references.iter().map(String::as_str).filter(|n| running.defines(n)).collect();
    let mut roots = running.nodes_of(&references);
    if outside.has_main {
        roots.extend(running.main_nodes());
    }
    let from_outside = running.reachable(&roots, true);
    Reached { from_exports, from_rebuilds, from_outside, roots: roots.into_iter().collect() }
}

/// Whether a function of the hot crates' code is a closure the runtime registers to build a
/// value again after each applied patch, instantiated there for the app's build:
/// `hot::axum::router`'s, `hot::tower::service`'s, `Hot::new`'s (`Hot::create`) and
/// `hot::scope`'s. What it reaches takes effect at the next rebuild, as if an export reached it:
/// a router generic over its database (`router::<DB>`, compiled in the crate that names the
/// database, often the binary) is patched, its copy redirected and the router built again, with
/// no `#[hot::export]` wrapper. The registering functions themselves ran once, at start-up, and
/// are not: a build closure inlined into them is start-up code.
pub fn rebuilt_by_the_runtime(symbol: &str) -> bool {
    const REGISTERING: [&str; 4] = ["hot::axum::router", "hot::tower::service", "hot::scope::scope", "hot::value::Hot<T>::create"];
    let path = item_path(symbol);
    // v0 names write an inherent impl's path as `<hot::value::Hot<Router>>::create`.
    let path = path.trim_start_matches('<');
    let path = match path.strip_prefix("hot::value::Hot<").and_then(|rest| rest.split_once(">::create")) {
        Some((_, rest)) => format!("hot::value::Hot<T>::create{rest}"),
        None => path.to_string(),
    };
    REGISTERING.iter().any(|function| {
        path.strip_prefix(function).is_some_and(|rest| rest.starts_with("::{{closure}}") || rest.starts_with("::{closure#"))
    })
}

/// Compares `new` with `old` (the code the running program runs of the crates the patch
/// compiles) and decides how each change takes effect in the running program (`scope`).
pub fn analyse(old: &[(usize, &[ObjectFile])], new: &[(usize, &[ObjectFile])], scope: &Scope) -> Result<Analysis> {
    let old_code = Code::read_parts(old)?;
    let new = Code::read_parts(new)?;
    let diff = codediff::diff(&old_code, &new);
    let running = scope.running;
    let (outside, can_redirect) = (scope.outside, scope.can_redirect);
    let mut analysis = Analysis::default();
    let mut stale: BTreeSet<(String, Unreached)> = BTreeSet::new();

    // Values the host read: a changed read-only static it refers to by name.
    for name in &outside.references {
        if old_code.is_data(name) && new.is_data(name) && old_code.data_fingerprint(name) != new.data_fingerprint(name) {
            stale.insert((readable(name), Unreached::ValueReadByHost));
        }
    }
    // Copies other crates compiled: a changed item of which the host holds its own copy.
    let changed_items: HashSet<String> = diff.changed.iter().map(|n| item_path(n)).collect();
    let changed = |item: &str| changed_items.contains(item) || (scope.body_changed)(item);
    for (item, owner) in &outside.copies {
        if (scope.crate_of_item)(item).is_some() && changed(item) {
            stale.insert((item.clone(), Unreached::CompiledInto { crate_name: owner.clone() }));
        }
    }
    // ... and copies a hot crate outside the patch compiled: that crate joins it.
    for (name, owners) in running.functions_with_owners() {
        if !owners.iter().any(|o| !scope.span.contains(o)) || !scope.span_crates.iter().any(|c| name.contains(c.as_str())) {
            continue;
        }
        let item = item_path(name);
        if let Some(of) = (scope.crate_of_item)(&item) {
            if changed(&item) {
                analysis.needs.extend(owners.iter().filter(|o| !scope.span.contains(o) && **o != of));
            }
        }
    }

    if !diff.changed.is_empty() {
        let Reached { from_exports, from_rebuilds, from_outside, roots: root_nodes } = reached(running, outside);
        let mut redirect: BTreeSet<String> = BTreeSet::new();
        // Each function walked up from, with the item a closure or `async` body it started from
        // was written in (see below).
        let mut queue: VecDeque<(Node, Option<String>)> = VecDeque::new();
        let written_in = |name: &str| is_closure_or_async_body(name).then(|| strip_generic_arguments(&readable(name)));
        let mut by_item: std::collections::HashMap<String, Vec<&str>> = std::collections::HashMap::new();
        for function in running.function_names() {
            by_item.entry(item_path(function)).or_default().push(function);
        }
        // A closure or `async` block written in a function that only start-up (or the host's own
        // code) runs: what it made at start-up (a build closure handed to `hot::axum::router`,
        // say) keeps its captured state and old code, whatever calls it later.
        let made_at_start_up = |name: &str| {
            let Some(enclosing) = by_item.get(&strip_generic_arguments(&readable(name))) else { return false };
            enclosing.iter().any(|f| from_outside.contains(*f)) && !enclosing.iter().any(|f| from_exports.contains(*f))
        };
        for name in &diff.changed {
            let (by_export, by_outside) = (from_exports.contains(name), from_outside.contains(name));
            if (by_outside && !by_export) || (is_closure_or_async_body(name) && made_at_start_up(name)) {
                stale.insert((readable(name), Unreached::StartUp));
                continue;
            }
            match redirectable(name, can_redirect) {
                Ok(()) => {
                    redirect.insert(name.clone());
                    if by_outside && outside.has_main && !from_rebuilds.contains(name) {
                        analysis.also_run_at_start_up.push(readable(name));
                    }
                }
                // Its creators must run new code instead.
                Err(NotRedirected::ThroughCreators) => queue.extend(running.nodes_of(&[name.as_str()]).into_iter().map(|n| (n, written_in(name)))),
                Err(NotRedirected::Cannot(why)) => {
                    stale.insert((readable(name), Unreached::NotRedirectable { why }));
                }
            }
        }
        // Up from each function that takes effect through its creators, through what refers to
        // it (its callers, the vtables that hold it and the code that builds them), to
        // functions that are redirected, or to export entries, which the patch switches. A
        // creator that cannot be redirected would keep creating the old one: restart. A
        // creator in a hot crate the patch does not compile must be compiled: it joins.
        //
        // Up from a closure or an `async` body, only the function it is written in may be
        // redirected: any other code that refers to it is generic over its type (a handler's
        // `<F as Handler>::call`, a future's poll shim), and old values of that type (a closure
        // an old router holds, with its captures; a suspended future, with its state) would
        // run the new code through it. Those are walked through, like closures, to the
        // function the closure is written in, and what old values exist keep their old code.
        let mut walked: HashSet<(Node, bool)> = HashSet::new();
        while let Some((node, from_closure_of)) = queue.pop_front() {
            if !walked.insert((node, from_closure_of.is_some())) {
                continue;
            }
            let function = running.function_at(node).map(str::to_string);
            if root_nodes.contains(&node) {
                let name = function.clone().unwrap_or_else(|| running.globals_at(node).first().map(|n| n.to_string()).unwrap_or_default());
                stale.insert((readable(&name), Unreached::CalledByHost));
                continue;
            }
            for referrer in running.referrers(node) {
                if running.is_entry(*referrer) || walked.contains(&(*referrer, from_closure_of.is_some())) {
                    continue;
                }
                if !scope.span.contains(&running.owner(*referrer)) {
                    analysis.needs.insert(running.owner(*referrer));
                    continue;
                }
                let Some(caller) = running.function_at(*referrer) else {
                    queue.push_back((*referrer, from_closure_of.clone())); // data: a vtable, a table of function pointers
                    continue;
                };
                if let Some(item) = &from_closure_of {
                    if !is_closure_or_async_body(caller) && strip_generic_arguments(&readable(caller)) != *item {
                        queue.push_back((*referrer, from_closure_of.clone()));
                        continue;
                    }
                }
                match redirectable(caller, can_redirect) {
                    // A creator that only start-up or the host's own code runs would not create
                    // the new one: what it created is kept (a build closure handed to the runtime
                    // by `main`, say).
                    Ok(()) if from_outside.contains(caller) && !from_exports.contains(caller) => {
                        stale.insert((readable(caller), Unreached::StartUp));
                    }
                    Ok(()) if new.defines(caller) => {
                        redirect.insert(caller.to_string());
                    }
                    Ok(()) => {
                        let why = "the new code no longer has it, and code built before the patch may still call it".to_string();
                        stale.insert((readable(caller), Unreached::NotRedirectable { why }));
                    }
                    Err(NotRedirected::ThroughCreators) => queue.push_back((*referrer, written_in(caller))),
                    Err(NotRedirected::Cannot(why)) => {
                        stale.insert((readable(caller), Unreached::NotRedirectable { why }));
                    }
                }
            }
        }
        analysis.redirect = redirect.into_iter().collect();
    }
    let moved = codediff::moved_locations(&old_code, &new, &diff);
    analysis.carried = crate::thin::carried(&new, &diff, &moved, &analysis.redirect).into_iter().collect();
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
pub fn belongs_to(item: &str, crate_name: &str) -> bool {
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
    }

    #[test]
    fn only_the_closures_the_runtime_registers_are_rebuilt() {
        assert!(rebuilt_by_the_runtime("hot::axum::router::{{closure}}"));
        assert!(rebuilt_by_the_runtime("hot::value::Hot<T>::create::{{closure}}"));
        assert!(rebuilt_by_the_runtime("<hot::value::Hot<axum::routing::Router>>::create::<core::convert::Infallible, _>::{closure#0}"));
        assert!(rebuilt_by_the_runtime("hot::scope::scope::{{closure}}::{{closure}}"));
        assert!(!rebuilt_by_the_runtime("hot::axum::router"), "ran once, at start-up");
        assert!(!rebuilt_by_the_runtime("hot::value::Hot<T>::create"));
        assert!(!rebuilt_by_the_runtime("hot::value::Hot<T>::get"));
        assert!(!rebuilt_by_the_runtime("<hot::value::Hot<T> as core::clone::Clone>::clone"));
        assert!(!rebuilt_by_the_runtime("hot::axum::router_of_mine::{{closure}}"));
        assert!(!is_closure_or_async_body("_ZN3web5index17h0123456789abcdefE"));
    }
}
