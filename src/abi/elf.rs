//! Reading what the gate needs from ELF files with `object`: defined and undefined dynamic
//! symbols, the bytes of the `__hot_layout_*` records, and the libraries a binary needs.
//! All ELF specifics live here, so Mach-O and PE readers can be added beside it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use object::elf;
use object::read::elf::{Dyn, ElfFile64, FileHeader};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

pub const ENTRY_PREFIX: &str = "__hot_entry_";
pub const LAYOUT_PREFIX: &str = "__hot_layout_";

/// The dynamic symbols of one ELF file, with the layout records of its exports.
#[derive(Debug, Default, Clone)]
pub struct ElfSymbols {
    /// Names defined and exported.
    pub defined: HashSet<String>,
    /// Names the file needs from elsewhere, with whether the reference is weak.
    pub undefined: Vec<(String, bool)>,
    /// Export key (the name after `__hot_entry_`) → layout record bytes (empty if absent).
    pub exports: BTreeMap<String, Vec<u8>>,
    /// DT_NEEDED entries.
    pub needed: Vec<String>,
    /// DT_RUNPATH / DT_RPATH directories.
    pub runpath: Vec<String>,
}

/// A static or thread-local of a boundary crate, as an ELF file's symbol table has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticSymbol {
    /// The mangled name: the same in the host and in a patch as long as the static keeps its
    /// path and (with the default legacy mangling) its type.
    pub name: String,
    /// `handlers::CACHE`: the demangled path without the hash.
    pub path: String,
    /// Link-time address (executable, patch) or, for a thread-local, offset in the
    /// thread-local block.
    pub value: u64,
    pub size: u64,
    pub thread_local: bool,
}

/// The statics and thread-locals of `crate_names` that hold mutable state (in `.data`,
/// `.bss`, `.tdata`, `.tbss`; read-only ones need no binding), and the value of
/// `anchor` if the file defines it. Reads the full symbol table (`.symtab`), which keeps
/// private items; a stripped file has none.
pub fn read_statics(path: &Path, crate_names: &[String], anchor: &str) -> Result<(Vec<StaticSymbol>, Option<u64>)> {
    let data = crate::sys::map_file(path)?;
    let file = object::File::parse(&*data).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(statics_of(&file, crate_names, anchor))
}

/// What the gate and the binding of statics need from the host executable, read from one
/// mapping of the file (a large host is hundreds of megabytes; only its symbol tables and
/// dynamic section are touched): its dynamic symbols and needed libraries, and the statics
/// of `crate_names` with the anchor's value.
pub fn read_host(path: &Path, crate_names: &[String], anchor: &str) -> Result<(ElfSymbols, Vec<StaticSymbol>, Option<u64>)> {
    let data = crate::sys::map_file(path)?;
    let symbols = parse(&data).with_context(|| format!("cannot read the ELF symbols of {}", path.display()))?;
    let file = object::File::parse(&*data).with_context(|| format!("cannot read {}", path.display()))?;
    let (statics, anchor) = statics_of(&file, crate_names, anchor);
    Ok((symbols, statics, anchor))
}

fn statics_of<'data>(file: &object::File<'data>, crate_names: &[String], anchor: &str) -> (Vec<StaticSymbol>, Option<u64>) {
    let prefixes: Vec<String> = crate_names.iter().map(|c| format!("{c}::")).collect();
    let mut statics = Vec::new();
    let mut anchor_value = None;
    for symbol in file.symbols() {
        let Ok(name) = symbol.name() else { continue };
        if name == anchor {
            anchor_value = Some(symbol.address());
            continue;
        }
        let thread_local = symbol.kind() == object::SymbolKind::Tls;
        if !(thread_local || symbol.kind() == object::SymbolKind::Data) || symbol.is_undefined() {
            continue;
        }
        let Some(section) = symbol.section_index().and_then(|i| file.section_by_index(i).ok()) else { continue };
        if !section.name().is_ok_and(holds_mutable_state) {
            continue;
        }
        let path = demangled_path(name);
        if prefixes.iter().any(|p| path.starts_with(p.as_str())) {
            statics.push(StaticSymbol { name: name.to_string(), path, value: symbol.address(), size: symbol.size(), thread_local });
        }
    }
    (statics, anchor_value)
}

