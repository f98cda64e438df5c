//! The hot boundary: edit a function body here while `cargo hot run` is running and
//! the next request runs the new code, in the same process, with the same state.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use shared::{AppState, Note};

mod render;

/// `GET /`: counts hits in host-owned state.
#[hot::export]
pub async fn index(state: Arc<AppState>) -> String {
    let hits = state.hits.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(1)).await;
    format!("hello from v1 (hits={hits})")
}

/// `GET /note/{key}`: reads a note stored by `put_note`.
#[hot::export]
pub async fn get_note(state: Arc<AppState>, key: String) -> String {
    let notes = state.notes.lock().unwrap();
    match notes.get(&key) {
        Some(text) => render::note(&Note { key, text: text.clone() }),
        None => format!("no note {key}"),
    }
}

/// `POST /note/{key}`: stores a note; the write happens on a spawned task.
#[hot::export]
pub async fn put_note(state: Arc<AppState>, key: String, text: String) -> String {
    let task_state = state.clone();
    let stored_key = key.clone();
    tokio::spawn(async move {
        task_state.notes.lock().unwrap().insert(stored_key, text);
    })
    .await
    .expect("note task panicked");
    format!("stored {key}")
}

/// `GET /slow`: a request that stays in flight across a patch.
#[hot::export]
pub async fn slow(millis: u64) -> String {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    "slow v1".to_string()
}

/// `GET /version`: a plain synchronous export.
#[hot::export]
pub fn version() -> String {
    format!("handlers v1, {}", shared::banner())
}
