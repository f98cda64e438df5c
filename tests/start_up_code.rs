//! Which edits of a binary only start-up code would see, decided from real rustc output: a
//! small binary with an export (reached from `main` through a slot, as `#[hot::export]`
//! generates it) is compiled before and after each edit, and the two are compared.

use std::path::Path;
use std::process::Command;

use cargo_hot::patch::reach::{changes, Changes};
use cargo_hot::patch::ObjectFile;

/// The skeleton every case edits: `main` reads a setting and calls the export through a slot.
const BASE: &str = r#"
use std::sync::atomic::{AtomicUsize, Ordering};

mod config {
    pub static PORT: u16 = 3000;
}

struct Settings { host: &'static str, port: u32, workers: u32 }
static SETTINGS: Settings = Settings { host: "localhost", port: 8080, workers: 4 };

fn shared_helper() -> u32 { 7 }

#[unsafe(export_name = "__hot_entry_probe::handler::h1")]
#[inline(never)]
fn handler_entry() -> u32 { shared_helper() + 1 }

static SLOT: AtomicUsize = AtomicUsize::new(0);

#[inline(never)]
fn handler() -> u32 {
    let slot = SLOT.load(Ordering::Acquire);
    let f: fn() -> u32 = if slot == 0 { handler_entry } else { unsafe { std::mem::transmute(slot) } };
    f()
}

fn main() {
    let v: Vec<u32> = vec![1, 2, 3];
    println!("listening on {} {} {} {}", config::PORT, SETTINGS.port, shared_helper(), v[2]);
    println!("{} {} {}", handler(), SETTINGS.host, SETTINGS.workers);
}
"#;

/// Compiles `source` as the binary `probe`, one codegen unit, as a debug build would.
fn objects(dir: &Path, name: &str, source: &str) -> Vec<ObjectFile> {
    let file = dir.join(format!("{name}.rs"));
    std::fs::write(&file, source).unwrap();
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    // Both versions compile from the same path, as an edited file does.
    std::fs::copy(&file, dir.join("main.rs")).unwrap();
    let status = Command::new(rustc)
        .args(["--edition", "2021", "--crate-type", "bin", "--crate-name", "probe", "-C", "opt-level=0", "-C", "debuginfo=2"])
        .args(["-C", "codegen-units=1", "--emit", "obj", "-o"])
        .arg(out.join("probe.o"))
        .arg(dir.join("main.rs"))
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success());
    vec![ObjectFile { name: "probe.o".into(), data: std::fs::read(out.join("probe.o")).unwrap() }]
}

fn compare(edit: impl Fn(&str) -> String) -> Changes {
    let dir = tempfile::tempdir().unwrap();
    let old = objects(dir.path(), "old", BASE);
    let new = objects(dir.path(), "new", &edit(BASE));
    changes(&old, &new).unwrap()
}

#[test]
fn an_edit_the_exports_run_is_a_patch() {
    let found = compare(|s| s.replace("fn handler_entry() -> u32 { shared_helper() + 1 }", "fn handler_entry() -> u32 { shared_helper() + 2 }"));
    assert_eq!(found, Changes::default());
}

#[test]
fn main_s_own_code_its_statics_and_its_constants_are_start_up_code() {
    let found = compare(|s| s.replace("listening on", "serving on"));
    assert_eq!(found.start_up_only, ["probe::main"]);
    // A static read by name, only by main.
    let found = compare(|s| s.replace("PORT: u16 = 3000", "PORT: u16 = 4000"));
    assert_eq!(found.start_up_only, ["probe::main"], "{found:?}");
    // A 24-byte constant shaped like a panic location (a &str and two u32) is still content.
    let found = compare(|s| s.replace("port: 8080", "port: 9090"));
    assert_eq!(found.start_up_only, ["probe::main"], "{found:?}");
}

#[test]
fn lines_shifting_below_an_edit_do_not_make_main_look_changed() {
    // `v[2]` and `vec!` carry panic locations (file, line, column) that move down a line.
    let found = compare(|s| s.replace("fn shared_helper() -> u32 { 7 }", "// a new comment line\nfn shared_helper() -> u32 { 7 }"));
    assert_eq!(found, Changes::default());
}

#[test]
fn code_both_main_and_an_export_reach_is_said_to_have_run_old_at_start_up() {
    let found = compare(|s| s.replace("fn shared_helper() -> u32 { 7 }", "fn shared_helper() -> u32 { 8 }"));
    assert!(found.start_up_only.is_empty(), "the export runs it: a patch brings it in: {found:?}");
    assert_eq!(found.also_run_at_start_up, ["probe::shared_helper"]);
}

#[test]
fn with_a_global_allocator_the_crate_s_own_object_is_kept() {
    // rustc puts the allocator functions beside `main` then: dropping that object as if it
    // were the allocator shim would drop the crate's own code from the patch.
    let dir = tempfile::tempdir().unwrap();
    let source = format!("#[global_allocator]\nstatic GLOBAL: std::alloc::System = std::alloc::System;\n{BASE}");
    let kept = objects(dir.path(), "alloc", &source);
    let objects_dir = dir.path().join("alloc");
    let read = cargo_hot::patch::ObjectSource::Dir(objects_dir).read().unwrap();
    assert_eq!(read.len(), kept.len(), "the object defining main and __rust_alloc stays");
}
