//! The surface of a crate's functions, from its source: every function's signature (free
//! functions, methods, trait items, functions nested in bodies), and which functions return
//! a value whose layout their body decides (`async fn`s, whose future is their body's state
//! machine, and `-> impl Trait`). Redirecting an old function to its new copy is only sound
//! when its signature means the same thing: the compiled code tells which functions changed,
//! and this tells whether any of their signatures could have (see `patch::reach`). Type
//! definitions themselves are checked by [`super::source`]; together, an unchanged surface
//! and unchanged definitions mean unchanged argument and result layouts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use quote::ToTokens;
use syn::visit::Visit;

/// (file, enclosing path, name, ordinal among same-named functions there).
type Key = (PathBuf, String, String, usize);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Surface {
    signatures: BTreeMap<Key, String>,
    /// Names of functions whose result's layout their body decides.
    opaque_results: BTreeSet<String>,
    /// Function name → the token text of each body of that name (for copies other crates
    /// compiled, whose new code the patch cannot see).
    bodies: BTreeMap<String, Vec<String>>,
}

impl Surface {
    /// Adds the functions of one parsed file (see `source::CrateSource`, which reads them).
    pub fn add_syntax(&mut self, syntax: &syn::File, file: &Path) {
        let mut collector = Collector { file: file.to_path_buf(), path: Vec::new(), surface: self };
        collector.visit_file(syntax);
    }

    /// The first function of `self` whose signature `newer` changed or removed, described.
    pub fn first_difference(&self, newer: &Surface) -> Option<String> {
        for (key, signature) in &self.signatures {
            match newer.signatures.get(key) {
                Some(new) if new == signature => {}
                Some(_) => return Some(format!("the signature of `{}` changed", describe(key))),
                None => return Some(format!("`{}` was removed or moved", describe(key))),
            }
        }
        None
    }

    /// Whether the body of some function named `name` changed in `newer`.
    pub fn body_changed(&self, newer: &Surface, name: &str) -> bool {
        let sorted = |s: &Surface| {
            let mut bodies = s.bodies.get(name).cloned().unwrap_or_default();
            bodies.sort();
            bodies
        };
        sorted(self) != sorted(newer)
    }

    /// Whether a function of this name returns an `async fn`'s future or an `impl Trait`.
    pub fn has_opaque_result(&self, name: &str) -> bool {
        self.opaque_results.contains(name)
    }
}

fn describe((file, path, name, _): &Key) -> String {
    let file = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if path.is_empty() {
        format!("{name} ({file})")
    } else {
        format!("{path}::{name} ({file})")
    }
}

struct Collector<'a> {
    file: PathBuf,
    path: Vec<String>,
    surface: &'a mut Surface,
}

impl Collector<'_> {
    fn add(&mut self, sig: &syn::Signature, attrs: &[syn::Attribute]) {
        let name = sig.ident.to_string();
        let opaque = sig.asyncness.is_some() || matches!(&sig.output, syn::ReturnType::Type(_, ty) if mentions_impl(ty));
        if opaque {
            self.surface.opaque_results.insert(name.clone());
        }
        // Attributes that change the calling convention or the symbol count too.
        let attrs: String = attrs
            .iter()
            .filter(|a| !a.path().is_ident("doc"))
            .map(|a| a.to_token_stream().to_string())
            .collect::<Vec<_>>()
            .join(" ");
        let mut key = (self.file.clone(), self.path.join("::"), name, 0);
        while self.surface.signatures.contains_key(&key) {
            key.3 += 1;
        }
        self.surface.signatures.insert(key, format!("{attrs} {}", sig.to_token_stream()));
    }

    fn within(&mut self, segment: String, visit: impl FnOnce(&mut Self)) {
        self.path.push(segment);
        visit(self);
        self.path.pop();
    }
}

/// Whether a type names an `impl Trait`.
pub(crate) fn mentions_impl(ty: &syn::Type) -> bool {
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut finder = Finder(false);
    finder.visit_type(ty);
    finder.0
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        self.within(item.ident.to_string(), |c| syn::visit::visit_item_mod(c, item));
    }
    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        self.add(&item.sig, &item.attrs);
        self.surface.bodies.entry(item.sig.ident.to_string()).or_default().push(item.block.to_token_stream().to_string());
        self.within(item.sig.ident.to_string(), |c| syn::visit::visit_block(c, &item.block));
    }
    fn visit_item_impl(&mut self, item: &'ast syn::ItemImpl) {
        let header = match &item.trait_ {
            Some((_, path, _)) => format!("<{} as {}>", item.self_ty.to_token_stream(), path.to_token_stream()),
            None => format!("<{}>", item.self_ty.to_token_stream()),
        };
        self.within(header, |c| syn::visit::visit_item_impl(c, item));
    }
    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        self.add(&item.sig, &item.attrs);
        self.surface.bodies.entry(item.sig.ident.to_string()).or_default().push(item.block.to_token_stream().to_string());
        self.within(item.sig.ident.to_string(), |c| syn::visit::visit_block(c, &item.block));
    }
    fn visit_item_trait(&mut self, item: &'ast syn::ItemTrait) {
        self.within(item.ident.to_string(), |c| syn::visit::visit_item_trait(c, item));
    }
    fn visit_trait_item_fn(&mut self, item: &'ast syn::TraitItemFn) {
        self.add(&item.sig, &item.attrs);
        if let Some(block) = &item.default {
            self.within(item.sig.ident.to_string(), |c| syn::visit::visit_block(c, block));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn surface(text: &str) -> Surface {
        let mut surface = Surface::default();
        surface.add_syntax(&syn::parse_file(text).unwrap(), Path::new("lib.rs"));
        surface
    }

    #[test]
    fn bodies_do_not_count_but_signatures_and_nested_functions_do() {
        let old = surface("fn a(x: u32) -> u32 { x + 1 } impl S { fn m(&self) {} } fn outer() { fn inner(y: u8) {} }");
        assert_eq!(old.first_difference(&surface("fn a(x: u32) -> u32 { x + 2 } impl S { fn m(&self) { 1; } } fn outer() { fn inner(y: u8) { 2; } }")), None);
        assert!(old.first_difference(&surface("fn a(x: u64) -> u32 { 0 } impl S { fn m(&self) {} } fn outer() { fn inner(y: u8) {} }")).unwrap().contains("`a"));
        assert!(old.first_difference(&surface("fn a(x: u32) -> u32 { 0 } impl S { fn m(&self) {} } fn outer() { fn inner(y: u16) {} }")).unwrap().contains("outer::inner"));
        assert!(old.first_difference(&surface("fn a(x: u32) -> u32 { 0 } impl S { fn m(&mut self) {} } fn outer() { fn inner(y: u8) {} }")).is_some());
        assert_eq!(old.first_difference(&surface("fn a(x: u32) -> u32 { 0 } impl S { fn m(&self) {} } fn outer() { fn inner(y: u8) {} } fn added() {}")), None);
    }

    #[test]
    fn async_functions_and_impl_trait_results_are_opaque() {
        let s = surface("async fn handler() {} fn make() -> impl Fn() { || () } fn plain() -> Box<dyn Fn()> { todo!() }");
        assert!(s.has_opaque_result("handler") && s.has_opaque_result("make"));
        assert!(!s.has_opaque_result("plain"));
    }
}
