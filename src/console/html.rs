//! The pages' HTML: `escape` for every value that is not ours (a customer's name, a reason,
//! a template), and `page` — the layout with the navigation, inline CSS and nothing from
//! another host. Every page goes out with a `Content-Security-Policy` that allows styles
//! inline but scripts only from `/console/static/…` (served from the binary), so an escaped
//! value that slipped through still could not run; `X-Frame-Options: DENY` (an email preview
//! is a `srcdoc` iframe, part of its page, not a framed URL).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::auth::Session;
use super::csrf;

/// Text and attribute values: `&`, `<`, `>`, `"` and `'` become entities.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
     frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'";

/// The navigation, in order: (label, path).
pub const NAV: [(&str, &str); 4] =
    [("Orders", "/console/orders"), ("Templates", "/console/templates"), ("Brands", "/console/brands"), ("Outbox", "/console/outbox")];

const STYLE: &str = "\
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2330;background:#f6f7f9}\
header{display:flex;align-items:center;gap:1.5em;padding:.6em 1.5em;background:#1d2330;color:#fff}\
header a{color:#cfd6e4;text-decoration:none}header a.on{color:#fff;font-weight:600;border-bottom:2px solid #7fb3ff}\
header .brand{font-weight:700;color:#fff;margin-right:1em}header .who{margin-left:auto;color:#cfd6e4}\
header form{display:inline}main{padding:1em 1.5em;max-width:1200px}\
h1{font-size:1.4em;margin:.4em 0 .6em}h2{font-size:1.1em;margin:1.4em 0 .5em}\
table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:1em}\
th,td{border:1px solid #dde1e8;padding:.3em .55em;text-align:left;vertical-align:top}th{background:#eef1f5}\
td.n{text-align:right;font-variant-numeric:tabular-nums}pre{white-space:pre-wrap;margin:0;font-size:.85em}\
button{font:inherit;padding:.15em .7em;border:1px solid #9aa5b8;border-radius:4px;background:#fff;cursor:pointer}\
button.danger{border-color:#c0392b;color:#c0392b}form.inline{display:inline}\
.note{padding:.5em .8em;border-radius:4px;background:#e8f4ea;border:1px solid #9cc9a4;margin:.5em 0}\
.error{padding:.5em .8em;border-radius:4px;background:#fbeaea;border:1px solid #d89a9a;margin:.5em 0}\
.muted{color:#6b7385}input[type=text],input[type=password]{font:inherit;padding:.3em;width:20em}\
label{display:block;margin:.6em 0 .2em}";

/// Headers every console HTML answer has.
fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn document(title: &str, head_extra: &str, header_html: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{} · belofte</title><style>{STYLE}</style>{head_extra}<script src=\"/console/static/console.js\" defer></script></head>\
         <body>{header_html}<main>{body}</main></body></html>",
        escape(title)
    )
}

/// The hidden form field a page's POST form must carry.
pub fn csrf_field(s: &Session) -> String {
    format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", csrf::FIELD, escape(&s.csrf))
}

/// A POST button to `action` (one form each, with the CSRF field); `confirm`: a question
/// asked before it is sent.
pub fn post_button(s: &Session, action: &str, label: &str, class: &str, confirm: Option<&str>) -> String {
    let confirm = confirm.map(|q| format!(" data-confirm=\"{}\"", escape(q))).unwrap_or_default();
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{}\"{confirm}>{}<button type=\"submit\" class=\"{}\">{}</button></form>",
        escape(action),
        csrf_field(s),
        escape(class),
        escape(label)
    )
}

/// A console page: `body` (already HTML, its values escaped) in the layout, `active` the
/// path of its navigation entry. The CSRF token is also in a `<meta>` for the scripts.
pub fn page(s: &Session, title: &str, active: &str, body: &str) -> Response {
    let nav: String = NAV
        .iter()
        .map(|(label, path)| format!("<a href=\"{path}\"{}>{label}</a>", if *path == active { " class=\"on\"" } else { "" }))
        .collect();
    let header_html = format!(
        "<header><span class=\"brand\">belofte</span>{nav}<span class=\"who\">{}</span>{}</header>",
        escape(&s.who),
        post_button(s, "/console/logout", "Log out", "", None)
    );
    let head = format!("<meta name=\"csrf-token\" content=\"{}\">", escape(&s.csrf));
    secure((StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], document(title, &head, &header_html, body)).into_response())
}

/// The login form, with a message after a refused attempt.
pub fn login(status: StatusCode, message: Option<&str>, next: &str, name: &str) -> Response {
    let message = message.map(|m| format!("<p class=\"error\">{}</p>", escape(m))).unwrap_or_default();
    let body = format!(
        "<h1>Log in to the console</h1>{message}<form method=\"post\" action=\"/console/login\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label for=\"name\">Your name (recorded with what you do)</label><input type=\"text\" id=\"name\" name=\"name\" value=\"{}\" autocomplete=\"username\" required>\
         <label for=\"token\">Console token</label><input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"current-password\" required>\
         <p><button type=\"submit\">Log in</button></p></form>",
        escape(next),
        escape(name)
    );
    let header_html = "<header><span class=\"brand\">belofte</span></header>";
    secure((status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], document("Log in", "", header_html, &body)).into_response())
}

/// `303 See Other` to `location` (after a form's POST, so a reload does not repeat it).
pub fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    secure(r)
}

/// The console's static files, compiled into the binary.
const ASSETS: [(&str, &str, &str); 1] = [("console.js", "text/javascript; charset=utf-8", include_str!("static/console.js"))];

/// `GET /console/static/{name}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, text)) => secure((StatusCode::OK, [(header::CONTENT_TYPE, *kind)], *text).into_response()),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// A table of `rows` under `heads`; every cell already HTML. `numeric`: the columns to align
/// right.
pub fn table(heads: &[&str], numeric: &[usize], rows: &[Vec<String>]) -> String {
    let head: String = heads.iter().map(|h| format!("<th>{}</th>", escape(h))).collect();
    let body: String = rows
        .iter()
        .map(|row| {
            let cells: String =
                row.iter().enumerate().map(|(i, c)| if numeric.contains(&i) { format!("<td class=\"n\">{c}</td>") } else { format!("<td>{c}</td>") }).collect();
            format!("<tr>{cells}</tr>")
        })
        .collect();
    format!("<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_becomes_text() {
        assert_eq!(escape("<script>alert(1)</script>"), "&lt;script&gt;alert(1)&lt;/script&gt;");
        assert_eq!(escape("a \"b\" 'c' & d"), "a &quot;b&quot; &#39;c&#39; &amp; d");
        assert_eq!(escape("Zoë"), "Zoë");
    }
}
