//! An ordinary single-package axum server: the handlers are in `routes`, a module of this
//! binary. Run with `cargo hot run` and no configuration: the binary's own crate is the
//! hot boundary.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

mod routes;

pub struct AppState {
    pub hits: AtomicU64,
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let state = Arc::new(AppState { hits: AtomicU64::new(0) });
    let app = hot::axum::router(move || routes::router(state.clone()));
    let listener = hot::listener(("127.0.0.1", port)).unwrap_or_else(|e| panic!("cannot listen on 127.0.0.1:{port}: {e}"));
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    println!("bin-app v1 listening on http://127.0.0.1:{port}");
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
