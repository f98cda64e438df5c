//! What a patch of the binary can bring into play. A patch switches the exports; code that
//! ran once at start-up (`main`, the closures `main` handed to the server) never runs again,
//! so an edit to it would be "patched" and change nothing. Decided from what the compiler
//! produced, not from file names: every function of the new code is compared with the
//! program's own (the objects it was linked from); a function whose code changed and that no
//! export can reach (through calls, function pointers and data such as vtables) is start-up
//! code, and the edit restarts. A changed function that both `main` and an export reach
//! runs new from now on, but start-up already ran its old version: that is worth a warning.
//!
//! A function's fingerprint is its machine code with the relocated fields zeroed, plus what
//! each relocation points at: another function by name (it is compared on its own), a static
//! or anonymous data (constants, string literals) by content. A panic location (file, line,
//! column) counts by its file only, so lines shifting below an edit do not make `main` look
//! changed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

use anyhow::{Context, Result};
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionIndex, SymbolKind};

use super::ObjectFile;

/// The roots of the code a patch brings into play: its export entries.
const ENTRY_PREFIX: &str = crate::abi::elf::ENTRY_PREFIX;

/// What an edit of the binary changed, by where the changed code runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Changed functions no export reaches (demangled, sorted): the edit must restart.
    pub start_up_only: Vec<String>,
    /// Changed functions that `main` reaches directly and exports reach too.
    pub also_run_at_start_up: Vec<String>,
}

/// Compares `new` with `old` (the objects the running program was linked from). Only the
/// functions no export reaches, and those `main` reaches, are fingerprinted: most of a
/// server's code is reachable from its router and needs no comparison.
pub fn changes(old: &[ObjectFile], new: &[ObjectFile]) -> Result<Changes> {
    let new = Code::read(new)?;
    let from_exports = new.reachable(&new.entries, false);
    let roots: Vec<Node> = new.functions.iter().filter(|(name, _)| is_main(name)).flat_map(|(_, nodes)| nodes.iter().copied()).collect();
    let from_main = new.reachable(&roots, true);
    let unreached: Vec<&str> = new.functions.keys().map(String::as_str).filter(|name| !from_exports.contains(*name)).collect();
    let shared: Vec<&str> = from_main.iter().map(String::as_str).filter(|name| from_exports.contains(*name)).collect();
    if unreached.is_empty() && shared.is_empty() {
        return Ok(Changes::default());
    }
    let old = Code::read(old)?;
    let changed = |names: &[&str]| -> Vec<String> {
        let names: Vec<&str> = names.iter().copied().filter(|name| old.functions.contains_key(*name)).collect();
        let (before, after) = (old.fingerprints(&names), new.fingerprints(&names));
        let mut changed: Vec<String> =
            names.iter().filter(|name| before.get(**name) != after.get(**name)).map(|name| readable(name)).collect();
        changed.sort();
        changed.dedup();
        changed
    };
    Ok(Changes { start_up_only: changed(&unreached), also_run_at_start_up: changed(&shared) })
}

/// The name a reader knows a changed function by: closures and drop glue are named after the
/// function or type they belong to (`main::{{closure}}` and
/// `core::ptr::drop_in_place<app::main::{{closure}}>` are both `app::main`).
fn readable(symbol: &str) -> String {
    let demangled = format!("{:#}", rustc_demangle::demangle(symbol));
    let mut name = demangled.as_str();
    if let Some(dropped) = name.strip_prefix("core::ptr::drop_in_place<").and_then(|rest| rest.strip_suffix('>')) {
        name = dropped;
    }
    while let Some(outer) = name.strip_suffix("::{{closure}}") {
        name = outer;
    }
    name.to_string()
}

/// `main` (the C entry point rustc generates) and the crate's `fn main`.
fn is_main(name: &str) -> bool {
    name == "main" || format!("{:#}", rustc_demangle::demangle(name)).rsplit("::").next() == Some("main")
}

/// A section of one object file: the unit of code or data that relocations point into.
type Node = (usize, SectionIndex);

/// The functions of a set of object files and what refers to what.
struct Code<'data> {
    files: Vec<object::File<'data>>,
    /// Global definitions, for references by name between objects.
    globals: HashMap<&'data str, Node>,
    /// Function name → the sections that define it (local copies may repeat a name).
    functions: HashMap<String, Vec<Node>>,
    /// Section → the sections its relocations point into.
    edges: HashMap<Node, Vec<Node>>,
    /// Sections defining an export entry.
    entries: Vec<Node>,
    /// The function each code section defines: calls to a local function go through its
    /// section's symbol, and must count as a call by name, not as the callee's content.
    section_functions: HashMap<Node, String>,
}

