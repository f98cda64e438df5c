//! `[package.metadata.hot]`, `[workspace.metadata.hot]` and command-line flags: reading,
//! merging and validating.
//!
//! The host package's table overrides the workspace's, key by key; command-line flags
//! override both. Relative paths are resolved against the manifest that holds them (against
//! the current directory for flags).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde_json::{Map, Value};

/// Keys this version understands. Anything else gets a warning naming the key and the file.
pub const KNOWN_KEYS: &[&str] =
    &["boundary", "exclude", "bin", "restart", "ignore", "watch", "debounce", "env-file", "shutdown-timeout", "listen", "restart-on-crash", "hold-ports"];

/// A boundary as written by the user: a path or a package name, with the directory that a
/// relative path is relative to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundarySpec {
    pub value: String,
    pub base_dir: PathBuf,
    /// Where it was written, for error messages ("the command line", or a Cargo.toml).
    pub origin: String,
}

/// A glob (`templates/**`, `migrations/*.sql`) or a path, relative to where it was written.
#[derive(Debug, Clone)]
pub struct PathRule {
    pub pattern: String,
    pub base_dir: PathBuf,
    pub origin: String,
    matcher: globset::GlobMatcher,
}

impl PartialEq for PathRule {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern && self.base_dir == other.base_dir
    }
}

impl PathRule {
    fn new(pattern: &str, base_dir: &Path, origin: &str, key: &str) -> Result<Self> {
        // `../shared/templates`, `/etc/app/*.toml`, `docs/`: matched as one absolute pattern.
        let joined = crate::depinfo::normalize(&base_dir.join(pattern.trim_end_matches('/')));
        let (base_dir, relative) = if pattern.starts_with('/') || pattern.starts_with("..") {
            (PathBuf::from("/"), joined.strip_prefix("/").unwrap_or(&joined).to_string_lossy().into_owned())
        } else {
            (base_dir.to_path_buf(), pattern.trim_start_matches("./").trim_end_matches('/').to_string())
        };
        let matcher = globset::GlobBuilder::new(&relative)
            .literal_separator(true)
            .build()
            .map_err(|err| anyhow!("`{key}` in {origin}: `{pattern}` is not a valid glob ({})", err.kind()))?
            .compile_matcher();
        Ok(PathRule { pattern: pattern.to_string(), base_dir, origin: origin.to_string(), matcher })
    }

    #[cfg(test)]
    pub fn for_tests(pattern: &str, base_dir: &str) -> Self {
        PathRule::new(pattern, Path::new(base_dir), "the tests", "restart").unwrap()
    }

    /// Whether `path` (absolute) matches, relative to the rule's base directory. A pattern
    /// naming a directory also matches everything below it.
    pub fn matches(&self, path: &Path) -> bool {
        let Ok(relative) = path.strip_prefix(&self.base_dir) else { return false };
        relative.ancestors().filter(|a| !a.as_os_str().is_empty()).any(|a| self.matcher.is_match(a))
    }

    /// The directory to watch for this rule: its longest literal prefix.
    pub fn watch_root(&self) -> PathBuf {
        let pattern = self.matcher.glob().glob().to_string();
        let literal: Vec<&str> = pattern.split('/').take_while(|part| !part.contains(['*', '?', '[', '{'])).collect();
        let path = self.base_dir.join(literal.join("/"));
        if path.is_dir() {
            path
        } else {
            path.parent().map(Path::to_path_buf).unwrap_or(path)
        }
    }
}

/// The merged configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct HotConfig {
    /// The hot crates, when named (nothing named: every library crate of the workspace that
    /// the host depends on, and the host's own crate).
    pub boundaries: Vec<BoundarySpec>,
    /// Crates whose edits always restart (hot-hook's `decline`, per crate).
    pub exclude: Vec<BoundarySpec>,
    pub bin: Option<String>,
    /// Changes to matching files restart the program.
    pub restart: Vec<PathRule>,
    /// Changes to matching files do nothing.
    pub ignore: Vec<PathRule>,
    /// Extra files the program reads at run time (templates, migrations): watched, and a
    /// change restarts.
    pub watch: Vec<PathRule>,
    pub debounce: Duration,
    /// A dotenv file loaded into the program's environment at every start.
    pub env_file: Option<PathBuf>,
    pub shutdown_timeout: Duration,
    /// Addresses cargo hot binds once and hands to every program it starts.
    pub listen: Vec<std::net::SocketAddr>,
    /// Start a crashed program again by itself (with backoff), not only on the next change.
    pub restart_on_crash: bool,
    /// Hold the ports the program binds itself across restarts (see `held_ports`).
    pub hold_ports: bool,
}

