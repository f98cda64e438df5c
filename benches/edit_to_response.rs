//! Edit → first response with the new code, on a copy of test-fixtures/axum-app.
//!
//!     cargo bench --bench edit_to_response              # 7 edits of each kind
//!     HOT_BENCH_EDITS=15 HOT_BENCH_PATCHES=200 cargo bench --bench edit_to_response
//!     cargo bench --bench edit_to_response -- route     # only the added-route scenario
//!     cargo bench --bench edit_to_response -- layout    # only the added-type scenario
//!     cargo bench --bench edit_to_response -- --large   # the generated large workspace
//!     cargo bench --bench edit_to_response -- layered   # only the layered workspace
//!     cargo bench --bench edit_to_response -- frameworks # actix-web, tower, a generic router
//!
//! Measures, each as the median (and p95) of repeated edits:
//! - the floor: the boundary's bare rustc invocation, replayed as cargo hot captured it;
//! - a cargo hot patch (edit in the boundary), same process;
//! - a cargo hot restart (edit in the shared crate), new process;
//! - the cargo-watch / bacon loop for the same boundary edit: `cargo build`, stop the
//!   server, start it, first response;
//! - on test-fixtures/lifecycle-app, an edit that adds a route to the router that
//!   `hot::axum::router` serves, to the new route's first response;
//! - on the same app, an edit that adds a type a handler uses: one that could change a layout,
//!   so the patch is compiled a second time with full debug info and its layouts checked.
//!
//! With HOT_BENCH_PATCHES=N it also applies N patches and reports the program's resident
//! memory growth per patch. Times are wall-clock on a shared machine: compare ratios
//! within one run, not absolute numbers across runs.

