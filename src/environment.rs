//! The environment of a program started by `cargo hot run`: what `cargo run` would give it
//! (cargo's `Compilation::fill_env` and its `[env]` handling), then the env-file.
//!
//! In order, later entries winning:
//! 1. cargo hot's own environment, inherited;
//! 2. the `[env]` tables of every configuration file cargo reads (`.cargo/config.toml` from
//!    the current directory up, then `$CARGO_HOME`), with `relative` paths resolved: a value
//!    replaces an inherited variable only with `force = true`;
//! 3. what cargo sets itself: `CARGO`, `CARGO_MANIFEST_DIR`, `CARGO_MANIFEST_PATH`, the
//!    `CARGO_PKG_*` variables, the `cargo:rustc-env` variables of the package's build
//!    script, and the target directory's library directories on `LD_LIBRARY_PATH`;
//! 4. the `env-file` of cargo hot's configuration.
//!
//! Like `cargo run`, the program runs in the directory cargo hot was started from.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::build::HostBuild;
use crate::metadata::Plan;

/// The variables to set for the program (on top of cargo hot's own environment).
pub fn program_environment(plan: &Plan, build: &HostBuild, cwd: &Path, events: &crate::events::Events) -> Result<Vec<(OsString, OsString)>> {
    let config_env: Vec<(String, OsString, bool)> = match cargo_config2::Config::load_with_cwd(cwd) {
        Ok(config) => config.env.iter().map(|(key, value)| (key.clone(), value.value.clone(), value.force)).collect(),
        Err(err) => {
            // cargo itself reported it if it matters for the build; the program starts without.
            events.warn(format!("cannot read cargo's configuration for its [env] table ({err}); the program starts without it"));
            Vec::new()
        }
    };
    let inherited = |key: &str| std::env::var_os(key);
    let config_env = config_env.into_iter();
    let library_dirs = library_dirs(plan, build);
    let mut env = compose(config_env, &inherited, cargo_variables(plan, build), library_dirs);
    for (key, value) in plan.config.env_vars()? {
        env.insert(key.into(), value.into());
    }
    Ok(env.into_iter().collect())
}

/// Layers 2 and 3 of the module's order.
fn compose(
    config_env: impl Iterator<Item = (String, OsString, bool)>,
    inherited: &dyn Fn(&str) -> Option<OsString>,
    cargo: Vec<(String, OsString)>,
    library_dirs: Vec<PathBuf>,
) -> BTreeMap<OsString, OsString> {
    let mut env = BTreeMap::new();
    for (key, value, force) in config_env {
        // cargo sets LD_LIBRARY_PATH itself, so [env] cannot (as with its other variables).
        if key == "LD_LIBRARY_PATH" {
            continue;
        }
        if force || inherited(&key).is_none() {
            env.insert(OsString::from(key), value);
        }
    }
    for (key, value) in cargo {
        env.insert(key.into(), value);
    }
    let existing = env.get(&OsString::from("LD_LIBRARY_PATH")).cloned().or_else(|| inherited("LD_LIBRARY_PATH"));
    let joined = std::env::join_paths(library_dirs.into_iter().chain(existing.iter().flat_map(std::env::split_paths)));
    if let Ok(joined) = joined {
        env.insert("LD_LIBRARY_PATH".into(), joined);
    }
    env
}

/// What cargo sets itself for a `cargo run` of the host.
fn cargo_variables(plan: &Plan, build: &HostBuild) -> Vec<(String, OsString)> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut vars = vec![("CARGO".to_string(), cargo)];
    vars.extend(plan.host.package_env.iter().map(|(k, v)| (k.clone(), OsString::from(v))));
    vars.extend(build.build_script_env.iter().map(|(k, v)| (k.clone(), OsString::from(v))));
    vars
}

