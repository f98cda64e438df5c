//! A source-level check the binary cannot give: did any type definition of the boundary
//! change? The host may hold values of the boundary's types (in its state, in `Box<dyn
//! Trait>`s, in channels); new code reading old values with a new layout is undefined
//! behaviour. Size checks alone miss a reordered or retyped field of the same size, so any
//! change to a `struct`, `enum`, `union`, `trait`, `type` alias or item-level macro of the
//! boundary sends the edit to a restart, and so does a change to the `use` and `const`
//! items of a module that defines types (they decide what a field's type names mean and
//! how long an array is). A definition that disappears (or moves to another module) also
//! restarts: the same name may now mean another type. Only new definitions are harmless.
//!
//! Statics are different: a patch uses the running program's copies (see `patch::bind`), so
//! the *type* of each `static` and `thread_local!` is recorded (top level or inside function
//! bodies): a changed type restarts, a changed initializer does not (the value already in
//! the program is kept), a removed one is harmless. The names of the declared statics are
//! what binding trusts, and `hot::decline!()` marks a file whose edits always restart.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use quote::ToTokens;
use quote_free::tokens_without_docs;
use syn::visit::Visit;

/// Where a definition is: file, inline module path, kind, name and ordinal among items of
/// the same kind and name there (two `thread_local!` blocks in one module are two keys).
type Key = (PathBuf, String, &'static str, String, usize);

/// The type definitions of a crate: key → normalised tokens; the statics its source declares;
/// the files that `hot::decline!()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeDefinitions(BTreeMap<Key, String>, DeclaredStatics, BTreeSet<PathBuf>);

/// The statics a crate's source declares, with where: what binding a patch's statics to the
/// running program's copies trusts (see `patch::bind`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeclaredStatics {
    /// Names declared at module level (`static`, `thread_local!`, `lazy_static!`).
    pub in_modules: BTreeSet<String>,
    /// (function, name) of those declared inside function bodies.
    pub in_functions: BTreeSet<(String, String)>,
    /// Every function name of the crate, to tell `module::NAME` from `function::NAME` in a
    /// symbol's path.
    pub functions: BTreeSet<String>,
    /// (module, name) of those declared at module level, the module by its own name (a file's
    /// stem, the directory of a `mod.rs`, an inline `mod`; empty at the crate root): a module
    /// is often named like one of its functions (`routes/health_check.rs` and its
    /// `fn health_check`), and `health_check::HITS` is then the module's static.
    pub in_named_modules: BTreeSet<(String, String)>,
}

impl DeclaredStatics {
    /// Adds another crate's declarations (a patch that spans crates binds the statics of each).
    pub fn merge(&mut self, other: &DeclaredStatics) {
        self.in_modules.extend(other.in_modules.iter().cloned());
        self.in_functions.extend(other.in_functions.iter().cloned());
        self.functions.extend(other.functions.iter().cloned());
        self.in_named_modules.extend(other.in_named_modules.iter().cloned());
    }

    /// Whether the static whose demangled path is `path` (`web::SERVED`,
    /// `web::tick::CALLS`, `web::CALLS_HERE::{{constant}}::{{closure}}::VAL`) was declared by
    /// the source: the first segment naming a declared static, in the right place.
    pub fn declares(&self, path: &str) -> bool {
        let segments: Vec<&str> = path.split("::").skip(1).collect();
        for (index, segment) in segments.iter().enumerate() {
            let (in_module, in_function) = (self.in_modules.contains(*segment), self.in_functions.iter().any(|(_, n)| n == segment));
            if !in_module && !in_function {
                continue;
            }
            let enclosing = segments[..index].iter().rev().find(|s| !s.starts_with("{{")).copied();
            return match enclosing.filter(|e| self.functions.contains(*e)) {
                Some(function) => {
                    self.in_functions.contains(&(function.to_string(), segment.to_string()))
                        || self.in_named_modules.contains(&(function.to_string(), segment.to_string()))
                }
                None => in_module,
            };
        }
        false
    }
}

/// Kinds of keys whose definition may disappear without harm (nothing outside the boundary
/// holds a value whose layout they decide).
const REMOVABLE: &[&str] = &["static", "thread_local!", STATIC_IMPORTS];

