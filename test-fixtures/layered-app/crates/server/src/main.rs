//! The host: owns the state (a `domain` type and the `store` pool), stamps every response in
//! its own middleware with a `domain` function it calls directly, and serves the router the
//! newest `web` builds.

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

async fn stamp(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert("x-stamp", domain::stamp().parse().expect("a header value"));
    response.headers_mut().insert("x-limit", domain::LIMIT.into());
    response
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let ledger = Arc::new(domain::Ledger::new());
    let shared = Arc::new(web::Shared { ledger: ledger.clone(), db: Arc::new(store::Db::new()) });
    let app = Router::new()
        .route("/pid", get(|| async { std::process::id().to_string() }))
        .route("/host-hits", get(move || async move { format!("host hits {}", ledger.hit()) }))
        .fallback_service(hot::axum::router(move || web::router(shared.clone())))
        .layer(axum::middleware::from_fn(stamp));
    let listener = hot::listener(("127.0.0.1", port)).unwrap_or_else(|e| panic!("cannot listen on 127.0.0.1:{port}: {e}"));
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    println!("listening on http://127.0.0.1:{port}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await
        .unwrap();
}
