//! The host: an ordinary actix-web server that binds its own port. Its routes come from the
//! hot crate `site` through `hot::actix::configure`; the session middleware and `/pid` are
//! its own.

use actix_session::storage::CookieSessionStore;
use actix_session::SessionMiddleware;
use actix_web::cookie::Key;
use actix_web::{web, App, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let counters = web::Data::new(site::Counters::default());
    let key = Key::from(&[7; 64]);
    println!("listening on http://127.0.0.1:{port}");
    HttpServer::new(move || {
        App::new()
            .app_data(counters.clone())
            .wrap(SessionMiddleware::builder(CookieSessionStore::default(), key.clone()).cookie_secure(false).build())
            .route("/pid", web::get().to(|| async { std::process::id().to_string() }))
            .route("/host", web::get().to(|| async { "host v1" }))
            .route("/visits", web::get().to(site::visits))
            .configure(hot::actix::configure(site::configure))
    })
    .workers(2)
    // Idle kept-alive connections stay open while an edit compiles (actix closes them after 5 s
    // by default).
    .keep_alive(std::time::Duration::from_secs(120))
    .shutdown_timeout(2)
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
