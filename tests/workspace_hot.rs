//! test-fixtures/layered-app: a workspace of the real shape (host → web → domain → store)
//! with no cargo hot configuration. Every library crate is hot: edits to the business logic
//! and the queries patch the running server (same PID, state kept), compiling again the crates
//! above them only where the new code would not be called otherwise (a generic instantiated in
//! `web`, an `async` query whose futures `domain` and `web` build); a `domain` type the host
//! holds changed restarts. Each behaviour is checked over HTTP, not only in the log.

mod support;

use std::time::Duration;

use support::{explain, request, Fixture, HotRun};

const WAIT: Duration = Duration::from_secs(300);

#[test]
fn every_library_of_the_workspace_patches() {
    let fixture = Fixture::copy("layered-app");
    let run = HotRun::start(&fixture, &[]);
    let pid = run.pid();
    assert!(run.log().contains("hot crates `store`, `domain`, `web`"), "{}", run.log());
    assert_eq!(run.get("/hits").unwrap(), "hits 1");
    assert_eq!(run.get("/price/3").unwrap(), "price 31");
    assert_eq!(request(run.port, "GET", "/stamp").unwrap().header("x-stamp"), Some("stamp-1"));

    // A plain query, called by `domain`: its running copy is redirected.
    let mark = run.log().len();
    fixture.edit("crates/store/src/lib.rs", "item * 10", "item * 100");
    run.wait_for_response("/price/3", WAIT, |b| b == "price 301");
    let log = run.wait_for_log("patched `store`", mark, WAIT);
    assert!(log[mark..].contains("`store::stock` redirected"), "{log}");
    assert_eq!(run.pid(), pid);
    assert_eq!(run.get("/hits").unwrap(), "hits 2", "the host's state is kept");

    // A `domain` function the host's own middleware calls directly (and `web` too): the
    // middleware's calls run the new code.
    fixture.edit("crates/domain/src/lib.rs", "\"stamp-1\"", "\"stamp-2\"");
    run.wait_for_response("/stamp", WAIT, |b| b == "stamp-2");
    assert_eq!(request(run.port, "GET", "/price/1").unwrap().header("x-stamp"), Some("stamp-2"));
    assert_eq!(run.pid(), pid);
    // The new code answers as soon as it is loaded, a moment before the outcome is printed.
    run.wait_for_log("`domain::stamp` redirected", 0, WAIT);

    // A generic `domain` function instantiated in `web`: `web` is compiled again with it.
    let mark = run.log().len();
    fixture.edit("crates/domain/src/lib.rs", "\"value {value}\"", "\"value is {value}\"");
    run.wait_for_response("/describe", WAIT, |b| b == "value is 42");
    let log = run.wait_for_log("patched `domain`", mark, WAIT);
    let line = log[mark..].lines().find(|l| l.contains("patched `domain`")).unwrap_or_default().to_string();
    assert!(line.contains("domain ") && line.contains("web "), "the outcome line names each crate's compile: {line}");
    assert_eq!(run.pid(), pid);

    // An `async` query awaited by `domain`, awaited by a `web` handler: the patch spans all
    // three; the pool's rows (state of `store`'s type, held by the host) are kept.
    assert_eq!(run.get("/greet/ann").unwrap(), "hello ann, visit 1");
    let mark = run.log().len();
    fixture.edit("crates/store/src/lib.rs", "*count += 1;", "*count += 10;");
    run.wait_for_response("/greet/ann", WAIT, |b| b == "hello ann, visit 11");
    let log = run.wait_for_log("patched `store`", mark, WAIT);
    let line = log[mark..].lines().find(|l| l.contains("patched `store`")).unwrap_or_default().to_string();
    assert!(line.contains("store ") && line.contains("domain ") && line.contains("web "), "{line}");
    assert_eq!(run.pid(), pid);

    // A function added to `store` by one patch, called by `web` in the next: the newest
    // `store` joins `web`'s patch.
    fixture.edit("crates/store/src/lib.rs", "pub fn stock(", "pub fn bonus() -> u32 {\n    7\n}\n\npub fn stock(");
    run.wait_for_log_count("patched `store`", 3, WAIT);
    fixture.edit("crates/web/src/lib.rs", "format!(\"price {}\", domain::price(item))", "format!(\"price {} bonus {}\", domain::price(item), store::bonus())");
    run.wait_for_response("/price/3", WAIT, |b| b == "price 301 bonus 7");
    assert_eq!(run.pid(), pid);
    assert_eq!(run.get("/hits").unwrap(), "hits 3", "still the same state");

    // A `const` has no code of its own: the crates that use it are compiled again, and the
    // patch switches `web`'s router, which has the value compiled in.
    let mark = run.log().len();
    fixture.edit("crates/domain/src/lib.rs", "\"title v1\"", "\"title v2\"");
    run.wait_for_response("/title", WAIT, |b| b == "title v2");
    let log = run.wait_for_log("patched `domain`", mark, WAIT);
    let line = log[mark..].lines().find(|l| l.contains("patched `domain`")).unwrap_or_default().to_string();
    assert!(line.contains("web "), "`web` was compiled again: {line}");
    assert_eq!(run.pid(), pid);
    // One the host's own middleware has compiled in: the host cannot be patched, so restart.
    let mark = run.log().len();
    fixture.edit("crates/domain/src/lib.rs", "LIMIT: u32 = 100", "LIMIT: u32 = 200");
    let log = run.wait_for_log("restarted", mark, WAIT);
    assert!(log[mark..].contains("domain::LIMIT"), "the reason names the const: {}", &log[mark..]);
    run.wait_for_response("/title", WAIT, |b| b == "title v2");
    assert_eq!(request(run.port, "GET", "/pid").unwrap().header("x-limit"), Some("200"));
    assert_ne!(run.pid(), pid);
    let pid = run.pid();

    // A `domain` type the host holds changed: restart, naming it.
    let mark = run.log().len();
    fixture.edit("crates/domain/src/lib.rs", "    hits: AtomicU64,\n", "    hits: AtomicU64,\n    pub misses: u64,\n");
    fixture.edit("crates/domain/src/lib.rs", "Ledger { hits: AtomicU64::new(0) }", "Ledger { hits: AtomicU64::new(0), misses: 0 }");
    let log = run.wait_for_log("restarted", mark, WAIT);
    assert!(log[mark..].contains("the layout of `domain::Ledger` changed"), "{log}");
    run.wait_for_response("/hits", WAIT, |b| b == "hits 1");
    assert_eq!(run.get("/title").unwrap(), "title v2");
    assert_ne!(run.pid(), pid);

    // The patches of the programs that are gone are removed; the session's, when it ends.
    let patches = support::shared_target_dir().join("hot/server/patches").join(run.session_pid().to_string());
    let left: Vec<String> = std::fs::read_dir(&patches).map_or(Vec::new(), |d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect());
    assert!(left.iter().all(|name| *name == run.pid().to_string()), "only the running program's patches are kept: {left:?}");
    assert!(run.log().matches("patched `").count() >= 5, "patches were written");
    run.interrupt();
    assert!(!patches.exists(), "the session's patches are removed at its end: {}", patches.display());
}

