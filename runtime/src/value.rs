//! [`Hot<T>`]: a value that boundary code builds, built again by the new code after each
//! applied patch (node-hmr's persistent values, Medusa's module reloaders).

use std::fmt::Display;
use std::panic::Location;
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;

use crate::lifecycle::{self, Registration};

/// A value built by boundary code and rebuilt by the newest code after each applied patch:
/// a template set, a rules table, a tower service, an axum `Router` (see [`crate::axum`]).
///
/// `build` is a host closure that calls a `#[hot::export]` function; it runs once now, and
/// again after every patch. Readers call [`Hot::get`] and get the current value without
/// taking a lock. A rebuild that panics (or, with [`Hot::try_new`], returns an error) keeps
/// the previous value, and cargo hot shows why; the next patch tries again.
///
/// Not run by cargo hot, or in a release build: `build` runs once and nothing else happens.
///
/// ```
/// # mod handlers { pub fn rules() -> Vec<String> { vec!["allow all".into()] } }
/// let rules = hot::Hot::new(|| handlers::rules());
/// assert_eq!(rules.get()[0], "allow all");
/// ```
pub struct Hot<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    current: ArcSwap<T>,
    /// Unregisters the rebuild when the last handle goes.
    _registration: Option<Registration>,
}

impl<T> Clone for Hot<T> {
    fn clone(&self) -> Self {
        Hot { inner: self.inner.clone() }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Hot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Hot").field(&*self.inner.current.load()).finish()
    }
}

impl<T: Send + Sync + 'static> Hot<T> {
    /// Builds the value now, and again after every applied patch.
    #[track_caller]
    pub fn new(build: impl Fn() -> T + Send + Sync + 'static) -> Self {
        Self::create("value", Location::caller(), move || Ok::<T, std::convert::Infallible>(build())).unwrap_or_else(|never| match never {})
    }

    /// Like [`Hot::new`] for a build that can fail. The first build's error is returned; a
    /// later one keeps the previous value and is shown by cargo hot.
    #[track_caller]
    pub fn try_new<E: Display>(build: impl Fn() -> Result<T, E> + Send + Sync + 'static) -> Result<Self, E> {
        Self::create("value", Location::caller(), build)
    }

    pub(crate) fn create<E: Display>(
        kind: &'static str,
        location: &'static Location<'static>,
        build: impl Fn() -> Result<T, E> + Send + Sync + 'static,
    ) -> Result<Self, E> {
        let context = crate::context::Context::capture();
        let first = build()?;
        let inner = Arc::new_cyclic(|weak: &Weak<Inner<T>>| {
            let weak = weak.clone();
            let registration = lifecycle::register(kind, lifecycle::name_of(location), move || {
                let Some(inner) = weak.upgrade() else { return Ok(None) };
                let value = context.enter(&build).map_err(|err| err.to_string())?;
                inner.current.store(Arc::new(value));
                Ok(None)
            });
            Inner { current: ArcSwap::from_pointee(first), _registration: registration }
        });
        Ok(Hot { inner })
    }

    /// The current value: one atomic load and a reference count, no lock.
    pub fn get(&self) -> Arc<T> {
        self.inner.current.load_full()
    }
}
