//! Thin patches: a patch carries only the code that must be new, and every other function it
//! calls is a 14-byte jump to the running program's newest copy of that function.
//!
//! A patch used to carry its crates' whole code (rustc compiles a crate, not a function), and
//! patches are never unloaded: each save added the crate's code to the program's memory again
//! (561 KiB per patch on test-fixtures/lifecycle-app). What a patch must carry ([`carried`]):
//! the functions whose compiled code changed or is new, the functions it redirects to, the
//! unchanged functions whose panic locations moved (their panics name the new lines), and,
//! going up from each of those that is not redirected (a closure, an `async` body), everything
//! in the new code that refers to it (callers, vtables and the code that builds them) up to an
//! export entry, which the patch switches, or a redirected function. Everything else the
//! running program already has with the same code: its function section in the patch's objects
//! becomes `jmp *0(%rip)` and the address of that copy ([`stub_object`]: the host's, or the one
//! an earlier patch carried), and the link drops what only those bodies used (`--gc-sections`).
//!
//! The rewrite is in place, in the objects rustc wrote, before the link (as `patch::bind` binds
//! statics): the section keeps its symbols, shrinks to the jump, and loses its relocations.
//! x86_64 ELF only; elsewhere a patch carries its crates' whole code, as before.

use std::collections::{HashMap, HashSet, VecDeque};

use anyhow::{bail, Context, Result};
use object::elf;
use object::read::elf::{FileHeader, SectionHeader, Sym};
use object::LittleEndian;

use crate::codediff::{Code, FunctionDiff};

/// `jmp *0(%rip)`, the address it reads, and two `int3`: the stub a function section becomes.
const STUB_LEN: usize = 16;

/// The functions (mangled) a patch must carry, from its new code: see the module's
/// documentation. `redirected`: the functions whose running copies will jump to the new code.
pub fn carried(new: &Code, diff: &FunctionDiff, moved_lines: &[String], redirected: &[String]) -> HashSet<String> {
    let redirected: HashSet<&str> = redirected.iter().map(String::as_str).collect();
    let seeds: Vec<&str> = diff.changed.iter().chain(&diff.added).chain(moved_lines).map(String::as_str).chain(redirected.iter().copied()).collect();
    let mut seen: HashSet<crate::codediff::Node> = HashSet::new();
    let mut queue: VecDeque<crate::codediff::Node> = new.nodes_of(&seeds).into_iter().collect();
    while let Some(node) = queue.pop_front() {
        if !seen.insert(node) {
            continue;
        }
        // The running program reaches these through the switched slot or the jump at its old
        // copy: what refers to them can stay as it is.
        let reached_anyway = new.is_entry(node) || new.function_at(node).is_some_and(|f| redirected.contains(f));
        if reached_anyway {
            continue;
        }
        queue.extend(new.referrers(node).iter().copied().filter(|r| !seen.contains(r)));
    }
    seen.into_iter().filter_map(|node| new.function_at(node).map(str::to_string)).collect()
}

/// What [`stub_object`] did to one object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stubbed {
    /// Function sections that became jumps.
    pub functions: usize,
    /// Bytes of code left out.
    pub bytes: u64,
    /// Bytes of debug info left out (that of objects whose code is all left out).
    pub debug_bytes: u64,
}

impl std::ops::AddAssign for Stubbed {
    fn add_assign(&mut self, other: Self) {
        self.functions += other.functions;
        self.bytes += other.bytes;
        self.debug_bytes += other.debug_bytes;
    }
}

/// Rewrites a relocatable x86_64 ELF object in place: each section holding one function that
/// `carried` lacks and whose running copy `running` knows (its run-time address) becomes a
/// jump to that copy; each carried function's section is marked to be kept by the link's
/// garbage collection (a redirect target is referred to by nothing in the patch). An object
/// that carries no function loses its debug info too (it describes code the patch does not
/// have: with cargo's full debug info, most of a patch's file). Objects for other machines are
/// left as they are.
pub fn stub_object(object: &mut [u8], carried: &HashSet<String>, running: &dyn Fn(&str) -> Option<u64>) -> Result<Stubbed> {
    let edits = plan(object, carried, running)?;
    let stubbed = edits.stubbed;
    for (offset, bytes) in edits.writes {
        object[offset..offset + bytes.len()].copy_from_slice(&bytes);
    }
    Ok(stubbed)
}

struct Edits {
    writes: Vec<(usize, Vec<u8>)>,
    stubbed: Stubbed,
}

