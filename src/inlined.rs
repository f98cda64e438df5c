//! What a crate's users compile in from its source: the values of its `const` items
//! (associated ones too), the bodies of its `const fn`s, which rustc evaluates where they
//! are used, and its `macro_rules!` macros, which expand there. No function of the crate's own compiled code carries them, so comparing its
//! compiled code cannot see such an edit: the crates that use them must be compiled again
//! and compared (see `session::attempt`), and code outside the hot crates that names one
//! keeps the old value until a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The digest of each `const` item and `const fn`, by file and name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inlined(BTreeMap<(PathBuf, String), u64>);

impl Inlined {
    pub fn add_syntax(&mut self, syntax: &syn::File, file: &Path) {
        let mut collector = Collector { file, out: &mut self.0 };
        collector.visit_file(syntax);
    }

    /// The names whose definition differs in `newer` (changed, added or removed).
    pub fn changed(&self, newer: &Inlined) -> BTreeSet<String> {
        let keys = self.0.keys().chain(newer.0.keys());
        keys.filter(|key| self.0.get(*key) != newer.0.get(*key)).map(|(_, name)| name.clone()).collect()
    }
}

struct Collector<'a> {
    file: &'a Path,
    out: &'a mut BTreeMap<(PathBuf, String), u64>,
}

impl Collector<'_> {
    fn add(&mut self, name: String, tokens: &impl quote::ToTokens) {
        let text = crate::abi::source::quote_free::tokens_without_docs(tokens);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut hasher);
        // Two items of one name in one file (in two modules): either changing counts.
        let key = (self.file.to_path_buf(), name);
        let digest = hasher.finish();
        self.out.entry(key).and_modify(|d| *d ^= digest.rotate_left(1)).or_insert(digest);
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item_const(&mut self, item: &'ast syn::ItemConst) {
        self.add(item.ident.to_string(), item);
    }
    fn visit_impl_item_const(&mut self, item: &'ast syn::ImplItemConst) {
        self.add(item.ident.to_string(), item);
    }
    fn visit_trait_item_const(&mut self, item: &'ast syn::TraitItemConst) {
        self.add(item.ident.to_string(), item);
    }
    fn visit_item_macro(&mut self, item: &'ast syn::ItemMacro) {
        if let (Some(name), true) = (&item.ident, item.mac.path.is_ident("macro_rules")) {
            self.add(name.to_string(), item);
        }
    }
    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if item.sig.constness.is_some() {
            self.add(item.sig.ident.to_string(), item);
        }
        syn::visit::visit_item_fn(self, item);
    }
    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        if item.sig.constness.is_some() {
            self.add(item.sig.ident.to_string(), item);
        }
        syn::visit::visit_impl_item_fn(self, item);
    }
}

/// The first of `files` that names one of `names` (as a whole identifier), with the name:
/// code there may have the old value compiled in. Reads the files as text: a name in a comment
/// counts too (the answer errs towards a restart).
pub fn first_use<'a>(files: impl IntoIterator<Item = &'a PathBuf>, names: &BTreeSet<String>) -> Option<(PathBuf, String)> {
    if names.is_empty() {
        return None;
    }
    for file in files.into_iter().filter(|f| f.extension().is_some_and(|e| e == "rs")) {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        let mut words = text.split(|c: char| !(c.is_alphanumeric() || c == '_'));
        if let Some(name) = words.find(|word| names.contains(*word)) {
            return Some((file.clone(), name.to_string()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(text: &str) -> Inlined {
        let mut inlined = Inlined::default();
        inlined.add_syntax(&syn::parse_file(text).unwrap(), Path::new("src/lib.rs"));
        inlined
    }

    #[test]
    fn a_changed_const_or_const_fn_is_named_and_a_body_edit_is_not() {
        let base = "pub const TITLE: &str = \"v1\";\nimpl S { pub const MAX: u32 = 3; }\npub const fn size() -> usize { 4 }\npub fn run() -> u32 { 1 }\n";
        assert!(of(base).changed(&of(base)).is_empty());
        assert!(of(base).changed(&of(&base.replace("{ 1 }", "{ 2 }"))).is_empty(), "a plain function's body is compiled code");
        assert!(of(base).changed(&of(&format!("/// The title.\n{base}"))).is_empty(), "a doc comment compiles to nothing");
        let changed = |edited: String| of(base).changed(&of(&edited)).into_iter().collect::<Vec<_>>();
        assert_eq!(changed(base.replace("\"v1\"", "\"v2\"")), ["TITLE"]);
        assert_eq!(changed(base.replace("= 3", "= 4")), ["MAX"]);
        assert_eq!(changed(base.replace("{ 4 }", "{ 5 }")), ["size"]);
        assert_eq!(changed(format!("{base}pub const NEW: u8 = 1;\n")), ["NEW"]);
        let with_macro = format!("{base}#[macro_export]\nmacro_rules! greet {{ () => {{ \"hi\" }}; }}\n");
        assert_eq!(of(&with_macro).changed(&of(&with_macro.replace("\"hi\"", "\"hello\""))).into_iter().collect::<Vec<_>>(), ["greet"]);
    }

    #[test]
    fn a_file_naming_a_changed_const_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("main.rs");
        std::fs::write(&main, "fn main() { println!(\"{}\", domain::TITLE_LONG); }\n").unwrap();
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<BTreeSet<String>>();
        assert_eq!(first_use([&main], &names(&["TITLE"])), None, "a whole identifier only");
        assert_eq!(first_use([&main], &names(&["TITLE_LONG"])), Some((main.clone(), "TITLE_LONG".to_string())));
    }
}
