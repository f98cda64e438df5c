//! The generated large workspace of `cargo bench --bench edit_to_response -- --large`: a
//! backend with the dependencies real ones have (axum, tower-http, sqlx without a database at
//! build time, reqwest, serde, tracing, chrono, uuid, clap, argon2, ...: well over 100
//! crates.io crates), a crate `api` with `ROUTES` routes, a shared `model` crate and a host
//! `server` that builds its state from all of them. No cargo hot configuration: `api` and
//! `model` are both hot.

use std::path::Path;

/// Routes in the boundary's router.
pub const ROUTES: usize = 120;
/// The files the bench edits: a handler (a patch of `api`), a `const` of `model` that `api`
/// compiles in (a patch of `model` that compiles `api` again), the host's own route (a restart).
pub const API: &str = "crates/api/src/lib.rs";
pub const MODEL: &str = "crates/model/src/lib.rs";
pub const SERVER: &str = "crates/server/src/main.rs";

/// Writes the workspace under `root` (idempotent: files whose content is unchanged are not
/// rewritten, so cargo's build of an earlier run stays fresh).
pub fn write(root: &Path, runtime: &Path) {
    let runtime = format!("{:?}", runtime.display().to_string());
    let files = [
        ("Cargo.toml".to_string(), "[workspace]\nresolver = \"2\"\nmembers = [\"crates/server\", \"crates/api\", \"crates/model\"]\n".to_string()),
        (
            "crates/model/Cargo.toml".to_string(),
            package(
                "model",
                "chrono = { version = \"0.4\", features = [\"serde\"] }\n\
                 reqwest = { version = \"0.12\", default-features = false, features = [\"json\"] }\n\
                 serde = { version = \"1\", features = [\"derive\"] }\n\
                 sqlx = { version = \"0.8\", default-features = false, features = [\"runtime-tokio\", \"postgres\", \"uuid\", \"chrono\", \"json\"] }\n\
                 uuid = { version = \"1\", features = [\"v4\", \"serde\"] }\n",
            ),
        ),
        (MODEL.to_string(), MODEL_SOURCE.to_string()),
        (
            "crates/api/Cargo.toml".to_string(),
            package(
                "api",
                &format!(
                    "axum = \"0.8\"\n\
                     base64 = \"0.22\"\n\
                     chrono = {{ version = \"0.4\", features = [\"serde\"] }}\n\
                     hot-runtime = {{ path = {runtime} }}\n\
                     model = {{ path = \"../model\" }}\n\
                     regex = \"1\"\n\
                     serde = {{ version = \"1\", features = [\"derive\"] }}\n\
                     serde_json = \"1\"\n\
                     sha2 = \"0.10\"\n\
                     tower-http = {{ version = \"0.6\", features = [\"trace\", \"cors\", \"compression-gzip\", \"timeout\"] }}\n\
                     tracing = \"0.1\"\n\
                     uuid = {{ version = \"1\", features = [\"v4\", \"serde\"] }}\n"
                ),
            ),
        ),
        (API.to_string(), api_source()),
        (
            "crates/server/Cargo.toml".to_string(),
            package(
                "server",
                &format!(
                    "anyhow = \"1\"\n\
                     api = {{ path = \"../api\" }}\n\
                     argon2 = \"0.5\"\n\
                     axum = \"0.8\"\n\
                     clap = {{ version = \"4\", features = [\"derive\", \"env\"] }}\n\
                     dashmap = \"6\"\n\
                     dotenvy = \"0.15\"\n\
                     futures = \"0.3\"\n\
                     hot-runtime = {{ path = {runtime}, features = [\"axum\"] }}\n\
                     model = {{ path = \"../model\" }}\n\
                     rand = \"0.8\"\n\
                     reqwest = {{ version = \"0.12\", default-features = false, features = [\"json\"] }}\n\
                     sqlx = {{ version = \"0.8\", default-features = false, features = [\"runtime-tokio\", \"postgres\"] }}\n\
                     thiserror = \"2\"\n\
                     time = \"0.3\"\n\
                     tokio = {{ version = \"1\", features = [\"full\"] }}\n\
                     tracing = \"0.1\"\n\
                     tracing-subscriber = {{ version = \"0.3\", features = [\"env-filter\", \"json\"] }}\n\
                     url = \"2\"\n"
                ),
            ),
        ),
        ("crates/server/src/main.rs".to_string(), SERVER_SOURCE.to_string()),
    ];
    for (path, content) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
            std::fs::write(&path, content).unwrap();
        }
    }
}

