//! Edit → first response with the new code, on a copy of test-fixtures/axum-app.
//!
//!     cargo bench --bench edit_to_response              # 7 edits of each kind
//!     HOT_BENCH_EDITS=15 HOT_BENCH_PATCHES=200 cargo bench --bench edit_to_response
//!     cargo bench --bench edit_to_response -- route     # only the added-route scenario
//!
//! Measures, each as the median (and p95) of repeated edits:
//! - the floor: the boundary's bare rustc invocation, replayed as cargo hot captured it;
//! - a cargo hot patch (edit in the boundary), same process;
//! - a cargo hot restart (edit in the shared crate), new process;
//! - the cargo-watch / bacon loop for the same boundary edit: `cargo build`, stop the
//!   server, start it, first response;
//! - on test-fixtures/lifecycle-app, an edit that adds a route to the router that
//!   `hot::axum::router` serves, to the new route's first response.
//!
//! With HOT_BENCH_PATCHES=N it also applies N patches and reports the program's resident
//! memory growth per patch. Times are wall-clock on a shared machine: compare ratios
//! within one run, not absolute numbers across runs.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cargo_hot::capture::RustcInvocation;
use support::{Fixture, HotRun};

const HANDLERS: &str = "crates/handlers/src/lib.rs";
const SHARED: &str = "crates/shared/src/lib.rs";
const WAIT: Duration = Duration::from_secs(300);

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes; nothing to list.
    }
    let edits: usize = std::env::var("HOT_BENCH_EDITS").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    if std::env::args().skip(1).any(|a| a == "route") {
        print_rows("test-fixtures/lifecycle-app", edits, &[("cargo hot: patch adding a route (hot router)", &route_times(edits))]);
        return;
    }
    let memory_patches: usize = std::env::var("HOT_BENCH_PATCHES").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let fixture = Fixture::copy("axum-app");
    eprintln!("fixture: {} · target dir: {}", fixture.root().display(), support::shared_target_dir().display());

    let run = HotRun::start(&fixture, &[]);
    let mut label = String::from("hello from v1");
    let mut next_label = |i: usize| {
        let old = std::mem::replace(&mut label, format!("hello from edit {i}"));
        (old, label.clone())
    };

    // Warm-up: the first patch creates the session's directories.
    let (old, new) = next_label(0);
    fixture.edit(HANDLERS, &old, &new);
    run.wait_for_response("/", WAIT, |b| b.contains(&new));

    let pid = run.pid();
    let mut patch_times = Vec::new();
    for i in 1..=edits {
        let (old, new) = next_label(i);
        let patched_before = run.log().matches("patched `handlers`").count();
        let started = Instant::now();
        fixture.edit(HANDLERS, &old, &new);
        // Polling HTTP every 2 ms during the compile would steal CPU from rustc on a small
        // machine; wait on cargo hot's log (a small file read) and then on HTTP.
        run.wait_for_log_count("patched `handlers`", patched_before + 1, WAIT);
        run.wait_for_response_fast("/", WAIT, |b| b.contains(&new));
        patch_times.push(started.elapsed());
    }
    assert_eq!(run.pid(), pid, "every boundary edit must have been a patch");

    let mut restart_times = Vec::new();
    let mut banner = String::from("shared-v1");
    for i in 1..=edits {
        let new = format!("shared-r{i}");
        let started = Instant::now();
        fixture.edit(SHARED, &format!("\"{banner}\""), &format!("\"{new}\""));
        run.wait_for_response_fast("/version", WAIT, |b| b.contains(&new));
        restart_times.push(started.elapsed());
        banner = new;
    }

    let memory = (memory_patches > 0).then(|| {
        let pid = run.pid();
        let before = rss_kib(pid);
        for i in 0..memory_patches {
            let (old, new) = next_label(1000 + i);
            fixture.edit(HANDLERS, &old, &new);
            run.wait_for_response_fast("/", WAIT, |b| b.contains(&new));
        }
        assert_eq!(run.pid(), pid);
        (before, rss_kib(pid))
    });
    let log = run.log();
    run.interrupt();

    // The floor: the boundary's captured rustc command, replayed after the same kind of edit.
    let record = capture_record("handlers");
    let mut rustc_times = Vec::new();
    for i in 1..=edits {
        let (old, new) = next_label(100 + i);
        fixture.edit(HANDLERS, &old, &new);
        let started = Instant::now();
        let status = record.command().stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
        rustc_times.push(started.elapsed());
        assert!(status.success());
    }

    // The cargo-watch / bacon loop: cargo build, stop, start, first response.
    let restart_loop = restart_loop_times(&fixture, edits, &mut next_label);

    let route = route_times(edits);
    let rows = [
        ("bare rustc of the boundary (floor)", &rustc_times),
        ("cargo hot: patch (boundary edit)", &patch_times),
        ("cargo hot: restart (shared crate edit)", &restart_times),
        ("cargo build + restart loop (boundary edit)", &restart_loop),
    ];
    print_rows("test-fixtures/axum-app", edits, &rows);
    print_rows("test-fixtures/lifecycle-app", edits, &[("cargo hot: patch adding a route (hot router)", &route)]);
    let patch = median(&patch_times);
    let floor = median(&rustc_times);
    println!();
    println!(
        "patch − bare rustc:            {:+.0} ms  (target: within 40 ms)",
        patch.as_secs_f64() * 1e3 - floor.as_secs_f64() * 1e3
    );
    println!("patch p95 / median:            {:.2}×  (target: within 2×)", p95(&patch_times).as_secs_f64() / patch.as_secs_f64());
    println!("restart loop / patch:          {:.1}×  faster", median(&restart_loop).as_secs_f64() / patch.as_secs_f64());
    println!("cargo hot restart / patch:     {:.1}×", median(&restart_times).as_secs_f64() / patch.as_secs_f64());
    if let Some((before, after)) = memory {
        println!(
            "memory: RSS {before} KiB → {after} KiB over {memory_patches} patches = {:.1} KiB per patch (target: < 1024)",
            (after as f64 - before as f64) / memory_patches as f64
        );
    }
    // cargo hot's own account of each measured patch: what the pipeline itself costs, and
    // so what is left for the watcher, the debounce, the IPC round trip and the request.
    let reported: Vec<&str> = log.lines().filter(|l| l.contains("patched `handlers`")).skip(1).take(edits).collect();
    let stage = |name: &str| -> Vec<Duration> {
        reported.iter().filter_map(|line| reported_ms(line, name)).map(Duration::from_secs_f64).collect()
    };
    let stages = ["in", "compile", "link", "check", "load"].map(|name| (name, stage(name)));
    if stages.iter().all(|(_, times)| times.len() == edits) {
        let parts: Vec<String> = stages[1..].iter().map(|(name, times)| format!("{name} {}", ms(median(times)))).collect();
        println!("cargo hot's pipeline (medians):  total {} = {}", ms(median(&stages[0].1)), parts.join(", "));
        println!(
            "outside the pipeline (watch, debounce, request): {:.0} ms",
            patch.as_secs_f64() * 1e3 - median(&stages[0].1).as_secs_f64() * 1e3
        );
    }
}

