//! The host: an ordinary axum server. It calls the handlers as plain functions;
//! nothing here knows about hot patching.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::Router;
use shared::AppState;

#[derive(serde::Deserialize)]
struct SlowParams {
    ms: Option<u64>,
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let state = Arc::new(AppState::default());
    let app = Router::new()
        .route("/", get(|State(s): State<Arc<AppState>>| handlers::index(s)))
        .route(
            "/note/{key}",
            get(|State(s): State<Arc<AppState>>, Path(key): Path<String>| handlers::get_note(s, key))
                .post(|State(s): State<Arc<AppState>>, Path(key): Path<String>, body: String| {
                    handlers::put_note(s, key, body)
                }),
        )
        .route("/slow", get(|Query(p): Query<SlowParams>| handlers::slow(p.ms.unwrap_or(500))))
        .route("/version", get(|| async { handlers::version() }))
        .route("/pid", get(|| async { std::process::id().to_string() }))
        .route("/crash", get(|| async {
            if std::env::var_os("NO_CRASH").is_none() {
                std::process::abort();
            }
            "not crashing"
        }))
        .with_state(state);

    // Under `cargo hot run --listen 127.0.0.1:PORT` this is the socket cargo hot keeps open
    // across restarts; otherwise it binds the address.
    let listener = hot::listener(("127.0.0.1", port)).unwrap_or_else(|e| panic!("cannot listen on 127.0.0.1:{port}: {e}"));
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    println!("listening on http://127.0.0.1:{port}");
    let ignore_sigterm = std::env::var_os("IGNORE_SIGTERM").is_some();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            loop {
                tokio::select! {
                    _ = term.recv() => {
                        if ignore_sigterm {
                            println!("ignoring SIGTERM");
                            continue;
                        }
                    }
                    _ = tokio::signal::ctrl_c() => {}
                }
                break;
            }
        })
        .await
        .unwrap();
}
