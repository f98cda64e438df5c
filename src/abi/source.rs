//! A source-level check the binary cannot give: did any type definition of the boundary
//! change? The host may hold values of the boundary's types (in its state, in `Box<dyn
//! Trait>`s, in channels); new code reading old values with a new layout is undefined
//! behaviour. Size checks alone miss a reordered or retyped field of the same size, so any
//! change to a `struct`, `enum`, `union`, `trait`, `type` alias or item-level macro of the
//! boundary sends the edit to a restart, and so does a change to the `use` and `const`
//! items of a module that defines types (they decide what a field's type names mean and
//! how long an array is). A definition that disappears (or moves to another module) also
//! restarts: the same name may now mean another type. Only new definitions are harmless.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use quote_free::tokens_without_docs;
use syn::visit::Visit;

/// Where a definition is: file, inline module path, kind, name and ordinal among items of
/// the same kind and name there (two `thread_local!` blocks in one module are two keys).
type Key = (PathBuf, String, &'static str, String, usize);

/// The type definitions of a crate: key → normalised tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeDefinitions(BTreeMap<Key, String>);

/// Every version of each definition loaded in the running program (the host build's, then
/// each applied patch's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadedDefinitions(BTreeMap<Key, Vec<String>>);

/// The contents the definitions were read from, to tell whether rustc saw the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSnapshot(BTreeMap<PathBuf, u64>);

impl SourceSnapshot {
    /// Whether every file still has the contents it had when the snapshot was taken.
    pub fn unchanged(&self) -> bool {
        self.0.iter().all(|(path, digest)| std::fs::read(path).is_ok_and(|bytes| content_digest(&bytes) == *digest))
    }
}

impl SourceSnapshot {
    /// Every `.rs` file under `dir` (a package directory), for comparing before and after a
    /// build whose list of files is not known yet.
    pub fn of_dir(dir: &Path, excluded: &Path) -> Self {
        let mut snapshot = SourceSnapshot::default();
        let excluded = excluded.to_path_buf();
        let walker = ignore::WalkBuilder::new(dir)
            .hidden(false)
            .require_git(false)
            .filter_entry(move |e| !e.path().starts_with(&excluded) && e.file_name() != ".git")
            .build();
        for entry in walker.flatten() {
            let path = entry.into_path();
            if path.extension().is_some_and(|e| e == "rs") {
                if let Ok(bytes) = std::fs::read(&path) {
                    snapshot.0.insert(path, content_digest(&bytes));
                }
            }
        }
        snapshot
    }
}

fn content_digest(bytes: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

impl TypeDefinitions {
    /// Reads every Rust file of the crate (as listed by its dep-info).
    pub fn of_files(files: &[PathBuf]) -> Result<(Self, SourceSnapshot)> {
        let mut definitions = TypeDefinitions::default();
        let mut snapshot = SourceSnapshot::default();
        for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "rs")) {
            let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            snapshot.0.insert(file.clone(), content_digest(&bytes));
            let text = String::from_utf8_lossy(&bytes);
            definitions.add_source(&text, file).with_context(|| format!("cannot parse {}", file.display()))?;
        }
        Ok((definitions, snapshot))
    }

    fn add_source(&mut self, text: &str, file: &Path) -> Result<()> {
        let syntax = syn::parse_file(text)?;
        let mut collector = Collector { file: file.to_path_buf(), modules: vec![ModuleScope::default()], out: &mut self.0 };
        collector.visit_file(&syntax);
        collector.close_module();
        Ok(())
    }
}

impl LoadedDefinitions {
    pub fn new(built: TypeDefinitions) -> Self {
        LoadedDefinitions(built.0.into_iter().map(|(key, tokens)| (key, vec![tokens])).collect())
    }

    /// The first loaded definition that `newer` changes or removes, described for the
    /// developer; None when `newer` only adds definitions.
    pub fn first_difference(&self, newer: &TypeDefinitions) -> Option<String> {
        for (key, versions) in &self.0 {
            match newer.0.get(key) {
                None => return Some(format!("{} was removed or moved", describe(key))),
                Some(tokens) if versions.iter().any(|v| v != tokens) => return Some(format!("{} changed", describe(key))),
                Some(_) => {}
            }
        }
        None
    }

    /// Records the definitions of a patch that was loaded.
    pub fn absorb(&mut self, loaded: TypeDefinitions) {
        for (key, tokens) in loaded.0 {
            let versions = self.0.entry(key).or_default();
            if !versions.contains(&tokens) {
                versions.push(tokens);
            }
        }
    }
}

