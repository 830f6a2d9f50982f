//! What providers report after they took a message (Twilio status callbacks, bounces,
//! complaints), and the reads the fallback needs: the rows of one notice, the order's
//! customer, how many messages reached the customer.
//!
//! Every write here is idempotent: a callback or bounce delivered twice, or late, records
//! nothing the second time. The queries of each backend are in `sqlite` and `postgres`.

use belofte_core::domain::{Channel, Instant};
use belofte_core::engine::OrderState;

use super::{on_backend, Store, StoreError};

mod postgres;
mod sqlite;

/// An outbox row as feedback sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRow {
    pub id: i64,
    pub notification_key: String,
    pub order_id: String,
    pub kind: String,
    pub channel: String,
    pub recipient: Option<String>,
    pub status: String,
    pub provider_status: Option<String>,
    pub provider_id: Option<String>,
    pub seq: Option<i64>,
    /// `core::engine::Decision` as JSON (rows enqueued before issue 14 have none).
    pub decision: Option<String>,
}

impl FeedbackRow {
    pub fn channel(&self) -> Option<Channel> {
        super::parse_channel(&self.channel)
    }
}

/// One provider report, as recorded in `provider_events`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderEvent {
    /// `twilio`, `bounce` or `smtp`.
    pub source: &'static str,
    pub status: String,
    pub error_code: Option<String>,
    pub detail: Option<String>,
    pub at: Instant,
}

/// What a report does to its row besides being recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Consequence {
    /// The message did not reach the customer: the row becomes `failed` with this reason.
    pub fail: Option<String>,
    /// The address must get no more messages on the row's channel, for this reason.
    pub suppress: Option<String>,
}

/// One step of an order's delivery timeline.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TimelineEntry {
    pub at: String,
    pub notification_key: String,
    pub channel: String,
    pub source: String,
    pub status: String,
    pub error_code: Option<String>,
    pub detail: Option<String>,
}

const ROW_COLUMNS: &str =
    "id, notification_key, order_id, kind, channel, recipient, status, provider_status, provider_id, seq, decision";

impl FeedbackRow {
    /// A row of `ROW_COLUMNS`.
    fn read<R: sqlx::Row>(r: &R) -> FeedbackRow
    where
        usize: sqlx::ColumnIndex<R>,
        String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        Option<i64>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    {
        FeedbackRow {
            id: r.get(0),
            notification_key: r.get(1),
            order_id: r.get(2),
            kind: r.get(3),
            channel: r.get(4),
            recipient: r.get(5),
            status: r.get(6),
            provider_status: r.get(7),
            provider_id: r.get(8),
            seq: r.get(9),
            decision: r.get(10),
        }
    }
}

impl Store {
    pub async fn row_by_key(&self, key: &str) -> Result<Option<FeedbackRow>, StoreError> {
        on_backend!(self, b => b.row_by_key(key).await)
    }

    /// The row whose message ref (VERP token, Message-ID local part) this is.
    pub async fn row_by_ref(&self, message_ref: &str) -> Result<Option<FeedbackRow>, StoreError> {
        on_backend!(self, b => b.row_by_ref(message_ref).await)
    }

    /// Every row of one notice (order + notice number), fallbacks and escalations included.
    pub async fn notice_rows(&self, order_id: &str, seq: i64) -> Result<Vec<FeedbackRow>, StoreError> {
        on_backend!(self, b => b.notice_rows(order_id, seq).await)
    }

    /// The order's newest customer row with its decision (the console previews the latest
    /// notice of a real order with it).
    pub async fn latest_decided_row(&self, order_id: &str) -> Result<Option<FeedbackRow>, StoreError> {
        on_backend!(self, b => b.latest_decided_row(order_id).await)
    }

    /// Notices of an order that reached the customer: with at least one customer message
    /// the provider accepted or delivered and no later report failed (the `messages_sent` of
    /// an `unreachable` escalation; like the engine's count, one per notice).
    pub async fn reached_notices(&self, order_id: &str) -> Result<i64, StoreError> {
        on_backend!(self, b => b.reached_notices(order_id).await)
    }

    /// Notices of an order up to `seq` whose every customer message failed: the engine
    /// counted them as sent when it decided an escalation, the dispatcher takes them off.
    pub async fn failed_notices(&self, order_id: &str, up_to_seq: i64) -> Result<i64, StoreError> {
        on_backend!(self, b => b.failed_notices(order_id, up_to_seq).await)
    }

    /// The order's last committed state (the daemon writes it through on every batch).
    pub async fn order_state(&self, order_id: &str) -> Result<Option<OrderState>, StoreError> {
        let json = on_backend!(self, b => b.order_state_json(order_id).await)?;
        json.map(|json| super::order_from_json(order_id, &json)).transpose()
    }

    /// Gives the emails enqueued before the message ref existed (SQLite migration 0003)
    /// theirs, so that their bounces are matched too. Once per row: afterwards nothing is
    /// found. Returns how many rows were filled.
    pub async fn backfill_message_refs(&self) -> Result<u64, StoreError> {
        match &self.backend {
            super::Backend::Sqlite(b) => b.backfill_message_refs().await,
            // PostgreSQL's schema had the ref from its first migration: every row has one.
            super::Backend::Postgres(_) => Ok(0),
        }
    }

    /// Moves the row's provider status from `expected` to `event.status`, records the event
    /// and its consequence, all in one transaction. `false` when the row's status is no
    /// longer `expected` (another report came in between): read it again and re-decide.
    /// This compare-and-set is what keeps concurrent callbacks in order without a lock.
    pub async fn advance_provider_status(
        &self,
        outbox_id: i64,
        expected: Option<&str>,
        event: &ProviderEvent,
        then: &Consequence,
    ) -> Result<bool, StoreError> {
        on_backend!(self, b => b.advance_provider_status(outbox_id, expected, event, then).await)
    }

    /// Records a report that has no order of its own (a bounce): once per row, source and
    /// status. A final status (`bounced`, `complained`) is never replaced by a `delayed` or
    /// `delivered` that comes after it. `false` when it was recorded before.
    pub async fn record_report(&self, outbox_id: i64, event: &ProviderEvent, then: &Consequence) -> Result<bool, StoreError> {
        on_backend!(self, b => b.record_report(outbox_id, event, then).await)
    }

    /// The provider events of one row, oldest first.
    pub async fn provider_events(&self, outbox_id: i64) -> Result<Vec<ProviderEvent>, StoreError> {
        on_backend!(self, b => b.provider_events(outbox_id).await)
    }

    /// An order's delivery timeline: each message's attempts and every provider status, with
    /// its time, oldest first.
    pub async fn timeline(&self, order_id: &str) -> Result<Vec<TimelineEntry>, StoreError> {
        on_backend!(self, b => b.timeline(order_id).await)
    }
}

/// A stored `provider_events.source`, as the static label the API hands out.
fn source_label(source: &str) -> &'static str {
    match source {
        "twilio" => "twilio",
        "bounce" => "bounce",
        _ => "smtp",
    }
}