#[path = "large/generate.rs"]
mod large_app;
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
        write_results(serde_json::json!({}));
        return;
    }
    if std::env::args().skip(1).any(|a| a == "layout") {
        print_rows("test-fixtures/lifecycle-app", edits, &[("cargo hot: patch adding a type (layouts checked)", &layout_times(edits))]);
        write_results(serde_json::json!({}));
        return;
    }
    if std::env::args().skip(1).any(|a| a == "layered") {
        layered(edits);
        write_results(serde_json::json!({}));
        return;
    }
    if std::env::args().skip(1).any(|a| a == "frameworks") {
        let figures = frameworks(edits);
        write_results(figures);
        return;
    }
    if std::env::args().skip(1).any(|a| a == "--large") {
        large(edits);
        return;
    }
    let memory_patches = memory_patches();
    let fixture = Fixture::copy("axum-app");
    eprintln!("fixture: {} · target dir: {}", fixture.root().display(), support::shared_target_dir().display());

    let run = HotRun::start(&fixture, &[]);
    let mut label = String::from("hello from v1");
    let mut next_label = |i: usize| {
        let old = std::mem::replace(&mut label, format!("hello from edit {i}"));
        (old, label.clone())
    };

    // The first patch after the start: the edit comes as soon as the program answers, while
    // the warm-up compile may still run (see `src/warmup.rs`).
    let (old, new) = next_label(0);
    let started = Instant::now();
    fixture.edit(HANDLERS, &old, &new);
    run.wait_for_log_count("patched `handlers`", 1, WAIT);
    run.wait_for_response_fast("/", WAIT, |b| b.contains(&new));
    let first_patch: Vec<Duration> = vec![started.elapsed()];

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
    // The first patch after each of as many restarts: an edit as soon as the new program
    // answers (the warm-up of the crate may still run, or have nothing to do).
    let mut first_patch = first_patch;
    for i in 1..=edits {
        let new = format!("shared-f{i}");
        fixture.edit(SHARED, &format!("\"{banner}\""), &format!("\"{new}\""));
        run.wait_for_response_fast("/version", WAIT, |b| b.contains(&new));
        banner = new;
        let (old, new) = next_label(500 + i);
        let patched_before = run.log().matches("patched `handlers`").count();
        let started = Instant::now();
        fixture.edit(HANDLERS, &old, &new);
        // Waited for as the later patches are (the log, then HTTP): polling HTTP during the
        // compile would slow rustc down on a small machine and this row alone.
        run.wait_for_log_count("patched `handlers`", patched_before + 1, WAIT);
        run.wait_for_response_fast("/", WAIT, |b| b.contains(&new));
        first_patch.push(started.elapsed());
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
        (before, rss_kib(pid), patch_files(&support::shared_target_dir(), &run))
    });
    let log = run.log();
    let session_patches = session_patches_dir(&support::shared_target_dir(), &run);
    run.interrupt();
    let left_behind = disk_bytes(&session_patches);

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

    // The cargo-watch / bacon loop: cargo build, stop, start, first response; for the same
    // two edits as cargo hot's patch and restart.
    let restart_loop = restart_loop_times(&fixture, edits, &mut next_label);
    let shared_loop = shared_loop_times(&fixture, edits);

    let route = route_times(edits);
    let layout = layout_times(edits);
    layered(edits);
    let rows = [
        ("bare rustc of the boundary (floor)", &rustc_times),
        ("cargo hot: first patch after a start or restart", &first_patch),
        ("cargo hot: patch (boundary edit)", &patch_times),
        ("cargo hot: restart (shared crate edit)", &restart_times),
        ("cargo build + restart loop (boundary edit)", &restart_loop),
        ("cargo build + restart loop (shared crate edit)", &shared_loop),
    ];
    print_rows("test-fixtures/axum-app", edits, &rows);
    print_rows(
        "test-fixtures/lifecycle-app",
        edits,
        &[("cargo hot: patch adding a route (hot router)", &route), ("cargo hot: patch adding a type (layouts checked)", &layout)],
    );
    let patch = median(&patch_times);
    let floor = median(&rustc_times);
    println!();
    println!("patch − bare rustc:            {:+.0} ms  (target: within 15 ms)", patch.as_secs_f64() * 1e3 - floor.as_secs_f64() * 1e3);
    println!("patch p95 / median:            {:.2}×  (target: within 2×)", p95(&patch_times).as_secs_f64() / patch.as_secs_f64());
    println!("first patch / later patches:   {:.2}×  (medians; target: at most 1.30×)", median(&first_patch).as_secs_f64() / patch.as_secs_f64());
    println!("restart loop / patch:          {:.1}×  faster", median(&restart_loop).as_secs_f64() / patch.as_secs_f64());
    println!("cargo hot restart / patch:     {:.1}×", median(&restart_times).as_secs_f64() / patch.as_secs_f64());
    println!(
        "cargo hot restart / loop:      {:.2}×  (the same shared crate edit; target: at most 0.90×)",
        median(&restart_times).as_secs_f64() / median(&shared_loop).as_secs_f64()
    );
    let mut figures = serde_json::json!({
        "patch_minus_floor_ms": patch.as_secs_f64() * 1e3 - floor.as_secs_f64() * 1e3,
        "restart_over_loop_same_edit": median(&restart_times).as_secs_f64() / median(&shared_loop).as_secs_f64(),
        "loop_over_patch": median(&restart_loop).as_secs_f64() / patch.as_secs_f64(),
    });
    figures["first_patch_over_later_patches"] = serde_json::json!(median(&first_patch).as_secs_f64() / patch.as_secs_f64());
    if let Some((before, after, files)) = memory {
        figures["memory"] = memory_growth("memory", before, after, memory_patches);
        figures["patch_files"] = files.report("axum-app");
        println!("disk left by the session once it ended: {left_behind} bytes");
        figures["patch_files"]["left_after_the_session_bytes"] = serde_json::json!(left_behind);
    }
    // cargo hot's own account of each measured patch: what the pipeline itself costs, and
    // so what is left for the watcher, the debounce, the IPC round trip and the request.
    let reported: Vec<&str> = log.lines().filter(|l| l.contains("patched `handlers`")).skip(1).take(edits).collect();
    let stage = |name: &str| -> Vec<Duration> { reported.iter().filter_map(|line| reported_ms(line, name)).map(Duration::from_secs_f64).collect() };
    let stages = ["in", "compile", "link", "check", "load"].map(|name| (name, stage(name)));
    if stages.iter().all(|(_, times)| times.len() == edits) {
        let parts: Vec<String> = stages[1..].iter().map(|(name, times)| format!("{name} {}", ms(median(times)))).collect();
        println!("cargo hot's pipeline (medians):  total {} = {}", ms(median(&stages[0].1)), parts.join(", "));
        println!("outside the pipeline (watch, debounce, request): {:.0} ms", patch.as_secs_f64() * 1e3 - median(&stages[0].1).as_secs_f64() * 1e3);
        for (name, times) in &stages {
            figures["pipeline_median_ms"][*name] = serde_json::json!(median(times).as_secs_f64() * 1e3);
        }
    }
    write_results(figures);
}

/// Every measured row and figure of the run, written as JSON at the end (see [`write_results`]).
static RESULTS: std::sync::Mutex<Vec<serde_json::Value>> = std::sync::Mutex::new(Vec::new());

fn record(value: serde_json::Value) {
    RESULTS.lock().unwrap().push(value);
}

fn print_rows(fixture: &str, edits: usize, rows: &[(&str, &Vec<Duration>)]) {
    println!("\nedit → first response with the new code · {fixture} · {edits} edits each");
    println!("{:<50} {:>10} {:>10} {:>10}", "", "median", "p95", "min");
    for (name, times) in rows.iter().filter(|(_, times)| !times.is_empty()) {
        println!("{:<50} {:>10} {:>10} {:>10}", name, ms(median(times)), ms(p95(times)), ms(*times.iter().min().unwrap()));
        let millis = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
        record(serde_json::json!({
            "fixture": fixture,
            "row": name,
            "median_ms": millis(median(times)),
            "p95_ms": millis(p95(times)),
            "min_ms": millis(*times.iter().min().unwrap()),
            "samples_ms": times.iter().map(|t| millis(*t)).collect::<Vec<_>>(),
        }));
    }
}

