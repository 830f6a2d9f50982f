//! The Outbox page and API: how many messages wait, by channel and status; the messages that
//! need a person (`failed`, `render_failed`, `unknown`) with their reasons, to retry or
//! cancel; dead-lettered events with their reasons; the channels paused after refused
//! credentials. Recipients are shown: every console user is logged in (or holds the token).
//!
//! - `GET /api/outbox` → `{"depth": [{"channel","status","count"}], "problems": [...],
//!   "dead_letters": [...], "paused": [{"channel","until","reason"}]}`
//! - `POST /api/outbox/{id}/retry`, `POST /api/outbox/{id}/cancel` → `{"id","from","status"}`;
//!   404 for an unknown id, 409 when the row's status does not allow it (nothing changes).
//!   Both recorded in the audit.

use std::collections::BTreeSet;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use serde::Serialize;

use super::auth::{Session, Who};
use super::html::{self, escape, post_button, see_other, table};
use super::{audit, json, json_error, wall_now};
use crate::daemon::hooks::form_pairs;
use crate::store::{Changed, DeadLetter, OutboxView, RowAction, StoreError};

/// Rows listed per section.
const LIST_LIMIT: i64 = 200;
/// Of a dead letter's payload, this much is shown on the page (the API has it whole).
const PAYLOAD_SHOWN: usize = 600;
/// Of a message's text, this much is shown in the list.
const TEXT_SHOWN: usize = 300;

#[derive(Debug, Serialize)]
struct Depth {
    channel: String,
    status: String,
    count: i64,
}

/// A message that needs a person.
#[derive(Debug, Serialize)]
struct Problem {
    id: i64,
    order_id: String,
    kind: String,
    channel: String,
    recipient: Option<String>,
    status: String,
    attempts: i64,
    /// Why it failed (the provider's answer, the render error).
    reason: Option<String>,
    /// The subject and the text as rendered when it was enqueued (absent when the words
    /// are made at sending).
    subject: Option<String>,
    text: Option<String>,
    send_at: String,
    notification_key: String,
}

impl Problem {
    fn of(v: OutboxView) -> Problem {
        let line: Option<serde_json::Value> = serde_json::from_str(&v.line).ok();
        let field = |name: &str| line.as_ref().and_then(|l| l.get(name)).and_then(|t| t.as_str()).map(str::to_string);
        Problem {
            id: v.id,
            order_id: v.order_id,
            kind: v.kind,
            channel: v.channel,
            recipient: v.recipient,
            status: v.status,
            attempts: v.attempts,
            reason: v.last_error,
            subject: field("subject"),
            text: field("text"),
            send_at: v.send_at,
            notification_key: v.notification_key,
        }
    }
}