impl<'data> Code<'data> {
    fn read(objects: &'data [ObjectFile]) -> Result<Self> {
        let files: Vec<object::File<'data>> = objects
            .iter()
            .map(|o| object::File::parse(&*o.data).with_context(|| format!("cannot read the object {}", o.name)))
            .collect::<Result<_>>()?;
        let mut globals: HashMap<&'data str, Node> = HashMap::new();
        for (index, file) in files.iter().enumerate() {
            for symbol in file.symbols().filter(|s| s.is_definition() && s.is_global()) {
                if let (Ok(name), Some(section)) = (symbol.name(), symbol.section_index()) {
                    globals.insert(name, (index, section));
                }
            }
        }
        let mut code = Code {
            files: Vec::new(),
            globals,
            functions: HashMap::new(),
            edges: HashMap::new(),
            entries: Vec::new(),
            section_functions: HashMap::new(),
        };
        for (index, file) in files.iter().enumerate() {
            for section in file.sections().filter(|s| is_loaded(s.kind())) {
                let node = (index, section.index());
                let targets: Vec<Node> =
                    section.relocations().filter_map(|(_, relocation)| resolve(&files, &code.globals, index, relocation.target())).collect();
                if !targets.is_empty() {
                    code.edges.insert(node, targets);
                }
            }
            for symbol in file.symbols().filter(|s| s.kind() == SymbolKind::Text && s.is_definition()) {
                let (Ok(name), Some(section)) = (symbol.name(), symbol.section_index()) else { continue };
                if name.is_empty() {
                    continue;
                }
                if name.starts_with(ENTRY_PREFIX) {
                    code.entries.push((index, section));
                }
                code.functions.entry(name.to_string()).or_default().push((index, section));
                code.section_functions.entry((index, section)).or_insert_with(|| name.to_string());
            }
        }
        code.files = files;
        Ok(code)
    }

    /// The fingerprints of the functions `names` (several local copies of a name combined).
    fn fingerprints(&self, names: &[&str]) -> HashMap<String, u64> {
        let mut contents = Contents {
            files: &self.files,
            globals: &self.globals,
            section_functions: &self.section_functions,
            memo: HashMap::new(),
            visiting: HashSet::new(),
        };
        names
            .iter()
            .filter_map(|name| {
                let nodes = self.functions.get(*name)?;
                let mut prints: Vec<u64> = nodes.iter().map(|node| contents.fingerprint(*node)).collect();
                prints.sort_unstable();
                Some((name.to_string(), hash(&prints)))
            })
            .collect()
    }

    /// The function names reachable from `roots`; with `stop_at_entries`, without going
    /// through an export entry (`main` reaches the exports' code through their slots, so
    /// what it reaches that way is what patches switch).
    fn reachable(&self, roots: &[Node], stop_at_entries: bool) -> HashSet<String> {
        let entries: HashSet<Node> = self.entries.iter().copied().collect();
        let mut seen: HashSet<Node> = roots.iter().copied().collect();
        let mut queue: VecDeque<Node> = roots.iter().copied().collect();
        while let Some(node) = queue.pop_front() {
            for target in self.edges.get(&node).into_iter().flatten() {
                if stop_at_entries && entries.contains(target) {
                    continue;
                }
                if seen.insert(*target) {
                    queue.push_back(*target);
                }
            }
        }
        self.functions.iter().filter(|(_, nodes)| nodes.iter().any(|n| seen.contains(n))).map(|(name, _)| name.clone()).collect()
    }
}

/// Sections loaded into the program (code and data), as opposed to debug information.
fn is_loaded(kind: object::SectionKind) -> bool {
    use object::SectionKind::*;
    matches!(kind, Text | Data | ReadOnlyData | ReadOnlyDataWithRel | ReadOnlyString | UninitializedData | Tls | UninitializedTls)
}

/// The section a relocation target lives in, following references by name to other objects.
fn resolve(files: &[object::File<'_>], globals: &HashMap<&str, Node>, index: usize, target: RelocationTarget) -> Option<Node> {
    let RelocationTarget::Symbol(symbol) = target else { return None };
    let symbol = files[index].symbol_by_index(symbol).ok()?;
    match symbol.section_index() {
        Some(section) => Some((index, section)),
        None => globals.get(symbol.name().ok()?).copied(),
    }
}

/// Fingerprints of sections, by content, memoised; a cycle (a static pointing at itself)
/// counts as a constant.
struct Contents<'a, 'data> {
    files: &'a [object::File<'data>],
    globals: &'a HashMap<&'data str, Node>,
    section_functions: &'a HashMap<Node, String>,
    memo: HashMap<Node, u64>,
    visiting: HashSet<Node>,
}

