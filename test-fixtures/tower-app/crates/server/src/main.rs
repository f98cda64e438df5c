//! The host: a plain hyper server, one connection at a time, that binds its own port and
//! serves the tower service the hot crate `api` builds (made hot by `hot::tower::service`).

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

/// What `/host` answers: the host's own code, which a restart changes.
const HOST: &str = "host v1";

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    // Like an embedded database, the server holds a lock file while it runs: a second one
    // cannot start until the first has stopped.
    let lock = std::fs::File::create(std::env::temp_dir().join(format!("tower-app-{port}.lock"))).expect("cannot create the lock file");
    if lock.try_lock().is_err() {
        eprintln!("another tower-app holds the lock on port {port}'s lock file");
        std::process::exit(1);
    }
    let state = Arc::new(api::State::default());
    let service = hot::tower::service(move || api::service(state.clone(), HOST));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("cannot bind the port");
    println!("listening on http://127.0.0.1:{port}");
    let graceful = GracefulShutdown::new();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = terminate.recv() => break,
        };
        let connection = auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service.clone()))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    // Requests under way finish; idle kept-alive connections are closed.
    let _ = tokio::time::timeout(Duration::from_secs(3), graceful.shutdown()).await;
}
