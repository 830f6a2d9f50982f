//! The partition queries on PostgreSQL.

use std::collections::{BTreeMap, HashMap};

use sqlx::Row;

use belofte_core::domain::Instant;

use super::super::postgres::PgStore;
use super::super::{key_from_bytes, seen, order_from_json, parked_from_json, Snapshot, StoreError};
use super::{unrouted_event, Unrouted};

impl PgStore {
    pub(in crate::store) async fn take_over(&self, parts: &[i32], owner: &str) -> Result<Vec<(i32, i64)>, StoreError> {
        // Waits for a batch of the previous owner that holds the rows locked (its commit
        // then still passes its check), and from here on every batch of it fails.
        let rows = sqlx::query(
            "INSERT INTO partition_owners (part, owner, epoch) SELECT p, $2, 1 FROM UNNEST($1::int[]) AS t(p)
             ON CONFLICT (part) DO UPDATE SET owner = excluded.owner, epoch = partition_owners.epoch + 1
             RETURNING part, epoch",
        )
        .bind(parts)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub(in crate::store) async fn load_parts(&self, parts: &[i32], snaps: &mut BTreeMap<i32, Snapshot>) -> Result<(), StoreError> {
        for row in sqlx::query("SELECT part, order_id, state FROM orders WHERE part = ANY($1) AND open").bind(parts).fetch_all(&self.pool).await? {
            let id: String = row.get(1);
            let json: String = row.get(2);
            snaps.entry(row.get(0)).or_default().orders.push(order_from_json(&id, &json)?);
        }
        // Closed orders by id only (and their parcel): a late event about one is ignored.
        let closed = "SELECT o.part, o.order_id, t.tracking_number FROM orders o
                      LEFT JOIN tracking t ON t.order_id = o.order_id WHERE o.part = ANY($1) AND NOT o.open";
        for row in sqlx::query(closed).bind(parts).fetch_all(&self.pool).await? {
            snaps.entry(row.get(0)).or_default().closed.push((row.get(1), row.get(2)));
        }
        for row in sqlx::query("SELECT part, keys FROM seen_batches WHERE part = ANY($1)").bind(parts).fetch_all(&self.pool).await? {
            let keys: &[u8] = row.get(1);
            snaps.entry(row.get(0)).or_default().seen.extend(seen::ids(keys)?);
        }
        for row in sqlx::query("SELECT part, event, expires_at FROM parked WHERE part = ANY($1)").bind(parts).fetch_all(&self.pool).await? {
            let json: String = row.get(1);
            snaps.entry(row.get(0)).or_default().parked.push((parked_from_json(&json)?, row.get(2)));
        }
        Ok(())
    }

    pub(in crate::store) async fn tracked(&self, numbers: &[String]) -> Result<HashMap<String, i32>, StoreError> {
        let rows = sqlx::query("SELECT tracking_number, part FROM tracking WHERE tracking_number = ANY($1)").bind(numbers).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub(in crate::store) async fn parts_of_orders(&self, ids: &[String]) -> Result<HashMap<String, i32>, StoreError> {
        let rows = sqlx::query("SELECT order_id, part FROM orders WHERE order_id = ANY($1)").bind(ids).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub(in crate::store) async fn unrouted_for(&self, numbers: &[String]) -> Result<Vec<Unrouted>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.event_key, u.tracking_number, u.event, u.expires_at, t.part FROM unrouted u
             LEFT JOIN tracking t ON t.tracking_number = u.tracking_number WHERE u.tracking_number = ANY($1)",
        )
        .bind(numbers)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(unrouted_of).collect()
    }

    pub(in crate::store) async fn unrouted_due(&self, now: Instant, limit: i64) -> Result<Vec<Unrouted>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.event_key, u.tracking_number, u.event, u.expires_at, t.part FROM unrouted u
             LEFT JOIN tracking t ON t.tracking_number = u.tracking_number
             WHERE t.part IS NOT NULL OR u.expires_at <= $1 ORDER BY u.expires_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(unrouted_of).collect()
    }
}

fn unrouted_of(row: &sqlx::postgres::PgRow) -> Result<Unrouted, StoreError> {
    let key: Vec<u8> = row.get(0);
    let json: String = row.get(2);
    Ok(Unrouted { key: key_from_bytes(&key)?, tracking_number: row.get(1), event: unrouted_event(&json)?, expires_at: row.get(3), part: row.get(4) })
}