#[derive(Debug, Serialize)]
struct Paused {
    channel: String,
    until: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct Overview {
    depth: Vec<Depth>,
    problems: Vec<Problem>,
    dead_letters: Vec<DeadLetter>,
    paused: Vec<Paused>,
}

async fn overview(c: &super::Console) -> Result<Overview, StoreError> {
    let depth = c.store.outbox_counts().await?.into_iter().map(|(channel, status, count)| Depth { channel, status, count }).collect();
    let problems = c.store.outbox_problems(LIST_LIMIT).await?.into_iter().map(Problem::of).collect();
    let dead_letters = c.store.dead_letters(LIST_LIMIT).await?;
    let paused = c
        .pauses
        .list(c.shared.clock.now())
        .into_iter()
        .map(|(channel, until, reason)| Paused { channel: channel.as_str().to_string(), until: crate::store::ts(until), reason })
        .collect();
    Ok(Overview { depth, problems, dead_letters, paused })
}

/// `GET /api/outbox`.
pub async fn api(State(c): State<super::State>) -> Response {
    match overview(&c).await {
        Ok(o) => json(StatusCode::OK, &o),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn act(c: &super::Console, who: &Who, id: i64, action: RowAction) -> Result<Changed, StoreError> {
    let changed = c.store.outbox_act(id, action, c.shared.clock.now(), &who.0, wall_now()).await?;
    if let Changed::Done { from, to } = &changed {
        tracing::info!(who = %who.0, id, action = action.as_str(), %from, %to, "outbox row changed from the console");
    }
    Ok(changed)
}

async fn api_act(c: &super::Console, who: &Who, id: i64, action: RowAction) -> Response {
    match act(c, who, id, action).await {
        Ok(Changed::Done { from, to }) => json(StatusCode::OK, &serde_json::json!({ "id": id, "from": from, "status": to })),
        Ok(Changed::NotFound) => json_error(StatusCode::NOT_FOUND, &format!("no outbox row {id}")),
        Ok(Changed::Refused { status }) => {
            json_error(StatusCode::CONFLICT, &format!("outbox row {id} is {status}: {} does not apply", action.as_str()))
        }
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `POST /api/outbox/{id}/retry`.
pub async fn api_retry(State(c): State<super::State>, Extension(who): Extension<Who>, Path(id): Path<i64>) -> Response {
    api_act(&c, &who, id, RowAction::Retry).await
}

/// `POST /api/outbox/{id}/cancel`.
pub async fn api_cancel(State(c): State<super::State>, Extension(who): Extension<Who>, Path(id): Path<i64>) -> Response {
    api_act(&c, &who, id, RowAction::Cancel).await
}

/// The page's buttons: the change, then back to the page with what happened.
async fn page_act(c: &super::Console, who: &Who, id: i64, action: RowAction) -> Response {
    let note = match act(c, who, id, action).await {
        Ok(Changed::Done { from, to }) => format!("Message {id}: {from} → {to}."),
        Ok(Changed::NotFound) => format!("There is no message {id}."),
        Ok(Changed::Refused { status }) => format!("Message {id} is {status}: nothing changed."),
        Err(e) => format!("Message {id}: the database did not answer ({e}); nothing changed."),
    };
    see_other(&format!("/console/outbox?note={}", form_escape(&note)))
}

/// `POST /console/outbox/{id}/retry` (form with the CSRF field).
pub async fn page_retry(State(c): State<super::State>, Extension(who): Extension<Who>, Path(id): Path<i64>) -> Response {
    page_act(&c, &who, id, RowAction::Retry).await
}

/// `POST /console/outbox/{id}/cancel` (form with the CSRF field).
pub async fn page_cancel(State(c): State<super::State>, Extension(who): Extension<Who>, Path(id): Path<i64>) -> Response {
    page_act(&c, &who, id, RowAction::Cancel).await
}

fn form_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn page_view(c: &super::Console, s: &Session, note: Option<&str>) -> Response {
    let (o, entries) = match (overview(c).await, c.store.audit_list(20).await) {
        (Ok(o), Ok(entries)) => (o, entries),
        (Err(e), _) | (_, Err(e)) => {
            let body = format!("<h1>Outbox</h1><p class=\"error\">The database did not answer: {}</p>", escape(&e.to_string()));
            return html::page(s, "Outbox", "/console/outbox", &body);
        }
    };
    let note = note.map(|n| format!("<p class=\"note\">{}</p>", escape(n))).unwrap_or_default();
    let body = format!(
        "<h1>Outbox</h1>{note}<h2>Depth</h2>{}<h2>Paused channels</h2>{}<h2>Messages that need a person</h2>{}\
         <h2>Dead-lettered events</h2>{}<h2>Done through the console</h2>{}",
        depth_html(&o.depth),
        paused_html(&o.paused),
        problems_html(s, &o.problems),
        dead_html(&o.dead_letters),
        audit::html(&entries)
    );
    html::page(s, "Outbox", "/console/outbox", &body)
}

/// `GET /console/outbox[?note=…]` (the note: what a button just did).
pub async fn page(State(c): State<super::State>, Extension(s): Extension<Session>, RawQuery(query): RawQuery) -> Response {
    let pairs = query.as_deref().map(form_pairs).unwrap_or_default();
    let note = pairs.iter().find(|(k, _)| k == "note").map(|(_, v)| v.as_str());
    page_view(&c, &s, note).await
}

/// Channels down, statuses across.
fn depth_html(depth: &[Depth]) -> String {
    if depth.is_empty() {
        return "<p class=\"muted\">The outbox is empty.</p>".into();
    }
    let statuses: BTreeSet<&str> = depth.iter().map(|d| d.status.as_str()).collect();
    let channels: BTreeSet<&str> = depth.iter().map(|d| d.channel.as_str()).collect();
    let mut heads = vec!["channel"];
    heads.extend(statuses.iter());
    let rows: Vec<Vec<String>> = channels
        .iter()
        .map(|ch| {
            let mut row = vec![escape(ch)];
            row.extend(statuses.iter().map(|st| {
                depth.iter().find(|d| d.channel == *ch && d.status == *st).map_or_else(|| "0".to_string(), |d| d.count.to_string())
            }));
            row
        })
        .collect();
    table(&heads, &(1..heads.len()).collect::<Vec<_>>(), &rows)
}

fn paused_html(paused: &[Paused]) -> String {
    if paused.is_empty() {
        return "<p class=\"muted\">None: every channel is sending.</p>".into();
    }
    let rows: Vec<Vec<String>> = paused.iter().map(|p| vec![escape(&p.channel), escape(&p.until), escape(&p.reason)]).collect();
    table(&["channel", "paused until (UTC)", "why"], &[], &rows)
}

fn problems_html(s: &Session, problems: &[Problem]) -> String {
    if problems.is_empty() {
        return "<p class=\"muted\">None.</p>".into();
    }
    let rows: Vec<Vec<String>> = problems
        .iter()
        .map(|p| {
            let mut actions = String::new();
            if RowAction::Retry.target(&p.status).is_some() {
                actions.push_str(&post_button(s, &format!("/console/outbox/{}/retry", p.id), "Retry", "", None));
            }
            if RowAction::Cancel.target(&p.status).is_some() {
                actions.push(' ');
                actions.push_str(&post_button(
                    s,
                    &format!("/console/outbox/{}/cancel", p.id),
                    "Cancel",
                    "danger",
                    Some("Cancel this message? It will not be sent."),
                ));
            }
            vec![
                p.id.to_string(),
                escape(&p.order_id),
                escape(&p.kind),
                escape(&p.channel),
                escape(p.recipient.as_deref().unwrap_or("")),
                escape(&p.status),
                p.attempts.to_string(),
                escape(p.reason.as_deref().unwrap_or("")),
                message_html(p),
                actions,
            ]
        })
        .collect();
    table(&["id", "order", "kind", "channel", "recipient", "status", "attempts", "reason", "message", ""], &[0, 6], &rows)
}

/// The subject in bold, then the beginning of the text.
fn message_html(p: &Problem) -> String {
    let subject = p.subject.as_deref().map(|s| format!("<strong>{}</strong><br>", escape(s))).unwrap_or_default();
    let text = p.text.as_deref().unwrap_or("");
    let shown: String = text.chars().take(TEXT_SHOWN).collect();
    let more = if shown.len() < text.len() { " …" } else { "" };
    format!("{subject}{}{more}", escape(&shown))
}

fn dead_html(letters: &[DeadLetter]) -> String {
    if letters.is_empty() {
        return "<p class=\"muted\">None.</p>".into();
    }
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|d| {
            let from = if d.partition >= 0 { format!("{} [{}] @{}", d.topic, d.partition, d.offset) } else { "waited too long".to_string() };
            let payload = d.payload.as_deref().unwrap_or("");
            let shown: String = payload.chars().take(PAYLOAD_SHOWN).collect();
            let more = if shown.len() < payload.len() || d.truncated { " …" } else { "" };
            vec![escape(&d.at), escape(&from), escape(&d.reason), format!("<pre>{}{more}</pre>", escape(&shown))]
        })
        .collect();
    table(&["when (UTC)", "from", "reason", "event"], &[], &rows)
}
