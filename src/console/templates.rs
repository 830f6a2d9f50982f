//! The Templates page and API: every template file (kind × channel × language, and the
//! shared phrases, reasons and layout), whether it is the shipped file or a published
//! version; one file's text with its message previewed in every tone, the SMS size, the
//! HTML email; an edit box linted on every change; publish, versions with their diffs,
//! rollback.
//!
//! API (`/api/…` with the bearer token, `/console/api/…` for the page's script):
//! `GET /templates`, `GET /templates/{path}[?order=ID]`, `GET /templates/{path}/versions`,
//! `POST /templates/lint` `{path, text}`, `POST /templates/preview` `{path, text, order?}`,
//! `POST /templates/{path}/publish` `{text, note?}` (422 with the problems when refused),
//! `POST /templates/{path}/rollback/{version}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::json;

use belofte_core::domain::{Kind, Lang};
use belofte_core::engine::Decision;
use belofte_core::notice::Notice;
use belofte_core::policy::Brand;

use super::auth::{Session, Who};
use super::documents::{self, Editor, Outcome};
use super::html::{self, escape, table};
use super::preview::{self, Sample};
use super::{json, json_error, Console};
use crate::check::Problem;
use crate::daemon::hooks::form_pairs;
use crate::render::Templates;
use crate::store::WordingKind;
use crate::wording::{self, Wording};

const KIND: WordingKind = WordingKind::Template;
const PAGE: &str = "/console/templates";

/// The files of one message, by channel: (channel, parts).
const CHANNELS: [(&str, &[&str]); 2] = [("email", &["email.subject.hbs", "email.txt.hbs"]), ("sms", &["sms.txt.hbs"])];

/// Every template document with the version it is at (None: the shipped file).
async fn list(c: &Console) -> Result<Vec<(String, Option<i64>)>, Response> {
    let current = documents::current(c).await?;
    Ok(wording::documents(&c.shared.base, &current)
        .into_iter()
        .filter(|((kind, _), _)| *kind == KIND)
        .map(|((_, name), v)| (name, v))
        .collect())
}

