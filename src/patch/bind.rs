//! Binding a patch's statics and thread-locals to the running program's copies, so that they
//! keep their values across patches: a counter keeps counting, a `OnceLock` cache stays
//! filled, a `thread_local!` keeps each thread's value.
//!
//! rustc compiles a crate's private statics as local symbols that its code reaches
//! PC-relative (`lea CACHE(%rip)`, relocated against the static's section): nothing a dynamic
//! loader could redirect, so a patch linked as is would use fresh copies of its own (what
//! Dioxus's subsecond does). Instead, before the patch is linked, each object file of the
//! boundary is rewritten in place (x86_64 ELF), as a linker rewrites code when it relaxes it:
//!
//! - a static the running program has becomes an absolute symbol at its address there;
//!   `lea sym(%rip), %reg` becomes `mov sym@GOTPCREL(%rip), %reg` (same length: the GOT
//!   entry holds that absolute address), GOT loads and absolute pointers (`R_X86_64_64`,
//!   debug info included) point at it;
//! - a thread-local the executable has: the local-dynamic and general-dynamic sequences
//!   (`call __tls_get_addr`) become local-exec ones, `mov %fs:0, %rax` plus the variable's
//!   offset from the thread pointer, which is the same on every thread for the executable's
//!   static thread-local block.
//!
//! Only statics the source declares are bound (`static` items, `thread_local!` and
//! `lazy_static!` names, see [`Homes::declare`]), and only when the running program has
//! exactly one static of that path: statics that macros generate inside function bodies
//! (tracing's callsites) are numbered by position, so the same name can mean another line
//! after an edit; they get fresh copies, as new statics do.
//!
//! What cannot be rewritten safely makes the patch unbindable, and cargo hot restarts: a
//! static read or written through a direct memory operand (`static mut`, or optimised code),
//! a static whose type or size changed, a thread-local introduced by an earlier patch (its
//! block is allocated per thread at run time), any other instruction or relocation.
//! Read-only statics are left alone: the patch's copy holds the same value, or the new one
//! if the initializer changed.

use std::collections::{HashMap, HashSet};

use anyhow::{bail, Context, Result};
use object::elf;
use object::read::elf::{FileHeader, Rela, SectionHeader, Sym};
use object::LittleEndian;

use crate::abi::source::DeclaredStatics;
use crate::abi::StaticSymbol;

/// Where a static of the boundary lives in the running program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Home {
    /// Its absolute address in the running process.
    Data { address: u64, size: u64 },
    /// Its offset from the thread pointer (the executable's static thread-local block).
    ThreadLocal { tp_offset: i64, size: u64 },
}

/// The homes of the boundary's statics in one running program: the host binary's, then
/// those that applied patches introduced.
#[derive(Debug, Clone, Default)]
pub struct Homes {
    /// Mangled name → where it lives, or why it cannot be bound.
    by_name: HashMap<String, Result<Home, String>>,
    /// Demangled path → the mangled names the program has for it (a patch defining the same
    /// path under another name changed the static's type).
    names_by_path: HashMap<String, HashSet<String>>,
    /// The statics the boundary's source declares (see [`Homes::declare`]).
    declared: DeclaredStatics,
    /// The mangled names that are thread-locals.
    thread_locals: HashSet<String>,
    /// The executable's load bias in the running program (run-time minus link-time
    /// addresses), when known.
    pub bias: Option<u64>,
}

/// The executable's load bias in the running program: as its runtime reports it, or from where
/// the runtime's anchor is at run time (`anchor`) and where the binary's symbol table puts it
/// (`host_anchor`: the runtime linked into the executable).
pub fn load_bias(reported: Option<u64>, host_anchor: Option<u64>, anchor: u64) -> Option<u64> {
    reported.or_else(|| host_anchor.filter(|_| anchor != 0).map(|linked| anchor.wrapping_sub(linked)))
}