/// Writes the run's rows and figures, with the machine they were measured on, to
/// `HOT_BENCH_JSON` (default `target/bench/edit_to_response.json`).
fn write_results(extra: serde_json::Value) {
    let path = std::env::var_os("HOT_BENCH_JSON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/edit_to_response.json"));
    let text = |program: &str, args: &[&str]| {
        Command::new(program).args(args).output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| info.lines().find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())))
        .unwrap_or_default();
    let results = serde_json::json!({
        "machine": {
            "cpu": cpu,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "os": text("uname", &["-srm"]),
            "rustc": text("rustc", &["--version"]),
        },
        "rows": RESULTS.lock().unwrap().clone(),
        "figures": extra,
    });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(&path, serde_json::to_string_pretty(&results).unwrap()).unwrap();
    println!("\nresults: {}", path.display());
}

/// Each edit adds a route to the router of test-fixtures/lifecycle-app (served through
/// `hot::axum::router`); measured to the new route's first 200 response.
/// On lifecycle-app, edits that could change a layout (each adds a type a handler uses): the
/// patch is compiled a second time with full debug info and its layouts are compared with the
/// running program's (see src/layout/).
fn layout_times(edits: usize) -> Vec<Duration> {
    const WEB: &str = "crates/web/src/lib.rs";
    const ANCHOR: &str = "async fn served() -> String {";
    let fixture = Fixture::copy("lifecycle-app");
    let run = HotRun::start(&fixture, &[]);
    let pid = run.pid();
    let mut times = Vec::new();
    let mut line = String::from("    format!(\"served={served} cache={started}\")");
    for i in 0..=edits {
        let new = format!("served{i}=");
        let new_line = format!("    format!(\"{new}{{served}} cache={{started}} layout={{}}\", layout.a)");
        let patched_before = run.log().matches("patched `web`").count();
        let started = Instant::now();
        let edited = fixture
            .read(WEB)
            .replace(
                ANCHOR,
                &format!(
                    "struct Layout{i} {{\n    a: u32,\n    b: u64,\n}}\n\n{ANCHOR}\n    let layout = Layout{i} {{ a: {i}, b: 1 }};\n    let _ = layout.b;"
                ),
            )
            .replace(&line, &new_line);
        std::fs::write(fixture.path(WEB), edited).unwrap();
        run.wait_for_log_count("patched `web`", patched_before + 1, WAIT);
        run.wait_for_response_fast("/served", WAIT, |b| b.contains(&new));
        if i > 0 {
            times.push(started.elapsed());
        }
        line = new_line;
    }
    assert_eq!(run.pid(), pid, "every edit was a patch");
    run.interrupt();
    times
}

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
    // With HOT_BENCH_PATCHES=N: N more patches (each rebuilds the router and restarts the job
    // scope), and the program's memory growth per patch.
    let patches = memory_patches();
    if patches > 0 {
        let before = rss_kib(pid);
        let mut label = String::from("index v1");
        for i in 0..patches {
            let new = format!("index m{i}");
            fixture.edit(WEB, &format!("\"{label} "), &format!("\"{new} "));
            run.wait_for_response_fast("/", WAIT, |b| b.starts_with(&format!("{new} ")));
            label = new;
        }
        assert_eq!(run.pid(), pid);
        let memory = memory_growth("lifecycle-app memory", before, rss_kib(pid), patches);
        let files = patch_files(&support::shared_target_dir(), &run).report("lifecycle-app");
        record(serde_json::json!({ "fixture": "test-fixtures/lifecycle-app", "memory": memory, "patch_files": files }));
    }
    run.interrupt();
    times
}

/// One kind of edit of test-fixtures/layered-app: `(file, old, new, path, expected)` for the
/// i-th edit, and the crates its patch compiles.
type LayerEdit = (&'static str, &'static str, Box<dyn FnMut(usize) -> (&'static str, String, String, &'static str, String)>);

