//! A router generic over its database, as atuin-server's is: `router::<DB>` is instantiated
//! in the crate that names the database (here the host), not in this one.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;

pub trait Database: Send + Sync + 'static {
    fn name(&self) -> String;
    fn count(&self) -> u64;
}

pub fn router<DB: Database>(database: Arc<DB>) -> Router {
    Router::new()
        .route("/", get(index::<DB>))
        .route("/pid", get(|| async { std::process::id().to_string() }))
        .route("/db", get(|State(db): State<Arc<DB>>| async move { format!("db {} v1", db.name()) }))
        .with_state(database)
}

async fn index<DB: Database>(State(db): State<Arc<DB>>) -> String {
    format!("index v1 (count {})", db.count())
}

/// The server, generic like the router, as atuin's `launch::<DB>` is.
pub async fn launch<DB: Database>(database: Arc<DB>, port: u16) {
    let app = hot::axum::router(move || router(database.clone()));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("cannot bind the port");
    println!("listening on http://127.0.0.1:{port}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            term.recv().await;
        })
        .await
        .unwrap();
}
