//! The hot crate: the app's routes, scopes, guards and middleware, configured by `configure`
//! (made hot by `hot::actix::configure` in the host), and a session handler the host routes
//! itself.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_session::Session;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{from_fn, Next};
use actix_web::{guard, web, Error};

/// State the host creates once and keeps across patches.
#[derive(Default)]
pub struct Counters {
    pub hits: AtomicU64,
}

#[hot::export]
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/", web::get().to(index))
        .route("/slow", web::get().to(slow))
        .service(web::scope("/api").wrap(from_fn(stamp)).route("/hello", web::get().to(hello)))
        .service(web::resource("/admin").guard(guard::Header("x-admin", "yes")).to(admin));
}

async fn index(counters: web::Data<Counters>) -> String {
    let hits = counters.hits.fetch_add(1, Ordering::SeqCst) + 1;
    format!("index v1 (hits {hits})")
}

async fn hello() -> &'static str {
    "hello v1"
}

async fn admin() -> &'static str {
    "admin v1"
}

async fn slow() -> String {
    actix_web::rt::time::sleep(std::time::Duration::from_millis(1500)).await;
    "slow v1".to_string()
}

/// Middleware of the `/api` scope: stamps each response.
async fn stamp(request: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let mut response = next.call(request).await?;
    response.headers_mut().insert(HeaderName::from_static("x-stamp"), HeaderValue::from_static("stamp-v1"));
    Ok(response)
}

/// A session handler: `Session` is not `Send`, so its future is not either (`local`).
#[hot::export(local)]
pub async fn visits(session: Session) -> actix_web::Result<String> {
    let visits: u32 = session.get("visits")?.unwrap_or(0) + 1;
    session.insert("visits", visits)?;
    Ok(format!("visits {visits} (session v1)"))
}
