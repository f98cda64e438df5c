//! The hot crate: a tower service with its layers, built by `service` (made hot by
//! `hot::tower::service` in the host).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;

/// State the host creates once and keeps across patches.
#[derive(Default)]
pub struct State {
    pub hits: AtomicU64,
}

pub type Service = BoxCloneSyncService<Request<Incoming>, Response<Full<Bytes>>, Infallible>;

#[hot::export]
pub fn service(state: Arc<State>, host: &'static str) -> Service {
    let service = ServiceBuilder::new()
        .map_response(|mut response: Response<Full<Bytes>>| {
            response.headers_mut().insert("x-layer", "layer-v1".parse().unwrap());
            response
        })
        .service_fn(move |request: Request<Incoming>| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(route(&state, host, request).await) }
        });
    BoxCloneSyncService::new(service)
}

async fn route(state: &State, host: &str, request: Request<Incoming>) -> Response<Full<Bytes>> {
    match request.uri().path() {
        "/host" => text(host.to_string()),
        "/" => text(format!("index v1 (hits {})", state.hits.fetch_add(1, Ordering::SeqCst) + 1)),
        "/hello" => text("hello v1".to_string()),
        "/pid" => text(std::process::id().to_string()),
        "/slow" => {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            text("slow v1".to_string())
        }
        _ => Response::builder().status(StatusCode::NOT_FOUND).body(Full::new(Bytes::from_static(b"not found"))).unwrap(),
    }
}

fn text(body: String) -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from(body)))
}
