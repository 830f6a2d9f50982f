//! The feedback queries on SQLite (timestamps as `ts` text).

use sqlx::Row;

use belofte_core::domain::Instant;

use super::{source_label, Consequence, FeedbackRow, ProviderEvent, TimelineEntry, ROW_COLUMNS};
use crate::store::sqlite::SqliteStore;
use crate::store::{parse_ts, ts, StoreError};

impl SqliteStore {
    pub(in crate::store) async fn row_by_key(&self, key: &str) -> Result<Option<FeedbackRow>, StoreError> {
        let q = format!("SELECT {ROW_COLUMNS} FROM outbox WHERE notification_key = ?1");
        Ok(sqlx::query(&q).bind(key).fetch_optional(&self.pool).await?.as_ref().map(FeedbackRow::read))
    }

    pub(in crate::store) async fn row_by_ref(&self, message_ref: &str) -> Result<Option<FeedbackRow>, StoreError> {
        let q = format!("SELECT {ROW_COLUMNS} FROM outbox WHERE message_ref = ?1 ORDER BY id LIMIT 1");
        Ok(sqlx::query(&q).bind(message_ref).fetch_optional(&self.pool).await?.as_ref().map(FeedbackRow::read))
    }

    pub(in crate::store) async fn notice_rows(&self, order_id: &str, seq: i64) -> Result<Vec<FeedbackRow>, StoreError> {
        let q = format!("SELECT {ROW_COLUMNS} FROM outbox WHERE order_id = ?1 AND seq = ?2 ORDER BY id");
        Ok(sqlx::query(&q).bind(order_id).bind(seq).fetch_all(&self.pool).await?.iter().map(FeedbackRow::read).collect())
    }

    pub(in crate::store) async fn latest_decided_row(&self, order_id: &str) -> Result<Option<FeedbackRow>, StoreError> {
        let q = format!("SELECT {ROW_COLUMNS} FROM outbox WHERE order_id = ?1 AND decision IS NOT NULL ORDER BY id DESC LIMIT 1");
        Ok(sqlx::query(&q).bind(order_id).fetch_optional(&self.pool).await?.as_ref().map(FeedbackRow::read))
    }

    pub(in crate::store) async fn reached_notices(&self, order_id: &str) -> Result<i64, StoreError> {
        let r = sqlx::query(
            "SELECT COUNT(DISTINCT seq) FROM outbox WHERE order_id = ?1 AND channel IN ('email', 'sms') AND status = 'sent' AND seq IS NOT NULL",
        )
        .bind(order_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(r.get(0))
    }

    pub(in crate::store) async fn failed_notices(&self, order_id: &str, up_to_seq: i64) -> Result<i64, StoreError> {
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

    pub(in crate::store) async fn order_state_json(&self, order_id: &str) -> Result<Option<String>, StoreError> {
        let r = sqlx::query("SELECT state FROM orders WHERE order_id = ?1").bind(order_id).fetch_optional(&self.pool).await?;
        Ok(r.map(|r| r.get(0)))
    }

    /// SQLite has no SHA-256 to fill the refs in the migration itself.
    pub(in crate::store) async fn backfill_message_refs(&self) -> Result<u64, StoreError> {
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

    pub(in crate::store) async fn advance_provider_status(
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

    pub(in crate::store) async fn record_report(&self, outbox_id: i64, event: &ProviderEvent, then: &Consequence) -> Result<bool, StoreError> {
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

    pub(in crate::store) async fn provider_events(&self, outbox_id: i64) -> Result<Vec<ProviderEvent>, StoreError> {
        let rows = sqlx::query("SELECT source, status, error_code, detail, at FROM provider_events WHERE outbox_id = ?1 ORDER BY id")
            .bind(outbox_id)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                let source: String = r.get(0);
                let at: String = r.get(4);
                Ok(ProviderEvent {
                    source: source_label(&source),
                    status: r.get(1),
                    error_code: r.get(2),
                    detail: r.get(3),
                    at: parse_ts(&at)?,
                })
            })
            .collect()
    }

    pub(in crate::store) async fn timeline(&self, order_id: &str) -> Result<Vec<TimelineEntry>, StoreError> {
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
