//! The public listener (`[http] public_listen`): the only port meant for the internet. It
//! serves two hooks and nothing else — no metrics, no health, no admin.
//!
//! - `POST /hooks/twilio/status`: Twilio's status callback. The `X-Twilio-Signature` is
//!   checked against `{public_base_url}/hooks/twilio/status?{query}` and the POST
//!   parameters with the account's auth token; missing or wrong, or an `AccountSid` that is
//!   not ours → 403, nothing recorded. A message we do not know → 200 and a log line, so
//!   that Twilio does not retry it forever. A store failure → 500: Twilio retries.
//! - `POST /hooks/bounce[?recipient=ADDR]`: one raw bounce or complaint, as an MTA would
//!   pipe it to `belofte bounce`. Requires `Authorization: Bearer <email.bounce_hook_token>`
//!   (401 without, 403 when wrong or when no token is configured); the VERP token's MAC is
//!   what makes a bounce name a message. 200 for recorded and ignored, 500 for a store
//!   failure (the sender should retry).
//!
//! Bodies are capped (64 KiB for a callback, 4 MiB for a bounce: 413 beyond). No input can
//! make a handler panic: every parse returns a value or an error.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use belofte_feedback::{verify_twilio_signature, StatusCallback};
use tokio::sync::watch;

use super::config::TWILIO_STATUS_PATH;
use super::feedback::{Feedback, Recorded};

/// Twilio's callback forms are a few hundred bytes.
const MAX_CALLBACK_BYTES: usize = 64 * 1024;
/// Bounces quote (part of) the returned message; only the first MiB is read anyway.
const MAX_BOUNCE_HTTP_BYTES: usize = 4 * 1024 * 1024;

/// What the hooks need besides the recorder.
#[derive(Clone)]
pub struct HookSettings {
    /// The auth token Twilio signs with; without one every callback is refused.
    pub twilio_auth_token: Option<String>,
    pub twilio_account_sid: String,
    /// `{public_base_url}/hooks/twilio/status`.
    pub twilio_status_url: String,
    pub bounce_token: Option<String>,
}

#[derive(Clone)]
struct Hooks {
    feedback: Arc<Feedback>,
    settings: Arc<HookSettings>,
}

pub async fn serve(
    listen: &str,
    feedback: Arc<Feedback>,
    settings: HookSettings,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), std::io::Error> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let hooks = Hooks { feedback, settings: Arc::new(settings) };
    let router = Router::new()
        .route(TWILIO_STATUS_PATH, post(twilio_status).layer(DefaultBodyLimit::max(MAX_CALLBACK_BYTES)))
        .route("/hooks/bounce", post(bounce).layer(DefaultBodyLimit::max(MAX_BOUNCE_HTTP_BYTES)))
        .with_state(hooks);
    Ok((addr, super::http::serve_until_shutdown(listener, router, shutdown, "public http server stopped")))
}

