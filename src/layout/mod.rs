//! The layouts of the boundary's types as the compiler laid them out, and where the running
//! program may hold values of them: the proof that a patch's new code never reads memory laid
//! out by the old code (or the reverse).
//!
//! A source diff cannot give that proof: a `const` sizing an array field, a `pub use` alias
//! re-pointed, an associated type, a type inside a function all change a layout without
//! changing a `struct`. So the layouts come from the DWARF rustc wrote: cargo's dev build of
//! the host for the running program, a full-debug-info compile of the new code for the patch
//! (see [`dwarf`]). A type whose layout changed is safe to patch only when no value of it made
//! by one version can reach the other version's code. Values cross between the two only
//! through:
//! - an export's arguments and result (old callers call the new entry);
//! - a redirected function's arguments and result (old callers jump into new code);
//! - statics and thread-locals (a patch uses the running program's copies);
//! - code that is not patched: the host crate and the other crates that use the boundary's
//!   types (their compile units mention the type);
//! - a trait object the new code can downcast (`dyn Any`, `dyn Error`) whose vtable the
//!   running program has for the type.
//!
//! Everything else lives and dies inside one version: a request's DTO, a query struct, an
//! error type built and dropped by the handler, the state of an in-flight request's future
//! (old futures are polled by old code; their functions are never redirected). A type whose
//! values can cross restarts, naming the type and where it is held; when the facts are not
//! there (a host built without debug info), every changed definition restarts.

pub mod dwarf;
pub mod skeleton;

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What the compiled program says about the boundary's types.
#[derive(Debug, Clone, Default)]
pub struct TypeFacts {
    /// The layout of every type whose path mentions the crate (its own types, and generic
    /// types instantiated with them), as [`dwarf`] describes it.
    pub layouts: BTreeMap<String, String>,
    /// Type → the types of its fields that mention the crate.
    pub members: BTreeMap<String, BTreeSet<String>>,
    /// Types that code outside the boundary uses.
    pub outside: BTreeSet<String>,
    /// Statics, exports and vtables whose types mention the crate.
    pub holders: Vec<Holder>,
    /// Function (linkage name) → the types of its arguments and result that mention the crate.
    pub signatures: HashMap<String, Vec<String>>,
    /// Function (linkage name) → its compiled signature (every argument's type and the
    /// result's): an alias can change it while its text stays the same.
    pub compiled_signatures: HashMap<String, String>,
    /// A patch (its file name) compiled without type information that brought a new
    /// downcastable vtable: some value of an unknown type may be behind `dyn Any`.
    pub unknown_downcasts: Option<String>,
    /// Static (path) → its compiled type: an alias or a const can change it while its text
    /// stays, and the patch uses the running program's copy.
    pub static_types: BTreeMap<String, String>,
    /// Types whose layout a loaded patch changed: old values of the earlier layout may still
    /// be held by old code, and must never reach a function redirected later.
    pub changed_ever: BTreeSet<String>,
    /// The layouts are known but not where the program holds values (why): the host was
    /// built without debug info of its types, and the layouts come from a compile of the
    /// unchanged crate. Every changed layout then restarts.
    pub holders_unknown: Option<String>,
}

/// A place where a value made by one version of the code can meet the other version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The type the place holds (it may hold others inside it).
    pub mentions: String,
    pub place: Place,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "held", rename_all = "kebab-case")]
pub enum Place {
    /// A static or thread-local (the patch uses the running program's copy).
    Static { name: String },
    /// An export's argument or result.
    Export { name: String },
    /// The running program has a vtable for the type as this trait.
    TraitObject { trait_name: String },
    /// Code that is not patched uses the type.
    Outside,
    /// A patch compiled without type information made a downcastable vtable of some type.
    UnknownDowncast { patch: String },
    /// Where values are held cannot be read (why).
    Unknown { why: String },
    /// A function the patch redirects takes or returns it.
    Redirected { function: String },
}

/// A changed layout whose old values can meet new code (or the reverse).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HeldLayout {
    /// The type whose layout changed.
    pub type_name: String,
    /// The type the place holds, when it is not the changed type itself.
    pub inside: Option<String>,
    pub place: Place,
}

/// Traits whose objects new code can turn back into the concrete type (and read its fields).
const DOWNCASTABLE: &[&str] = &["core::any::Any", "core::error::Error", "std::error::Error"];

