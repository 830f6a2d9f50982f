//! The ops console: server-rendered pages under `/console/…` and the JSON API under `/api/…`,
//! on the admin listener (`[http] listen`) beside `/healthz`, mounted only when
//! `[console] token` is set (otherwise every path here is a 404).
//!
//! Three doors to the same handlers:
//! - `/api/…`: scripts, `Authorization: Bearer <token>`; no cookie is involved, so no CSRF
//!   token is asked for (`auth::bearer`).
//! - `/console/api/…`: the same API for the pages' scripts, with the session cookie and the
//!   CSRF token (`auth::session_api`).
//! - `/console/…`: the pages, with the session cookie from the login form; every POST carries
//!   the CSRF token (`auth::session_page`, `csrf`).
//!
//! A page is a file here (`outbox.rs`, …) and one line in `router`.

pub mod audit;
pub mod auth;
pub mod brands;
pub mod csrf;
mod documents;
pub mod html;
pub mod orders;
pub mod outbox;
pub mod preview;
pub mod templates;
mod throttle;

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;

use crate::daemon::config::ConsoleConfig;
use crate::daemon::dispatch::Pauses;
use crate::daemon::Shared;
use crate::store::Store;

/// What every console handler reads.
pub struct Console {
    pub shared: Arc<Shared>,
    pub store: Arc<Store>,
    /// The channels the dispatcher has paused.
    pub pauses: Arc<Pauses>,
    pub keys: auth::Keys,
    /// Wrong tokens per client address (`auth::bearer`, `auth::login`).
    pub throttle: throttle::Throttle,
    pub session_hours: u64,
    /// How the order search reads a national phone number (`[console] phone_country_code`).
    pub phone_country_code: String,
}

pub type State = Arc<Console>;

impl Console {
    /// The console of `cfg`, or `None` when it is off (no token).
    pub fn new(cfg: &ConsoleConfig, shared: Arc<Shared>, store: Arc<Store>, pauses: Arc<Pauses>) -> Option<Console> {
        let token = cfg.enabled_token()?;
        Some(Console {
            shared,
            store,
            pauses,
            keys: auth::Keys::new(token),
            throttle: throttle::Throttle::new(cfg.wrong_tokens_per_minute),
            session_hours: cfg.session_hours,
            phone_country_code: cfg.phone_country_code.clone(),
        })
    }
}

/// Every console route. The API is mounted twice (bearer for scripts, session + CSRF for the
/// pages' scripts); the pages once.
pub fn router(console: Console) -> Router {
    let state: State = Arc::new(console);
    let api = Router::new()
        .route("/outbox", get(outbox::api))
        .route("/outbox/{id}/retry", post(outbox::api_retry))
        .route("/outbox/{id}/cancel", post(outbox::api_cancel))
        .route("/audit", get(audit::api))
        .route("/orders", get(orders::api_search))
        .route("/orders/{order_id}/timeline", get(orders::api_timeline))
        .merge(templates::api())
        .merge(brands::api());
    let pages = Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/orders", get(orders::page_search))
        .route("/console/orders/{order_id}", get(orders::page_timeline))
        .route("/console/outbox", get(outbox::page))
        .route("/console/outbox/{id}/retry", post(outbox::page_retry))
        .route("/console/outbox/{id}/cancel", post(outbox::page_cancel))
        .route("/console/logout", post(auth::logout))
        .merge(templates::pages())
        .merge(brands::pages())
        .route_layer(from_fn_with_state(Arc::clone(&state), auth::session_page));
    Router::new()
        .nest("/api", api.clone().route_layer(from_fn_with_state(Arc::clone(&state), auth::bearer)))
        .nest("/console/api", api.route_layer(from_fn_with_state(Arc::clone(&state), auth::session_api)))
        .merge(pages)
        .route("/console/login", get(auth::login_form).post(auth::login))
        .route("/console/static/{name}", get(html::asset))
        .with_state(state)
}

async fn index() -> Response {
    html::see_other("/console/outbox")
}

/// A JSON answer.
pub fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_string(body) {
        Ok(text) => (status, [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], text).into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `{"error": message}`.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body).into_response()
}

/// The wall clock, for sessions and the audit: when a person did something is wall time,
/// whatever clock the daemon decides on (the demo's runs fast).
pub fn wall_now() -> belofte_core::domain::Instant {
    chrono::Utc::now()
}
