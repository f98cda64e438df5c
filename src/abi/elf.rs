//! Reading what the gate needs from ELF files with `object`: defined and undefined dynamic
//! symbols, the bytes of the `__hot_layout_*` records, and the libraries a binary needs.
//! All ELF specifics live here, so Mach-O and PE readers can be added beside it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use object::elf;
use object::read::elf::{Dyn, ElfFile64, FileHeader};
use object::{Object, ObjectSection, ObjectSymbol};

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
