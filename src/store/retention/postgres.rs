//! Retention on PostgreSQL.

use sqlx::Row;

use belofte_core::domain::Instant;

use super::super::postgres::PgStore;
use super::super::{seen, StoreError};
use super::{CHUNK, FINISHED, SEEN_CHUNK};

impl PgStore {
    /// One chunk of closed orders: (deleted orders, outbox rows deleted with them).
    pub(in crate::store) async fn sweep_orders(&self, parts: &[i32], before: Instant) -> Result<(Vec<(i32, String, Option<String>)>, u64), StoreError> {
        let mut tx = self.pool.begin().await?;
        let q = format!(
            "DELETE FROM orders WHERE order_id IN
               (SELECT order_id FROM orders WHERE part = ANY($1) AND NOT open AND updated_at < $2 LIMIT {CHUNK} FOR UPDATE SKIP LOCKED)
             RETURNING part, order_id"
        );
        let rows = sqlx::query(&q).bind(parts).bind(before).fetch_all(&mut *tx).await?;
        let mut orders: Vec<(i32, String, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1), None)).collect();
        if orders.is_empty() {
            tx.commit().await?;
            return Ok((orders, 0));
        }
        let ids: Vec<String> = orders.iter().map(|(_, id, _)| id.clone()).collect();
        let numbers = sqlx::query("DELETE FROM tracking WHERE order_id = ANY($1) RETURNING order_id, tracking_number")
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
        let by_order: std::collections::HashMap<String, String> = numbers.iter().map(|r| (r.get(0), r.get(1))).collect();
        for (_, id, number) in &mut orders {
            *number = by_order.get(id.as_str()).cloned();
        }
        sqlx::query("DELETE FROM trace WHERE order_id = ANY($1)").bind(&ids).execute(&mut *tx).await?;
        let finished = format!("SELECT id FROM outbox WHERE order_id = ANY($1) AND status IN {FINISHED}");
        sqlx::query(&format!("DELETE FROM attempts WHERE outbox_id IN ({finished})")).bind(&ids).execute(&mut *tx).await?;
        sqlx::query(&format!("DELETE FROM provider_events WHERE outbox_id IN ({finished})")).bind(&ids).execute(&mut *tx).await?;
        let messages = sqlx::query(&format!("DELETE FROM outbox WHERE id IN ({finished})")).bind(&ids).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok((orders, messages.rows_affected()))
    }

    /// One chunk of seen-id rows older than the replay horizon: rows deleted, ids they held.
    pub(in crate::store) async fn sweep_seen(&self, parts: &[i32], before: Instant) -> Result<(i64, u64), StoreError> {
        let q = format!(
            "DELETE FROM seen_batches WHERE id IN
               (SELECT id FROM seen_batches WHERE part = ANY($1) AND seen_at < $2 LIMIT {SEEN_CHUNK})
             RETURNING length(keys)::bigint"
        );
        let lengths: Vec<i64> = sqlx::query_scalar(&q).bind(parts).bind(before).fetch_all(&self.pool).await?;
        Ok((lengths.len() as i64, seen::count(lengths)))
    }
}
