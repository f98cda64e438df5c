//! End to end: the real `cargo hot run` on a copy of test-fixtures/axum-app, real edits on
//! disk, real HTTP requests.

mod support;

use std::time::Duration;

use support::{Fixture, HotRun};


const HANDLERS: &str = "crates/handlers/src/lib.rs";
const SHARED: &str = "crates/shared/src/lib.rs";
const PATCH_WAIT: Duration = Duration::from_secs(120);
const RESTART_WAIT: Duration = Duration::from_secs(300);

/// Body edits are patched into the same process; host-owned state survives; a request in
/// flight finishes on the old code; new code may use dependency APIs the host never called;
/// a compile error keeps the last good code serving and the fix applies.
#[test]
fn boundary_edits_patch_the_running_process() {
    let fixture = Fixture::copy("axum-app");
    let run = HotRun::start(&fixture, &[]);
    let pid = run.pid();
    assert_eq!(run.get("/").unwrap(), "hello from v1 (hits=1)");
    assert_eq!(run.get("/").unwrap(), "hello from v1 (hits=2)");

    // 1. A body edit: same PID, state kept.
    let mark = run.log().len();
    fixture.edit(HANDLERS, "hello from v1", "hello from v2");
    let body = run.wait_for_response("/", PATCH_WAIT, |b| b.contains("v2"));
    let hits: u64 = body.trim_start_matches("hello from v2 (hits=").trim_end_matches(')').parse().unwrap();
    assert!(hits >= 3, "the hit counter owned by the host survives the patch (a restart resets it): {body}\n{}", run.log());
    assert_eq!(run.pid(), pid);
    let log = run.wait_for_log("patched `handlers`", mark, PATCH_WAIT);
    assert!(log[mark..].contains("pid") && log[mark..].contains("kept"), "{log}");

    // 2. A request in flight while its function is patched finishes on the code it started with.
    let port = run.port;
    let in_flight = std::thread::spawn(move || support::http(port, "GET", "/slow?ms=3000", ""));
    std::thread::sleep(Duration::from_millis(300));
    fixture.edit(HANDLERS, "\"slow v1\"", "\"slow v2\"");
    run.wait_for_response("/slow?ms=1", PATCH_WAIT, |b| b == "slow v2");
    assert_eq!(in_flight.join().unwrap().unwrap(), "slow v1");

    // 3. New code that uses dependency APIs the host never called, tokio timers and spawn.
    fixture.edit(
        HANDLERS,
        "format!(\"hello from v2 (hits={hits})\")",
        r##"let doc: serde_json::Value = serde_json::from_str(r#"{"deps":["tokio","serde_json"]}"#).unwrap();
    let pretty = serde_json::to_string_pretty(&doc).unwrap();
    let spawned = tokio::spawn(async move { tokio::time::timeout(Duration::from_millis(500), async { hits * 10 }).await.unwrap() });
    format!("v3 hits={hits} spawned={} lines={}", spawned.await.unwrap(), pretty.lines().count())"##,
    );
    let body = run.wait_for_response("/", PATCH_WAIT, |b| b.starts_with("v3"));
    assert!(body.starts_with("v3 hits="), "{body}");
    assert!(body.ends_with("lines=6"), "{body}");
    assert_eq!(run.pid(), pid);

    // The patched put_note spawns a task; the note lands in host-owned state.
    fixture.edit(HANDLERS, "format!(\"stored {key}\")", "format!(\"stored v2 {key}\")");
    run.wait_for_response("/", PATCH_WAIT, |_| run.log().matches("patched `handlers`").count() >= 4);
    assert_eq!(run.post("/note/k", "kept").unwrap(), "stored v2 k");
    assert_eq!(run.get("/note/k").unwrap(), r#"{"key":"k","text":"kept"}"#);

    // 4. A compile error: diagnostics shown, old code keeps serving, the fix applies.
    let mark = run.log().len();
    fixture.edit(HANDLERS, "format!(\"v3 hits=", "format!(\"v4 hits=\" + ");
    let log = run.wait_for_log("does not compile", mark, PATCH_WAIT);
    assert!(log[mark..].contains("error"), "rustc's diagnostics are shown:\n{log}");
    assert!(run.get("/").unwrap().starts_with("v3"), "the last good code keeps serving");
    assert_eq!(run.pid(), pid);
    fixture.edit(HANDLERS, "format!(\"v4 hits=\" + ", "format!(\"v4 hits=");
    run.wait_for_response("/", PATCH_WAIT, |b| b.starts_with("v4"));
    assert_eq!(run.pid(), pid, "every edit so far was a patch");

    // A module declared before its file exists: the compile fails, and creating the file
    // (which no crate compiled yet) retries it.
    let mark = run.log().len();
    fixture.edit(HANDLERS, "mod render;", "mod render;\nmod extra;");
    fixture.edit(HANDLERS, "format!(\"v4 hits=", "format!(\"{} v4 hits=");
    fixture.edit(HANDLERS, "\", spawned.await.unwrap()", "\", extra::word(), spawned.await.unwrap()");
    run.wait_for_log("does not compile", mark, PATCH_WAIT);
    std::fs::write(fixture.path("crates/handlers/src/extra.rs"), "pub fn word() -> &'static str {\n    \"extra\"\n}\n").unwrap();
    run.wait_for_response("/", PATCH_WAIT, |b| b.starts_with("extra v4"));
    assert_eq!(run.pid(), pid);
    // The new code can answer before the outcome line is printed: wait for it, so that the
    // next step's mark comes after it.
    run.wait_for_log_count_after("patched `handlers`", 1, mark);

    // 5. A panic in patched code unwinds like any other (the connection's task ends, the
    //    server lives on): the patch carries its unwind tables.
    let mark = run.log().len();
    fixture.edit(HANDLERS, "format!(\"handlers v1, {}\", shared::banner())", "panic!(\"boom from a patch\")");
    run.wait_for_log_count_after("patched `handlers`", 1, mark);
    let failed = run.get("/version");
    assert!(failed.is_err(), "the panicking handler gives no response: {failed:?}");
    assert_eq!(run.pid(), pid, "the server survives a panic in patched code:\n{}", run.log());
    assert!(run.get("/").unwrap().starts_with("extra v4"));

    let status = run.interrupt();
    assert_eq!(status.code(), Some(130), "Ctrl-C ends cargo hot with the conventional status");
}

/// Edits outside the boundary, and boundary edits the ABI gate refuses, restart the program
/// (new PID) with the new code, saying why.
#[test]
fn edits_outside_the_boundary_or_failing_the_gate_restart() {
    let fixture = Fixture::copy("axum-app");
    let run = HotRun::start(&fixture, &["--boundary", "crates/handlers"]);
    let first_pid = run.pid();
    assert_eq!(run.get("/version").unwrap(), "handlers v1, shared-v1");

    // A shared crate edit restarts.
    let mark = run.log().len();
    fixture.edit(SHARED, "\"shared-v1\"", "\"shared-v2\"");
    run.wait_for_response("/version", RESTART_WAIT, |b| b.contains("shared-v2"));
    let second_pid = run.pid();
    assert_ne!(second_pid, first_pid);
    let log = run.wait_for_log("restarted", mark, RESTART_WAIT);
    assert!(log[mark..].contains("compiled by `shared`, outside the boundary"), "{log}");

    // A changed signature in the boundary (the host still compiles) fails the gate.
    let mark = run.log().len();
    fixture.edit(HANDLERS, "pub async fn slow(millis: u64) -> String {", "pub async fn slow(millis: u64) -> &'static str {");
    fixture.edit(HANDLERS, "\"slow v1\".to_string()", "\"slow, new signature\"");
    run.wait_for_response("/slow?ms=1", RESTART_WAIT, |b| b == "slow, new signature");
    assert_ne!(run.pid(), second_pid);
    let log = run.wait_for_log("restarted", mark, RESTART_WAIT);
    assert!(log[mark..].contains("the signature of `handlers::slow` changed"), "{log}");
    let third_pid = run.pid();

    // A changed layout of a type the program holds (in a static) fails the gate too.
    let mark = run.log().len();
    let stats = "pub struct Stats {\n    pub served: u32,\n}\n\npub static STATS: std::sync::Mutex<Stats> = std::sync::Mutex::new(Stats { served: 0 });";
    fixture.edit("crates/handlers/src/render.rs", "use shared::Note;", &format!("use shared::Note;\n\n{stats}"));
    run.wait_for_log("patched `handlers`", mark, PATCH_WAIT);
    assert_eq!(run.pid(), third_pid, "adding a type is harmless");
    let mark = run.log().len();
    fixture.edit("crates/handlers/src/render.rs", "pub served: u32,", "pub served: u64,");
    let log = run.wait_for_log("restarted", mark, RESTART_WAIT);
    assert!(log[mark..].contains("the layout of `handlers::render::Stats` changed"), "{log}");
    assert!(log[mark..].contains("the static `handlers::render::STATS`"), "{log}");
    run.wait_for_response("/pid", RESTART_WAIT, |pid| pid.trim() != third_pid.to_string());
}

/// The most common small layout: one package whose `src/lib.rs` is the boundary and whose
/// `src/main.rs` is the host; a std-only server, references crossing the boundary.
#[test]
fn a_single_package_patches_its_own_library() {
    let fixture = Fixture::copy("single-crate");
    let run = HotRun::start(&fixture, &[]);
    let pid = run.pid();
    assert!(run.get("/").unwrap().starts_with("single v1 #"));

    fixture.edit("src/lib.rs", "single v1", "single v2");
    let body = run.wait_for_response("/", PATCH_WAIT, |b| b.starts_with("single v2"));
    let n: u64 = body.trim_start_matches("single v2 #").parse().unwrap();
    assert!(n >= 3, "the host's counter survives: {body}");
    assert_eq!(run.pid(), pid);

    // A static of a module named like its function (`health_check::HITS` beside
    // `fn health_check`) keeps its value across patches.
    assert_eq!(run.get("/health").unwrap(), "health v1 hits=1");
    assert_eq!(run.get("/health").unwrap(), "health v1 hits=2");
    fixture.edit("src/health_check.rs", "health v1", "health v2");
    let body = run.wait_for_response("/health", PATCH_WAIT, |b| b.starts_with("health v2"));
    // Each poll for the new code counted too.
    let hits: u64 = body.trim_start_matches("health v2 hits=").parse().unwrap();
    assert!(hits >= 3, "the static kept its value: {body}\n{}", run.log());
    assert_eq!(run.pid(), pid);

    let mark = run.log().len();
    fixture.edit("src/main.rs", "host v1 listening", "host v2 listening");
    let log = run.wait_for_log("host v2 listening", mark, RESTART_WAIT);
    assert!(log[mark..].contains("outside the boundary"), "{log}");
    run.wait_for_response("/pid", RESTART_WAIT, |p| p.trim() != pid.to_string());
}
