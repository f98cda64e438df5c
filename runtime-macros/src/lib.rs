//! `#[hot::export]`: turns a boundary function into an entry point that `cargo hot`
//! can repoint at new code in a running process.
//!
//! For `pub async fn index(state: Arc<AppState>) -> String { .. }` the attribute emits,
//! in builds with `debug_assertions`:
//!
//! - the public function itself, with the same signature, whose body is one atomic load
//!   of a *slot* and a call: the original code when the slot is empty, the newest patch's
//!   code once cargo hot has loaded one;
//! - an *entry* function holding the original body, exported under an unmangled name that
//!   carries the module path, the function name and a hash of the signature
//!   (`__hot_entry_handlers::index::h1a2b..`), so a changed signature is a changed symbol
//!   and the ABI gate in cargo hot refuses to patch it;
//! - the slot, exported as `__hot_slot_<same key>`, which the runtime's loader fills;
//! - a layout record, `__hot_layout_<same key>`: size and alignment of every argument and of
//!   the return value, which the ABI gate compares between the running host and a patch.
//!
//! Async functions return a boxed future from the entry (its concrete type changes with
//! every edit of the body, so it cannot cross the boundary unboxed).
//!
//! Without `debug_assertions` (release builds) the attribute emits the function unchanged.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, Item, ItemFn, Lifetime, ReturnType, Type};

