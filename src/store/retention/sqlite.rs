//! Retention on SQLite.

use sqlx::Row;

use belofte_core::domain::Instant;

use super::super::sqlite::SqliteStore;
use super::super::{seen, ts, StoreError};
use super::{CHUNK, FINISHED, SEEN_CHUNK};

fn in_list(parts: &[i32]) -> String {
    parts.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
}

impl SqliteStore {
    /// One chunk of closed orders: (deleted orders, outbox rows deleted with them).
    pub(in crate::store) async fn sweep_orders(&self, parts: &[i32], before: Instant) -> Result<(Vec<(i32, String, Option<String>)>, u64), StoreError> {
        let list = in_list(parts);
        let mut tx = self.write_tx().await?;
        let q = format!(
            "DELETE FROM orders WHERE order_id IN
               (SELECT order_id FROM orders WHERE part IN ({list}) AND open = 0 AND updated_at < ?1 LIMIT {CHUNK})
             RETURNING part, order_id"
        );
        let rows = sqlx::query(&q).bind(ts(before)).fetch_all(&mut *tx).await?;
        let mut orders: Vec<(i32, String, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1), None)).collect();
        if orders.is_empty() {
            tx.commit().await?;
            return Ok((orders, 0));
        }
        let ids = serde_json::to_string(&orders.iter().map(|(_, id, _)| id.as_str()).collect::<Vec<_>>())
            .map_err(|e| StoreError::Io(e.to_string()))?;
        // The ids as one JSON array parameter: any number of them in one statement.
        let gone = "SELECT value FROM json_each(?1)";
        let numbers = sqlx::query(&format!("DELETE FROM tracking WHERE order_id IN ({gone}) RETURNING order_id, tracking_number"))
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
        let by_order: std::collections::HashMap<String, String> = numbers.iter().map(|r| (r.get(0), r.get(1))).collect();
        for (_, id, number) in &mut orders {
            *number = by_order.get(id.as_str()).cloned();
        }
        sqlx::query(&format!("DELETE FROM trace WHERE order_id IN ({gone})")).bind(&ids).execute(&mut *tx).await?;
        let finished = format!("SELECT id FROM outbox WHERE order_id IN ({gone}) AND status IN {FINISHED}");
        sqlx::query(&format!("DELETE FROM attempts WHERE outbox_id IN ({finished})")).bind(&ids).execute(&mut *tx).await?;
        sqlx::query(&format!("DELETE FROM provider_events WHERE outbox_id IN ({finished})")).bind(&ids).execute(&mut *tx).await?;
        let messages = sqlx::query(&format!("DELETE FROM outbox WHERE id IN ({finished})")).bind(&ids).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok((orders, messages.rows_affected()))
    }

    /// One chunk of seen-id rows older than the replay horizon: rows deleted, ids they held.
    pub(in crate::store) async fn sweep_seen(&self, parts: &[i32], before: Instant) -> Result<(i64, u64), StoreError> {
        let list = in_list(parts);
        let mut tx = self.write_tx().await?;
        let q = format!(
            "DELETE FROM seen_batches WHERE id IN
               (SELECT id FROM seen_batches WHERE part IN ({list}) AND seen_at < ?1 LIMIT {SEEN_CHUNK})
             RETURNING length(keys)"
        );
        let lengths: Vec<i64> = sqlx::query_scalar(&q).bind(ts(before)).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok((lengths.len() as i64, seen::count(lengths)))
    }
}
