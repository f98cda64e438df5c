//! [`scope`]: background jobs (intervals, queue consumers, channel subscribers) started by
//! boundary code, stopped and started again by the newest code after each applied patch:
//! Medusa's job and subscriber reloaders, node-hmr's runners with a cleanup function,
//! hot-hook's `dispose`.
//!
//! A rebuild goes: the new code builds a *pending* scope (its `spawn`s are held back); if
//! that panics, the pending scope's cleanups run and the old jobs keep running. Otherwise the
//! old scope is stopped (its tasks aborted and waited for, then its cleanups run, newest
//! first), and only then do the new tasks start. So after any number of patches exactly one
//! copy of each job runs, and no new job overlaps an old one. An old task that does not stop
//! in time (it blocks its thread without reaching an `.await`) holds the new jobs back until
//! it does, and cargo hot says so.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::lifecycle::{self, Registration};

/// How long a rebuild waits for the old scope's aborted tasks to end. A task stops at its next
/// `.await`; one that blocks its thread without awaiting is reported.
const STOP_WAIT: Duration = Duration::from_secs(5);

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;
type Cleanup = Box<dyn FnOnce() + Send>;

/// Where boundary code starts its jobs: given to the `#[hot::export]` function that
/// [`scope`]'s build closure calls. Cheap to clone: a job can keep it to spawn more tasks
/// into the same scope.
#[derive(Clone)]
pub struct Scope {
    inner: Arc<ScopeInner>,
}

struct ScopeInner {
    runtime: Handle,
    state: Mutex<ScopeState>,
}

#[derive(Default)]
struct ScopeState {
    /// While a rebuild's new scope is pending: the jobs to start once the old scope stopped.
    deferred: Option<Vec<Job>>,
    tasks: Vec<JoinHandle<()>>,
    /// Finished tasks are forgotten when `tasks` reaches this length.
    prune_at: usize,
    cleanups: Vec<Cleanup>,
    /// A stopped scope starts nothing (a task of an old scope spawning after the stop).
    stopped: bool,
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("Scope").field("tasks", &state.tasks.len()).field("stopped", &state.stopped).finish()
    }
}

impl Scope {
    fn new(runtime: Handle, pending: bool) -> Self {
        let state = ScopeState { deferred: pending.then(Vec::new), prune_at: 64, ..Default::default() };
        Scope { inner: Arc::new(ScopeInner { runtime, state: Mutex::new(state) }) }
    }

