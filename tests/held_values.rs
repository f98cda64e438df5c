//! The word "patched" is true: on a host that reaches its hot crate other than through
//! exports, each edit either takes effect in the same process (checked over HTTP) or
//! restarts into the new code. Never the old code answering after "patched".

mod support;

use std::time::Duration;

use support::{Fixture, HotRun};

const LOGIC: &str = "crates/logic/src/lib.rs";

/// Applies an edit and waits until `path` answers with `expect`; true when the same process
/// answers (a patch, which the log must say), false after a restart (which it must not call
/// a patch).
fn edit(run: &HotRun, fixture: &Fixture, from: &str, to: &str, path: &str, expect: &str) -> bool {
    let pid = run.pid();
    let after = run.log().len();
    fixture.edit(LOGIC, from, to);
    let answer = run.wait_for_response(path, Duration::from_secs(120), |body| body.contains(expect));
    assert!(answer.contains(expect), "{path} answered {answer:?}:\n{}", run.log());
    let same = run.pid() == pid;
    if same {
        // The new code can answer a moment before cargo hot prints its outcome.
        run.wait_for_log("patched `logic`", after, Duration::from_secs(30));
    } else {
        let log = run.log()[after..].to_string();
        assert!(!log.contains("patched `logic`"), "a restart is not a patch:\n{log}");
    }
    same
}

#[test]
fn every_edit_takes_effect_in_place_or_by_a_restart() {
    let fixture = Fixture::copy("held-values");
    let run = HotRun::start(&fixture, &[]);
    assert_eq!(run.get("/store").unwrap(), "store v1 items=3");
    // A trait method behind a vtable the host built at start-up: redirected.
    assert!(edit(&run, &fixture, "store v1", "store v2", "/store", "store v2"), "{}", run.log());
    assert!(run.log().contains("redirected"), "{}", run.log());
    // A private helper of an export: patched.
    assert!(edit(&run, &fixture, "\"v1\"", "\"v2\"", "/answer", "answer v2"));
    // A function the host calls directly, a generic and an inline function the host compiled
    // its own copies of, a static it reads: each restarts, and the new code answers.
    assert!(!edit(&run, &fixture, "direct v1", "direct v2", "/direct", "direct v2"));
    assert!(!edit(&run, &fixture, "generic v1", "generic v2", "/generic", "generic v2"));
    assert!(!edit(&run, &fixture, "inline v1", "inline v2", "/inline", "inline v2"));
    assert!(!edit(&run, &fixture, "greeting v1", "greeting v2", "/greeting", "greeting v2"));
    // A `Drop` impl the host's drop glue runs: the new body runs on the next drop, whether
    // redirected or restarted.
    edit(&run, &fixture, "dropped v1", "dropped v2", "/drop", "dropped v2");
    // After restarts, the vtable method patches again, twice in a row.
    assert!(edit(&run, &fixture, "store v2", "store v3", "/store", "store v3"));
    assert!(edit(&run, &fixture, "store v3", "store v4", "/store", "store v4"));
    // In one save, the method and the signature of a function it calls: no redirect can be
    // proven safe, and the store the host holds would keep the old method, so it restarts.
    let before = "store v4 items={}\", scale(self.items))\n    }\n}\n\nfn scale(items: u32) -> u32 {\n    items\n}";
    let after = "store v5 items={}\", scale(self.items))\n    }\n}\n\nfn scale(items: u32) -> u64 {\n    u64::from(items)\n}";
    let mark = run.log().len();
    assert!(!edit(&run, &fixture, before, after, "/store", "store v5"), "{}", run.log());
    assert!(run.log()[mark..].contains("signature of `scale"), "{}", run.log());
    run.interrupt();
}

/// Layouts are decided from the compiled types: a request-local type changes freely in place;
/// a type whose old values the program holds (in a static, behind `dyn Any`) restarts, even
/// when no `struct` of it changed (a const sizes its array, an alias is re-pointed). A wrong
/// patch would answer with the old memory read in the new layout (the sentinels).
#[test]
fn layouts_are_decided_from_the_compiled_types() {
    let fixture = Fixture::copy("held-values");
    let run = HotRun::start(&fixture, &[]);
    assert_eq!(run.get("/ring").unwrap(), "ring slots=2 sentinel=42");
    assert_eq!(run.get("/token").unwrap(), "token id=5 sentinel=42");
    assert_eq!(run.get("/tally").unwrap(), "tally hits=1 bytes=2 sentinel=42");

    // A field added to a type built and dropped inside the request: patched, state kept.
    let mark = run.log().len();
    let before = "struct Order {\n    id: u32,\n}\n\n#[hot::export]\npub fn order() -> String {\n    let order = Order { id: 7 };\n    format!(\"order id={}\", order.id)";
    let after = "struct Order {\n    id: u32,\n    note: &'static str,\n}\n\n#[hot::export]\npub fn order() -> String {\n    let order = Order { id: 7, note: \"new\" };\n    format!(\"order id={} note={}\", order.id, order.note)";
    assert!(edit(&run, &fixture, before, after, "/order", "order id=7 note=new"), "{}", run.log());
    assert!(run.log()[mark..].contains("new layout of `logic::Order`"), "{}", run.log());
    // Every static the source declares was bound: no warning of a fresh copy but the one a
    // macro declares, which the patch does reset, and says so.
    let log = &run.log()[mark..];
    assert!(log.contains("its own copy of the static `logic::MACRO_HITS`"), "{log}");
    assert!(!log.contains("static `logic::RING`") && !log.contains("static `logic::TALLY`"), "{log}");
    assert_eq!(run.get("/tally").unwrap(), "tally hits=2 bytes=2 sentinel=42", "the static kept its value");

    // A const of a module without types sizes an array of a struct a static holds.
    let mark = run.log().len();
    assert!(!edit(&run, &fixture, "pub const SLOTS: usize = 2;", "pub const SLOTS: usize = 5;", "/ring", "ring slots=5 sentinel=42"));
    assert!(run.log()[mark..].contains("the static `logic::RING`"), "{}", run.log());

    // An alias re-pointed to a wider type, used by a struct a static holds.
    let mark = run.log().len();
    assert!(!edit(&run, &fixture, "pub type Count = u16;", "pub type Count = u64;", "/tally", "bytes=8 sentinel=42"));
    assert!(run.log()[mark..].contains("layout of `logic::Tally` changed"), "{}", run.log());

    // A field retyped in a type the host keeps behind `dyn Any`, downcast by the new code.
    let mark = run.log().len();
    let tail = "    sentinel: u64,\n}\n\n#[hot::export]\npub fn read_token(token: &(dyn std::any::Any + Send + Sync)) -> String {\n    match token.downcast_ref::<Token>() {\n        Some(token) => format!(\"token";
    let before = format!("struct Token {{\n    id: u8,\n{tail} id=");
    let after = format!("struct Token {{\n    id: u64,\n{tail} v2 id=");
    assert!(!edit(&run, &fixture, &before, &after, "/token", "token v2 id=5 sentinel=42"), "{}", run.log());
    assert!(run.log()[mark..].contains("behind `dyn core::any::Any"), "{}", run.log());
    run.interrupt();
}