/// Whether a section of this name holds statics whose values can change at run time:
/// `.data`, `.bss` and the thread-local `.tdata`/`.tbss` (each also as `.data.<symbol>` in
/// object files), but not `.data.rel.ro` (read-only once relocated).
pub fn holds_mutable_state(section: &str) -> bool {
    let family = |base: &str| section == base || section.strip_prefix(base).is_some_and(|rest| rest.starts_with('.'));
    (family(".data") && !family(".data.rel.ro")) || family(".bss") || family(".tdata") || family(".tbss")
}

/// `handlers::CACHE` for `_ZN8handlers5CACHE17h0123456789abcdefE` (the path without the hash).
pub fn demangled_path(name: &str) -> String {
    match rustc_demangle::try_demangle(name) {
        Ok(demangled) => format!("{demangled:#}"),
        Err(_) => name.to_string(),
    }
}

pub fn read(path: &Path) -> Result<ElfSymbols> {
    let data = crate::sys::map_file(path)?;
    parse(&data).with_context(|| format!("cannot read the ELF symbols of {}", path.display()))
}

fn parse(data: &[u8]) -> Result<ElfSymbols> {
    let file = ElfFile64::<object::Endianness>::parse(data)?;
    let mut symbols = ElfSymbols::default();
    let mut layouts: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for symbol in file.dynamic_symbols() {
        let Ok(name) = symbol.name() else { continue };
        if name.is_empty() {
            continue;
        }
        if symbol.is_undefined() {
            symbols.undefined.push((name.to_string(), symbol.is_weak()));
            continue;
        }
        if let Some(key) = name.strip_prefix(ENTRY_PREFIX) {
            symbols.exports.entry(key.to_string()).or_default();
        } else if let Some(key) = name.strip_prefix(LAYOUT_PREFIX) {
            layouts.insert(key.to_string(), symbol_bytes(&file, &symbol).unwrap_or_default());
        }
        symbols.defined.insert(name.to_string());
    }
    for (key, layout) in symbols.exports.iter_mut() {
        if let Some(bytes) = layouts.remove(key) {
            *layout = bytes;
        }
    }
    read_dynamic(&file, data, &mut symbols)?;
    Ok(symbols)
}

fn symbol_bytes<'data>(file: &ElfFile64<'data, object::Endianness>, symbol: &impl ObjectSymbol<'data>) -> Option<Vec<u8>> {
    let section = file.section_by_index(symbol.section_index()?).ok()?;
    section.data_range(symbol.address(), symbol.size()).ok().flatten().map(<[u8]>::to_vec)
}

