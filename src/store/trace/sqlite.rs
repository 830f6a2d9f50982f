//! The trace and order search on SQLite (timestamps as `ts` text).

use sqlx::{QueryBuilder, Row, Sqlite};

use belofte_core::domain::Instant;

use super::{prefix_end, OrderSearch, FOUND_AT_MOST};
use crate::store::sqlite::SqliteStore;
use crate::store::{ts, StoreError};

/// Three parameters a row: 500 rows stay far below SQLite's 32,766, and a batch's steps
/// (several per event) take a few statements.
const ROWS_PER_STATEMENT: usize = 500;

/// The batch's steps, in its transaction.
pub(in crate::store) async fn insert(tx: &mut sqlx::Transaction<'static, Sqlite>, rows: &[(String, Instant, String)]) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO trace (order_id, at, step) ");
        q.push_values(chunk, |mut row, (order_id, at, step)| {
            row.push_bind(order_id.as_str()).push_bind(ts(*at)).push_bind(step.as_str());
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

impl SqliteStore {
    pub(in crate::store) async fn order_trace(&self, order_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT step FROM trace WHERE order_id = ?1 ORDER BY id").bind(order_id).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Each way of matching through its own index, each cut at the limit before the union.
    pub(in crate::store) async fn find_orders(&self, q: &OrderSearch) -> Result<Vec<(String, String)>, StoreError> {
        let phone = |i: usize| q.phones.get(i).map(String::as_str);
        let recipients = q.recipients();
        let recipient = |i: usize| recipients.get(i).map(String::as_str);
        let rows = sqlx::query(
            "SELECT order_id, state FROM (SELECT order_id, state FROM orders WHERE order_id >= ?1 AND order_id < ?2 ORDER BY order_id LIMIT ?9)
             UNION SELECT order_id, state FROM (SELECT order_id, state FROM orders WHERE email = ?3 LIMIT ?9)
             UNION SELECT order_id, state FROM (SELECT order_id, state FROM orders WHERE phone IN (?4, ?5) LIMIT ?9)
             UNION SELECT order_id, state FROM (SELECT order_id, state FROM orders
                     WHERE order_id IN (SELECT order_id FROM outbox WHERE lower(recipient) IN (?6, ?7, ?8)) LIMIT ?9)
             ORDER BY order_id LIMIT ?9",
        )
        .bind(&q.id)
        .bind(prefix_end(&q.id))
        .bind(q.email.as_deref())
        .bind(phone(0))
        .bind(phone(1))
        .bind(recipient(0))
        .bind(recipient(1))
        .bind(recipient(2))
        .bind(FOUND_AT_MOST)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
