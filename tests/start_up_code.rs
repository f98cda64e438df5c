//! Which edits of a binary only start-up code would see, decided from real rustc output: a
//! small binary with an export (reached from `main` through a slot, as `#[hot::export]`
//! generates it) is compiled before and after each edit, and the two are compared.

use std::path::Path;
use std::process::Command;

use std::collections::BTreeSet;

use cargo_hot::codediff::Code;
use cargo_hot::patch::reach::{analyse, Analysis, CanRedirect, NotRedirected, Outside, Scope, Unreached};
use cargo_hot::patch::ObjectFile;

/// What an edit of the binary changed, by where the changed code runs.
#[derive(Debug, Default, PartialEq, Eq)]
struct Changes {
    /// Changed functions only start-up reaches: the edit must restart.
    start_up_only: Vec<String>,
    /// Changed functions that `main` and an export both reach.
    also_run_at_start_up: Vec<String>,
}

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

/// The analysis of an edit of `base`, every function redirectable.
fn analysis_of(base: &str, edit: impl Fn(&str) -> String) -> Analysis {
    analysis_with(base, edit, &|_| Ok(()))
}

fn analysis_with(base: &str, edit: impl Fn(&str) -> String, can_redirect: &CanRedirect) -> Analysis {
    let dir = tempfile::tempdir().unwrap();
    let old = objects(dir.path(), "old", base);
    let new = objects(dir.path(), "new", &edit(base));
    let outside = Outside { has_main: true, ..Outside::default() };
    // One hot crate, the binary itself: the whole program is the running code.
    let old_parts = [(0, old.as_slice())];
    let running = Code::read_parts(&old_parts).unwrap();
    let span = BTreeSet::from([0]);
    let scope = Scope {
        running: &running,
        span: &span,
        span_crates: &["probe".to_string()],
        outside: &outside,
        can_redirect,
        body_changed: &|_| false,
        crate_of_item: &|item| item.starts_with("probe::").then_some(0),
    };
    analyse(&old_parts, &[(0, new.as_slice())], &scope).unwrap()
}

fn compare(edit: impl Fn(&str) -> String) -> Changes {
    let analysis = analysis_of(BASE, edit);
    let start_up_only = analysis.stale.iter().filter(|s| s.why == Unreached::StartUp).map(|s| s.function.clone()).collect();
    Changes { start_up_only, also_run_at_start_up: analysis.also_run_at_start_up }
}

/// A store made once at start-up through an export and held behind `Box<dyn Store>`: its
/// methods are reached only through the vtable the old code built.
const HELD: &str = r#"
use std::sync::atomic::{AtomicUsize, Ordering};

trait Store { fn describe(&self) -> String; }
struct Memory { items: u32 }
impl Store for Memory {
    fn describe(&self) -> String { format!("memory v1 with {}", self.items) }
}

#[unsafe(export_name = "__hot_entry_probe::make_store::h1")]
#[inline(never)]
fn make_store_entry() -> Box<dyn Store> { Box::new(Memory { items: 3 }) }

#[unsafe(export_name = "__hot_entry_probe::handler::h2")]
#[inline(never)]
fn handler_entry() -> Box<dyn Fn() -> String> { Box::new(|| "closure v1".to_string()) }

static SLOT: AtomicUsize = AtomicUsize::new(0);

fn main() {
    let _ = SLOT.load(Ordering::Acquire);
    let store = make_store_entry();
    println!("{} {}", store.describe(), handler_entry()());
}
"#;

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
fn a_method_reached_through_a_vtable_built_before_the_patch_is_redirected() {
    let found = analysis_of(HELD, |s| s.replace("memory v1", "memory v2"));
    assert!(found.stale.is_empty(), "{found:?}");
    assert_eq!(found.redirect.len(), 1, "{found:?}");
    assert!(found.redirect[0].contains("describe"), "{found:?}");
}

#[test]
fn a_held_method_that_cannot_be_redirected_restarts_it_does_not_stop_at_the_export_that_built_it() {
    let cannot = |_: &str| Err(NotRedirected::Cannot("a signature changed".to_string()));
    let found = analysis_with(HELD, |s| s.replace("memory v1", "memory v2"), &cannot);
    assert!(found.redirect.is_empty(), "{found:?}");
    assert!(
        found.stale.iter().any(|s| s.function.contains("describe") && matches!(s.why, Unreached::NotRedirectable { .. })),
        "the vtable the host holds would keep the old method: {found:?}"
    );
}

#[test]
fn a_closure_is_never_redirected_its_creator_is() {
    let found = analysis_of(HELD, |s| s.replace("closure v1", "closure v2"));
    assert!(found.stale.is_empty(), "built by an export: {found:?}");
    assert!(found.redirect.iter().all(|name| !cargo_hot::patch::reach::is_closure_or_async_body(name)), "{found:?}");
    assert!(found.diff.changed.iter().any(|name| cargo_hot::patch::reach::is_closure_or_async_body(name)), "the closure changed: {found:?}");
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

/// A closure with captures, held by an old value behind a generic impl (as a router holds its
/// handlers: `<F as Handler>::call`).
const GENERIC_SHIM: &str = r#"
trait Handler { fn handle(&self) -> String; }
struct Holder<F>(F);
impl<F: Fn() -> String> Handler for Holder<F> {
    #[inline(never)]
    fn handle(&self) -> String { (self.0)() }
}

#[unsafe(export_name = "__hot_entry_probe::router::h3")]
#[inline(never)]
fn router_entry() -> Box<dyn Handler> {
    let name = String::from("probe");
    Box::new(Holder(move || format!("closure v1 {name}")))
}

fn main() {
    let held = router_entry();
    println!("{}", held.handle());
}
"#;

#[test]
fn code_generic_over_a_changed_closure_is_not_redirected_old_values_keep_their_code() {
    // Redirecting `<Holder<F> as Handler>::handle` would run the new closure's code over the
    // captures of the closure the old value holds, whose layout may have changed.
    let found = analysis_of(GENERIC_SHIM, |s| s.replace("closure v1", "closure v2"));
    assert!(found.stale.is_empty(), "the export builds it again: {found:?}");
    assert!(found.diff.changed.iter().any(|name| cargo_hot::patch::reach::is_closure_or_async_body(name)), "the closure changed: {found:?}");
    let readable: Vec<String> = found.redirect.iter().map(|n| cargo_hot::patch::reach::readable(n)).collect();
    assert!(!readable.iter().any(|name| name.contains("handle")), "the generic shim was redirected: {readable:?}");
}
