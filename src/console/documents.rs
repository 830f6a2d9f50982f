//! What the Templates and Brands pages share: a wording document (a template file or a
//! brand) linted, published, rolled back and listed with its versions, through
//! `crate::wording` (which refuses anything `belofte check` would), each publish and rollback
//! written to the audit with who did it.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use serde_json::json;

use super::audit;
use super::auth::{Session, Who};
use super::html::{escape, post_button, table};
use super::{json, json_error, Console};
use crate::check::Problem;
use crate::store::{CurrentWording, WordingKind, WordingVersion};
use crate::wording::{self, Edit, PublishError, Published, Wording};

/// A problem as the API and the pages' script show it.
#[derive(Debug, Serialize)]
pub struct ProblemView<'a> {
    pub file: &'a str,
    pub line: Option<usize>,
    pub message: &'a str,
}

pub fn problem_views(problems: &[Problem]) -> Vec<ProblemView<'_>> {
    problems.iter().map(|p| ProblemView { file: &p.template, line: p.line, message: &p.message }).collect()
}

/// The lint's messages as a list, each with its file and line.
pub fn problems_html(problems: &[Problem]) -> String {
    if problems.is_empty() {
        return "<p class=\"note\">No problems: this can be published.</p>".to_string();
    }
    let items: String = problems
        .iter()
        .map(|p| {
            let line = p.line.map(|l| format!("line {l}: ")).unwrap_or_default();
            format!("<li class=\"problem\">{}{} <span class=\"muted\">({})</span></li>", escape(&line), escape(&p.message), escape(&p.template))
        })
        .collect();
    format!("<div class=\"error\"><ul>{items}</ul></div>")
}

/// What the audit calls a document: `template delayed/nl/sms.txt.hbs`, `brand lumen`.
pub fn subject(kind: WordingKind, name: &str) -> String {
    format!("{} {name}", kind.as_str())
}

/// The wording with `body` in place of the current text of one document, stored nowhere;
/// the lint's problems when it would be refused.
pub async fn candidate(c: &Console, kind: WordingKind, name: &str, body: &str) -> Result<Result<Wording, Vec<Problem>>, Response> {
    let current = current(c).await?;
    Ok(Wording::candidate(&c.shared.base, &current, kind, name, body))
}

/// The latest published version of every document.
pub async fn current(c: &Console) -> Result<CurrentWording, Response> {
    c.store.current_wording().await.map_err(|e| json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()))
}

/// The current text of one document (published, else shipped); 404 when there is none.
pub async fn text(c: &Console, kind: WordingKind, name: &str) -> Result<String, Response> {
    let current = current(c).await?;
    wording::document(&c.shared.base, &current, kind, name)
        .ok_or_else(|| json_error(StatusCode::NOT_FOUND, &format!("no {} {name:?}", kind.as_str())))
}

/// A publish or rollback, audited; what it gave.
pub enum Outcome {
    Done(Published),
    Refused(Vec<Problem>),
    Failed(StatusCode, String),
}

