//! The context a rebuild runs in. Rebuilds run on cargo hot's agent thread, not on the
//! thread that first built the value; with the `tokio` feature, the runtime that was current
//! then is entered again, so a build may call `tokio::spawn` or create timers as it did at
//! start-up.

#[derive(Clone, Default)]
pub(crate) struct Context {
    #[cfg(feature = "tokio")]
    runtime: Option<tokio::runtime::Handle>,
}

impl Context {
    /// The context of the calling thread.
    pub(crate) fn capture() -> Self {
        Context {
            #[cfg(feature = "tokio")]
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Runs `f` inside the captured context.
    pub(crate) fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        #[cfg(feature = "tokio")]
        let _entered = self.runtime.as_ref().map(|runtime| runtime.enter());
        f()
    }
}
