//! When a customer message failed for good — an SMS refused at sending or reported
//! `undelivered`/`failed`, an email refused by SMTP or bounced — the notice tries the other
//! channel, and when no channel is left, a person is asked to call.
//!
//! - **Fallback.** If `[fallback]` is on for the kind, the customer consented to the other
//!   channel and has an address for it (read from the order's stored state), the address is
//!   not suppressed, the order is still open, and the notice (order + notice number) has no
//!   row on that channel yet, the notice is rendered for the other channel from its stored
//!   decision and enqueued under `<key with the other channel>/fallback`. An SMS fallback
//!   still waits for the end of the quiet hours.
//! - **Unreachable.** If no fallback goes and every customer row of the notice has failed,
//!   a `belofte.escalation` with `why: "unreachable"` is enqueued for the actions topic,
//!   once per notice (`<order>/escalation/unreachable/event/<seq>`).
//!
//! Both are outbox rows with unique keys, so running this twice for the same failure (a
//! callback repeated, a crash between the report and the enqueue) enqueues nothing twice.

use std::collections::{HashMap, HashSet};

use belofte_core::calendar::after_quiet_hours;
use belofte_core::domain::{Channel, EscalationWhy, Kind};
use belofte_core::engine::{Decision, Payload, Status};

use crate::store::{parse_channel, Batch, FeedbackRow, NewMessage, StoreError};

use super::feedback::Feedback;
use super::process::event_message;

/// What `after_failure` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    Fallback { key: String },
    Unreachable { key: String },
    /// Another row of the notice may still reach the customer, or the row has no notice.
    Nothing,
}

fn other(channel: Channel) -> Option<Channel> {
    match channel {
        Channel::Email => Some(Channel::Sms),
        Channel::Sms => Some(Channel::Email),
        Channel::Event => None,
    }
}

/// Called after the row `key` was recorded as failed.
pub async fn after_failure(fb: &Feedback, key: &str) -> Result<AfterFailure, StoreError> {
    let Some(row) = fb.store.row_by_key(key).await? else {
        return Ok(AfterFailure::Nothing);
    };
    let (Some(channel), Some(seq)) = (row.channel(), row.seq) else {
        // Enqueued before decisions were kept, or not a customer message.
        return Ok(AfterFailure::Nothing);
    };
    let Some(to_channel) = other(channel) else {
        return Ok(AfterFailure::Nothing);
    };
    let notice = fb.store.notice_rows(&row.order_id, seq).await?;
    if let Some(key) = try_fallback(fb, &row, channel, to_channel, &notice).await? {
        return Ok(AfterFailure::Fallback { key });
    }
    let customer: Vec<&FeedbackRow> =
        notice.iter().filter(|r| matches!(parse_channel(&r.channel), Some(Channel::Email | Channel::Sms))).collect();
    if customer.is_empty() || customer.iter().any(|r| r.status != "failed") {
        return Ok(AfterFailure::Nothing);
    }
    unreachable(fb, &row, seq).await
}

