//! Types shared by the server and the handlers. An edit here is outside the
//! boundary, so `cargo hot` rebuilds and restarts the server.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

/// State owned by the host process. It survives hot patches of the handlers.
#[derive(Default)]
pub struct AppState {
    pub hits: AtomicU64,
    pub notes: Mutex<HashMap<String, String>>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Note {
    pub key: String,
    pub text: String,
}

pub fn banner() -> &'static str {
    "shared-v1"
}
