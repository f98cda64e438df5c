//! What a crate's dependents compile of it, from its source: everything but the bodies of its
//! plain functions. A dependent's compiled code holds the crate's types and signatures, the
//! values of its consts and statics, the bodies rustc instantiates where they are used (generic
//! functions and those of generic impls, `#[inline]` ones, trait default methods, `const fn`s,
//! macros), and the layouts of the values a body decides (an `async fn`'s future, an
//! `impl Trait` result). A plain function's body (none of that) is compiled into the crate's
//! own code alone: its dependents call it by name.
//!
//! So when a crate's downstream view is the same before and after an edit, the code of the
//! crates that depend on it is still right, and a rebuild compiles the edited crate alone and
//! links the program again (see `rebuild`): what cargo would compile again only because the
//! crate's metadata hash changed. Only for `-C opt-level=0` without LTO, where rustc inlines
//! nothing of a plain function into another crate.
//!
//! Kept bodies count with the line they start on: a panic in one names its line, and a
//! dependent's copy would name the old one.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use syn::visit_mut::VisitMut;

/// The digest of a crate's downstream view (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downstream(u64);

impl Downstream {
    /// The view of the crate compiled from `files` (its dep-info's list), as they are now.
    /// Files other than Rust sources (`include_str!`) count whole: a `const` may hold one.
    pub fn of_files(files: &[PathBuf]) -> Result<Self> {
        Self::of(files, &|file| std::fs::read(file).with_context(|| format!("cannot read {}", file.display())))
    }

    /// The view of the crate compiled from `files`, their contents given by `read`.
    pub fn of(files: &[PathBuf], read: &dyn Fn(&Path) -> Result<Vec<u8>>) -> Result<Self> {
        let mut sorted: Vec<&PathBuf> = files.iter().collect();
        sorted.sort();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for file in sorted {
            let text = read(file)?;
            file.hash(&mut hasher);
            if file.extension().is_some_and(|e| e == "rs") {
                let text = String::from_utf8(text).with_context(|| format!("{} is not UTF-8", file.display()))?;
                view_of(&text, file)?.hash(&mut hasher);
            } else {
                text.hash(&mut hasher);
            }
        }
        Ok(Downstream(hasher.finish()))
    }
}

/// Whether the dependents of a crate compiled by this command can keep their code when only
/// the crate's plain function bodies changed: nothing of a plain function is inlined across
/// crates without optimisation.
pub fn bodies_stay_home(invocation: &crate::capture::RustcInvocation) -> bool {
    let optimised = invocation.codegen_option("opt-level").is_some_and(|level| level != "0");
    let lto = invocation.codegen_option("lto").is_some_and(|lto| !matches!(lto, "off" | "no" | "n" | "false"))
        || invocation.codegen_option("linker-plugin-lto").is_some();
    !optimised && !lto
}

/// A file's downstream view, as text.
fn view_of(text: &str, file: &Path) -> Result<String> {
    let mut syntax = syn::parse_file(text).with_context(|| format!("cannot parse {}", file.display()))?;
    let mut stripper = PlainBodies { kept_lines: Vec::new() };
    stripper.visit_file_mut(&mut syntax);
    let tokens = crate::abi::source::quote_free::tokens_without_docs(&syntax);
    Ok(format!("{tokens}\n{:?}", stripper.kept_lines))
}

/// Empties the bodies of plain functions and records where each kept body starts.
struct PlainBodies {
    kept_lines: Vec<usize>,
}

impl PlainBodies {
    fn strip_or_keep(&mut self, sig: &syn::Signature, attrs: &[syn::Attribute], block: &mut syn::Block, in_generic_impl: bool) {
        if !in_generic_impl && is_plain(sig, attrs) && crate::layout::skeleton::defines_nothing(block) {
            block.stmts.clear();
        } else {
            self.kept_lines.push(sig.fn_token.span.start().line);
        }
    }
}

impl VisitMut for PlainBodies {
    fn visit_item_fn_mut(&mut self, item: &mut syn::ItemFn) {
        self.strip_or_keep(&item.sig, &item.attrs, &mut item.block, false);
    }

    fn visit_item_impl_mut(&mut self, item: &mut syn::ItemImpl) {
        let generic = has_type_parameters(&item.generics);
        for impl_item in &mut item.items {
            if let syn::ImplItem::Fn(function) = impl_item {
                self.strip_or_keep(&function.sig, &function.attrs, &mut function.block, generic);
            }
        }
    }

    fn visit_trait_item_fn_mut(&mut self, item: &mut syn::TraitItemFn) {
        // A default method is instantiated for each implementing type, wherever that is.
        if item.default.is_some() {
            self.kept_lines.push(item.sig.fn_token.span.start().line);
        }
    }
}