fn print_rows(fixture: &str, edits: usize, rows: &[(&str, &Vec<Duration>)]) {
    println!("\nedit → first response with the new code · {fixture} · {edits} edits each");
    println!("{:<46} {:>10} {:>10} {:>10}", "", "median", "p95", "min");
    for (name, times) in rows {
        println!("{:<46} {:>10} {:>10} {:>10}", name, ms(median(times)), ms(p95(times)), ms(*times.iter().min().unwrap()));
    }
}

/// Each edit adds a route to the router of test-fixtures/lifecycle-app (served through
/// `hot::axum::router`); measured to the new route's first 200 response.
fn route_times(edits: usize) -> Vec<Duration> {
    const WEB: &str = "crates/web/src/lib.rs";
    const ANCHOR: &str = ".route(\"/stats\", get(stats))";
    let fixture = Fixture::copy("lifecycle-app");
    let run = HotRun::start(&fixture, &[]);
    let pid = run.pid();
    let mut times = Vec::new();
    // One warm-up edit first, as for the other rows.
    for i in 0..=edits {
        let route = format!("/route{i}");
        let body = format!("route {i}");
        let patched_before = run.log().matches("patched `web`").count();
        let started = Instant::now();
        fixture.edit(WEB, ANCHOR, &format!("{ANCHOR}\n        .route({route:?}, get(|| async {{ {body:?} }}))"));
        run.wait_for_log_count("patched `web`", patched_before + 1, WAIT);
        run.wait_for_response_fast(&route, WAIT, |b| b == body);
        if i > 0 {
            times.push(started.elapsed());
        }
    }
    assert_eq!(run.pid(), pid, "every added route was a patch");
    run.interrupt();
    times
}

/// Reads `compile 123 ms` (or `in 1.20 s`) from a `patched ...` line.
fn reported_ms(line: &str, name: &str) -> Option<f64> {
    let rest = line.split(&format!("{name} ")).nth(1)?;
    let mut words = rest.split_whitespace();
    let value: f64 = words.next()?.parse().ok()?;
    match words.next()?.trim_end_matches([',', ')']) {
        "ms" => Some(value / 1e3),
        "s" => Some(value),
        _ => None,
    }
}

fn restart_loop_times(fixture: &Fixture, edits: usize, next_label: &mut impl FnMut(usize) -> (String, String)) -> Vec<Duration> {
    let _lock = support::exclusive_build();
    let port = support::free_port();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = || {
        let status = Command::new(&cargo)
            .args(["build", "-q", "-p", "server"])
            .current_dir(fixture.root())
            .env("CARGO_TARGET_DIR", support::shared_target_dir())
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .status()
            .unwrap();
        assert!(status.success());
    };
    let start = || {
        Command::new(support::shared_target_dir().join("debug").join("server"))
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + WAIT;
        loop {
            if support::http(port, "GET", "/", "").is_ok_and(|b| b.contains(needle)) {
                return;
            }
            assert!(Instant::now() < deadline, "the server never answered {needle:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    // Warm-up: the first plain build recompiles the members without cargo hot's wrapper.
    build();
    let mut server = start();
    wait_for("hello");
    let mut times = Vec::new();
    for i in 1..=edits {
        let (old, new) = next_label(200 + i);
        let started = Instant::now();
        fixture.edit(HANDLERS, &old, &new);
        build();
        let _ = server.kill();
        let _ = server.wait();
        server = start();
        wait_for(&new);
        times.push(started.elapsed());
    }
    let _ = server.kill();
    let _ = server.wait();
    times
}

fn capture_record(crate_name: &str) -> RustcInvocation {
    let dir = support::shared_target_dir().join("hot").join("server").join("capture");
    let newest = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{crate_name}-")))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .expect("cargo hot captured the boundary's rustc command");
    RustcInvocation::load(&newest.path()).unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn sorted(times: &[Duration]) -> Vec<Duration> {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted
}

fn median(times: &[Duration]) -> Duration {
    sorted(times)[times.len() / 2]
}

fn p95(times: &[Duration]) -> Duration {
    let sorted = sorted(times);
    sorted[((sorted.len() as f64 * 0.95).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1e3)
}
