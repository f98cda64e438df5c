//! The layout comparison on real rustc output: each case compiles a crate `logic` twice (as
//! the running program had it and as edited) with full debug info, reads the layouts from the
//! objects' DWARF, and checks which types changed and whether the old values can meet new code.

use std::path::Path;
use std::process::Command;

use cargo_hot::layout::{self, dwarf, TypeFacts};
use cargo_hot::patch::ObjectFile;

fn compile(dir: &Path, name: &str, source: &str) -> TypeFacts {
    let src = dir.join(format!("{name}.rs"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(format!("{name}.o"));
    let status = Command::new("rustc")
        .args(["--crate-type", "lib", "--crate-name", "logic", "--edition", "2021", "-C", "debuginfo=2", "-C", "codegen-units=1", "--emit=obj", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("rustc runs");
    assert!(status.success(), "{source}");
    let object = ObjectFile { name: format!("{name}.o"), data: std::fs::read(&out).unwrap() };
    dwarf::read_objects(&[object], "logic").unwrap()
}

/// The types whose layout changed between `before` and `after`, and whether they are held.
fn compare(before: &str, after: &str) -> (Vec<String>, Result<(), layout::HeldLayout>, TypeFacts) {
    let dir = tempfile::tempdir().unwrap();
    let old = compile(dir.path(), "old", before);
    let new = compile(dir.path(), "new", after);
    let changed = layout::changed_layouts(&old, &new);
    let held = layout::check(&old, &changed, &[]);
    (changed, held, old)
}

#[test]
fn a_const_sizing_an_array_field_changes_the_holding_struct() {
    let source = |n: usize| {
        format!(
            "mod sizes {{ pub const SLOTS: usize = {n}; }}
             pub struct Ring {{ pub slots: [u64; sizes::SLOTS], pub sentinel: u64 }}
             pub static RING: std::sync::Mutex<Option<Ring>> = std::sync::Mutex::new(None);
             pub fn fill() -> u64 {{ let r = Ring {{ slots: [0; sizes::SLOTS], sentinel: 7 }}; let s = r.sentinel; *RING.lock().unwrap() = Some(r); s }}"
        )
    };
    let (changed, held, _) = compare(&source(4), &source(8));
    assert!(changed.contains(&"logic::Ring".to_string()), "{changed:?}");
    let held = held.unwrap_err();
    assert_eq!(held.type_name, "logic::Ring");
    assert!(matches!(held.place, layout::Place::Static { ref name } if name == "logic::RING"), "{held:?}");
}

#[test]
fn a_static_whose_compiled_type_changed_is_named() {
    let source = |ty: &str| format!("pub type Count = {ty};\npub static HITS: std::sync::Mutex<Count> = std::sync::Mutex::new(0);\npub fn hit() {{ *HITS.lock().unwrap() += 1; }}");
    let dir = tempfile::tempdir().unwrap();
    let old = compile(dir.path(), "old", &source("u16"));
    let new = compile(dir.path(), "new", &source("u64"));
    let (path, was, now) = layout::changed_static(&old, &new).expect("the alias changed the static's type");
    assert_eq!(path, "logic::HITS");
    assert!(was.contains("u16") && now.contains("u64"), "{was} → {now}");
    assert_eq!(layout::changed_static(&old, &compile(dir.path(), "same", &source("u16"))), None);
}

#[test]
fn an_alias_re_pointed_to_a_wider_type_changes_the_layout() {
    let source = |ty: &str| {
        format!(
            "pub type Count = {ty};
             pub struct Stats {{ pub hits: Count, pub sentinel: u32 }}
             pub fn make() -> Stats {{ Stats {{ hits: 1, sentinel: 2 }} }}"
        )
    };
    let (changed, _, _) = compare(&source("u16"), &source("u64"));
    assert_eq!(changed, vec!["logic::Stats".to_string()]);
    let (unchanged, _, _) = compare(&source("u16"), &source("u16"));
    assert!(unchanged.is_empty(), "{unchanged:?}");
}

#[test]
fn an_associated_type_changed_in_an_impl_changes_the_layout() {
    let source = |ty: &str| {
        format!(
            "pub trait Store {{ type Key; }}
             pub struct Disk;
             impl Store for Disk {{ type Key = {ty}; }}
             pub struct Entry<S: Store> {{ pub key: S::Key, pub sentinel: u8 }}
             pub fn make() -> Entry<Disk> {{ Entry {{ key: Default::default(), sentinel: 1 }} }}"
        )
    };
    let (changed, _, _) = compare(&source("u8"), &source("u128"));
    assert_eq!(changed, vec!["logic::Entry<logic::Disk>".to_string()]);
}

#[test]
fn an_enum_niche_and_discriminants_are_compared() {
    // Same size and alignment both times; what tells the variants apart moved.
    let niche = |fields: &str| {
        format!(
            "#[repr(C)] pub struct Inner({fields});
             pub enum State {{ Idle, Busy(Inner) }}
             pub static HELD: std::sync::Mutex<Option<State>> = std::sync::Mutex::new(None);
             pub fn make() -> Option<State> {{ HELD.lock().unwrap().take() }}"
        )
    };
    let (changed, held, _) = compare(&niche("u32, std::num::NonZeroU32"), &niche("std::num::NonZeroU32, u32"));
    assert!(changed.contains(&"logic::State".to_string()), "the niche moved to another field: {changed:?}");
    assert_eq!(held.unwrap_err().type_name, "logic::State", "named by the boundary's own type, not the Option around it");

    let tagged = |variants: &str| {
        format!("pub enum State {{ {variants} }} pub fn make(s: State) -> u8 {{ match s {{ State::Idle => 1, State::Busy(n) => n, _ => 0 }} }}")
    };
    let (changed, _, _) = compare(&tagged("Idle, Busy(u8)"), &tagged("Busy(u8), Idle"));
    assert!(changed.contains(&"logic::State".to_string()), "variants renumbered: {changed:?}");
    let (changed, _, _) = compare(&tagged("Idle, Busy(u8)"), &tagged("Idle, Busy(u8), Done"));
    assert!(changed.contains(&"logic::State".to_string()), "a variant added: {changed:?}");
}

#[test]
fn a_generic_instance_is_compared_per_instance() {
    let source = |ty: &str| {
        format!(
            "pub struct Pair<T> {{ pub a: T, pub b: {ty} }}
             pub fn make() -> (Pair<u8>, Pair<u64>) {{ (Pair {{ a: 1, b: 2 }}, Pair {{ a: 3, b: 4 }}) }}"
        )
    };
    let (changed, _, _) = compare(&source("u8"), &source("u32"));
    assert!(changed.contains(&"logic::Pair<u8>".to_string()) && changed.contains(&"logic::Pair<u64>".to_string()), "{changed:?}");
}

#[test]
fn a_function_local_type_in_a_function_local_static_is_held() {
    let source = |ty: &str| {
        format!(
            "pub fn count() -> u64 {{
                 struct Tally {{ pub n: {ty}, pub sentinel: u64 }}
                 static TALLY: std::sync::Mutex<Tally> = std::sync::Mutex::new(Tally {{ n: 0, sentinel: 9 }});
                 let mut t = TALLY.lock().unwrap(); t.n += 1; t.n as u64 + t.sentinel
             }}"
        )
    };
    let (changed, held, _) = compare(&source("u8"), &source("u64"));
    assert!(changed.contains(&"logic::count::Tally".to_string()), "{changed:?}");
    let held = held.unwrap_err();
    assert!(matches!(held.place, layout::Place::Static { ref name } if name.contains("TALLY")), "{held:?}");
}

#[test]
fn a_function_local_type_behind_dyn_any_is_held() {
    let source = |ty: &str| {
        format!(
            "pub fn make() -> Box<dyn std::any::Any + Send> {{
                 struct Local {{ pub n: {ty}, pub sentinel: u64 }}
                 Box::new(Local {{ n: 1, sentinel: 2 }})
             }}"
        )
    };
    let (changed, held, _) = compare(&source("u8"), &source("u32"));
    assert!(changed.contains(&"logic::make::Local".to_string()), "{changed:?}");
    assert!(matches!(held.unwrap_err().place, layout::Place::TraitObject { ref trait_name } if trait_name == "core::any::Any"));
}

#[test]
fn a_request_local_dto_changed_is_not_held() {
    let source = |fields: &str| {
        format!(
            "pub struct Dto {{ {fields} }}
             #[inline(never)] fn parse(n: u32) -> Dto {{ Dto {{ id: n, ..Default::default() }} }}
             impl Default for Dto {{ fn default() -> Self {{ unsafe {{ std::mem::zeroed() }} }} }}
             pub fn handle(n: u32) -> String {{ let dto = parse(n); format!(\"{{}}\", dto.id) }}"
        )
    };
    let (changed, held, _) = compare(&source("pub id: u32"), &source("pub id: u32, pub name: u64"));
    assert!(changed.contains(&"logic::Dto".to_string()), "{changed:?}");
    assert_eq!(held, Ok(()), "built and dropped inside one call");
}
