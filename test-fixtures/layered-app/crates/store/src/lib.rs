//! The queries: an in-memory table standing in for a database pool.

use std::collections::HashMap;

use tokio::sync::Mutex;

/// The "connection pool", created once by the host and kept across patches.
pub struct Db {
    rows: Mutex<HashMap<String, u64>>,
}

impl Db {
    pub fn new() -> Self {
        Db { rows: Mutex::new(HashMap::new()) }
    }
}

impl Default for Db {
    fn default() -> Self {
        Self::new()
    }
}

/// A query: awaited by `domain`, whose future `web`'s handler awaits.
pub async fn visit(db: &Db, name: &str) -> u64 {
    let mut rows = db.rows.lock().await;
    let count = rows.entry(name.to_string()).or_insert(0);
    *count += 1;
    *count
}

/// A plain function `domain` calls.
pub fn stock(item: u32) -> u32 {
    item * 10
}