/// What a URL's `{*rest}` asks for under `/templates/`.
enum Ask<'a> {
    Text(&'a str),
    Versions(&'a str),
    Publish(&'a str),
    Rollback(&'a str, i64),
    Restore(&'a str),
}

fn ask(rest: &str) -> Option<Ask<'_>> {
    if let Some(path) = rest.strip_suffix("/versions") {
        return Some(Ask::Versions(path));
    }
    if let Some(path) = rest.strip_suffix("/publish") {
        return Some(Ask::Publish(path));
    }
    if let Some(path) = rest.strip_suffix("/restore") {
        return Some(Ask::Restore(path));
    }
    if let Some((path, version)) = rest.rsplit_once("/rollback/") {
        return version.parse().ok().map(|v| Ask::Rollback(path, v));
    }
    Some(Ask::Text(rest))
}

fn not_found(rest: &str) -> Response {
    json_error(StatusCode::NOT_FOUND, &format!("no template route {rest:?}"))
}

fn query_value(query: &Option<String>, key: &str) -> Option<String> {
    let pairs = query.as_deref().map(form_pairs).unwrap_or_default();
    pairs.into_iter().find(|(k, v)| k == key && !v.trim().is_empty()).map(|(_, v)| v.trim().to_string())
}

/// The previews of one template: its message in every tone, from sample data or the latest
/// notice of `order`; `None` for a file that writes no message of its own (there are none
/// today: shared files preview the `delayed` email).
async fn previews(c: &Console, templates: &Templates, wording: &Wording, path: &str, order: Option<&str>) -> Result<Vec<Sample>, Response> {
    let Some((kind, lang, channel)) = preview::target(path) else {
        return Ok(Vec::new());
    };
    let notice = match order {
        Some(id) => Some(order_notice(c, wording, id).await?),
        None => None,
    };
    // A real order's notice speaks its own kind and language.
    let (kind, lang) = notice.as_ref().map_or((kind, lang), |(n, _)| (n.kind, n.lang));
    let order = notice.as_ref().map(|(n, b)| (n, b));
    Ok(preview::tones(templates, &wording.policy, kind, lang, channel, order))
}

/// The notice of the latest decision kept for `order_id`, and its brand as the wording has it.
async fn order_notice(c: &Console, wording: &Wording, order_id: &str) -> Result<(Notice, Brand), Response> {
    let row = c.store.latest_decided_row(order_id).await.map_err(|e| json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()))?;
    let missing = || json_error(StatusCode::NOT_FOUND, &format!("order {order_id:?} has no message kept to preview"));
    let decision: Decision = row
        .and_then(|r| r.decision)
        .and_then(|d| serde_json::from_str(&d).ok())
        .ok_or_else(missing)?;
    let notice = decision.notice().cloned().ok_or_else(missing)?;
    let brand = wording
        .policy
        .brands
        .get(&decision.brand)
        .cloned()
        .ok_or_else(|| json_error(StatusCode::NOT_FOUND, &format!("order {order_id:?} is of brand {:?}, which is not configured", decision.brand)))?;
    Ok((notice, brand))
}

fn previews_html(samples: &[Sample]) -> String {
    let columns: Vec<(String, &Sample)> = samples.iter().map(|s| (escape(s.tone.as_str()), s)).collect();
    preview::html(&columns)
}

/// The templates `text` in place of `path` would give, for a preview: compiled even when
/// the lint has problems (an SMS one segment too long still shows), with the lint's
/// problems beside.
async fn draft(c: &Console, path: &str, text: &str) -> Result<(Result<Arc<Templates>, String>, Vec<Problem>), Response> {
    let problems = match documents::candidate(c, KIND, path, text).await? {
        Ok(candidate) => return Ok((Ok(candidate.templates), Vec::new())),
        Err(problems) => problems,
    };
    let mut files = c.shared.live.get().templates.files().clone();
    files.put(path, text.to_string(), wording::document_label(KIND, path, None));
    Ok((Templates::compile(files).map(Arc::new).map_err(|e| e.to_string()), problems))
}

/// The API routes, mounted under `/api` and `/console/api`.
pub fn api() -> Router<super::State> {
    Router::new()
        .route("/templates", get(api_list))
        .route("/templates/lint", post(api_lint))
        .route("/templates/preview", post(api_preview))
        .route("/templates/{*rest}", get(api_get).post(api_change))
}

/// The pages.
pub fn pages() -> Router<super::State> {
    Router::new().route(PAGE, get(page_list)).route("/console/templates/{*rest}", get(page_show).post(page_change))
}

// ---------------------------------------------------------------- API

/// `GET /templates`.
pub async fn api_list(State(c): State<super::State>) -> Response {
    match list(&c).await {
        Ok(docs) => {
            let rows: Vec<_> = docs
                .iter()
                .map(|(path, v)| json!({ "path": path, "version": v, "published": v.is_some() }))
                .collect();
            json(StatusCode::OK, &json!({ "templates": rows }))
        }
        Err(r) => r,
    }
}

/// `GET /templates/{path}`, `GET /templates/{path}/versions`.
pub async fn api_get(State(c): State<super::State>, Path(rest): Path<String>, RawQuery(query): RawQuery) -> Response {
    match ask(&rest) {
        Some(Ask::Text(path)) => {
            let text = match documents::text(&c, KIND, path).await {
                Ok(t) => t,
                Err(r) => return r,
            };
            let live = c.shared.live.get();
            let order = query_value(&query, "order");
            let samples = match previews(&c, &live.templates, &live, path, order.as_deref()).await {
                Ok(s) => s,
                Err(r) => return r,
            };
            let versions = match documents::versions(&c, KIND, path).await {
                Ok(v) => v,
                Err(r) => return r,
            };
            json(StatusCode::OK, &json!({ "path": path, "text": text, "version": versions.first().map(|v| v.id), "preview": samples }))
        }
        Some(Ask::Versions(path)) => match documents::versions(&c, KIND, path).await {
            Ok(v) => json(StatusCode::OK, &json!({ "path": path, "versions": v })),
            Err(r) => r,
        },
        _ => not_found(&rest),
    }
}

#[derive(Deserialize)]
struct Draft {
    path: String,
    text: String,
    #[serde(default)]
    order: Option<String>,
}

/// `POST /templates/lint` `{path, text}` → `{ok, problems: [{file, line, message}]}`.
pub async fn api_lint(State(c): State<super::State>, bytes: Bytes) -> Response {
    let d: Draft = match documents::json_body(&bytes) {
        Ok(d) => d,
        Err(r) => return r,
    };
    documents::lint_json(&c, KIND, &d.path, &d.text).await
}

/// `POST /templates/preview` `{path, text, order?}` → `{problems, preview: [samples], html}`
/// (`html`: the same preview as the page shows it).
pub async fn api_preview(State(c): State<super::State>, bytes: Bytes) -> Response {
    let d: Draft = match documents::json_body(&bytes) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let (templates, problems) = match draft(&c, &d.path, &d.text).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let samples = match &templates {
        Ok(t) => match previews(&c, t, &c.shared.live.get(), &d.path, d.order.as_deref()).await {
            Ok(s) => s,
            Err(r) => return r,
        },
        Err(_) => Vec::new(),
    };
    let html = match &templates {
        Ok(_) => previews_html(&samples),
        Err(e) => format!("<div class=\"error\">{}</div>", escape(e)),
    };
    json(StatusCode::OK, &json!({ "problems": documents::problem_views(&problems), "preview": samples, "html": html }))
}

/// `POST /templates/{path}/publish` `{text, note?}`, `POST /templates/{path}/rollback/{version}`.
pub async fn api_change(State(c): State<super::State>, Extension(who): Extension<Who>, Path(rest): Path<String>, bytes: Bytes) -> Response {
    match ask(&rest) {
        Some(Ask::Publish(path)) => {
            let b: documents::PublishBody = match documents::json_body(&bytes) {
                Ok(b) => b,
                Err(r) => return r,
            };
            documents::publish(&c, &who, KIND, path, &b.text, &b.note).await.json()
        }
        Some(Ask::Rollback(path, version)) => documents::rollback(&c, &who, KIND, path, version).await.json(),
        Some(Ask::Restore(path)) => documents::restore_shipped(&c, &who, KIND, path).await.json(),
        _ => not_found(&rest),
    }
}

// ---------------------------------------------------------------- pages

/// `GET /console/templates`: a table per language, kinds down, the files of each channel
/// across; then the shared files.
pub async fn page_list(State(c): State<super::State>, Extension(s): Extension<Session>) -> Response {
    let docs = match list(&c).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let cell = |path: &str| -> String {
        match docs.iter().find(|(p, _)| p == path) {
            Some((_, v)) => {
                let state = match v {
                    Some(v) => format!("<b>version {v}</b>"),
                    None => "<span class=\"muted\">shipped</span>".to_string(),
                };
                format!("<a href=\"{PAGE}/{}\">{}</a> {state}", escape(path), escape(path.rsplit('/').next().unwrap_or(path)))
            }
            None => "<span class=\"muted\">none</span>".to_string(),
        }
    };
    let mut body = String::from(
        "<h1>Templates</h1><p>The words of every message. <b>shipped</b>: the file in <code>templates/</code>; \
         <b>version N</b>: published here, in use by every instance. Open one to preview it in every tone, edit and publish it.</p>",
    );
    for lang in Lang::ALL {
        let rows: Vec<Vec<String>> = Kind::CUSTOMER
            .iter()
            .map(|kind| {
                let mut row = vec![escape(kind.as_str())];
                for (_, parts) in CHANNELS {
                    let files: Vec<String> = parts.iter().map(|p| cell(&format!("{}/{}/{p}", kind.as_str(), lang.as_str()))).collect();
                    row.push(files.join("<br>"));
                }
                row
            })
            .collect();
        body.push_str(&format!("<h2>Language: {}</h2>", lang.as_str()));
        body.push_str(&table(&["kind", "email", "sms"], &[], &rows));
    }
    let shared: Vec<Vec<String>> = docs
        .iter()
        .filter(|(p, _)| p.starts_with('_'))
        .map(|(p, _)| vec![cell(p)])
        .collect();
    body.push_str("<h2>Shared by every message</h2><p>Phrases per tone (<code>_voice</code>), reasons (<code>_reasons</code>), the HTML layout (<code>_layout</code>).</p>");
    body.push_str(&table(&["file"], &[], &shared));
    html::page(&s, "Templates", PAGE, &body)
}

/// `GET /console/templates/{path}[?order=ID]`.
pub async fn page_show(State(c): State<super::State>, Extension(s): Extension<Session>, Path(rest): Path<String>, RawQuery(query): RawQuery) -> Response {
    let Some(Ask::Text(path)) = ask(&rest) else {
        return not_found(&rest);
    };
    let text = match documents::text(&c, KIND, path).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    show(&c, &s, path, &text, &[], query_value(&query, "order").as_deref(), StatusCode::OK, None).await
}

/// One template's page: `text` in the edit box (the current one, or a refused draft with its
/// `problems`), the preview of what is in use, the versions.
#[allow(clippy::too_many_arguments)]
async fn show(c: &Console, s: &Session, path: &str, text: &str, problems: &[Problem], order: Option<&str>, status: StatusCode, note: Option<&str>) -> Response {
    let live = c.shared.live.get();
    let samples = match previews(c, &live.templates, &live, path, order).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let versions = match documents::versions(c, KIND, path).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let here = format!("{PAGE}/{path}");
    let (state, restore) = documents::in_use_html(s, &here, &versions, "The shipped file is in use.", "shipped file");
    let note = note.map(|n| format!("<p class=\"note\">{}</p>", escape(n))).unwrap_or_default();
    let order_form = format!(
        "<form method=\"get\" action=\"{}\"><label for=\"order\">Preview with the latest notice of an order (empty: sample data)</label>\
         <input type=\"text\" id=\"order\" name=\"order\" value=\"{}\"> <button type=\"submit\">Preview</button></form>",
        escape(&here),
        escape(order.unwrap_or(""))
    );
    let editor = Editor {
        action: &format!("{here}/publish"),
        lint: "/console/api/templates/lint",
        preview: "/console/api/templates/preview",
        key: "path",
        name: path,
        text,
        problems,
    };
    let body = format!(
        "<h1>{title}</h1>{note}<p>{state} {restore}</p>\
         <h2>Preview in every tone</h2>{order_form}<div id=\"preview\">{preview}</div>\
         <h2>Edit</h2><p class=\"muted\">Checked as <code>belofte check</code> checks, on every change; a template with a problem cannot be published.</p>{editor}\
         <h2>Versions</h2>{versions}{script}",
        title = escape(path),
        preview = previews_html(&samples),
        editor = documents::editor_html(s, &editor),
        versions = documents::versions_html(s, &here, &versions),
        script = documents::SCRIPT,
    );
    let mut r = html::page(s, path, PAGE, &body);
    *r.status_mut() = status;
    r
}

/// `POST /console/templates/{path}/publish` (form: `text`, `note`), `…/rollback/{version}`,
/// `…/restore`: back to the page, or the page again with the problems (422).
pub async fn page_change(State(c): State<super::State>, Extension(s): Extension<Session>, Extension(who): Extension<Who>, Path(rest): Path<String>, bytes: Bytes) -> Response {
    let form = form_pairs(&String::from_utf8_lossy(&bytes));
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let (path, outcome, draft) = match ask(&rest) {
        Some(Ask::Publish(path)) => {
            let text = field("text");
            (path, documents::publish(&c, &who, KIND, path, &text, &field("note")).await, Some(text))
        }
        Some(Ask::Rollback(path, version)) => (path, documents::rollback(&c, &who, KIND, path, version).await, None),
        Some(Ask::Restore(path)) => (path, documents::restore_shipped(&c, &who, KIND, path).await, None),
        _ => return not_found(&rest),
    };
    match outcome {
        Outcome::Done(_) => html::see_other(&format!("{PAGE}/{path}")),
        Outcome::Refused(problems) => {
            let text = match draft {
                Some(t) => t,
                None => match documents::text(&c, KIND, path).await {
                    Ok(t) => t,
                    Err(r) => return r,
                },
            };
            let note = "Not published: the lint found the problems below. Nothing changed.";
            show(&c, &s, path, &text, &problems, None, StatusCode::UNPROCESSABLE_ENTITY, Some(note)).await
        }
        Outcome::Failed(status, m) => documents::failed_page(&s, path, PAGE, status, &m),
    }
}