/// The `use` and `const` items of a scope that declares statics: they decide what the names
/// in a static's type mean. Checked only under v0 symbol mangling, whose names do not carry
/// a hash of the static's type (the legacy mangling's do, so a re-pointed type changes the
/// static's name and binding refuses it).
const STATIC_IMPORTS: &str = "the `use` and `const` items beside statics";

/// The `use` and `const` items of a module that defines types: they decide what the names in
/// its types mean.
const MODULE_IMPORTS: &str = "the `use` and `const` items";

/// Every version of each definition loaded in the running program (the host build's, then
/// each applied patch's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadedDefinitions(BTreeMap<Key, Vec<String>>, bool);

/// The contents the definitions were read from, to tell whether rustc saw the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSnapshot(BTreeMap<PathBuf, u64>);

impl SourceSnapshot {
    /// Whether every file still has the contents it had when the snapshot was taken.
    pub fn unchanged(&self) -> bool {
        self.changed_files().is_empty()
    }
}

impl SourceSnapshot {
    /// The contents of `files` now.
    pub fn of_files(files: &[PathBuf]) -> Self {
        SourceSnapshot(files.iter().filter_map(|path| Some((path.clone(), content_digest(&std::fs::read(path).ok()?)))).collect())
    }

    /// One digest of every file's path and contents.
    pub fn whole_digest(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.0.hash(&mut hasher);
        hasher.finish()
    }

    /// The digest of `path`'s contents when the snapshot was taken, if it was in it.
    pub fn digest(&self, path: &Path) -> Option<u64> {
        self.0.get(path).copied()
    }

    /// The digest of `path`'s contents now (None if it cannot be read).
    pub fn digest_now(path: &Path) -> Option<u64> {
        std::fs::read(path).ok().map(|bytes| content_digest(&bytes))
    }

    /// The files whose contents differ from the snapshot (or are gone).
    pub fn changed_files(&self) -> Vec<PathBuf> {
        self.0.iter().filter(|(path, digest)| !std::fs::read(path).is_ok_and(|bytes| content_digest(&bytes) == **digest)).map(|(p, _)| p.clone()).collect()
    }

    /// Every `.rs` file under `dir` (a package directory), for comparing before and after a
    /// build whose list of files is not known yet.
    pub fn of_dir(dir: &Path, excluded: &crate::rules::Excluded) -> Self {
        Self::of_dir_keeping(dir, excluded, &mut |_, _| {})
    }

    /// [`SourceSnapshot::of_dir`], giving `keep` each file's contents as it is read.
    pub fn of_dir_keeping(dir: &Path, excluded: &crate::rules::Excluded, keep: &mut dyn FnMut(&Path, Vec<u8>)) -> Self {
        let mut snapshot = SourceSnapshot::default();
        let excluded = excluded.clone();
        let walker = ignore::WalkBuilder::new(dir).hidden(false).require_git(false).filter_entry(move |e| !excluded.contains(e.path())).build();
        for entry in walker.flatten() {
            let path = entry.into_path();
            if path.extension().is_some_and(|e| e == "rs") {
                if let Ok(bytes) = std::fs::read(&path) {
                    snapshot.0.insert(path.clone(), content_digest(&bytes));
                    keep(&path, bytes);
                }
            }
        }
        snapshot
    }

