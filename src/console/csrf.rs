//! Cross-site request forgery: another site's page must not make a logged-in browser retry,
//! cancel or publish. Every state-changing request that a cookie authenticates carries the
//! session's CSRF token (`X-CSRF-Token`, or a hidden `csrf` form field; an HMAC of the
//! session, `auth::Keys::csrf_of`), and its `Origin` / `Sec-Fetch-Site`, when the browser
//! sends them, must be this site. Refused with 403, before the handler runs: nothing changes.
//! (`SameSite=Strict` already keeps the cookie off cross-site requests; this holds even for
//! a browser that ignores it.) Bearer calls carry no cookie and need none of this.

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::auth::Session;
use crate::daemon::hooks::{form_pairs, same_secret};

pub const HEADER: &str = "x-csrf-token";
pub const FIELD: &str = "csrf";
/// A page's form is small; a template being edited is the largest.
const FORM_MAX: usize = 2 * 1024 * 1024;

pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn forbidden(why: &str) -> Response {
    tracing::warn!(why, "console request refused (403)");
    (StatusCode::FORBIDDEN, format!("forbidden: {why}\n")).into_response()
}

/// The browser's word on where the request comes from, when it gives one.
pub fn check_origin(headers: &HeaderMap) -> Result<(), Response> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if !matches!(site, "same-origin" | "none") {
            return Err(forbidden("a cross-site request (Sec-Fetch-Site)"));
        }
    }
    if let Some(origin) = text(header::ORIGIN) {
        let host = text(header::HOST).unwrap_or("");
        let ours = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")).is_some_and(|h| !host.is_empty() && h == host);
        if !ours {
            return Err(forbidden("a request from another origin"));
        }
    }
    Ok(())
}

fn check_token(given: Option<&str>, s: &Session) -> Result<(), Response> {
    match given {
        Some(t) if same_secret(t.trim().as_bytes(), s.csrf.as_bytes()) => Ok(()),
        Some(_) => Err(forbidden("a wrong CSRF token")),
        None => Err(forbidden("no CSRF token")),
    }
}

/// A script's change: the origin and `X-CSRF-Token`.
pub fn check_header(headers: &HeaderMap, s: &Session) -> Result<(), Response> {
    check_origin(headers)?;
    check_token(headers.get(HEADER).and_then(|v| v.to_str().ok()), s)
}

/// A page's change: the origin, and `X-CSRF-Token` or the form's `csrf` field. The form is
/// read here and handed on whole.
pub async fn check_request(req: Request, s: &Session) -> Result<Request, Response> {
    check_origin(req.headers())?;
    if req.headers().contains_key(HEADER) {
        check_header(req.headers(), s)?;
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, FORM_MAX).await.map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "form too large\n").into_response())?;
    let pairs = form_pairs(&String::from_utf8_lossy(&bytes));
    check_token(pairs.iter().find(|(k, _)| k == FIELD).map(|(_, v)| v.as_str()), s)?;
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_this_site_may_change_things() {
        assert!(check_origin(&headers(&[("host", "127.0.0.1:9464")])).is_ok(), "no word from the browser (curl)");
        assert!(check_origin(&headers(&[("host", "127.0.0.1:9464"), ("origin", "http://127.0.0.1:9464")])).is_ok());
        assert!(check_origin(&headers(&[("host", "127.0.0.1:9464"), ("origin", "http://evil.example")])).is_err());
        assert!(check_origin(&headers(&[("host", "127.0.0.1:9464"), ("origin", "null")])).is_err());
        assert!(check_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(check_origin(&headers(&[("sec-fetch-site", "same-site")])).is_err(), "a sibling subdomain is another site's page");
        assert!(check_origin(&headers(&[("sec-fetch-site", "same-origin")])).is_ok());
    }
}