fn plan(data: &[u8], carried: &HashSet<String>, running: &dyn Fn(&str) -> Option<u64>) -> Result<Edits> {
    let endian = LittleEndian;
    let mut edits = Edits { writes: Vec::new(), stubbed: Stubbed::default() };
    let header = elf::FileHeader64::<LittleEndian>::parse(data).context("not a 64-bit little-endian ELF object")?;
    if header.e_type(endian) != elf::ET_REL {
        bail!("not a relocatable object");
    }
    if header.e_machine(endian) != elf::EM_X86_64 {
        return Ok(edits);
    }
    let sections = header.sections(endian, data)?;
    let symbols = sections.symbols(endian, data, elf::SHT_SYMTAB)?;
    let section_header_at = |index: usize| header.e_shoff(endian) as usize + index * usize::from(header.e_shentsize(endian));
    let symbol_at = |index: usize| sections.section(symbols.section()).map(|s| s.sh_offset(endian) as usize + index * 24);

    // The named symbols of each section, and its function symbols.
    let mut named: HashMap<usize, usize> = HashMap::new();
    let mut functions: HashMap<usize, Vec<(usize, String, u64)>> = HashMap::new();
    for (index, symbol) in symbols.iter().enumerate() {
        let kind = symbol.st_type();
        let Ok(Some(section)) = symbols.symbol_section(endian, symbol, object::SymbolIndex(index)) else { continue };
        let name = String::from_utf8_lossy(symbol.name(endian, symbols.strings()).unwrap_or_default()).into_owned();
        if name.is_empty() || kind == elf::STT_SECTION || kind == elf::STT_FILE {
            continue;
        }
        *named.entry(section.0).or_default() += 1;
        if kind == elf::STT_FUNC {
            functions.entry(section.0).or_default().push((index, name, symbol.st_value(endian)));
        }
    }
    let mut carries_code = false;
    // The relocation section of each section.
    let mut relocations: HashMap<usize, usize> = HashMap::new();
    for (index, section) in sections.iter().enumerate() {
        if section.sh_type(endian) == elf::SHT_RELA {
            relocations.insert(section.sh_info(endian) as usize, index);
        }
    }
    for (section_index, found) in &functions {
        let section = sections.section(object::SectionIndex(*section_index))?;
        let executable = section.sh_flags(endian) & u64::from(elf::SHF_EXECINSTR) != 0;
        if section.sh_type(endian) != elf::SHT_PROGBITS || !executable {
            continue;
        }
        let header_at = section_header_at(*section_index);
        if found.iter().any(|(_, name, _)| carried.contains(name)) {
            // SHF_GNU_RETAIN: kept whether or not anything in the patch refers to it.
            let flags = section.sh_flags(endian) | u64::from(elf::SHF_GNU_RETAIN);
            edits.writes.push((header_at + 8, flags.to_le_bytes().to_vec()));
            carries_code = true;
            continue;
        }
        let [(symbol_index, name, value)] = found.as_slice() else {
            carries_code = true;
            continue;
        };
        let size = section.sh_size(endian);
        let address = match running(name) {
            Some(address) if *value == 0 && named.get(section_index) == Some(&1) && size >= STUB_LEN as u64 => address,
            _ => {
                carries_code = true;
                continue;
            }
        };
        let mut stub = vec![0xff, 0x25, 0, 0, 0, 0];
        stub.extend_from_slice(&address.to_le_bytes());
        stub.extend_from_slice(&[0xcc, 0xcc]);
        edits.writes.push((section.sh_offset(endian) as usize, stub));
        edits.writes.push((header_at + 32, (STUB_LEN as u64).to_le_bytes().to_vec()));
        edits.writes.push((symbol_at(*symbol_index)? + 16, 14u64.to_le_bytes().to_vec()));
        if let Some(rela) = relocations.get(section_index) {
            edits.writes.push((section_header_at(*rela) + 32, 0u64.to_le_bytes().to_vec()));
        }
        edits.stubbed += Stubbed { functions: 1, bytes: size - STUB_LEN as u64, debug_bytes: 0 };
    }
    if !carries_code && edits.stubbed.functions > 0 {
        for (index, section) in sections.iter().enumerate() {
            let name = sections.section_name(endian, section).unwrap_or_default();
            if name.starts_with(b".debug_") {
                edits.writes.push((section_header_at(index) + 32, 0u64.to_le_bytes().to_vec()));
                edits.stubbed.debug_bytes += section.sh_size(endian);
                if let Some(rela) = relocations.get(&index) {
                    edits.writes.push((section_header_at(*rela) + 32, 0u64.to_le_bytes().to_vec()));
                }
            }
        }
    }
    Ok(edits)
}
