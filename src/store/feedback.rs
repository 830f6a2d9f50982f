//! What providers report after they took a message (Twilio status callbacks, bounces,
//! complaints), and the reads the fallback needs: the rows of one notice, the order's
//! customer, how many messages reached the customer.
//!
//! Every write here is idempotent: a callback or bounce delivered twice, or late, records
//! nothing the second time.

use sqlx::Row;

use belofte_core::domain::{Channel, Instant};
use belofte_core::engine::OrderState;

use super::{ts, Store, StoreError};

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

fn row(r: sqlx::sqlite::SqliteRow) -> FeedbackRow {
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

impl Store {
    pub async fn row_by_key(&self, key: &str) -> Result<Option<FeedbackRow>, StoreError> {
        let q = format!("SELECT {ROW_COLUMNS} FROM outbox WHERE notification_key = ?1");
        Ok(sqlx::query(&q).bind(key).fetch_optional(&self.pool).await?.map(row))
    }

    /// The row whose message ref (VERP token, Message-ID local part) this is.
    pub async fn row_by_ref(&self, message_ref: &str) -> Result<Option<FeedbackRow>, StoreError> {
        let q = format!("SELECT {ROW_COLUMNS} FROM outbox WHERE message_ref = ?1 ORDER BY id LIMIT 1");
        Ok(sqlx::query(&q).bind(message_ref).fetch_optional(&self.pool).await?.map(row))
    }

    /// Every row of one notice (order + notice number), fallbacks and escalations included.
    pub async fn notice_rows(&self, order_id: &str, seq: i64) -> Result<Vec<FeedbackRow>, StoreError> {
        let q = format!("SELECT {ROW_COLUMNS} FROM outbox WHERE order_id = ?1 AND seq = ?2 ORDER BY id");
        Ok(sqlx::query(&q).bind(order_id).bind(seq).fetch_all(&self.pool).await?.into_iter().map(row).collect())
    }

    /// Notices of an order that reached the customer: with at least one customer message
    /// the provider accepted or delivered and no later report failed (the `messages_sent` of
    /// an `unreachable` escalation; like the engine's count, one per notice).
    pub async fn reached_notices(&self, order_id: &str) -> Result<i64, StoreError> {
        let r = sqlx::query(
            "SELECT COUNT(DISTINCT seq) FROM outbox WHERE order_id = ?1 AND channel IN ('email', 'sms') AND status = 'sent' AND seq IS NOT NULL",
        )
        .bind(order_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(r.get(0))
    }

    /// Notices of an order up to `seq` whose every customer message failed: the engine
    /// counted them as sent when it decided an escalation, the dispatcher takes them off.
    pub async fn failed_notices(&self, order_id: &str, up_to_seq: i64) -> Result<i64, StoreError> {
        let r = sqlx::query(
            "SELECT COUNT(*) FROM (SELECT seq FROM outbox WHERE order_id = ?1 AND channel IN ('email', 'sms') AND seq IS NOT NULL AND seq <= ?2
             GROUP BY seq HAVING SUM(status <> 'failed') = 0)",
        )
        .bind(order_id)
        .bind(up_to_seq)
        .fetch_one(&self.pool)
        .await?;
        Ok(r.get(0))
    }

    /// The order's last committed state (the daemon writes it through on every batch).
    pub async fn order_state(&self, order_id: &str) -> Result<Option<OrderState>, StoreError> {
        let Some(r) = sqlx::query("SELECT state FROM orders WHERE order_id = ?1").bind(order_id).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let json: String = r.get(0);
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| StoreError::Corrupt { what: format!("order {order_id}"), message: e.to_string() })
    }

    /// Gives the emails enqueued before migration 0003 their message ref, so that their
    /// bounces are matched too (SQLite has no SHA-256 to do it in the migration). Once per
    /// row: afterwards the query finds nothing. Returns how many rows were filled.
    pub async fn backfill_message_refs(&self) -> Result<u64, StoreError> {
        let mut filled = 0;
        loop {
            let rows = sqlx::query("SELECT id, notification_key FROM outbox WHERE message_ref IS NULL AND channel = 'email' LIMIT 500")
                .fetch_all(&self.pool)
                .await?;
            if rows.is_empty() {
                return Ok(filled);
            }
            let mut tx = self.write_tx().await?;
            for r in &rows {
                let id: i64 = r.get(0);
                let key: String = r.get(1);
                sqlx::query("UPDATE outbox SET message_ref = ?2 WHERE id = ?1")
                    .bind(id)
                    .bind(belofte_feedback::message_ref(&key))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            filled += rows.len() as u64;
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
        let mut tx = self.write_tx().await?;
        let moved = sqlx::query("UPDATE outbox SET provider_status = ?3 WHERE id = ?1 AND provider_status IS ?2")
            .bind(outbox_id)
            .bind(expected)
            .bind(&event.status)
            .execute(&mut *tx)
            .await?;
        if moved.rows_affected() == 0 {
            return Ok(false);
        }
        insert_event(&mut tx, outbox_id, event).await?;
        apply(&mut tx, outbox_id, event.at, then).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records a report that has no order of its own (a bounce): once per row, source and
    /// status. A final status (`bounced`, `complained`) is never replaced by a `delayed` or
    /// `delivered` that comes after it. `false` when it was recorded before.
    pub async fn record_report(&self, outbox_id: i64, event: &ProviderEvent, then: &Consequence) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        if !insert_event(&mut tx, outbox_id, event).await? {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE outbox SET provider_status = ?2 WHERE id = ?1
             AND (provider_status IS NULL OR provider_status NOT IN ('bounced', 'complained') OR ?2 IN ('bounced', 'complained'))",
        )
        .bind(outbox_id)
        .bind(&event.status)
        .execute(&mut *tx)
        .await?;
        apply(&mut tx, outbox_id, event.at, then).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The provider events of one row, oldest first.
    pub async fn provider_events(&self, outbox_id: i64) -> Result<Vec<ProviderEvent>, StoreError> {
        let rows = sqlx::query("SELECT source, status, error_code, detail, at FROM provider_events WHERE outbox_id = ?1 ORDER BY id")
            .bind(outbox_id)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                let source: String = r.get(0);
                let at: String = r.get(4);
                Ok(ProviderEvent {
                    source: match source.as_str() {
                        "twilio" => "twilio",
                        "bounce" => "bounce",
                        _ => "smtp",
                    },
                    status: r.get(1),
                    error_code: r.get(2),
                    detail: r.get(3),
                    at: super::parse_ts(&at)?,
                })
            })
            .collect()
    }

    /// An order's delivery timeline: each message's attempts and every provider status, with
    /// its time, oldest first.
    pub async fn timeline(&self, order_id: &str) -> Result<Vec<TimelineEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.at, o.notification_key, o.channel, 'belofte', a.outcome, NULL, a.detail
               FROM attempts a JOIN outbox o ON o.id = a.outbox_id WHERE o.order_id = ?1
             UNION ALL
             SELECT p.at, o.notification_key, o.channel, p.source, p.status, p.error_code, p.detail
               FROM provider_events p JOIN outbox o ON o.id = p.outbox_id WHERE o.order_id = ?1
             ORDER BY 1, 2",
        )
        .bind(order_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| TimelineEntry {
                at: r.get(0),
                notification_key: r.get(1),
                channel: r.get(2),
                source: r.get(3),
                status: r.get(4),
                error_code: r.get(5),
                detail: r.get(6),
            })
            .collect())
    }
}