/// `cargo hot explain FILE` judges each function as a patch would be judged: a patched file
/// can hold functions whose edits restart.
#[test]
fn explain_says_which_functions_patch_and_which_restart() {
    // It builds the fixture, as `run` does: not at the same time as another copy of it.
    let _lock = support::exclusive_build();
    let fixture = Fixture::copy("held-values");
    let out = support::explain(&fixture, &[LOGIC]);
    let line =
        |name: &str| out.lines().find(|l| l.trim_start().starts_with(&format!("{name}:"))).unwrap_or_else(|| panic!("no line for {name}:\n{out}")).to_string();
    assert!(out.lines().next().unwrap().contains(": patch"), "{out}");
    assert_eq!(line("answer").trim(), "answer: patch", "{out}");
    assert_eq!(line("helper").trim(), "helper: patch", "{out}");
    assert!(line("direct").contains("restart (only the host's own code reaches it"), "{out}");
    assert!(line("generic_label").contains("restart (`host` compiled its own copy"), "{out}");
    assert!(line("inline_label").contains("restart (`host` compiled its own copy"), "{out}");
    assert_eq!(line("Memory::describe").trim(), "Memory::describe: patch", "a vtable method, redirected: {out}");
    assert!(line("Guard::drop").contains("restart (only the host's own code reaches it"), "drop glue in the host: {out}");
}

/// A host built without debug info of its types (`debug = "line-tables-only"`): the layouts
/// of the unchanged crate come from cargo hot's own compile of it, and where values are held
/// cannot be read. An edit that changes no layout (a new function) still patches; one that
/// changes a layout restarts, saying why.
#[test]
fn without_the_host_s_type_debug_info_only_layout_changes_restart() {
    let fixture = Fixture::copy("held-values");
    // A target directory of its own: the other profile's artifacts, and no other session's
    // compiles in its patch directories.
    let target = tempfile::tempdir().unwrap();
    let target_dir = target.path().to_str().unwrap();
    let run = HotRun::start_with(&fixture, &[], &[("CARGO_PROFILE_DEV_DEBUG", "line-tables-only"), ("CARGO_TARGET_DIR", target_dir)], support::free_port());
    assert_eq!(run.get("/answer").unwrap(), "answer v1");
    // The compile of the unchanged crate with full debug info runs at idle priority: an edit
    // made before it has read the sources could not use it (the edit restarts, saying so).
    let types_dir = target.path().join("hot/host/patch-build");
    let read = || {
        let dirs = std::fs::read_dir(&types_dir).into_iter().flatten().flatten();
        dirs.flat_map(|d| std::fs::read_dir(d.path().join("types/out")).into_iter().flatten().flatten())
            .any(|f| f.path().extension().is_some_and(|e| e == "d"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !read() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // File times are coarse (a few milliseconds): an edit in the same tick as the read would
    // look made before it.
    std::thread::sleep(Duration::from_millis(100));
    let before = "fn helper() -> &'static str {\n    \"v1\"\n}";
    let after = "fn helper() -> &'static str {\n    suffix()\n}\n\nfn suffix() -> &'static str {\n    \"v2\"\n}";
    assert!(edit(&run, &fixture, before, after, "/answer", "answer v2"), "a new function changes no layout: {}", run.log());

    let mark = run.log().len();
    let before = "struct Order {\n    id: u32,\n}\n\n#[hot::export]\npub fn order() -> String {\n    let order = Order { id: 7 };\n    format!(\"order id={}\", order.id)";
    let after = "struct Order {\n    id: u32,\n    note: &'static str,\n}\n\n#[hot::export]\npub fn order() -> String {\n    let order = Order { id: 7, note: \"new\" };\n    format!(\"order id={} note={}\", order.id, order.note)";
    assert!(!edit(&run, &fixture, before, after, "/order", "order id=7 note=new"), "{}", run.log());
    assert!(run.log()[mark..].contains("the layout of `logic::Order` changed") && run.log()[mark..].contains("where the program holds its values cannot be read"), "{}", run.log());
    run.interrupt();
}
