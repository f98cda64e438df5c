//! rustc's dep-info (`.d`) files: the exact list of source files a crate was compiled from,
//! `include_str!`/`include_bytes!` files included. This, not directory names, decides what
//! an edit means.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The files listed as dependencies of the first rule, resolved against `base`.
pub fn read(path: &Path, base: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read dep-info {}", path.display()))?;
    Ok(parse(&text, base))
}

pub fn parse(text: &str, base: &Path) -> Vec<PathBuf> {
    entries(text).into_iter().map(|dep| normalize(&base.join(dep))).collect()
}

/// The dependencies of the first rule as written (relative ones unresolved).
pub fn entries(text: &str) -> Vec<String> {
    // Join continuation lines, then take the first rule: `target: dep dep ...`.
    let joined = text.replace("\\\n", " ");
    let Some(rule) = joined.lines().find(|l| !l.trim().is_empty() && !l.starts_with('#')) else {
        return Vec::new();
    };
    let Some(deps) = split_rule(rule) else { return Vec::new() };
    split_escaped(deps)
}

/// Splits `target: deps` at the first unescaped `: ` (a path may contain escaped spaces).
fn split_rule(rule: &str) -> Option<&str> {
    let bytes = rule.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b':' if bytes.get(i + 1).is_none_or(|b| *b == b' ') => return Some(&rule[i + 1..]),
            _ => i += 1,
        }
    }
    None
}

fn split_escaped(deps: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = deps.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ' ' | '\t' => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Removes `.` and `..` components without touching the file system (the file may be gone).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_first_rule_with_relative_and_escaped_paths() {
        let text = "/t/deps/handlers-1.d: crates/handlers/src/lib.rs crates/handlers/src/my\\ file.rs /abs/../abs/tpl.html\n\n\
                    crates/handlers/src/lib.rs:\ncrates/handlers/src/my\\ file.rs:\n\n# env-dep:CARGO_PKG_NAME=handlers\n";
        let files = parse(text, Path::new("/ws"));
        assert_eq!(
            files,
            vec![
                PathBuf::from("/ws/crates/handlers/src/lib.rs"),
                PathBuf::from("/ws/crates/handlers/src/my file.rs"),
                PathBuf::from("/abs/tpl.html"),
            ]
        );
    }

    #[test]
    fn continuation_lines_and_empty_files() {
        assert_eq!(parse("out: a.rs \\\n  b.rs\n", Path::new("/x")), vec![PathBuf::from("/x/a.rs"), PathBuf::from("/x/b.rs")]);
        assert!(parse("", Path::new("/x")).is_empty());
    }
}