async fn try_fallback(
    fb: &Feedback,
    row: &FeedbackRow,
    from: Channel,
    to: Channel,
    notice: &[FeedbackRow],
) -> Result<Option<String>, StoreError> {
    let Some(decision) = row.decision.as_deref().and_then(|j| serde_json::from_str::<Decision>(j).ok()) else {
        return Ok(None);
    };
    if !fb.fallback.enabled(decision.kind) {
        return Ok(None);
    }
    if notice.iter().any(|r| parse_channel(&r.channel) == Some(to)) {
        // The notice went (or goes) that way already: nothing new to try.
        return Ok(None);
    }
    let Some(order) = fb.store.order_state(&row.order_id).await? else {
        return Ok(None);
    };
    if matches!(order.status, Status::Delivered | Status::Cancelled) {
        // The parcel arrived or the order is gone: the notice is no longer news.
        return Ok(None);
    }
    if !order.customer.channels.contains(&to) {
        return Ok(None);
    }
    let address = match to {
        Channel::Email => order.customer.email.as_ref().map(|e| e.to_string()),
        Channel::Sms => order.customer.phone.as_ref().map(|p| p.to_string()),
        Channel::Event => None,
    };
    let Some(address) = address.filter(|a| !a.trim().is_empty()) else {
        return Ok(None);
    };
    if fb.store.suppressed(to.as_str(), &address).await?.is_some() {
        return Ok(None);
    }
    let shared = &fb.shared;
    let wording = shared.live.get();
    let policy = &wording.policy;
    let Some(brand) = policy.brands.get(&decision.brand) else {
        return Ok(None);
    };
    let now = shared.clock.now();
    let mut d = decision;
    d.channel = to;
    d.to = Some(address);
    d.send_at = match to {
        // An SMS never goes in the quiet hours, a fallback one neither.
        Channel::Sms => after_quiet_hours(policy, brand.time_zone, now),
        _ => now,
    };
    // Rendered at send like every customer message, from the decision kept beside it.
    let key = format!("{}/fallback", d.notification_key());
    let json = serde_json::to_string(&d).map_err(|e| StoreError::Corrupt { what: "fallback decision".into(), message: e.to_string() })?;
    let batch = Batch {
        messages: vec![NewMessage::unrendered(&d, key.clone())],
        notices: HashMap::from([(key.clone(), (d.seq, json))]),
        unrendered: HashSet::from([key.clone()]),
        ..Batch::default()
    };
    fb.store.commit(&batch, now).await?;
    shared.metrics.inc("belofte_fallbacks_total", &[("from", from.as_str()), ("to", to.as_str())]);
    shared.metrics.inc("belofte_messages_enqueued_total", &[("channel", to.as_str()), ("kind", d.kind.as_str())]);
    tracing::info!(order = %d.order_id, from = %from, to = %to, %key, "fallback: the notice goes by the other channel");
    fb.wake_dispatch();
    Ok(Some(key))
}

async fn unreachable(fb: &Feedback, row: &FeedbackRow, seq: i64) -> Result<AfterFailure, StoreError> {
    let Some(decision) = row.decision.as_deref().and_then(|j| serde_json::from_str::<Decision>(j).ok()) else {
        return Ok(AfterFailure::Nothing);
    };
    let shared = &fb.shared;
    let now = shared.clock.now();
    let reached = fb.store.reached_notices(&row.order_id).await?;
    let mut d = decision;
    d.kind = Kind::Escalation;
    d.channel = Channel::Event;
    d.to = None;
    d.send_at = now;
    d.cause = "unreachable".into();
    d.payload = Payload::Escalation { why: EscalationWhy::Unreachable, messages_sent: u32::try_from(reached).unwrap_or(u32::MAX) };
    // Its own key: the engine's escalations of the same notice (a repeated slip) keep theirs.
    let key = format!("{}/escalation/unreachable/event/{seq}", d.order_id);
    if fb.store.row_by_key(&key).await?.is_some() {
        return Ok(AfterFailure::Nothing);
    }
    let message = match event_message(shared, &d, &key) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(order = %d.order_id, error = %e, "cannot build the unreachable escalation");
            return Ok(AfterFailure::Nothing);
        }
    };
    let json = serde_json::to_string(&d).map_err(|e| StoreError::Corrupt { what: "escalation decision".into(), message: e.to_string() })?;
    let batch = Batch { messages: vec![message], notices: HashMap::from([(key.clone(), (d.seq, json))]), ..Batch::default() };
    fb.store.commit(&batch, now).await?;
    shared.metrics.inc("belofte_unreachable_total", &[]);
    tracing::warn!(order = %d.order_id, notice = seq, "every channel of the notice failed: escalation `unreachable` (a person should call)");
    fb.wake_dispatch();
    Ok(AfterFailure::Unreachable { key })
}
