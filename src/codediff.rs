//! A diff of compiled code: which functions of a crate changed between two compiles, decided
//! from the object files rustc wrote, not from the source text.
//!
//! A function's fingerprint is its machine code with the relocated fields zeroed, plus what
//! each relocation points at: another function by name (it is compared on its own), a static
//! or anonymous data (constants, string literals, vtables) by content. A panic location
//! (file, line, column) counts by its file only, so lines shifting below an edit do not make
//! every function after it look changed. Debug information is not code: the same source
//! compiled with full debug info (cargo's dev build) and with line tables (a patch) has the
//! same fingerprints.
//!
//! The same reading gives the graph of references between the crate's sections (calls,
//! function pointers, vtables), from which `patch::reach` tells what the running program can
//! still reach.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

use anyhow::{Context, Result};
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionIndex, SymbolKind};

use crate::patch::ObjectFile;

/// The roots of the code a patch switches: its export entries.
const ENTRY_PREFIX: &str = crate::abi::elf::ENTRY_PREFIX;

/// A section of one object file: the unit of code or data that relocations point into.
pub type Node = (usize, SectionIndex);

/// The functions of a set of object files and what refers to what.
pub struct Code<'data> {
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
    /// Section → the sections whose relocations point into it.
    referrers: HashMap<Node, Vec<Node>>,
    /// Which of the parts given to [`Code::read_parts`] each object file came from.
    owners: Vec<usize>,
}

impl<'data> Code<'data> {
    pub fn read(objects: &'data [ObjectFile]) -> Result<Self> {
        Self::read_parts(&[(0, objects)])
    }