/// Where a program finds the shared libraries of its build, as cargo's `fill_env` puts them:
/// library directories build scripts linked from inside the target directory, the profile's
/// `deps` and its own directory, then the toolchain's library directory (std as a dylib).
fn library_dirs(plan: &Plan, build: &HostBuild) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = build.build_script_library_dirs.iter().filter(|d| d.starts_with(&plan.target_dir)).cloned().collect();
    dirs.dedup();
    if let Some(profile_dir) = build.executable.parent() {
        dirs.push(profile_dir.join("deps"));
        dirs.push(profile_dir.to_path_buf());
    }
    let rustc = build.boundaries.first().map(|unit| unit.invocation.rustc.clone()).unwrap_or_else(|| "rustc".into());
    dirs.extend(target_libdir(&rustc));
    dirs
}

/// `rustc --print target-libdir`, asked once per rustc.
fn target_libdir(rustc: &Path) -> Option<PathBuf> {
    static KNOWN: std::sync::Mutex<BTreeMap<PathBuf, Option<PathBuf>>> = std::sync::Mutex::new(BTreeMap::new());
    let mut known = KNOWN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    known
        .entry(rustc.to_path_buf())
        .or_insert_with(|| {
            let output = std::process::Command::new(rustc).args(["--print", "target-libdir"]).output().ok()?;
            output.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    #[test]
    fn config_env_yields_to_inherited_variables_unless_forced() {
        let inherited = |key: &str| (key == "USER" || key == "LOG").then(|| os("from-shell"));
        let config = vec![
            ("DATABASE_URL".to_string(), os("postgres://localhost/dev"), false),
            ("LOG".to_string(), os("debug"), false),
            ("USER".to_string(), os("forced"), true),
        ];
        let env = compose(config.into_iter(), &inherited, vec![], vec![]);
        assert_eq!(env.get(&os("DATABASE_URL")), Some(&os("postgres://localhost/dev")));
        assert_eq!(env.get(&os("LOG")), None, "the shell's value is kept");
        assert_eq!(env.get(&os("USER")), Some(&os("forced")));
    }

    #[test]
    fn config_cannot_set_ld_library_path() {
        let config = vec![("LD_LIBRARY_PATH".to_string(), os("/from/config"), true)];
        let env = compose(config.into_iter(), &|_| None, vec![], vec![PathBuf::from("/t/debug/deps")]);
        assert_eq!(env.get(&os("LD_LIBRARY_PATH")), Some(&os("/t/debug/deps")));
    }

    #[test]
    fn cargo_s_own_variables_win_and_library_dirs_come_first() {
        let inherited = |key: &str| (key == "LD_LIBRARY_PATH").then(|| os("/usr/local/lib"));
        let config = vec![("CARGO_PKG_NAME".to_string(), os("from-config"), true)];
        let cargo = vec![("CARGO_PKG_NAME".to_string(), os("server"))];
        let env = compose(config.into_iter(), &inherited, cargo, vec![PathBuf::from("/t/debug/deps")]);
        assert_eq!(env.get(&os("CARGO_PKG_NAME")), Some(&os("server")));
        assert_eq!(env.get(&os("LD_LIBRARY_PATH")), Some(&os("/t/debug/deps:/usr/local/lib")));
    }

    #[test]
    fn relative_values_resolve_against_the_directory_holding_dot_cargo() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".cargo")).unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(
            dir.path().join(".cargo/config.toml"),
            "[env]\nGREETING = \"hello\"\nASSETS = { value = \"assets\", relative = true }\nFORCED = { value = \"yes\", force = true }\n",
        )
        .unwrap();
        let config = cargo_config2::Config::load_with_cwd(dir.path().join("src")).unwrap();
        let value = |key: &str| config.env.get(key).map(|v| (v.value.clone(), v.force));
        assert_eq!(value("GREETING"), Some((os("hello"), false)));
        assert_eq!(value("ASSETS"), Some((dir.path().join("assets").into_os_string(), false)));
        assert_eq!(value("FORCED"), Some((os("yes"), true)));
    }
}
