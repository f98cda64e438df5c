//! Reading [`TypeFacts`] from the DWARF rustc wrote: a linked executable (cargo's dev build
//! of the host, whose debug info is full by default) or relocatable objects (a patch compiled
//! with full debug info), whose debug sections still need their relocations applied.
//!
//! rustc names every type with its full path (`logic::Dto`, `core::option::Option<logic::Dto>`,
//! `logic::handle::Local` for a type inside a function), nested in `DW_TAG_namespace` entries,
//! and resolves aliases, associated types and const-sized arrays to what they are: so a
//! type's layout entry says what the compiler laid out, whatever the source spelled.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use anyhow::{Context, Result};
use gimli::{AttributeValue, EndianSlice, RunTimeEndian, SectionId};
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};

use super::{mentions, Holder, Place, TypeFacts};

/// Which compile units to read, and as what.
pub trait UnitFilter {
    /// `root` is the absolute path of the unit's crate root file; `None` skips the unit.
    fn role(&self, root: &str) -> Option<Role>;
}

/// What a compile unit is to the boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Code of the boundary itself.
    Boundary,
    /// Code that is not patched but may use the boundary's types (the host's own crate, other
    /// workspace crates depending on the boundary).
    Outside,
}

impl<F: Fn(&str) -> Option<Role>> UnitFilter for F {
    fn role(&self, root: &str) -> Option<Role> {
        self(root)
    }
}

type Slice<'a> = EndianSlice<'a, RunTimeEndian>;

