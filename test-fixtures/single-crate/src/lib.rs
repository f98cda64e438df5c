//! The boundary is this package's own library; `src/main.rs` is the host.

use std::sync::atomic::{AtomicU64, Ordering};

pub mod health_check;

/// Host-owned state, handed in by reference.
pub struct Counter(pub AtomicU64);

#[hot::export]
pub fn respond(path: &str, counter: &Counter) -> String {
    let n = counter.0.fetch_add(1, Ordering::SeqCst) + 1;
    match path {
        "/pid" => std::process::id().to_string(),
        "/health" => health_check::health_check(),
        _ => format!("single v1 #{n}"),
    }
}
