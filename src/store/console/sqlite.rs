//! The console's queries on SQLite.

use sqlx::{QueryBuilder, Row, Sqlite};

use belofte_core::domain::Instant;

use super::super::sqlite::{SqliteStore, ROWS_PER_STATEMENT};
use super::super::{ts, OutboxView, StoreError, OUTBOX_VIEW_COLUMNS};
use super::{row_audit, row_update, AuditEntry, AUDIT_COLUMNS, DEAD_LETTER_COLUMNS, Changed, DeadLetter, NewAudit, NewDeadLetter, RowAction, PROBLEM_STATUSES};

/// The dead letters of a batch, in its transaction.
pub(in crate::store) async fn insert_dead_letters(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    letters: &[NewDeadLetter],
    now: Instant,
) -> Result<(), StoreError> {
    let at = ts(now);
    for chunk in letters.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO dead_letters (at, topic, part, record_offset, reason, payload, truncated) ");
        q.push_values(chunk, |mut row, l| {
            let (payload, truncated) = l.payload_text();
            row.push_bind(at.clone())
                .push_bind(l.topic.clone())
                .push_bind(l.partition)
                .push_bind(l.offset)
                .push_bind(l.reason.clone())
                .push_bind(payload)
                .push_bind(truncated);
        });
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_audit<'e, E: sqlx::Executor<'e, Database = Sqlite>>(e: E, a: &NewAudit) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit (at, who, action, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5)")
        .bind(ts(a.at))
        .bind(&a.who)
        .bind(&a.action)
        .bind(&a.subject)
        .bind(&a.detail)
        .execute(e)
        .await?;
    Ok(())
}

impl SqliteStore {
    pub(in crate::store) async fn audit_add(&self, entry: &NewAudit) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        insert_audit(&mut *tx, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(in crate::store) async fn audit_list(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let q = format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY id DESC LIMIT ?1");
        let rows = sqlx::query(&q).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| AuditEntry::read(r, r.get(1))).collect())
    }

    pub(in crate::store) async fn dead_letters(&self, limit: i64) -> Result<Vec<DeadLetter>, StoreError> {
        let q = format!("SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters ORDER BY id DESC LIMIT ?1");
        let rows = sqlx::query(&q).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| DeadLetter::read(r, r.get(1))).collect())
    }

    pub(in crate::store) async fn outbox_problems(&self, limit: i64) -> Result<Vec<OutboxView>, StoreError> {
        let [a, b, c] = PROBLEM_STATUSES;
        let q = format!("SELECT {OUTBOX_VIEW_COLUMNS} FROM outbox WHERE status IN (?1, ?2, ?3) ORDER BY id DESC LIMIT ?4");
        let rows = sqlx::query(&q).bind(a).bind(b).bind(c).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| OutboxView::read(r, r.get(6))).collect())
    }

    pub(in crate::store) async fn outbox_act(&self, id: i64, action: RowAction, due: Instant, who: &str, at: Instant) -> Result<Changed, StoreError> {
        let mut tx = self.write_tx().await?;
        let Some(row) = sqlx::query("SELECT status, order_id, channel, kind FROM outbox WHERE id = ?1").bind(id).fetch_optional(&mut *tx).await? else {
            return Ok(Changed::NotFound);
        };
        let from: String = row.get(0);
        let Some(to) = action.target(&from) else {
            return Ok(Changed::Refused { status: from });
        };
        let what = format!("order {}, {} {}", row.get::<String, _>(1), row.get::<String, _>(2), row.get::<String, _>(3));
        sqlx::query(&row_update(action, to).replace('$', "?")).bind(id).bind(ts(due)).execute(&mut *tx).await?;
        insert_audit(&mut *tx, &row_audit(id, action, &from, to, &what, who, at)).await?;
        tx.commit().await?;
        Ok(Changed::Done { from, to: to.to_string() })
    }
}
