//! Restarts that drop no connection, crash recovery and clean process handling, on the
//! axum fixture (whose server takes its socket from `hot::listener`).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{Fixture, HotRun, CARGO_HOT};

const HANDLERS: &str = "crates/handlers/src/lib.rs";
const SHARED: &str = "crates/shared/src/lib.rs";
const WAIT: Duration = Duration::from_secs(300);

fn start_listening(fixture: &Fixture, extra: &[&str], env: &[(&str, &str)]) -> HotRun {
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["--listen", listen.as_str()];
    args.extend_from_slice(extra);
    HotRun::start_with(fixture, &args, env, port)
}

fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) != Some("Z"))
}

#[test]
fn no_request_fails_under_load_across_patches_and_restarts() {
    let fixture = Fixture::copy("axum-app");
    let run = start_listening(&fixture, &[], &[]);
    let port = run.port;
    let load = support::Load::start(port, "/version", 3);
    let first_pid = run.pid();
    let mut restarts = 0;
    let mut patches = 0;
    for round in 1..=2 {
        fixture.edit(HANDLERS, &format!("handlers v{round}"), &format!("handlers v{}", round + 1));
        run.wait_for_response("/version", WAIT, |b| b.starts_with(&format!("handlers v{}", round + 1)));
        patches += 1;
        let before = run.pid();
        let mark = run.log().len();
        fixture.edit(SHARED, &format!("shared-v{round}"), &format!("shared-v{}", round + 1));
        run.wait_for_response("/version", WAIT, |b| b.ends_with(&format!("shared-v{}", round + 1)));
        assert_ne!(run.pid(), before);
        restarts += 1;
        let log = run.wait_for_log(": ready", mark, WAIT);
        assert!(log[mark..].contains(&format!("accepting on 127.0.0.1:{port}: ready")), "restart time is shown to first accept:\n{log}");
        // Let the load run against the new program for a moment.
        std::thread::sleep(Duration::from_millis(300));
    }
    let (ok, failures) = load.stop();
    println!("load: {ok} requests ok, {} failed, across {patches} patches and {restarts} restarts", failures.len());
    assert_ne!(run.pid(), first_pid);
    assert!(ok > 100, "the load generator ran: {ok} requests");
    assert!(failures.is_empty(), "{} of {} requests failed, e.g. {:?}\n{}", failures.len(), ok + failures.len() as u64, failures.first(), run.log());
}

#[test]
fn a_crash_is_reported_and_the_next_edit_starts_the_program_again() {
    let fixture = Fixture::copy("axum-app");
    let run = start_listening(&fixture, &[], &[]);
    let pid = run.pid();
    let mark = run.log().len();
    assert!(run.get("/crash").is_err());
    let log = run.wait_for_log("killed by SIGABRT", mark, WAIT);
    assert!(log[mark..].contains(&format!("the program (pid {pid}) killed by SIGABRT")), "{log}");
    assert!(log[mark..].contains("| listening on http://127.0.0.1"), "the last lines of output are shown:\n{log}");
    assert!(!process_alive(pid));

    // cargo hot kept running; a patch-worthy edit builds and starts the program.
    fixture.edit(HANDLERS, "hello from v1", "hello after the crash");
    let body = run.wait_for_response("/", WAIT, |b| b.contains("after the crash"));
    assert!(body.starts_with("hello after the crash"));
    assert_ne!(run.pid(), pid);
}

/// With RUST_BACKTRACE=1 a panic is followed by dozens of frames; the report still starts
/// with the panic's location and message (the real panic hook's output, whatever the Rust
/// version prints around the thread's name).
#[test]
fn a_panic_report_shows_the_message_above_the_backtrace() {
    let fixture = Fixture::copy("axum-app");
    let run = start_listening(&fixture, &[], &[("RUST_BACKTRACE", "1")]);
    let mark = run.log().len();
    assert!(run.get("/panic").is_err());
    let log = run.wait_for_log("exited with status 101", mark, WAIT);
    let report = &log[log[mark..].find("exited with status 101").unwrap() + mark..];
    let panicked = report.find("it panicked:").unwrap_or_else(|| panic!("the report says it panicked:\n{report}"));
    let message = report.find("| no DATABASE_URL in the environment").unwrap_or_else(|| panic!("the message is in the report:\n{report}"));
    let frames = report.find("its last output:").unwrap_or_else(|| panic!("the last lines follow:\n{report}"));
    assert!(panicked < message && message < frames, "panic, then its message, then the last lines:\n{report}");
    assert!(report[..frames].contains("panicked at crates/server/src/main.rs"), "{report}");
}

