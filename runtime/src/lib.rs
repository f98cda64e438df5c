//! # hot: the runtime side of `cargo hot`
//!
//! Put `#[hot::export]` on the entry functions of your hot boundary crate (the crate whose
//! edits `cargo hot run` patches into the running server):
//!
//! ```ignore
//! #[hot::export]
//! pub async fn index(state: Arc<AppState>) -> String {
//!     format!("hits: {}", state.hits.load(Ordering::Relaxed))
//! }
//! ```
//!
//! The host keeps calling `handlers::index(state).await` as an ordinary function.
//!
//! What the app built once at start-up from boundary code is rebuilt by the new code after
//! each patch, when it was created through this crate:
//! - [`axum::router`] (feature `axum`): the app's `Router`, so routes and middleware change
//!   without a restart;
//! - [`actix::configure`] (feature `actix`): an actix-web app's routes, scopes, guards and
//!   middleware, on every worker;
//! - [`tower::service`] (feature `tower`): any tower `Service`, a tonic server's or a hyper
//!   service;
//! - [`Hot`]: any other value (templates, a rules table, a tower service);
//! - [`scope`] (feature `tokio`): background jobs and subscribers, stopped (with their
//!   cleanups) before the new ones start;
//! - [`on_reload`] and [`version`]: app code that wants to know.
//!
//! `static`s and `thread_local!`s of the boundary keep their values across patches: the new
//! code uses the running program's copies. [`decline!`] marks a file whose edits always
//! restart.
//!
//! - Run by `cargo hot` (the environment variable [`IPC_ENV`] is set): a background thread
//!   connects to cargo hot's private channel and loads each patch it is sent; each exported
//!   call costs one atomic load and an indirect call.
//! - Run any other way: no thread, no socket, exported functions call their own code, and
//!   every build closure runs once.
//! - Release builds (no `debug_assertions`): `#[hot::export]` emits the plain function.

#[cfg(feature = "agent")]
pub use hot_runtime_macros::export;

pub mod protocol;

#[cfg(all(feature = "agent", unix))]
mod agent;
#[cfg(all(feature = "agent", unix))]
mod loader;

#[cfg(feature = "agent")]
mod context;
#[cfg(feature = "agent")]
mod lifecycle;
#[cfg(feature = "agent")]
mod value;
#[cfg(feature = "tokio")]
mod scope;
#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "tower")]
pub mod tower;

#[cfg(feature = "agent")]
pub use lifecycle::{on_reload, version};
#[cfg(feature = "tokio")]
pub use scope::{scope, Scope, ScopeGuard};
#[cfg(feature = "agent")]
pub use value::Hot;

/// Environment variable through which `cargo hot` tells the program where its private IPC
/// socket is. When it is absent the runtime stays inert.
pub const IPC_ENV: &str = "CARGO_HOT_IPC";

/// Says that edits to this file always restart the program instead of patching it
/// (hot-hook's `decline()`): for a module whose effects only start-up code sees, or that you
/// would rather never run half-old, half-new. Put it at the top level of the file:
///
/// ```
/// hot::decline!();
/// ```
///
/// cargo hot reads it from the source (`cargo hot explain FILE` shows it); it generates no
/// code.
#[macro_export]
macro_rules! decline {
    () => {};
}

/// The listening TCP socket for `address`, non-blocking, ready for
/// `tokio::net::TcpListener::from_std`.
///
/// Under `cargo hot run --listen ADDR` (or systemd socket activation) this is the socket
/// cargo hot holds open across restarts, so no connection is refused while the program
/// restarts. Otherwise the address is bound here.
///
/// ```no_run
/// # async fn f() -> std::io::Result<()> {
/// let listener = hot::listener("127.0.0.1:3000")?;
/// // let listener = tokio::net::TcpListener::from_std(listener)?;
/// # Ok(()) }
/// ```
#[cfg(all(feature = "agent", unix))]
pub fn listener<A: std::net::ToSocketAddrs>(address: A) -> std::io::Result<std::net::TcpListener> {
    let wanted: Vec<std::net::SocketAddr> = address.to_socket_addrs()?.collect();
    for inherited in loader::inherited_listeners() {
        if inherited.local_addr().is_ok_and(|local| wanted.contains(&local)) {
            let listener = inherited.try_clone()?;
            listener.set_nonblocking(true)?;
            return Ok(listener);
        }
    }
    let same_port = loader::inherited_listeners()
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .find(|inherited| wanted.iter().any(|w| w.port() == inherited.port()));
    if let Some(inherited) = same_port {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "cargo hot holds port {} on {inherited}, not on {wanted:?}: use the same address in --listen and hot::listener",
                inherited.port()
            ),
        ));
    }
    let listener = std::net::TcpListener::bind(&wanted[..])?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Whether this process was started by `cargo hot` (and so may receive patches).
pub fn is_hot() -> bool {
    std::env::var_os(IPC_ENV).is_some()
}

/// Items used by the code that `#[hot::export]` generates. Not a public API.
#[doc(hidden)]
#[cfg(feature = "agent")]
pub mod __private {
    #[cfg(unix)]
    pub use crate::loader::Slot;

    /// Requires the future of an `async` `#[hot::export]` to be `Send`. When it is not (it
    /// holds an `Rc`, a `RefCell` borrow, an actix `Session` or `HttpRequest` across an
    /// `.await`), rustc's error says "required by a bound in
    /// `future_is_send_or_use_hot_export_local`": the fix is `#[hot::export(local)]`.
    #[inline(always)]
    pub fn future_is_send_or_use_hot_export_local<F: core::future::Future + Send>(future: F) -> F {
        future
    }

    #[cfg(not(unix))]
    pub use crate::inert::Slot;
}

/// On platforms without a patch loader, slots are always empty: calls go to the original code.
#[cfg(all(feature = "agent", not(unix)))]
mod inert {
    use std::marker::PhantomData;

    pub struct Slot<F>(PhantomData<F>);

    impl<F: Copy> Slot<F> {
        #[allow(clippy::new_without_default)]
        pub const fn new() -> Self {
            Slot(PhantomData)
        }

        #[inline(always)]
        pub fn get(&self) -> Option<F> {
            None
        }
    }
}