    /// The code of several crates as one program: references by name between them are
    /// edges, and [`Code::owner`] tells which part (a crate's index) a section is from.
    pub fn read_parts(parts: &[(usize, &'data [ObjectFile])]) -> Result<Self> {
        let objects: Vec<(usize, &'data ObjectFile)> = parts.iter().flat_map(|(owner, objects)| objects.iter().map(|o| (*owner, o))).collect();
        let owners = objects.iter().map(|(owner, _)| *owner).collect();
        let files: Vec<object::File<'data>> =
            objects.iter().map(|(_, o)| object::File::parse(&*o.data).with_context(|| format!("cannot read the object {}", o.name))).collect::<Result<_>>()?;
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
            referrers: HashMap::new(),
            owners,
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
        for (from, targets) in &code.edges {
            for target in targets {
                if target != from {
                    code.referrers.entry(*target).or_default().push(*from);
                }
            }
        }
        code.files = files;
        Ok(code)
    }

    /// The part (see [`Code::read_parts`]) a section comes from.
    pub fn owner(&self, node: Node) -> usize {
        self.owners.get(node.0).copied().unwrap_or_default()
    }

    /// The parts that define a function of this name (a local copy may repeat a name).
    pub fn owners_of(&self, name: &str) -> Vec<usize> {
        let mut owners: Vec<usize> = self.functions.get(name).into_iter().flatten().map(|node| self.owner(*node)).collect();
        owners.sort_unstable();
        owners.dedup();
        owners
    }

    /// Every function with the parts that define it.
    pub fn functions_with_owners(&self) -> impl Iterator<Item = (&str, Vec<usize>)> + '_ {
        self.functions.iter().map(|(name, nodes)| {
            let mut owners: Vec<usize> = nodes.iter().map(|node| self.owner(*node)).collect();
            owners.dedup();
            (name.as_str(), owners)
        })
    }

    /// The sections that refer to `node` (call it, take its address, hold it in a vtable).
    pub fn referrers(&self, node: Node) -> &[Node] {
        self.referrers.get(&node).map(Vec::as_slice).unwrap_or_default()
    }

    /// The function a code section defines, if it is one.
    pub fn function_at(&self, node: Node) -> Option<&str> {
        self.section_functions.get(&node).map(String::as_str)
    }

    /// Whether `node` defines an export entry.
    pub fn is_entry(&self, node: Node) -> bool {
        self.entries.contains(&node)
    }

    /// The global names defined in `node`.
    pub fn globals_at(&self, node: Node) -> Vec<&str> {
        self.globals.iter().filter(|(_, n)| **n == node).map(|(name, _)| *name).collect()
    }

    /// Every function name the objects define (mangled).
    pub fn function_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.functions.keys().map(String::as_str)
    }

    pub fn defines(&self, name: &str) -> bool {
        self.functions.contains_key(name) || self.globals.contains_key(name)
    }

    /// The sections defining these names (functions or data).
    pub fn nodes_of(&self, names: &[&str]) -> Vec<Node> {
        let mut nodes = Vec::new();
        for name in names {
            match self.functions.get(*name) {
                Some(found) => nodes.extend(found.iter().copied()),
                None => nodes.extend(self.globals.get(name).copied()),
            }
        }
        nodes
    }

    /// The sections defining export entries.
    pub fn entries(&self) -> &[Node] {
        &self.entries
    }

    /// The sections defining the program's `main` (the C entry point rustc generates, and the
    /// crate's `fn main`).
    pub fn main_nodes(&self) -> Vec<Node> {
        self.functions.iter().filter(|(name, _)| is_main(name)).flat_map(|(_, nodes)| nodes.iter().copied()).collect()
    }

    /// The lines and columns of the panic locations a function's code refers to (its copies
    /// combined): the fingerprints count a location by its file only.
    pub fn location_lines(&self, name: &str) -> Vec<(u32, u32)> {
        let mut lines = Vec::new();
        for &(index, section) in self.functions.get(name).into_iter().flatten() {
            let Ok(section) = self.files[index].section_by_index(section) else { continue };
            for (_, relocation) in section.relocations() {
                let Some(target) = resolve(&self.files, &self.globals, index, relocation.target()) else { continue };
                let Ok(data) = self.files[target.0].section_by_index(target.1) else { continue };
                let Ok(bytes) = data.data() else { continue };
                let mut relocations = data.relocations();
                let single = matches!((relocations.next(), relocations.next()), (Some((0, _)), None));
                if single && bytes.len() == 24 && data.name().is_ok_and(|n| n.starts_with(".data.rel.ro")) {
                    let line = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
                    let column = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
                    lines.push((line, column));
                }
            }
        }
        lines.sort_unstable();
        lines
    }

    /// A fresh fingerprinting of these objects' sections.
    fn contents(&self) -> Contents<'_, 'data> {
        Contents { files: &self.files, globals: &self.globals, section_functions: &self.section_functions, memo: HashMap::new(), visiting: HashSet::new() }
    }

    /// The fingerprints of the functions `names` (several local copies of a name combined).
    pub fn fingerprints(&self, names: &[&str]) -> HashMap<String, u64> {
        let mut contents = self.contents();
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

    /// The fingerprint of the data a global name (a static) holds.
    pub fn data_fingerprint(&self, name: &str) -> Option<u64> {
        let node = *self.globals.get(name)?;
        Some(self.contents().fingerprint(node))
    }

    /// Whether the global `name` is data (not a function).
    pub fn is_data(&self, name: &str) -> bool {
        self.globals.contains_key(name) && !self.functions.contains_key(name)
    }

    /// The function names reachable from `roots`; with `stop_at_entries`, without going
    /// through an export entry (what is reached only through an entry is what a patch
    /// switches).
    pub fn reachable(&self, roots: &[Node], stop_at_entries: bool) -> HashSet<String> {
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

/// The names a set of object files defines and needs, from their symbol tables alone (no
/// relocations read): what the rest of a program refers to is known without building its
/// graph.
#[derive(Debug, Clone, Default)]
pub struct SymbolNames {
    /// Functions defined (local copies included).
    pub functions: HashSet<String>,
    /// Names referenced and defined by none of the objects.
    pub undefined: HashSet<String>,
}

impl SymbolNames {
    pub fn read(objects: &[ObjectFile]) -> Result<Self> {
        let mut names = SymbolNames::default();
        let mut globals = HashSet::new();
        for object in objects {
            let file = object::File::parse(&*object.data).with_context(|| format!("cannot read the object {}", object.name))?;
            for symbol in file.symbols() {
                let Ok(name) = symbol.name() else { continue };
                if name.is_empty() {
                    continue;
                }
                if symbol.is_undefined() {
                    names.undefined.insert(name.to_string());
                } else if symbol.is_definition() {
                    if symbol.is_global() {
                        globals.insert(name.to_string());
                    }
                    if symbol.kind() == SymbolKind::Text {
                        names.functions.insert(name.to_string());
                    }
                }
            }
        }
        names.undefined.retain(|name| !globals.contains(name));
        Ok(names)
    }
}

/// What changed between two compiles of one crate, by function (mangled names, sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionDiff {
    /// Defined by both, with different code.
    pub changed: Vec<String>,
    /// Defined only by the new code.
    pub added: Vec<String>,
}

/// Compares every function both compiles define.
pub fn diff(old: &Code, new: &Code) -> FunctionDiff {
    let (mut both, mut added) = (Vec::new(), Vec::new());
    for name in new.function_names() {
        if old.functions.contains_key(name) {
            both.push(name);
        } else {
            added.push(name.to_string());
        }
    }
    let (before, after) = (old.fingerprints(&both), new.fingerprints(&both));
    let mut changed: Vec<String> = both.iter().filter(|name| before.get(**name) != after.get(**name)).map(|n| n.to_string()).collect();
    changed.sort();
    added.sort();
    FunctionDiff { changed, added }
}

/// The functions both compiles define with the same code whose panic locations name other
/// lines or columns (code moved below an edit).
pub fn moved_locations(old: &Code, new: &Code, diff: &FunctionDiff) -> Vec<String> {
    let changed: HashSet<&str> = diff.changed.iter().map(String::as_str).collect();
    let mut moved: Vec<String> = new
        .function_names()
        .filter(|name| !changed.contains(name) && old.functions.contains_key(*name))
        .filter(|name| old.location_lines(name) != new.location_lines(name))
        .map(str::to_string)
        .collect();
    moved.sort();
    moved
}

/// `main` (the C entry point rustc generates) and the crate's `fn main`.
fn is_main(name: &str) -> bool {
    name == "main" || format!("{:#}", rustc_demangle::demangle(name)).rsplit("::").next() == Some("main")
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
        // A constant of its own size in a section shared with others (string literals in a
        // merged `.rodata.str` section): its own bytes count, not its neighbours'.
        if symbol.size() > 0 && symbol.kind() != SymbolKind::Section {
            if let Some(bytes) = self.plain_bytes(node, symbol.address(), symbol.size()) {
                return format!("data {:x}", hash(&bytes));
            }
        }
        let content = self.fingerprint(node);
        if anonymous {
            format!("data {content:x}+{}", symbol.address())
        } else {
            // A static read by name: a changed value of it changes what reads it.
            format!("static {name} = {content:x}")
        }
    }

    /// The bytes `start..start + size` of a section that has no relocations (plain data).
    fn plain_bytes(&self, node: Node, start: u64, size: u64) -> Option<Vec<u8>> {
        let section = self.files[node.0].section_by_index(node.1).ok()?;
        if section.relocations().next().is_some() {
            return None;
        }
        let data = section.data().ok()?;
        data.get(usize::try_from(start).ok()?..usize::try_from(start + size).ok()?).map(<[u8]>::to_vec)
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