    /// [`SourceSnapshot::of_files`], giving `keep` each file's contents as it is read.
    pub fn of_files_keeping(files: &[PathBuf], keep: &mut dyn FnMut(&Path, Vec<u8>)) -> Self {
        let mut snapshot = SourceSnapshot::default();
        for path in files {
            if let Ok(bytes) = std::fs::read(path) {
                snapshot.0.insert(path.clone(), content_digest(&bytes));
                keep(path, bytes);
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

/// What the checks need from one reading of a crate's sources: its type definitions, the
/// surface of its functions, and the contents they were read from (each file read and parsed
/// once, so that all three describe the same contents).
pub struct CrateSource {
    pub definitions: TypeDefinitions,
    pub surface: super::surface::Surface,
    /// What of the source could change a layout (see `layout::skeleton`).
    pub skeleton: crate::layout::skeleton::Skeleton,
    /// What its users compile in (see `inlined`).
    pub inlined: crate::inlined::Inlined,
    pub snapshot: SourceSnapshot,
}

impl CrateSource {
    /// Reads every Rust file of the crate (as listed by its dep-info).
    pub fn read(files: &[PathBuf]) -> Result<Self> {
        let mut source = CrateSource {
            definitions: TypeDefinitions::default(),
            surface: Default::default(),
            skeleton: Default::default(),
            inlined: Default::default(),
            snapshot: SourceSnapshot::default(),
        };
        for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "rs")) {
            let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            source.snapshot.0.insert(file.clone(), content_digest(&bytes));
            let syntax = syn::parse_file(&String::from_utf8_lossy(&bytes)).with_context(|| format!("cannot parse {}", file.display()))?;
            source.definitions.add_syntax(&syntax, file);
            source.surface.add_syntax(&syntax, file);
            source.skeleton.add_syntax(&syntax, file);
            source.inlined.add_syntax(&syntax, file);
        }
        Ok(source)
    }
}

impl TypeDefinitions {
    #[cfg(test)]
    fn add_source(&mut self, text: &str, file: &Path) -> Result<()> {
        self.add_syntax(&syn::parse_file(text)?, file);
        Ok(())
    }

    fn add_syntax(&mut self, syntax: &syn::File, file: &Path) {
        if syntax.items.iter().any(is_decline) {
            self.2.insert(file.to_path_buf());
        }
        let mut collector = Collector { file: file.to_path_buf(), modules: vec![ModuleScope::default()], out: &mut self.0, declared: &mut self.1 };
        collector.visit_file(syntax);
        collector.close_module();
    }

    /// The statics the source declares (`static` items anywhere, `thread_local!` and
    /// `lazy_static!` entries): the ones a patch may bind to the running program's copies.
    pub fn declared_statics(&self) -> &DeclaredStatics {
        &self.1
    }

    /// The files that say `hot::decline!()`.
    pub fn declining_files(&self) -> &BTreeSet<PathBuf> {
        &self.2
    }
}

/// The module a file is, by its own name (`render` for `src/render.rs`, the directory of a
/// `mod.rs`); None for a crate root.
pub fn module_of_file(file: &Path) -> Option<String> {
    let stem = file.file_stem()?.to_string_lossy().into_owned();
    match stem.as_str() {
        "lib" | "main" => None,
        "mod" => Some(file.parent()?.file_name()?.to_string_lossy().into_owned()),
        _ => Some(stem),
    }
}

/// Whether the file at `path` says `hot::decline!()` at its top level (its edits restart).
pub fn declines(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else { return false };
    // Cheap first: most files do not mention it.
    text.contains("decline!") && syn::parse_file(&text).is_ok_and(|file| file.items.iter().any(is_decline))
}

fn is_decline(item: &syn::Item) -> bool {
    let syn::Item::Macro(item) = item else { return false };
    let segments: Vec<String> = item.mac.path.segments.iter().map(|s| s.ident.to_string()).collect();
    matches!(segments.iter().map(String::as_str).collect::<Vec<_>>().as_slice(), ["hot", "decline"] | ["decline"])
}

impl LoadedDefinitions {
    pub fn new(built: TypeDefinitions) -> Self {
        LoadedDefinitions(built.0.into_iter().map(|(key, tokens)| (key, vec![tokens])).collect(), false)
    }

    /// Also compare the imports of scopes that declare statics: for a boundary whose symbols
    /// use the v0 mangling (see `STATIC_IMPORTS`).
    pub fn with_static_imports(mut self, checked: bool) -> Self {
        self.1 = checked;
        self
    }

    /// The first loaded definition that `newer` changes or removes, described for the
    /// developer; None when `newer` only adds definitions.
    pub fn first_difference(&self, newer: &TypeDefinitions) -> Option<String> {
        self.difference(newer, false)
    }

    /// The first static or thread-local whose type `newer` changes (the patch would read the
    /// running program's copy with another type), described for the developer. Layouts of
    /// the types themselves are checked from the compiled code (see `layout`).
    pub fn first_static_difference(&self, newer: &TypeDefinitions) -> Option<String> {
        self.difference(newer, true)
    }

    fn difference(&self, newer: &TypeDefinitions, only_statics: bool) -> Option<String> {
        for (key, versions) in &self.0 {
            if key.2 == STATIC_IMPORTS && !self.1 {
                continue;
            }
            // A trait's vtable layout is not compared from the compiled code: its definition
            // changing still restarts.
            if only_statics && !REMOVABLE.contains(&key.2) && key.2 != STATIC_IMPORTS && key.2 != "trait" {
                continue;
            }
            match newer.0.get(key) {
                None if REMOVABLE.contains(&key.2) => {}
                None if key.2 == MODULE_IMPORTS => return Some(format!("{} changed", describe(key))),
                None => return Some(format!("{} was removed or moved", describe(key))),
                Some(tokens) if versions.iter().any(|v| v != tokens) => {
                    return Some(if key.2 == STATIC_IMPORTS {
                        format!("{} changed, which can change a static's type, so the value the program holds cannot be kept", describe(key))
                    } else if REMOVABLE.contains(&key.2) {
                        format!("the type of {} changed, so the value the program holds cannot be kept", describe(key))
                    } else {
                        format!("{} changed", describe(key))
                    })
                }
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
    match (name.is_empty(), module.is_empty()) {
        // Items grouped per scope have no name of their own: name the scope.
        (true, true) => format!("{kind} of {file}"),
        (true, false) => format!("{kind} of the module `{module}` ({file})"),
        (false, _) if *kind == STATIC_IMPORTS => {
            format!("{kind} in `{}{name}` ({file})", if module.is_empty() { String::new() } else { format!("{module}::") })
        }
        (false, true) => format!("{kind} `{name}` ({file})"),
        (false, false) => format!("{kind} `{module}::{name}` ({file})"),
    }
}

/// What a module holds that matters only if it defines types.
#[derive(Default)]
struct ModuleScope {
    /// Inline module path inside the file (`""` at the file's top level).
    path: String,
    defines_types: bool,
    declares_statics: bool,
    imports_and_consts: Vec<String>,
}

struct Collector<'a> {
    file: PathBuf,
    modules: Vec<ModuleScope>,
    out: &'a mut BTreeMap<Key, String>,
    declared: &'a mut DeclaredStatics,
}

impl Collector<'_> {
    fn scope(&mut self) -> &mut ModuleScope {
        self.modules.last_mut().expect("a module scope is open")
    }

    fn add(&mut self, kind: &'static str, name: &str, tokens: String) {
        if REMOVABLE.contains(&kind) {
            self.scope().declares_statics = true;
        } else {
            self.scope().defines_types = true;
        }
        let module = self.scope().path.clone();
        let mut key = (self.file.clone(), module, kind, name.to_string(), 0);
        while self.out.contains_key(&key) {
            key.4 += 1;
        }
        self.out.insert(key, tokens);
    }

    /// A static declared at module level: by name, and with the name of its module.
    fn declare_in_module(&mut self, name: String) {
        let path = self.scope().path.clone();
        let module = match path.rsplit("::").next().filter(|m| !m.is_empty()) {
            Some(inline) => inline.to_string(),
            None => module_of_file(&self.file).unwrap_or_default(),
        };
        self.declared.in_named_modules.insert((module, name.clone()));
        self.declared.in_modules.insert(name);
    }

    fn close_module(&mut self) {
        let scope = self.modules.pop().expect("a module scope is open");
        if scope.imports_and_consts.is_empty() {
            return;
        }
        if scope.defines_types {
            let key = (self.file.clone(), scope.path.clone(), MODULE_IMPORTS, String::new(), 0);
            self.out.insert(key, scope.imports_and_consts.join("\n"));
        }
        if scope.declares_statics {
            self.out.insert((self.file.clone(), scope.path, STATIC_IMPORTS, String::new(), 0), scope.imports_and_consts.join("\n"));
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
        let macro_name = item.mac.path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
        if macro_name == "thread_local" {
            if let Ok(locals) = item.mac.parse_body::<ThreadLocals>() {
                for (name, ty) in locals.0 {
                    self.declare_in_module(name.clone());
                    self.add("thread_local!", &name, ty);
                }
                return;
            }
        }
        if macro_name == "lazy_static" {
            lazy_static_names(&item.mac.tokens).into_iter().for_each(|name| self.declare_in_module(name));
        }
        if is_decline(&syn::Item::Macro(item.clone())) {
            return; // a marker, not a definition
        }
        let name = item.ident.as_ref().map(|i| i.to_string()).unwrap_or_else(|| format!("{macro_name}!"));
        self.add("macro", &name, tokens_without_docs(item));
    }
    fn visit_item_static(&mut self, item: &'ast syn::ItemStatic) {
        self.declare_in_module(item.ident.to_string());
        self.add("static", &item.ident.to_string(), static_type(item));
    }
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let tokens = tokens_without_docs(item);
        self.scope().imports_and_consts.push(tokens);
    }
    fn visit_item_const(&mut self, item: &'ast syn::ItemConst) {
        let tokens = tokens_without_docs(item);
        self.scope().imports_and_consts.push(tokens);
    }
    // Types inside function bodies cannot be named by the host: only their statics count.
    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        self.body_statics(&item.sig.ident.to_string(), |finder| finder.visit_block(&item.block));
    }
    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        self.body_statics(&item.sig.ident.to_string(), |finder| finder.visit_block(&item.block));
    }
}

impl Collector<'_> {
    /// Records the statics declared anywhere inside a function body, as `function::NAME`.
    fn body_statics(&mut self, function: &str, visit: impl FnOnce(&mut BodyStatics)) {
        let mut finder = BodyStatics::default();
        visit(&mut finder);
        self.declared.functions.insert(function.to_string());
        self.declared.functions.extend(finder.functions);
        if !finder.found.is_empty() && !finder.imports.is_empty() {
            let module = self.scope().path.clone();
            let key = (self.file.clone(), module, STATIC_IMPORTS, function.to_string(), 0);
            self.out.insert(key, finder.imports.join("\n"));
        }
        for (kind, name, ty) in finder.found {
            self.declared.in_functions.insert((function.to_string(), name.clone()));
            self.add(kind, &format!("{function}::{name}"), ty);
        }
        self.declared.in_functions.extend(finder.lazy.into_iter().map(|name| (function.to_string(), name)));
    }
}

