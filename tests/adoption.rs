//! Adopting cargo hot without restructuring: test-fixtures/bin-app is one package whose
//! handlers are a module of `main.rs`, run with no cargo hot configuration at all.

mod support;

use std::time::Duration;

use support::{Fixture, HotRun};

const WAIT: Duration = Duration::from_secs(300);

#[test]
fn the_binary_s_own_modules_are_hot_main_restarts_and_cargo_s_env_reaches_the_program() {
    let fixture = Fixture::copy("bin-app");
    // FORCED is set in the shell too: `force = true` in .cargo/config.toml wins over it.
    let run = HotRun::start_with(&fixture, &[], &[("FORCED", "from the shell")], support::free_port());
    let pid = run.pid();
    assert_eq!(run.get("/").unwrap(), "bin-app v1 (hits=1)");

    // The environment `cargo run` gives: [env] (relative and force), the package's variables,
    // and the directory cargo hot was started from.
    assert_eq!(run.get("/env/GREETING").unwrap(), "hello from .cargo/config.toml");
    assert_eq!(run.get("/env/FORCED").unwrap(), "from config");
    let assets = run.get("/env/ASSETS_DIR").unwrap();
    assert_eq!(std::path::Path::new(&assets), fixture.path("assets").as_path());
    assert_eq!(run.get("/env/CARGO_PKG_NAME").unwrap(), "bin-app");
    assert_eq!(run.get("/env/CARGO_MANIFEST_DIR").unwrap(), fixture.root().display().to_string());
    assert_eq!(std::path::Path::new(&run.get("/cwd").unwrap()), fixture.root());

    // An edit in a module of the binary is a patch: same process, state kept.
    let mark = run.log().len();
    fixture.edit("src/routes.rs", "bin-app v1 (hits", "bin-app v2 (hits");
    let body = run.wait_for_response("/", WAIT, |b| b.starts_with("bin-app v2"));
    let hits: u64 = body.trim_start_matches("bin-app v2 (hits=").trim_end_matches(')').parse().unwrap();
    assert!(hits >= 2, "the host-owned counter survives the patch (a restart resets it): {body}");
    assert_eq!(run.pid(), pid);
    let log = run.wait_for_log("patched `bin-app`", mark, WAIT);
    assert!(log[mark..].contains("rebuilt router (src/main.rs:"), "{log}");

    // An edit to `main`, which ran once and will not run again, takes effect by a restart.
    let mark = run.log().len();
    fixture.edit("src/main.rs", "bin-app v1 listening", "bin-app v2 listening");
    let log = run.wait_for_log("bin-app v2 listening", mark, WAIT);
    assert!(log[mark..].contains("only start-up code such as `main` runs it"), "{log}");
    assert!(log[mark..].contains("bin_app::main"), "the reason names main: {log}");
    assert_ne!(run.pid(), pid);
    assert_eq!(run.get("/").unwrap(), "bin-app v2 (hits=1)");
    drop(run);

    // A change to cargo's configuration restarts with the new environment.
    let run = HotRun::start(&fixture, &[]);
    let pid = run.pid();
    fixture.edit(".cargo/config.toml", "hello from .cargo/config.toml", "hello again");
    run.wait_for_response("/env/GREETING", WAIT, |b| b == "hello again");
    assert_ne!(run.pid(), pid);
}

/// A workspace with no configuration at all: every library of the workspace the server uses is
/// hot (the one with the exports and the one it builds on), and cargo hot says so.
#[test]
fn with_nothing_configured_every_library_the_server_uses_is_hot() {
    let fixture = Fixture::copy("axum-app");
    fixture.edit("Cargo.toml", "[workspace.metadata.hot]\nboundary = \"crates/handlers\"\n", "");
    let run = HotRun::start(&fixture, &[]);
    let pid = run.pid();
    assert!(run.log().contains("hot crates `shared`, `handlers` (every library of the workspace the server uses"), "{}", run.log());
    fixture.edit("crates/handlers/src/lib.rs", "hello from v1", "hello from v2");
    run.wait_for_response("/", WAIT, |b| b.contains("hello from v2"));
    assert_eq!(run.pid(), pid, "a patch, not a restart:\n{}", run.log());

    // The lower library, which the handlers call, patches too.
    let mark = run.log().len();
    fixture.edit("crates/shared/src/lib.rs", "\"shared-v1\"", "\"shared-v2\"");
    run.wait_for_response("/version", WAIT, |b| b.contains("shared-v2"));
    run.wait_for_log("patched `shared`", mark, WAIT);
    assert_eq!(run.pid(), pid, "a patch of `shared`, not a restart:\n{}", &run.log()[mark..]);

    // A field added to the state the host holds: no code of `shared` reads it yet, so nothing
    // that runs meets the new layout; the handler that uses it does, and the host built the
    // value with the old one: that restarts, naming the type.
    let mark = run.log().len();
    fixture.edit("crates/shared/src/lib.rs", "    pub hits: AtomicU64,\n", "    pub hits: AtomicU64,\n    pub misses: AtomicU64,\n");
    run.wait_for_log("patched `shared`", mark, WAIT);
    let mark = run.log().len();
    fixture.edit("crates/handlers/src/lib.rs", "let hits = state.hits", "let _ = state.misses.load(Ordering::SeqCst);\n    let hits = state.hits");
    let log = run.wait_for_log("restarted (pid", mark, WAIT);
    assert!(log[mark..].contains("the layout of `shared::AppState` changed"), "{}", &log[mark..]);
    run.wait_for_response("/", WAIT, |b| b.starts_with("hello from v2 (hits=1)"));
    assert_ne!(run.pid(), pid, "a new process, with the edits");
}