impl Default for HotConfig {
    fn default() -> Self {
        HotConfig {
            boundaries: Vec::new(),
            exclude: Vec::new(),
            bin: None,
            restart: Vec::new(),
            ignore: Vec::new(),
            watch: Vec::new(),
            debounce: Duration::from_millis(10),
            env_file: None,
            shutdown_timeout: Duration::from_secs(5),
            listen: Vec::new(),
            restart_on_crash: false,
            hold_ports: cfg!(target_os = "linux"),
        }
    }
}

/// One table of settings and where it came from.
pub struct ConfigSource<'a> {
    pub table: &'a Value,
    /// Relative paths in the table are relative to this directory.
    pub base_dir: &'a Path,
    /// `[workspace.metadata.hot] in /ws/Cargo.toml`, or `the command line`.
    pub origin: String,
}

impl<'a> ConfigSource<'a> {
    pub fn manifest(table: &'a Value, manifest: &'a Path, section: &str) -> Self {
        ConfigSource { table, base_dir: manifest.parent().unwrap_or(Path::new(".")), origin: format!("[{section}] in {}", manifest.display()) }
    }
}

impl HotConfig {
    /// Applies one table over the current values. Returns the warnings it produced.
    pub fn apply(&mut self, source: &ConfigSource<'_>) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        let origin = source.origin.as_str();
        let Some(table) = source.table.as_object() else {
            bail!("{origin} must be a table of settings, e.g.\n    boundary = \"crates/handlers\"");
        };
        let base_dir = source.base_dir;
        for (key, value) in table {
            match key.as_str() {
                "boundary" => {
                    self.boundaries = strings(key, value, origin, "boundary = \"crates/handlers\" or boundary = [\"handlers\", \"jobs\"]")?
                        .into_iter()
                        .map(|value| BoundarySpec { value, base_dir: base_dir.to_path_buf(), origin: origin.to_string() })
                        .collect();
                    if self.boundaries.is_empty() {
                        bail!("`boundary` in {origin} is an empty list; name at least one crate, e.g. boundary = \"crates/handlers\"");
                    }
                }
                "exclude" => {
                    self.exclude = strings(key, value, origin, "exclude = [\"crates/store\"] (paths or package names)")?
                        .into_iter()
                        .map(|value| BoundarySpec { value, base_dir: base_dir.to_path_buf(), origin: origin.to_string() })
                        .collect();
                }
                "bin" => match value {
                    Value::String(s) if !s.is_empty() => self.bin = Some(s.clone()),
                    _ => bail!("`bin` in {origin} must be the name of a binary target, e.g. bin = \"server\""),
                },
                "restart" | "ignore" | "watch" => {
                    let example = match key.as_str() {
                        "restart" => "restart = [\"templates/**\", \"config/*.toml\"]",
                        "ignore" => "ignore = [\"**/*.md\", \"docs/**\"]",
                        _ => "watch = [\"migrations\", \"templates/**/*.html\"]",
                    };
                    let rules = strings(key, value, origin, example)?
                        .iter()
                        .map(|pattern| PathRule::new(pattern, base_dir, origin, key))
                        .collect::<Result<Vec<_>>>()?;
                    match key.as_str() {
                        "restart" => self.restart = rules,
                        "ignore" => self.ignore = rules,
                        _ => self.watch = rules,
                    }
                }
                "listen" => {
                    let mut addresses = Vec::new();
                    for text in strings(key, value, origin, "listen = [\"127.0.0.1:3000\"]")? {
                        let resolved = std::net::ToSocketAddrs::to_socket_addrs(text.as_str())
                            .map_err(|_| anyhow!("`listen` in {origin}: `{text}` is not an address; write it as 127.0.0.1:3000 or localhost:3000"))?;
                        // `localhost:3000` is both 127.0.0.1 and ::1: clients may try either.
                        addresses.extend(resolved);
                    }
                    addresses.dedup();
                    self.listen = addresses;
                }
                "restart-on-crash" => match value {
                    Value::Bool(on) => self.restart_on_crash = *on,
                    _ => bail!("`restart-on-crash` in {origin} must be true or false"),
                },
                "hold-ports" => match value {
                    Value::Bool(on) => self.hold_ports = *on,
                    _ => bail!("`hold-ports` in {origin} must be true or false"),
                },
                "debounce" => self.debounce = parse_duration(key, value, origin)?,
                "shutdown-timeout" => self.shutdown_timeout = parse_duration(key, value, origin)?,
                "env-file" => match value {
                    Value::String(s) if !s.is_empty() => {
                        let path = crate::depinfo::normalize(&base_dir.join(s));
                        if !path.is_file() {
                            bail!("`env-file` in {origin}: {} does not exist; create it or remove the key", path.display());
                        }
                        self.env_file = Some(path);
                    }
                    _ => bail!("`env-file` in {origin} must be the path of a dotenv file, e.g. env-file = \".env\""),
                },
                other => {
                    let hint = KNOWN_KEYS
                        .iter()
                        .find(|known| known.replace('-', "_") == other.replace('-', "_"))
                        .map(|known| format!(" (did you mean `{known}`?)"))
                        .unwrap_or_default();
                    warnings.push(format!("unknown key `{other}` in {origin}{hint}; known keys: {}", KNOWN_KEYS.join(", ")));
                }
            }
        }
        Ok(warnings)
    }

