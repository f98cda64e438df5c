//! `[package.metadata.hot]` and `[workspace.metadata.hot]`: reading, merging and validating.
//!
//! The host package's table overrides the workspace's, key by key; command-line flags
//! override both. Relative paths are resolved against the manifest that holds them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::Value;

/// Keys this version understands. Anything else gets a warning naming the key and the file.
const KNOWN_KEYS: &[&str] = &["boundary", "bin", "debounce", "shutdown-timeout"];

/// A boundary as written by the user: a path or a package name, with the directory that a
/// relative path is relative to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundarySpec {
    pub value: String,
    pub base_dir: PathBuf,
    /// Where it was written, for error messages ("--boundary", or a Cargo.toml).
    pub origin: String,
}

/// The merged configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotConfig {
    pub boundaries: Vec<BoundarySpec>,
    pub bin: Option<String>,
    pub debounce: Duration,
    pub shutdown_timeout: Duration,
}

impl Default for HotConfig {
    fn default() -> Self {
        HotConfig {
            boundaries: Vec::new(),
            bin: None,
            debounce: Duration::from_millis(10),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// One `metadata.hot` table and the manifest it came from.
pub struct ConfigSource<'a> {
    pub table: &'a Value,
    pub manifest: &'a Path,
    /// `[package.metadata.hot]` or `[workspace.metadata.hot]`.
    pub section: &'static str,
}

impl HotConfig {
    /// Applies one table over the current values. Returns the warnings it produced.
    pub fn apply(&mut self, source: &ConfigSource<'_>) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        let where_ = || format!("{} in {}", source.section, source.manifest.display());
        let Some(table) = source.table.as_object() else {
            bail!("{} must be a table, e.g.\n  {}\n  boundary = \"crates/handlers\"", where_(), source.section_header());
        };
        let base_dir = source.manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
        for (key, value) in table {
            match key.as_str() {
                "boundary" => {
                    let values: Vec<String> = match value {
                        Value::String(s) => vec![s.clone()],
                        Value::Array(items) if items.iter().all(Value::is_string) && !items.is_empty() => {
                            items.iter().map(|v| v.as_str().unwrap().to_string()).collect()
                        }
                        _ => bail!(
                            "`boundary` in {} must be a path or package name, or a list of them, e.g. boundary = \"crates/handlers\"",
                            where_()
                        ),
                    };
                    self.boundaries = values
                        .into_iter()
                        .map(|value| BoundarySpec { value, base_dir: base_dir.clone(), origin: where_() })
                        .collect();
                }
                "bin" => match value {
                    Value::String(s) => self.bin = Some(s.clone()),
                    _ => bail!("`bin` in {} must be the name of a binary target, e.g. bin = \"server\"", where_()),
                },
                "debounce" => self.debounce = parse_duration(key, value, &where_())?,
                "shutdown-timeout" => self.shutdown_timeout = parse_duration(key, value, &where_())?,
                other => {
                    let hint = KNOWN_KEYS
                        .iter()
                        .find(|known| known.replace('-', "_") == other.replace('-', "_"))
                        .map(|known| format!(" (did you mean `{known}`?)"))
                        .unwrap_or_default();
                    warnings.push(format!(
                        "unknown key `{other}` in {}{hint}; known keys: {}",
                        where_(),
                        KNOWN_KEYS.join(", ")
                    ));
                }
            }
        }
        Ok(warnings)
    }
}

impl ConfigSource<'_> {
    fn section_header(&self) -> String {
        format!("[{}]", self.section)
    }
}

/// Durations are written as milliseconds (`debounce = 50`) or with a unit (`"50ms"`, `"5s"`).
fn parse_duration(key: &str, value: &Value, where_: &str) -> Result<Duration> {
    let fail = || anyhow::anyhow!("`{key}` in {where_} must be a duration: milliseconds as a number (50) or a string such as \"50ms\" or \"5s\"");
    match value {
        Value::Number(n) => n.as_u64().map(Duration::from_millis).ok_or_else(fail),
        Value::String(s) => {
            let s = s.trim();
            if let Some(ms) = s.strip_suffix("ms") {
                ms.trim().parse().map(Duration::from_millis).map_err(|_| fail())
            } else if let Some(secs) = s.strip_suffix('s') {
                secs.trim().parse::<f64>().ok().filter(|v| *v >= 0.0).map(Duration::from_secs_f64).ok_or_else(fail)
            } else {
                Err(fail())
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
        config.apply(&ConfigSource { table: &table, manifest: Path::new("/ws/Cargo.toml"), section: "workspace.metadata.hot" })
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
        apply(&mut config, json!({"boundary": "a", "debounce": 40})).unwrap();
        apply(&mut config, json!({"debounce": "1.5s"})).unwrap();
        assert_eq!(config.boundaries[0].value, "a");
        assert_eq!(config.debounce, Duration::from_millis(1500));
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
    fn wrong_types_are_errors_naming_key_and_file() {
        let mut config = HotConfig::default();
        let err = apply(&mut config, json!({"boundary": 3})).unwrap_err().to_string();
        assert!(err.contains("`boundary`") && err.contains("/ws/Cargo.toml"), "{err}");
        let err = apply(&mut config, json!({"debounce": "soon"})).unwrap_err().to_string();
        assert!(err.contains("`debounce`") && err.contains("\"50ms\""), "{err}");
        assert!(apply(&mut config, json!("boundary")).is_err());
    }
}
