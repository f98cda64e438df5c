//! A module named like its function (as zero-to-production's routes are), with a static a
//! private helper bumps.

use std::sync::atomic::{AtomicU64, Ordering};

static HITS: AtomicU64 = AtomicU64::new(0);

fn bump() -> u64 {
    HITS.fetch_add(1, Ordering::SeqCst) + 1
}

pub fn health_check() -> String {
    format!("health v1 hits={}", bump())
}
