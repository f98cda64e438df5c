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
        .route("/panic", get(|| async { panic_and_exit() }))
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
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        // Under `cargo hot run` on a terminal the program gets a pseudo-terminal: colours pass.
        println!("\x1b[1mthe program's standard output is a terminal\x1b[0m");
    }
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

/// A panic that ends the process, as one in `main` or under `panic = "abort"` would: the
/// panic hook prints the message (and a backtrace with RUST_BACKTRACE=1), then it exits.
fn panic_and_exit() -> &'static str {
    let _ = std::panic::catch_unwind(|| -> () { panic!("no DATABASE_URL in the environment") });
    std::process::exit(101)
}