impl TypeFacts {
    /// Adds what a loaded patch brought: its layouts become the running ones, its statics,
    /// exports and vtables hold values too.
    pub fn absorb(&mut self, patch: TypeFacts) {
        self.layouts.extend(patch.layouts);
        for (name, members) in patch.members {
            self.members.insert(name, members);
        }
        for holder in patch.holders {
            if !self.holders.contains(&holder) {
                self.holders.push(holder);
            }
        }
        self.signatures.extend(patch.signatures);
        self.compiled_signatures.extend(patch.compiled_signatures);
        for (name, ty) in patch.static_types {
            self.static_types.entry(name).or_insert(ty);
        }
        self.outside.extend(patch.outside);
        if self.unknown_downcasts.is_none() {
            self.unknown_downcasts = patch.unknown_downcasts;
        }
    }

    #[cfg(test)]
    fn add_trait_object(&mut self, type_name: String, trait_name: String) {
        self.holders.push(Holder { mentions: type_name, place: Place::TraitObject { trait_name } });
    }
}

/// The types whose layout differs between the running program and the new code, leaving out
/// closures' and coroutines' states (each version's own code runs them: see the module docs).
pub fn changed_layouts(running: &TypeFacts, new: &TypeFacts) -> Vec<String> {
    new.layouts
        .iter()
        .filter(|(name, layout)| !is_code_state(name) && running.layouts.get(*name).is_some_and(|old| old != *layout))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Whether values of the `changed` types can meet the other version's code; `redirected` are
/// the functions (linkage names) the patch redirects.
pub fn check(running: &TypeFacts, changed: &[String], redirected: &[String]) -> Result<(), HeldLayout> {
    if changed.is_empty() && (running.changed_ever.is_empty() || redirected.is_empty()) {
        return Ok(());
    }
    // A type that contains or points to a changed type carries its values too.
    // A changed generic type around a changed type (`Option<logic::Ring>`) is named by the
    // type inside it.
    let origin_of = |c: &String| changed.iter().filter(|o| mentions_type(c, o)).min_by_key(|o| o.len()).unwrap_or(c).clone();
    let mut carriers: BTreeMap<String, String> = changed.iter().map(|c| (c.clone(), origin_of(c))).collect();
    loop {
        let before = carriers.len();
        for (container, members) in &running.members {
            if carriers.contains_key(container) || is_code_state(container) {
                continue;
            }
            if let Some(origin) = members.iter().find_map(|m| carriers.iter().find(|(c, _)| mentions_type(m, c)).map(|(_, o)| o.clone())) {
                carriers.insert(container.clone(), origin);
            }
        }
        if carriers.len() == before {
            break;
        }
    }
    // The innermost carrier names it best: `Mutex<Option<logic::Ring>>` holds `logic::Ring`.
    let carried = |ty: &str| carriers.iter().filter(|(c, _)| mentions_type(ty, c)).min_by_key(|(c, _)| c.len()).map(|(c, origin)| (c.clone(), origin.clone()));
    let held =
        |ty: &str, place: Place| carried(ty).map(|(inside, origin)| HeldLayout { inside: (inside != origin).then_some(inside), type_name: origin, place });
    for holder in running.holders.iter().filter(|_| !changed.is_empty()) {
        if let Place::TraitObject { trait_name } = &holder.place {
            if !DOWNCASTABLE.iter().any(|t| trait_name.starts_with(t)) {
                continue;
            }
        }
        if let Some(found) = held(&holder.mentions, holder.place.clone()) {
            return Err(found);
        }
    }
    if let Some(why) = running.holders_unknown.as_ref().filter(|_| !changed.is_empty()) {
        let type_name = changed.iter().min_by_key(|c| c.len()).cloned().unwrap_or_default();
        return Err(HeldLayout { type_name, inside: None, place: Place::Unknown { why: why.clone() } });
    }
    if let Some(patch) = running.unknown_downcasts.as_ref().filter(|_| !changed.is_empty()) {
        let type_name = changed.iter().min_by_key(|c| c.len()).cloned().unwrap_or_default();
        return Err(HeldLayout { type_name, inside: None, place: Place::UnknownDowncast { patch: patch.clone() } });
    }
    for ty in running.outside.iter().filter(|_| !changed.is_empty()) {
        if let Some(found) = held(ty, Place::Outside) {
            return Err(found);
        }
    }
    // Old code may still hold values of a layout an earlier patch changed.
    for old in &running.changed_ever {
        carriers.entry(old.clone()).or_insert_with(|| old.clone());
    }
    let held = |ty: &str, place: Place| {
        carriers.iter().filter(|(c, _)| mentions_type(ty, c)).min_by_key(|(c, _)| c.len()).map(|(c, origin)| HeldLayout {
            inside: (c != origin).then(|| c.clone()),
            type_name: origin.clone(),
            place,
        })
    };
    for function in redirected {
        for ty in running.signatures.get(function).into_iter().flatten() {
            if let Some(found) = held(ty, Place::Redirected { function: crate::patch::reach::readable(function) }) {
                return Err(found);
            }
        }
    }
    Ok(())
}

/// Why new layouts cannot meet the running program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incompatible {
    /// A redirected function's compiled signature changed (its linkage name, was, now).
    Signature { function: String, was: String, now: String },
    /// A static's compiled type changed (its path, was, now).
    Static { path: String, was: String, now: String },
    /// A changed layout whose old values can meet the new code.
    Held(HeldLayout),
}