/// The statics of a function body (nested blocks and closures included).
#[derive(Default)]
struct BodyStatics {
    /// (kind, name, type tokens).
    found: Vec<(&'static str, String, String)>,
    lazy: Vec<String>,
    /// Functions nested in the body.
    functions: Vec<String>,
    /// Its `use` and `const` items.
    imports: Vec<String>,
}

impl<'ast> Visit<'ast> for BodyStatics {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.imports.push(tokens_without_docs(item));
    }
    fn visit_item_const(&mut self, item: &'ast syn::ItemConst) {
        self.imports.push(tokens_without_docs(item));
    }
    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        self.functions.push(item.sig.ident.to_string());
        syn::visit::visit_item_fn(self, item);
    }
    fn visit_item_static(&mut self, item: &'ast syn::ItemStatic) {
        self.found.push(("static", item.ident.to_string(), static_type(item)));
    }
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        match mac.path.segments.last().map(|s| s.ident.to_string()).as_deref() {
            Some("thread_local") => {
                if let Ok(locals) = mac.parse_body::<ThreadLocals>() {
                    self.found.extend(locals.0.into_iter().map(|(name, ty)| ("thread_local!", name, ty)));
                }
            }
            Some("lazy_static") => self.lazy.extend(lazy_static_names(&mac.tokens)),
            _ => {}
        }
    }
}