/// `a=1&b=2` as decoded pairs (`+` is a space), in order; never fails.
pub fn form_pairs(encoded: &str) -> Vec<(String, String)> {
    let Ok(mut url) = reqwest::Url::parse("http://form.invalid/") else {
        return Vec::new();
    };
    url.set_query(Some(encoded));
    url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn count(h: &Hooks, source: &str, result: &str) {
    h.feedback.shared.metrics.inc("belofte_callbacks_total", &[("source", source), ("result", result)]);
}

async fn twilio_status(State(h): State<Hooks>, RawQuery(query): RawQuery, headers: HeaderMap, body: Bytes) -> (StatusCode, &'static str) {
    let forbidden = |why: &str| {
        count(&h, "twilio", "forbidden");
        tracing::warn!(why, "status callback refused (403)");
        (StatusCode::FORBIDDEN, "forbidden\n")
    };
    let Ok(body) = std::str::from_utf8(&body) else {
        return forbidden("body is not UTF-8");
    };
    let params = form_pairs(body);
    // Twilio signs the URL exactly as it called it: ours, with the query it was given.
    let url = match query.as_deref() {
        Some(q) => format!("{}?{q}", h.settings.twilio_status_url),
        None => h.settings.twilio_status_url.clone(),
    };
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok());
    let Some(token) = h.settings.twilio_auth_token.as_deref() else {
        return forbidden("no sms.twilio.auth_token configured");
    };
    if let Err(e) = verify_twilio_signature(token, &url, &params, signature) {
        return forbidden(&e.to_string());
    }
    let cb = match StatusCallback::from_form(&params) {
        Ok(cb) => cb,
        Err(e) => {
            count(&h, "twilio", "bad_request");
            tracing::warn!(error = %e, "signed status callback without what we record");
            return (StatusCode::BAD_REQUEST, "bad request\n");
        }
    };
    if cb.account_sid.as_deref() != Some(h.settings.twilio_account_sid.as_str()) {
        // Signed with our token, but about another (sub)account's message.
        return forbidden("AccountSid is not ours");
    }
    let key = query.as_deref().map(form_pairs).and_then(|q| q.into_iter().find(|(k, _)| k == "key").map(|(_, v)| v));
    let Some(key) = key else {
        count(&h, "twilio", Recorded::UnknownMessage.label());
        tracing::warn!(sid = %cb.message_sid, "status callback without a message key in its URL; ignored");
        return (StatusCode::OK, "");
    };
    match h.feedback.sms_status(&key, &cb).await {
        Ok(r) => {
            count(&h, "twilio", r.label());
            (StatusCode::OK, "")
        }
        Err(e) => {
            count(&h, "twilio", "error");
            tracing::error!(%key, error = %e, "cannot record a status callback; Twilio will retry");
            (StatusCode::INTERNAL_SERVER_ERROR, "try again later\n")
        }
    }
}

/// Compares without stopping at the first differing byte (the token is a secret).
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn bounce(State(h): State<Hooks>, RawQuery(query): RawQuery, headers: HeaderMap, body: Bytes) -> (StatusCode, &'static str) {
    let Some(expected) = h.settings.bounce_token.as_deref().filter(|t| !t.is_empty()) else {
        count(&h, "bounce", "forbidden");
        return (StatusCode::FORBIDDEN, "the bounce hook is off: set email.bounce_hook_token\n");
    };
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else {
        count(&h, "bounce", "unauthorized");
        return (StatusCode::UNAUTHORIZED, "unauthorized\n");
    };
    if !same_secret(given.trim().as_bytes(), expected.as_bytes()) {
        count(&h, "bounce", "forbidden");
        tracing::warn!("bounce hook called with a wrong token (403)");
        return (StatusCode::FORBIDDEN, "forbidden\n");
    }
    let recipient = query.as_deref().map(form_pairs).and_then(|q| q.into_iter().find(|(k, _)| k == "recipient").map(|(_, v)| v));
    match h.feedback.bounce(&body, recipient.as_deref()).await {
        Ok(r) => {
            count(&h, "bounce", r.label());
            (StatusCode::OK, match r {
                Recorded::Recorded => "recorded\n",
                Recorded::Unchanged => "unchanged\n",
                Recorded::UnknownMessage => "unknown message\n",
                Recorded::Ignored => "ignored\n",
            })
        }
        Err(e) => {
            count(&h, "bounce", "error");
            tracing::error!(error = %e, "cannot record a bounce");
            (StatusCode::INTERNAL_SERVER_ERROR, "try again later\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        assert_eq!(
            form_pairs("To=%2B31612345511&Body=a+b&Empty="),
            vec![("To".into(), "+31612345511".into()), ("Body".into(), "a b".into()), ("Empty".into(), String::new())]
        );
        assert!(form_pairs("").is_empty());
        // Broken escapes are kept as they are, never an error.
        assert_eq!(form_pairs("a=%zz"), vec![("a".into(), "%zz".into())]);
    }

    #[test]
    fn secrets_compare() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