/// On test-fixtures/layered-app, with no cargo hot configuration (every library is hot): an
/// edit of a function body in each library crate, to the first response with the new code,
/// and the plain loop for the same edit.
fn layered(edits: usize) {
    const WEB: &str = "crates/web/src/lib.rs";
    const DOMAIN: &str = "crates/domain/src/lib.rs";
    const STORE: &str = "crates/store/src/lib.rs";
    // Each edit replaces the previous one's text: a chain from the fixture's own.
    fn chain(
        file: &'static str,
        path: &'static str,
        first: &str,
        text: impl Fn(usize) -> String + 'static,
        expected: impl Fn(usize) -> String + 'static,
    ) -> Box<dyn FnMut(usize) -> (&'static str, String, String, &'static str, String)> {
        let mut current = first.to_string();
        Box::new(move |i| {
            let new = text(i);
            let old = std::mem::replace(&mut current, new.clone());
            (file, old, new, path, expected(i))
        })
    }
    let kinds = || -> Vec<LayerEdit> {
        vec![
            (
                "cargo hot: patch (web handler edit)",
                "web",
                chain(WEB, "/price/1", "\"price {}\"", |i| format!("\"price w{i} {{}}\""), |i| format!("price w{i} ")),
            ),
            (
                "cargo hot: patch (domain function edit)",
                "domain",
                chain(DOMAIN, "/stamp", "\"stamp-1\"", |i| format!("\"stamp-d{i}\""), |i| format!("stamp-d{i}")),
            ),
            (
                "cargo hot: patch (domain generic, copy in web)",
                "domain",
                chain(DOMAIN, "/describe", "\"value {value}\"", |i| format!("\"value g{i} {{value}}\""), |i| format!("value g{i} ")),
            ),
            (
                "cargo hot: patch (store query edit)",
                "store",
                chain(STORE, "/price/1", "item * 10", |i| format!("item * {}", 5000 + i), |i| format!(" {}", 5001 + i)),
            ),
        ]
    };
    let fixture = Fixture::copy("layered-app");
    let run = HotRun::start(&fixture, &[]);
    let pid = run.pid();
    let mut rows: Vec<(String, Vec<Duration>)> = Vec::new();
    for (name, package, mut edit) in kinds() {
        let needle = format!("patched `{package}`");
        let mut times = Vec::new();
        // The first edit of each kind is its warm-up, as elsewhere.
        for i in 0..=edits {
            let (file, old, new, path, expected) = edit(i);
            let patched_before = run.log().matches(&needle).count();
            let started = Instant::now();
            fixture.edit(file, &old, &new);
            run.wait_for_log_count(&needle, patched_before + 1, WAIT);
            run.wait_for_response_fast(path, WAIT, |b| b.contains(&expected));
            if i > 0 {
                times.push(started.elapsed());
            }
        }
        rows.push((name.to_string(), times));
    }
    assert_eq!(run.pid(), pid, "every edit was a patch:\n{}", run.log());
    assert_eq!(run.get("/hits").unwrap(), "hits 1", "the host's state was kept");
    let log = run.log();
    run.interrupt();
    // cargo hot's own account of each crate's compile in the spanning patches.
    let spans: Vec<&str> = log.lines().filter(|l| l.contains("patched `domain`") && l.contains("web ")).collect();
    if let Some(line) = spans.last() {
        println!("\na generic edit's patch, as cargo hot reports it: {}", line.trim_start_matches("[hot] "));
    }
    let fresh = Fixture::copy("layered-app");
    let mut loops = Vec::new();
    for (name, _, mut edit) in kinds() {
        let times = plain_loop_times(&fresh, edits, &mut |i| edit(100 + i));
        loops.push((name.replace("cargo hot: patch", "cargo build + restart loop"), times));
    }
    let mut all: Vec<(&str, &Vec<Duration>)> = Vec::new();
    for ((name, times), (loop_name, loop_times)) in rows.iter().zip(&loops) {
        all.push((name.as_str(), times));
        all.push((loop_name.as_str(), loop_times));
    }
    print_rows("test-fixtures/layered-app (no configuration)", edits, &all);
    println!();
    for ((name, times), (_, loop_times)) in rows.iter().zip(&loops) {
        let layer = name.trim_start_matches("cargo hot: patch ");
        println!("loop / patch {layer:<42} {:.1}×  faster", median(loop_times).as_secs_f64() / median(times).as_secs_f64());
    }
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
    let mut label = |i: usize| {
        let (old, new) = next_label(200 + i);
        (HANDLERS, old, new.clone(), "/", new)
    };
    plain_loop_times(fixture, edits, &mut label)
}

/// The plain loop for the edit cargo hot restarts for: the shared crate's banner.
fn shared_loop_times(fixture: &Fixture, edits: usize) -> Vec<Duration> {
    let mut banner = fixture.read(SHARED).split('"').find(|s| s.starts_with("shared-")).expect("a shared-... banner").to_string();
    let mut edit = |i: usize| {
        let new = format!("shared-loop{i}");
        let old = std::mem::replace(&mut banner, new.clone());
        (SHARED, format!("\"{old}\""), format!("\"{new}\""), "/version", new)
    };
    plain_loop_times(fixture, edits, &mut edit)
}

/// `cargo build`, stop the server, start it, until `path` answers with the edit's text;
/// `edit(i)` gives (file, old text, new text, path, expected).
fn plain_loop_times(fixture: &Fixture, edits: usize, edit: &mut impl FnMut(usize) -> (&'static str, String, String, &'static str, String)) -> Vec<Duration> {
    let _lock = support::exclusive_build();
    plain_loop_in(fixture, &support::shared_target_dir(), edits, edit)
}

