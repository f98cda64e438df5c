//! What a patch rebuilds, end to end on test-fixtures/lifecycle-app: the router that
//! `hot::axum::router` serves, the jobs of `hot::scope`, the statics and thread-locals of the
//! boundary, reload hooks and `hot::decline!()`. Real `cargo hot run`, real edits, real HTTP.

mod support;

use std::time::Duration;

use support::{Fixture, HotRun, KeepAlive};

const WEB: &str = "crates/web/src/lib.rs";
const WAIT: Duration = Duration::from_secs(180);

fn start(fixture: &Fixture) -> HotRun {
    HotRun::start(fixture, &[])
}

/// Waits for the `count`-th patch of `web` after byte `mark` of the log.
fn patched(run: &HotRun, mark: usize, count: usize) {
    run.wait_for_log_count_after("patched `web`", count, mark);
}

fn get(run: &HotRun, path: &str) -> support::Response {
    support::request(run.port, "GET", path).unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", run.log()))
}

#[test]
fn routes_middleware_and_connections_follow_the_newest_router() {
    let fixture = Fixture::copy("lifecycle-app");
    let run = start(&fixture);
    let pid = run.pid();
    assert_eq!(get(&run, "/").body, "index v1 (hits=1)");
    assert_eq!(get(&run, "/added").status, 404);
    assert_eq!(get(&run, "/").header("x-served-by"), Some("stamp v1"));
    assert_eq!(get(&run, "/api/ping").body, "pong v1");

    // A kept-alive connection, and a slow request in flight while the patch lands.
    let mut kept = KeepAlive::connect(run.port).unwrap();
    assert_eq!(kept.get("/api/ping").unwrap().body, "pong v1");
    let port = run.port;
    let in_flight = std::thread::spawn(move || support::request(port, "GET", "/slow?ms=3000"));
    std::thread::sleep(Duration::from_millis(300));

    // Add a route, change the middleware, the nested router and the slow handler.
    let mark = run.log().len();
    fixture.edit(WEB, ".route(\"/stats\", get(stats))", ".route(\"/stats\", get(stats))\n        .route(\"/added\", get(|| async { \"added v1\" }))");
    fixture.edit(WEB, "\"stamp v1\"", "\"stamp v2\"");
    fixture.edit(WEB, "\"slow v1\"", "\"slow v2\"");
    fixture.edit("crates/web/src/api.rs", "\"pong v1\"", "\"pong v2\"");
    patched(&run, mark, 1);
    let log = run.log();
    assert!(log[mark..].contains("rebuilt scope") && log[mark..].contains("router (crates/server/src/main.rs:"), "{log}");

    // The same connection takes its next request to the new router.
    let before = kept.local_port();
    let added = kept.get("/added").unwrap();
    assert_eq!((added.status, added.body.as_str()), (200, "added v1"), "{}", run.log());
    assert_eq!(added.header("x-served-by"), Some("stamp v2"), "the new middleware runs");
    assert_eq!(kept.get("/api/ping").unwrap().body, "pong v2", "the nested router is the new one");
    assert_eq!(kept.local_port(), before, "still the same connection");
    let slow = in_flight.join().unwrap().unwrap();
    assert_eq!(slow.body, "slow v1", "a request that started on the old router finishes on it");
    assert_eq!(get(&run, "/slow?ms=1").body, "slow v2");

    // Change the new route, then remove it.
    let mark = run.log().len();
    fixture.edit(WEB, "\"added v1\"", "\"added v2\"");
    patched(&run, mark, 1);
    assert_eq!(get(&run, "/added").body, "added v2");
    let mark = run.log().len();
    fixture.edit(WEB, "\n        .route(\"/added\", get(|| async { \"added v2\" }))", "");
    patched(&run, mark, 1);
    assert_eq!(get(&run, "/added").status, 404);

    // A new export (no compiled code of the program calls it), then a new route that calls it.
    let mark = run.log().len();
    let export = "#[hot::export]\npub fn fresh() -> String {\n    \"fresh v1\".to_string()\n}\n\n#[hot::export]\npub fn router(";
    fixture.edit(WEB, "#[hot::export]\npub fn router(", export);
    patched(&run, mark, 1);
    let mark = run.log().len();
    fixture.edit(WEB, ".route(\"/stats\", get(stats))", ".route(\"/stats\", get(stats))\n        .route(\"/fresh\", get(|| async { fresh() }))");
    patched(&run, mark, 1);
    assert_eq!(get(&run, "/fresh").body, "fresh v1", "{}", run.log());

    // A router builder that panics: the previous router keeps serving, cargo hot says why,
    // and the fix applies.
    let mark = run.log().len();
    fixture.edit(WEB, "pub fn router(state: Arc<AppState>) -> Router {", "pub fn router(state: Arc<AppState>) -> Router {\n    panic!(\"router v3 is broken\");");
    let log = run.wait_for_log("was not rebuilt", mark, WAIT);
    assert!(log[mark..].contains("panicked: router v3 is broken"), "{log}");
    assert_eq!(get(&run, "/").header("x-served-by"), Some("stamp v2"), "the previous router serves");
    let mark = run.log().len();
    fixture.edit(WEB, "\n    panic!(\"router v3 is broken\");", "");
    fixture.edit(WEB, "\"index v1 (hits={hits})\"", "\"index v3 (hits={hits})\"");
    patched(&run, mark, 1);
    assert!(get(&run, "/").body.starts_with("index v3"), "{}", run.log());

    // Reload hooks and the version counter saw every applied patch.
    let version = get(&run, "/version").body;
    assert_eq!(version, "patch 7 · settings v1");
    assert!(run.log().contains("[app] now running patch 7"), "{}", run.log());
    assert_eq!(run.pid(), pid, "every edit was a patch");
}

