//! The patch builder and the ABI gate on real artifacts: the fixture's host is built through
//! cargo hot's wrapper and linker, then edited boundaries are recompiled, linked into
//! patches and judged against the real host binary. No program runs here.

mod support;

use std::path::Path;

use cargo_hot::abi::Rejection;
use cargo_hot::abi::{self, HostImage};
use cargo_hot::build::{self, BoundaryUnit, BuildOutcome};
use cargo_hot::cli::Selection;
use cargo_hot::events::Events;
use cargo_hot::{metadata, patch};
use support::Fixture;

const HANDLERS: &str = "crates/handlers/src/lib.rs";

struct Bench<'a> {
    fixture: &'a Fixture,
    unit: BoundaryUnit,
    linker: patch::PatchLinker,
    image: HostImage,
    work: tempfile::TempDir,
    count: usize,
}

impl Bench<'_> {
    /// Applies `edit` to the original handlers source, builds the patch, runs the gate.
    fn judge(&mut self, original: &str, edit: impl Fn(&str) -> String) -> Result<abi::Approved, abi::Rejection> {
        std::fs::write(self.fixture.path(HANDLERS), edit(original)).unwrap();
        let dirs = patch::CompileDirs::of(&self.unit, self.work.path());
        let compiled = patch::compile(&self.unit, Path::new(support::CARGO_HOT), &dirs, patch::Flags::LineTables, &[]).unwrap();
        assert!(compiled.success, "the edited boundary must compile:\n{}", compiled.rendered());
        self.count += 1;
        let output = self.work.path().join(format!("patch-{}.so", self.count));
        // The axum fixture's boundary has no statics: nothing to bind.
        let homes = patch::bind::Homes::default();
        let objects = dirs.objects(&self.unit).read().unwrap();
        patch::link(objects, &self.linker, &self.work.path().join("objects"), &output, &homes, false).unwrap().unwrap();
        abi::check_file(&self.image, &["handlers".to_string()], &output, abi::Reach::ExportsOnly).unwrap()
    }
}

#[test]
fn gate_approves_body_edits_and_refuses_incompatible_patches() {
    let _lock = support::exclusive_build();
    let fixture = Fixture::copy("axum-app");
    fixture.touch_all();
    // This file has a single test, so setting the variable races with nothing.
    std::env::set_var("CARGO_TARGET_DIR", support::shared_target_dir());
    let selection = Selection { manifest_path: Some(fixture.path("Cargo.toml")), ..Selection::default() };
    let plan = metadata::plan(&selection, &Default::default(), &Events::discard()).unwrap();
    assert_eq!(plan.host.bin, "server");
    assert_eq!(plan.boundaries[0].package, "handlers");
    let BuildOutcome::Built(host) = build::build_host(&plan, Path::new(support::CARGO_HOT), &Events::discard()).unwrap() else {
        panic!("the fixture must build");
    };

    // The host is patchable: every Rust symbol exported, the five exports present.
    let image = HostImage::read(&host.executable, &["handlers".to_string()]).unwrap();
    let exports: Vec<&String> = image.exports_of("handlers").collect();
    assert_eq!(exports.len(), 5, "{exports:?}");
    // The dependencies are linked apart, into a library the executable loads, which exports
    // every function of them (whole-archive); the workspace's code is in the executable.
    let library = host.link.deps_library.clone().expect("the dependencies are linked into a library of their own");
    assert!(library.is_file() && host.link.split_failure.is_none(), "{:?}", host.link.split_failure);
    let tokio_symbols = image.library_symbols.iter().flat_map(|library| library.iter()).filter(|s| s.contains("5tokio")).count();
    assert!(tokio_symbols > 500, "whole-archive exports tokio's symbols, found {tokio_symbols}");
    assert!(image.symbols.defined.iter().any(|s| s.contains("8handlers")), "the boundary's code is in the executable");

    let original = fixture.read(HANDLERS);
    let mut bench = Bench {
        fixture: &fixture,
        unit: host.boundaries[0].clone(),
        linker: patch::PatchLinker::find(&host.link, &host.boundaries[0].invocation.rustc),
        image,
        work: tempfile::tempdir().unwrap(),
        count: 0,
    };

    // A body edit using dependency APIs the host never called: approved, all five switch.
    let approved = bench
        .judge(&original, |s| {
            s.replace("format!(\"hello from v1 (hits={hits})\")", "serde_json::to_string_pretty(&serde_json::json!({ \"hits\": hits })).unwrap()")
        })
        .unwrap();
    assert_eq!(approved.exports.len(), 5);
    let patch = bench.work.path().join("patch-1.so");
    let patch_size = std::fs::metadata(&patch).unwrap().len();
    let host_size = std::fs::metadata(&host.executable).unwrap().len();
    assert!(patch_size * 20 < host_size, "a thin patch carries only the boundary: {patch_size} bytes vs host {host_size}");
    let patch_symbols = abi::elf::read(&patch).unwrap();
    assert!(patch_symbols.undefined.iter().any(|(name, _)| name.contains("10serde_json")), "dependency code stays in the host and is resolved at load time");

    // A changed signature.
    let rejection = bench
        .judge(&original, |s| {
            s.replace("pub async fn slow(millis: u64) -> String {", "pub async fn slow(millis: u32) -> String {\n    let millis = u64::from(millis);")
        })
        .unwrap_err();
    assert_eq!(rejection, Rejection::SignatureChanged { export: "handlers::slow".into() });

    // A new export: only the new code can call it, so it is patched without a slot to switch.
    let approved = bench.judge(&original, |s| format!("{s}\n#[hot::export]\npub fn added() -> u32 {{ 1 }}\n")).unwrap();
    assert!(!approved.exports.iter().any(|e| e.contains("added")), "{approved:?}");

    // A removed export (the function stays, without #[hot::export]).
    let rejection = bench.judge(&original, |s| s.replace("#[hot::export]\npub fn version()", "pub fn version()")).unwrap_err();
    assert_eq!(rejection, Rejection::ExportRemoved { export: "handlers::version".into() });

    // A symbol the running program does not contain.
    let rejection = bench
        .judge(&original, |s| {
            s.replace(
                "format!(\"hello from v1 (hits={hits})\")",
                "{ extern \"C\" { fn cargo_hot_test_missing_symbol() -> u64; } format!(\"{}\", hits + unsafe { cargo_hot_test_missing_symbol() }) }",
            )
        })
        .unwrap_err();
    assert!(matches!(&rejection, Rejection::MissingSymbol { symbol, .. } if symbol.contains("cargo_hot_test_missing_symbol")), "{rejection:?}");

    std::fs::write(fixture.path(HANDLERS), original).unwrap();
}
