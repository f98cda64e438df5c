//! Thin patches (see `src/thin.rs`), on real rustc output: a small crate is compiled before
//! and after an edit, the patch's carried functions are decided from the compiled code, the
//! left-out ones become jumps to the running program's copies, and the patch is linked.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use cargo_hot::codediff::Code;
use cargo_hot::linker::LinkRecord;
use cargo_hot::patch::bind::Homes;
use cargo_hot::patch::reach::{analyse, Analysis, Outside, Scope};
use cargo_hot::patch::{self, ObjectFile, PatchLinker};
use object::{Object, ObjectSection, ObjectSymbol};

/// A library crate as a hot crate is: an export entry (switched through its slot), functions
/// it calls, a closure it hands out, a function with a panic location.
const BASE: &str = r#"
pub fn changed() -> u32 { 1 }

#[inline(never)]
pub fn unchanged(x: u32) -> u32 {
    let mut total = 0;
    for i in 0..x { total += i * 3 + 1; }
    total
}

#[unsafe(export_name = "__hot_entry_probe::route::h1")]
pub fn route_entry(x: u32) -> u32 { changed() + unchanged(x) }

#[unsafe(export_name = "__hot_entry_probe::greeter::h2")]
pub fn greeter_entry() -> Box<dyn Fn() -> String> { Box::new(|| "hello v1".to_string()) }

pub fn pick(values: &[u32], i: usize) -> u32 { values[i] }
"#;

fn objects(dir: &Path, name: &str, source: &str) -> Vec<ObjectFile> {
    std::fs::write(dir.join("lib.rs"), source).unwrap();
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .args(["--edition", "2021", "--crate-type", "lib", "--crate-name", "probe", "-C", "opt-level=0", "-C", "debuginfo=line-tables-only"])
        .args(["-C", "codegen-units=1", "-C", "relocation-model=pic", "--emit", "obj", "-o"])
        .arg(out.join("probe.o"))
        .arg(dir.join("lib.rs"))
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success());
    vec![ObjectFile { name: "probe.o".into(), data: std::fs::read(out.join("probe.o")).unwrap() }]
}

/// The analysis of an edit, every function redirectable but closures (as the session decides).
fn analysis(dir: &Path, edit: impl Fn(&str) -> String) -> (Vec<ObjectFile>, Analysis) {
    let old = objects(dir, "old", BASE);
    let new = objects(dir, "new", &edit(BASE));
    let old_parts = [(0, old.as_slice())];
    let running = Code::read_parts(&old_parts).unwrap();
    let span = BTreeSet::from([0]);
    let outside = Outside::default();
    let scope = Scope {
        running: &running,
        span: &span,
        span_crates: &["probe".to_string()],
        outside: &outside,
        can_redirect: &|_| Ok(()),
        body_changed: &|_| false,
        crate_of_item: &|item| item.starts_with("probe::").then_some(0),
    };
    let analysis = analyse(&old_parts, &[(0, new.as_slice())], &scope).unwrap();
    (new, analysis)
}

fn readable(names: &BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> = names.iter().map(|n| cargo_hot::patch::reach::readable(n)).collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn a_changed_function_is_carried_alone_when_its_old_copies_jump_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, analysis) = analysis(dir.path(), |s| s.replace("pub fn changed() -> u32 { 1 }", "pub fn changed() -> u32 { 2 }"));
    assert_eq!(readable(&analysis.carried), ["probe::changed"], "the entry and `unchanged` call it by name: their running copies reach the new code");
}

#[test]
fn a_changed_closure_is_carried_with_what_creates_it_up_to_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (_, analysis) = analysis(dir.path(), |s| s.replace("\"hello v1\"", "\"hello v2\""));
    let carried = readable(&analysis.carried);
    assert!(carried.iter().any(|n| n == "probe::greeter_entry"), "the entry that builds it is switched: {carried:?}");
    assert!(!carried.iter().any(|n| n.contains("unchanged") || n.contains("route_entry")), "{carried:?}");
}

#[test]
fn moved_panic_locations_are_carried_so_panics_name_the_new_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (_, analysis) = analysis(dir.path(), |s| s.replace("pub fn changed() -> u32 { 1 }", "pub fn changed() -> u32 {\n    1\n}"));
    assert!(analysis.diff.changed.is_empty(), "no code changed: {:?}", analysis.diff.changed);
    assert!(readable(&analysis.carried).iter().any(|n| n == "probe::pick"), "{:?}", readable(&analysis.carried));
}

#[test]
fn left_out_functions_become_jumps_to_the_running_copies_and_the_patch_links_small() {
    let dir = tempfile::tempdir().unwrap();
    let (new, analysis) = analysis(dir.path(), |s| s.replace("pub fn changed() -> u32 { 1 }", "pub fn changed() -> u32 { 2 }"));
    let carried: std::collections::HashSet<String> = analysis.carried.iter().cloned().collect();
    let running_at = 0x7f00_1234_5000u64;
    let mut stubbed = new[0].data.clone();
    let left_out = cargo_hot::thin::stub_object(&mut stubbed, &carried, &|_| Some(running_at)).unwrap();
    assert!(left_out.functions >= 3, "{left_out:?}");

    let file = object::File::parse(&*stubbed).unwrap();
    let section_of = |wanted: &str| {
        let symbol = file.symbols().find(|s| cargo_hot::patch::reach::readable(s.name().unwrap()) == wanted).unwrap();
        file.section_by_index(symbol.section_index().unwrap()).unwrap()
    };
    let unchanged = section_of("probe::unchanged");
    let mut jump = vec![0xff, 0x25, 0, 0, 0, 0];
    jump.extend_from_slice(&running_at.to_le_bytes());
    assert_eq!(&unchanged.data().unwrap()[..14], jump.as_slice(), "`jmp *0(%rip)` to the running copy");
    assert_eq!(unchanged.size(), 16);
    assert_eq!(unchanged.relocations().count(), 0);
    let changed = section_of("probe::changed");
    let object::SectionFlags::Elf { sh_flags } = changed.flags() else { panic!() };
    assert!(sh_flags & u64::from(object::elf::SHF_GNU_RETAIN) != 0, "kept by the link's garbage collection");

    // Linked, with the left-out code dropped: smaller than the whole crate.
    let linker = PatchLinker::find(&LinkRecord::default(), Path::new(&std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())));
    let link = |objects: Vec<ObjectFile>, gc: bool, name: &str| {
        let output = dir.path().join(name);
        patch::link(objects, &linker, &dir.path().join(format!("work-{name}")), &output, &Homes::default(), gc).unwrap().unwrap();
        let data = std::fs::read(&output).unwrap();
        let file = object::File::parse(&*data).unwrap();
        file.sections().filter(|s| s.name() == Ok(".text")).map(|s| s.size()).sum::<u64>()
    };
    let whole = link(new.clone(), false, "whole.so");
    let thin = link(vec![ObjectFile { name: "probe.o".into(), data: stubbed }], true, "thin.so");
    assert!(thin * 2 < whole, "the thin patch's code ({thin} bytes) is much smaller than the whole crate's ({whole} bytes)");
}