fn package(name: &str, dependencies: &str) -> String {
    format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n[dependencies]\n{dependencies}")
}

const MODEL_SOURCE: &str = r#"//! Types and state shared by the host and `api`.

use std::sync::atomic::AtomicU64;

use serde::{Deserialize, Serialize};

pub const BANNER: &str = "model-v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub id: uuid::Uuid,
    pub name: String,
    pub created: chrono::DateTime<chrono::Utc>,
}

pub struct AppState {
    pub hits: AtomicU64,
    /// Connects on first use: no database is needed to build or start.
    pub pool: sqlx::PgPool,
    pub http: reqwest::Client,
}
"#;

const SERVER_SOURCE: &str = r#"//! The host of the generated large app: configuration, state, tracing, and the router that
//! the newest `api` builds.

use std::sync::Arc;

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, env = "PORT", default_value_t = 3000)]
    port: u16,
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://app@localhost/app")]
    database_url: String,
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("bad database url: {0}")]
    Url(#[from] url::ParseError),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = dotenvy::dotenv();
    let args = Args::parse();
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new("warn")).init();
    url::Url::parse(&args.database_url).map_err(StartError::from)?;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(5).connect_lazy(&args.database_url)?;
    let sessions: dashmap::DashMap<u64, time::OffsetDateTime> = dashmap::DashMap::new();
    sessions.insert(rand::random(), time::OffsetDateTime::now_utc());
    let _ = argon2::Argon2::default();
    let _ = futures::future::ready(());
    let state = Arc::new(model::AppState { hits: Default::default(), pool, http: reqwest::Client::new() });
    let app = axum::Router::new()
        .route("/pid", axum::routing::get(|| async { std::process::id().to_string() }))
        .route("/host", axum::routing::get(|| async { "host v1" }))
        .fallback_service(hot::axum::router(move || api::router(state.clone())));
    let listener = hot::listener(("127.0.0.1", args.port))?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    println!("listening on http://127.0.0.1:{}", args.port);
    axum::serve(listener, app).await?;
    Ok(())
}
"#;

/// The boundary: `ROUTES` handlers (JSON in, JSON out, some hashing, a regex), the router
/// with tower-http layers, exported for `hot::axum::router`.
fn api_source() -> String {
    let mut source = String::from(
        r##"//! The boundary of the generated large app: its router and handlers are patched in.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use model::AppState;
use serde::{Deserialize, Serialize};
use sha2::Digest;

#[derive(Serialize, Deserialize)]
pub struct Reply {
    pub route: usize,
    pub id: u64,
    pub label: String,
    pub digest: String,
}

fn reply(route: usize, id: u64, label: &str) -> Json<Reply> {
    let digest = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(format!("{route}/{id}")));
    Json(Reply { route, id, label: label.to_string(), digest })
}

pub async fn index(State(state): State<Arc<AppState>>) -> String {
    let hits = state.hits.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::debug!(hits, "index");
    format!("large v1 · {} · hits={hits}", model::BANNER)
}

pub async fn item(Path(id): Path<u64>) -> Json<model::Item> {
    let name = regex::Regex::new(r"\d+").unwrap().replace_all(&format!("item {id}"), "#").into_owned();
    Json(model::Item { id: uuid::Uuid::new_v4(), name, created: chrono::Utc::now() })
}
"##,
    );
    for i in 0..ROUTES {
        source.push_str(&format!(
            "\npub async fn route_{i}(State(state): State<Arc<AppState>>, Path(id): Path<u64>) -> Json<Reply> {{\n    \
             state.hits.fetch_add(1, Ordering::Relaxed);\n    reply({i}, id, \"route {i} v1\")\n}}\n"
        ));
    }
    source.push_str("\n#[hot::export]\npub fn router(state: Arc<AppState>) -> Router {\n    Router::new()\n        .route(\"/\", get(index))\n        .route(\"/item/{id}\", get(item))\n");
    for i in 0..ROUTES {
        source.push_str(&format!("        .route(\"/r{i}/{{id}}\", get(route_{i}))\n"));
    }
    source.push_str(
        "        .layer(tower_http::trace::TraceLayer::new_for_http())\n        \
         .layer(tower_http::cors::CorsLayer::permissive())\n        \
         .layer(tower_http::compression::CompressionLayer::new())\n        \
         .with_state(state)\n}\n",
    );
    source
}
