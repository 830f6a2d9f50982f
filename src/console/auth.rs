//! Who may use the console. Scripts send `Authorization: Bearer <token>` (compared in
//! constant time). People log in at `/console/login` with their name (for the audit) and the
//! token, and get a session cookie: `name.expiry.mac`, the MAC an HMAC-SHA256 of name and
//! expiry under a key derived from the token — nothing is kept on the server, and changing
//! the token ends every session. The cookie is `HttpOnly` (no script reads it),
//! `SameSite=Strict` (no other site's page sends it) and `Path=/console`.
//!
//! Without a valid credential: `/api/…` → 401 JSON; a page → a redirect to the login form
//! (GET) or 401 (anything else).
//!
//! An address that keeps giving wrong tokens is refused with 429 for a while (`throttle`).

use axum::body::Bytes;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ring::hmac;

use super::{csrf, html, json_error, wall_now};
use crate::daemon::hooks::{form_pairs, same_secret};

pub const COOKIE: &str = "belofte_console";
/// Names longer than this are refused at login (they go into every audit entry).
const NAME_MAX: usize = 64;

/// Who is acting, for the audit: a logged-in person's name, or `api` (a bearer token; a
/// script may name itself with `X-Console-User`, recorded as `api:<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who(pub String);

/// A logged-in person on a page: who, and the CSRF token their forms must carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub who: String,
    pub csrf: String,
}

/// The keys derived from the console token.
pub struct Keys {
    /// SHA-256 of the token: compared with the digest of what is given, so neither the
    /// length nor the bytes of the token leak through timing.
    token_digest: Vec<u8>,
    session: hmac::Key,
    csrf: hmac::Key,
}

impl Keys {
    pub fn new(token: &str) -> Keys {
        let base = hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes());
        let derive = |label: &[u8]| hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&base, label).as_ref());
        Keys {
            token_digest: ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref().to_vec(),
            session: derive(b"belofte console session v1"),
            csrf: derive(b"belofte console csrf v1"),
        }
    }

    pub fn token_matches(&self, given: &str) -> bool {
        same_secret(ring::digest::digest(&ring::digest::SHA256, given.as_bytes()).as_ref(), &self.token_digest)
    }

    /// The cookie value of a session of `who` ending at `expires` (Unix seconds).
    pub fn session_value(&self, who: &str, expires: i64) -> String {
        let body = format!("{}.{expires}", hex(who.as_bytes()));
        let tag = hex(hmac::sign(&self.session, body.as_bytes()).as_ref());
        format!("{body}.{tag}")
    }

    /// Who a cookie value belongs to, if its MAC is ours and it has not expired at `now`.
    pub fn session_who(&self, value: &str, now: i64) -> Option<String> {
        let (body, tag) = value.rsplit_once('.')?;
        let (name, expires) = body.split_once('.')?;
        hmac::verify(&self.session, body.as_bytes(), &unhex(tag)?).ok()?;
        if expires.parse::<i64>().ok()? <= now {
            return None;
        }
        String::from_utf8(unhex(name)?).ok()
    }

    /// The CSRF token of a session: an HMAC of its cookie value under its own key.
    pub fn csrf_of(&self, session_value: &str) -> String {
        hex(hmac::sign(&self.csrf, session_value.as_bytes()).as_ref())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

/// The value of our cookie in a request's `Cookie` headers.
fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// The session a request carries, if it is valid now.
fn session(state: &super::State, headers: &HeaderMap) -> Option<Session> {
    let value = cookie_value(headers)?;
    let who = state.keys.session_who(value, wall_now().timestamp())?;
    Some(Session { who, csrf: state.keys.csrf_of(value) })
}

/// 429: this address has given too many wrong tokens; `Retry-After` says how long to wait.
fn too_many(wait: Duration, html_page: Option<&str>) -> Response {
    let secs = wait.as_secs().max(1);
    let mut r = match html_page {
        Some(next) => html::login(StatusCode::TOO_MANY_REQUESTS, Some(&format!("Too many wrong tokens from your address: try again in {secs} s.")), next, ""),
        None => json_error(StatusCode::TOO_MANY_REQUESTS, &format!("too many wrong tokens from this address: try again in {secs} s")),
    };
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// Count a wrong token of `addr`; the one that uses up its tries is an alert (someone is
/// guessing, or a script runs with an old token).
fn wrong_token(state: &super::State, addr: IpAddr) {
    if state.throttle.note_wrong(addr, Instant::now()) {
        state.shared.metrics.inc("belofte_console_throttled_total", &[]);
        tracing::error!(%addr, "ALERT: too many wrong console tokens from one address; refused with 429 for a minute");
    }
}

/// `/api/…`: a bearer token, nothing else.
pub async fn bearer(State(state): State<super::State>, ConnectInfo(peer): ConnectInfo<SocketAddr>, mut req: Request, next: Next) -> Response {
    let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let addr = peer.ip();
    if given.is_some() {
        if let Some(wait) = state.throttle.wait(addr, Instant::now()) {
            return too_many(wait, None);
        }
    }
    match given {
        Some(token) if state.keys.token_matches(token.trim()) => {
            let name = req.headers().get("x-console-user").and_then(|v| v.to_str().ok()).map(str::trim).filter(|n| valid_name(n));
            let who = name.map_or_else(|| "api".to_string(), |n| format!("api:{n}"));
            req.extensions_mut().insert(Who(who));
            next.run(req).await
        }
        Some(_) => {
            tracing::warn!(path = %req.uri().path(), %addr, "console API called with a wrong token (401)");
            wrong_token(&state, addr);
            unauthorized_json()
        }
        None => unauthorized_json(),
    }
}

fn unauthorized_json() -> Response {
    let mut r = json_error(StatusCode::UNAUTHORIZED, "unauthorized: send Authorization: Bearer <console token>");
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"belofte console\""));
    r
}

