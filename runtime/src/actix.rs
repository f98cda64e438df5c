//! [`configure`]: the routes, scopes, guards and middleware of an actix-web app, configured by
//! boundary code and configured again by the newest code after each applied patch, on every
//! worker, without restarting the server or closing a connection.
//!
//! actix-web builds an `App` once per worker thread, and its services are not `Send`: no
//! single value can be swapped for every worker, as `hot::axum::router` does for axum. What
//! [`configure`] registers instead is a default service that, on each worker, builds the app's
//! routes from the newest code the first time a request reaches it after a patch, and passes
//! every request to them (`ServiceRequest` as it is: the outer `App`'s data, the connection's
//! data, its extensions and middleware all stay). Built and checked like this:
//!
//! - the newest routes are those `build` configures into a `web::scope("")` of a throw-away
//!   `App`, whose routing service is taken out by a middleware the moment it is made;
//! - a request that started on the old routes finishes on them (each holds a reference);
//! - a kept-alive connection's next request goes to the new routes;
//! - a build that panics, or whose services fail to start, keeps the previous routes; cargo
//!   hot shows why (the build is run once on the agent's thread right after the patch, so that
//!   its panic is reported with the patch).
//!
//! Routes the outer `App` registers itself (`App::new().route(...)`) come first and are not
//! hot; so do the middleware it wraps around everything (`App::wrap`). The hot routes are
//! the app's default service: an `App::default_service` set after it would replace them.
//!
//! Not run by cargo hot (or in a release build), `build` configures the app directly, as
//! `App::configure(build)` would.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::rc::Rc;

use actix_service::boxed::{rc_service, RcService};
use actix_service::{IntoServiceFactory, Service, ServiceFactory, Transform};
use ::actix_web::dev::{AppConfig, ServiceRequest, ServiceResponse};
use ::actix_web::web::{self, ServiceConfig};
use ::actix_web::{App, Error, HttpResponse};

type Routes = RcService<ServiceRequest, ServiceResponse, Error>;
type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// The app's routes, configured by `build` (a `#[hot::export]` function taking
/// `&mut web::ServiceConfig`) now and again after each applied patch. Use it where you would
/// use `App::configure`:
///
/// ```ignore
/// HttpServer::new(move || {
///     App::new()
///         .app_data(state.clone())
///         .configure(hot::actix::configure(routes::configure))
/// })
/// ```
///
/// `build` can register routes, resources, scopes with guards and middleware
/// (`web::scope("/api").wrap(...)`), app data and a default service of its own.
#[track_caller]
pub fn configure(build: fn(&mut ServiceConfig)) -> impl FnOnce(&mut ServiceConfig) + Clone {
    let location = Location::caller();
    move |config: &mut ServiceConfig| {
        if !crate::lifecycle::patches_possible() {
            build(config);
            return;
        }
        check_after_patches(build, location);
        config.default_service(HotRoutes { build });
    }
}

/// The patch (see `crate::version`) whose routes failed the check after it: the workers keep
/// theirs.
static FAILED_VERSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The build functions whose check is registered.
static CHECKED_BUILDS: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

/// Registers, once per build function, a check run after each patch on the agent's thread:
/// the new `build` configures an app and its services are started, in an actix system of the
/// check's own, so that a panic or a service that fails to start is reported with the patch.
/// The workers then keep their routes (each tries the new ones again on its next request, and
/// fails the same way).
fn check_after_patches(build: fn(&mut ServiceConfig), location: &'static Location<'static>) {
    let mut checked = CHECKED_BUILDS.lock().unwrap_or_else(|p| p.into_inner());
    if checked.contains(&(build as usize)) {
        return;
    }
    checked.push(build as usize);
    let name = crate::lifecycle::name_of(location);
    let registration = crate::lifecycle::register("actix configuration", name, move || {
        let system = ::actix_web::rt::System::new();
        system.block_on(routes_of(build, AppConfig::default())).map(|_routes| None).map_err(|why| {
            // The workers would fail the same way, each printing the same panic: they keep
            // their routes without trying (the next patch tries again).
            FAILED_VERSION.store(crate::version(), std::sync::atomic::Ordering::SeqCst);
            format!("{why}; every worker keeps the previous routes")
        })
    });
    // Checked for the life of the process, as the workers' routes are rebuilt.
    std::mem::forget(registration);
}

/// The default service [`configure`] registers: on each worker, the newest routes.
struct HotRoutes {
    build: fn(&mut ServiceConfig),
}