impl Outcome {
    fn of(result: Result<Published, PublishError>) -> Outcome {
        match result {
            Ok(p) => Outcome::Done(p),
            Err(PublishError::Refused(problems)) => Outcome::Refused(problems),
            Err(PublishError::Unknown(m)) => Outcome::Failed(StatusCode::NOT_FOUND, m),
            Err(PublishError::Store(e)) => Outcome::Failed(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }

    /// The JSON answer: 200 with the version, 422 with the problems, or the failure.
    pub fn json(&self) -> Response {
        match self {
            Outcome::Done(p) => json(StatusCode::OK, &json!({ "version": p.version, "diff": p.diff })),
            Outcome::Refused(problems) => json(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({ "error": "refused: the lint of `belofte check` found problems; nothing was published", "problems": problem_views(problems) }),
            ),
            Outcome::Failed(status, m) => json_error(*status, m),
        }
    }
}

/// Publish `body` as the new version of a document for `who`; audited when stored.
pub async fn publish(c: &Console, who: &Who, kind: WordingKind, name: &str, body: &str, note: &str) -> Outcome {
    let edit = Edit { kind, name, body, author: &who.0, note };
    let outcome = Outcome::of(c.shared.publish(&c.store, &edit).await);
    audit_done(c, who, "publish", kind, name, &outcome).await;
    outcome
}

/// Publish version `version` of a document again for `who`; audited when stored. A version
/// of another document is refused (the URL names the document being rolled back).
pub async fn rollback(c: &Console, who: &Who, kind: WordingKind, name: &str, version: i64) -> Outcome {
    match c.store.wording_version(version).await {
        Ok(Some(v)) if v.kind == kind && v.name == name => {}
        Ok(_) => return Outcome::Failed(StatusCode::NOT_FOUND, format!("{} {name} has no version {version}", kind.as_str())),
        Err(e) => return Outcome::Failed(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
    let outcome = Outcome::of(c.shared.rollback(&c.store, version, &who.0).await);
    audit_done(c, who, "rollback", kind, name, &outcome).await;
    outcome
}

/// Publish what ships again (the template file, the configured brand) for `who`; audited.
pub async fn restore_shipped(c: &Console, who: &Who, kind: WordingKind, name: &str) -> Outcome {
    let Some(body) = wording::shipped(&c.shared.base, kind, name) else {
        return Outcome::Failed(StatusCode::NOT_FOUND, format!("nothing ships as {} {name:?}", kind.as_str()));
    };
    let edit = Edit { kind, name, body: &body, author: &who.0, note: "back to the shipped version" };
    let outcome = Outcome::of(c.shared.publish(&c.store, &edit).await);
    audit_done(c, who, "restore_shipped", kind, name, &outcome).await;
    outcome
}

async fn audit_done(c: &Console, who: &Who, action: &str, kind: WordingKind, name: &str, outcome: &Outcome) {
    let Outcome::Done(p) = outcome else { return };
    if let Err(e) = audit::record(&c.store, who, action, &subject(kind, name), Some(format!("version {}", p.version))).await {
        // The version is stored and in use; only its audit line is missing. Say so loudly.
        tracing::error!(error = %e, who = %who.0, action, document = %subject(kind, name), version = p.version, "ALERT: wording changed but its audit entry could not be written");
    }
}

/// Every version of one document, newest first.
pub async fn versions(c: &Console, kind: WordingKind, name: &str) -> Result<Vec<WordingVersion>, Response> {
    c.store.wording_versions(kind, name).await.map_err(|e| json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()))
}

/// The versions with who, when, why and the diff, each with a button rolling back to it;
/// `base` is the document's page (`/console/templates/delayed/nl/sms.txt.hbs`).
/// Which version of a document is in use (`baseline`: the words when none is published), and
/// the button that publishes the baseline again (none while the baseline is in use).
pub fn in_use_html(s: &Session, here: &str, versions: &[WordingVersion], baseline: &str, restore: &str) -> (String, String) {
    let state = match versions.first() {
        Some(v) => format!("Published version {} by {} at {} UTC.", v.id, escape(&v.author), escape(&crate::store::ts(v.at))),
        None => baseline.to_string(),
    };
    let button = if versions.is_empty() {
        String::new()
    } else {
        post_button(s, &format!("{here}/restore"), &format!("Back to the {restore}"), "", Some(&format!("Publish the {restore} again?")))
    };
    (state, button)
}

pub fn versions_html(s: &Session, base: &str, versions: &[WordingVersion]) -> String {
    if versions.is_empty() {
        return "<p class=\"muted\">Never published: the shipped version is in use.</p>".to_string();
    }
    let rows: Vec<Vec<String>> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let action = if i == 0 {
                "<span class=\"muted\">current</span>".to_string()
            } else {
                let q = format!("Publish version {} again?", v.id);
                post_button(s, &format!("{base}/rollback/{}", v.id), &format!("Roll back to {}", v.id), "", Some(&q))
            };
            vec![
                v.id.to_string(),
                escape(&crate::store::ts(v.at)),
                escape(&v.author),
                escape(&v.note),
                format!("<details><summary>diff</summary><pre>{}</pre></details>", escape(&v.diff)),
                action,
            ]
        })
        .collect();
    table(&["version", "when (UTC)", "who", "note", "change", ""], &[0], &rows)
}

/// The edit box: the text, a publish button, the lint's messages (`problems`, replaced by
/// `wording.js` on every change), for a document named `name` under `key` in the API.
pub struct Editor<'a> {
    pub action: &'a str,
    pub lint: &'a str,
    pub preview: &'a str,
    pub key: &'a str,
    pub name: &'a str,
    pub text: &'a str,
    pub problems: &'a [Problem],
}

pub fn editor_html(s: &Session, e: &Editor<'_>) -> String {
    let rows = e.text.lines().count().clamp(6, 40) + 2;
    format!(
        "<form id=\"edit\" method=\"post\" action=\"{action}\" data-lint=\"{lint}\" data-preview=\"{preview}\" data-key=\"{key}\" data-name=\"{name}\">\
         {csrf}<textarea name=\"text\" rows=\"{rows}\" spellcheck=\"false\" style=\"width:100%;font:13px/1.4 monospace\">{text}</textarea>\
         <div id=\"problems\">{problems}</div>\
         <label for=\"note\">Note (why, for the history)</label><input type=\"text\" id=\"note\" name=\"note\">\
         <p><button type=\"submit\">Publish</button> <span class=\"muted\">Every running instance uses it within seconds.</span></p></form>",
        action = escape(e.action),
        lint = escape(e.lint),
        preview = escape(e.preview),
        key = escape(e.key),
        name = escape(e.name),
        csrf = super::html::csrf_field(s),
        text = escape(e.text),
        problems = problems_html(e.problems),
    )
}

/// The body of a publish through the API.
#[derive(Debug, serde::Deserialize)]
pub struct PublishBody {
    pub text: String,
    #[serde(default)]
    pub note: String,
}

/// The lint of a draft of one document as the API answers it: `{ok, problems: [{file, line, message}]}`.
pub async fn lint_json(c: &Console, kind: WordingKind, name: &str, text: &str) -> Response {
    match candidate(c, kind, name, text).await {
        Ok(Ok(_)) => json(StatusCode::OK, &json!({ "ok": true, "problems": [] })),
        Ok(Err(problems)) => json(StatusCode::OK, &json!({ "ok": false, "problems": problem_views(&problems) })),
        Err(r) => r,
    }
}

/// A JSON request body.
pub fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(bytes).map_err(|e| json_error(StatusCode::BAD_REQUEST, &format!("the body must be JSON: {e}")))
}

/// A page saying why a change did not happen (no such document or version, the database).
pub fn failed_page(s: &Session, title: &str, active: &str, status: StatusCode, message: &str) -> Response {
    let mut r = super::html::page(s, title, active, &format!("<h1>{}</h1><p class=\"error\">{}</p>", escape(title), escape(message)));
    *r.status_mut() = status;
    r
}

/// The script of the edit box.
pub const SCRIPT: &str = "<script src=\"/console/static/wording.js\" defer></script>";