/// What a static's value must keep: its mutability and its type (not its initializer).
fn static_type(item: &syn::ItemStatic) -> String {
    let mutable = matches!(item.mutability, syn::StaticMutability::Mut(_));
    format!("{}{}", if mutable { "mut " } else { "" }, item.ty.to_token_stream())
}

/// The entries of a `thread_local!` block: (name, type tokens).
struct ThreadLocals(Vec<(String, String)>);

impl syn::parse::Parse for ThreadLocals {
    fn parse(input: syn::parse::ParseStream<'_>) -> syn::Result<Self> {
        let mut locals = Vec::new();
        while !input.is_empty() {
            input.call(syn::Attribute::parse_outer)?;
            let _: syn::Visibility = input.parse()?;
            input.parse::<syn::Token![static]>()?;
            let name: syn::Ident = input.parse()?;
            input.parse::<syn::Token![:]>()?;
            let ty: syn::Type = input.parse()?;
            input.parse::<syn::Token![=]>()?;
            if input.peek(syn::Token![const]) && input.peek2(syn::token::Brace) {
                input.parse::<syn::Token![const]>()?;
                input.parse::<syn::Block>()?;
            } else {
                input.parse::<syn::Expr>()?;
            }
            locals.push((name.to_string(), ty.to_token_stream().to_string()));
            if input.is_empty() {
                break;
            }
            input.parse::<syn::Token![;]>()?;
        }
        Ok(ThreadLocals(locals))
    }
}

