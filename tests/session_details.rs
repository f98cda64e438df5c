//! What a new user met in a first session, each checked end to end on a copy of
//! test-fixtures/axum-app: `explain` beside a running session builds nothing, `sed -i`'s
//! temporary file is not named as a change, a `watch` entry outside the workspace added during
//! the session is watched, and Ctrl-C says the session ended.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Fixture, HotRun, CARGO_HOT};

const HANDLERS: &str = "crates/handlers/src/lib.rs";
const WAIT: Duration = Duration::from_secs(300);

#[test]
fn a_first_session_explains_watches_and_ends_as_a_user_expects() {
    let fixture = Fixture::copy("axum-app");
    let run = HotRun::start(&fixture, &[]);
    let pid = run.pid();

    // `cargo hot explain` while the session runs reads the session's last build.
    let explained = Command::new(CARGO_HOT)
        .args(["hot", "explain", HANDLERS])
        .current_dir(fixture.root())
        .env("CARGO_TARGET_DIR", support::shared_target_dir())
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&explained.stdout), String::from_utf8_lossy(&explained.stderr));
    assert!(explained.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("{HANDLERS}: patch")), "{stdout}");
    let note = format!("from the last build of the cargo hot session running as pid {}: nothing was built", run.session_pid());
    assert!(stderr.contains(&note), "{stderr}");
    assert!(!stderr.contains("Compiling") && !stderr.contains("building"), "explain built something:\n{stderr}");

    // `sed -i` writes a temporary file beside the source and renames it over it: only the
    // source is the change.
    let mark = run.log().len();
    let sed = Command::new("sed").args(["-i", "s/hello from v1/hello from v2/"]).arg(fixture.path(HANDLERS)).status().unwrap();
    assert!(sed.success());
    run.wait_for_response("/", WAIT, |b| b.starts_with("hello from v2"));
    let log = run.wait_for_log("patched `handlers`", mark, WAIT);
    let change = log[mark..].lines().find(|l| l.contains("changed →")).unwrap_or_else(|| panic!("no change line:\n{log}"));
    assert!(change.contains("crates/handlers/src/lib.rs changed →") && !change.contains("sed"), "{change}");
    assert_eq!(run.pid(), pid);

    // A `watch` entry outside the workspace, added during the session, is watched from then on.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("seed.sql"), "-- v1").unwrap();
    let mark = run.log().len();
    let entry = format!("boundary = \"crates/handlers\"\nwatch = [{:?}]\n", outside.path().display().to_string());
    fixture.edit("Cargo.toml", "boundary = \"crates/handlers\"\n", &entry);
    run.wait_for_log("restarted", mark, WAIT);
    let after_manifest = run.pid();
    assert_ne!(after_manifest, pid);
    let mark = run.log().len();
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(outside.path().join("seed.sql"), "-- v2").unwrap();
    let log = run.wait_for_log("seed.sql changed", mark, WAIT);
    run.wait_for_log("restarted", mark, WAIT);
    assert!(log[mark..].contains("restart"), "{log}");
    assert_ne!(run.pid(), after_manifest, "the watched file restarted the program");

    // Ctrl-C: the terminal says what happened, without -v.
    let (status, log) = run.interrupt_with_log();
    assert_eq!(status.code(), Some(130));
    assert!(log.contains("session ended (Ctrl-C)"), "{log}");
}
