//! The host picks the database: `api::launch::<store::Memory>` and with it
//! `api::router::<store::Memory>` are instantiated here.

use std::sync::Arc;

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let database = Arc::new(store::Memory::default());
    api::launch(database, port).await;
}