#[test]
fn explain_names_the_crates_a_patch_spans_and_exclude_keeps_a_crate_restarting() {
    let _lock = support::exclusive_build();
    let fixture = Fixture::copy("layered-app");
    let out = explain(&fixture, &["crates/store/src/lib.rs", "crates/domain/src/lib.rs"]);
    assert!(out.contains("crates/store/src/lib.rs: patch (compiled only by the boundary `store`)"), "{out}");
    assert!(out.contains("  stock: patch (the host reaches it too") || out.contains("  stock: patch\n"), "{out}");
    assert!(out.contains("  visit: patch, compiling `domain` again with it"), "{out}");
    assert!(out.contains("  describe: patch, compiling `web` again with it"), "{out}");
    let summary = explain(&fixture, &[]);
    for expected in ["  store (a library of the workspace that `server` uses", "  domain (a library", "  web (a library", "the binary `server`"] {
        assert!(summary.contains(expected), "summary lacks {expected:?}:\n{summary}");
    }

    // `exclude` (here on the command line; `exclude = [...]` under [workspace.metadata.hot]
    // is the same) keeps a crate always-restart.
    let out = explain(&fixture, &["--exclude", "store", "crates/store/src/lib.rs", "crates/domain/src/lib.rs"]);
    assert!(out.contains("crates/store/src/lib.rs: restart (compiled by `store`, outside the boundary)"), "{out}");
    assert!(out.contains("crates/domain/src/lib.rs: patch"), "{out}");
}