impl Contents<'_, '_> {
    /// A section's bytes (relocated fields zeroed) and, for each relocation, its kind, addend
    /// and target (see [`Contents::identity`]).
    fn fingerprint(&mut self, node: Node) -> u64 {
        if let Some(known) = self.memo.get(&node) {
            return *known;
        }
        if !self.visiting.insert(node) {
            return 0;
        }
        let Ok(section) = self.files[node.0].section_by_index(node.1) else { return 0 };
        let mut bytes = section.data().map(<[u8]>::to_vec).unwrap_or_default();
        let relocations: Vec<(u64, object::Relocation)> = section.relocations().collect();
        let mut parts: Vec<(u64, String, i64, String)> = Vec::new();
        for (offset, relocation) in &relocations {
            let size = usize::from(relocation.size() / 8).max(4);
            if let Some(field) = bytes.get_mut(*offset as usize..*offset as usize + size) {
                field.fill(0);
            }
            parts.push((*offset, format!("{:?}", relocation.flags()), relocation.addend(), String::new()));
        }
        // A panic location: `&'static str` (pointer, length) to a `.rs` path, then line and
        // column. Its file counts; its line and column do not.
        let location = match relocations.as_slice() {
            [(0, relocation)] if bytes.len() == 24 => {
                let length = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
                self.string_at(node.0, relocation.target(), relocation.addend(), length).filter(|path| path.ends_with(".rs"))
            }
            _ => None,
        };
        if let Some(path) = location {
            bytes.truncate(16);
            parts[0].3 = format!("location in {path}");
        } else {
            for (part, (_, relocation)) in parts.iter_mut().zip(&relocations) {
                part.3 = self.identity(node.0, relocation.target());
            }
        }
        let fingerprint = hash(&(section.size(), bytes, parts));
        self.visiting.remove(&node);
        self.memo.insert(node, fingerprint);
        fingerprint
    }

    /// What a relocation points at: a function by name (compared on its own), data by
    /// content, a symbol outside these objects by name.
    fn identity(&mut self, index: usize, target: RelocationTarget) -> String {
        let RelocationTarget::Symbol(symbol) = target else { return format!("{target:?}") };
        let Ok(symbol) = self.files[index].symbol_by_index(symbol) else { return String::new() };
        let name = symbol.name().unwrap_or_default();
        let anonymous = name.is_empty() || name.starts_with(".L") || symbol.kind() == SymbolKind::Section;
        if !anonymous && symbol.kind() == SymbolKind::Text {
            return format!("function {name}");
        }
        let node = match symbol.section_index() {
            Some(section) => (index, section),
            None => match self.globals.get(name) {
                Some(node) => *node,
                None => return format!("undefined {name}"),
            },
        };
        if let Some(function) = self.section_functions.get(&node) {
            return format!("function {function}");
        }
        let content = self.fingerprint(node);
        if anonymous {
            format!("data {content:x}+{}", symbol.address())
        } else {
            // A static read by name: a changed value of it changes what reads it.
            format!("static {name} = {content:x}")
        }
    }

    /// The text at `target` + `addend`, `length` bytes long, if it is text.
    fn string_at(&self, index: usize, target: RelocationTarget, addend: i64, length: u64) -> Option<String> {
        let RelocationTarget::Symbol(symbol) = target else { return None };
        let symbol = self.files[index].symbol_by_index(symbol).ok()?;
        let section = self.files[index].section_by_index(symbol.section_index()?).ok()?;
        let start = usize::try_from(symbol.address() as i64 + addend).ok()?;
        let bytes = section.data().ok()?.get(start..start.checked_add(usize::try_from(length).ok()?)?)?;
        String::from_utf8(bytes.to_vec()).ok()
    }
}

fn hash(value: &impl Hash) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::readable;

    #[test]
    fn closures_and_drop_glue_are_named_after_their_function() {
        assert_eq!(readable("_ZN3app4main17h0123456789abcdefE"), "app::main");
        assert_eq!(readable("app::main::{{closure}}::{{closure}}"), "app::main");
        assert_eq!(readable("core::ptr::drop_in_place<app::main::{{closure}}>"), "app::main");
        assert_eq!(readable("<app::Config as core::default::Default>::default"), "<app::Config as core::default::Default>::default");
    }
}
