//! Orders: find one by id, email or phone, and read its timeline — every event (time, type,
//! source, id, outcome), every decision and silence with its reason (the trace the daemon
//! stores per order, `store::trace`), every message with its words (for one not sent yet,
//! the words it would go out with now, marked `preview`), attempts, provider ids and
//! statuses. Each page has its JSON twin for scripts:
//!
//! - `GET /api/orders?q=…` → `{"q", "orders": [summary…]}` (50 at most)
//! - `GET /api/orders/{order_id}/timeline` → `{"order_id", "order", "events", "trace",
//!   "messages"}`; 404 `{"error"}` for an order this database does not know
//! - `GET /console/orders?q=…`, `GET /console/orders/{order_id}`: the same as HTML
//!
//! Everything shown is escaped; an email's HTML part is shown in a sandboxed
//! `<iframe srcdoc>` (no scripts, no same origin), never inlined.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use serde::Serialize;
use serde_json::{json, Value};

use belofte_core::engine::OrderState;
use belofte_core::policy::Policy;

use super::auth::Session;
use super::html::{escape, page, percent_encode, table};
use super::{json, json_error};
use crate::daemon::hooks::form_pairs;
use crate::render::line::{local_rfc3339, Line};
use crate::wording::Wording;
use crate::store::{OrderSearch, OutboxView, Store, StoreError, TimelineEntry, FOUND_AT_MOST};

/// What a search or a timeline shows of the order itself (times in the brand's zone).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub order_id: String,
    pub brand: String,
    pub status: Value,
    pub customer: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub placed_at: String,
    /// The date the customer holds now; `null` after "no date yet".
    pub promise: Option<String>,
    pub original_promise: String,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
}

impl Summary {
    pub fn of(policy: &Policy, o: &OrderState) -> Summary {
        let tz = policy.brands.get(o.brand.as_str()).map_or(chrono_tz::UTC, |b| b.time_zone);
        Summary {
            order_id: o.order_id.to_string(),
            brand: o.brand.to_string(),
            status: serde_json::to_value(o.status).unwrap_or(Value::Null),
            customer: o.customer.name.clone(),
            email: o.customer.email.as_ref().map(|e| e.to_string()),
            phone: o.customer.phone.as_ref().map(|p| p.to_string()),
            placed_at: local_rfc3339(tz, o.placed_at),
            promise: o.promise.map(|t| local_rfc3339(tz, t)),
            original_promise: local_rfc3339(tz, o.original),
            carrier: o.carrier.as_ref().map(|c| c.to_string()),
            tracking_number: o.tracking_number.as_ref().map(|t| t.to_string()),
        }
    }
}

/// One message of the order, with the words the customer got (or gets).
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub channel: String,
    pub kind: String,
    pub status: String,
    /// The words: subject, an empty line and the text for an email; the text for an SMS;
    /// `null` for an action event.
    pub text: Option<String>,
    /// The email's HTML part, when it has one.
    pub html: Option<String>,
    pub recipient: Option<String>,
    /// Every attempt and provider report, oldest first.
    pub attempts: Vec<TimelineEntry>,
    pub provider_id: Option<String>,
    pub last_error: Option<String>,
    pub notification_key: String,
    pub send_at: String,
    /// Not sent yet: `text` and `html` are the words as they would go out now, rendered from
    /// the decision with the wording in use (a publish before it goes changes them).
    pub preview: bool,
}

impl Message {
    fn of(row: OutboxView, attempts: Vec<TimelineEntry>, wording: &Wording) -> Message {
        let preview = row.unrendered;
        let line: Option<Line> = if preview {
            // A render that fails shows no words; the row's status and error say why.
            wording.render_kept(row.decision.as_deref()).ok()
        } else {
            serde_json::from_str(&row.line).ok()
        };
        let text = line.as_ref().and_then(|l| match (&l.subject, &l.text) {
            (Some(subject), Some(text)) => Some(format!("{subject}\n\n{text}")),
            (None, Some(text)) => Some(text.clone()),
            (Some(subject), None) => Some(subject.clone()),
            (None, None) => None,
        });
        Message {
            channel: row.channel,
            kind: row.kind,
            status: row.status,
            text,
            html: line.and_then(|l| l.html),
            recipient: row.recipient,
            attempts,
            provider_id: row.provider_id,
            last_error: row.last_error,
            notification_key: row.notification_key,
            send_at: row.send_at,
            preview,
        }
    }
}