fn read_dynamic(file: &ElfFile64<'_, object::Endianness>, data: &[u8], symbols: &mut ElfSymbols) -> Result<()> {
    let endian = file.endian();
    let sections = file.elf_header().sections(endian, data)?;
    let Some((entries, strings_index)) = sections.dynamic(endian, data)? else { return Ok(()) };
    let strings = sections.strings(endian, data, strings_index)?;
    for entry in entries {
        let Some(tag) = entry.tag32(endian) else { continue };
        let value = || entry.string(endian, strings).ok().map(|s| String::from_utf8_lossy(s).into_owned());
        match tag {
            elf::DT_NEEDED => symbols.needed.extend(value()),
            elf::DT_RUNPATH | elf::DT_RPATH => {
                symbols.runpath.extend(value().into_iter().flat_map(|v| v.split(':').map(str::to_string).collect::<Vec<_>>()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Finds the shared libraries a binary needs, transitively, the way the dynamic loader
/// would: RUNPATH, LD_LIBRARY_PATH, then the system directories.
pub fn needed_libraries(binary: &Path, symbols: &ElfSymbols) -> Vec<(String, Option<PathBuf>)> {
    let origin = binary.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut search: Vec<PathBuf> = symbols.runpath.iter().map(|d| PathBuf::from(d.replace("$ORIGIN", &origin.to_string_lossy()))).collect();
    if let Some(paths) = std::env::var_os("LD_LIBRARY_PATH") {
        search.extend(std::env::split_paths(&paths));
    }
    search.extend(system_library_dirs());
    let mut found = Vec::new();
    let mut queue: Vec<String> = symbols.needed.clone();
    let mut seen = HashSet::new();
    while let Some(name) = queue.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let path = if name.contains('/') { Some(PathBuf::from(&name)) } else { search.iter().map(|d| d.join(&name)).find(|p| p.is_file()) };
        if let Some(path) = &path {
            if let Ok(lib) = read(path) {
                queue.extend(lib.needed);
            }
        }
        found.push((name, path));
    }
    found
}

fn system_library_dirs() -> Vec<PathBuf> {
    let arch = std::env::consts::ARCH;
    [
        format!("/lib/{arch}-linux-gnu"),
        format!("/usr/lib/{arch}-linux-gnu"),
        "/lib64".into(),
        "/usr/lib64".into(),
        "/lib".into(),
        "/usr/lib".into(),
        "/usr/local/lib".into(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

#[cfg(test)]
mod static_tests {
    use super::*;

    #[test]
    fn mutable_sections_are_told_from_read_only_ones() {
        for yes in [".data", ".bss", ".tdata", ".tbss", ".data._ZN1h1XE", ".bss._ZN1h1XE", ".tbss._ZN1h1XE"] {
            assert!(holds_mutable_state(yes), "{yes}");
        }
        for no in [".rodata", ".rodata._ZN1h1XE", ".data.rel.ro", ".data.rel.ro._ZN1h1XE", ".text", ".database"] {
            assert!(!holds_mutable_state(no), "{no}");
        }
    }

    #[test]
    fn paths_drop_the_hash() {
        assert_eq!(demangled_path("_ZN8handlers5CACHE17h0123456789abcdefE"), "handlers::CACHE");
        assert_eq!(demangled_path("plain_c_name"), "plain_c_name");
    }
}

/// Where a function's code is in an ELF file: its link-time address and how many bytes from
/// there belong to it (up to the next function, alignment padding included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionCode {
    pub address: u64,
    pub room: u64,
}

/// The functions named in `names` (mangled) that the file's full symbol table (`.symtab`)
/// defines: every copy of each (local names may repeat).
pub fn function_code(path: &Path, names: &dyn Fn(&str) -> bool) -> Result<std::collections::HashMap<String, Vec<FunctionCode>>> {
    let data = crate::sys::map_file(path)?;
    let file = object::File::parse(&*data).with_context(|| format!("cannot read {}", path.display()))?;
    // Every function start, per section, to tell where each one ends.
    let mut starts: Vec<(object::SectionIndex, u64, u64)> = Vec::new();
    let mut wanted: Vec<(String, object::SectionIndex, u64, u64)> = Vec::new();
    for symbol in file.symbols() {
        if symbol.kind() != object::SymbolKind::Text || !symbol.is_definition() {
            continue;
        }
        let Some(section) = symbol.section_index() else { continue };
        starts.push((section, symbol.address(), symbol.size()));
        if let Ok(name) = symbol.name() {
            if !name.is_empty() && names(name) {
                wanted.push((name.to_string(), section, symbol.address(), symbol.size()));
            }
        }
    }
    starts.sort_unstable_by_key(|(section, address, _)| (section.0, *address));
    // The last function of a section ends where the next section of its segment starts (the
    // bytes between are alignment padding), or where the page holding the segment's end ends:
    // the rest of that page is mapped with it and belongs to no section (the next segment
    // starts on another page).
    let mut section_starts: Vec<u64> = file.sections().filter(|s| s.address() != 0 && s.size() != 0).map(|s| s.address()).collect();
    section_starts.sort_unstable();
    const PAGE: u64 = 4096;
    let segments: Vec<(u64, u64)> = file.segments().map(|s| (s.address(), (s.address() + s.size()).div_ceil(PAGE) * PAGE)).collect();
    let mut found: std::collections::HashMap<String, Vec<FunctionCode>> = std::collections::HashMap::new();
    for (name, section, address, size) in wanted {
        let next = starts.partition_point(|(s, a, _)| (s.0, *a) <= (section.0, address));
        let room = match starts.get(next) {
            Some((s, next_address, _)) if *s == section => next_address - address,
            _ => {
                let segment_end = segments.iter().find(|(start, end)| (*start..*end).contains(&address)).map(|(_, end)| *end);
                let next_section = section_starts.iter().find(|start| **start > address).copied();
                match (next_section, segment_end) {
                    (Some(next), Some(end)) => next.min(end) - address,
                    (None, Some(end)) => end - address,
                    _ => size,
                }
                .max(size)
            }
        };
        found.entry(name).or_default().push(FunctionCode { address, room });
    }
    Ok(found)
}