fn plain_loop_in(
    fixture: &Fixture,
    target: &std::path::Path,
    edits: usize,
    edit: &mut impl FnMut(usize) -> (&'static str, String, String, &'static str, String),
) -> Vec<Duration> {
    let port = support::free_port();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = || {
        let status = Command::new(&cargo)
            .args(["build", "-q", "-p", "server"])
            .current_dir(fixture.root())
            .env("CARGO_TARGET_DIR", target)
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .status()
            .unwrap();
        assert!(status.success());
    };
    let start = || Command::new(target.join("debug").join("server")).env("PORT", port.to_string()).stdout(Stdio::null()).spawn().unwrap();
    let wait_for = |path: &str, needle: &str| {
        let deadline = Instant::now() + WAIT;
        loop {
            if support::http(port, "GET", path, "").is_ok_and(|b| b.contains(needle)) {
                return;
            }
            assert!(Instant::now() < deadline, "the server never answered {needle:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    // Warm-up: the first plain build recompiles the members without cargo hot's wrapper.
    build();
    let mut server = start();
    wait_for("/pid", "");
    let mut times = Vec::new();
    for i in 1..=edits {
        let (file, old, new, path, expected) = edit(i);
        let started = Instant::now();
        fixture.edit(file, &old, &new);
        build();
        let _ = server.kill();
        let _ = server.wait();
        server = start();
        wait_for(path, &expected);
        times.push(started.elapsed());
    }
    let _ = server.kill();
    let _ = server.wait();
    times
}

fn capture_record(crate_name: &str) -> RustcInvocation {
    let dir = support::shared_target_dir().join("hot").join("server").join("capture");
    let record = newest(&dir, &format!("{crate_name}-")).expect("cargo hot captured the boundary's rustc command");
    RustcInvocation::load(&record).unwrap()
}

/// `HOT_BENCH_PATCHES`: how many patches the memory measurements apply (0: none).
fn memory_patches() -> usize {
    std::env::var("HOT_BENCH_PATCHES").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Prints the program's resident memory growth per patch; returns it for the JSON results.
fn memory_growth(label: &str, before: u64, after: u64, patches: usize) -> serde_json::Value {
    let per_patch = (after as f64 - before as f64) / patches as f64;
    println!("{label}: RSS {before} KiB → {after} KiB over {patches} patches = {per_patch:.1} KiB per patch (target: ≤ 256)");
    serde_json::json!({ "patches": patches, "rss_before_kib": before, "rss_after_kib": after, "kib_per_patch": per_patch })
}

/// The patch files of a running session's program, and the disk its patches directory uses.
struct PatchFiles {
    count: usize,
    total_bytes: u64,
    directory_bytes: u64,
}

impl PatchFiles {
    fn report(&self, label: &str) -> serde_json::Value {
        let mean = self.total_bytes as f64 / self.count.max(1) as f64;
        println!(
            "{label} patch files: {} of {:.0} KiB each on average; the session's patches directory uses {:.1} MB",
            self.count,
            mean / 1024.0,
            self.directory_bytes as f64 / 1e6
        );
        serde_json::json!({ "count": self.count, "mean_bytes": mean, "directory_bytes": self.directory_bytes })
    }
}

/// `target/hot/<bin>/patches/<session pid>`: every program of the session has its directory.
fn session_patches_dir(target: &std::path::Path, run: &HotRun) -> std::path::PathBuf {
    target.join("hot").join("server").join("patches").join(run.session_pid().to_string())
}

fn patch_files(target: &std::path::Path, run: &HotRun) -> PatchFiles {
    let dir = session_patches_dir(target, run).join(run.pid().to_string());
    let sizes: Vec<u64> = std::fs::read_dir(&dir)
        .map(|entries| entries.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "so")).filter_map(|e| e.metadata().ok()).map(|m| m.len()).collect())
        .unwrap_or_default();
    PatchFiles { count: sizes.len(), total_bytes: sizes.iter().sum(), directory_bytes: disk_bytes(&session_patches_dir(target, run)) }
}

/// The bytes of every file under `path` (0 when it is gone).
fn disk_bytes(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) };
    entries.flatten().map(|e| if e.path().is_dir() { disk_bytes(&e.path()) } else { e.metadata().map(|m| m.len()).unwrap_or(0) }).sum()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap()
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

/// How long the large app's session is left alone after its first patch.
const LARGE_SETTLE_SECONDS: u64 = 15;

/// `--large`: the generated workspace (see `large/generate.rs`) under the target dir, with its
/// own target dir so that its first build is paid once.
fn large(edits: usize) {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("bench");
    let root = base.join("large-app");
    let target = base.join("large-target");
    large_app::write(&root, &support::runtime_dir());
    let fixture = Fixture::at(root.clone());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let plain_build = || {
        let started = Instant::now();
        let status = Command::new(&cargo)
            .args(["build", "-q", "-p", "server"])
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .status()
            .unwrap();
        assert!(status.success(), "the generated app must build");
        started.elapsed()
    };
    let executable = target.join("debug").join("server");
    let size = |path: &std::path::Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);

    // The first build: every dependency (paid once per target dir).
    let first_build = plain_build();
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
    let registry_crates = lock.matches("source = \"registry+").count();
    println!("large app: {} · {} crates.io crates · {} routes", root.display(), registry_crates, large_app::ROUTES);
    println!(
        "plain cargo build before the session: {:.1} s (all dependencies on the first run; remove {} for a cold build)",
        first_build.as_secs_f64(),
        target.display()
    );
    // The plain host: size, and its crate's rebuild (main.rs compiled and linked).
    let touch = |file: &str| std::fs::File::options().write(true).open(root.join(file)).unwrap().set_modified(std::time::SystemTime::now()).unwrap();
    touch("crates/server/src/main.rs");
    let plain_host_rebuild = plain_build();
    let plain_size = size(&executable);

    let port = support::free_port();
    let target_env = target.display().to_string();
    let run = HotRun::start_with(&fixture, &[], &[("CARGO_TARGET_DIR", target_env.as_str())], port);
    let hot_size = size(&executable);
    let link_record = || {
        newest(&target.join("hot").join("server").join("capture"), "link-server-")
            .and_then(|path| std::fs::read_to_string(path).ok())
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .unwrap_or_default()
    };
    // The first link of the session: the dependencies' library too, unless an earlier run left it.
    let first_link = link_record();
    let library_size = first_link["deps_library"].as_str().map(|p| size(std::path::Path::new(p))).unwrap_or(0);

    // The gate's reading of the host: what a build costs before the first patch can be checked.
    let mut gate_reads = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let image = cargo_hot::abi::HostImage::read(&executable, &["api".to_string()]).unwrap();
        gate_reads.push(started.elapsed());
        assert!(image.exports_of("api").count() > 0);
    }

    // Patches: a handler's label.
    let mut label = String::from("route 7 v1");
    let mut patch_times = Vec::new();
    let mut first_patch = Vec::new();
    for i in 0..=edits {
        let new = format!("route 7 v{}", i + 2);
        let patched_before = run.log().matches("patched `api`").count();
        let started = Instant::now();
        fixture.edit(large_app::API, &format!("\"{label}\""), &format!("\"{new}\""));
        run.wait_for_log_count("patched `api`", patched_before + 1, WAIT);
        run.wait_for_response_fast("/r7/1", WAIT, |b| b.contains(&new));
        // The first edit comes right after the start, as the warm-up compile may still run.
        if i > 0 { &mut patch_times } else { &mut first_patch }.push(started.elapsed());
        label = new;
        if i == 0 {
            // Then a pause, as a developer reads the result: the warm-up compile of the crate
            // with line tables (see src/warmup.rs), cold after the app was written anew, ends.
            std::thread::sleep(Duration::from_secs(LARGE_SETTLE_SECONDS));
        }
    }
    // With HOT_BENCH_PATCHES=N: N more handler patches, and the program's memory growth.
    let memory = (memory_patches() > 0).then(|| {
        let pid = run.pid();
        let before = rss_kib(pid);
        for i in 0..memory_patches() {
            let new = format!("route 7 m{i}");
            fixture.edit(large_app::API, &format!("\"{label}\""), &format!("\"{new}\""));
            run.wait_for_response_fast("/r7/1", WAIT, |b| b.contains(&new));
            label = new;
        }
        assert_eq!(run.pid(), pid, "every edit was a patch");
        let memory = memory_growth("large app memory", before, rss_kib(pid), memory_patches());
        let files = patch_files(&target, &run).report("large app");
        serde_json::json!({ "memory": memory, "patch_files": files })
    });
    // Patches of the lower crate: the model's banner, a `const` the handlers compile in (so
    // `api` is compiled again with `model`).
    let mut banner = String::from("model-v1");
    let mut model_times = Vec::new();
    for i in 0..=edits {
        let new = format!("model-p{i}");
        let patched_before = run.log().matches("patched `model`").count();
        let started = Instant::now();
        fixture.edit(large_app::MODEL, &format!("\"{banner}\""), &format!("\"{new}\""));
        run.wait_for_log_count("patched `model`", patched_before + 1, WAIT);
        run.wait_for_response_fast("/", WAIT, |b| b.contains(&new));
        if i > 0 {
            model_times.push(started.elapsed());
        }
        banner = new;
    }
    let model_lines: Vec<String> = run.log().lines().filter(|l| l.contains("patched `model`")).skip(1).map(String::from).collect();
    // Restarts: the host's own route.
    let mut host_label = String::from("host v1");
    let mut restart_times = Vec::new();
    let mut restart_builds = Vec::new();
    for i in 1..=edits {
        let new = format!("host r{i}");
        let mark = run.log().len();
        let started = Instant::now();
        fixture.edit(large_app::SERVER, &format!("\"{host_label}\""), &format!("\"{new}\""));
        run.wait_for_response_fast("/host", WAIT, |b| b.contains(&new));
        restart_times.push(started.elapsed());
        let log = run.wait_for_log("restarted (", mark, WAIT);
        if let Some(build) = log[mark..].lines().find(|l| l.contains("restarted (")).and_then(|l| reported_ms(l, "build")) {
            restart_builds.push(Duration::from_secs_f64(build));
        }
        host_label = new;
    }
    // A restart's link: the workspace's code against the dependencies' library.
    let restart_link_ms = link_record()["duration_ms"].as_u64();
    let ready_lines: Vec<String> = run.log().lines().filter(|l| l.contains("start to first accept")).map(String::from).collect();
    let start_to_accept: Vec<Duration> =
        ready_lines.iter().skip(1).filter_map(|l| reported_ms(l, "start to first accept")).map(Duration::from_secs_f64).collect();
    run.interrupt();

    // The plain loop for the same two edits.
    let loop_for = |file: &'static str, path: &'static str, old: String, prefix: &'static str| {
        let mut current = old;
        let mut edit = |i: usize| {
            let new = format!("{prefix}{i}");
            let old = std::mem::replace(&mut current, new.clone());
            (file, format!("\"{old}\""), format!("\"{new}\""), path, new)
        };
        plain_loop_in(&fixture, &target, edits, &mut edit)
    };
    let api_loop = loop_for(large_app::API, "/r7/1", label, "route 7 loop ");
    let model_loop = loop_for(large_app::MODEL, "/", banner, "model-loop");
    let host_loop = loop_for(large_app::SERVER, "/host", host_label, "host loop");

    print_rows(
        "large generated app (no configuration: `api` and `model` hot)",
        edits,
        &[
            ("cargo hot: first patch after the start (api)", &first_patch),
            ("cargo hot: patch (api handler edit)", &patch_times),
            ("cargo build + restart loop (same edit)", &api_loop),
            ("cargo hot: patch (model const, api compiled again)", &model_times),
            ("cargo build + restart loop (same edit)", &model_loop),
            ("cargo hot: restart (host route edit)", &restart_times),
            ("  of which the build", &restart_builds),
            ("  of which start to first accept", &start_to_accept),
            ("cargo build + restart loop (same edit)", &host_loop),
            ("gate: reading the host (symbols, statics)", &gate_reads),
        ],
    );
    if let Some(line) = model_lines.last() {
        println!("\na model patch, as cargo hot reports it: {}", line.trim_start_matches("[hot] "));
    }
    let ratio = |a: &[Duration], b: &[Duration]| median(a).as_secs_f64() / median(b).as_secs_f64();
    println!();
    println!("loop / patch:                  {:.1}×  faster (target: at least 10×)", ratio(&api_loop, &patch_times));
    println!("loop / model patch:            {:.1}×  faster", ratio(&model_loop, &model_times));
    println!("cargo hot restart / loop:      {:.2}×  (the same host edit; target: at most 0.90×)", ratio(&restart_times, &host_loop));
    println!("first patch / later patches:   {:.2}×  (target: at most 1.30×)", ratio(&first_patch, &patch_times));
    println!(
        "host size: {:.1} MB executable + {:.1} MB library of its dependencies with cargo hot (whole-archive, exported symbols), {:.1} MB plain",
        hot_size as f64 / 1e6,
        library_size as f64 / 1e6,
        plain_size as f64 / 1e6
    );
    let link_ms = |ms: Option<u64>| ms.map(|ms| format!("{ms} ms")).unwrap_or_else(|| "?".into());
    println!(
        "host link at a restart: {} (the workspace's code against the library); at the session's start: {}; the host crate's plain rebuild (main.rs + link): {}",
        link_ms(restart_link_ms),
        link_ms(first_link["duration_ms"].as_u64()),
        ms(plain_host_rebuild)
    );
    write_results(serde_json::json!({
        "large": {
            "registry_crates": registry_crates,
            "routes": large_app::ROUTES,
            "build_before_session_s": first_build.as_secs_f64(),
            "host_bytes_hot": hot_size,
            "deps_library_bytes": library_size,
            "host_bytes_plain": plain_size,
            "first_link_ms": first_link["duration_ms"].as_u64(),
            "restart_link_ms": restart_link_ms,
            "plain_host_crate_rebuild_ms": plain_host_rebuild.as_secs_f64() * 1e3,
            "loop_over_patch": ratio(&api_loop, &patch_times),
            "model_loop_over_patch": ratio(&model_loop, &model_times),
            "restart_over_loop_same_edit": ratio(&restart_times, &host_loop),
            "first_patch_over_later_patches": ratio(&first_patch, &patch_times),
            "memory": memory,
        }
    }));
}