fn describe((file, module, kind, name, _): &Key) -> String {
    let file = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let module = if module.is_empty() { String::new() } else { format!("{module}::") };
    format!("{kind} `{module}{name}` ({file})")
}

/// What a module holds that matters only if it defines types.
#[derive(Default)]
struct ModuleScope {
    /// Inline module path inside the file (`""` at the file's top level).
    path: String,
    defines_types: bool,
    imports_and_consts: Vec<String>,
}

struct Collector<'a> {
    file: PathBuf,
    modules: Vec<ModuleScope>,
    out: &'a mut BTreeMap<Key, String>,
}

impl Collector<'_> {
    fn scope(&mut self) -> &mut ModuleScope {
        self.modules.last_mut().expect("a module scope is open")
    }

    fn add(&mut self, kind: &'static str, name: &str, tokens: String) {
        self.scope().defines_types = true;
        let module = self.scope().path.clone();
        let mut key = (self.file.clone(), module, kind, name.to_string(), 0);
        while self.out.contains_key(&key) {
            key.4 += 1;
        }
        self.out.insert(key, tokens);
    }

    fn close_module(&mut self) {
        let scope = self.modules.pop().expect("a module scope is open");
        if scope.defines_types && !scope.imports_and_consts.is_empty() {
            let key = (self.file.clone(), scope.path, "`use` and `const` items of the module", String::new(), 0);
            self.out.insert(key, scope.imports_and_consts.join("\n"));
        }
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if item.content.is_none() {
            return; // `mod x;` lives in its own file, which is read separately.
        }
        let parent = self.scope().path.clone();
        let path = if parent.is_empty() { item.ident.to_string() } else { format!("{parent}::{}", item.ident) };
        self.modules.push(ModuleScope { path, ..Default::default() });
        syn::visit::visit_item_mod(self, item);
        self.close_module();
    }
    fn visit_item_struct(&mut self, item: &'ast syn::ItemStruct) {
        self.add("struct", &item.ident.to_string(), tokens_without_docs(item));
    }
    fn visit_item_enum(&mut self, item: &'ast syn::ItemEnum) {
        self.add("enum", &item.ident.to_string(), tokens_without_docs(item));
    }
    fn visit_item_union(&mut self, item: &'ast syn::ItemUnion) {
        self.add("union", &item.ident.to_string(), tokens_without_docs(item));
    }
    fn visit_item_trait(&mut self, item: &'ast syn::ItemTrait) {
        self.add("trait", &item.ident.to_string(), tokens_without_docs(item));
    }
    fn visit_item_type(&mut self, item: &'ast syn::ItemType) {
        self.add("type", &item.ident.to_string(), tokens_without_docs(item));
    }
    fn visit_item_macro(&mut self, item: &'ast syn::ItemMacro) {
        let name = item.ident.as_ref().map(|i| i.to_string()).unwrap_or_else(|| {
            item.mac.path.segments.last().map(|s| format!("{}!", s.ident)).unwrap_or_default()
        });
        self.add("macro", &name, tokens_without_docs(item));
    }
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let tokens = tokens_without_docs(item);
        self.scope().imports_and_consts.push(tokens);
    }
    fn visit_item_const(&mut self, item: &'ast syn::ItemConst) {
        let tokens = tokens_without_docs(item);
        self.scope().imports_and_consts.push(tokens);
    }
    // Items inside function bodies cannot be named by the host: skip them.
    fn visit_item_fn(&mut self, _: &'ast syn::ItemFn) {}
    fn visit_impl_item_fn(&mut self, _: &'ast syn::ImplItemFn) {}
}

/// Token text of an item without its doc comments (editing docs changes no layout).
mod quote_free {
    use proc_macro2::{TokenStream, TokenTree};
    use quote::ToTokens;

    pub fn tokens_without_docs(item: &impl ToTokens) -> String {
        strip(item.to_token_stream()).to_string()
    }

    fn strip(stream: TokenStream) -> TokenStream {
        let mut out = Vec::new();
        let mut trees = stream.into_iter().peekable();
        while let Some(tree) = trees.next() {
            match tree {
                TokenTree::Punct(p) if p.as_char() == '#' => {
                    if let Some(TokenTree::Group(group)) = trees.peek() {
                        let is_doc = group.stream().into_iter().next().is_some_and(|t| matches!(t, TokenTree::Ident(ref i) if i == "doc"));
                        if is_doc {
                            trees.next();
                            continue;
                        }
                    }
                    out.push(TokenTree::Punct(p));
                }
                TokenTree::Group(group) => {
                    let mut stripped = proc_macro2::Group::new(group.delimiter(), strip(group.stream()));
                    stripped.set_span(group.span());
                    out.push(TokenTree::Group(stripped));
                }
                other => out.push(other),
            }
        }
        out.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs(text: &str) -> TypeDefinitions {
        let mut d = TypeDefinitions::default();
        d.add_source(text, Path::new("/crate/src/lib.rs")).unwrap();
        d
    }

    fn loaded(text: &str) -> LoadedDefinitions {
        LoadedDefinitions::new(defs(text))
    }

    #[test]
    fn body_and_doc_edits_are_not_type_changes() {
        let old = loaded("use std::sync::Mutex;\n/// a\npub struct Cache { a: Mutex<u32> }\nfn f() -> u32 { struct Local; 1 }");
        let new = defs("use std::sync::Mutex;\n/// docs changed\npub struct Cache { a: Mutex<u32> }\nfn f() -> u32 { struct Local(u8); 2 }");
        assert_eq!(old.first_difference(&new), None);
    }

    #[test]
    fn reordered_fields_of_same_size_are_caught() {
        let old = loaded("pub struct Pair { a: u32, b: f32 }");
        assert_eq!(old.first_difference(&defs("pub struct Pair { b: f32, a: u32 }")).unwrap(), "struct `Pair` (lib.rs) changed");
    }

    #[test]
    fn nested_modules_traits_and_macros_count() {
        let base = "mod m { pub enum E { A } } trait T { fn f(&self); } thread_local! { static X: u8 = 0; }";
        let old = loaded(base);
        assert!(old.first_difference(&defs(&base.replace("A }", "A, B }"))).unwrap().contains("enum `m::E`"));
        assert!(old.first_difference(&defs(&base.replace("fn f(&self);", "fn f(&self); fn g(&self);"))).unwrap().contains("trait `T`"));
        assert!(old.first_difference(&defs(&base.replace("u8", "u16"))).unwrap().contains("thread_local!"));
    }

    #[test]
    fn new_types_are_harmless_removed_or_moved_ones_are_not() {
        assert_eq!(loaded("struct A;").first_difference(&defs("struct A; struct B;")), None);
        assert!(loaded("struct A; struct B;").first_difference(&defs("struct A;")).unwrap().contains("removed or moved"));
        assert!(loaded("struct A;").first_difference(&defs("mod m { struct A; }")).is_some());
    }

    #[test]
    fn imports_and_consts_count_where_types_are_defined() {
        let old = loaded("use std::sync::Mutex; const N: usize = 4; pub struct S { m: Mutex<u64>, b: [u8; N] }");
        let retyped = defs("use tokio::sync::Mutex; const N: usize = 4; pub struct S { m: Mutex<u64>, b: [u8; N] }");
        assert!(old.first_difference(&retyped).unwrap().contains("`use` and `const`"));
        let resized = defs("use std::sync::Mutex; const N: usize = 8; pub struct S { m: Mutex<u64>, b: [u8; N] }");
        assert!(old.first_difference(&resized).is_some());
        // A module without types may change its imports freely.
        let handlers = loaded("mod api { use serde_json::json; pub fn f() {} } struct S;");
        assert_eq!(handlers.first_difference(&defs("mod api { use serde_json::{json, Value}; pub fn f() {} } struct S;")), None);
    }

    #[test]
    fn two_unnamed_macros_in_one_module_are_two_stable_keys() {
        let text = "thread_local! { static A: u8 = 0; } thread_local! { static B: u8 = 0; }";
        assert_eq!(loaded(text).first_difference(&defs(text)), None);
    }

    #[test]
    fn a_type_added_by_one_patch_and_changed_by_the_next_is_caught() {
        let mut loaded = loaded("struct A;");
        let first_patch = defs("struct A; struct B(u8);");
        assert_eq!(loaded.first_difference(&first_patch), None);
        loaded.absorb(first_patch);
        assert!(loaded.first_difference(&defs("struct A; struct B(u16);")).unwrap().contains("struct `B`"));
        // Changing it back is no safer: values of the intermediate version may exist.
        loaded.absorb(defs("struct A; struct B(u16);"));
        assert!(loaded.first_difference(&defs("struct A; struct B(u8);")).is_some());
    }

    #[test]
    fn snapshots_see_content_changes_whatever_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lib.rs");
        std::fs::write(&file, "struct A;").unwrap();
        let (_, snapshot) = TypeDefinitions::of_files(std::slice::from_ref(&file)).unwrap();
        assert!(snapshot.unchanged());
        std::fs::write(&file, "struct B;").unwrap();
        assert!(!snapshot.unchanged());
    }
}
