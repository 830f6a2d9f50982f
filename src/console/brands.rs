//! The Brands page and API: per brand its tone (marketing's), display name, senders, support
//! links and voucher tiers, as a form or as its TOML document (`settings::brand_document`);
//! a draft previewed beside the brand as it is (a sample delayed message by email and SMS,
//! the vouchers its tiers give) before anything is published; versions, rollback.
//!
//! API (`/api/…` with the bearer token, `/console/api/…` for the page's script):
//! `GET /brands`, `GET /brands/{id}`, `GET /brands/{id}/versions`, `POST /brands/lint`
//! `{id, text}`, `POST /brands/preview` `{id, text}`, `POST /brands/{id}/publish`
//! `{text, note?}` (422 with the problems when refused), `POST /brands/{id}/rollback/{version}`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::json;

use belofte_core::domain::Tone;
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

const KIND: WordingKind = WordingKind::Brand;
const PAGE: &str = "/console/brands";

/// The brand as the wording in use has it.
fn brand_now(wording: &Wording, id: &str) -> Result<Brand, Response> {
    wording.policy.brands.get(id).cloned().ok_or_else(|| json_error(StatusCode::NOT_FOUND, &format!("no brand {id:?}")))
}

/// A draft of a brand document: the brand it would give and the lint's problems (with it,
/// every template is rendered in its tone and tiers as `belofte check` does). `None`: the
/// document itself does not parse (its problems say where).
async fn draft(c: &Console, id: &str, text: &str) -> Result<(Option<Brand>, Vec<Problem>), Response> {
    match documents::candidate(c, KIND, id, text).await? {
        Ok(w) => Ok((w.policy.brands.get(id).cloned(), Vec::new())),
        Err(problems) => {
            let live = c.shared.live.get();
            let now = brand_now(&live, id)?;
            let parsed = crate::settings::parse_brand_document(&wording::document_label(KIND, id, None), &now, text).ok();
            Ok((parsed, problems))
        }
    }
}

/// The brand now beside the draft: the sample message by email, then by SMS, and the
/// vouchers of 1 to 10 days' delay.
fn comparison_html(templates: &Templates, now: &Brand, draft: Option<&Brand>) -> String {
    let now_samples = preview::brand(templates, now);
    let draft_samples = draft.map(|d| preview::brand(templates, d));
    let head = |label: &str, b: &Brand| format!("{label}: tone <b>{}</b>, {}", escape(b.tone.as_str()), escape(&b.display_name));
    let mut out = String::new();
    for (i, channel) in ["email", "sms"].into_iter().enumerate() {
        let mut columns: Vec<(String, &Sample)> = vec![(head("Now", now), &now_samples[i])];
        if let (Some(d), Some(samples)) = (draft, draft_samples.as_ref()) {
            columns.push((head("Draft", d), &samples[i]));
        }
        out.push_str(&format!("<h3>A delayed order, by {channel}</h3>"));
        out.push_str(&preview::html(&columns));
    }
    let tiers_now = preview::tiers(now);
    let tiers_draft = draft.map(preview::tiers);
    let rows: Vec<Vec<String>> = tiers_now
        .iter()
        .enumerate()
        .map(|(i, (days, eur))| {
            let mut row = vec![days.to_string(), euros(*eur)];
            if let Some(t) = &tiers_draft {
                row.push(euros(t[i].1));
            }
            row
        })
        .collect();
    let heads: &[&str] = if draft.is_some() { &["days late", "voucher now", "voucher in the draft"] } else { &["days late", "voucher"] };
    out.push_str("<h3>Vouchers by delay</h3>");
    out.push_str(&table(heads, &[0, 1, 2], &rows));
    out
}

fn euros(eur: u32) -> String {
    if eur == 0 {
        "none".to_string()
    } else {
        format!("€{eur}")
    }
}

// ---------------------------------------------------------------- the form

