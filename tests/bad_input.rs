//! Configuration mistakes are reported before anything is built, with what to do.

mod support;

use std::process::Command;

use support::{Fixture, CARGO_HOT};

fn run_hot(fixture: &Fixture, args: &[&str]) -> (i32, String) {
    let output = Command::new(CARGO_HOT)
        .arg("hot")
        .arg("run")
        .args(args)
        .current_dir(fixture.root())
        .env("CARGO_TARGET_DIR", support::shared_target_dir())
        .output()
        .unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn boundary_that_is_not_a_crate_of_the_host_is_refused() {
    let fixture = Fixture::copy("axum-app");
    let (code, stderr) = run_hot(&fixture, &["--boundary", "crates/nope"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("crates/nope") && stderr.contains("does not exist"), "{stderr}");

    // A workspace member the host does not depend on.
    std::fs::create_dir_all(fixture.path("crates/unused/src")).unwrap();
    std::fs::write(fixture.path("crates/unused/Cargo.toml"), "[package]\nname = \"unused\"\nversion = \"0.1.0\"\nedition = \"2021\"\n").unwrap();
    std::fs::write(fixture.path("crates/unused/src/lib.rs"), "").unwrap();
    fixture.edit("Cargo.toml", "\"crates/shared\"]", "\"crates/shared\", \"crates/unused\"]");
    let (code, stderr) = run_hot(&fixture, &["--boundary", "unused"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is not a dependency of `server`"), "{stderr}");
}

#[test]
fn broken_manifest_is_reported_not_swallowed() {
    let fixture = Fixture::copy("axum-app");
    fixture.edit("crates/server/Cargo.toml", "[dependencies]", "[dependencies\n");
    let (code, stderr) = run_hot(&fixture, &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cargo could not read the workspace"), "{stderr}");
    assert!(stderr.contains("Cargo.toml"), "{stderr}");
}

#[test]
fn unknown_config_keys_warn_and_wrong_types_fail() {
    let fixture = Fixture::copy("axum-app");
    fixture.edit("Cargo.toml", "boundary = \"crates/handlers\"", "boundary = 3");
    let (code, stderr) = run_hot(&fixture, &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("`boundary`") && stderr.contains("Cargo.toml"), "{stderr}");
}

/// `cargo hot ...` (cargo finds cargo-hot on PATH and passes `hot` first) and `cargo-hot run`.
#[test]
fn works_as_a_cargo_subcommand_and_standalone() {
    let fixture = Fixture::copy("axum-app");
    let bin_dir = std::path::Path::new(CARGO_HOT).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap()))).unwrap();
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["hot", "run", "--boundary", "crates/nope"])
        .current_dir(fixture.root())
        .env("PATH", path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("crates/nope") && stderr.contains("does not exist"), "{stderr}");

    let output = Command::new(CARGO_HOT).args(["run", "--boundary", "crates/nope"]).current_dir(fixture.root()).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));
    let help = Command::new(CARGO_HOT).args(["hot", "run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--boundary", "--package", "--bin", "--features", "--no-default-features", "--release", "--profile", "--manifest-path"] {
        assert!(help.contains(flag), "`cargo hot run --help` lists {flag}:\n{help}");
    }
}

#[test]
fn configuration_mistakes_in_the_manifest_are_named_before_building() {
    let fixture = Fixture::copy("axum-app");
    fixture.edit("Cargo.toml", "boundary = \"crates/handlers\"", "boundary = \"crates/handlers\"\nbin = \"nope\"");
    let (code, stderr) = run_hot(&fixture, &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no binary named `nope`") && stderr.contains("server"), "{stderr}");

    fixture.edit("Cargo.toml", "bin = \"nope\"", "restart = [\"templates/[\"]");
    let (code, stderr) = run_hot(&fixture, &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("`restart`") && stderr.contains("not a valid glob") && stderr.contains("Cargo.toml"), "{stderr}");

    fixture.edit("Cargo.toml", "restart = [\"templates/[\"]", "env-file = \"missing.env\"");
    let (code, stderr) = run_hot(&fixture, &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("`env-file`") && stderr.contains("missing.env") && stderr.contains("does not exist"), "{stderr}");

    fixture.edit("crates/server/Cargo.toml", "edition = \"2021\"", "edition = \"2021\"\n\n[package.metadata.hot]\nboundary = 7");
    fixture.edit("Cargo.toml", "env-file = \"missing.env\"", "");
    let (code, stderr) = run_hot(&fixture, &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("`boundary` in [package.metadata.hot]") && stderr.contains("crates/server/Cargo.toml"), "{stderr}");
}

#[test]
fn unknown_keys_warn_and_the_run_goes_on() {
    let fixture = Fixture::copy("axum-app");
    fixture.edit("Cargo.toml", "boundary = \"crates/handlers\"", "boundary = \"crates/handlers\"\nshutdown_timeout = 3");
    let output = Command::new(CARGO_HOT)
        .args(["hot", "run", "--boundary", "crates/nope"])
        .current_dir(fixture.root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("warning: unknown key `shutdown_timeout`") && stderr.contains("did you mean `shutdown-timeout`"), "{stderr}");
    // It went on to the next step (here: the command line's boundary, which does not exist).
    assert!(stderr.contains("crates/nope"), "{stderr}");
}