/// `false` when this row already has an event of this source and status.
async fn insert_event(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, outbox_id: i64, e: &ProviderEvent) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO provider_events (outbox_id, at, source, status, error_code, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (outbox_id, source, status) DO NOTHING",
    )
    .bind(outbox_id)
    .bind(ts(e.at))
    .bind(e.source)
    .bind(&e.status)
    .bind(&e.error_code)
    .bind(&e.detail)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn apply(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, outbox_id: i64, at: Instant, then: &Consequence) -> Result<(), StoreError> {
    if let Some(reason) = &then.fail {
        // Only a row that went out can fail later; one still queued (a bounce for an
        // attempt whose outcome we never learnt) is left to the dispatcher.
        sqlx::query("UPDATE outbox SET status = 'failed', last_error = ?2, finished_at = ?3 WHERE id = ?1 AND status IN ('sent', 'unknown')")
            .bind(outbox_id)
            .bind(reason)
            .bind(ts(at))
            .execute(&mut **tx)
            .await?;
    }
    if let Some(reason) = &then.suppress {
        sqlx::query(
            "INSERT INTO suppressions (channel, recipient, reason, at)
             SELECT channel, recipient, ?2, ?3 FROM outbox WHERE id = ?1 AND recipient IS NOT NULL
             ON CONFLICT DO NOTHING",
        )
        .bind(outbox_id)
        .bind(reason)
        .bind(ts(at))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