impl ServiceFactory<ServiceRequest> for HotRoutes {
    type Response = ServiceResponse;
    type Error = Error;
    type Config = ();
    type Service = Newest;
    type InitError = ();
    type Future = LocalFuture<Result<Newest, ()>>;

    fn new_service(&self, _: ()) -> Self::Future {
        let build = self.build;
        Box::pin(async move {
            let version = crate::version();
            let routes = routes_of(build, AppConfig::default()).await.map_err(|why| eprintln!("[hot] cannot configure the routes: {why}"))?;
            Ok(Newest(Rc::new(State { build, version: Cell::new(version), rebuilding: Cell::new(false), routes: RefCell::new(routes) })))
        })
    }
}

/// One worker's routes, and the patch they were built after.
pub struct Newest(Rc<State>);

struct State {
    build: fn(&mut ServiceConfig),
    version: Cell<u64>,
    rebuilding: Cell<bool>,
    routes: RefCell<Routes>,
}

impl Service<ServiceRequest> for Newest {
    type Response = ServiceResponse;
    type Error = Error;
    type Future = LocalFuture<Result<ServiceResponse, Error>>;

    actix_service::always_ready!();

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let version = crate::version();
            if version != 0 && FAILED_VERSION.load(std::sync::atomic::Ordering::SeqCst) == version {
                state.version.set(version);
            }
            // The first request after a patch builds the new routes; requests meanwhile use
            // the old ones.
            if state.version.get() != version && !state.rebuilding.replace(true) {
                // Ends the rebuild however this future ends: dropped mid-way (its client went
                // away) or unwinding, the next request tries again.
                let _rebuilding = Rebuilding(&state.rebuilding);
                match routes_of(state.build, request.app_config().clone()).await {
                    Ok(routes) => *state.routes.borrow_mut() = routes,
                    Err(why) => eprintln!("[hot] the new routes could not be configured, the previous ones serve: {why}"),
                }
                state.version.set(version);
            }
            // An outer scope's fallback reaches this service with part of the path matched:
            // the hot routes match whole paths only.
            if request.match_info().unprocessed().len() != request.match_info().as_str().len() {
                return Ok(request.into_response(HttpResponse::NotFound()));
            }
            let routes = state.routes.borrow().clone();
            routes.call(request).await
        })
    }
}

/// Clears a worker's rebuild flag when dropped.
struct Rebuilding<'a>(&'a Cell<bool>);

impl Drop for Rebuilding<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// The routing service of an app whose routes `build` configures, as its first worker would
/// make it.
async fn routes_of(build: fn(&mut ServiceConfig), config: AppConfig) -> Result<Routes, String> {
    let taken: Rc<RefCell<Option<Routes>>> = Rc::default();
    let starting = catch_unwind(AssertUnwindSafe(|| {
        App::new().service(web::scope("").configure(build)).wrap(Take(taken.clone())).into_factory().new_service(config)
    }))
    .map_err(|panic| format!("the routes {}", crate::lifecycle::panic_message(&*panic)))?;
    let _app = starting.await.map_err(|()| "a service of the new routes failed to start".to_string())?;
    let routes = taken.borrow_mut().take();
    routes.ok_or_else(|| "the new app made no routing service".to_string())
}

/// A middleware that keeps the service it wraps: the app's routing service.
struct Take(Rc<RefCell<Option<Routes>>>);

impl<S> Transform<S, ServiceRequest> for Take
where
    S: Service<ServiceRequest, Response = ServiceResponse, Error = Error> + 'static,
    S::Future: 'static,
{
    type Response = ServiceResponse;
    type Error = Error;
    type Transform = Forward;
    type InitError = ();
    type Future = std::future::Ready<Result<Forward, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let service = rc_service(service);
        *self.0.borrow_mut() = Some(service.clone());
        std::future::ready(Ok(Forward(service)))
    }
}

struct Forward(Routes);

impl Service<ServiceRequest> for Forward {
    type Response = ServiceResponse;
    type Error = Error;
    type Future = LocalFuture<Result<ServiceResponse, Error>>;

    actix_service::always_ready!();