/// One order's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub order_id: String,
    /// `null` for an order known only by its trace or its messages.
    pub order: Option<Summary>,
    /// The events that reached the order: `at` (when), `time` (the event's own), `type`,
    /// `source`, `id`, `outcome`.
    pub events: Vec<Value>,
    /// Every step, as `shared/spec/trace.md` has it (events with their `source` and `time`).
    pub trace: Vec<Value>,
    pub messages: Vec<Message>,
}

/// The timeline of `order_id`; `None` when the database knows nothing of it. Messages not
/// sent yet show their words as `wording` renders them.
pub async fn timeline(store: &Store, wording: &Wording, order_id: &str) -> Result<Option<Timeline>, StoreError> {
    let policy = &wording.policy;
    let state = store.order_state(order_id).await?;
    let trace = store.order_trace(order_id).await?;
    let rows = store.order_outbox(order_id).await?;
    if state.is_none() && trace.is_empty() && rows.is_empty() {
        return Ok(None);
    }
    let mut attempts: HashMap<String, Vec<TimelineEntry>> = HashMap::new();
    for entry in store.timeline(order_id).await? {
        attempts.entry(entry.notification_key.clone()).or_default().push(entry);
    }
    let events = trace
        .iter()
        .filter(|s| s["step"] == "event")
        .map(|s| json!({ "at": s["at"], "time": s["time"], "type": s["type"], "source": s["source"], "id": s["id"], "outcome": s["outcome"] }))
        .collect();
    let messages = rows
        .into_iter()
        .map(|row| {
            let tried = attempts.remove(&row.notification_key).unwrap_or_default();
            Message::of(row, tried, wording)
        })
        .collect();
    Ok(Some(Timeline { order_id: order_id.to_string(), order: state.as_ref().map(|o| Summary::of(policy, o)), events, trace, messages }))
}

/// The orders a search finds, as summaries.
pub async fn search(store: &Store, policy: &Policy, q: &str, country_code: &str) -> Result<Vec<Summary>, StoreError> {
    let found = store.find_orders(&OrderSearch::new(q, country_code)).await?;
    Ok(found.iter().map(|o| Summary::of(policy, o)).collect())
}

fn opt(v: &Option<String>) -> String {
    v.as_deref().map(escape).unwrap_or_default()
}

/// A JSON value as a cell: strings as they are, `null` empty, the rest as JSON; escaped.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => escape(s),
        other => escape(&other.to_string()),
    }
}

/// The search form and what it found.
pub fn search_page(q: &str, found: &[Summary]) -> String {
    let mut body = format!(
        "<form method=\"get\" action=\"/console/orders\"><label for=\"q\">Order id (or its beginning), email or phone</label>\
         <input type=\"text\" id=\"q\" name=\"q\" value=\"{}\" autofocus> <button type=\"submit\">Find</button></form>",
        escape(q)
    );
    if q.trim().is_empty() {
        return body;
    }
    if found.is_empty() {
        body.push_str(&format!("<p class=\"muted\">No order found for “{}”.</p>", escape(q.trim())));
        return body;
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|o| {
            vec![
                format!("<a href=\"/console/orders/{}\">{}</a>", percent_encode(&o.order_id, b""), escape(&o.order_id)),
                escape(&o.brand),
                escape(&o.customer),
                opt(&o.email),
                opt(&o.phone),
                cell(&o.status),
                escape(&o.placed_at),
                promise(&o.promise),
            ]
        })
        .collect();
    body.push_str(&table(&["Order", "Brand", "Customer", "Email", "Phone", "Status", "Placed", "Promise"], &[], &rows));
    if found.len() as i64 >= FOUND_AT_MOST {
        body.push_str(&format!("<p class=\"muted\">The first {FOUND_AT_MOST} only: type more of the id, or the whole address.</p>"));
    }
    body
}