    fn state(&self) -> MutexGuard<'_, ScopeState> {
        self.inner.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts `future` as a task of this scope, on the tokio runtime that was current when
    /// [`scope`] was called. Its output is dropped. The task is aborted when the scope stops
    /// (at the next patch, or when the [`ScopeGuard`] is dropped).
    pub fn spawn<F>(&self, future: F)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let job: Job = Box::pin(async move {
            let _ = future.await;
        });
        let mut state = self.state();
        if state.stopped {
            return;
        }
        if let Some(deferred) = &mut state.deferred {
            deferred.push(job);
            return;
        }
        let task = self.inner.runtime.spawn(job);
        state.tasks.push(task);
        if state.tasks.len() >= state.prune_at {
            state.tasks.retain(|task| !task.is_finished());
            state.prune_at = (state.tasks.len() * 2).max(64);
        }
    }

    /// Runs `cleanup` when this scope stops, after its tasks were stopped: unsubscribe,
    /// release a lock, flush a buffer. Cleanups run newest first.
    pub fn on_cleanup(&self, cleanup: impl FnOnce() + Send + 'static) {
        let mut state = self.state();
        if state.stopped {
            drop(state);
            cleanup();
            return;
        }
        state.cleanups.push(Box::new(cleanup));
    }

    /// Starts the jobs held back while the scope was pending (none if it was stopped since).
    fn start(&self) {
        let mut state = self.state();
        if state.stopped {
            return;
        }
        for job in state.deferred.take().unwrap_or_default() {
            let task = self.inner.runtime.spawn(job);
            state.tasks.push(task);
        }
    }

    /// Aborts the tasks, then runs the cleanups. With `wait`, waits that long for the tasks to
    /// end first: if some do not, returns them (the cleanups have not run yet; see
    /// [`Scope::finish_stopping`]). Returns what went wrong, if anything.
    fn stop(&self, wait: Option<Duration>) -> Result<Option<String>, Stopping> {
        let (tasks, cleanups) = {
            let mut state = self.state();
            state.stopped = true;
            state.deferred = None;
            (std::mem::take(&mut state.tasks), std::mem::take(&mut state.cleanups))
        };
        for task in &tasks {
            task.abort();
        }
        if let Some(wait) = wait {
            let deadline = Instant::now() + wait;
            while tasks.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            let running: Vec<JoinHandle<()>> = tasks.into_iter().filter(|t| !t.is_finished()).collect();
            if !running.is_empty() {
                return Err(Stopping { running, cleanups });
            }
        }
        Ok(self.run_cleanups(cleanups))
    }

    /// Runs cleanups newest first, each on its own (a panic is reported, the rest still run).
    fn run_cleanups(&self, cleanups: Vec<Cleanup>) -> Option<String> {
        let mut problems = Vec::new();
        for cleanup in cleanups.into_iter().rev() {
            let runtime = self.inner.runtime.clone();
            if let Err(payload) = catch_unwind(AssertUnwindSafe(move || {
                let _entered = runtime.enter();
                cleanup()
            })) {
                problems.push(format!("a cleanup of the old scope {}", lifecycle::panic_message(payload.as_ref())));
            }
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    /// For a stop whose tasks did not end in time: waits on another thread until they have,
    /// then runs the cleanups and starts `next`'s jobs (which were held back).
    fn finish_stopping(&self, stopping: Stopping, next: Scope) {
        let old = self.clone();
        let waiter = std::thread::Builder::new().name("cargo-hot-scope".into()).spawn(move || {
            while stopping.running.iter().any(|t| !t.is_finished()) {
                std::thread::sleep(Duration::from_millis(10));
            }
            if let Some(problem) = old.run_cleanups(stopping.cleanups) {
                eprintln!("[hot] {problem}");
            }
            next.start();
        });
        if let Err(err) = waiter {
            eprintln!("[hot] cannot wait for the old jobs to stop ({err}); the new jobs are not started");
        }
    }
}

/// Tasks of a stopped scope that had not ended when the wait was over, and its cleanups.
struct Stopping {
    running: Vec<JoinHandle<()>>,
    cleanups: Vec<Cleanup>,
}

/// Keeps a [`scope`]'s jobs running. Dropping it stops them: their tasks are aborted and
/// their cleanups run at once, without waiting for the tasks to reach their next `.await`
/// (the guard may be dropped on the runtime's own thread, which must stay free to end them).
#[must_use = "the jobs stop as soon as the guard is dropped: keep it (e.g. `let _jobs = hot::scope(..)`) for as long as they should run"]
pub struct ScopeGuard {
    shared: Arc<Shared>,
    _registration: Option<Registration>,
}

struct Shared {
    /// The scope of the newest code; None once the guard was dropped.
    current: Mutex<Option<Scope>>,
}

impl std::fmt::Debug for ScopeGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeGuard").finish_non_exhaustive()
    }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        let current = self.shared.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(scope) = current {
            // No waiting here: the guard may be dropped on the runtime's own thread, which
            // must be free to run the aborted tasks to their end.
            if let Ok(Some(problem)) = scope.stop(None) {
                eprintln!("[hot] stopping the jobs: {problem}");
            }
        }
    }
}