/// Judges the `new` layouts of a crate's types against the `running` ones: the types whose
/// layout changed, when no old value of them can meet the new code.
pub fn judge(running: &TypeFacts, new: &TypeFacts, redirected: &[String]) -> Result<Vec<String>, Incompatible> {
    if let Some((function, was, now)) = changed_signature(running, new, redirected) {
        return Err(Incompatible::Signature { function, was, now });
    }
    if let Some((path, was, now)) = changed_static(running, new) {
        return Err(Incompatible::Static { path, was, now });
    }
    let changed = changed_layouts(running, new);
    check(running, &changed, redirected).map_err(Incompatible::Held)?;
    Ok(changed)
}

/// The first redirected function (linkage name) whose compiled signature differs between
/// the running program and the new code, with both: an old caller would pass arguments the
/// new body reads as other types.
pub fn changed_signature(running: &TypeFacts, new: &TypeFacts, redirected: &[String]) -> Option<(String, String, String)> {
    redirected.iter().find_map(|function| {
        let (old, new) = (running.compiled_signatures.get(function)?, new.compiled_signatures.get(function)?);
        (old != new).then(|| (function.clone(), old.clone(), new.clone()))
    })
}

/// The first static (its path) whose compiled type differs between the running program and
/// the new code, with both types.
pub fn changed_static(running: &TypeFacts, new: &TypeFacts) -> Option<(String, String, String)> {
    // Macros' own statics (an export's `__HOT_SLOT`, judged with its export) are not the
    // source's.
    let own = |name: &&String| !name.rsplit("::").next().unwrap_or_default().starts_with("__");
    new.static_types.iter().filter(|(name, _)| own(name)).find_map(|(name, now)| {
        let was = running.static_types.get(name)?;
        (was != now).then(|| (name.clone(), was.clone(), now.clone()))
    })
}

/// The state of a closure or a coroutine (an `async` body): laid out by its body.
pub fn is_code_state(name: &str) -> bool {
    ["{closure_env#", "{async_fn_env#", "{async_block_env#", "{coroutine_env#", "{async_gen"].iter().any(|marker| name.contains(marker))
}

fn is_path_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether a type path mentions an item of `crate_name` (`logic::Dto`, `Option<logic::Dto>`),
/// not a module of that name inside another crate (`hyper::logic::X`).
pub fn mentions(path: &str, crate_name: &str) -> bool {
    let needle = format!("{crate_name}::");
    path.match_indices(&needle).any(|(at, _)| at == 0 || !path[..at].ends_with(|c: char| is_path_char(c) || c == ':'))
}

/// Whether `path` mentions the type `ty` itself (or an item nested in it), not another type
/// whose name starts the same way (`logic::Dto2`).
pub fn mentions_type(path: &str, ty: &str) -> bool {
    path.match_indices(ty).any(|(at, _)| {
        let before_ok = at == 0 || !path[..at].ends_with(|c: char| is_path_char(c) || c == ':');
        let after_ok = !path[at + ty.len()..].starts_with(is_path_char);
        before_ok && after_ok
    })
}

