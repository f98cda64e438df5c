//! [`router`]: an axum `Router` built by boundary code and rebuilt by the newest code after
//! each applied patch, so added, changed and removed routes, handlers, nested routers and
//! middleware take effect without restarting the server or closing a connection (Medusa's
//! route reloader; Dioxus's subsecond rebuilds a router too, but closes every connection).

use std::convert::Infallible;
use std::panic::Location;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::routing::future::RouteFuture;
use axum::Router;
use tower_service::Service;

use crate::Hot;

/// The router the host serves, delegating every request to the router built by the newest
/// code.
///
/// `build` is a host closure that calls a `#[hot::export]` function returning a
/// `Router` with its state already applied (`Router<()>`). It runs now and again after each
/// applied patch. Serve the result as usual:
///
/// ```no_run
/// # mod handlers { pub fn app(_: ()) -> axum::Router { axum::Router::new() } }
/// # async fn f() -> std::io::Result<()> {
/// let state = ();
/// let app = hot::axum::router(move || handlers::app(state.clone()));
/// let listener = tokio::net::TcpListener::from_std(hot::listener("127.0.0.1:3000")?)?;
/// // axum::serve(listener, app).await
/// # Ok(()) }
/// ```
///
/// A request that started on the old router finishes on it; a kept-alive connection's next
/// request goes to the new one; websocket and SSE streams in progress keep running the code
/// that opened them. If a rebuild panics, the previous router keeps serving and cargo hot
/// shows the panic; the next patch tries again.
///
/// Not run by cargo hot (or in a release build), `build` runs once: the returned router
/// only adds one atomic load per request.
#[track_caller]
pub fn router(build: impl Fn() -> Router + Send + Sync + 'static) -> Router {
    let newest = Hot::create("router", Location::caller(), move || Ok::<Router, Infallible>(build()))
        .unwrap_or_else(|never| match never {});
    Router::new().fallback_service(Newest(newest))
}

/// Calls the newest router. Cloning it per request is cheap (the router is reference-counted
/// inside), and the clone keeps the router of that request alive until it completes.
#[derive(Clone)]
struct Newest(Hot<Router>);

impl Service<Request> for Newest {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = RouteFuture<Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let mut router = Router::clone(&self.0.get());
        router.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;

    async fn text(app: &mut Router, uri: &str) -> (u16, String) {
        let response = app.call(Request::builder().uri(uri).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn requests_reach_the_built_router_with_paths_and_nesting() {
        let mut app = router(|| {
            Router::new()
                .route("/", get(|| async { "root" }))
                .route("/item/{id}", get(|axum::extract::Path(id): axum::extract::Path<u32>| async move { format!("item {id}") }))
                .nest("/api", Router::new().route("/ping", get(|| async { "pong" })))
        });
        assert_eq!(text(&mut app, "/").await, (200, "root".into()));
        assert_eq!(text(&mut app, "/item/7").await, (200, "item 7".into()));
        assert_eq!(text(&mut app, "/api/ping").await, (200, "pong".into()));
        assert_eq!(text(&mut app, "/missing").await.0, 404);
    }
}