fn promise(p: &Option<String>) -> String {
    p.as_deref().map_or_else(|| "no date yet".to_string(), escape)
}

/// What a trace step says besides its kind, as a short line (reason, channel, until…).
fn step_what(s: &Value) -> String {
    match s["step"].as_str().unwrap_or_default() {
        "event" => format!("{} {} — {}", cell(&s["type"]), cell(&s["id"]), cell(&s["outcome"])),
        "decision" => {
            let channels: Vec<&str> = s["channels"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            let new = s["promise"]["new"].as_str().unwrap_or("no date");
            format!("<strong>{}</strong> on {} (promise {})", cell(&s["kind"]), escape(&channels.join(", ")), escape(new))
        }
        "message" => format!("{} by {} at {}", cell(&s["kind"]), cell(&s["channel"]), cell(&s["send_at"])),
        "silence" => {
            let mut w = format!("<strong>{}</strong>", cell(&s["reason"]));
            if !s["channel"].is_null() {
                w.push_str(&format!(" ({})", cell(&s["channel"])));
            }
            if !s["until"].is_null() {
                w.push_str(&format!(" until {}", cell(&s["until"])));
            }
            w
        }
        _ => String::new(),
    }
}

/// One order's timeline: the order, its events, every step with its reason, every message.
pub fn timeline_page(t: &Timeline) -> String {
    let mut body = String::new();
    match &t.order {
        Some(o) => {
            let facts = [
                ("Customer", escape(&o.customer)),
                ("Email", opt(&o.email)),
                ("Phone", opt(&o.phone)),
                ("Brand", escape(&o.brand)),
                ("Status", cell(&o.status)),
                ("Placed", escape(&o.placed_at)),
                ("Promised at checkout", escape(&o.original_promise)),
                ("Promise now", promise(&o.promise)),
                ("Carrier", format!("{} {}", opt(&o.carrier), opt(&o.tracking_number))),
            ];
            let rows: Vec<Vec<String>> = facts.into_iter().map(|(k, v)| vec![escape(k), v]).collect();
            body.push_str(&table(&["", ""], &[], &rows));
        }
        None => body.push_str("<p class=\"muted\">This order's state is not stored (any more); its trace and messages are.</p>"),
    }

    body.push_str("<h2>Events</h2>");
    if t.events.is_empty() {
        body.push_str("<p class=\"muted\">No event stored for this order.</p>");
    } else {
        let rows: Vec<Vec<String>> =
            t.events.iter().map(|e| ["at", "time", "type", "source", "id", "outcome"].iter().map(|k| cell(&e[*k])).collect()).collect();
        body.push_str(&table(&["Arrived", "Event time", "Type", "Source", "Id", "Outcome"], &[], &rows));
    }

    body.push_str("<h2>Trace: decisions and silences</h2>");
    if t.trace.is_empty() {
        body.push_str("<p class=\"muted\">No trace stored for this order.</p>");
    } else {
        let rows: Vec<Vec<String>> =
            t.trace.iter().map(|s| vec![cell(&s["at"]), cell(&s["step"]), step_what(s), cell(&s["cause"]), cell(&s["detail"])]).collect();
        body.push_str(&table(&["At", "Step", "What", "Cause", "Detail"], &[], &rows));
    }

    body.push_str("<h2>Messages</h2>");
    if t.messages.is_empty() {
        body.push_str("<p class=\"muted\">No message for this order.</p>");
    }
    for m in &t.messages {
        body.push_str(&format!("<h3>{} · {} · {}</h3>", escape(&m.kind), escape(&m.channel), escape(&m.status)));
        let mut facts = vec![
            vec![escape("To"), opt(&m.recipient)],
            vec![escape("Send at"), escape(&m.send_at)],
            vec![escape("Provider id"), opt(&m.provider_id)],
            vec![escape("Key"), escape(&m.notification_key)],
        ];
        if m.last_error.is_some() {
            facts.push(vec![escape("Last error"), opt(&m.last_error)]);
        }
        body.push_str(&table(&["", ""], &[], &facts));
        if m.preview && (m.text.is_some() || m.html.is_some()) {
            body.push_str("<p class=\"muted\">Not sent yet: the words as they would go out now, with the wording in use.</p>");
        }
        if let Some(text) = &m.text {
            body.push_str(&format!("<pre class=\"words\">{}</pre>", escape(text)));
        }
        if let Some(html) = &m.html {
            // srcdoc is an attribute: escaped here, the browser reads the HTML back out of
            // it; `sandbox` without tokens runs no script and gives the email no origin.
            body.push_str(&format!(
                "<iframe sandbox srcdoc=\"{}\" title=\"The email as the customer sees it\" style=\"width:100%;height:28em;border:1px solid #dde1e8;background:#fff\"></iframe>",
                escape(html)
            ));
        }
        if m.attempts.is_empty() {
            body.push_str("<p class=\"muted\">No attempt yet.</p>");
        } else {
            let rows: Vec<Vec<String>> =
                m.attempts.iter().map(|a| vec![escape(&a.at), escape(&a.source), escape(&a.status), opt(&a.error_code), opt(&a.detail)]).collect();
            body.push_str(&table(&["At", "By", "Status", "Code", "Detail"], &[], &rows));
        }
    }
    body
}

/// The `q` of a query string (empty when there is none).
fn q_of(query: Option<&str>) -> String {
    query.map(form_pairs).and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "q").map(|(_, v)| v)).unwrap_or_default()
}

