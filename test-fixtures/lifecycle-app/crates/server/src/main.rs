//! The host: builds the state, starts the jobs and serves the router. The jobs and the router
//! come from `web`, through `hot::scope` and `hot::axum::router`: each patch of `web`
//! restarts the jobs and rebuilds the router with the new code, in this same process.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use state::AppState;

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let state = Arc::new(AppState::new());
    hot::on_reload(|| println!("[app] now running patch {}", hot::version()));

    // Jobs and subscribers, stopped (with their cleanups) and started again by each patch.
    let jobs_state = state.clone();
    let _jobs = hot::scope(move |scope| web::jobs(scope, jobs_state.clone()));

    // A thread of the host's own that calls into `web`, to show thread-locals keeping their
    // values across patches (requests run on whichever runtime thread is free).
    let (probe, calls) = std::sync::mpsc::channel::<tokio::sync::oneshot::Sender<u64>>();
    std::thread::spawn(move || {
        for reply in calls {
            let _ = reply.send(web::thread_local_tick());
        }
    });

    // Host-owned routes, then everything else from the router the newest `web` builds.
    let app = Router::new()
        .route("/pid", get(|| async { std::process::id().to_string() }))
        .route(
            "/thread-local",
            get(move || {
                let probe = probe.clone();
                async move {
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    probe.send(reply).expect("probe thread");
                    answer.await.expect("probe answer").to_string()
                }
            }),
        )
        .fallback_service(hot::axum::router(move || web::router(state.clone())));

    // Under `cargo hot run --listen 127.0.0.1:PORT` this is the socket cargo hot keeps open
    // across restarts; otherwise it binds the address.
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
