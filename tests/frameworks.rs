//! Beyond axum: an actix-web app (`hot::actix::configure`, sessions, its own `HttpServer::bind`),
//! a plain hyper/tower app (`hot::tower::service`) and an axum router generic over its
//! database, each checked over HTTP: routes added, changed and removed, middleware changed, a
//! kept-alive connection that sees the new code, a failing rebuild that keeps the old one, the
//! same process throughout; and restarts that refuse no request for an app that binds its own
//! port and never mentions `hot::listener`.

mod support;

use std::time::{Duration, Instant};

use support::{Fixture, HotRun, KeepAlive};

const WAIT: Duration = Duration::from_secs(300);
const SITE: &str = "crates/site/src/lib.rs";
const API: &str = "crates/api/src/lib.rs";

/// Waits until `path` answers with `status` (whatever the body).
fn wait_for_status(run: &HotRun, path: &str, status: u16) -> support::Response {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(response) = support::request(run.port, "GET", path) {
            if response.status == status {
                return response;
            }
        }
        assert!(Instant::now() < deadline, "{path} never answered {status}:\n{}", run.log());
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn actix_routes_scopes_and_middleware_are_hot_in_one_process() {
    let fixture = Fixture::copy("actix-app");
    let run = HotRun::start(&fixture, &[]);
    let pid = run.pid();
    assert_eq!(run.get("/").unwrap(), "index v1 (hits 1)");
    let mut kept = KeepAlive::connect(run.port).unwrap();
    let first = kept.get("/api/hello").unwrap();
    assert_eq!((first.body.as_str(), first.header("x-stamp")), ("hello v1", Some("stamp-v1")));
    assert_eq!(support::request(run.port, "GET", "/new").unwrap().status, 404);

    // A route added, a handler and the scope's middleware changed: one patch.
    let mark = run.log().len();
    fixture.edit(SITE, ".route(\"/slow\", web::get().to(slow))", ".route(\"/slow\", web::get().to(slow))\n        .route(\"/new\", web::get().to(|| async { \"new route\" }))");
    fixture.edit(SITE, "\"hello v1\"", "\"hello v2\"");
    fixture.edit(SITE, "\"stamp-v1\"", "\"stamp-v2\"");
    assert_eq!(wait_for_status(&run, "/new", 200).body, "new route");
    let log = run.wait_for_log("patched `site`", mark, WAIT);
    assert!(log[mark..].contains("rebuilt actix configuration (crates/server/src/main.rs:"), "{log}");
    // The kept-alive connection is the same one, and its next request meets the new code.
    let port_before = kept.local_port();
    let after = kept.get("/api/hello").unwrap();
    assert_eq!((after.body.as_str(), after.header("x-stamp")), ("hello v2", Some("stamp-v2")), "{}", run.log());
    assert_eq!(kept.local_port(), port_before);
    // State the host made is kept, and so are the host's own routes.
    assert_eq!(run.get("/").unwrap(), "index v1 (hits 2)");
    assert_eq!(run.get("/host").unwrap(), "host v1");
    assert_eq!(run.pid(), pid);

    // A build that panics keeps the previous routes on every worker, and says why.
    let mark = run.log().len();
    fixture.edit(SITE, "pub fn configure(config: &mut web::ServiceConfig) {\n", "pub fn configure(config: &mut web::ServiceConfig) {\n    if config as *const _ as usize != 0 { panic!(\"configure broke\"); }\n");
    let log = run.wait_for_log("was not rebuilt", mark, WAIT);
    assert!(log[mark..].contains("configure broke"), "{log}");
    assert_eq!(support::request(run.port, "GET", "/new").unwrap().body, "new route");
    assert_eq!(kept.get("/api/hello").unwrap().body, "hello v2");
    // Said once (the panic, and why the routes were kept), not again by every worker.
    let log = run.log();
    assert!(log[mark..].matches("configure broke").count() <= 2, "{}", &log[mark..]);

    // The route removed (and the panic with it).
    let text = fixture.read(SITE).replace("    if config as *const _ as usize != 0 { panic!(\"configure broke\"); }\n", "");
    std::fs::write(fixture.path(SITE), text.replace("\n        .route(\"/new\", web::get().to(|| async { \"new route\" }))", "")).unwrap();
    wait_for_status(&run, "/new", 404);
    assert_eq!(kept.get("/api/hello").unwrap().header("x-stamp"), Some("stamp-v2"));
    assert_eq!(run.pid(), pid);

    // A session handler (not `Send`: `#[hot::export(local)]`) is patched like any other.
    assert_eq!(run.get("/visits").unwrap(), "visits 1 (session v1)");
    fixture.edit(SITE, "session v1", "session v2");
    run.wait_for_response("/visits", WAIT, |b| b.ends_with("(session v2)"));
    // Without `local`, the build error says what to use; the last good code keeps serving.
    let mark = run.log().len();
    fixture.edit(SITE, "#[hot::export(local)]", "#[hot::export]");
    let log = run.wait_for_log("future_is_send_or_use_hot_export_local", mark, WAIT);
    assert!(log[mark..].contains("cannot be sent between threads safely"), "{log}");
    assert!(run.get("/visits").unwrap().ends_with("(session v2)"));
    assert_eq!(run.pid(), pid);
}

#[test]
fn tower_services_and_layers_are_hot_in_one_process() {
    let fixture = Fixture::copy("tower-app");
    let run = HotRun::start(&fixture, &[]);
    let pid = run.pid();
    let mut kept = KeepAlive::connect(run.port).unwrap();
    let first = kept.get("/hello").unwrap();
    assert_eq!((first.body.as_str(), first.header("x-layer")), ("hello v1", Some("layer-v1")));
    assert_eq!(run.get("/").unwrap(), "index v1 (hits 1)");

    // A route added, a response and a layer changed.
    let mark = run.log().len();
    fixture.edit(API, "\"/pid\" =>", "\"/new\" => text(\"new route\".to_string()),\n        \"/pid\" =>");
    fixture.edit(API, "\"hello v1\"", "\"hello v2\"");
    fixture.edit(API, "\"layer-v1\"", "\"layer-v2\"");
    assert_eq!(wait_for_status(&run, "/new", 200).body, "new route");
    let log = run.wait_for_log("patched `api`", mark, WAIT);
    assert!(log[mark..].contains("rebuilt service (crates/server/src/main.rs:"), "{log}");
    let port_before = kept.local_port();
    let after = kept.get("/hello").unwrap();
    assert_eq!((after.body.as_str(), after.header("x-layer")), ("hello v2", Some("layer-v2")), "{}", run.log());
    assert_eq!(kept.local_port(), port_before);
    assert_eq!(run.get("/").unwrap(), "index v1 (hits 2)", "the state the host made is kept");

    // A build that panics keeps the previous service.
    let mark = run.log().len();
    fixture.edit(API, "    let service = ServiceBuilder::new()", "    if Arc::strong_count(&state) > 0 { panic!(\"service broke\"); }\n    let service = ServiceBuilder::new()");
    let log = run.wait_for_log("was not rebuilt", mark, WAIT);
    assert!(log[mark..].contains("service broke"), "{log}");
    assert_eq!(kept.get("/new").unwrap().body, "new route");

    // The route removed.
    let text = fixture.read(API).replace("    if Arc::strong_count(&state) > 0 { panic!(\"service broke\"); }\n", "");
    std::fs::write(fixture.path(API), text.replace("\"/new\" => text(\"new route\".to_string()),\n        ", "")).unwrap();
    wait_for_status(&run, "/new", 404);
    assert_eq!(kept.get("/hello").unwrap().header("x-layer"), Some("layer-v2"));
    assert_eq!(run.pid(), pid);

    // An edit of the host restarts it. The server holds a lock file while it runs, as an
    // embedded database would: the new program, started while the old one stops, cannot take
    // it, and is started again once the old one is gone.
    fixture.edit("crates/server/src/main.rs", "host v1", "host v2");
    run.wait_for_response("/host", WAIT, |b| b == "host v2");
    assert_ne!(run.pid(), pid);
    assert_eq!(run.get("/hello").unwrap(), "hello v2");
}

#[test]
fn a_router_generic_over_its_database_is_patched_without_a_wrapper() {
    let fixture = Fixture::copy("generic-app");
    let run = HotRun::start(&fixture, &[]);
    let pid = run.pid();
    assert_eq!(run.get("/").unwrap(), "index v1 (count 1)");
    assert!(!run.log().contains("no #[hot::export] functions"), "the runtime's rebuild makes the app hot:\n{}", run.log());

    // `router::<DB>` and `index::<DB>` are compiled in the binary: their copies there are patched.
    let mark = run.log().len();
    fixture.edit(API, "index v1", "index v2");
    fixture.edit(API, ".route(\"/pid\"", ".route(\"/new\", get(|| async { \"new route\" }))\n        .route(\"/pid\"");
    assert_eq!(wait_for_status(&run, "/new", 200).body, "new route");
    assert_eq!(run.get("/").unwrap(), "index v2 (count 2)", "same process, state kept");
    let log = run.wait_for_log("patched `api`", mark, WAIT);
    assert!(log[mark..].contains("rebuilt router (crates/api/src/lib.rs:"), "{log}");
    assert_eq!(run.pid(), pid);

    // The build closure `launch` handed to the runtime at start-up keeps what it captured and
    // its code: an edit to it restarts, and says why.
    let mark = run.log().len();
    fixture.edit(API, "move || router(database.clone())", "move || router(database.clone()).route(\"/launch\", get(|| async { \"launch\" }))");
    assert_eq!(wait_for_status(&run, "/launch", 200).body, "launch");
    let log = run.wait_for_log("restarted", mark, WAIT);
    assert!(log[mark..].contains("`api::launch`") && log[mark..].contains("only start-up code"), "{log}");
    assert_ne!(run.pid(), pid);
}

#[test]
fn an_app_binding_its_own_port_refuses_no_request_across_restarts() {
    let fixture = Fixture::copy("actix-app");
    let run = HotRun::start(&fixture, &[]);
    let port = run.port;
    assert!(run.log().contains(&format!("holding 127.0.0.1:{port} for the program")), "{}", run.log());
    let load = support::Load::start(port, "/host", 3);
    let first_pid = run.pid();
    for round in 1..=3 {
        let before = run.pid();
        fixture.edit("crates/server/src/main.rs", &format!("host v{round}"), &format!("host v{}", round + 1));
        run.wait_for_response("/host", WAIT, |b| b == format!("host v{}", round + 1));
        assert_ne!(run.pid(), before, "a host edit restarts");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (ok, failures) = load.stop();
    println!("load: {ok} requests ok, {} failed, across 3 restarts", failures.len());
    assert_ne!(run.pid(), first_pid);
    assert!(ok > 100, "the load generator ran: {ok} requests");
    assert!(failures.is_empty(), "{} of {} requests failed, e.g. {:?}\n{}", failures.len(), ok + failures.len() as u64, failures.first(), run.log());
}
