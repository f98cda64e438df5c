//! A source-level check the binary cannot give: did any type definition of the boundary
//! change? The host may hold values of the boundary's types (in its state, in `Box<dyn
//! Trait>`s, in channels); new code reading old values with a new layout is undefined
//! behaviour. Size checks alone miss a reordered or retyped field of the same size, so any
//! change to a `struct`, `enum`, `union`, `trait`, `type` alias or item-level macro of the
//! boundary sends the edit to a restart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use quote_free::tokens_without_docs;
use syn::visit::Visit;

/// The type definitions of a crate, each as (label, normalised tokens).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeDefinitions(BTreeSet<(String, String)>);

impl TypeDefinitions {
    /// Reads every Rust file of the crate (as listed by its dep-info).
    pub fn of_files(files: &[PathBuf]) -> Result<Self> {
        let mut definitions = TypeDefinitions::default();
        for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "rs")) {
            let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            definitions.add_source(&text, file).with_context(|| format!("cannot parse {}", file.display()))?;
        }
        Ok(definitions)
    }

    fn add_source(&mut self, text: &str, file: &Path) -> Result<()> {
        let syntax = syn::parse_file(text)?;
        let mut collector = Collector { file: file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), out: &mut self.0 };
        collector.visit_file(&syntax);
        Ok(())
    }

    /// `self` holds every version of every definition loaded in the running program (the
    /// host's, then each applied patch's). Returns the first definition of `newer` that
    /// differs from a loaded version of the same name, described for the developer.
    /// New definitions are harmless (no value of them exists yet), and so are removed ones
    /// (their values keep being handled by the old code that made them).
    pub fn first_difference(&self, newer: &TypeDefinitions) -> Option<String> {
        let (label, _) = newer
            .0
            .iter()
            .find(|(label, tokens)| self.0.iter().any(|(l, t)| l == label && t != tokens))?;
        Some(format!("{label} changed"))
    }

    /// Records the definitions of a patch that was loaded.
    pub fn absorb(&mut self, loaded: TypeDefinitions) {
        self.0.extend(loaded.0);
    }
}

struct Collector<'a> {
    file: String,
    out: &'a mut BTreeSet<(String, String)>,
}

impl Collector<'_> {
    fn add(&mut self, kind: &str, name: &str, tokens: String) {
        self.out.insert((format!("{kind} `{name}` ({})", self.file), tokens));
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
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
        syn::visit::visit_item_macro(self, item);
    }
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
        d.add_source(text, Path::new("lib.rs")).unwrap();
        d
    }

    #[test]
    fn body_and_doc_edits_are_not_type_changes() {
        let old = defs("/// a\npub struct Cache { a: u32, b: u64 }\nfn f() -> u32 { 1 }");
        let new = defs("/// docs changed\npub struct Cache { a: u32, b: u64 }\nfn f() -> u32 { 2 }");
        assert_eq!(old.first_difference(&new), None);
    }

    #[test]
    fn reordered_fields_of_same_size_are_caught() {
        let old = defs("pub struct Pair { a: u32, b: f32 }");
        let new = defs("pub struct Pair { b: f32, a: u32 }");
        assert_eq!(old.first_difference(&new).unwrap(), "struct `Pair` (lib.rs) changed");
    }

    #[test]
    fn nested_modules_traits_and_macros_count() {
        let old = defs("mod m { pub enum E { A } } trait T { fn f(&self); } thread_local! { static X: u8 = 0; }");
        assert!(old.first_difference(&defs("mod m { pub enum E { A, B } } trait T { fn f(&self); } thread_local! { static X: u8 = 0; }")).unwrap().contains("enum `E`"));
        assert!(old.first_difference(&defs("mod m { pub enum E { A } } trait T { fn f(&self); fn g(&self); } thread_local! { static X: u8 = 0; }")).unwrap().contains("trait `T`"));
        assert!(old.first_difference(&defs("mod m { pub enum E { A } } trait T { fn f(&self); } thread_local! { static X: u16 = 0; }")).unwrap().contains("thread_local!"));
        assert_eq!(defs("struct A;").first_difference(&defs("struct A; struct B;")), None, "a new type is harmless");
        assert_eq!(defs("struct A; struct B;").first_difference(&defs("struct A;")), None, "so is a removed one");
    }

    #[test]
    fn a_type_added_by_one_patch_and_changed_by_the_next_is_caught() {
        let mut loaded = defs("struct A;");
        let first_patch = defs("struct A; struct B(u8);");
        assert_eq!(loaded.first_difference(&first_patch), None);
        loaded.absorb(first_patch);
        assert!(loaded.first_difference(&defs("struct A; struct B(u16);")).unwrap().contains("struct `B`"));
        // Changing it back is no safer: values of the intermediate version may exist.
        loaded.absorb(defs("struct A; struct B(u16);"));
        assert!(loaded.first_difference(&defs("struct A; struct B(u8);")).is_some());
    }
}
