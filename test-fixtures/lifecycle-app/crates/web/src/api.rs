//! A nested router, mounted at `/api`.

use axum::routing::get;
use axum::Router;

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/ping", get(|| async { "pong v1" }))
}
