//! Which source edits could change a layout: the fast pre-filter before the proof.
//!
//! A crate's skeleton is its source with the bodies of functions that define nothing taken
//! out. Only what is left can change how a type is laid out: type definitions, `const` and
//! `static` items, aliases, `impl` blocks (associated types and consts), attributes, item
//! macros, `const fn` bodies (they compute array lengths), and function bodies that define
//! items (a type or static inside a function) or call a macro that might. An edit that leaves
//! the skeleton as it was is a body-only edit: no layout changed, and the patch is compiled
//! with line tables only. Any other edit is proven from the compiled types (see
//! [`super::dwarf`]), never from this text.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use syn::visit::Visit;
use syn::visit_mut::VisitMut;

/// Macros that expand to an expression and define no type (the common ones of handler code).
const EXPRESSION_MACROS: &[&str] = &[
    "println",
    "print",
    "eprintln",
    "eprint",
    "format",
    "format_args",
    "write",
    "writeln",
    "panic",
    "assert",
    "assert_eq",
    "assert_ne",
    "debug_assert",
    "debug_assert_eq",
    "debug_assert_ne",
    "unreachable",
    "unimplemented",
    "todo",
    "vec",
    "dbg",
    "matches",
    "concat",
    "stringify",
    "line",
    "column",
    "file",
    "module_path",
    "env",
    "option_env",
    "include_str",
    "include_bytes",
    "cfg",
    "json",
    "info",
    "warn",
    "error",
    "debug",
    "trace",
    "event",
    "anyhow",
    "bail",
    "ensure",
];

/// The digest of each file's skeleton.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skeleton(BTreeMap<PathBuf, u64>);

impl Skeleton {
    pub fn add_syntax(&mut self, syntax: &syn::File, file: &Path) {
        let mut stripped = syntax.clone();
        BodyStripper.visit_file_mut(&mut stripped);
        let text = crate::abi::source::quote_free::tokens_without_docs(&stripped);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut hasher);
        self.0.insert(file.to_path_buf(), hasher.finish());
    }

    /// The first file whose skeleton differs in `newer` (or that only one of them has).
    pub fn first_change(&self, newer: &Skeleton) -> Option<PathBuf> {
        let files = self.0.keys().chain(newer.0.keys());
        files.into_iter().find(|file| self.0.get(*file) != newer.0.get(*file)).cloned()
    }
}

struct BodyStripper;

impl VisitMut for BodyStripper {
    fn visit_item_fn_mut(&mut self, item: &mut syn::ItemFn) {
        if item.sig.constness.is_none() && defines_nothing(&item.block) {
            item.block.stmts.clear();
        } else {
            syn::visit_mut::visit_item_fn_mut(self, item);
        }
    }

    fn visit_impl_item_fn_mut(&mut self, item: &mut syn::ImplItemFn) {
        if item.sig.constness.is_none() && defines_nothing(&item.block) {
            item.block.stmts.clear();
        } else {
            syn::visit_mut::visit_impl_item_fn_mut(self, item);
        }
    }

    fn visit_trait_item_fn_mut(&mut self, item: &mut syn::TraitItemFn) {
        if let Some(block) = &mut item.default {
            if item.sig.constness.is_none() && defines_nothing(block) {
                block.stmts.clear();
            }
        }
    }
}

/// Whether a body defines no item and calls no macro that could define one.
pub(crate) fn defines_nothing(block: &syn::Block) -> bool {
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_item(&mut self, _: &'ast syn::Item) {
            self.0 = true;
        }
        fn visit_macro(&mut self, mac: &'ast syn::Macro) {
            let name = mac.path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
            if !EXPRESSION_MACROS.contains(&name.as_str()) {
                self.0 = true;
            }
        }
    }
    let mut finder = Finder(false);
    finder.visit_block(block);
    !finder.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(before: &str, after: &str) -> bool {
        let (mut old, mut new) = (Skeleton::default(), Skeleton::default());
        old.add_syntax(&syn::parse_file(before).unwrap(), Path::new("lib.rs"));
        new.add_syntax(&syn::parse_file(after).unwrap(), Path::new("lib.rs"));
        old.first_change(&new).is_some()
    }

    #[test]
    fn a_body_only_edit_leaves_the_skeleton() {
        assert!(!changes("fn a() -> u32 { println!(\"x\"); 1 }", "fn a() -> u32 { println!(\"y {}\", 2); 2 }"));
        assert!(!changes("impl S { fn a(&self) -> u32 { 1 } }", "impl S { fn a(&self) -> u32 { format!(\"{}\", 2).len() as u32 } }"));
        assert!(!changes("/// one\nstruct S;", "/// two\nstruct S;"), "docs lay nothing out");
    }

    #[test]
    fn edits_that_can_change_a_layout_change_the_skeleton() {
        assert!(changes("const N: usize = 4;", "const N: usize = 8;"));
        assert!(changes("type Count = u16;", "type Count = u64;"));
        assert!(changes("impl Tr for S { type K = u8; }", "impl Tr for S { type K = u64; }"));
        assert!(changes("struct S { a: u8 }", "struct S { a: u8, b: u8 }"));
        assert!(changes("const fn n() -> usize { 4 }", "const fn n() -> usize { 8 }"), "a const fn computes lengths");
        assert!(changes("fn f() { struct L { a: u8 } }", "fn f() { struct L { a: u64 } }"), "a type inside a function");
        assert!(changes("fn f() { thread_local!(static X: u8 = 0); }", "fn f() { thread_local!(static X: u64 = 0); }"));
        assert!(changes("fn f() { my_types!(u8); }", "fn f() { my_types!(u64); }"), "an unknown macro may define types");
    }
}
