//! [`service`]: any tower `Service` (a tonic server's routes, a hyper service, a tower stack
//! with its layers) built by boundary code and built again by the newest code after each
//! applied patch; what [`crate::axum::router`] is for axum, for everything else tower.
//!
//! The service handed to the server delegates each call to a clone of the newest built
//! service: a call that started on the old one finishes on it, a kept-alive connection's next
//! request reaches the new one, no connection is closed. A build that panics keeps the previous
//! service, and cargo hot shows the panic; the next patch tries again.

use std::panic::Location;
use std::task::{Context, Poll};

use tower_service::Service;

use crate::Hot;

/// The service the server serves, delegating each call to the service built by the newest
/// code. `build` is a host closure that calls a `#[hot::export]` function returning the
/// service (a concrete type, or a boxed one such as `tower::util::BoxCloneSyncService`); it
/// runs now and again after each applied patch:
///
/// ```ignore
/// // tonic 0.13 and later serve any service:
/// let grpc = hot::tower::service(move || api::grpc_routes(state.clone()));
/// tonic::transport::Server::builder().serve(addr, grpc).await?;
///
/// // hyper, one connection at a time:
/// let svc = hot::tower::service(move || api::service(state.clone()));
/// let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
///     .serve_connection(io, hyper_util::service::TowerToHyperService::new(svc.clone()));
/// ```
///
/// Not run by cargo hot (or in a release build), `build` runs once, and each call costs one
/// atomic load and a clone of the service.
#[track_caller]
pub fn service<S>(build: impl Fn() -> S + Send + Sync + 'static) -> Newest<S>
where
    S: Clone + Send + Sync + 'static,
{
    let newest = Hot::create("service", Location::caller(), move || Ok::<S, std::convert::Infallible>(build()))
        .unwrap_or_else(|never| match never {});
    Newest(newest)
}

/// The service [`service`] returns: clone it for each connection, as any tower service.
pub struct Newest<S>(Hot<S>);

impl<S> Clone for Newest<S> {
    fn clone(&self) -> Self {
        Newest(self.0.clone())
    }
}

impl<S, Request> Service<Request> for Newest<S>
where
    S: Service<Request> + Clone + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ::tower::util::Oneshot<S, Request>;

    /// Always ready: readiness is the built service's, awaited for each call.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        ::tower::util::Oneshot::new(S::clone(&self.0.get()), request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[derive(Clone)]
    struct Greeter(Arc<AtomicU32>);

    impl Service<String> for Greeter {
        type Response = String;
        type Error = Infallible;
        type Future = std::future::Ready<Result<String, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, name: String) -> Self::Future {
            std::future::ready(Ok(format!("hello {name}, call {}", self.0.fetch_add(1, Ordering::SeqCst) + 1)))
        }
    }

    #[tokio::test]
    async fn calls_reach_the_built_service() {
        let calls = Arc::new(AtomicU32::new(0));
        let mut svc = service(move || Greeter(calls.clone()));
        assert_eq!(svc.call("ann".into()).await.unwrap(), "hello ann, call 1");
        let mut other = svc.clone();
        assert_eq!(other.call("bob".into()).await.unwrap(), "hello bob, call 2", "clones share the built service");
    }
}
