//! Restarts without cargo (see `src/rebuild.rs`), on test-fixtures/layered-app with `domain`
//! kept restarting (`--exclude domain`): an edit of its sources compiles `domain` again with
//! its captured rustc command, and the crates that depend on it only when they compiled in what
//! changed (a generic function's body, a `const`, an `async fn`'s future), else the host is
//! only linked again. Each edit is checked over HTTP: a crate wrongly left as it was would
//! keep answering with the old text.

mod support;

use std::time::Duration;

use support::{request, Fixture, HotRun};

const WAIT: Duration = Duration::from_secs(300);
const DOMAIN: &str = "crates/domain/src/lib.rs";

/// The crates the last rebuild compiled without cargo, as its start line names them.
fn compiled_without_cargo(log: &str) -> String {
    let line = log.lines().rev().find(|l| l.contains("building `server`")).unwrap_or_default();
    line.split("(compiling ").nth(1).and_then(|rest| rest.split(" without cargo").next()).unwrap_or("(cargo)").to_string()
}

#[test]
fn a_restart_compiles_what_the_edit_reaches_and_nothing_else() {
    let fixture = Fixture::copy("layered-app");
    let run = HotRun::start(&fixture, &["--exclude", "domain"]);
    let mut pid = run.pid();
    assert_eq!(run.get("/stamp").unwrap(), "stamp-1");

    let restart = |pid: &mut u32, file: &str, from: &str, to: &str, path: &str, expected: &str| -> String {
        let mark = run.log().len();
        fixture.edit(file, from, to);
        run.wait_for_response(path, WAIT, |b| b == expected);
        let log = run.wait_for_log("restarted (", mark, WAIT);
        let now = run.pid();
        assert_ne!(now, *pid, "a restart");
        *pid = now;
        compiled_without_cargo(&log[mark..])
    };

    // A plain function's body: only `domain` is compiled; the host, whose middleware calls it,
    // is linked again with the new library.
    assert_eq!(restart(&mut pid, DOMAIN, "\"stamp-1\"", "\"stamp-2\"", "/stamp", "stamp-2"), "`domain`");
    assert_eq!(request(run.port, "GET", "/price/1").unwrap().header("x-stamp"), Some("stamp-2"), "the host's own call");
    assert_eq!(restart(&mut pid, DOMAIN, "store::stock(item) + 1", "store::stock(item) + 2", "/price/3", "price 32"), "`domain`");

    // A generic function `web` instantiates: `web` holds its code, and is compiled again.
    assert_eq!(restart(&mut pid, DOMAIN, "\"value {value}\"", "\"valued {value}\"", "/describe", "valued 42"), "`domain`, `web`, `server`");
    // A const `web` compiles in.
    assert_eq!(restart(&mut pid, DOMAIN, "\"title v1\"", "\"title v2\"", "/title", "title v2"), "`domain`, `web`, `server`");
    // An `async fn` whose future `web` holds: its layout is its body's.
    assert_eq!(
        restart(&mut pid, DOMAIN, "format!(\"hello {name}, visit {visits}\")", "format!(\"hi {name}, visit {visits}\")", "/greet/ann", "hi ann, visit 1"),
        "`domain`, `web`, `server`"
    );
    // Lines added above the generic function: its copy in `web` would name old lines.
    assert_eq!(restart(&mut pid, DOMAIN, "    \"stamp-2\"\n", "    let stamp = \"stamp-3\";\n    stamp\n", "/stamp", "stamp-3"), "`domain`, `web`, `server`");

    // A compile error keeps the program serving; the fix restarts it.
    let mark = run.log().len();
    fixture.edit(DOMAIN, "let stamp = \"stamp-3\";", "let stamp = \"stamp-4\"");
    run.wait_for_log("the build failed", mark, WAIT);
    assert_eq!(run.get("/stamp").unwrap(), "stamp-3");
    assert_eq!(run.pid(), pid, "the last good program keeps serving");
    assert_eq!(restart(&mut pid, DOMAIN, "let stamp = \"stamp-4\"", "let stamp = \"stamp-4\";", "/stamp", "stamp-4"), "`domain`");

    // A manifest change is cargo's to build.
    let manifest = "crates/domain/Cargo.toml";
    let text = fixture.read(manifest);
    let mark = run.log().len();
    std::fs::write(fixture.path(manifest), format!("{text}\n# a comment\n")).unwrap();
    let log = run.wait_for_log("restarted (", mark, WAIT);
    assert_eq!(compiled_without_cargo(&log[mark..]), "(cargo)", "{}", &log[mark..]);
    run.wait_for_response("/stamp", WAIT, |b| b == "stamp-4");
    // ... and cargo compiles what the rebuilds compiled without it: the next edit replays again.
    assert_eq!(restart(&mut pid, DOMAIN, "\"stamp-4\"", "\"stamp-5\"", "/stamp", "stamp-5"), "`domain`");
    assert_eq!(run.get("/describe").unwrap(), "valued 42");
}
