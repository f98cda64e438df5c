//! What is published: the three crates package (no path-only dependency is left), under names
//! that are free on crates.io (cargo-hot-reload, hot-runtime, hot-runtime-macros), and the
//! runtime stays cheap to add to an app.

use std::path::Path;
use std::process::Command;

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_published_crate_packages() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (package, must_hold) in [
        ("hot-runtime-macros", "src/lib.rs"),
        ("hot-runtime", "src/scope.rs"),
        ("cargo-hot-reload", "src/patch/bind.rs"),
    ] {
        let output = Command::new(&cargo)
            .args(["package", "--list", "--allow-dirty", "-p", package])
            .current_dir(repository())
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "cargo package -p {package}:\n{}", String::from_utf8_lossy(&output.stderr));
        assert!(listed.lines().any(|l| l == must_hold) && listed.lines().any(|l| l == "Cargo.toml"), "{package}:\n{listed}");
        assert!(!listed.contains("test-fixtures/"), "fixtures are not published: {package}");
    }
}

/// A feature an app's dependency graph lacks, added by the runtime, rebuilds that crate and
/// everything that depends on it: syn's `visit`/`visit-mut` once cost an app with sqlx,
/// validator and derive_builder 30 crates and 25 s. The runtime asks only for features
/// nearly every app has.
#[test]
fn the_runtime_asks_only_for_features_apps_already_have() {
    let manifest = |path: &str| -> toml_edit::DocumentMut { std::fs::read_to_string(repository().join(path)).unwrap().parse().unwrap() };
    let features = |document: &toml_edit::DocumentMut, dependency: &str| -> (bool, Vec<String>) {
        let table = document["dependencies"][dependency].as_table_like().unwrap_or_else(|| panic!("{dependency} is a table"));
        let defaults = table.get("default-features").and_then(|v| v.as_bool()).unwrap_or(true);
        let features = table.get("features").and_then(|v| v.as_array()).map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default();
        (defaults, features)
    };
    let macros = manifest("runtime-macros/Cargo.toml");
    let (defaults, syn) = features(&macros, "syn");
    assert!(!defaults, "syn without its default features");
    for feature in &syn {
        assert!(["full", "parsing", "printing", "proc-macro", "clone-impls"].contains(&feature.as_str()), "syn feature `{feature}`");
    }
    let runtime = manifest("runtime/Cargo.toml");
    assert_eq!(features(&runtime, "serde"), (false, vec!["std".to_string()]), "serde without `derive` (serde_derive is taken directly)");
    assert_eq!(features(&runtime, "tokio"), (false, vec!["rt".to_string()]));
    assert_eq!(features(&runtime, "axum"), (false, vec![]));
}
