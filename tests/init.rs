//! `cargo hot init` on copies of the fixtures, through the real command: the runtime added
//! with the features the app needs, comments kept, a second run changing nothing.

mod support;

use std::process::Command;

use support::{Fixture, CARGO_HOT};

fn init(fixture: &Fixture, args: &[&str]) -> String {
    let output = Command::new(CARGO_HOT).arg("hot").arg("init").args(args).current_dir(fixture.root()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "cargo hot init failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// The fixture's manifest as a user would have it before adopting cargo hot.
fn without_runtime(fixture: &Fixture, manifest: &str) {
    let text = fixture.read(manifest);
    let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("hot-runtime")).collect();
    std::fs::write(fixture.path(manifest), format!("# My server. Comments survive.\n{}\n", kept.join("\n"))).unwrap();
}

#[test]
fn a_single_package_gets_the_runtime_once_with_its_comments_kept() {
    let fixture = Fixture::copy("bin-app");
    without_runtime(&fixture, "Cargo.toml");
    // Its main.rs as it was before, serving the router directly.
    let main = fixture.read("src/main.rs").replace("hot::axum::router(move || routes::router(state.clone()))", "routes::router(state.clone())");
    std::fs::write(fixture.path("src/main.rs"), main).unwrap();
    let out = init(&fixture, &["--runtime-path", &support::runtime_dir().display().to_string()]);
    assert!(out.contains("added hot-runtime to"), "{out}");
    assert!(out.contains("hot::axum::router(move || routes::router(state.clone()))"), "axum found in main.rs: {out}");
    let manifest = fixture.read("Cargo.toml");
    assert!(manifest.starts_with("# My server. Comments survive.\n[package]\n"), "{manifest}");
    let runtime = format!("hot-runtime = {{ path = {:?}, features = [\"axum\"] }}", support::runtime_dir().canonicalize().unwrap().display().to_string());
    assert!(manifest.contains(&runtime), "{manifest}");

    let again = init(&fixture, &[]);
    assert!(again.contains("unchanged:") && again.contains("already depends on hot-runtime"), "{again}");
    assert_eq!(fixture.read("Cargo.toml"), manifest, "a second run changes nothing");
}

#[test]
fn a_workspace_gets_the_runtime_in_host_and_boundary_and_the_boundary_named() {
    let fixture = Fixture::copy("axum-app");
    without_runtime(&fixture, "crates/server/Cargo.toml");
    without_runtime(&fixture, "crates/handlers/Cargo.toml");
    fixture.edit("Cargo.toml", "[workspace.metadata.hot]\nboundary = \"crates/handlers\"\n", "");
    let runtime_manifests = || ["Cargo.toml", "../runtime-macros/Cargo.toml"].map(|m| std::fs::read_to_string(support::runtime_dir().join(m)).unwrap());
    let runtime_before = runtime_manifests();
    let out = init(&fixture, &["-p", "server", "--boundary", "crates/handlers"]);
    assert_eq!(runtime_manifests(), runtime_before, "path dependencies outside the workspace (the runtime's own crates) are left alone: {out}");
    assert!(out.contains("boundary = \"handlers\" to [package.metadata.hot]"), "{out}");
    assert!(fixture.read("crates/server/Cargo.toml").contains("features = [\"axum\"]"));
    assert!(fixture.read("crates/handlers/Cargo.toml").contains("features = [\"tokio\"]"), "the boundary uses tokio");
    assert!(fixture.read("crates/server/Cargo.toml").contains("[package.metadata.hot]\nboundary = \"handlers\""));
    // The boundary is named so that `cargo hot` finds it from anywhere.
    let _lock = support::exclusive_build();
    let explained = support::explain(&fixture, &["crates/handlers/src/lib.rs"]);
    assert!(explained.contains("crates/handlers/src/lib.rs: patch"), "{explained}");
}

#[test]
fn a_server_picked_with_p_is_remembered_for_run_and_explain() {
    let fixture = Fixture::copy("axum-app");
    // A second binary in the workspace: `cargo hot` cannot pick the server by itself.
    std::fs::create_dir_all(fixture.path("crates/tool/src")).unwrap();
    std::fs::write(fixture.path("crates/tool/Cargo.toml"), "[package]\nname = \"tool\"\nversion = \"0.1.0\"\nedition = \"2021\"\n").unwrap();
    std::fs::write(fixture.path("crates/tool/src/main.rs"), "fn main() {}\n").unwrap();
    fixture.edit("Cargo.toml", "\"crates/shared\"]", "\"crates/shared\", \"crates/tool\"]");
    let _lock = support::exclusive_build();
    let refused = Command::new(CARGO_HOT)
        .args(["hot", "explain", "crates/handlers/src/lib.rs"])
        .current_dir(fixture.root())
        .env("CARGO_TARGET_DIR", support::shared_target_dir())
        .output()
        .unwrap();
    assert!(!refused.status.success(), "two binaries: which is the server is not known yet");

    let out = init(&fixture, &["-p", "server"]);
    assert!(fixture.read("Cargo.toml").contains("[workspace.metadata.hot]\nboundary = \"crates/handlers\"\nbin = \"server\""), "{out}\n{}", fixture.read("Cargo.toml"));
    let explained = support::explain(&fixture, &["crates/handlers/src/lib.rs"]);
    assert!(explained.contains("crates/handlers/src/lib.rs: patch"), "run and explain need no -p now: {explained}");
    let again = init(&fixture, &["-p", "server"]);
    assert_eq!(fixture.read("Cargo.toml").matches("bin = \"server\"").count(), 1, "{again}");
}

#[test]
fn with_no_boundary_the_library_holding_the_web_code_gets_the_runtime_and_the_hint() {
    let fixture = Fixture::copy("actix-app");
    without_runtime(&fixture, "crates/server/Cargo.toml");
    without_runtime(&fixture, "crates/site/Cargo.toml");
    fixture.edit("Cargo.toml", "[workspace.metadata.hot]\nboundary = \"crates/site\"\n", "");
    // The app as it was before cargo hot: routes configured by a plain function of `site`.
    let site = fixture.read("crates/site/src/lib.rs").replace("#[hot::export]\n", "").replace("#[hot::export(local)]\n", "");
    std::fs::write(fixture.path("crates/site/src/lib.rs"), site).unwrap();
    fixture.edit("crates/server/src/main.rs", ".configure(hot::actix::configure(site::configure))", ".configure(site::configure)");
    let out = init(&fixture, &["--runtime-path", &support::runtime_dir().display().to_string()]);
    assert!(fixture.read("crates/site/Cargo.toml").contains("features = [\"actix\"]"), "the library with the routes can use #[hot::export]: {out}");
    assert!(fixture.read("crates/server/Cargo.toml").contains("features = [\"actix\"]"), "{out}");
    assert!(out.contains("the library `site`") && out.contains("hot::actix::configure(site::configure)"), "{out}");
    assert!(!fixture.read("Cargo.toml").contains("boundary"), "every library is hot by default: nothing to name");
}