impl Homes {
    /// The host binary's statics in the running process, whose executable was loaded with
    /// `bias` (see [`load_bias`]); `tls_offset` is the executable's thread-local block's
    /// offset from the thread pointer, when the runtime could tell.
    pub fn of_program(statics: &[StaticSymbol], bias: Option<u64>, tls_offset: Option<i64>) -> Self {
        let mut homes = Homes { bias, ..Homes::default() };
        for symbol in statics {
            let home = match (symbol.thread_local, bias, tls_offset) {
                (false, Some(bias), _) => Ok(Home::Data { address: symbol.value.wrapping_add(bias), size: symbol.size }),
                (true, Some(_), Some(offset)) => Ok(Home::ThreadLocal { tp_offset: offset + symbol.value as i64, size: symbol.size }),
                (true, Some(_), None) => Err(format!(
                    "the running program did not say where its thread-locals are, so `{}` cannot keep its value",
                    symbol.path
                )),
                (_, None, _) => Err(format!(
                    "the running program's symbol table is missing (a stripped binary, or a `hot-runtime` older than cargo-hot), so `{}` cannot keep its value",
                    symbol.path
                )),
            };
            homes.insert(symbol, home);
        }
        homes
    }

    /// The statics a loaded patch introduced (defined in it, not bound to an older home),
    /// loaded at `base`. Its thread-locals live in a block allocated at run time, which later
    /// patches cannot reach.
    pub fn add_patch(&mut self, statics: &[StaticSymbol], base: u64) {
        // A thread-local of a known path is the unused twin that `thread_local!` expands to
        // (the other branch of its `needs_drop` choice), which the program's link dropped.
        let introduced: Vec<&StaticSymbol> = statics
            .iter()
            .filter(|s| !self.by_name.contains_key(&s.name))
            .filter(|s| !(s.thread_local && self.names_by_path.contains_key(&s.path)))
            .collect();
        for symbol in introduced {
            let home = if symbol.thread_local {
                Err(format!(
                    "the thread-local `{}` was added by an earlier patch, whose thread-locals later patches cannot reach",
                    symbol.path
                ))
            } else {
                Ok(Home::Data { address: symbol.value.wrapping_add(base), size: symbol.size })
            };
            self.insert(symbol, home);
        }
    }

    fn insert(&mut self, symbol: &StaticSymbol, home: Result<Home, String>) {
        if symbol.thread_local {
            self.thread_locals.insert(symbol.name.clone());
        }
        self.by_name.insert(symbol.name.clone(), home);
        self.names_by_path.entry(symbol.path.clone()).or_default().insert(symbol.name.clone());
    }

    /// The statics that the boundary's source declares, as the source check read them for
    /// this patch: only those are bound.
    pub fn declare(&mut self, declared: DeclaredStatics) {
        self.declared = declared;
    }

    /// The home of the static `name` defined or referenced by a patch, if it is to be bound:
    /// declared in the source and, for a static, the only one of its path in the running
    /// program. (A `thread_local!` expands to two statics of one path that differ in type,
    /// hence in name: the exact name is enough.) A known reason not to bind always counts.
    fn home_of(&self, name: &str) -> Option<&Result<Home, String>> {
        let home = self.by_name.get(name)?;
        let path = crate::abi::elf::demangled_path(name);
        if !self.is_declared(&path) {
            return None;
        }
        let unique = self.names_by_path.get(&path).is_some_and(|names| names.len() == 1);
        let thread_local = self.thread_locals.contains(name);
        (unique || thread_local || home.is_err()).then_some(home)
    }

    fn is_declared(&self, path: &str) -> bool {
        self.declared.declares(path)
    }

    /// A static the patch defines under a name the program does not have, where the program
    /// has exactly one declared static of that path: its type changed.
    fn changed_type(&self, name: &str) -> Option<String> {
        let path = crate::abi::elf::demangled_path(name);
        let names = self.names_by_path.get(&path)?;
        (names.len() == 1 && !names.contains(name) && self.is_declared(&path)).then_some(path)
    }