/// The `NAME`s of `static ref NAME: T = ...;` entries of a `lazy_static!` block.
fn lazy_static_names(tokens: &proc_macro2::TokenStream) -> Vec<String> {
    let trees: Vec<proc_macro2::TokenTree> = tokens.clone().into_iter().collect();
    trees
        .windows(3)
        .filter_map(|w| match w {
            [proc_macro2::TokenTree::Ident(a), proc_macro2::TokenTree::Ident(b), proc_macro2::TokenTree::Ident(name)] if a == "static" && b == "ref" => {
                Some(name.to_string())
            }
            _ => None,
        })
        .collect()
}

/// Token text of an item without its doc comments (editing docs changes no layout).
pub(crate) mod quote_free {
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
    fn statics_count_by_type_not_by_initializer_and_may_go() {
        let base = "static CACHE: OnceLock<String> = OnceLock::new();\nfn f() { static CALLS: AtomicU64 = AtomicU64::new(0); }";
        let old = loaded(base);
        assert_eq!(old.first_difference(&defs(&base.replace("AtomicU64::new(0)", "AtomicU64::new(7)"))), None, "initializer");
        assert_eq!(old.first_difference(&defs("fn f() {}")), None, "removed statics are harmless");
        let retyped = old.first_difference(&defs(&base.replace("OnceLock<String>", "OnceLock<u64>"))).unwrap();
        assert_eq!(retyped, "the type of static `CACHE` (lib.rs) changed, so the value the program holds cannot be kept");
        let in_body = old.first_difference(&defs(&base.replace("CALLS: AtomicU64", "CALLS: AtomicU32"))).unwrap();
        assert!(in_body.contains("static `f::CALLS`"), "{in_body}");
        let made_mut = old.first_difference(&defs(&base.replace("static CACHE", "static mut CACHE"))).unwrap();
        assert!(made_mut.contains("`CACHE`"), "{made_mut}");
        // Statics alone do not make a module's imports count.
        assert_eq!(loaded("use a::B; static X: u8 = 0;").first_difference(&defs("use a::C; static X: u8 = 0;")), None);
    }

    #[test]
    fn imports_of_scopes_with_statics_count_only_under_v0_mangling() {
        let base =
            "use crate::a::Entry;\nstatic C: Mutex<Vec<Entry>> = Mutex::new(Vec::new());\nfn f() { use crate::a::Item; static D: Vec<Item> = Vec::new(); }";
        let repointed = defs(&base.replace("use crate::a::Entry", "use crate::b::Entry"));
        assert_eq!(loaded(base).first_difference(&repointed), None, "legacy mangling: the static's name changes instead");
        let strict = loaded(base).with_static_imports(true);
        assert!(strict
            .first_difference(&repointed)
            .unwrap()
            .contains("`use` and `const` items beside statics of lib.rs changed, which can change a static's type"));
        let in_body = defs(&base.replace("use crate::a::Item", "use crate::b::Item"));
        assert!(strict.first_difference(&in_body).is_some());
        assert_eq!(strict.first_difference(&defs(base)), None);
    }

    #[test]
    fn thread_locals_are_read_entry_by_entry() {
        let base = "thread_local! { static A: Cell<u32> = const { Cell::new(0) }; pub static B: RefCell<Vec<u8>> = RefCell::new(vec![1]); }";
        let old = loaded(base);
        assert_eq!(old.first_difference(&defs(&base.replace("vec![1]", "vec![2]"))), None, "initializer");
        let retyped = old.first_difference(&defs(&base.replace("Cell<u32>", "Cell<u64>"))).unwrap();
        assert!(retyped.contains("thread_local! `A`"), "{retyped}");
        let definitions = defs(base);
        assert_eq!(definitions.declared_statics().in_modules.iter().collect::<Vec<_>>(), ["A", "B"]);
    }

