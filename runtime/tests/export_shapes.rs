//! `#[hot::export]` on the shapes real handlers have. Compiling this file is half the test;
//! the calls check that the generated wrappers behave like the plain functions.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Polls a future to completion on this thread (no runtime needed for these tests).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(value) => return value,
            Poll::Pending => std::thread::park(),
        }
    }
}

pub struct Path<T>(pub T);
pub struct State<T>(pub T);

/// A value whose drop is observable, like a semaphore permit.
pub struct Guard(Arc<AtomicBool>);
impl Drop for Guard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

pub struct Transaction<'c> {
    pub log: &'c mut Vec<String>,
}

#[hot::export]
pub async fn extractors(State(prefix): State<String>, Path((a, b)): Path<(u32, u32)>) -> String {
    format!("{prefix}{}", a + b)
}

#[hot::export]
pub async fn keeps_unused_arguments(_: Guard, released: Arc<AtomicBool>) -> bool {
    // The guard is owned by the future until it completes, as with a plain `async fn`.
    released.load(Ordering::SeqCst)
}

#[hot::export]
pub async fn nested_lifetimes(tx: &mut Transaction<'_>, line: &str) -> usize {
    tx.log.push(line.to_string());
    tx.log.len()
}

/// A callback whose `&str` is higher-ranked (`Fn(&str)` is `for<'a> Fn(&'a str)`): the body
/// calls it with a string of its own, which only type-checks if the macro left it so.
#[hot::export]
pub async fn higher_ranked_callback(callback: Box<dyn Fn(&str) -> usize + Send + '_>) -> usize {
    let local = String::from("four");
    callback(&local)
}

#[hot::export]
pub async fn question_mark_and_return(input: &str) -> Result<u32, std::num::ParseIntError> {
    if input.is_empty() {
        return Ok(0);
    }
    let n: u32 = input.trim().parse()?;
    Ok(n * 2)
}

#[hot::export]
pub async fn borrows_out(text: &str) -> &str {
    text.trim()
}

/// Documented, with a lint level that must reach the body.
#[hot::export]
#[allow(unused_variables)]
pub fn sync_with_mut(mut count: u32, unused: u8) -> u32 {
    count += 1;
    count
}

#[hot::export]
pub(crate) fn sync_refs(_: &u8, s: &str) -> String {
    s.to_string()
}

mod nested {
    #[hot::export]
    pub fn same_name_in_another_module() -> &'static str {
        "nested"
    }
}

#[hot::export]
pub fn same_name_in_another_module() -> &'static str {
    "top"
}

#[test]
fn exported_functions_behave_like_the_plain_ones() {
    assert_eq!(block_on(extractors(State("sum=".into()), Path((2, 3)))), "sum=5");
    assert_eq!(block_on(higher_ranked_callback(Box::new(|s: &str| s.len()))), 4);

    let released = Arc::new(AtomicBool::new(false));
    let still_held = block_on(keeps_unused_arguments(Guard(released.clone()), released.clone()));
    assert!(!still_held, "a `_` argument must live until the future completes");
    assert!(released.load(Ordering::SeqCst));

    let mut log = Vec::new();
    let mut tx = Transaction { log: &mut log };
    assert_eq!(block_on(nested_lifetimes(&mut tx, "a")), 1);
    assert_eq!(block_on(nested_lifetimes(&mut tx, "b")), 2);

    assert_eq!(block_on(question_mark_and_return("21")), Ok(42));
    assert_eq!(block_on(question_mark_and_return("")), Ok(0));
    assert!(block_on(question_mark_and_return("x")).is_err());
    assert_eq!(block_on(borrows_out("  padded ")), "padded");

    assert_eq!(sync_with_mut(1, 0), 2);
    assert_eq!(sync_refs(&0, "r"), "r");
    assert_eq!(nested::same_name_in_another_module(), "nested");
    assert_eq!(same_name_in_another_module(), "top");
}

#[test]
fn not_run_by_cargo_hot_the_runtime_is_inert() {
    assert!(!hot::is_hot());
    let agent_threads = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|task| std::fs::read_to_string(task.path().join("comm")).is_ok_and(|name| name.starts_with("cargo-hot")))
        .count();
    assert_eq!(agent_threads, 0, "no agent thread without cargo hot");
}