    /// The statics of a linked patch (`defined`: those it keeps a copy of) that the running
    /// program has under the same path: each starts again from its initializer in the new
    /// code. Statics that macros generate (tracing's callsites, `__`-names) are left out:
    /// their fresh copies are by design.
    pub fn fresh_copies(&self, defined: &[StaticSymbol]) -> Vec<String> {
        let mut fresh: Vec<String> = defined
            .iter()
            .filter(|s| self.names_by_path.contains_key(&s.path))
            .map(|s| s.path.clone())
            .filter(|path| {
                let last = path.rsplit("::").next().unwrap_or_default();
                !last.starts_with("__") && !last.starts_with('{') && !matches!(last, "CALLSITE" | "META")
            })
            .collect();
        fresh.sort();
        fresh.dedup();
        fresh
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Why a patch's statics cannot be bound; shown as the reason for the restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unbindable(pub String);

/// How many references one object had bound, and how many of its statics' definitions were
/// made absolute (an object may define a static that only other objects reference).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bound {
    pub statics: usize,
    pub thread_locals: usize,
    pub definitions: usize,
}

impl std::ops::AddAssign for Bound {
    fn add_assign(&mut self, other: Self) {
        self.statics += other.statics;
        self.thread_locals += other.thread_locals;
        self.definitions += other.definitions;
    }
}

const R_NONE: u32 = elf::R_X86_64_NONE;
/// `mov %fs:0, %rax` with three prefixes: the 12 bytes that replace a local-dynamic
/// `lea x@tlsld(%rip), %rdi; call __tls_get_addr@PLT` (what lld writes when it relaxes it).
const LD_TO_LE: [u8; 12] = [0x66, 0x66, 0x66, 0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0];
/// `mov %fs:0, %rax; lea x@tpoff(%rax), %rax` without its 4-byte offset: with it, the 16
/// bytes that replace a general-dynamic
/// `data16 lea x@tlsgd(%rip), %rdi; data16 data16 rex64 call __tls_get_addr@PLT`.
const GD_TO_LE: [u8; 12] = [0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0, 0x48, 0x8d, 0x80];

/// One symbol of the object, as much as binding needs.
struct Symbol {
    name: String,
    kind: u8,
    /// The section that defines it (extended indices resolved); None for undefined,
    /// absolute and common symbols.
    section: Option<usize>,
    undefined: bool,
    value: u64,
    size: u64,
}

/// What a reference points at, once resolved through section symbols.
#[derive(Clone, Copy)]
enum Target {
    /// A static with a home; `symbol` is the object's symbol for it (made absolute), and
    /// `offset` the reference's addend relative to the static's start.
    Data { symbol: usize, offset: i64 },
    ThreadLocal { tp_offset: i64, offset: i64 },
}

/// Rewrites the relocatable object `object` in place so that its references to statics with
/// a home in `homes` use the running program's copies. `Ok(Err(_))` when some reference
/// cannot be bound (nothing useful was written: the patch must not be linked from it).
pub fn bind_object(object: &mut [u8], homes: &Homes) -> Result<Result<Bound, Unbindable>> {
    let mut edits = Edits::default();
    let bound = match plan_object(object, homes, &mut edits)? {
        Ok(bound) => bound,
        Err(unbindable) => return Ok(Err(unbindable)),
    };
    edits.apply(object);
    Ok(Ok(bound))
}

/// Byte writes at file offsets, collected while the object is read and applied after.
#[derive(Default)]
struct Edits(Vec<(usize, Vec<u8>)>);

impl Edits {
    fn write(&mut self, offset: usize, bytes: &[u8]) {
        self.0.push((offset, bytes.to_vec()));
    }