    #[test]
    fn declared_statics_come_from_items_bodies_and_macros() {
        let d = defs(
            "static TOP: u8 = 0;\nimpl S { fn m() { static IN_METHOD: u8 = 0; } }\n\
             fn f() { thread_local! { static IN_FN: u8 = 0; } let g = || { static IN_CLOSURE: u8 = 0; }; }\n\
             lazy_static! { static ref LAZY: String = String::new(); }",
        )
        .declared_statics()
        .clone();
        assert_eq!(d.in_modules.iter().collect::<Vec<_>>(), ["LAZY", "TOP"]);
        let in_functions: Vec<(&str, &str)> = d.in_functions.iter().map(|(f, n)| (f.as_str(), n.as_str())).collect();
        assert_eq!(in_functions, [("f", "IN_CLOSURE"), ("f", "IN_FN"), ("m", "IN_METHOD")]);
        // Symbol paths, as the binary has them.
        assert!(d.declares("app::TOP") && d.declares("app::api::TOP"));
        assert!(d.declares("app::f::IN_FN::{{constant}}::{{closure}}::__RUST_STD_INTERNAL_VAL"));
        assert!(d.declares("app::f::{{closure}}::IN_CLOSURE"));
        assert!(d.declares("app::S::m::IN_METHOD"));
        assert!(d.declares("app::LAZY::__stability::LAZY"));
        assert!(!d.declares("app::f::__CALLSITE"), "a macro's static");
        assert!(!d.declares("app::f::TOP"), "a static named like a module-level one, inside a function");
        assert!(!d.declares("app::g::IN_FN"), "declared in another function");
    }

    #[test]
    fn with_compiled_layouts_statics_and_traits_are_still_checked_from_the_source() {
        let old = loaded("pub trait Store { fn get(&self) -> u32; }\npub struct Dto { a: u8 }");
        let method_added = defs("pub trait Store { fn put(&self); fn get(&self) -> u32; }\npub struct Dto { a: u8 }");
        assert!(old.first_static_difference(&method_added).is_some_and(|w| w.contains("trait")), "a vtable's slots moved");
        let field_added = defs("pub trait Store { fn get(&self) -> u32; }\npub struct Dto { a: u8, b: u8 }");
        assert_eq!(old.first_static_difference(&field_added), None, "a struct's layout is the compiled code's to judge");
    }

    #[test]
    fn a_module_named_like_its_function_keeps_its_statics() {
        // zero-to-production's routes/health_check.rs: `static HITS` beside `fn health_check`.
        let mut definitions = TypeDefinitions::default();
        let source = "static HITS: AtomicU64 = AtomicU64::new(0);\nfn bump() {}\npub async fn health_check() { static LOCAL: u8 = 0; }";
        definitions.add_source(source, Path::new("/crate/src/routes/health_check.rs")).unwrap();
        let d = definitions.declared_statics();
        assert!(d.declares("zero2prod::routes::health_check::HITS"), "{d:?}");
        assert!(d.declares("zero2prod::routes::health_check::health_check::{{closure}}::LOCAL"));
        assert!(!d.declares("zero2prod::routes::health_check::bump::HITS"), "no `HITS` inside `bump`, which is no module");
    }

    #[test]
    fn decline_marks_the_file_and_defines_nothing() {
        let d = defs("hot::decline!();\nfn f() {}");
        assert_eq!(d.declining_files().iter().collect::<Vec<_>>(), [Path::new("/crate/src/lib.rs")]);
        assert_eq!(loaded("fn f() {}").first_difference(&d), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db.rs");
        std::fs::write(&file, "// not hot::decline!() in a comment\nfn f() {}").unwrap();
        assert!(!declines(&file));
        std::fs::write(&file, "use x::y;\nhot::decline!();\n").unwrap();
        assert!(declines(&file));
    }

    #[test]
    fn snapshots_see_content_changes_whatever_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lib.rs");
        std::fs::write(&file, "struct A;").unwrap();
        let snapshot = CrateSource::read(std::slice::from_ref(&file)).unwrap().snapshot;
        assert!(snapshot.unchanged());
        std::fs::write(&file, "struct B;").unwrap();
        assert!(!snapshot.unchanged());
    }
}