/// The instances of `<T as Any>::type_id` (and of `Error`'s methods) among symbol names: a
/// vtable of `dyn Any` or `dyn Error` points at one. Their legacy-mangled names do not say
/// which `T` (only their hash differs), so a patch compiled without type information that
/// brings a new one may have put a value of any type behind a downcastable trait object.
pub fn downcast_instances<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    names
        .into_iter()
        .filter(|name| {
            let demangled = format!("{:#}", rustc_demangle::demangle(name));
            demangled.starts_with('<') && DOWNCASTABLE.iter().any(|t| demangled.contains(&format!(" as {t}>::")))
        })
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_respects_path_boundaries() {
        assert!(mentions("logic::Dto", "logic"));
        assert!(mentions("core::option::Option<logic::Dto>", "logic"));
        assert!(!mentions("hyper::logic::Dto", "logic"));
        assert!(!mentions("mylogic::Dto", "logic"));
        assert!(mentions_type("alloc::vec::Vec<logic::Dto>", "logic::Dto"));
        assert!(mentions_type("logic::Dto::Variant", "logic::Dto"));
        assert!(!mentions_type("logic::Dto2", "logic::Dto"));
        assert!(!mentions_type("other::logic::Dto", "logic::Dto"));
    }

    fn facts(layouts: &[(&str, &str)]) -> TypeFacts {
        TypeFacts { layouts: layouts.iter().map(|(n, l)| (n.to_string(), l.to_string())).collect(), ..Default::default() }
    }

    #[test]
    fn a_changed_type_no_one_holds_patches_and_a_held_one_names_its_holder() {
        let mut running = facts(&[("logic::Dto", "a"), ("logic::Kept", "k"), ("logic::f::{async_fn_env#0}", "s")]);
        let new = facts(&[("logic::Dto", "b"), ("logic::Kept", "k"), ("logic::f::{async_fn_env#0}", "t")]);
        let changed = changed_layouts(&running, &new);
        assert_eq!(changed, vec!["logic::Dto".to_string()], "a coroutine's state is its code's, never compared");
        assert_eq!(check(&running, &changed, &[]), Ok(()));

        running.members.insert("logic::Store".into(), ["alloc::vec::Vec<logic::Dto>".to_string()].into());
        running.holders.push(Holder { mentions: "std::sync::Mutex<logic::Store>".into(), place: Place::Static { name: "logic::STORE".into() } });
        let held = check(&running, &changed, &[]).unwrap_err();
        assert_eq!(held.type_name, "logic::Dto");
        assert_eq!(held.inside.as_deref(), Some("logic::Store"));
        assert_eq!(held.place, Place::Static { name: "logic::STORE".into() });
    }

    #[test]
    fn a_layout_an_earlier_patch_changed_never_reaches_a_function_redirected_later() {
        let mut running = facts(&[("logic::Job", "v1")]);
        running.changed_ever.insert("logic::Job".into());
        running.signatures.insert("_ZN5logic7process".into(), vec!["&logic::Job".into()]);
        assert_eq!(check(&running, &[], &[]), Ok(()));
        let held = check(&running, &[], &["_ZN5logic7process".to_string()]).unwrap_err();
        assert!(matches!(held.place, Place::Redirected { .. }) && held.type_name == "logic::Job", "{held:?}");
    }

    #[test]
    fn only_downcastable_trait_objects_hold_values_for_new_code() {
        let mut running = facts(&[("logic::Memory", "a")]);
        running.holders.push(Holder { mentions: "logic::Memory".into(), place: Place::TraitObject { trait_name: "logic::Describe".into() } });
        let changed = vec!["logic::Memory".to_string()];
        assert_eq!(check(&running, &changed, &[]), Ok(()), "old methods run on old values");
        running.signatures.insert("_ZN5logic8describe".into(), vec!["&logic::Memory".into()]);
        let held = check(&running, &changed, &["_ZN5logic8describe".to_string()]).unwrap_err();
        assert!(matches!(held.place, Place::Redirected { .. }), "{held:?}");
        running.add_trait_object("logic::Memory".into(), "core::any::Any".into());
        assert!(matches!(check(&running, &changed, &[]).unwrap_err().place, Place::TraitObject { .. }));
    }

    #[test]
    fn downcast_instances_are_read_from_symbol_names() {
        let any = "_ZN36_$LT$T$u20$as$u20$core..any..Any$GT$7type_id17h22e4b69427cb95e6E";
        let names = [any, "_ZN5tokio4time5sleep17h0123456789abcdefE"];
        assert_eq!(downcast_instances(names), [any.to_string()].into());
    }

    #[test]
    fn an_unknown_downcastable_type_holds_every_changed_layout() {
        let mut running = facts(&[("logic::Dto", "a")]);
        running.unknown_downcasts = Some("web-3.so".into());
        let held = check(&running, &["logic::Dto".to_string()], &[]).unwrap_err();
        assert!(matches!(held.place, Place::UnknownDowncast { ref patch } if patch == "web-3.so"), "{held:?}");
    }
}