/// `/console/api/…`: the pages' scripts, with the session cookie and, for every change, the
/// CSRF token in `X-CSRF-Token`.
pub async fn session_api(State(state): State<super::State>, mut req: Request, next: Next) -> Response {
    let Some(s) = session(&state, req.headers()) else {
        return json_error(StatusCode::UNAUTHORIZED, "unauthorized: log in at /console/login");
    };
    if csrf::changes_state(req.method()) {
        if let Err(refused) = csrf::check_header(req.headers(), &s) {
            return refused;
        }
    }
    req.extensions_mut().insert(Who(s.who.clone()));
    req.extensions_mut().insert(s);
    next.run(req).await
}

/// The pages: the session cookie; a change also needs the CSRF token (`X-CSRF-Token`, or a
/// `csrf` field of the form).
pub async fn session_page(State(state): State<super::State>, req: Request, next: Next) -> Response {
    let Some(s) = session(&state, req.headers()) else {
        if req.method() == Method::GET || req.method() == Method::HEAD {
            let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/console");
            return html::see_other(&format!("/console/login?next={}", url_escape(path)));
        }
        return (StatusCode::UNAUTHORIZED, "unauthorized: log in at /console/login\n").into_response();
    };
    let mut req = if csrf::changes_state(req.method()) {
        match csrf::check_request(req, &s).await {
            Ok(req) => req,
            Err(refused) => return refused,
        }
    } else {
        req
    };
    req.extensions_mut().insert(Who(s.who.clone()));
    req.extensions_mut().insert(s);
    next.run(req).await
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= NAME_MAX && !name.chars().any(char::is_control)
}

/// Percent-encodes everything but unreserved characters and `/` (a `next` path).
fn url_escape(s: &str) -> String {
    html::percent_encode(s, b"/")
}

/// Where to go after the login: a console path of ours, never another site (`//evil`).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/console") && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/console/outbox",
    }
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `GET /console/login`.
pub async fn login_form(RawQuery(query): RawQuery) -> Response {
    let pairs = query.as_deref().map(form_pairs).unwrap_or_default();
    html::login(StatusCode::OK, None, safe_next(field(&pairs, "next")), "")
}

/// `POST /console/login` (form: `name`, `token`, `next`). No session exists yet, so the
/// request's origin is what is checked (a login forced by another site is refused).
pub async fn login(State(state): State<super::State>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = csrf::check_origin(&headers) {
        return refused;
    }
    let pairs = form_pairs(&String::from_utf8_lossy(&body));
    let next = safe_next(field(&pairs, "next"));
    let addr = peer.ip();
    if let Some(wait) = state.throttle.wait(addr, Instant::now()) {
        return too_many(wait, Some(next));
    }
    let name = field(&pairs, "name").map(str::trim).unwrap_or("");
    if !valid_name(name) {
        return html::login(StatusCode::BAD_REQUEST, Some(&format!("Give your name (1 to {NAME_MAX} characters): it is recorded with what you do.")), next, name);
    }
    if !state.keys.token_matches(field(&pairs, "token").unwrap_or("").trim()) {
        tracing::warn!(who = %name, %addr, "console login with a wrong token (401)");
        wrong_token(&state, addr);
        return html::login(StatusCode::UNAUTHORIZED, Some("That token is not the console's."), next, name);
    }
    let hours = i64::try_from(state.session_hours).unwrap_or(24).min(24 * 365);
    let expires = wall_now().timestamp() + hours * 3600;
    let cookie = format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={}", state.keys.session_value(name, expires), hours * 3600);
    tracing::info!(who = %name, "console login");
    let mut r = html::see_other(next);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /console/logout`: the cookie is dropped. (A copy of it stays valid until it expires;
/// changing the token ends every session at once.)
pub async fn logout(axum::Extension(s): axum::Extension<Session>) -> Response {
    tracing::info!(who = %s.who, "console logout");
    let mut r = html::see_other("/console/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("belofte_console=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_cookie_names_its_person_until_it_expires_and_cannot_be_forged() {
        let keys = Keys::new("console-token-0123456789");
        let value = keys.session_value("Anna de Vries", 1_000);
        assert_eq!(keys.session_who(&value, 999).as_deref(), Some("Anna de Vries"));
        assert_eq!(keys.session_who(&value, 1_000), None, "expired");
        let later = value.replacen(".1000.", ".9999.", 1);
        assert_eq!(keys.session_who(&later, 999), None, "the expiry is under the MAC");
        let other = Keys::new("another-token-0123456789");
        assert_eq!(other.session_who(&value, 999), None, "a new token ends every session");
        assert_eq!(keys.session_who("garbage", 0), None);
        assert_ne!(keys.csrf_of(&value), keys.csrf_of(&keys.session_value("Bob", 1_000)));
    }

    #[test]
    fn tokens_compare_whole() {
        let keys = Keys::new("console-token-0123456789");
        assert!(keys.token_matches("console-token-0123456789"));
        assert!(!keys.token_matches("console-token-012345678"));
        assert!(!keys.token_matches(""));
    }

    #[test]
    fn the_login_only_sends_people_back_into_the_console() {
        assert_eq!(safe_next(Some("/console/orders?q=1")), "/console/orders?q=1");
        assert_eq!(safe_next(Some("//evil.example/console")), "/console/outbox");
        assert_eq!(safe_next(Some("https://evil.example/")), "/console/outbox");
        assert_eq!(safe_next(None), "/console/outbox");
    }
}