#[test]
fn jobs_and_subscribers_run_exactly_once_across_many_patches() {
    let fixture = Fixture::copy("lifecycle-app");
    let run = start(&fixture);
    let pid = run.pid();
    let stats = |run: &HotRun| -> serde_json::Value { serde_json::from_str(&get(run, "/stats").body).unwrap() };
    let settled = |run: &HotRun| {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let now = stats(run);
            if now["subscribers"] == 1 && now["running_jobs"] == 1 {
                return now;
            }
            assert!(std::time::Instant::now() < deadline, "jobs never settled: {now}\n{}", run.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    settled(&run);
    for id in 1..=3 {
        assert!(support::request(run.port, "POST", &format!("/events/{id}")).unwrap().body.ends_with("to 1"));
    }

    let mark = run.log().len();
    for round in 0..20 {
        fixture.edit(WEB, &format!("Duration::from_millis({})", 10 + round), &format!("Duration::from_millis({})", 11 + round));
        patched(&run, mark, round + 1);
    }
    let after = settled(&run);
    assert_eq!(after["cleanups"], 20, "each patch ran the old scope's cleanup once: {after}");
    assert_eq!(after["most_running_jobs"], 1, "no new copy ever started before the old one stopped: {after}");
    // A moment later still one copy: no old job lingers.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(stats(&run)["running_jobs"], 1);

    for id in 4..=6 {
        assert!(support::request(run.port, "POST", &format!("/events/{id}")).unwrap().body.ends_with("to 1"));
    }
    let deadline = std::time::Instant::now() + WAIT;
    while stats(&run)["received"] != 6 {
        assert!(std::time::Instant::now() < deadline, "{}", stats(&run));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stats(&run)["duplicates"], 0, "every event was received once");
    assert_eq!(run.pid(), pid);
}

#[test]
fn statics_and_thread_locals_keep_their_values_and_a_changed_static_type_restarts() {
    let fixture = Fixture::copy("lifecycle-app");
    let run = start(&fixture);
    let pid = run.pid();
    assert_eq!(get(&run, "/served").body, "served=1 cache=cache v1");
    assert_eq!(get(&run, "/served").body, "served=2 cache=cache v1");
    assert_eq!(get(&run, "/thread-local").body, "1");
    assert_eq!(get(&run, "/thread-local").body, "2");

    // The OnceLock's initializer changes, but it already holds a value: that value is kept.
    // So does the thread-local's: each thread keeps its value.
    let mark = run.log().len();
    fixture.edit(WEB, "\"cache v1\"", "\"cache v2\"");
    fixture.edit(WEB, "format!(\"served={served} cache={started}\")", "format!(\"served {served}, cache {started}\")");
    fixture.edit(WEB, "const { Cell::new(0) }", "const { Cell::new(100) }");
    patched(&run, mark, 1);
    assert_eq!(get(&run, "/served").body, "served 3, cache cache v1", "{}", run.log());
    assert_eq!(get(&run, "/thread-local").body, "3");
    let log = run.log();
    // The patch's new code uses the program's statics (the code that reaches the thread-local is
    // the program's own, unchanged: a patch carries only what changed, see `thin`).
    assert!(log[mark..].contains("static reference"), "{log}");
    assert_eq!(run.pid(), pid);

    // A second patch binds them again.
    let mark = run.log().len();
    fixture.edit(WEB, "format!(\"served {served}, cache {started}\")", "format!(\"served {served}; cache {started}\")");
    patched(&run, mark, 1);
    assert_eq!(get(&run, "/served").body, "served 4; cache cache v1");
    assert_eq!(get(&run, "/thread-local").body, "4");

    // A static whose type changes cannot keep its value: restart, naming it.
    let mark = run.log().len();
    fixture.edit(WEB, "static SERVED: AtomicU64 = AtomicU64::new(0);", "static SERVED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);");
    let log = run.wait_for_log("restarted", mark, WAIT);
    assert!(log[mark..].contains("the type of static `SERVED`"), "{log}");
    run.wait_for_response("/pid", WAIT, |p| p.trim() != pid.to_string());
    assert_eq!(get(&run, "/served").body, "served 1; cache cache v2", "a new program starts afresh");
}

#[test]
fn a_file_that_declines_restarts_and_explain_says_so() {
    let fixture = Fixture::copy("lifecycle-app");
    let run = start(&fixture);
    let pid = run.pid();
    assert_eq!(get(&run, "/version").body, "patch 0 · settings v1");
    let mark = run.log().len();
    fixture.edit("crates/web/src/settings.rs", "\"settings v1\"", "\"settings v2\"");
    let log = run.wait_for_log("restarted", mark, WAIT);
    assert!(log[mark..].contains("hot::decline!()"), "{log}");
    run.wait_for_response("/version", WAIT, |b| b == "patch 0 · settings v2");
    assert_ne!(run.pid(), pid);
    drop(run);

    let _lock = support::exclusive_build();
    let stdout = support::explain(&fixture, &["crates/web/src/settings.rs", "crates/web/src/api.rs"]);
    assert!(stdout.contains("crates/web/src/settings.rs: restart (it says `hot::decline!()`"), "{stdout}");
    assert!(stdout.contains("crates/web/src/api.rs: patch"), "{stdout}");
}