/// The brand document a form's fields make. Voucher tiers are written `days=euros`,
/// separated by commas (`1=5, 3=10, 7=20`); empty: no vouchers.
fn document_of_form(pairs: &[(String, String)]) -> Result<String, String> {
    let field = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim().to_string()).unwrap_or_default();
    let mut doc = toml::Table::new();
    for key in ["display_name", "tone", "email_from", "sms_from", "support_url"] {
        doc.insert(key.into(), toml::Value::String(field(key)));
    }
    let phone = field("support_phone");
    if !phone.is_empty() {
        doc.insert("support_phone".into(), toml::Value::String(phone));
    }
    let mut tiers = Vec::new();
    for tier in field("compensation").split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let parsed = tier.split_once('=').and_then(|(d, e)| Some((d.trim().parse::<i64>().ok()?, e.trim().trim_start_matches('€').trim().parse::<i64>().ok()?)));
        let Some((days, eur)) = parsed else {
            return Err(format!("voucher tier {tier:?}: write days=euros, like 3=10"));
        };
        let mut t = toml::Table::new();
        t.insert("min_days".into(), toml::Value::Integer(days));
        t.insert("eur".into(), toml::Value::Integer(eur));
        tiers.push(toml::Value::Table(t));
    }
    doc.insert("compensation".into(), toml::Value::Array(tiers));
    toml::to_string(&doc).map_err(|e| e.to_string())
}

fn form_html(s: &Session, id: &str, b: &Brand) -> String {
    let input = |name: &str, label: &str, value: &str| {
        format!("<label for=\"{name}\">{label}</label><input type=\"text\" id=\"{name}\" name=\"{name}\" value=\"{}\">", escape(value))
    };
    let tones: String = Tone::ALL
        .iter()
        .map(|t| format!("<option value=\"{0}\"{1}>{0}</option>", t.as_str(), if *t == b.tone { " selected" } else { "" }))
        .collect();
    let tiers: Vec<String> = b.compensation.iter().map(|t| format!("{}={}", t.min_days, t.eur)).collect();
    format!(
        "<form method=\"post\" action=\"{PAGE}/{id}/draft\">{csrf}\
         <label for=\"tone\">Tone</label><select id=\"tone\" name=\"tone\">{tones}</select>\
         {display}{email}{sms}{url}{phone}{tiers}\
         <p><button type=\"submit\">Preview this draft</button> <span class=\"muted\">Nothing is published until you press Publish below.</span></p></form>",
        id = escape(id),
        csrf = html::csrf_field(s),
        display = input("display_name", "Display name", &b.display_name),
        email = input("email_from", "Email sender", &b.email_from),
        sms = input("sms_from", "SMS sender", &b.sms_from),
        url = input("support_url", "Support page", &b.support_url),
        phone = input("support_phone", "Support phone (empty: none)", b.support_phone.as_deref().unwrap_or("")),
        tiers = input("compensation", "Voucher tiers: days late=euros, comma-separated (empty: no vouchers)", &tiers.join(", ")),
    )
}

/// The API routes, mounted under `/api` and `/console/api`.
pub fn api() -> Router<super::State> {
    Router::new()
        .route("/brands", get(api_list))
        .route("/brands/lint", post(api_lint))
        .route("/brands/preview", post(api_preview))
        .route("/brands/{id}", get(api_get))
        .route("/brands/{id}/versions", get(api_versions))
        .route("/brands/{id}/publish", post(api_publish))
        .route("/brands/{id}/rollback/{version}", post(api_rollback))
        .route("/brands/{id}/restore", post(api_restore))
}

/// The pages.
pub fn pages() -> Router<super::State> {
    Router::new()
        .route(PAGE, get(page_list))
        .route("/console/brands/{id}", get(page_show))
        .route("/console/brands/{id}/draft", post(page_draft))
        .route("/console/brands/{id}/publish", post(page_publish))
        .route("/console/brands/{id}/rollback/{version}", post(page_rollback))
        .route("/console/brands/{id}/restore", post(page_restore))
}

// ---------------------------------------------------------------- API

/// `GET /brands`.
pub async fn api_list(State(c): State<super::State>) -> Response {
    let current = match documents::current(&c).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let live = c.shared.live.get();
    let rows: Vec<_> = wording::documents(&c.shared.base, &current)
        .into_iter()
        .filter(|((kind, _), _)| *kind == KIND)
        .map(|((_, id), version)| {
            let b = live.policy.brands.get(&id);
            json!({ "id": id, "version": version, "display_name": b.map(|b| &b.display_name), "tone": b.map(|b| b.tone) })
        })
        .collect();
    json(StatusCode::OK, &json!({ "brands": rows }))
}

/// `GET /brands/{id}`: its document, and the sample messages as it speaks now.
pub async fn api_get(State(c): State<super::State>, Path(id): Path<String>) -> Response {
    let text = match documents::text(&c, KIND, &id).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let live = c.shared.live.get();
    let brand = match brand_now(&live, &id) {
        Ok(b) => b,
        Err(r) => return r,
    };
    json(StatusCode::OK, &json!({ "id": id, "text": text, "tone": brand.tone, "preview": preview::brand(&live.templates, &brand) }))
}

