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