/// A function whose body only its own crate compiles: no type or const parameters (an
/// `impl Trait` argument is one), not `const`, `async`, or returning `impl Trait`, not
/// `#[inline]`, and no attribute that could rewrite it (a macro's output is unknown).
fn is_plain(sig: &syn::Signature, attrs: &[syn::Attribute]) -> bool {
    let impl_trait_argument = sig.inputs.iter().any(|input| matches!(input, syn::FnArg::Typed(typed) if crate::abi::surface::mentions_impl(&typed.ty)));
    let opaque_result = matches!(&sig.output, syn::ReturnType::Type(_, ty) if crate::abi::surface::mentions_impl(ty));
    let inert = |attr: &syn::Attribute| {
        let path = attr.path();
        ["doc", "cfg", "allow", "warn", "deny", "forbid", "expect", "must_use", "cold", "track_caller", "deprecated", "rustfmt", "clippy"]
            .iter()
            .any(|name| path.is_ident(name) || path.segments.first().is_some_and(|s| s.ident == name))
    };
    !has_type_parameters(&sig.generics)
        && !impl_trait_argument
        && !opaque_result
        && sig.constness.is_none()
        && sig.asyncness.is_none()
        && attrs.iter().all(inert)
}

fn has_type_parameters(generics: &syn::Generics) -> bool {
    generics.params.iter().any(|p| !matches!(p, syn::GenericParam::Lifetime(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(before: &str, after: &str) -> bool {
        view_of(before, Path::new("lib.rs")).unwrap() == view_of(after, Path::new("lib.rs")).unwrap()
    }

    #[test]
    fn a_plain_function_s_body_stays_in_its_crate() {
        assert!(same("pub fn banner() -> &'static str { \"v1\" }", "pub fn banner() -> &'static str {\n    let x = 1;\n    if x > 0 { \"v2\" } else { \"v3\" }\n}"));
        assert!(same("impl S { pub fn get(&self) -> u32 { 1 } }", "impl S { pub fn get(&self) -> u32 { 2 } }"));
        assert!(same("impl Drop for S { fn drop(&mut self) { println!(\"a\") } }", "impl Drop for S { fn drop(&mut self) { println!(\"b\") } }"));
        assert!(same("impl<'a> S<'a> { fn r(&self) -> &'a str { \"a\" } }", "impl<'a> S<'a> { fn r(&self) -> &'a str { \"b\" } }"), "lifetimes are no instances");
        assert!(same("/// one\nfn f() {}", "/// two\nfn f() {}"));
    }

    #[test]
    fn what_dependents_compile_in_is_kept() {
        assert!(!same("pub fn id<T>(t: T) -> T { t }", "pub fn id<T>(t: T) -> T { let u = t; u }"), "generic");
        assert!(!same("impl<T> W<T> { fn get(&self) -> u8 { 1 } }", "impl<T> W<T> { fn get(&self) -> u8 { 2 } }"), "method of a generic impl");
        assert!(!same("#[inline] pub fn f() -> u8 { 1 }", "#[inline] pub fn f() -> u8 { 2 }"), "inline");
        assert!(!same("pub async fn f() -> u8 { 1 }", "pub async fn f() -> u8 { let s = String::new(); g().await; 1 }"), "an async fn's future");
        assert!(!same("pub fn f() -> impl Fn() { || () }", "pub fn f() -> impl Fn() { let a = 1; move || { a; } }"), "an opaque result");
        assert!(!same("pub fn f(x: impl Into<u8>) -> u8 { x.into() }", "pub fn f(x: impl Into<u8>) -> u8 { 0 }"), "impl Trait argument");
        assert!(!same("pub const fn n() -> usize { 4 }", "pub const fn n() -> usize { 8 }"), "const fn");
        assert!(!same("pub const N: usize = 4;", "pub const N: usize = 8;"), "const");
        assert!(!same("pub static S: &str = \"a\";", "pub static S: &str = \"b\";"), "static");
        assert!(!same("trait T { fn d(&self) -> u8 { 1 } }", "trait T { fn d(&self) -> u8 { 2 } }"), "a default method");
        assert!(!same("pub fn f() -> u8 { 1 }", "pub fn f() -> u16 { 1 }"), "a signature");
        assert!(!same("pub fn f() {}", ""), "a function removed");
        assert!(!same("fn f() { impl S { pub fn g(&self) {} } }", "fn f() { impl S { pub fn g(&self, x: u8) {} } }"), "items inside a body");
        assert!(!same("#[hot::export] pub fn f() -> u8 { 1 }", "#[hot::export] pub fn f() -> u8 { 2 }"), "a macro attribute's output is unknown");
        assert!(!same("macro_rules! m { () => { 1 } }", "macro_rules! m { () => { 2 } }"), "a macro");
        assert!(!same("pub struct S { a: u8 }", "pub struct S { a: u16 }"), "a type");
    }

    #[test]
    fn kept_bodies_count_with_their_line() {
        let generic = "pub fn id<T>(t: T) -> T { t }";
        assert!(!same(&format!("fn a() {{}}\n{generic}"), &format!("fn a() {{\n}}\n{generic}")), "a panic in `id` would name its old line");
        assert!(same(&format!("{generic}\nfn a() {{}}"), &format!("{generic}\nfn a() {{\n    let x = 1;\n}}")), "lines below it do not matter");
    }

    #[test]
    fn optimised_or_lto_builds_inline_across_crates() {
        let invocation = |args: &[&str]| crate::capture::RustcInvocation {
            rustc: "rustc".into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            cwd: "/ws".into(),
            env: Default::default(),
        };
        assert!(bodies_stay_home(&invocation(&["-C", "debuginfo=2"])));
        assert!(bodies_stay_home(&invocation(&["-C", "opt-level=0"])));
        assert!(!bodies_stay_home(&invocation(&["-C", "opt-level=1"])));
        assert!(!bodies_stay_home(&invocation(&["-C", "lto=fat"])));
    }
}
