//! What a patch rebuilds. After the agent has switched the exports to the new code, it runs
//! every registered rebuild in the order the app created them: [`crate::Hot`] values and
//! routers are built again by the new code, [`crate::scope`]s stop their old jobs and start
//! new ones, and [`on_reload`] hooks run last. A rebuild that panics or fails leaves its
//! previous version in place and is reported to cargo hot; every later patch tries again.
//!
//! Nothing is registered unless the program runs under `cargo hot`: outside it, each build
//! runs once and this module holds nothing.

use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::protocol::Rebuilt;

/// What a rebuild reports: `Ok(None)` rebuilt, `Ok(Some(warning))` rebuilt with something to
/// say, `Err(message)` not rebuilt (the previous version stays).
pub(crate) type Outcome = Result<Option<String>, String>;

type Rebuild = Arc<dyn Fn() -> Outcome + Send + Sync>;

struct Entry {
    id: u64,
    kind: &'static str,
    name: String,
    rebuild: Rebuild,
}

static ENTRIES: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static VERSION: AtomicU64 = AtomicU64::new(0);

/// Removes its rebuild from the registry when dropped (the value it rebuilds is gone).
pub(crate) struct Registration {
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let removed = {
            let mut entries = ENTRIES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            entries.iter().position(|entry| entry.id == self.id).map(|index| entries.remove(index))
        };
        // Dropped after the lock is released: the rebuild closure may own other registered
        // values (a `Hot` built from another), whose own drop takes the lock again.
        drop(removed);
    }
}

/// Whether patches can arrive in this process, so that rebuilds are worth registering.
pub(crate) fn patches_possible() -> bool {
    cfg!(all(unix, debug_assertions)) && crate::is_hot()
}

/// Registers `rebuild`, run after every applied patch. None (and nothing registered) when
/// the program does not run under cargo hot.
pub(crate) fn register(kind: &'static str, name: String, rebuild: impl Fn() -> Outcome + Send + Sync + 'static) -> Option<Registration> {
    if !patches_possible() {
        return None;
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut entries = ENTRIES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    entries.push(Entry { id, kind, name, rebuild: Arc::new(rebuild) });
    Some(Registration { id })
}

/// `src/main.rs:31`: where the app created a rebuilt thing, to name it in cargo hot's output.
pub(crate) fn name_of(location: &Location<'_>) -> String {
    format!("{}:{}", location.file(), location.line())
}

/// Runs after the exports were switched to a new patch: counts the version, then runs every
/// rebuild in registration order. Each one runs on its own: a panic is caught and reported,
/// and the others still run.
pub(crate) fn after_patch() -> Vec<Rebuilt> {
    VERSION.fetch_add(1, Ordering::SeqCst);
    // A snapshot: a rebuild may create (and so register) or drop values of its own, which
    // must not deadlock on the registry or change this round.
    let snapshot: Vec<(&'static str, String, Rebuild)> = {
        let entries = ENTRIES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.iter().map(|e| (e.kind, e.name.clone(), e.rebuild.clone())).collect()
    };
    snapshot
        .into_iter()
        .map(|(kind, name, rebuild)| {
            let started = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| rebuild())).unwrap_or_else(|payload| Err(panic_message(payload.as_ref())));
            let (error, warning) = match outcome {
                Ok(warning) => (None, warning),
                Err(error) => (Some(error), None),
            };
            Rebuilt { kind: kind.to_string(), name, micros: started.elapsed().as_micros() as u64, error, warning }
        })
        .collect()
}

/// The text of a panic, as the default hook would print it after "panicked at ...:".
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-text payload".to_string());
    format!("panicked: {text}")
}

/// How many patches this process has applied: 0 until the first one. Code that caches
/// something derived from boundary code can compare it with the version it saw.
pub fn version() -> u64 {
    VERSION.load(Ordering::SeqCst)
}

/// Runs `hook` after every applied patch, once the routers, values and scopes have been
/// rebuilt, for the life of the process (node-hmr's `accept` callback, hot-hook's reload
/// event). Not run by cargo hot, or in release builds, it is never called.
///
/// ```
/// hot::on_reload(|| eprintln!("now running patch {}", hot::version()));
/// ```
#[track_caller]
pub fn on_reload(hook: impl Fn() + Send + Sync + 'static) {
    let name = name_of(Location::caller());
    if let Some(registration) = register("hook", name, move || {
        hook();
        Ok(None)
    }) {
        // A hook lives as long as the process.
        std::mem::forget(registration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_read_like_the_default_hook() {
        let payload = catch_unwind(|| panic!("no route for {}", "/x")).unwrap_err();
        assert_eq!(panic_message(payload.as_ref()), "panicked: no route for /x");
        let payload = catch_unwind(|| std::panic::panic_any(7_u8)).unwrap_err();
        assert_eq!(panic_message(payload.as_ref()), "panicked: a panic with a non-text payload");
    }

    #[test]
    fn dropping_a_rebuild_that_owns_another_does_not_deadlock() {
        let inner = Registration { id: NEXT_ID.fetch_add(1, Ordering::Relaxed) };
        let outer_id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        ENTRIES.lock().unwrap().push(Entry {
            id: outer_id,
            kind: "value",
            name: "test".into(),
            rebuild: Arc::new(move || {
                let _owned = &inner;
                Ok(None)
            }),
        });
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(Registration { id: outer_id });
            done.send(()).unwrap();
        });
        finished.recv_timeout(std::time::Duration::from_secs(10)).expect("the drop returned");
    }

    #[test]
    fn nothing_is_registered_outside_cargo_hot() {
        assert!(!crate::is_hot(), "tests do not run under cargo hot");
        assert!(register("value", "x".into(), || Ok(None)).is_none());
    }
}
