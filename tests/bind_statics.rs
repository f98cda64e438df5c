//! Binding statics on real rustc output: a small crate is compiled as the boundary is (debug,
//! position-independent), and its object file is rewritten so that its statics and
//! thread-locals are the running program's.

use std::path::{Path, PathBuf};
use std::process::Command;

use cargo_hot::abi::elf::read_statics;
use cargo_hot::abi::source::DeclaredStatics;
use cargo_hot::abi::StaticSymbol;
use cargo_hot::patch::bind::{bind_object, Bound, Homes};
use object::read::elf::{ElfFile64, FileHeader, Rela, SectionHeader, Sym};
use object::{elf, Object, ObjectSymbol};

const SOURCE: &str = r#"
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);
pub static SHARED: AtomicU64 = AtomicU64::new(0);
static READ_ONLY: [u64; 2] = [1, 2];

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

#[inline(never)]
pub fn bump() -> u64 {
    COUNTER.fetch_add(1, Ordering::SeqCst) + SHARED.fetch_add(1, Ordering::SeqCst)
}

pub fn first() -> u64 {
    READ_ONLY[0]
}

pub fn calls() -> u64 {
    CALLS.with(|calls| {
        calls.set(calls.get() + 1);
        calls.get()
    })
}
"#;

/// Compiles `source` as crate `probe` into one object file, as cargo's dev profile would.
fn compile(dir: &Path, source: &str) -> PathBuf {
    std::fs::write(dir.join("lib.rs"), source).unwrap();
    let object = dir.join("probe.o");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .args(["--edition", "2021", "--crate-type", "lib", "--crate-name", "probe", "-C", "opt-level=0", "-C", "debuginfo=2"])
        .args(["-C", "codegen-units=1", "--emit", "obj", "-o"])
        .arg(&object)
        .arg(dir.join("lib.rs"))
        .status()
        .unwrap();
    assert!(status.success());
    object
}

/// The statics of the object, placed at made-up addresses of a "running program": data at
/// 0x10000 + 0x100·i, thread-locals at offset 0x40·i of the thread-local block.
fn program_statics(object: &Path) -> Vec<StaticSymbol> {
    let (statics, _) = read_statics(object, &["probe".to_string()], "").unwrap();
    statics.into_iter().enumerate().map(|(i, s)| StaticSymbol { value: if s.thread_local { 0x40 * i as u64 } else { 0x10000 + 0x100 * i as u64 }, ..s }).collect()
}

/// Homes with the load bias 0 (anchor at 0x1000 in the binary and in the process) and the
/// thread-local block 0x200 below the thread pointer.
fn homes(statics: &[StaticSymbol], declared: &[&str]) -> Homes {
    let mut homes = Homes::of_program(statics, Some(0), Some(-0x200));
    homes.declare(module_level(declared));
    homes
}

/// Statics declared at the top level of the crate, by name.
fn module_level(names: &[&str]) -> DeclaredStatics {
    DeclaredStatics { in_modules: names.iter().map(|s| s.to_string()).collect(), ..Default::default() }
}

/// (relocation type, symbol name, the byte two before the relocated field: an instruction's
/// opcode) of every relocation of an allocated (code or data) section; a section symbol is
/// named by its section.
fn code_relocations(data: &[u8]) -> Vec<(u32, String, u8)> {
    let file = ElfFile64::<object::Endianness>::parse(data).unwrap();
    let endian = file.endian();
    let sections = file.elf_header().sections(endian, data).unwrap();
    let symbols = sections.symbols(endian, data, elf::SHT_SYMTAB).unwrap();
    let mut out = Vec::new();
    for section in sections.iter().filter(|s| s.sh_type(endian) == elf::SHT_RELA) {
        let target = sections.section(object::SectionIndex(section.sh_info(endian) as usize)).unwrap();
        if target.sh_flags(endian) & u64::from(elf::SHF_ALLOC) == 0 {
            continue;
        }
        let relocations: &[elf::Rela64<object::Endianness>] = section.data_as_array(endian, data).unwrap();
        for relocation in relocations.iter().filter(|r| r.r_type(endian, false) != elf::R_X86_64_NONE) {
            let symbol = symbols.symbol(object::SymbolIndex(relocation.r_sym(endian, false) as usize)).unwrap();
            let name = if symbol.st_type() == elf::STT_SECTION {
                let section = sections.section(object::SectionIndex(symbol.st_shndx(endian) as usize)).unwrap();
                sections.section_name(endian, section).unwrap()
            } else {
                symbols.symbol_name(endian, symbol).unwrap()
            };
            let name = String::from_utf8_lossy(name).into_owned();
            let at = target.sh_offset(endian) as usize + relocation.r_offset(endian) as usize;
            out.push((relocation.r_type(endian, false), name, data[at.saturating_sub(2)]));
        }
    }
    out
}