/// Marks a function of the hot boundary crate as an entry point that `cargo hot` can patch.
///
/// Options: `#[hot::export(local)]` for an `async fn` whose future is not `Send` (it holds an
/// `Rc`, a `RefCell` borrow, an actix `Session` or `HttpRequest` across an `.await`). Without
/// it, such a function fails to compile with "future cannot be sent between threads safely",
/// "required by a bound in `future_is_send_or_use_hot_export_local`".
#[proc_macro_attribute]
pub fn export(attr: TokenStream, item: TokenStream) -> TokenStream {
    let options = match parse_options(attr.into()) {
        Ok(options) => options,
        Err(err) => return err.to_compile_error().into(),
    };
    let item = match syn::parse::<Item>(item) {
        Ok(Item::Fn(func)) => func,
        Ok(other) => {
            return syn::Error::new(
                other.span(),
                "#[hot::export] goes on a free function (`fn` or `async fn`) of the boundary crate; \
                 put the code you want to patch in such a function and call it from here",
            )
            .to_compile_error()
            .into()
        }
        Err(err) => return err.to_compile_error().into(),
    };
    match expand(&options, item) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

#[derive(Default)]
struct Options {
    /// The future of an async export need not be `Send`.
    local: bool,
}

fn parse_options(attr: TokenStream2) -> syn::Result<Options> {
    let mut options = Options::default();
    if attr.is_empty() {
        return Ok(options);
    }
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("local") {
            options.local = true;
            Ok(())
        } else {
            Err(meta.error("unknown option of #[hot::export]; the only option is `local` (for an async fn whose future is not Send)"))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(options)
}

/// Rejects the shapes that cannot cross a patch boundary, each with the reason and a way out.
fn check_supported(func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "#[hot::export] cannot patch a generic function: its code is instantiated inside each caller's crate, \
             outside the boundary. Export a non-generic function with concrete types. Lifetimes must be elided \
             (`&str`, `&mut Transaction<'_, Postgres>`), not named",
        ));
    }
    if let Some(receiver) = sig.receiver() {
        return Err(syn::Error::new(
            receiver.span(),
            "#[hot::export] cannot patch a method that takes `self`: export a free function that takes the value as an ordinary argument",
        ));
    }
    if mentions_self(func) {
        return Err(syn::Error::new(
            sig.ident.span(),
            "#[hot::export] goes on free functions, not on associated functions (this one uses `Self`): \
             export a free function and call it from the impl block",
        ));
    }
    if let Some(constness) = &sig.constness {
        return Err(syn::Error::new(
            constness.span(),
            "#[hot::export] cannot patch a `const fn`: its calls are evaluated at compile time",
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        return Err(syn::Error::new(
            unsafety.span(),
            "#[hot::export] does not support `unsafe fn`: export a safe function and keep the unsafe block inside it",
        ));
    }
    if let Some(abi) = &sig.abi {
        return Err(syn::Error::new(
            abi.span(),
            "#[hot::export] does not support an explicit ABI: export a plain Rust function",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new(variadic.span(), "#[hot::export] does not support variadic functions"));
    }
    for input in &sig.inputs {
        if let FnArg::Typed(arg) = input {
            if contains_impl_trait(&arg.ty) {
                return Err(syn::Error::new(
                    arg.ty.span(),
                    "#[hot::export] cannot patch a function with an `impl Trait` argument (it is generic): take a concrete type or a `Box<dyn Trait>`",
                ));
            }
        }
    }
    if sig.asyncness.is_none() {
        if let ReturnType::Type(_, ty) = &sig.output {
            if contains_impl_trait(ty) {
                return Err(syn::Error::new(
                    ty.span(),
                    "#[hot::export] cannot patch a function returning `impl Trait`: its hidden type changes with the body. Return a concrete type or a `Box<dyn Trait>`",
                ));
            }
        }
    }
    Ok(())
}

/// Whether `Self` appears outside nested `impl` and `trait` items: the function is then an
/// associated function, which the generated nested items could not name.
fn mentions_self(func: &ItemFn) -> bool {
    /// Searches tokens for `Self`, skipping the braces of an `impl` or `trait` item inside them.
    fn search(tokens: TokenStream2) -> bool {
        let mut skip_next_brace = false;
        for tree in tokens {
            match tree {
                proc_macro2::TokenTree::Ident(ident) if ident == "Self" => return true,
                proc_macro2::TokenTree::Ident(ident) if ident == "impl" || ident == "trait" => skip_next_brace = true,
                proc_macro2::TokenTree::Group(group) if group.delimiter() == proc_macro2::Delimiter::Brace && skip_next_brace => {
                    skip_next_brace = false; // a nested item: its `Self` is its own
                }
                proc_macro2::TokenTree::Group(group) if search(group.stream()) => return true,
                proc_macro2::TokenTree::Punct(punct) if punct.as_char() == ';' => skip_next_brace = false,
                _ => {}
            }
        }
        false
    }
    fn plain(tokens: TokenStream2) -> bool {
        tokens.into_iter().any(|tree| match tree {
            proc_macro2::TokenTree::Ident(ident) => ident == "Self",
            proc_macro2::TokenTree::Group(group) => plain(group.stream()),
            _ => false,
        })
    }
    // The signature has no nested items (`-> impl Display` is a type), the body may.
    let sig = &func.sig;
    plain(sig.inputs.to_token_stream())
        || plain(sig.output.to_token_stream())
        || func.block.stmts.iter().any(|stmt| match stmt {
            syn::Stmt::Item(Item::Impl(_) | Item::Trait(_)) => false,
            other => search(other.to_token_stream()),
        })
}

/// Whether `impl Trait` appears anywhere in `ty`.
fn contains_impl_trait(ty: &Type) -> bool {
    let mut found = false;
    types::walk(ty, &mut |ty| found |= matches!(ty, Type::ImplTrait(_)));
    found
}

/// Names the elided lifetimes of argument types so that a boxed future can say how long it
/// borrows its arguments: outside any reference they become `'__hot`, the future's bound;
/// inside a referent each gets its own name (`&mut Transaction<'_, Postgres>` becomes
/// `&'__hot mut Transaction<'__hot1, Postgres>`: `&mut` is invariant, so one shared name
/// would not type-check), and the reference's well-formedness implies it outlives `'__hot`.
struct NameElidedLifetimes {
    lifetime: Lifetime,
    found: bool,
    /// How many references we are inside.
    depth: usize,
    fresh: Vec<Lifetime>,
}

impl NameElidedLifetimes {
    fn new() -> Self {
        NameElidedLifetimes { lifetime: Lifetime::new("'__hot", Span::call_site()), found: false, depth: 0, fresh: Vec::new() }
    }

    fn name(&mut self) -> Lifetime {
        self.found = true;
        if self.depth == 0 {
            return self.lifetime.clone();
        }
        let fresh = Lifetime::new(&format!("'__hot{}", self.fresh.len() + 1), Span::call_site());
        self.fresh.push(fresh.clone());
        fresh
    }

    /// `'__hot` and the fresh names, for generics and `for<>` binders.
    fn all(&self) -> Vec<Lifetime> {
        std::iter::once(self.lifetime.clone()).chain(self.fresh.iter().cloned()).collect()
    }
}

impl NameElidedLifetimes {
    /// Names every elided lifetime of `ty` (a reference without one, `'_`), leaving nested
    /// fn-pointer types alone (they have their own binder).
    fn name_in(&mut self, ty: &mut Type) {
        match ty {
            Type::Reference(reference) => {
                if reference.lifetime.is_none() {
                    reference.lifetime = Some(self.name());
                }
                self.lifetime_in(reference.lifetime.as_mut());
                self.depth += 1;
                self.name_in(&mut reference.elem);
                self.depth -= 1;
            }
            Type::BareFn(_) => {}
            Type::Path(path) => {
                if let Some(qself) = &mut path.qself {
                    self.name_in(&mut qself.ty);
                }
                self.path_in(&mut path.path);
            }
            Type::TraitObject(object) => self.bounds_in(object.bounds.iter_mut()),
            Type::ImplTrait(object) => self.bounds_in(object.bounds.iter_mut()),
            Type::Tuple(tuple) => tuple.elems.iter_mut().for_each(|ty| self.name_in(ty)),
            Type::Array(array) => self.name_in(&mut array.elem),
            Type::Slice(slice) => self.name_in(&mut slice.elem),
            Type::Ptr(pointer) => self.name_in(&mut pointer.elem),
            Type::Paren(paren) => self.name_in(&mut paren.elem),
            Type::Group(group) => self.name_in(&mut group.elem),
            _ => {}
        }
    }

    fn lifetime_in(&mut self, lifetime: Option<&mut Lifetime>) {
        if let Some(lifetime) = lifetime.filter(|l| l.ident == "_") {
            *lifetime = self.name();
        }
    }

    fn path_in(&mut self, path: &mut syn::Path) {
        for segment in path.segments.iter_mut() {
            match &mut segment.arguments {
                syn::PathArguments::AngleBracketed(arguments) => {
                    for argument in arguments.args.iter_mut() {
                        match argument {
                            syn::GenericArgument::Lifetime(lifetime) => self.lifetime_in(Some(lifetime)),
                            syn::GenericArgument::Type(ty) => self.name_in(ty),
                            syn::GenericArgument::AssocType(assoc) => self.name_in(&mut assoc.ty),
                            syn::GenericArgument::Constraint(constraint) => self.bounds_in(constraint.bounds.iter_mut()),
                            _ => {}
                        }
                    }
                }
                // `Fn(&str) -> &str`: its elided lifetimes belong to the sugar's own
                // `for<'a>` binder, like a fn pointer's; naming them would change the type.
                syn::PathArguments::Parenthesized(_) | syn::PathArguments::None => {}
            }
        }
    }

    fn bounds_in<'a>(&mut self, bounds: impl Iterator<Item = &'a mut syn::TypeParamBound>) {
        for bound in bounds {
            match bound {
                syn::TypeParamBound::Trait(trait_bound) => self.path_in(&mut trait_bound.path),
                syn::TypeParamBound::Lifetime(lifetime) => self.lifetime_in(Some(lifetime)),
                _ => {}
            }
        }
    }
}

/// Walking types without syn's `visit` feature: an app's other proc macros rarely enable it,
/// and turning it on for them would rebuild syn and every crate derived with it.
mod types {
    use syn::{GenericArgument, PathArguments, ReturnType, Type, TypeParamBound};

    /// Calls `f` on `ty` and on every type nested in it.
    pub fn walk(ty: &Type, f: &mut impl FnMut(&Type)) {
        f(ty);
        match ty {
            Type::Reference(reference) => walk(&reference.elem, f),
            Type::Path(path) => {
                if let Some(qself) = &path.qself {
                    walk(&qself.ty, f);
                }
                walk_path(&path.path, f);
            }
            Type::TraitObject(object) => walk_bounds(object.bounds.iter(), f),
            Type::ImplTrait(object) => walk_bounds(object.bounds.iter(), f),
            Type::Tuple(tuple) => tuple.elems.iter().for_each(|ty| walk(ty, f)),
            Type::Array(array) => walk(&array.elem, f),
            Type::Slice(slice) => walk(&slice.elem, f),
            Type::Ptr(pointer) => walk(&pointer.elem, f),
            Type::Paren(paren) => walk(&paren.elem, f),
            Type::Group(group) => walk(&group.elem, f),
            Type::BareFn(function) => {
                function.inputs.iter().for_each(|input| walk(&input.ty, f));
                if let ReturnType::Type(_, ty) = &function.output {
                    walk(ty, f);
                }
            }
            _ => {}
        }
    }

    fn walk_path(path: &syn::Path, f: &mut impl FnMut(&Type)) {
        for segment in &path.segments {
            match &segment.arguments {
                PathArguments::AngleBracketed(arguments) => {
                    for argument in &arguments.args {
                        match argument {
                            GenericArgument::Type(ty) => walk(ty, f),
                            GenericArgument::AssocType(assoc) => walk(&assoc.ty, f),
                            GenericArgument::Constraint(constraint) => walk_bounds(constraint.bounds.iter(), f),
                            _ => {}
                        }
                    }
                }
                PathArguments::Parenthesized(arguments) => {
                    arguments.inputs.iter().for_each(|ty| walk(ty, f));
                    if let ReturnType::Type(_, ty) = &arguments.output {
                        walk(ty, f);
                    }
                }
                PathArguments::None => {}
            }
        }
    }

    fn walk_bounds<'a>(bounds: impl Iterator<Item = &'a TypeParamBound>, f: &mut impl FnMut(&Type)) {
        for bound in bounds {
            if let TypeParamBound::Trait(trait_bound) = bound {
                walk_path(&trait_bound.path, f);
            }
        }
    }
}

