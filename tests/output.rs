//! What cargo hot prints, end to end on copies of test-fixtures/axum-app: the JSON event
//! stream for editors, the absence of feedback loops when its output lands in the
//! workspace, and the terminal experience under a pseudo-terminal.

mod support;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Fixture, HotRun, Logs};

const HANDLERS: &str = "crates/handlers/src/lib.rs";
const SHARED: &str = "crates/shared/src/lib.rs";
const WAIT: Duration = Duration::from_secs(300);

/// Every line of `--message-format json` is one object with a `kind`; a patch and a restart
/// appear with their durations and PIDs; the program's own output goes to standard error.
#[test]
fn json_events_describe_a_patch_and_a_restart() {
    let fixture = Fixture::copy("axum-app");
    let stderr_dir = tempfile::tempdir().unwrap();
    let stderr = stderr_dir.path().join("stderr.log");
    let run = HotRun::launch(&fixture, &["--message-format", "json"], &[], support::free_port(), Logs::Split { stderr: stderr.clone() });
    let first_pid = run.pid();

    fixture.edit(HANDLERS, "hello from v1", "hello from v2");
    run.wait_for_response("/", WAIT, |b| b.contains("v2"));
    run.wait_for_log("\"kind\":\"patched\"", 0, WAIT);
    fixture.edit(SHARED, "\"shared-v1\"", "\"shared-v2\"");
    run.wait_for_response("/version", WAIT, |b| b.contains("shared-v2"));
    run.wait_for_log("\"kind\":\"restarted\"", 0, WAIT);
    // Readiness is seen by cargo hot a moment after the program first answers.
    run.wait_for_log_count("\"kind\":\"ready\"", 2, WAIT);
    let second_pid = run.pid();
    assert_ne!(first_pid, second_pid);
    let (status, stdout) = run.interrupt_with_log();
    assert_eq!(status.code(), Some(130), "SIGINT ends cargo hot with 128 + 2");

    let events: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line:?}\n{stdout}")))
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().expect("every event has a kind")).collect();
    let of = |kind: &'static str| events.iter().filter(move |e| e["kind"] == kind);
    for kind in ["session-started", "build-started", "build-finished", "started", "ready", "change", "patch-started", "patched", "restarted", "stopped", "session-ended"] {
        assert!(kinds.contains(&kind), "no `{kind}` event in {kinds:?}");
    }
    assert!(kinds.iter().position(|k| *k == "build-started") < kinds.iter().position(|k| *k == "build-finished"));

    let patch_change = of("change").find(|e| e["action"]["action"] == "patch").expect("the handlers edit is a patch");
    assert!(patch_change["paths"][0].as_str().unwrap().ends_with(HANDLERS), "{patch_change}");
    assert_eq!(patch_change["action"]["boundaries"][0], "handlers");
    let patched = of("patched").next().unwrap();
    assert_eq!(patched["boundary"], "handlers");
    assert_eq!(patched["pid"].as_u64(), Some(u64::from(first_pid)));
    let total = patched["total_ms"].as_u64().expect("total_ms");
    let phases: u64 = ["compile_ms", "link_ms", "check_ms", "load_ms"].iter().map(|k| patched[*k].as_u64().unwrap_or_else(|| panic!("{k} in {patched}"))).sum();
    assert!(total > 0 && phases <= total, "the phases ({phases} ms) fit in the total ({total} ms): {patched}");
    assert!(patched["message"].as_str().unwrap().starts_with("patched `handlers`"), "the terminal's words ride along: {patched}");

    let restart_change = of("change").find(|e| e["action"]["action"] == "restart").expect("the shared edit restarts");
    assert_eq!(restart_change["action"]["why"]["why"], "other-crate");
    assert_eq!(restart_change["action"]["why"]["package"], "shared");
    let restarted = of("restarted").next().unwrap();
    assert_eq!((restarted["previous_pid"].as_u64(), restarted["pid"].as_u64()), (Some(u64::from(first_pid)), Some(u64::from(second_pid))));
    assert!(restarted["build_ms"].as_u64().unwrap() > 0, "{restarted}");
    assert_eq!(restarted["cause"]["cause"], "change");
    let ready: Vec<&Value> = of("ready").collect();
    assert_eq!(ready.len(), 2, "ready once per start: {ready:?}");
    assert_eq!(ready[1]["pid"].as_u64(), Some(u64::from(second_pid)));
    assert!(ready[1]["since_trigger_ms"].as_u64().is_some() && ready[1]["address"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(of("build-finished").all(|e| e["ok"] == true && e["duration_ms"].as_u64().is_some()));
    // Progress is throttled, and each build's bar ends full.
    let mut progress: Vec<&Value> = Vec::new();
    for event in &events {
        match event["kind"].as_str() {
            Some("build-started") => progress.clear(),
            Some("build-progress") => progress.push(event),
            Some("build-finished") if !progress.is_empty() => {
                let last = progress.last().unwrap();
                assert_eq!(last["done"], last["total"], "the bar ends full: {last}");
                let total = progress.iter().filter_map(|e| e["total"].as_u64()).max().unwrap();
                assert!(progress.len() as u64 <= total + 1, "{} progress events for {total} units", progress.len());
            }
            _ => {}
        }
    }

    let program_output = std::fs::read_to_string(&stderr).unwrap();
    assert!(program_output.contains("listening on http://127.0.0.1"), "the program's output is on standard error:\n{program_output}");
}

/// `cargo hot run > dev.log 2>&1` inside the workspace, then a crash, then quiet: the log is
/// no change, nothing is rebuilt, and a change that cannot fix the crash builds nothing.
#[test]
fn output_redirected_into_the_workspace_causes_no_loop_after_a_crash() {
    let fixture = Fixture::copy("axum-app");
    let log = fixture.path("dev.log");
    let run = HotRun::launch(&fixture, &[], &[], support::free_port(), Logs::Combined(Some(log)));
    assert!(run.get("/crash").is_err());
    let mark = run.wait_for_log("killed by SIGABRT", 0, WAIT).len();
    // A file no crate compiles cannot fix a crash: it is ignored, and said once.
    std::fs::write(fixture.path("notes.txt"), "one").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(fixture.path("notes.txt"), "two").unwrap();
    std::thread::sleep(Duration::from_secs(10));

    let after = run.log()[mark..].to_string();
    assert!(!after.contains("building"), "nothing builds after the crash:\n{after}");
    assert!(!run.log().contains("dev.log"), "cargo hot's own output is never a change:\n{}", run.log());
    assert_eq!(after.matches("notes.txt changed").count(), 1, "an ignored file is said once:\n{after}");
    assert!(after.lines().count() < 10, "the log stays short:\n{after}");
    assert!(run.get("/").is_err(), "the crashed program was not started again");

    // A change that could fix it builds and starts the program.
    let mark = run.log().len();
    fixture.edit(HANDLERS, "hello from v1", "hello after the crash");
    run.wait_for_response("/", WAIT, |b| b.contains("after the crash"));
    assert!(run.log()[mark..].contains("build"), "{}", run.log());
}

/// A pseudo-terminal pair; the test holds the controller side.
struct Pty {
    controller: std::fs::File,
    terminal: OwnedFd,
}

fn open_pty() -> Pty {
    let (controller, terminal) = cargo_hot::sys::open_pty().expect("a pseudo-terminal");
    // SAFETY: `controller` is a descriptor we own; the File takes it over.
    let controller = unsafe { std::fs::File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(controller)) };
    Pty { controller, terminal }
}