/// `GET /brands/{id}/versions`.
pub async fn api_versions(State(c): State<super::State>, Path(id): Path<String>) -> Response {
    match documents::versions(&c, KIND, &id).await {
        Ok(v) => json(StatusCode::OK, &json!({ "id": id, "versions": v })),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct Draft {
    id: String,
    text: String,
}

/// `POST /brands/lint` `{id, text}` → `{ok, problems}`.
pub async fn api_lint(State(c): State<super::State>, bytes: Bytes) -> Response {
    let d: Draft = match documents::json_body(&bytes) {
        Ok(d) => d,
        Err(r) => return r,
    };
    documents::lint_json(&c, KIND, &d.id, &d.text).await
}

/// `POST /brands/preview` `{id, text}` → `{problems, now: [email, sms], draft: [email, sms] | null, html}`.
pub async fn api_preview(State(c): State<super::State>, bytes: Bytes) -> Response {
    let d: Draft = match documents::json_body(&bytes) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let live = c.shared.live.get();
    let now = match brand_now(&live, &d.id) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (brand, problems) = match draft(&c, &d.id, &d.text).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    json(
        StatusCode::OK,
        &json!({
            "problems": documents::problem_views(&problems),
            "now": preview::brand(&live.templates, &now),
            "draft": brand.as_ref().map(|b| preview::brand(&live.templates, b)),
            "html": comparison_html(&live.templates, &now, brand.as_ref()),
        }),
    )
}

/// `POST /brands/{id}/publish` `{text, note?}`.
pub async fn api_publish(State(c): State<super::State>, Extension(who): Extension<Who>, Path(id): Path<String>, bytes: Bytes) -> Response {
    let b: documents::PublishBody = match documents::json_body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    documents::publish(&c, &who, KIND, &id, &b.text, &b.note).await.json()
}

/// `POST /brands/{id}/rollback/{version}`.
pub async fn api_rollback(State(c): State<super::State>, Extension(who): Extension<Who>, Path((id, version)): Path<(String, i64)>) -> Response {
    documents::rollback(&c, &who, KIND, &id, version).await.json()
}

/// `POST /brands/{id}/restore`: the configured brand published again.
pub async fn api_restore(State(c): State<super::State>, Extension(who): Extension<Who>, Path(id): Path<String>) -> Response {
    documents::restore_shipped(&c, &who, KIND, &id).await.json()
}

// ---------------------------------------------------------------- pages

/// `GET /console/brands`.
pub async fn page_list(State(c): State<super::State>, Extension(s): Extension<Session>) -> Response {
    let current = match documents::current(&c).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let live = c.shared.live.get();
    let versions = wording::documents(&c.shared.base, &current);
    let rows: Vec<Vec<String>> = live
        .policy
        .brands
        .values()
        .map(|b| {
            let state = match versions.get(&(KIND, b.id.clone())).copied().flatten() {
                Some(v) => format!("<b>version {v}</b>"),
                None => "<span class=\"muted\">configured</span>".to_string(),
            };
            let tiers: Vec<String> = b.compensation.iter().map(|t| format!("{} d: €{}", t.min_days, t.eur)).collect();
            vec![
                format!("<a href=\"{PAGE}/{}\">{}</a>", escape(&b.id), escape(&b.id)),
                escape(&b.display_name),
                escape(b.tone.as_str()),
                escape(&tiers.join(", ")),
                state,
            ]
        })
        .collect();
    let body = format!(
        "<h1>Brands</h1><p>Each brand's tone of voice, senders, support links and vouchers. <b>configured</b>: as in the configuration; \
         <b>version N</b>: published here, in use by every instance.</p>{}",
        table(&["brand", "display name", "tone", "vouchers", "in use"], &[], &rows)
    );
    html::page(&s, "Brands", PAGE, &body)
}

/// `GET /console/brands/{id}`.
pub async fn page_show(State(c): State<super::State>, Extension(s): Extension<Session>, Path(id): Path<String>) -> Response {
    let text = match documents::text(&c, KIND, &id).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    show(&c, &s, &id, &text, None, &[], StatusCode::OK, None).await
}

/// One brand's page: the form, the preview (now, and beside it `draft` when there is one),
/// the document in the edit box (`text`, with `problems` after a refused publish), versions.
#[allow(clippy::too_many_arguments)]
async fn show(c: &Console, s: &Session, id: &str, text: &str, draft: Option<&Brand>, problems: &[Problem], status: StatusCode, note: Option<&str>) -> Response {
    let live = c.shared.live.get();
    let now = match brand_now(&live, id) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let versions = match documents::versions(c, KIND, id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let here = format!("{PAGE}/{id}");
    let (state, restore) = documents::in_use_html(s, &here, &versions, "As configured.", "configured brand");
    let note = note.map(|n| format!("<p class=\"note\">{}</p>", escape(n))).unwrap_or_default();
    let editor = Editor {
        action: &format!("{here}/publish"),
        lint: "/console/api/brands/lint",
        preview: "/console/api/brands/preview",
        key: "id",
        name: id,
        text,
        problems,
    };
    let body = format!(
        "<h1>{title}</h1>{note}<p>{state} {restore}</p>\
         <h2>Edit as a form</h2>{form}\
         <h2>Preview</h2><div id=\"preview\">{preview}</div>\
         <h2>The brand document</h2><p class=\"muted\">The same fields as TOML. Checked on every change, with every template in the new tone; publish it to use it everywhere.</p>{editor}\
         <h2>Versions</h2>{versions}{script}",
        title = escape(&format!("{} ({id})", now.display_name)),
        form = form_html(s, id, draft.unwrap_or(&now)),
        preview = comparison_html(&live.templates, &now, draft),
        editor = documents::editor_html(s, &editor),
        versions = documents::versions_html(s, &here, &versions),
        script = documents::SCRIPT,
    );
    let mut r = html::page(s, &now.display_name, PAGE, &body);
    *r.status_mut() = status;
    r
}

/// `POST /console/brands/{id}/draft` (the form): the page with the draft previewed beside
/// the brand now and its document in the edit box. Nothing is stored.
pub async fn page_draft(State(c): State<super::State>, Extension(s): Extension<Session>, Path(id): Path<String>, bytes: Bytes) -> Response {
    let pairs = form_pairs(&String::from_utf8_lossy(&bytes));
    let text = match document_of_form(&pairs) {
        Ok(t) => t,
        Err(m) => {
            let problem = Problem { template: wording::document_label(KIND, &id, None), line: None, message: m };
            let current = match documents::text(&c, KIND, &id).await {
                Ok(t) => t,
                Err(r) => return r,
            };
            return show(&c, &s, &id, &current, None, &[problem], StatusCode::UNPROCESSABLE_ENTITY, None).await;
        }
    };
    let (brand, problems) = match draft(&c, &id, &text).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let note = if problems.is_empty() { "A draft: compare it below, then publish it." } else { "This draft cannot be published: see the problems under the document." };
    show(&c, &s, &id, &text, brand.as_ref(), &problems, StatusCode::OK, Some(note)).await
}

/// `POST /console/brands/{id}/publish` (form: `text`, `note`).
pub async fn page_publish(State(c): State<super::State>, Extension(s): Extension<Session>, Extension(who): Extension<Who>, Path(id): Path<String>, bytes: Bytes) -> Response {
    let pairs = form_pairs(&String::from_utf8_lossy(&bytes));
    let field = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let text = field("text");
    let outcome = documents::publish(&c, &who, KIND, &id, &text, &field("note")).await;
    page_outcome(&c, &s, &id, outcome, Some(text)).await
}

/// `POST /console/brands/{id}/rollback/{version}`.
pub async fn page_rollback(State(c): State<super::State>, Extension(s): Extension<Session>, Extension(who): Extension<Who>, Path((id, version)): Path<(String, i64)>) -> Response {
    let outcome = documents::rollback(&c, &who, KIND, &id, version).await;
    page_outcome(&c, &s, &id, outcome, None).await
}

/// `POST /console/brands/{id}/restore`.
pub async fn page_restore(State(c): State<super::State>, Extension(s): Extension<Session>, Extension(who): Extension<Who>, Path(id): Path<String>) -> Response {
    let outcome = documents::restore_shipped(&c, &who, KIND, &id).await;
    page_outcome(&c, &s, &id, outcome, None).await
}

async fn page_outcome(c: &Console, s: &Session, id: &str, outcome: Outcome, draft: Option<String>) -> Response {
    match outcome {
        Outcome::Done(_) => html::see_other(&format!("{PAGE}/{id}")),
        Outcome::Refused(problems) => {
            let text = match draft {
                Some(t) => t,
                None => match documents::text(c, KIND, id).await {
                    Ok(t) => t,
                    Err(r) => return r,
                },
            };
            let note = "Not published: the lint found the problems below. Nothing changed.";
            show(c, s, id, &text, None, &problems, StatusCode::UNPROCESSABLE_ENTITY, Some(note)).await
        }
        Outcome::Failed(status, m) => documents::failed_page(s, id, PAGE, status, &m),
    }
}
