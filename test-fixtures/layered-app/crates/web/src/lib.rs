//! The routes: rebuilt by the newest code after each patch (see the host's
//! `hot::axum::router`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;

/// What the host hands to the router: its state, built once.
pub struct Shared {
    pub ledger: Arc<domain::Ledger>,
    pub db: Arc<store::Db>,
}

#[hot::export]
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/hits", get(hits))
        .route("/title", get(|| async { domain::TITLE.to_string() }))
        .route("/price/{item}", get(price))
        .route("/describe", get(describe))
        .route("/greet/{name}", get(greet))
        .route("/stamp", get(|| async { domain::stamp().to_string() }))
        .with_state(shared)
}

async fn hits(State(shared): State<Arc<Shared>>) -> String {
    format!("hits {}", shared.ledger.hit())
}

async fn price(Path(item): Path<u32>) -> String {
    format!("price {}", domain::price(item))
}

async fn describe() -> String {
    domain::describe(42u8)
}

async fn greet(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> String {
    domain::greet(&shared.db, &name).await
}