/// The most recently modified file of `dir` whose name starts with `prefix`.
fn newest(dir: &std::path::Path, prefix: &str) -> Option<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

/// One fixture of `-- frameworks`: where its hot handler's text and its host's text are.
struct FrameworkApp {
    name: &'static str,
    /// The hot crate's file, a text in it, and the path that answers it.
    handler: (&'static str, &'static str, &'static str),
    /// The host's own file, a text in it, and the path that answers it (None: every crate is
    /// hot, nothing restarts).
    host: Option<(&'static str, &'static str, &'static str)>,
}

const FRAMEWORK_APPS: &[FrameworkApp] = &[
    FrameworkApp {
        name: "actix-app",
        handler: ("crates/site/src/lib.rs", "hello v1", "/api/hello"),
        host: Some(("crates/server/src/main.rs", "host v1", "/host")),
    },
    FrameworkApp {
        name: "tower-app",
        handler: ("crates/api/src/lib.rs", "hello v1", "/hello"),
        host: Some(("crates/server/src/main.rs", "host v1", "/host")),
    },
    FrameworkApp { name: "generic-app", handler: ("crates/api/src/lib.rs", "index v1", "/"), host: None },
];

/// `-- frameworks`: on the actix-web, tower and generic-router fixtures, a cargo hot patch of
/// a handler and a restart for an edit of the host, each next to the plain loop for the same
/// edit; then the requests that fail while the program restarts, with the ports it binds
/// itself held by cargo hot (the default) and without (`--no-hold-ports`).
fn frameworks(edits: usize) -> serde_json::Value {
    let mut figures = serde_json::Map::new();
    for app in FRAMEWORK_APPS {
        let fixture = Fixture::copy(app.name);
        let run = HotRun::start(&fixture, &[]);
        let pid = run.pid();
        let (file, text, path) = app.handler;
        let mut label = text.to_string();
        let mut patches = Vec::new();
        for i in 1..=edits {
            let new = format!("{} e{i}", text.trim_end_matches(" v1"));
            let patched_before = run.log().matches("patched `").count();
            let started = Instant::now();
            fixture.edit(file, &label, &new);
            run.wait_for_log_count("patched `", patched_before + 1, WAIT);
            run.wait_for_response_fast(path, WAIT, |b| b.contains(&new));
            patches.push(started.elapsed());
            label = new;
        }
        assert_eq!(run.pid(), pid, "{}: every handler edit was a patch", app.name);
        let mut restarts = Vec::new();
        if let Some((file, text, path)) = app.host {
            let mut label = text.to_string();
            for i in 1..=edits {
                let new = format!("host r{i}");
                let started = Instant::now();
                fixture.edit(file, &label, &new);
                run.wait_for_response_fast(path, WAIT, |b| b.contains(&new));
                restarts.push(started.elapsed());
                label = new;
            }
        }
        drop(run);
        let mut handler_label = label;
        let mut loop_patch_edit = |i: usize| {
            let new = format!("{} l{i}", text.trim_end_matches(" v1"));
            let old = std::mem::replace(&mut handler_label, new.clone());
            (file, old, new.clone(), path, new)
        };
        let loop_patches = plain_loop_times(&fixture, edits, &mut loop_patch_edit);
        let loop_restarts = match app.host {
            Some((file, _, path)) => {
                let mut host_label = format!("host r{edits}");
                let mut edit = |i: usize| {
                    let new = format!("host l{i}");
                    let old = std::mem::replace(&mut host_label, new.clone());
                    (file, old, new.clone(), path, new)
                };
                plain_loop_times(&fixture, edits, &mut edit)
            }
            None => Vec::new(),
        };
        print_rows(
            &format!("test-fixtures/{}", app.name),
            edits,
            &[
                ("cargo hot: patch (handler edit)", &patches),
                ("cargo build + restart loop (handler edit)", &loop_patches),
                ("cargo hot: restart (host edit)", &restarts),
                ("cargo build + restart loop (host edit)", &loop_restarts),
            ],
        );
        let ratio = |a: &[Duration], b: &[Duration]| (!a.is_empty() && !b.is_empty()).then(|| median(a).as_secs_f64() / median(b).as_secs_f64());
        if let Some(r) = ratio(&loop_patches, &patches) {
            println!("loop / patch:                  {r:.1}×  faster");
        }
        if let Some(r) = ratio(&restarts, &loop_restarts) {
            println!("cargo hot restart / loop:      {r:.2}×");
        }
        figures.insert(
            app.name.to_string(),
            serde_json::json!({ "loop_over_patch": ratio(&loop_patches, &patches), "restart_over_loop": ratio(&restarts, &loop_restarts) }),
        );
    }
    let held = failures_across_restarts("actix-app", &[], edits.min(5));
    let not_held = failures_across_restarts("actix-app", &["--no-hold-ports"], edits.min(5));
    println!("\nrequests during restarts of test-fixtures/actix-app (binds its own port, no hot::listener):");
    println!("  ports held by cargo hot (the default):  {} of {} failed", held.0, held.1);
    println!("  --no-hold-ports:                        {} of {} failed", not_held.0, not_held.1);
    figures.insert(
        "failed_requests_across_restarts".into(),
        serde_json::json!({ "held": { "failed": held.0, "sent": held.1 }, "not_held": { "failed": not_held.0, "sent": not_held.1 } }),
    );
    serde_json::Value::Object(figures)
}

/// Requests (one connection each, from 3 threads every 2 ms) that fail while `restarts` edits
/// of the host restart the program: (failed, sent).
fn failures_across_restarts(name: &str, args: &[&str], restarts: usize) -> (u64, u64) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let fixture = Fixture::copy(name);
    let run = HotRun::start(&fixture, args);
    let port = run.port;
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    sent.fetch_add(1, Ordering::SeqCst);
                    if support::http(port, "GET", "/pid", "").is_err() {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    let mut label = "host v1".to_string();
    for i in 1..=restarts {
        let before = run.pid();
        let new = format!("host h{i}");
        fixture.edit("crates/server/src/main.rs", &label, &new);
        run.wait_for_response("/host", WAIT, |b| b.contains(&new));
        assert_ne!(run.pid(), before, "the host edit restarted the program");
        label = new;
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::SeqCst);
    for thread in load {
        thread.join().unwrap();
    }
    (failed.load(Ordering::SeqCst), sent.load(Ordering::SeqCst))
}