/// Starts jobs that the newest code restarts after every applied patch.
///
/// `build` is a host closure that calls a `#[hot::export]` function taking `&hot::Scope`,
/// which starts the jobs with [`Scope::spawn`] and registers cleanups with
/// [`Scope::on_cleanup`]. It runs now, and after each patch: the old scope's tasks are
/// stopped and its cleanups run before the new tasks start. If the new build panics, its
/// own cleanups run and the old jobs keep running; cargo hot shows the panic.
///
/// Must be called inside a tokio runtime; the tasks run on it. Keep the returned guard:
/// dropping it stops the jobs. Not run by cargo hot (or in a release build), `build` runs
/// once and nothing is restarted.
///
/// ```
/// # mod handlers { pub fn start_jobs(scope: &hot::Scope) { scope.spawn(async {}); scope.on_cleanup(|| ()); } }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let _jobs = hot::scope(|scope| handlers::start_jobs(scope));
/// # }
/// ```
#[track_caller]
pub fn scope(build: impl Fn(&Scope) + Send + Sync + 'static) -> ScopeGuard {
    let location = Location::caller();
    let runtime = Handle::try_current().unwrap_or_else(|_| {
        panic!("hot::scope must be called inside a tokio runtime (for example in `#[tokio::main] async fn main`), where its jobs will run")
    });
    let first = Scope::new(runtime.clone(), false);
    build(&first);
    let shared = Arc::new(Shared { current: Mutex::new(Some(first)) });
    let weak: Weak<Shared> = Arc::downgrade(&shared);
    let registration = lifecycle::register("scope", lifecycle::name_of(location), move || {
        let Some(shared) = weak.upgrade() else { return Ok(None) };
        rebuild(&shared, &runtime, &build, STOP_WAIT)
    });
    ScopeGuard { shared, _registration: registration }
}

