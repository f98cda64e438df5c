//! test-fixtures/two-boundaries: two boundaries (`jobs` depends on `api`, and both patch) and every
//! configuration key in use (restart, ignore, watch, env-file). `cargo hot explain` on real
//! dep-info, then the same decisions made by a running `cargo hot run`.

mod support;

use std::time::Duration;

use support::{explain, Fixture, HotRun};

const WAIT: Duration = Duration::from_secs(300);

#[test]
fn explain_says_what_each_change_does_and_why() {
    let _lock = support::exclusive_build();
    let fixture = Fixture::copy("two-boundaries");
    fixture.touch_all();
    std::fs::write(fixture.path("notes.txt"), "todo").unwrap();
    std::fs::write(fixture.path("debug.log"), "log").unwrap();
    let paths = [
        ("crates/jobs/src/lib.rs", "patch", "compiled only by the boundary `jobs`"),
        ("crates/api/src/lib.rs", "patch", "compiled only by the boundary `api`"),
        ("crates/server/src/main.rs", "restart", "server"),
        ("Cargo.toml", "restart", "a manifest changed"),
        ("crates/api/Cargo.toml", "restart", "a manifest changed"),
        ("Cargo.lock", "restart", "the lock file changed"),
        ("templates/page.html", "restart", "matches restart pattern `templates/**`"),
        ("migrations/001_init.sql", "restart", "a watched file (`migrations`"),
        ("dev.env", "restart", "the env-file changed"),
        ("README.md", "ignored", "matches ignore pattern `**/*.md`"),
        ("notes.txt", "ignored", "no crate of `server` compiles it"),
        ("debug.log", "ignored", "git ignores it"),
        (".git/HEAD", "ignored", "git metadata"),
    ];
    let args: Vec<&str> = paths.iter().map(|(p, _, _)| *p).collect();
    let out = explain(&fixture, &args);
    // Under a patched file, one indented line per function (see held_values for their verdicts).
    assert!(out.contains("crates/jobs/src/lib.rs: patch (compiled only by the boundary `jobs`)\n  run: patch\n"), "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with("  ")).collect();
    assert_eq!(lines.len(), paths.len(), "{out}");
    for ((path, word, why), line) in paths.iter().zip(&lines) {
        assert!(line.starts_with(&format!("{path}: {word} (")), "{path}: expected {word}, got: {line}");
        assert!(line.contains(why), "{path}: expected the reason to mention {why:?}: {line}");
    }

    // Flags override the manifest: an ignore pattern on the command line wins over its restart pattern.
    let out = explain(&fixture, &["--ignore", "templates/**", "--restart", "*.txt", "templates/page.html", "notes.txt"]);
    assert!(out.contains("templates/page.html: ignored (matches ignore pattern `templates/**` of the command line)"), "{out}");
    assert!(out.contains("notes.txt: restart (matches restart pattern `*.txt` of the command line)"), "{out}");

    // With no path: the tree and the rules.
    let summary = explain(&fixture, &[]);
    for expected in [
        "host: `server`",
        "  api: 1 file in crates/api",
        "a patch of it compiles `jobs` again only where",
        "  jobs: 1 file in crates/jobs",
        "restart: `templates/**`",
        "watch: `migrations`",
        "ignore: `**/*.md`",
        "env-file dev.env",
    ] {
        assert!(summary.contains(expected), "summary lacks {expected:?}:\n{summary}");
    }
}

#[test]
fn two_boundaries_and_configured_files_while_running() {
    let fixture = Fixture::copy("two-boundaries");
    let run = HotRun::start(&fixture, &[]);
    let pid = run.pid();
    assert_eq!(run.get("/env").unwrap(), "hello-from-env", "the env-file reaches the program");
    assert_eq!(run.get("/jobs").unwrap(), "jobs v1 + helper v1");

    // An edit of the boundary nobody depends on patches.
    fixture.edit("crates/jobs/src/lib.rs", "jobs v1", "jobs v2");
    run.wait_for_response("/jobs", WAIT, |b| b.starts_with("jobs v2"));
    assert_eq!(run.pid(), pid);

    // An ignored file does nothing (and says so).
    let mark = run.log().len();
    fixture.edit("README.md", "both are boundaries", "both are hot");
    run.wait_for_log("README.md changed → ignored", mark, WAIT);
    assert_eq!(run.pid(), pid);

    // An edit of the boundary `jobs` depends on patches too: the function `jobs` calls
    // directly is redirected to the new code.
    let mark = run.log().len();
    fixture.edit("crates/api/src/lib.rs", "helper v1", "helper v2");
    run.wait_for_response("/jobs", WAIT, |b| b == "jobs v2 + helper v2");
    let log = run.wait_for_log("patched `api`", mark, WAIT);
    assert!(log[mark..].contains("`api::helper` redirected"), "{log}");
    assert_eq!(run.pid(), pid);
    // A restart key, then the same program for the rest.
    let mark = run.log().len();
    fixture.edit("crates/api/Cargo.toml", "edition = \"2021\"", "edition = \"2021\"\n# edited");
    run.wait_for_log("restarted", mark, WAIT);
    // The outcome line can come before the new program accepts.
    let second = run.wait_for_response("/pid", WAIT, |p| p.trim() != pid.to_string()).trim().parse::<u32>().unwrap();

    // The env-file restarts with the new environment.
    let mark = run.log().len();
    fixture.edit("dev.env", "hello-from-env", "changed-env");
    run.wait_for_response("/env", WAIT, |b| b == "changed-env");
    // The new program can answer before the outcome line is printed: the next mark comes after it.
    run.wait_for_log("restarted", mark, WAIT);
    assert_ne!(run.pid(), second);
    let third = run.pid();

    // A watched file outside any crate restarts.
    let mark = run.log().len();
    fixture.edit("migrations/001_init.sql", "notes", "memos");
    let log = run.wait_for_log("restarted", mark, WAIT);
    assert!(log[mark..].contains("a watched file"), "{log}");
    run.wait_for_response("/pid", WAIT, |p| p.trim() != third.to_string());

    // A rule added while the build is broken applies once it is fixed.
    let mark = run.log().len();
    fixture.edit("crates/server/src/main.rs", "fn main() {", "fn main() { let broken: u8 = \"\";");
    run.wait_for_log("the build failed", mark, WAIT);
    let mark = run.log().len();
    fixture.edit("Cargo.toml", "restart = [\"templates/**\"]", "restart = [\"templates/**\", \"notes.txt\"]");
    run.wait_for_log("the build failed", mark, WAIT);
    let mark = run.log().len();
    fixture.edit("crates/server/src/main.rs", "fn main() { let broken: u8 = \"\";", "fn main() {");
    run.wait_for_log("restarted", mark, WAIT);
    // The new program may not accept yet when the line is printed.
    let fourth: u32 = run.wait_for_response("/pid", WAIT, |p| p.trim().parse::<u32>().is_ok()).trim().parse().unwrap();
    let mark = run.log().len();
    std::fs::write(fixture.path("notes.txt"), "a new rule\n").unwrap();
    let log = run.wait_for_log("restarted", mark, WAIT);
    assert!(log[mark..].contains("matches restart pattern `notes.txt`"), "{log}");
    run.wait_for_response("/pid", WAIT, |p| p.trim() != fourth.to_string());
}
