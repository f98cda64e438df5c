//! State owned by the host process: it outlives every patch of `web`. An edit here is
//! outside the boundary, so cargo hot rebuilds and restarts the server.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::broadcast;

pub struct AppState {
    pub hits: AtomicU64,
    /// Events published by `POST /events/{id}`; the subscriber job of `web` receives them.
    pub events: broadcast::Sender<u64>,
    /// Event id → how many times a subscriber received it.
    pub received: Mutex<BTreeMap<u64, u32>>,
    /// Copies of the ticker job running right now, and the most ever running at once.
    pub running_jobs: AtomicU64,
    pub most_running_jobs: AtomicU64,
    pub ticks: AtomicU64,
    /// How many times a job scope's cleanup ran.
    pub cleanups: AtomicU64,
}

impl AppState {
    pub fn new() -> Self {
        AppState {
            hits: AtomicU64::new(0),
            events: broadcast::channel(64).0,
            received: Mutex::new(BTreeMap::new()),
            running_jobs: AtomicU64::new(0),
            most_running_jobs: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            cleanups: AtomicU64::new(0),
        }
    }

    /// Counts a running job copy until the returned guard is dropped (when the job stops).
    pub fn job_running(&self) -> RunningJob<'_> {
        let now = self.running_jobs.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running_jobs.fetch_max(now, Ordering::SeqCst);
        RunningJob(self)
    }
}

impl Default for AppState {
    fn default() -> Self {
        Self::new()
    }
}

pub struct RunningJob<'a>(&'a AppState);

impl Drop for RunningJob<'_> {
    fn drop(&mut self) {
        self.0.running_jobs.fetch_sub(1, Ordering::SeqCst);
    }
}