    fn call(&self, request: ServiceRequest) -> Self::Future {
        Box::pin(self.0.call(request))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ::actix_web::{guard, test, web, App, HttpResponse};

    use super::*;

    /// Which routes the "newest code" configures: 1 before the simulated patch, 2 after.
    static GENERATION: AtomicUsize = AtomicUsize::new(1);

    fn routes(config: &mut ServiceConfig) {
        if GENERATION.load(Ordering::SeqCst) == 1 {
            config.route("/", web::get().to(|| async { "index v1" })).route("/old", web::get().to(|| async { "old route" }));
        } else {
            config
                .route("/", web::get().to(|| async { "index v2" }))
                .service(
                    web::scope("/api")
                        .wrap_fn(|request, service| {
                            let call = service.call(request);
                            async move {
                                let mut response = call.await?;
                                response.headers_mut().insert(
                                    ::actix_web::http::header::HeaderName::from_static("x-stamp"),
                                    ::actix_web::http::header::HeaderValue::from_static("v2"),
                                );
                                Ok(response)
                            }
                        })
                        .route("/hello", web::get().to(|| async { "hello" })),
                )
                .service(web::resource("/admin").guard(guard::Header("x-admin", "yes")).to(|| async { HttpResponse::Ok().body("admin") }));
        }
    }

    async fn body_of<S>(app: &S, request: test::TestRequest) -> (u16, String, Option<String>)
    where
        S: Service<::actix_http::Request, Response = ServiceResponse, Error = Error>,
    {
        let response = test::call_service(app, request.to_request()).await;
        let status = response.status().as_u16();
        let stamp = response.headers().get("x-stamp").map(|v| v.to_str().unwrap().to_string());
        let body = test::read_body(response).await;
        (status, String::from_utf8(body.to_vec()).unwrap(), stamp)
    }

    #[::actix_web::test]
    async fn every_request_reaches_the_newest_routes_after_a_patch_and_outer_routes_stay() {
        let app = test::init_service(
            App::new().route("/pid", web::get().to(|| async { "outer" })).default_service(HotRoutes { build: routes }),
        )
        .await;
        assert_eq!(body_of(&app, test::TestRequest::get().uri("/")).await.1, "index v1");
        assert_eq!(body_of(&app, test::TestRequest::get().uri("/old")).await.1, "old route");
        assert_eq!(body_of(&app, test::TestRequest::get().uri("/api/hello")).await.0, 404);

        // What a patch does: the newest code configures other routes, and the version moves.
        GENERATION.store(2, Ordering::SeqCst);
        crate::lifecycle::after_patch();
        assert_eq!(body_of(&app, test::TestRequest::get().uri("/")).await.1, "index v2", "a changed route");
        assert_eq!(body_of(&app, test::TestRequest::get().uri("/old")).await.0, 404, "a removed route");
        let (status, body, stamp) = body_of(&app, test::TestRequest::get().uri("/api/hello")).await;
        assert_eq!((status, body.as_str(), stamp.as_deref()), (200, "hello", Some("v2")), "an added scope with its middleware");
        assert_eq!(body_of(&app, test::TestRequest::get().uri("/admin")).await.0, 404, "guarded");
        assert_eq!(body_of(&app, test::TestRequest::get().uri("/admin").insert_header(("x-admin", "yes"))).await.1, "admin");
        assert_eq!(body_of(&app, test::TestRequest::get().uri("/pid")).await.1, "outer", "the outer app's own routes stay");
    }

    #[::actix_web::test]
    async fn a_build_that_panics_is_an_error_and_routes_are_built_whole() {
        fn panics(_: &mut ServiceConfig) {
            panic!("no DATABASE_URL");
        }
        let err = routes_of(panics, AppConfig::default()).await.err().expect("a panic is an error");
        assert!(err.contains("no DATABASE_URL"), "{err}");
        fn two(config: &mut ServiceConfig) {
            config.route("/a", web::get().to(|| async { "a" })).route("/b", web::get().to(|| async { "b" }));
        }
        assert!(routes_of(two, AppConfig::default()).await.is_ok());
    }

    #[::actix_web::test]
    async fn outside_cargo_hot_the_build_configures_the_app_itself() {
        assert!(!crate::is_hot());
        fn plain(config: &mut ServiceConfig) {
            config.route("/plain", web::get().to(|| async { "plain" }));
        }
        let app = test::init_service(App::new().configure(configure(plain))).await;
        assert_eq!(body_of(&app, test::TestRequest::get().uri("/plain")).await.1, "plain");
        let checked = CHECKED_BUILDS.lock().unwrap().clone();
        assert!(!checked.contains(&(plain as fn(&mut ServiceConfig) as usize)), "no check is registered outside cargo hot");
    }
}