/// One rebuild: the new code builds a pending scope; the old one stops only if that worked.
fn rebuild(shared: &Shared, runtime: &Handle, build: &dyn Fn(&Scope), wait: Duration) -> lifecycle::Outcome {
    let pending = Scope::new(runtime.clone(), true);
    let built = catch_unwind(AssertUnwindSafe(|| {
        let _entered = runtime.enter();
        build(&pending)
    }));
    if let Err(payload) = built {
        // What the failed build registered is released; the old jobs keep running.
        let _ = pending.stop(None);
        return Err(lifecycle::panic_message(payload.as_ref()));
    }
    let old = {
        let mut current = shared.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match current.as_mut() {
            Some(current) => std::mem::replace(current, pending.clone()),
            None => {
                // The guard was dropped meanwhile: nothing should run.
                let _ = pending.stop(None);
                return Ok(None);
            }
        }
    };
    // Without the lock: a guard dropped meanwhile stops `pending`, which then starts nothing.
    match old.stop(Some(wait)) {
        Ok(problem) => {
            pending.start();
            Ok(problem)
        }
        Err(stopping) => {
            let running = stopping.running.len();
            old.finish_stopping(stopping, pending);
            Ok(Some(format!(
                "{running} old task{} did not stop within {:.1} s (a task stops at its next .await; this one blocks without awaiting): \
                 the new jobs start once {}",
                if running == 1 { "" } else { "s" },
                wait.as_secs_f32(),
                if running == 1 { "it has" } else { "they have" }
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Starts a job that counts its ticks in `runs`, with a cleanup that counts in `cleaned`.
    fn ticking(scope: &Scope, runs: &Arc<AtomicUsize>, cleaned: &Arc<AtomicUsize>) {
        let runs = runs.clone();
        scope.spawn(async move {
            loop {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let cleaned = cleaned.clone();
        scope.on_cleanup(move || {
            cleaned.fetch_add(1, Ordering::SeqCst);
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pending_scope_starts_nothing_until_the_old_one_stopped() {
        let runs = Arc::new(AtomicUsize::new(0));
        let cleaned = Arc::new(AtomicUsize::new(0));
        let old = Scope::new(Handle::current(), false);
        ticking(&old, &runs, &cleaned);
        let pending = Scope::new(Handle::current(), true);
        let started = Arc::new(AtomicUsize::new(0));
        let s = started.clone();
        pending.spawn(async move { s.fetch_add(1, Ordering::SeqCst) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(started.load(Ordering::SeqCst), 0, "held back while pending");

        let stopper = old.clone();
        let problem = tokio::task::spawn_blocking(move || stopper.stop(Some(STOP_WAIT)).ok()).await.unwrap();
        assert_eq!(problem, Some(None));
        assert_eq!(cleaned.load(Ordering::SeqCst), 1);
        let after_stop = runs.load(Ordering::SeqCst);
        pending.start();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(runs.load(Ordering::SeqCst), after_stop, "the old job no longer runs");
        assert_eq!(started.load(Ordering::SeqCst), 1, "the new job ran once started");
        old.spawn(async {});
        assert!(old.state().tasks.is_empty(), "a stopped scope starts nothing");
    }

    /// A job that counts its live copies, as the fixture's jobs do.
    fn counting_job(live: Arc<AtomicUsize>, version: &'static str, fail: bool) -> impl Fn(&Scope) + Send + Sync {
        move |scope: &Scope| {
            if fail {
                scope.on_cleanup(|| ());
                panic!("{version} cannot start");
            }
            let live = live.clone();
            scope.spawn(async move {
                live.fetch_add(1, Ordering::SeqCst);
                struct Leave(Arc<AtomicUsize>);
                impl Drop for Leave {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let _leave = Leave(live);
                std::future::pending::<()>().await
            });
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rebuilds_keep_exactly_one_copy_and_a_panicking_build_keeps_the_old_jobs() {
        let live = Arc::new(AtomicUsize::new(0));
        let first = Scope::new(Handle::current(), false);
        counting_job(live.clone(), "v1", false)(&first);
        let shared = Arc::new(Shared { current: Mutex::new(Some(first)) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(live.load(Ordering::SeqCst), 1);
        for round in 0..20 {
            let (shared, live) = (shared.clone(), live.clone());
            let outcome = tokio::task::spawn_blocking(move || rebuild(&shared, &Handle::current(), &counting_job(live, "v2", false), STOP_WAIT))
                .await
                .unwrap();
            assert_eq!(outcome, Ok(None), "round {round}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(live.load(Ordering::SeqCst), 1, "after 20 rebuilds exactly one copy runs");

        let (s, l) = (shared.clone(), live.clone());
        let outcome = tokio::task::spawn_blocking(move || rebuild(&s, &Handle::current(), &counting_job(l, "v3", true), STOP_WAIT)).await.unwrap();
        assert_eq!(outcome, Err("panicked: v3 cannot start".to_string()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(live.load(Ordering::SeqCst), 1, "the old job keeps running");
        assert!(!shared.current.lock().unwrap().as_ref().unwrap().state().stopped);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn an_old_task_that_blocks_holds_the_new_jobs_back_until_it_ends() {
        let (blocking, cleaned) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let first = Scope::new(Handle::current(), false);
        let b = blocking.clone();
        first.spawn(async move {
            tokio::task::yield_now().await;
            b.store(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(400)); // blocks, no .await
            b.store(2, Ordering::SeqCst);
        });
        let c = cleaned.clone();
        first.on_cleanup(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        while blocking.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let shared = Arc::new(Shared { current: Mutex::new(Some(first)) });
        let started = Arc::new(AtomicUsize::new(0));
        let s = started.clone();
        let build = move |scope: &Scope| {
            let s = s.clone();
            scope.spawn(async move { s.fetch_add(1, Ordering::SeqCst) });
        };
        let sh = shared.clone();
        let outcome = tokio::task::spawn_blocking(move || rebuild(&sh, &Handle::current(), &build, Duration::from_millis(50))).await.unwrap();
        let warning = outcome.unwrap().unwrap();
        assert!(warning.contains("1 old task did not stop") && warning.contains("start once it has"), "{warning}");
        assert_eq!((started.load(Ordering::SeqCst), cleaned.load(Ordering::SeqCst)), (0, 0), "held back while the old task runs");
        while started.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(blocking.load(Ordering::SeqCst), 2, "the new job started after the old task ended");
        assert_eq!(cleaned.load(Ordering::SeqCst), 1, "and after the old cleanup");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cleanups_run_newest_first_and_a_panicking_one_is_reported() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let scope = Scope::new(Handle::current(), false);
        for n in 1..=2 {
            let order = order.clone();
            scope.on_cleanup(move || order.lock().unwrap().push(n));
        }
        scope.on_cleanup(|| panic!("flush failed"));
        let problem = tokio::task::spawn_blocking(move || scope.stop(None).ok().flatten()).await.unwrap().unwrap();
        assert!(problem.contains("panicked: flush failed"), "{problem}");
        assert_eq!(*order.lock().unwrap(), vec![2, 1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_guard_stops_the_jobs() {
        let runs = Arc::new(AtomicUsize::new(0));
        let cleaned = Arc::new(AtomicUsize::new(0));
        let (r, c) = (runs.clone(), cleaned.clone());
        let guard = scope(move |scope| ticking(scope, &r, &c));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(runs.load(Ordering::SeqCst) > 0);
        drop(guard);
        assert_eq!(cleaned.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let stopped = runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(runs.load(Ordering::SeqCst), stopped);
    }
}
