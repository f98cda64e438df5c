//! The business logic.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};

/// Held by the host for the whole life of the process (its state survives every patch).
pub struct Ledger {
    hits: AtomicU64,
}

impl Ledger {
    pub fn new() -> Self {
        Ledger { hits: AtomicU64::new(0) }
    }

    pub fn hit(&self) -> u64 {
        self.hits.fetch_add(1, Ordering::Relaxed) + 1
    }
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

/// Compiled into the code that uses it: `web`'s route.
pub const TITLE: &str = "title v1";

/// Compiled into the host's middleware.
pub const LIMIT: u32 = 100;

/// Called by the host's middleware directly, and by `web`.
pub fn stamp() -> &'static str {
    "stamp-1"
}

/// Plain business logic over a plain query.
pub fn price(item: u32) -> u32 {
    store::stock(item) + 1
}

/// Generic: `web` instantiates it, so its copy lives in `web`'s compiled code.
pub fn describe<T: Display>(value: T) -> String {
    format!("value {value}")
}

/// Async over an async query.
pub async fn greet(db: &store::Db, name: &str) -> String {
    let visits = store::visit(db, name).await;
    format!("hello {name}, visit {visits}")
}