#[test]
fn restart_on_crash_starts_the_program_again_with_backoff() {
    let fixture = Fixture::copy("axum-app");
    let run = start_listening(&fixture, &["--restart-on-crash"], &[]);
    let first = run.pid();
    let mark = run.log().len();
    assert!(run.get("/crash").is_err());
    run.wait_for_log("again (restart-on-crash)", mark, WAIT);
    let second: u32 = run.wait_for_response("/pid", WAIT, |p| p.trim() != first.to_string()).trim().parse().unwrap();
    // A second quick crash waits longer: the backoff doubles, the loop never spins.
    let mark = run.log().len();
    assert!(run.get("/crash").is_err());
    let log = run.wait_for_log("again (restart-on-crash)", mark, WAIT);
    assert!(log[mark..].contains("starting it again in 1.00 s"), "{log}");
    run.wait_for_response("/pid", WAIT, |p| p.trim() != second.to_string());
}

#[test]
fn killing_cargo_hot_leaves_no_process_behind() {
    let fixture = Fixture::copy("axum-app");
    let run = start_listening(&fixture, &[], &[]);
    let pid = run.pid();
    assert!(process_alive(pid));
    Command::new("kill").args(["-KILL", &run.cargo_hot_pid().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while process_alive(pid) {
        assert!(Instant::now() < deadline, "the program (pid {pid}) outlived cargo hot");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_program_ignoring_sigterm_is_killed_after_the_shutdown_timeout() {
    let fixture = Fixture::copy("axum-app");
    let run = start_listening(&fixture, &["--shutdown-timeout", "300ms"], &[("IGNORE_SIGTERM", "1")]);
    let pid = run.pid();
    let mark = run.log().len();
    fixture.edit(SHARED, "shared-v1", "shared-v2");
    let log = run.wait_for_log("was killed", mark, WAIT);
    assert!(log[mark..].contains("ignoring SIGTERM"), "SIGTERM came first:\n{log}");
    assert!(log[mark..].contains(&format!("pid {pid} did not stop within 300 ms of SIGTERM and was killed")), "{log}");
    run.wait_for_response("/version", WAIT, |b| b.ends_with("shared-v2"));
    assert!(!process_alive(pid));
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let fixture = Fixture::copy("axum-app");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = Command::new(CARGO_HOT)
        .args(["hot", "run", "--listen", &address])
        .current_dir(fixture.root())
        .env("CARGO_TARGET_DIR", support::shared_target_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot listen on {address}: the address is already in use")), "{stderr}");
}

/// `--no-hot`: the same loop with restarts only, said once; a boundary edit restarts with a
/// new PID, and nothing is patched.
#[test]
fn no_hot_restarts_for_every_edit_and_says_so_once() {
    let fixture = Fixture::copy("axum-app");
    let run = start_listening(&fixture, &["--no-hot"], &[]);
    let pid = run.pid();
    let mark = run.log().len();
    fixture.edit(HANDLERS, "hello from v1", "hello without patching");
    run.wait_for_response("/", WAIT, |b| b.contains("without patching"));
    assert_ne!(run.pid(), pid, "a restart, not a patch");
    let log = run.wait_for_log("restarted", mark, WAIT);
    assert_eq!(log.matches("restart-only mode (--no-hot)").count(), 1, "said once:\n{log}");
    assert!(log[mark..].contains("changed → restart (restart-only mode)"), "{log}");
    assert!(!log.contains("patched"), "{log}");
}

/// Every process cargo hot starts is reaped as soon as it exits: its warm-up compiles, cargo,
/// the program. A zombie child would stay in the process table until the next patch.
#[test]
fn no_child_of_cargo_hot_is_left_a_zombie() {
    let fixture = Fixture::copy("axum-app");
    let run = HotRun::start(&fixture, &[]);
    let session = run.session_pid();
    let zombie_children = || -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
                // `pid (comm) state ppid ...`
                let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
                fields.first() == Some(&"Z") && fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(session)
            })
            .collect()
    };
    // Through the warm-up compiles (they run after the start) and a restart: a zombie seen twice,
    // a second apart, was not reaped.
    let mut seen: Vec<u32> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut restarted = false;
    while Instant::now() < deadline {
        let now = zombie_children();
        let lasting: Vec<u32> = now.iter().copied().filter(|pid| seen.contains(pid)).collect();
        assert!(lasting.is_empty(), "children of cargo hot left zombies: {lasting:?}\n{}", run.log());
        seen = now;
        if !restarted && Instant::now() + Duration::from_secs(4) > deadline {
            fixture.edit(SHARED, "\"shared-v1\"", "\"shared-v2\"");
            restarted = true;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    run.wait_for_response("/version", WAIT, |b| b.contains("shared-v2"));
}
