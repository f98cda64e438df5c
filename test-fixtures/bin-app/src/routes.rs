//! The handlers: edit them while `cargo hot run` runs, and the next request is served by the
//! new code in the same process.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;

use crate::AppState;

#[hot::export]
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/pid", get(|| async { std::process::id().to_string() }))
        .route("/env/{name}", get(|axum::extract::Path(name): axum::extract::Path<String>| async move { std::env::var(name).unwrap_or_default() }))
        .route("/cwd", get(|| async { std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default() }))
        .with_state(state)
}

async fn index(State(state): State<Arc<AppState>>) -> String {
    let hits = state.hits.fetch_add(1, Ordering::SeqCst) + 1;
    format!("bin-app v1 (hits={hits})")
}
