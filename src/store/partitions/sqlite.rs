//! The partition queries on SQLite.

use std::collections::{BTreeMap, HashMap};

use sqlx::{QueryBuilder, Row, Sqlite};

use belofte_core::domain::Instant;

use super::super::sqlite::{SqliteStore, ROWS_PER_STATEMENT};
use super::super::{key_from_bytes, seen, order_from_json, parked_from_json, parse_ts, ts, Snapshot, StoreError};
use super::{unrouted_event, Unrouted};

impl SqliteStore {
    pub(in crate::store) async fn take_over(&self, parts: &[i32], owner: &str) -> Result<Vec<(i32, i64)>, StoreError> {
        let mut tx = self.write_tx().await?;
        let mut epochs = Vec::with_capacity(parts.len());
        for &part in parts {
            let row = sqlx::query(
                "INSERT INTO partition_owners (part, owner, epoch) VALUES (?1, ?2, 1)
                 ON CONFLICT (part) DO UPDATE SET owner = excluded.owner, epoch = partition_owners.epoch + 1
                 RETURNING epoch",
            )
            .bind(part)
            .bind(owner)
            .fetch_one(&mut *tx)
            .await?;
            epochs.push((part, row.get::<i64, _>(0)));
        }
        tx.commit().await?;
        Ok(epochs)
    }

    pub(in crate::store) async fn load_parts(&self, parts: &[i32], snaps: &mut BTreeMap<i32, Snapshot>) -> Result<(), StoreError> {
        let list = in_list(parts);
        let q = format!("SELECT part, order_id, state FROM orders WHERE part IN ({list}) AND open");
        for row in sqlx::query(&q).fetch_all(&self.pool).await? {
            let part: i32 = row.get(0);
            let id: String = row.get(1);
            let json: String = row.get(2);
            snaps.entry(part).or_default().orders.push(order_from_json(&id, &json)?);
        }
        // Closed orders by id only (and their parcel): a late event about one is ignored.
        let q = format!(
            "SELECT o.part, o.order_id, t.tracking_number FROM orders o
             LEFT JOIN tracking t ON t.order_id = o.order_id WHERE o.part IN ({list}) AND NOT o.open"
        );
        for row in sqlx::query(&q).fetch_all(&self.pool).await? {
            let part: i32 = row.get(0);
            snaps.entry(part).or_default().closed.push((row.get(1), row.get(2)));
        }
        let q = format!("SELECT part, keys FROM seen_batches WHERE part IN ({list})");
        for row in sqlx::query(&q).fetch_all(&self.pool).await? {
            let part: i32 = row.get(0);
            let keys: &[u8] = row.get(1);
            snaps.entry(part).or_default().seen.extend(seen::ids(keys)?);
        }
        let q = format!("SELECT part, event, expires_at FROM parked WHERE part IN ({list})");
        for row in sqlx::query(&q).fetch_all(&self.pool).await? {
            let part: i32 = row.get(0);
            let json: String = row.get(1);
            let expires: String = row.get(2);
            snaps.entry(part).or_default().parked.push((parked_from_json(&json)?, parse_ts(&expires)?));
        }
        Ok(())
    }

    pub(in crate::store) async fn tracked(&self, numbers: &[String]) -> Result<HashMap<String, i32>, StoreError> {
        let mut found = HashMap::new();
        for chunk in numbers.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("SELECT tracking_number, part FROM tracking WHERE tracking_number IN (");
            let mut list = q.separated(", ");
            for n in chunk {
                list.push_bind(n.clone());
            }
            q.push(")");
            for row in q.build().fetch_all(&self.pool).await? {
                found.insert(row.get(0), row.get(1));
            }
        }
        Ok(found)
    }

    pub(in crate::store) async fn parts_of_orders(&self, ids: &[String]) -> Result<HashMap<String, i32>, StoreError> {
        let mut found = HashMap::new();
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("SELECT order_id, part FROM orders WHERE order_id IN (");
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id.clone());
            }
            q.push(")");
            for row in q.build().fetch_all(&self.pool).await? {
                found.insert(row.get(0), row.get(1));
            }
        }
        Ok(found)
    }

    pub(in crate::store) async fn unrouted_for(&self, numbers: &[String]) -> Result<Vec<Unrouted>, StoreError> {
        let mut found = Vec::new();
        for chunk in numbers.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT u.event_key, u.tracking_number, u.event, u.expires_at, t.part FROM unrouted u
                 LEFT JOIN tracking t ON t.tracking_number = u.tracking_number WHERE u.tracking_number IN (",
            );
            let mut list = q.separated(", ");
            for n in chunk {
                list.push_bind(n.clone());
            }
            q.push(")");
            for row in q.build().fetch_all(&self.pool).await? {
                found.push(unrouted_of(&row)?);
            }
        }
        Ok(found)
    }

    pub(in crate::store) async fn unrouted_due(&self, now: Instant, limit: i64) -> Result<Vec<Unrouted>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.event_key, u.tracking_number, u.event, u.expires_at, t.part FROM unrouted u
             LEFT JOIN tracking t ON t.tracking_number = u.tracking_number
             WHERE t.part IS NOT NULL OR u.expires_at <= ?1 ORDER BY u.expires_at LIMIT ?2",
        )
        .bind(ts(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(unrouted_of).collect()
    }
}

fn unrouted_of(row: &sqlx::sqlite::SqliteRow) -> Result<Unrouted, StoreError> {
    let key: Vec<u8> = row.get(0);
    let json: String = row.get(2);
    let expires: String = row.get(3);
    Ok(Unrouted {
        key: key_from_bytes(&key)?,
        tracking_number: row.get(1),
        event: unrouted_event(&json)?,
        expires_at: parse_ts(&expires)?,
        part: row.get(4),
    })
}

/// Partition numbers as an SQL list: integers only, so nothing to escape.
fn in_list(parts: &[i32]) -> String {
    parts.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
}