#[test]
fn declared_statics_and_thread_locals_are_pointed_at_the_running_program() {
    let dir = tempfile::tempdir().unwrap();
    let object = compile(dir.path(), SOURCE);
    let statics = program_statics(&object);
    let paths: Vec<&str> = statics.iter().map(|s| s.path.as_str()).collect();
    assert!(paths.contains(&"probe::COUNTER") && paths.contains(&"probe::SHARED"), "{paths:?}");
    assert!(!paths.contains(&"probe::READ_ONLY"), "read-only statics need no binding: {paths:?}");
    let mut data = std::fs::read(&object).unwrap();
    let original = code_relocations(&data);
    assert!(
        original.iter().any(|(kind, name, opcode)| *kind == elf::R_X86_64_PC32 && name.contains("COUNTER") && *opcode == 0x8d),
        "rustc reaches the private static with `lea sym(%rip)`: {original:?}"
    );
    /// `mov %fs:0, %rax` with the prefixes that pad it to the local-dynamic sequence's length.
    const LOCAL_EXEC: [u8; 12] = [0x66, 0x66, 0x66, 0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0];
    let has_local_exec = |data: &[u8]| data.windows(LOCAL_EXEC.len()).any(|w| w == LOCAL_EXEC);
    assert!(!has_local_exec(&data));

    let bound = bind_object(&mut data, &homes(&statics, &["COUNTER", "SHARED", "CALLS"])).unwrap().unwrap();
    assert!(bound.statics >= 2 && bound.thread_locals >= 1, "{bound:?}");

    // Every code reference to a bound static now goes through the GOT, to an absolute symbol
    // at the program's address; no thread-local access calls __tls_get_addr any more.
    let rewritten = code_relocations(&data);
    for (kind, name, opcode) in &rewritten {
        if name.contains("COUNTER") || name.contains("SHARED") {
            assert!(matches!(*kind, elf::R_X86_64_GOTPCREL | elf::R_X86_64_64), "{kind} against {name}");
            if *kind == elf::R_X86_64_GOTPCREL {
                assert_eq!(*opcode, 0x8b, "a GOT load is a `mov`, not a `lea`, against {name}");
            }
        }
        assert_ne!(*kind, elf::R_X86_64_TLSLD, "the local-dynamic access was relaxed");
        assert_ne!(name, "__tls_get_addr");
    }
    assert!(has_local_exec(&data), "the thread-local is reached from the thread pointer");
    let file = object::File::parse(&*data).unwrap();
    let counter = file.symbols().find(|s| s.name().is_ok_and(|n| n.contains("7COUNTER"))).unwrap();
    let expected = statics.iter().find(|s| s.path == "probe::COUNTER").unwrap().value;
    assert_eq!(counter.section(), object::SymbolSection::Absolute);
    assert_eq!(counter.address(), expected, "the static lives at the program's address (bias 0)");
}

#[test]
fn statics_the_source_does_not_declare_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let object = compile(dir.path(), SOURCE);
    let statics = program_statics(&object);
    let mut data = std::fs::read(&object).unwrap();
    let before = data.clone();
    // As for a tracing callsite: a static the source does not name gets a fresh copy.
    assert_eq!(bind_object(&mut data, &homes(&statics, &[])).unwrap().unwrap(), Bound::default());
    assert_eq!(data, before, "nothing was rewritten");
}

#[test]
fn what_cannot_be_bound_is_refused_with_the_static_named() {
    let dir = tempfile::tempdir().unwrap();
    // A `static mut` is read and written with direct memory operands.
    let object = compile(dir.path(), "static mut RAW: u32 = 5;\npub fn raw() -> u32 { unsafe { RAW += 1; RAW } }\n");
    let statics = program_statics(&object);
    let mut data = std::fs::read(&object).unwrap();
    let refused = bind_object(&mut data, &homes(&statics, &["RAW"])).unwrap().unwrap_err();
    assert!(refused.0.contains("`probe::RAW`") && refused.0.contains("directly"), "{}", refused.0);

    let object = compile(dir.path(), SOURCE);
    let mut statics = program_statics(&object);
    // The program's COUNTER is another size: the new code's cannot be its.
    statics.iter_mut().filter(|s| s.path == "probe::COUNTER").for_each(|s| s.size = 16);
    let mut data = std::fs::read(&object).unwrap();
    let refused = bind_object(&mut data, &homes(&statics, &["COUNTER"])).unwrap().unwrap_err();
    assert!(refused.0.contains("`probe::COUNTER` is 8 bytes"), "{}", refused.0);

    // The program's COUNTER has another mangled name: with legacy mangling, another type.
    let mut statics = program_statics(&object);
    statics.iter_mut().filter(|s| s.path == "probe::COUNTER").for_each(|s| s.name = s.name.replace("17h", "17hf"));
    let refused = bind_object(&mut data, &homes(&statics, &["COUNTER"])).unwrap().unwrap_err();
    assert!(refused.0.contains("the type of the static `probe::COUNTER` changed"), "{}", refused.0);

    // Thread-locals need the program to say where its thread-local block is.
    let statics = program_statics(&object);
    let mut no_tls = Homes::of_program(&statics, Some(0), None);
    no_tls.declare(module_level(&["CALLS"]));
    let refused = bind_object(&mut data, &no_tls).unwrap().unwrap_err();
    assert!(refused.0.contains("thread-locals"), "{}", refused.0);
}