/// `GET /api/orders?q=…`: `{"q", "orders": [summary…]}`.
pub async fn api_search(State(c): State<super::State>, RawQuery(query): RawQuery) -> Response {
    let q = q_of(query.as_deref());
    match search(&c.store, &c.shared.settings.policy, &q, &c.phone_country_code).await {
        Ok(found) => json(StatusCode::OK, &json!({ "q": q, "orders": found })),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `GET /api/orders/{order_id}/timeline`; 404 for an order the database does not know.
pub async fn api_timeline(State(c): State<super::State>, Path(id): Path<String>) -> Response {
    match timeline(&c.store, &c.shared.live.get(), &id).await {
        Ok(Some(t)) => json(StatusCode::OK, &t),
        Ok(None) => json_error(StatusCode::NOT_FOUND, &format!("no order {id:?} in this database")),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `GET /console/orders?q=…`.
pub async fn page_search(State(c): State<super::State>, Extension(s): Extension<Session>, RawQuery(query): RawQuery) -> Response {
    let q = q_of(query.as_deref());
    let body = match search(&c.store, &c.shared.settings.policy, &q, &c.phone_country_code).await {
        Ok(found) => search_page(&q, &found),
        Err(e) => format!("{}<p class=\"error\">The database did not answer: {}</p>", search_page(&q, &[]), escape(&e.to_string())),
    };
    page(&s, "Orders", "/console/orders", &format!("<h1>Orders</h1>{body}"))
}

/// `GET /console/orders/{order_id}`.
pub async fn page_timeline(State(c): State<super::State>, Extension(s): Extension<Session>, Path(id): Path<String>) -> Response {
    let title = format!("Order {id}");
    let (status, body) = match timeline(&c.store, &c.shared.live.get(), &id).await {
        Ok(Some(t)) => (StatusCode::OK, timeline_page(&t)),
        Ok(None) => (StatusCode::NOT_FOUND, format!("<p class=\"error\">No order {} in this database.</p>", escape(&id))),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("<p class=\"error\">The database did not answer: {}</p>", escape(&e.to_string()))),
    };
    let back = "<p><a href=\"/console/orders\">← Find another order</a></p>";
    let mut r = page(&s, &title, "/console/orders", &format!("{back}<h1>{}</h1>{body}", escape(&title)));
    *r.status_mut() = status;
    r
}
