//! The console's queries on PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Row};

use belofte_core::domain::Instant;

use super::super::postgres::PgStore;
use super::super::{ts, OutboxView, StoreError, OUTBOX_VIEW_COLUMNS};
use super::{row_audit, row_update, AuditEntry, AUDIT_COLUMNS, DEAD_LETTER_COLUMNS, Changed, DeadLetter, NewAudit, NewDeadLetter, RowAction, PROBLEM_STATUSES};

/// The dead letters of a batch, in its transaction, as one `UNNEST`.
pub(in crate::store) async fn insert_dead_letters(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    letters: &[NewDeadLetter],
    now: Instant,
) -> Result<(), StoreError> {
    if letters.is_empty() {
        return Ok(());
    }
    let payloads: Vec<(Option<String>, bool)> = letters.iter().map(NewDeadLetter::payload_text).collect();
    sqlx::query(
        "INSERT INTO dead_letters (at, topic, part, record_offset, reason, payload, truncated)
         SELECT $1, t, p, o, r, d, c FROM UNNEST($2::text[], $3::int[], $4::bigint[], $5::text[], $6::text[], $7::bool[]) AS x(t, p, o, r, d, c)
         ON CONFLICT DO NOTHING",
    )
    .bind(now)
    .bind(letters.iter().map(|l| l.topic.as_str()).collect::<Vec<_>>())
    .bind(letters.iter().map(|l| l.partition).collect::<Vec<_>>())
    .bind(letters.iter().map(|l| l.offset).collect::<Vec<_>>())
    .bind(letters.iter().map(|l| l.reason.as_str()).collect::<Vec<_>>())
    .bind(payloads.iter().map(|(p, _)| p.as_deref()).collect::<Vec<_>>())
    .bind(payloads.iter().map(|(_, c)| *c).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_audit<'e, E: sqlx::Executor<'e, Database = Postgres>>(e: E, a: &NewAudit) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit (at, who, action, subject, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(a.at)
        .bind(&a.who)
        .bind(&a.action)
        .bind(&a.subject)
        .bind(&a.detail)
        .execute(e)
        .await?;
    Ok(())
}

impl PgStore {
    pub(in crate::store) async fn audit_add(&self, entry: &NewAudit) -> Result<(), StoreError> {
        insert_audit(&self.pool, entry).await
    }

    pub(in crate::store) async fn audit_list(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let q = format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY id DESC LIMIT $1");
        let rows = sqlx::query(&q).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| AuditEntry::read(r, ts(r.get::<DateTime<Utc>, _>(1)))).collect())
    }

    pub(in crate::store) async fn dead_letters(&self, limit: i64) -> Result<Vec<DeadLetter>, StoreError> {
        let q = format!("SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters ORDER BY id DESC LIMIT $1");
        let rows = sqlx::query(&q).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| DeadLetter::read(r, ts(r.get::<DateTime<Utc>, _>(1)))).collect())
    }

    pub(in crate::store) async fn outbox_problems(&self, limit: i64) -> Result<Vec<OutboxView>, StoreError> {
        let q = format!("SELECT {OUTBOX_VIEW_COLUMNS} FROM outbox WHERE status = ANY($1) ORDER BY id DESC LIMIT $2");
        let rows = sqlx::query(&q).bind(&PROBLEM_STATUSES[..]).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| OutboxView::read(r, ts(r.get::<DateTime<Utc>, _>(6)))).collect())
    }

    pub(in crate::store) async fn outbox_act(&self, id: i64, action: RowAction, due: Instant, who: &str, at: Instant) -> Result<Changed, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Locked, so a claim cannot take the row between the look and the change.
        let Some(row) = sqlx::query("SELECT status, order_id, channel, kind FROM outbox WHERE id = $1 FOR UPDATE").bind(id).fetch_optional(&mut *tx).await? else {
            return Ok(Changed::NotFound);
        };
        let from: String = row.get(0);
        let Some(to) = action.target(&from) else {
            return Ok(Changed::Refused { status: from });
        };
        let what = format!("order {}, {} {}", row.get::<String, _>(1), row.get::<String, _>(2), row.get::<String, _>(3));
        sqlx::query(row_update(action, to)).bind(id).bind(due).execute(&mut *tx).await?;
        insert_audit(&mut *tx, &row_audit(id, action, &from, to, &what, who, at)).await?;
        tx.commit().await?;
        Ok(Changed::Done { from, to: to.to_string() })
    }
}