#[test]
fn statics_added_by_a_patch_are_bound_in_later_patches_but_its_thread_locals_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let object = compile(dir.path(), SOURCE);
    let statics = program_statics(&object);
    // The host has none of them; an earlier patch, loaded at 0x7000_0000, introduced them.
    let mut homes = Homes::of_program(&[], Some(0), Some(-0x200));
    homes.add_patch(&statics, 0x7000_0000);
    homes.declare(module_level(&["COUNTER", "SHARED"]));
    let mut data = std::fs::read(&object).unwrap();
    let bound = bind_object(&mut data, &homes).unwrap().unwrap();
    assert!(bound.statics >= 2, "{bound:?}");
    homes.declare(module_level(&["CALLS"]));
    let mut data = std::fs::read(&object).unwrap();
    let refused = bind_object(&mut data, &homes).unwrap().unwrap_err();
    assert!(refused.0.contains("added by an earlier patch"), "{}", refused.0);

    // A patch also defines the unused twin of each `thread_local!` of the program (the
    // program's link dropped it): that is not a new thread-local.
    let tls: Vec<StaticSymbol> = statics.iter().filter(|s| s.thread_local).cloned().collect();
    let (used, twins) = tls.split_at(1);
    let mut homes = Homes::of_program(used, Some(0), Some(-0x200));
    homes.add_patch(twins, 0x7000_0000);
    homes.declare(module_level(&["CALLS"]));
    let mut data = std::fs::read(&object).unwrap();
    assert!(bind_object(&mut data, &homes).unwrap().is_ok());
}

#[test]
fn patches_are_linked_by_rust_lld_whatever_links_the_host_or_binding_is_refused() {
    use cargo_hot::linker::LinkRecord;
    use cargo_hot::patch::{self, PatchLinker};
    let dir = tempfile::tempdir().unwrap();
    let object = compile(dir.path(), SOURCE);
    let rlib = dir.path().join("libprobe.rlib");
    assert!(Command::new("ar").arg("rcs").arg(&rlib).arg(&object).status().unwrap().success());
    let statics = program_statics(&object);
    let homes = homes(&statics, &["COUNTER", "SHARED", "CALLS"]);

    // A host linked by plain `cc` (GNU ld): patches still go through the toolchain's rust-lld.
    let host_record = LinkRecord { driver: "cc".into(), args: vec!["-m64".into()], ..Default::default() };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let linker = PatchLinker::find(&host_record, std::path::Path::new(&rustc));
    assert!(matches!(&linker, PatchLinker::Lld(lld) if lld.ends_with("rust-lld")), "{linker:?}");
    let output = dir.path().join("patch.so");
    let linked = patch::link(patch::ObjectSource::Rlib(rlib.clone()).read().unwrap(), &linker, &dir.path().join("objects"), &output, &homes, false).unwrap().unwrap();
    assert!(linked.bound.statics >= 2 && linked.bound.thread_locals >= 1, "{:?}", linked.bound);
    let so = std::fs::read(&output).unwrap();
    let file = object::File::parse(&*so).unwrap();
    let counter = file.symbols().find(|s| s.name().is_ok_and(|n| n.contains("7COUNTER"))).unwrap();
    assert_eq!(counter.section(), object::SymbolSection::Absolute, "the patch's COUNTER is the program's");

    // Without rust-lld, a patch that would bind a static is refused (a restart), not mislinked.
    let driver = PatchLinker::Driver { driver: "cc".into(), flags: vec![] };
    let refused = patch::link(patch::ObjectSource::Rlib(rlib.clone()).read().unwrap(), &driver, &dir.path().join("objects"), &output, &homes, false).unwrap().unwrap_err();
    assert!(refused.0.contains("rust-lld"), "{}", refused.0);
}