/// On a terminal: a progress bar during the build, the program's colours kept (it sees a
/// terminal too), compiler errors in colour, and `q` quits with status 0.
#[test]
fn on_a_terminal_progress_colours_and_keys_work() {
    let fixture = Fixture::copy("axum-app");
    let _lock = support::exclusive_build();
    fixture.touch_all();
    let port = support::free_port();
    let pty = open_pty();
    let terminal = || Stdio::from(pty.terminal.try_clone().unwrap());
    let raw_terminal = pty.terminal.as_raw_fd();
    let mut command = Command::new(support::CARGO_HOT);
    command
        .args(["hot", "run"])
        .current_dir(fixture.root())
        .env("CARGO_TARGET_DIR", support::shared_target_dir())
        .env("PORT", port.to_string())
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stdin(terminal())
        .stdout(terminal())
        .stderr(terminal());
    // SAFETY: between fork and exec only async-signal-safe calls: a new session whose
    // controlling terminal is the pseudo-terminal, as a shell would give.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            if libc::setsid() < 0 || libc::ioctl(raw_terminal, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    drop(pty.terminal);
    let screen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut controller = pty.controller;
    {
        let mut reader = controller.try_clone().unwrap();
        let screen = screen.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = reader.read(&mut buffer) {
                screen.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
    }
    let text = || String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();
    let wait_for = |needle: &str, after: usize| {
        let deadline = Instant::now() + WAIT;
        while !text().get(after..).is_some_and(|t| t.contains(needle)) {
            assert!(Instant::now() < deadline, "timed out waiting for {needle:?} on the terminal:\n{}", text());
            std::thread::sleep(Duration::from_millis(50));
        }
        text().len()
    };
    wait_for("ready", 0);
    let started = text();
    assert!(started.matches("keys: r rebuild and restart now · c clear the screen · q quit").count() == 1, "keys shown once:\n{started}");
    assert!(started.contains("  build [") && started.contains("/"), "a progress bar during the build:\n{started}");
    assert!(started.contains("\x1b[1mthe program's standard output is a terminal\x1b[0m"), "the program sees a terminal, its colours pass:\n{started}");

    let mark = text().len();
    fixture.edit(HANDLERS, "let hits = state.hits", "let hits: String = state.hits");
    let end = wait_for("does not compile", mark);
    let shown = &text()[mark..end];
    let error_line = shown.lines().find(|l| l.contains("error") && l.contains('[')).unwrap_or_else(|| panic!("a compiler error:\n{shown}"));
    assert!(error_line.contains("\x1b["), "the compiler's error is in colour: {error_line:?}");

    controller.write_all(b"q").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "q did not quit:\n{}", text());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "q quits with status 0:\n{}", text());
    assert!(support::http(port, "GET", "/", "").is_err(), "the program stopped with cargo hot");
}