/// A stable 64-bit FNV-1a hash: the same signature text gives the same symbol on every build.
fn fnv1a(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn expand(options: &Options, func: ItemFn) -> syn::Result<TokenStream2> {
    check_supported(&func)?;
    let ItemFn { attrs, vis, sig, block } = &func;
    let name = &sig.ident;
    let is_async = sig.asyncness.is_some();

    let mut arg_types: Vec<Type> = Vec::new();
    let mut arg_patterns = Vec::new();
    // The wrapper keeps plain parameter names (attributes such as
    // `#[tracing::instrument(skip(state))]` name them); other patterns get a generated name.
    let mut arg_names = Vec::new();
    for (index, input) in sig.inputs.iter().enumerate() {
        let FnArg::Typed(arg) = input else { unreachable!("receivers are rejected above") };
        arg_types.push((*arg.ty).clone());
        arg_patterns.push((*arg.pat).clone());
        arg_names.push(match &*arg.pat {
            syn::Pat::Ident(ident) if ident.by_ref.is_none() && ident.subpat.is_none() => ident.ident.clone(),
            _ => format_ident!("__hot_arg{}", index),
        });
    }
    let entry_arg_names: Vec<syn::Ident> = (0..arg_types.len()).map(|i| format_ident!("__hot_arg{}", i)).collect();
    let output_type: Type = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };

    // The signature hash covers everything a caller's code depends on.
    let signature_text = format!(
        "async={} local={} args=[{}] ret={}",
        is_async,
        options.local,
        arg_types.iter().map(|t| t.to_token_stream().to_string()).collect::<Vec<_>>().join(", "),
        output_type.to_token_stream()
    );
    let key_suffix = format!("::{}::h{:016x}", name, fnv1a(&signature_text));
    let entry_name = quote!(concat!("__hot_entry_", module_path!(), #key_suffix));
    let slot_name = quote!(concat!("__hot_slot_", module_path!(), #key_suffix));
    let layout_name = quote!(concat!("__hot_layout_", module_path!(), #key_suffix));

    // The entry keeps the user's own parameter patterns (`State(s): State<App>`).
    let entry_inputs: Vec<&FnArg> = sig.inputs.iter().collect();
    let (entry_generics, entry_inputs_tokens, entry_output, fn_ptr_type, entry_body) = if is_async {
        let mut namer = NameElidedLifetimes::new();
        let mut rewritten_types = arg_types.clone();
        for ty in &mut rewritten_types {
            namer.name_in(ty);
        }
        // Elided lifetimes of the result borrow from the arguments: `'__hot` covers them all.
        let mut output = output_type.clone();
        let mut output_namer = NameElidedLifetimes::new();
        output_namer.name_in(&mut output);
        let borrows = namer.found || output_namer.found;
        let send = if options.local { quote!() } else { quote!(+ ::core::marker::Send) };
        let bound = if borrows { quote!(+ '__hot) } else { quote!(+ 'static) };
        let future = quote!(::core::pin::Pin<::std::boxed::Box<dyn ::core::future::Future<Output = #output> #send #bound>>);
        let lifetimes = namer.all();
        let generics = if borrows { quote!(<#(#lifetimes),*>) } else { quote!() };
        let binder = if borrows { quote!(for<#(#lifetimes),*>) } else { quote!() };
        let fn_ptr = quote!(#binder fn(#(#rewritten_types),*) -> #future);
        // Like an `async fn`, the future owns every argument until it completes, even those
        // bound to `_` (a semaphore permit, a guard), and then binds the user's patterns.
        let running = quote!(async move {
            #(let #entry_arg_names = #entry_arg_names;)*
            #(let #arg_patterns = #entry_arg_names;)*
            let __hot_output: #output = #block;
            #[allow(unreachable_code)]
            __hot_output
        });
        // A future that is not `Send` fails here first, in a call whose name says the fix,
        // pointed at the `async` of the user's function.
        let running = if options.local {
            running
        } else {
            let span = sig.asyncness.map(|a| a.span).unwrap_or_else(Span::call_site);
            quote::quote_spanned!(span=> ::hot::__private::future_is_send_or_use_hot_export_local(#running))
        };
        let body = quote!({ ::std::boxed::Box::pin(#running) });
        let inputs = entry_arg_names.iter().zip(&rewritten_types).map(|(n, t)| quote!(#n: #t));
        (generics, quote!(#(#inputs),*), future, fn_ptr, body)
    } else {
        let fn_ptr = quote!(fn(#(#arg_types),*) -> #output_type);
        (quote!(), quote!(#(#entry_inputs),*), output_type.to_token_stream(), fn_ptr, quote!(#block))
    };

    let layout_len = 2 * (arg_types.len() + 1);
    let layout_items = arg_types.iter().chain(std::iter::once(&output_type)).map(|ty| {
        quote!(::core::mem::size_of::<#ty>(), ::core::mem::align_of::<#ty>())
    });
    let call = if is_async {
        quote!(__hot_fn(#(#arg_names),*).await)
    } else {
        quote!(__hot_fn(#(#arg_names),*))
    };
    let wrapper_inputs = arg_names.iter().zip(&arg_types).map(|(n, t)| quote!(#n: #t));
    // Lint levels the user set apply to the body, which lives in the entry.
    let lint_attrs = attrs.iter().filter(|a| {
        ["allow", "warn", "deny", "forbid", "expect"].iter().any(|lint| a.path().is_ident(lint))
    });
    let asyncness = &sig.asyncness;
    let output = &sig.output;

    Ok(quote! {
        #[cfg(not(debug_assertions))]
        #func

        #[cfg(debug_assertions)]
        #(#attrs)*
        #vis #asyncness fn #name(#(#wrapper_inputs),*) #output {
            #[unsafe(export_name = #entry_name)]
            #[inline(never)]
            #[allow(clippy::needless_lifetimes, clippy::unused_async)]
            #(#lint_attrs)*
            fn __hot_entry #entry_generics (#entry_inputs_tokens) -> #entry_output #entry_body

            #[unsafe(export_name = #slot_name)]
            static __HOT_SLOT: ::hot::__private::Slot<#fn_ptr_type> = ::hot::__private::Slot::new();

            #[unsafe(export_name = #layout_name)]
            #[used]
            static __HOT_LAYOUT: [usize; #layout_len] = [#(#layout_items),*];

            let __hot_fn: #fn_ptr_type = __HOT_SLOT.get().unwrap_or(__hot_entry);
            #call
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(attr: &str, item: &str) -> Result<String, String> {
        let options = parse_options(attr.parse().unwrap()).map_err(|e| e.to_string())?;
        let func: ItemFn = syn::parse_str(item).map_err(|e| e.to_string())?;
        expand(&options, func).map(|t| t.to_string()).map_err(|e| e.to_string())
    }

    #[test]
    fn signature_change_changes_symbol_key() {
        let a = expand_str("", "pub fn f(x: u32) -> u32 { x }").unwrap();
        let b = expand_str("", "pub fn f(x: u64) -> u32 { 1 }").unwrap();
        let body_only = expand_str("", "pub fn f(x: u32) -> u32 { x + 1 }").unwrap();
        let key = |s: &str| s.split("\"::f::h").nth(1).unwrap()[..16].to_string();
        assert_ne!(key(&a), key(&b));
        assert_eq!(key(&a), key(&body_only), "a body edit must keep the entry symbol");
    }

    #[test]
    fn rejects_unsupported_shapes_with_reasons() {
        let generic = expand_str("", "fn f<T>(x: T) {}").unwrap_err();
        assert!(generic.contains("generic"), "{generic}");
        let impl_arg = expand_str("", "fn f(x: impl Fn()) {}").unwrap_err();
        assert!(impl_arg.contains("impl Trait"), "{impl_arg}");
        let impl_ret = expand_str("", "fn f() -> impl Fn() { || () }").unwrap_err();
        assert!(impl_ret.contains("impl Trait"), "{impl_ret}");
        let konst = expand_str("", "const fn f() {}").unwrap_err();
        assert!(konst.contains("const fn"), "{konst}");
        let associated = expand_str("", "pub fn new() -> Self { Self }").unwrap_err();
        let behind_impl_return = expand_str("", "pub async fn f() -> impl Display { Self::x() }").unwrap_err();
        assert!(behind_impl_return.contains("free functions"), "{behind_impl_return}");
        assert!(associated.contains("free functions"), "{associated}");
        let option = expand_str("fast", "fn f() {}").unwrap_err();
        assert!(option.contains("unknown option"), "{option}");
    }

    #[test]
    fn self_in_a_nested_impl_is_fine_and_elided_lifetimes_are_named_everywhere() {
        let nested = "fn f() -> u8 { struct S; impl S { fn new() -> Self { S } } S::new(); 1 }";
        assert!(expand_str("", nested).is_ok(), "a nested impl's Self is its own");
        let out = expand_str("", "pub async fn f(tx: &mut Tx<'_, Pg>, cb: Box<dyn Fn(&str) + '_>) -> u8 { 1 }").unwrap();
        let entry = out.split("fn __hot_entry").nth(1).and_then(|rest| rest.split(") ->").next()).unwrap();
        assert_eq!(entry, " < '__hot , '__hot1 > (__hot_arg0 : & '__hot mut Tx < '__hot1 , Pg > , __hot_arg1 : Box < dyn Fn (& str) + '__hot >");
        let impl_in_generic = expand_str("", "fn f(x: Vec<impl Fn()>) {}").unwrap_err();
        assert!(impl_in_generic.contains("impl Trait"), "{impl_in_generic}");
    }

    #[test]
    fn async_with_references_names_one_lifetime() {
        let out = expand_str("", "pub async fn f(a: &str, b: &[u8]) -> usize { a.len() + b.len() }").unwrap();
        assert!(out.contains("for < '__hot >"), "{out}");
        assert!(out.contains("+ '__hot"), "{out}");
        let owned = expand_str("", "pub async fn f(a: String) -> usize { a.len() }").unwrap();
        assert!(owned.contains("+ 'static"), "{owned}");
        assert!(owned.contains(":: core :: marker :: Send"), "{owned}");
        let local = expand_str("local", "pub async fn f(a: String) -> usize { a.len() }").unwrap();
        assert!(!local.contains(":: core :: marker :: Send"), "{local}");
    }
}