    /// Every rule that names files, for `explain`'s summary.
    pub fn rules(&self) -> impl Iterator<Item = (&'static str, &PathRule)> {
        self.restart.iter().map(|r| ("restart", r)).chain(self.watch.iter().map(|r| ("watch", r))).chain(self.ignore.iter().map(|r| ("ignore", r)))
    }

    /// The program's extra environment from `env-file`.
    pub fn env_vars(&self) -> Result<Vec<(String, String)>> {
        let Some(path) = &self.env_file else { return Ok(Vec::new()) };
        dotenvy::from_path_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|err| anyhow!("cannot read the env-file {}: {err}", path.display()))
    }
}

/// Command-line flags as one more table (they override the manifests).
pub fn cli_table(pairs: Vec<(&str, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<String, Value>>())
}

fn strings(key: &str, value: &Value, origin: &str, example: &str) -> Result<Vec<String>> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if items.iter().all(Value::is_string) => Ok(items.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect()),
        _ => bail!("`{key}` in {origin} must be a string or a list of strings, e.g. {example}"),
    }
}

/// Durations are written as milliseconds (`debounce = 50`) or with a unit (`"50ms"`, `"5s"`).
fn parse_duration(key: &str, value: &Value, origin: &str) -> Result<Duration> {
    let fail = || anyhow!("`{key}` in {origin} must be a duration: milliseconds as a number (50) or a string such as \"50ms\" or \"5s\"");
    match value {
        Value::Number(n) => n.as_u64().map(Duration::from_millis).ok_or_else(fail),
        Value::String(s) => {
            let s = s.trim();
            if let Some(ms) = s.strip_suffix("ms") {
                ms.trim().parse().map(Duration::from_millis).map_err(|_| fail())
            } else if let Some(secs) = s.strip_suffix('s') {
                secs.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).map(Duration::from_secs_f64).ok_or_else(fail)
            } else {
                s.parse().map(Duration::from_millis).map_err(|_| fail())
            }
        }
        _ => Err(fail()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(config: &mut HotConfig, table: Value) -> Result<Vec<String>> {
        config.apply(&ConfigSource::manifest(&table, Path::new("/ws/Cargo.toml"), "workspace.metadata.hot"))
    }

    #[test]
    fn boundary_as_string_or_list_relative_to_manifest() {
        let mut config = HotConfig::default();
        apply(&mut config, json!({"boundary": "crates/handlers"})).unwrap();
        assert_eq!(config.boundaries.len(), 1);
        assert_eq!(config.boundaries[0].base_dir, PathBuf::from("/ws"));
        apply(&mut config, json!({"boundary": ["a", "b"]})).unwrap();
        assert_eq!(config.boundaries.iter().map(|b| b.value.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn later_table_overrides_key_by_key() {
        let mut config = HotConfig::default();
        apply(&mut config, json!({"boundary": "a", "debounce": 40, "restart": "tpl/**"})).unwrap();
        config
            .apply(&ConfigSource::manifest(&json!({"debounce": "1.5s", "restart": ["sql/*.sql"]}), Path::new("/ws/server/Cargo.toml"), "package.metadata.hot"))
            .unwrap();
        assert_eq!(config.boundaries[0].value, "a");
        assert_eq!(config.debounce, Duration::from_millis(1500));
        assert_eq!(config.restart.len(), 1);
        assert!(config.restart[0].matches(Path::new("/ws/server/sql/1_init.sql")), "relative to the manifest that holds it");
        assert!(!config.restart[0].matches(Path::new("/ws/sql/1_init.sql")));
    }

    #[test]
    fn globs_match_files_and_everything_under_a_directory() {
        let rule = PathRule::new("templates", Path::new("/ws"), "x", "watch").unwrap();
        assert!(rule.matches(Path::new("/ws/templates/index.html")));
        assert!(!rule.matches(Path::new("/ws/src/templates.rs")));
        let rule = PathRule::new("docs/*.md", Path::new("/ws"), "x", "ignore").unwrap();
        assert!(rule.matches(Path::new("/ws/docs/a.md")));
        assert!(!rule.matches(Path::new("/ws/docs/deep/a.md")), "`*` stays within a directory");
        let rule = PathRule::new("**/*.sql", Path::new("/ws"), "x", "restart").unwrap();
        assert!(rule.matches(Path::new("/ws/a/b/c.sql")));
        assert_eq!(PathRule::new("migrations/**/*.sql", Path::new("/ws"), "x", "watch").unwrap().watch_root(), PathBuf::from("/ws"));
        // Outside the manifest's directory, absolute, or written with a trailing slash.
        assert!(PathRule::new("../shared/tpl/**", Path::new("/ws/server"), "x", "watch").unwrap().matches(Path::new("/ws/shared/tpl/a.html")));
        assert!(PathRule::new("/etc/app/*.toml", Path::new("/ws"), "x", "restart").unwrap().matches(Path::new("/etc/app/main.toml")));
        assert!(PathRule::new("docs/", Path::new("/ws"), "x", "ignore").unwrap().matches(Path::new("/ws/docs/a.md")));
    }

    #[test]
    fn unknown_keys_warn_with_file_and_suggestion() {
        let mut config = HotConfig::default();
        let warnings = apply(&mut config, json!({"shutdown_timeout": 3, "colour": true})).unwrap();
        assert_eq!(warnings.len(), 2);
        assert!(warnings.iter().any(|w| w.contains("`shutdown_timeout`") && w.contains("did you mean `shutdown-timeout`")));
        assert!(warnings.iter().all(|w| w.contains("/ws/Cargo.toml")));
    }

    #[test]
    fn every_key_with_a_wrong_value_names_key_file_and_fix() {
        let cases = [
            (json!({"boundary": 3}), "`boundary`", "boundary = \"crates/handlers\""),
            (json!({"boundary": []}), "`boundary`", "name at least one crate"),
            (json!({"bin": false}), "`bin`", "bin = \"server\""),
            (json!({"restart": {"a": 1}}), "`restart`", "restart = ["),
            (json!({"ignore": [1]}), "`ignore`", "ignore = ["),
            (json!({"watch": "a[b"}), "`watch`", "not a valid glob"),
            (json!({"debounce": "soon"}), "`debounce`", "\"50ms\""),
            (json!({"shutdown-timeout": -1}), "`shutdown-timeout`", "\"5s\""),
            (json!({"env-file": 7}), "`env-file`", "env-file = \".env\""),
            (json!({"env-file": "missing.env"}), "`env-file`", "does not exist"),
            (json!({"listen": "port 3000"}), "`listen`", "127.0.0.1:3000"),
            (json!({"listen": 3000}), "`listen`", "listen = [\"127.0.0.1:3000\"]"),
            (json!({"restart-on-crash": "yes"}), "`restart-on-crash`", "true or false"),
        ];
        for (table, key, fix) in cases {
            let err = apply(&mut HotConfig::default(), table.clone()).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains("/ws/Cargo.toml") && err.contains(fix), "{table}: {err}");
        }
        let err = apply(&mut HotConfig::default(), json!("boundary")).unwrap_err().to_string();
        assert!(err.contains("must be a table"), "{err}");
    }

    #[test]
    fn env_file_is_read_as_dotenv() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dev.env"), "# comment\nDATABASE_URL=postgres://localhost/dev\nQUOTED=\"a b\"\n").unwrap();
        let mut config = HotConfig::default();
        let manifest = dir.path().join("Cargo.toml");
        config.apply(&ConfigSource::manifest(&json!({"env-file": "dev.env"}), &manifest, "package.metadata.hot")).unwrap();
        let vars = config.env_vars().unwrap();
        assert_eq!(vars, vec![("DATABASE_URL".into(), "postgres://localhost/dev".into()), ("QUOTED".into(), "a b".into())]);
    }
}
