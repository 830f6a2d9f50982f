//! `/healthz` (the process answers), `/readyz` (broker, database and dispatcher usable),
//! `/metrics` (Prometheus text), `/orders/{id}/timeline` (each message's attempts and
//! provider statuses with their times, JSON), and the console (`crate::console`, when
//! `[console] token` is set). The admin port: keep it inside.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use super::Shared;
use crate::kafka::Ingest;
use crate::store::Store;

#[derive(Clone)]
struct App {
    shared: Arc<Shared>,
    ingest: Arc<Ingest>,
    store: Arc<Store>,
    shutdown: watch::Receiver<bool>,
}

pub async fn serve(
    listen: &str,
    shared: Arc<Shared>,
    ingest: Arc<Ingest>,
    store: Arc<Store>,
    console: Option<Router>,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), std::io::Error> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = App { shared, ingest, store, shutdown: shutdown.clone() };
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/orders/{id}/timeline", get(timeline))
        .with_state(app);
    // Off: not one of its paths exists (404).
    let router = match console {
        Some(console) => router.merge(console),
        None => router,
    };
    Ok((addr, serve_until_shutdown(listener, router, shutdown, "http server stopped")))
}

/// Serve `router` on `listener` until `shutdown` turns true (both listeners end this way).
pub(super) fn serve_until_shutdown(
    listener: tokio::net::TcpListener,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
    stopped: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // With the peer's address: the console counts wrong tokens per address.
        let served = axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "{stopped}");
        }
    })
}

async fn readiness(app: &App) -> Vec<&'static str> {
    let mut problems = Vec::new();
    if *app.shutdown.borrow() {
        problems.push("shutting down");
    }
    if !app.ingest.is_healthy() {
        problems.push("kafka broker unreachable");
    }
    if !app.store.ping().await {
        problems.push("database unreachable");
    }
    problems
}

async fn readyz(State(app): State<App>) -> impl IntoResponse {
    let problems = readiness(&app).await;
    app.shared.metrics.set("belofte_ready", &[], if problems.is_empty() { 1.0 } else { 0.0 });
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", problems.join(", ")))
    }
}

async fn metrics(State(app): State<App>) -> impl IntoResponse {
    app.shared.metrics.set("belofte_consumer_lag", &[], app.ingest.lag() as f64);
    app.shared.metrics.set_total("belofte_render_fallbacks_total", &[], app.shared.live.fallbacks() as f64);
    let ready = readiness(&app).await.is_empty();
    app.shared.metrics.set("belofte_ready", &[], if ready { 1.0 } else { 0.0 });
    if let Ok(counts) = app.store.outbox_counts().await {
        app.shared.metrics.reset("belofte_outbox_depth");
        for (channel, status, n) in counts {
            app.shared.metrics.set("belofte_outbox_depth", &[("channel", &channel), ("status", &status)], n as f64);
        }
    }
    let now = app.shared.clock.now();
    if let Ok(overdue) = app.store.outbox_overdue(now).await {
        // Every channel has a series, 0 when nothing is due: alerts compare, never miss one.
        for channel in ["email", "sms", "event"] {
            app.shared.metrics.set("belofte_outbox_due", &[("channel", channel)], 0.0);
            app.shared.metrics.set("belofte_outbox_oldest_seconds", &[("channel", channel)], 0.0);
        }
        for (channel, n, oldest) in overdue {
            let waited = (now - oldest).num_milliseconds().max(0) as f64 / 1000.0;
            app.shared.metrics.set("belofte_outbox_due", &[("channel", &channel)], n as f64);
            app.shared.metrics.set("belofte_outbox_oldest_seconds", &[("channel", &channel)], waited);
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.shared.metrics.render())
}

async fn timeline(State(app): State<App>, Path(id): Path<String>) -> impl IntoResponse {
    let json = |body: String| ([(header::CONTENT_TYPE, "application/json")], body);
    match app.store.timeline(&id).await {
        Ok(entries) => match serde_json::to_string(&entries) {
            Ok(body) => (StatusCode::OK, json(body)),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, json(serde_json::json!({ "error": e.to_string() }).to_string())),
        },
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, json(serde_json::json!({ "error": e.to_string() }).to_string())),
    }
}
