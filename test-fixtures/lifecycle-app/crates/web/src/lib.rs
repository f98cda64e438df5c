//! The hot boundary: the router, its handlers and middleware, and the background jobs. Edit
//! anything here while `cargo hot run` runs: the next request is served by a router the new
//! code built, the jobs are restarted, and the statics below keep their values.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use state::AppState;

mod api;
mod settings;

/// Requests served by this crate's code since the program started: a static of the
/// boundary, kept across patches.
static SERVED: AtomicU64 = AtomicU64::new(0);

/// Filled on first use and kept across patches (a patch does not run it again).
static STARTED_WITH: OnceLock<String> = OnceLock::new();

thread_local! {
    /// Calls on the calling thread, kept across patches.
    static CALLS_HERE: Cell<u64> = const { Cell::new(0) };
}

/// The app's router: `hot::axum::router` in the host calls this again after each patch.
#[hot::export]
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/slow", get(slow))
        .route("/served", get(served))
        .route("/events/{id}", post(publish))
        .route("/stats", get(stats))
        .route("/version", get(|| async { format!("patch {} · {}", hot::version(), settings::banner()) }))
        .nest("/api", api::router())
        .layer(middleware::from_fn(stamp))
        .with_state(state)
}

async fn index(State(state): State<Arc<AppState>>) -> String {
    let hits = state.hits.fetch_add(1, Ordering::SeqCst) + 1;
    format!("index v1 (hits={hits})")
}

#[derive(serde::Deserialize)]
struct SlowParams {
    ms: Option<u64>,
}

async fn slow(Query(params): Query<SlowParams>) -> String {
    tokio::time::sleep(Duration::from_millis(params.ms.unwrap_or(500))).await;
    "slow v1".to_string()
}

async fn served() -> String {
    let served = SERVED.fetch_add(1, Ordering::SeqCst) + 1;
    let started = STARTED_WITH.get_or_init(|| "cache v1".to_string());
    format!("served={served} cache={started}")
}

async fn publish(State(state): State<Arc<AppState>>, Path(id): Path<u64>) -> String {
    let receivers = state.events.send(id).unwrap_or(0);
    format!("published {id} to {receivers}")
}

async fn stats(State(state): State<Arc<AppState>>) -> String {
    let received = state.received.lock().unwrap();
    let duplicates = received.values().filter(|count| **count > 1).count();
    serde_json::json!({
        "running_jobs": state.running_jobs.load(Ordering::SeqCst),
        "most_running_jobs": state.most_running_jobs.load(Ordering::SeqCst),
        "cleanups": state.cleanups.load(Ordering::SeqCst),
        "subscribers": state.events.receiver_count(),
        "received": received.len(),
        "duplicates": duplicates,
    })
    .to_string()
}

/// Middleware: says which version of the code served the response.
async fn stamp(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert("x-served-by", HeaderValue::from_static("stamp v1"));
    response
}

/// The background jobs: `hot::scope` in the host calls this again after each patch, once
/// the previous jobs have stopped and their cleanups have run.
#[hot::export]
pub fn jobs(scope: &hot::Scope, state: Arc<AppState>) {
    // A ticker.
    let ticker = state.clone();
    scope.spawn(async move {
        let _running = ticker.job_running();
        loop {
            ticker.ticks.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    // A subscriber: records each event it receives.
    let subscriber = state.clone();
    scope.spawn(async move {
        let mut events = subscriber.events.subscribe();
        while let Ok(id) = events.recv().await {
            *subscriber.received.lock().unwrap().entry(id).or_default() += 1;
        }
    });
    scope.on_cleanup(move || {
        state.cleanups.fetch_add(1, Ordering::SeqCst);
    });
}

/// Called on one thread of the host's own: counts calls there in a thread-local.
#[hot::export]
pub fn thread_local_tick() -> u64 {
    CALLS_HERE.with(|calls| {
        calls.set(calls.get() + 1);
        calls.get()
    })
}
