//! The audit: who did what to which message, template or brand, and when. Every change made
//! through the console writes its entry (a retry or cancel in the same transaction as the
//! change, `Store::outbox_act`); `record` is for the others (a publish). `GET /api/audit`
//! lists the latest.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::auth::Who;
use super::html::{escape, table};
use super::{json, json_error, wall_now};
use crate::daemon::hooks::form_pairs;
use crate::store::{AuditEntry, NewAudit, Store, StoreError};

/// Entries listed when `limit` is not given, and the most ever listed.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

/// The entry of `who` doing `action` to `subject`, now.
pub fn entry(who: &Who, action: &str, subject: &str, detail: Option<String>) -> NewAudit {
    NewAudit { at: wall_now(), who: who.0.clone(), action: action.to_string(), subject: subject.to_string(), detail }
}

/// Write an entry on its own (for changes not made in a transaction of their own here).
pub async fn record(store: &Store, who: &Who, action: &str, subject: &str, detail: Option<String>) -> Result<(), StoreError> {
    store.audit_add(&entry(who, action, subject, detail)).await
}

/// `GET /api/audit[?limit=N]`: the latest entries, newest first.
pub async fn api(State(c): State<super::State>, RawQuery(query): RawQuery) -> Response {
    let limit = query
        .as_deref()
        .map(form_pairs)
        .and_then(|q| q.into_iter().find(|(k, _)| k == "limit").and_then(|(_, v)| v.parse::<i64>().ok()))
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, MAX_LIMIT);
    match c.store.audit_list(limit).await {
        Ok(entries) => json(StatusCode::OK, &serde_json::json!({ "entries": entries })),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// The audit as an HTML table (the outbox page shows the latest).
pub fn html(entries: &[AuditEntry]) -> String {
    if entries.is_empty() {
        return "<p class=\"muted\">Nothing done through the console yet.</p>".into();
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| vec![escape(&e.at), escape(&e.who), escape(&e.action), escape(&e.subject), escape(e.detail.as_deref().unwrap_or(""))])
        .collect();
    table(&["when (UTC)", "who", "what", "subject", "detail"], &[], &rows)
}