    /// Rewrites the relocation entry at `offset` (an `Elf64_Rela`).
    fn relocation(&mut self, offset: usize, symbol: u32, kind: u32, addend: i64) {
        let info = (u64::from(symbol) << 32) | u64::from(kind);
        self.write(offset + 8, &info.to_le_bytes());
        self.write(offset + 16, &addend.to_le_bytes());
    }

    fn apply(self, object: &mut [u8]) {
        for (offset, bytes) in self.0 {
            object[offset..offset + bytes.len()].copy_from_slice(&bytes);
        }
    }
}

fn plan_object(data: &[u8], homes: &Homes, edits: &mut Edits) -> Result<Result<Bound, Unbindable>> {
    let endian = LittleEndian;
    let header = elf::FileHeader64::<LittleEndian>::parse(data).context("not a 64-bit little-endian ELF object")?;
    if header.e_type(endian) != elf::ET_REL {
        bail!("not a relocatable object");
    }
    let x86_64 = header.e_machine(endian) == elf::EM_X86_64;
    let sections = header.sections(endian, data)?;
    let symbol_table = sections.symbols(endian, data, elf::SHT_SYMTAB)?;
    let symtab_offset = sections.section(symbol_table.section())?.sh_offset(endian) as usize;
    let section_names: Vec<String> = sections
        .iter()
        .map(|s| String::from_utf8_lossy(sections.section_name(endian, s).unwrap_or_default()).into_owned())
        .collect();

    let symbols: Vec<Symbol> = symbol_table
        .iter()
        .enumerate()
        .map(|(index, s)| Symbol {
            name: String::from_utf8_lossy(s.name(endian, symbol_table.strings()).unwrap_or_default()).into_owned(),
            kind: s.st_type(),
            section: symbol_table.symbol_section(endian, s, object::SymbolIndex(index)).ok().flatten().map(|i| i.0),
            undefined: s.st_shndx(endian) == elf::SHN_UNDEF,
            value: s.st_value(endian),
            size: s.st_size(endian),
        })
        .collect();
    // How many named symbols each section defines: a reference through a section symbol
    // binds only when the section holds nothing but the bound static.
    let mut named_in_section: HashMap<usize, usize> = HashMap::new();
    for symbol in symbols.iter().filter(|s| !s.name.is_empty() && s.kind != elf::STT_SECTION && s.kind != elf::STT_FILE) {
        if let Some(section) = symbol.section {
            *named_in_section.entry(section).or_default() += 1;
        }
    }

    // The homes of the statics this object defines or references, by symbol index, and the
    // sections that hold a defined one (for references made through section symbols).
    let mut homes_by_symbol: HashMap<usize, Home> = HashMap::new();
    let mut section_static: HashMap<usize, Option<usize>> = HashMap::new();
    for (index, symbol) in symbols.iter().enumerate() {
        let defined = symbol.section.is_some();
        // References to another object's static are untyped (`NOTYPE`).
        let is_static = matches!(symbol.kind, elf::STT_OBJECT | elf::STT_TLS) || (symbol.undefined && symbol.kind == elf::STT_NOTYPE);
        if !is_static || symbol.name.is_empty() || !(defined || symbol.undefined) {
            continue;
        }
        if let Some(section) = symbol.section {
            if !section_names.get(section).is_some_and(|n| crate::abi::elf::holds_mutable_state(n)) {
                continue; // read-only: the patch's copy is as good
            }
        }
        let home = match homes.home_of(&symbol.name) {
            Some(Ok(home)) => *home,
            Some(Err(reason)) if defined => return Ok(Err(Unbindable(reason.clone()))),
            Some(Err(_)) | None => {
                // A thread-local's type change is caught by the source check: the expansion
                // of `thread_local!` defines more than one static of the same path.
                if let (true, elf::STT_OBJECT, Some(path)) = (defined, symbol.kind, homes.changed_type(&symbol.name)) {
                    return Ok(Err(Unbindable(format!(
                        "the type of the static `{path}` changed, so its value in the running program cannot be kept"
                    ))));
                }
                continue;
            }
        };
        let home_size = match home {
            Home::Data { size, .. } | Home::ThreadLocal { size, .. } => size,
        };
        if defined && symbol.size != home_size {
            return Ok(Err(Unbindable(format!(
                "the static `{}` is {} bytes in the new code and {home_size} in the running program",
                crate::abi::elf::demangled_path(&symbol.name),
                symbol.size
            ))));
        }
        if defined && matches!(home, Home::ThreadLocal { .. }) != (symbol.kind == elf::STT_TLS) {
            return Ok(Err(Unbindable(format!(
                "`{}` changed between a static and a thread-local",
                crate::abi::elf::demangled_path(&symbol.name)
            ))));
        }
        homes_by_symbol.insert(index, home);
        if let Some(section) = symbol.section {
            let alone = named_in_section.get(&section) == Some(&1);
            section_static.insert(section, alone.then_some(index));
        }
    }
    if homes_by_symbol.is_empty() {
        return Ok(Ok(Bound::default()));
    }
    if !x86_64 {
        return Ok(Err(Unbindable(
            "statics keep their values across patches on x86_64 only; on this architecture a patch that uses one restarts".to_string(),
        )));
    }

    let resolve = |symbol_index: usize, addend: i64| -> Option<Result<(usize, Home, i64), Unbindable>> {
        let symbol = symbols.get(symbol_index)?;
        if symbol.kind == elf::STT_SECTION {
            let holder = section_static.get(&symbol.section?)?;
            let Some(holder) = holder else {
                return Some(Err(Unbindable(format!(
                    "the section `{}` holds a bound static and other symbols, so references into it cannot be told apart",
                    symbol.section.and_then(|s| section_names.get(s)).cloned().unwrap_or_default()
                ))));
            };
            let offset = addend - symbols[*holder].value as i64;
            return Some(Ok((*holder, homes_by_symbol[holder], offset)));
        }
        homes_by_symbol.get(&symbol_index).map(|home| Ok((symbol_index, *home, addend)))
    };

    let mut bound = Bound::default();
    for (_, section) in sections.iter().enumerate().filter(|(_, s)| s.sh_type(endian) == elf::SHT_RELA) {
        let target_index = section.sh_info(endian) as usize;
        let target = sections.section(object::SectionIndex(target_index))?;
        let in_code = target.sh_flags(endian) & u64::from(elf::SHF_ALLOC) != 0;
        let target_offset = target.sh_offset(endian) as usize;
        let target_size = target.sh_size(endian) as usize;
        let rela_offset = section.sh_offset(endian) as usize;
        let relocations: &[elf::Rela64<LittleEndian>] = section.data_as_array(endian, data)?;
        let describe = |index: usize| crate::abi::elf::demangled_path(&symbols[index].name);
        // Thread-local references of this section, handled together below: rewriting a
        // `__tls_get_addr` call changes the base that every `@dtpoff` of the function adds to.
        let mut tls = TlsSites::default();
        for (position, relocation) in relocations.iter().enumerate() {
            let kind = relocation.r_type(endian, false);
            let symbol = relocation.r_sym(endian, false) as usize;
            let addend = relocation.r_addend(endian);
            let offset = relocation.r_offset(endian) as usize;
            let entry = rela_offset + position * std::mem::size_of::<elf::Rela64<LittleEndian>>();
            let target = match resolve(symbol, addend) {
                None => {
                    if matches!(kind, elf::R_X86_64_TLSLD | elf::R_X86_64_DTPOFF32 | elf::R_X86_64_DTPOFF64) && in_code {
                        tls.unbound_local_dynamic |= kind != elf::R_X86_64_TLSLD;
                        if kind == elf::R_X86_64_TLSLD {
                            tls.local_dynamic.push((entry, offset));
                        }
                    }
                    if kind == elf::R_X86_64_PLT32 && symbols.get(symbol).is_some_and(|s| s.name == "__tls_get_addr") {
                        tls.calls.insert(offset, entry);
                    }
                    continue;
                }
                Some(Err(unbindable)) => return Ok(Err(unbindable)),
                Some(Ok((holder, Home::Data { .. }, offset_in_static))) => Target::Data { symbol: holder, offset: offset_in_static },
                Some(Ok((_, Home::ThreadLocal { tp_offset, .. }, offset_in_static))) => {
                    Target::ThreadLocal { tp_offset, offset: offset_in_static }
                }
            };
            match target {
                Target::Data { symbol: holder, offset: offset_in_static } => {
                    match kind {
                        elf::R_X86_64_64 => {
                            edits.relocation(entry, holder as u32, elf::R_X86_64_64, offset_in_static);
                            if in_code {
                                bound.statics += 1; // a pointer to the static, stored in data
                            }
                        }
                        _ if !in_code => {} // debug info's other forms point at the unused copy: harmless
                        elf::R_X86_64_GOTPCREL | elf::R_X86_64_GOTPCRELX | elf::R_X86_64_REX_GOTPCRELX if offset_in_static == -4 => {
                            // The plain form: no linker turns it back into a direct `lea`.
                            edits.relocation(entry, holder as u32, elf::R_X86_64_GOTPCREL, -4);
                            bound.statics += 1;
                        }
                        elf::R_X86_64_PC32 if offset_in_static == -4 && is_rip_relative_lea(data, target_offset, target_size, offset) => {
                            // lea sym(%rip), %reg → mov sym@GOTPCREL(%rip), %reg
                            edits.write(target_offset + offset - 2, &[0x8b]);
                            edits.relocation(entry, holder as u32, elf::R_X86_64_GOTPCREL, -4);
                            bound.statics += 1;
                        }
                        _ => {
                            return Ok(Err(Unbindable(format!(
                                "the new code reads or writes the static `{}` directly (a `static mut`, or optimised code), which cannot be pointed at the running program's copy",
                                describe(holder)
                            ))))
                        }
                    }
                }
                Target::ThreadLocal { tp_offset, offset: offset_in_static } => {
                    if !in_code {
                        continue; // debug info's location of the unused copy
                    }
                    let value = tp_offset + offset_in_static;
                    match kind {
                        elf::R_X86_64_TLSLD => tls.local_dynamic.push((entry, offset)),
                        elf::R_X86_64_DTPOFF32 => tls.offsets.push((entry, offset, value)),
                        elf::R_X86_64_TLSGD => tls.general_dynamic.push((entry, offset, value + 4)),
                        _ => {
                            return Ok(Err(Unbindable(format!(
                                "the new code reaches the thread-local `{}` in a way cargo hot cannot rewrite (relocation type {kind})",
                                describe(symbol)
                            ))))
                        }
                    }
                }
            }
        }
        match tls.rewrite(data, target_offset, target_size, edits) {
            Ok(count) => bound.thread_locals += count,
            Err(unbindable) => return Ok(Err(unbindable)),
        }
    }

    // The bound statics' own definitions become absolute symbols at their homes, so that
    // references by name (from other objects of the patch) resolve there too.
    for (&index, home) in &homes_by_symbol {
        let symbol = &symbols[index];
        if let (Some(_), Home::Data { address, .. }) = (symbol.section, home) {
            let entry = symtab_offset + index * std::mem::size_of::<elf::Sym64<LittleEndian>>();
            edits.write(entry + 6, &elf::SHN_ABS.to_le_bytes());
            edits.write(entry + 8, &address.to_le_bytes());
            bound.definitions += 1;
        }
    }
    Ok(Ok(bound))
}

/// Whether the 4 bytes relocated at `offset` of a section are the displacement of
/// `lea disp32(%rip), %reg` with a REX.W prefix (`48`-`4f`, `8d`, ModRM with mod 00, r/m 101).
fn is_rip_relative_lea(data: &[u8], section_offset: usize, section_size: usize, offset: usize) -> bool {
    if offset < 3 || offset + 4 > section_size {
        return false;
    }
    let at = section_offset + offset;
    let (rex, opcode, modrm) = (data[at - 3], data[at - 2], data[at - 1]);
    (0x48..=0x4f).contains(&rex) && opcode == 0x8d && modrm & 0xc7 == 0x05
}

/// The thread-local accesses of one code section.
#[derive(Default)]
struct TlsSites {
    /// `lea x@tlsld(%rip), %rdi` sites: (relocation entry, offset of the displacement).
    local_dynamic: Vec<(usize, usize)>,
    /// `x@dtpoff` displacements of bound thread-locals: (entry, offset, thread-pointer offset).
    offsets: Vec<(usize, usize, i64)>,
    /// A `@dtpoff` of a thread-local that is not bound (one the patch adds) shares the base.
    unbound_local_dynamic: bool,
    /// `data16 lea x@tlsgd(%rip), %rdi` sites of bound thread-locals.
    general_dynamic: Vec<(usize, usize, i64)>,
    /// Offset of each `call __tls_get_addr@PLT` displacement → its relocation entry.
    calls: HashMap<usize, usize>,
}

impl TlsSites {
    fn rewrite(self, data: &[u8], section_offset: usize, section_size: usize, edits: &mut Edits) -> Result<usize, Unbindable> {
        let cannot = |what: &str| Unbindable(format!("a thread-local access of the new code has an unexpected form ({what})"));
        let fits = |value: i64| i32::try_from(value).map_err(|_| cannot("an offset out of range"));
        let bytes = |offset: usize, len: usize| data.get(section_offset + offset..section_offset + offset + len);
        let mut count = 0;
        for (entry, offset, value) in &self.general_dynamic {
            // 66 48 8d 3d <x@tlsgd> 66 66 48 e8 <__tls_get_addr@plt>
            let call = self.calls.get(&(offset + 8)).ok_or_else(|| cannot("no call of __tls_get_addr"))?;
            if *offset < 4 || offset + 12 > section_size
                || bytes(offset - 4, 4) != Some(&[0x66, 0x48, 0x8d, 0x3d])
                || bytes(offset + 4, 4) != Some(&[0x66, 0x66, 0x48, 0xe8])
            {
                return Err(cannot("general dynamic"));
            }
            let mut replacement = GD_TO_LE.to_vec();
            replacement.extend_from_slice(&fits(*value)?.to_le_bytes());
            edits.write(section_offset + offset - 4, &replacement);
            edits.relocation(*entry, 0, R_NONE, 0);
            edits.relocation(*call, 0, R_NONE, 0);
            count += 1;
        }
        if self.offsets.is_empty() {
            return Ok(count);
        }
        if self.unbound_local_dynamic {
            return Err(Unbindable(
                "one function of the new code uses both a thread-local of the running program and a new one; save again after a restart"
                    .to_string(),
            ));
        }
        for (entry, offset) in &self.local_dynamic {
            // 48 8d 3d <x@tlsld> e8 <__tls_get_addr@plt>
            let call = self.calls.get(&(offset + 5)).ok_or_else(|| cannot("no call of __tls_get_addr"))?;
            if *offset < 3 || offset + 9 > section_size || bytes(offset - 3, 3) != Some(&[0x48, 0x8d, 0x3d]) || bytes(offset + 4, 1) != Some(&[0xe8]) {
                return Err(cannot("local dynamic"));
            }
            edits.write(section_offset + offset - 3, &LD_TO_LE);
            edits.relocation(*entry, 0, R_NONE, 0);
            edits.relocation(*call, 0, R_NONE, 0);
        }
        for (entry, offset, value) in &self.offsets {
            edits.write(section_offset + offset, &fits(*value)?.to_le_bytes());
            edits.relocation(*entry, 0, R_NONE, 0);
            count += 1;
        }
        Ok(count)
    }
}