/// Reads the facts about the types of `crate_name` from one ELF file (executable, shared
/// object or relocatable object). A file without type information gives empty facts and
/// `false`.
pub fn read(data: &[u8], crate_name: &str, filter: &dyn UnitFilter, into: &mut TypeFacts) -> Result<bool> {
    let file = object::File::parse(data).context("not an object file")?;
    let endian = if file.is_little_endian() { RunTimeEndian::Little } else { RunTimeEndian::Big };
    let relocatable = file.kind() == object::ObjectKind::Relocatable;
    let mut sections: HashMap<SectionId, Cow<[u8]>> = HashMap::new();
    for id in [
        SectionId::DebugAbbrev,
        SectionId::DebugInfo,
        SectionId::DebugStr,
        SectionId::DebugStrOffsets,
        SectionId::DebugLine,
        SectionId::DebugLineStr,
        SectionId::DebugAddr,
        SectionId::DebugRngLists,
        SectionId::DebugRanges,
        SectionId::DebugLocLists,
        SectionId::DebugLoc,
    ] {
        if let Some(section) = file.section_by_name(id.name()) {
            let mut bytes = section.uncompressed_data().with_context(|| format!("cannot read {}", id.name()))?;
            if relocatable {
                apply_relocations(&file, &section, bytes.to_mut())?;
            }
            sections.insert(id, bytes);
        }
    }
    if !sections.contains_key(&SectionId::DebugInfo) {
        return Ok(false);
    }
    let dwarf = gimli::Dwarf::load(|id| -> Result<Slice<'_>, gimli::Error> { Ok(EndianSlice::new(sections.get(&id).map(|b| &b[..]).unwrap_or(&[]), endian)) })?;
    let mut headers = dwarf.units();
    let mut any_types = false;
    while let Some(header) = headers.next()? {
        // Most units are dependencies': decide from the root entry alone, before parsing the
        // whole unit (its line program included).
        if peek_root(&dwarf, &header).is_some_and(|root| filter.role(&root).is_none()) {
            continue;
        }
        let unit = dwarf.unit(header)?;
        let Some(role) = unit_root(&dwarf, &unit).and_then(|root| filter.role(&root)) else {
            continue;
        };
        // Only the boundary's own units prove its layouts (a crate built with `debug = 0` has none).
        any_types |= UnitReader::read(&dwarf, &unit, role, crate_name, into)? && role == Role::Boundary;
    }
    Ok(any_types)
}

/// In a relocatable object, debug sections refer to each other (and to code) through
/// relocations whose targets are section symbols: write each absolute value in place.
fn apply_relocations(file: &object::File, section: &object::Section, bytes: &mut [u8]) -> Result<()> {
    for (offset, relocation) in section.relocations() {
        let RelocationTarget::Symbol(index) = relocation.target() else {
            continue;
        };
        let symbol = file.symbol_by_index(index)?;
        let value = (symbol.address() as i64).wrapping_add(relocation.addend()) as u64;
        let at = offset as usize;
        match relocation.size() {
            32 if at + 4 <= bytes.len() => bytes[at..at + 4].copy_from_slice(&(value as u32).to_le_bytes()),
            64 if at + 8 <= bytes.len() => bytes[at..at + 8].copy_from_slice(&value.to_le_bytes()),
            _ => {}
        }
    }
    Ok(())
}

/// A unit's crate root read from its first entry when its strings are plain `.debug_str`
/// references (DWARF 4, rustc's default); None when only the whole unit can tell.
fn peek_root(dwarf: &gimli::Dwarf<Slice>, header: &gimli::UnitHeader<Slice>) -> Option<String> {
    let abbreviations = dwarf.abbreviations(header).ok()?;
    let mut entries = header.entries(&abbreviations);
    let root = entries.next_dfs().ok()??;
    let text = |at| match root.attr_value(at)? {
        AttributeValue::DebugStrRef(offset) => dwarf.debug_str.get_str(offset).ok().map(|s| s.to_string_lossy().into_owned()),
        AttributeValue::String(s) => Some(s.to_string_lossy().into_owned()),
        _ => None,
    };
    let name = text(gimli::DW_AT_name)?;
    let root = name.split("/@/").next()?.to_string();
    if root.starts_with('/') {
        return Some(root);
    }
    Some(format!("{}/{}", text(gimli::DW_AT_comp_dir)?.trim_end_matches('/'), root))
}

/// The absolute path of a unit's crate root: rustc names a unit `<root>/@/<codegen unit>`,
/// relative to `DW_AT_comp_dir`.
fn unit_root(dwarf: &gimli::Dwarf<Slice>, unit: &gimli::Unit<Slice>) -> Option<String> {
    let name = unit.name.as_ref()?.to_string_lossy().into_owned();
    let root = name.split("/@/").next()?.to_string();
    if root.starts_with('/') {
        return Some(root);
    }
    let dir = unit.comp_dir.as_ref().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
    let _ = dwarf;
    Some(format!("{}/{}", dir.trim_end_matches('/'), root))
}

/// One debugging entry, as much of it as the facts need.
struct Entry {
    tag: gimli::DwTag,
    name: Option<String>,
    linkage: Option<String>,
    size: Option<u64>,
    align: Option<u64>,
    member_offset: Option<u64>,
    type_ref: Option<usize>,
    containing: Option<usize>,
    /// A definition's declaration (a method is declared inside its type's entry, with the
    /// linkage name, and defined at the unit's level).
    specification: Option<usize>,
    discr: Option<usize>,
    discr_value: Option<u64>,
    count: Option<u64>,
    declaration: bool,
    has_location: bool,
    parent: Option<usize>,
    children: Vec<usize>,
}

struct UnitReader {
    entries: Vec<Entry>,
    /// Unit offset → index in `entries`.
    /// The unit offset of each entry, increasing (entries are read in order).
    at: Vec<usize>,
    /// Each entry's full path, once computed.
    names: Vec<Option<String>>,
}

impl UnitReader {
    fn read(dwarf: &gimli::Dwarf<Slice>, unit: &gimli::Unit<Slice>, role: Role, crate_name: &str, into: &mut TypeFacts) -> Result<bool> {
        let mut reader = UnitReader { entries: Vec::new(), at: Vec::new(), names: Vec::new() };
        let mut cursor = unit.entries();
        // (depth, index) of the open entries that were kept.
        let mut stack: Vec<(isize, usize)> = Vec::new();
        // The inside of a function (its variables, scopes, inlined calls) says nothing about
        // types: only its parameters are kept, and everything below its other children is
        // skipped, most of a unit's entries.
        let mut skip_below: Option<isize> = None;
        while let Some(die) = cursor.next_dfs()? {
            let depth = die.depth();
            if skip_below.is_some_and(|d| depth > d) {
                continue;
            }
            skip_below = None;
            while stack.last().is_some_and(|(d, _)| *d >= depth) {
                stack.pop();
            }
            let in_function = stack.last().is_some_and(|(_, p)| reader.entries[*p].tag == gimli::DW_TAG_subprogram);
            if (in_function && die.tag() != gimli::DW_TAG_formal_parameter)
                || matches!(die.tag(), gimli::DW_TAG_lexical_block | gimli::DW_TAG_inlined_subroutine)
            {
                skip_below = Some(depth);
                continue;
            }
            let index = reader.entries.len();
            let mut entry = Entry {
                tag: die.tag(),
                name: None,
                linkage: None,
                size: None,
                align: None,
                member_offset: None,
                type_ref: None,
                containing: None,
                specification: None,
                discr: None,
                discr_value: None,
                count: None,
                declaration: false,
                has_location: false,
                parent: stack.last().map(|(_, p)| *p),
                children: Vec::new(),
            };
            for attr in die.attrs() {
                match (attr.name(), attr.value()) {
                    (gimli::DW_AT_name, value) => entry.name = dwarf.attr_string(unit, value).ok().map(|s| s.to_string_lossy().into_owned()),
                    (gimli::DW_AT_linkage_name, value) => entry.linkage = dwarf.attr_string(unit, value).ok().map(|s| s.to_string_lossy().into_owned()),
                    (gimli::DW_AT_byte_size, value) => entry.size = value.udata_value(),
                    (gimli::DW_AT_alignment, value) => entry.align = value.udata_value(),
                    (gimli::DW_AT_data_member_location, value) => entry.member_offset = value.udata_value(),
                    (gimli::DW_AT_type, AttributeValue::UnitRef(r)) => entry.type_ref = Some(r.0),
                    (gimli::DW_AT_containing_type, AttributeValue::UnitRef(r)) => entry.containing = Some(r.0),
                    (gimli::DW_AT_specification, AttributeValue::UnitRef(r)) => entry.specification = Some(r.0),
                    (gimli::DW_AT_discr, AttributeValue::UnitRef(r)) => entry.discr = Some(r.0),
                    (gimli::DW_AT_discr_value, value) => entry.discr_value = value.udata_value().or_else(|| value.sdata_value().map(|v| v as u64)),
                    (gimli::DW_AT_const_value, value) if die.tag() == gimli::DW_TAG_enumerator => {
                        entry.discr_value = value.udata_value().or_else(|| value.sdata_value().map(|v| v as u64))
                    }
                    (gimli::DW_AT_count, value) => entry.count = value.udata_value(),
                    (gimli::DW_AT_upper_bound, value) if entry.count.is_none() => entry.count = value.udata_value().map(|u| u + 1),
                    (gimli::DW_AT_declaration, _) => entry.declaration = true,
                    (gimli::DW_AT_location, _) => entry.has_location = true,
                    _ => {}
                }
            }
            if let Some(parent) = entry.parent {
                reader.entries[parent].children.push(index);
            }
            reader.at.push(die.offset().0);
            reader.names.push(None);
            reader.entries.push(entry);
            if die.has_children() {
                stack.push((depth, index));
            }
        }
        Ok(reader.collect(role, crate_name, into))
    }

    fn entry_at(&self, offset: usize) -> Option<usize> {
        self.at.binary_search(&offset).ok()
    }

    /// The full path of a named entry: its enclosing namespaces and types.
    fn path(&mut self, index: usize) -> String {
        if let Some(name) = &self.names[index] {
            return name.clone();
        }
        let own = self.type_name(index);
        let mut parts = vec![own];
        let mut parent = self.entries[index].parent;
        while let Some(p) = parent {
            let entry = &self.entries[p];
            match entry.tag {
                gimli::DW_TAG_namespace | gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type | gimli::DW_TAG_enumeration_type => {
                    parts.push(entry.name.clone().unwrap_or_default())
                }
                gimli::DW_TAG_subprogram => parts.push(entry.name.clone().unwrap_or_default()),
                _ => {}
            }
            parent = entry.parent;
        }
        parts.reverse();
        let path = parts.join("::");
        self.names[index] = Some(path.clone());
        path
    }

    /// A type's own name; unnamed types are spelled from what they are made of.
    fn type_name(&mut self, index: usize) -> String {
        let entry = &self.entries[index];
        if let Some(name) = &entry.name {
            return name.clone();
        }
        let (tag, target, count) = (entry.tag, entry.type_ref, entry.count);
        match tag {
            gimli::DW_TAG_array_type => {
                let element = target.and_then(|t| self.entry_at(t)).map(|t| self.path(t)).unwrap_or_else(|| "?".into());
                let count = self.entries[index].children.iter().find_map(|c| self.entries[*c].count).or(count).unwrap_or(0);
                format!("[{element}; {count}]")
            }
            gimli::DW_TAG_pointer_type | gimli::DW_TAG_reference_type => {
                format!("*{}", target.and_then(|t| self.entry_at(t)).map(|t| self.path(t)).unwrap_or_else(|| "()".into()))
            }
            gimli::DW_TAG_typedef | gimli::DW_TAG_const_type | gimli::DW_TAG_volatile_type => {
                target.and_then(|t| self.entry_at(t)).map(|t| self.path(t)).unwrap_or_else(|| "()".into())
            }
            gimli::DW_TAG_subroutine_type => {
                let params: Vec<usize> =
                    self.entries[index].children.iter().filter_map(|c| self.entries[*c].type_ref).filter_map(|t| self.entry_at(t)).collect();
                let params: Vec<String> = params.into_iter().map(|p| self.path(p)).collect();
                let result = target.and_then(|t| self.entry_at(t)).map(|t| self.path(t)).unwrap_or_else(|| "()".into());
                format!("fn({}) -> {result}", params.join(", "))
            }
            _ => format!("<{}>", tag),
        }
    }

    fn type_of(&mut self, index: usize) -> Option<String> {
        let target = self.entries[index].type_ref.and_then(|t| self.entry_at(t))?;
        Some(self.path(target))
    }

    /// What the compiler laid out for a type: size, alignment, every field's offset and type,
    /// every variant's discriminant value and field, and where the discriminant is kept.
    fn describe(&mut self, index: usize) -> (String, BTreeSet<String>) {
        let mut members = BTreeSet::new();
        let entry = &self.entries[index];
        let mut out = format!("{} size={} align={}", entry.tag, entry.size.unwrap_or(0), entry.align.unwrap_or(0));
        if entry.tag == gimli::DW_TAG_enumeration_type {
            let base = self.type_of(index).unwrap_or_default();
            out.push_str(&format!(" repr={base}"));
            let children = self.entries[index].children.clone();
            for child in children {
                let e = &self.entries[child];
                out.push_str(&format!(" {}={}", e.name.clone().unwrap_or_default(), e.discr_value.unwrap_or(0)));
            }
            return (out, members);
        }
        let children = self.entries[index].children.clone();
        for child in children {
            match self.entries[child].tag {
                gimli::DW_TAG_member => {
                    let ty = self.type_of(child).unwrap_or_default();
                    let e = &self.entries[child];
                    out.push_str(&format!(" {}@{}:{ty}", e.name.clone().unwrap_or_default(), e.member_offset.unwrap_or(0)));
                    members.insert(ty);
                }
                gimli::DW_TAG_variant_part => {
                    if let Some(discr) = self.entries[child].discr.and_then(|d| self.entry_at(d)) {
                        let ty = self.type_of(discr).unwrap_or_default();
                        out.push_str(&format!(" tag@{}:{ty}", self.entries[discr].member_offset.unwrap_or(0)));
                    }
                    let parts = self.entries[child].children.clone();
                    for part in parts {
                        match self.entries[part].tag {
                            gimli::DW_TAG_variant => {
                                let value = self.entries[part].discr_value.map(|v| v.to_string()).unwrap_or_else(|| "_".into());
                                let fields = self.entries[part].children.clone();
                                for field in fields {
                                    let ty = self.type_of(field).unwrap_or_default();
                                    let e = &self.entries[field];
                                    out.push_str(&format!(" {value}=>{}@{}:{ty}", e.name.clone().unwrap_or_default(), e.member_offset.unwrap_or(0)));
                                    members.insert(ty);
                                }
                            }
                            gimli::DW_TAG_member => {
                                let ty = self.type_of(part).unwrap_or_default();
                                let e = &self.entries[part];
                                out.push_str(&format!(" {}@{}:{ty}", e.name.clone().unwrap_or_default(), e.member_offset.unwrap_or(0)));
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        (out, members)
    }

    fn inside_function(&self, index: usize) -> bool {
        let mut parent = self.entries[index].parent;
        while let Some(p) = parent {
            if matches!(self.entries[p].tag, gimli::DW_TAG_subprogram | gimli::DW_TAG_lexical_block | gimli::DW_TAG_inlined_subroutine) {
                return true;
            }
            parent = self.entries[p].parent;
        }
        false
    }

    /// Whether the unit describes types at all (line tables alone describe none).
    fn collect(&mut self, role: Role, crate_name: &str, into: &mut TypeFacts) -> bool {
        let any_types = self.entries.iter().any(|e| matches!(e.tag, gimli::DW_TAG_base_type | gimli::DW_TAG_structure_type));
        for index in 0..self.entries.len() {
            let tag = self.entries[index].tag;
            match tag {
                gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type | gimli::DW_TAG_enumeration_type => {
                    if self.entries[index].declaration || self.entries[index].name.is_none() {
                        continue;
                    }
                    let path = self.path(index);
                    if path.ends_with("{vtable_type}") {
                        if let Some(concrete) = self.entries[index].containing.and_then(|c| self.entry_at(c)) {
                            let concrete = self.path(concrete);
                            if mentions(&concrete, crate_name) {
                                let trait_name = path.split(" as ").nth(1).and_then(|t| t.rsplit_once(">::")).map(|(t, _)| t.to_string()).unwrap_or_default();
                                into.holders.push(Holder { mentions: concrete, place: Place::TraitObject { trait_name } });
                            }
                        }
                        continue;
                    }
                    if !mentions(&path, crate_name) {
                        continue;
                    }
                    let (layout, members) = self.describe(index);
                    into.members.entry(path.clone()).or_default().extend(members.into_iter().filter(|m| mentions(m, crate_name)));
                    into.layouts.entry(path.clone()).or_insert(layout);
                    if role == Role::Outside {
                        into.outside.insert(path);
                    }
                }
                gimli::DW_TAG_variable if self.entries[index].has_location && !self.inside_function(index) => {
                    // A vtable is a static too; what it says is read from its type above.
                    if self.entries[index].name.as_deref().is_some_and(|n| n.ends_with("{vtable}")) {
                        continue;
                    }
                    if role == Role::Boundary {
                        // By path: a legacy-mangled static's name has a hash of its type.
                        if let Some(ty) = self.type_of(index) {
                            let path = self.path(index);
                            into.static_types.insert(path, ty);
                        }
                    }
                    if let Some(ty) = self.type_of(index) {
                        if mentions(&ty, crate_name) {
                            let name = self.path(index);
                            into.holders.push(Holder { mentions: ty, place: Place::Static { name } });
                        }
                    }
                }
                gimli::DW_TAG_subprogram if !self.entries[index].declaration => {
                    let declaration = self.entries[index].specification.and_then(|s| self.entry_at(s));
                    let Some(linkage) = self.entries[index].linkage.clone().or_else(|| declaration.and_then(|d| self.entries[d].linkage.clone())) else {
                        continue;
                    };
                    let result = self.type_of(index).or_else(|| declaration.and_then(|d| self.type_of(d)));
                    let mut types: Vec<String> = result.clone().into_iter().collect();
                    let mut params = Vec::new();
                    let children = self.entries[index].children.clone();
                    for child in children {
                        if self.entries[child].tag == gimli::DW_TAG_formal_parameter {
                            params.extend(self.type_of(child));
                        }
                    }
                    if role == Role::Boundary {
                        let signature = format!("fn({}) -> {}", params.join(", "), result.unwrap_or_else(|| "()".into()));
                        into.compiled_signatures.insert(linkage.clone(), signature);
                    }
                    types.extend(params);
                    types.retain(|t| mentions(t, crate_name));
                    if types.is_empty() {
                        continue;
                    }
                    if let Some(export) = linkage.strip_prefix(crate::abi::elf::ENTRY_PREFIX) {
                        for ty in &types {
                            into.holders.push(Holder { mentions: ty.clone(), place: Place::Export { name: export.to_string() } });
                        }
                    }
                    if role == Role::Boundary {
                        into.signatures.entry(linkage).or_default().extend(types);
                    }
                }
                _ => {}
            }
        }
        any_types
    }
}

/// Every layout of `crate_name`'s types in a set of object files (a patch's), keyed by path.
pub fn read_objects(objects: &[crate::patch::ObjectFile], crate_name: &str) -> Result<TypeFacts> {
    let mut facts = TypeFacts::default();
    let all = |_: &str| Some(Role::Boundary);
    let mut any_types = false;
    for object in objects {
        any_types |= read(&object.data, crate_name, &all, &mut facts).with_context(|| format!("cannot read the debug info of {}", object.name))?;
    }
    // No type information is no proof that no layout changed.
    anyhow::ensure!(any_types || objects.is_empty(), "the objects carry no debug info of their types");
    Ok(facts)
}
