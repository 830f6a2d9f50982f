//! The trace and order search on PostgreSQL.

use sqlx::{Postgres, Row};

use belofte_core::domain::Instant;

use super::{prefix_end, OrderSearch, FOUND_AT_MOST};
use crate::store::postgres::PgStore;
use crate::store::StoreError;

/// The batch's steps, in its transaction: one `UNNEST` of one array per column.
pub(in crate::store) async fn insert(tx: &mut sqlx::Transaction<'static, Postgres>, rows: &[(String, Instant, String)]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query("INSERT INTO trace (order_id, at, step) SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[])")
        .bind(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.2.as_str()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl PgStore {
    pub(in crate::store) async fn order_trace(&self, order_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT step FROM trace WHERE order_id = $1 ORDER BY id").bind(order_id).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Each way of matching through its own index (the id's beginning through
    /// `orders_id_prefix`, in the "C" collation), each cut at the limit before the union.
    pub(in crate::store) async fn find_orders(&self, q: &OrderSearch) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            r#"(SELECT order_id, state FROM orders WHERE order_id COLLATE "C" >= $1 AND order_id COLLATE "C" < $2 ORDER BY order_id COLLATE "C" LIMIT $6)
             UNION (SELECT order_id, state FROM orders WHERE email = $3 LIMIT $6)
             UNION (SELECT order_id, state FROM orders WHERE phone = ANY($4) LIMIT $6)
             UNION (SELECT order_id, state FROM orders WHERE order_id IN (SELECT order_id FROM outbox WHERE lower(recipient) = ANY($5)) LIMIT $6)
             ORDER BY order_id LIMIT $6"#,
        )
        .bind(&q.id)
        .bind(prefix_end(&q.id))
        .bind(q.email.as_deref())
        .bind(&q.phones)
        .bind(q.recipients())
        .bind(FOUND_AT_MOST)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
