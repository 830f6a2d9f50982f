//! What ownership by partition keeps: each partition's orders, seen ids and parked events
//! (loaded when the partition is assigned), the epoch that fences a presumed-dead owner, the
//! tracking-number → order table, and carrier events waiting for their tracking number.

use std::collections::{BTreeMap, HashMap};

use sqlx::{QueryBuilder, Row, Sqlite};

use belofte_core::domain::Instant;
use belofte_core::event::Event;

use super::{key_from_bytes, parse_ts, ts, Snapshot, Store, StoreError, ROWS_PER_STATEMENT};

/// A carrier event kept until an order has shipped with its tracking number.
#[derive(Debug, Clone)]
pub struct Unrouted {
    pub key: u128,
    pub tracking_number: String,
    pub event: Event,
    pub expires_at: Instant,
    /// The partition of the order that shipped with the number, once one has.
    pub part: Option<i32>,
}

impl Store {
    /// Take partitions over: each one's epoch goes up by one and is returned. A batch commits
    /// only while its partitions still have the epoch its instance took them over with.
    pub async fn take_over(&self, parts: &[i32], owner: &str) -> Result<Vec<(i32, i64)>, StoreError> {
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

    /// What the store keeps of some partitions, per partition.
    pub async fn load_parts(&self, parts: &[i32]) -> Result<BTreeMap<i32, Snapshot>, StoreError> {
        let mut snaps: BTreeMap<i32, Snapshot> = parts.iter().map(|&p| (p, Snapshot::default())).collect();
        if parts.is_empty() {
            return Ok(snaps);
        }
        let list = in_list(parts);
        let q = format!("SELECT part, order_id, state FROM orders WHERE part IN ({list})");
        for row in sqlx::query(&q).fetch_all(&self.pool).await? {
            let part: i32 = row.get(0);
            let id: String = row.get(1);
            let json: String = row.get(2);
            let state = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt { what: format!("order {id}"), message: e.to_string() })?;
            snaps.entry(part).or_default().orders.push(state);
        }
        let q = format!("SELECT part, event_key FROM seen_events WHERE part IN ({list})");
        for row in sqlx::query(&q).fetch_all(&self.pool).await? {
            let part: i32 = row.get(0);
            let key: Vec<u8> = row.get(1);
            snaps.entry(part).or_default().seen.push(key_from_bytes(&key)?);
        }
        let q = format!("SELECT part, event, expires_at FROM parked WHERE part IN ({list})");
        for row in sqlx::query(&q).fetch_all(&self.pool).await? {
            let part: i32 = row.get(0);
            let json: String = row.get(1);
            let expires: String = row.get(2);
            let event = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt { what: "parked event".into(), message: e.to_string() })?;
            snaps.entry(part).or_default().parked.push((event, parse_ts(&expires)?));
        }
        Ok(snaps)
    }

    /// The partitions of the orders that shipped with these tracking numbers.
    pub async fn tracked(&self, numbers: &[String]) -> Result<HashMap<String, i32>, StoreError> {
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

    /// The partitions of these orders, where the store has them.
    pub async fn parts_of_orders(&self, ids: &[String]) -> Result<HashMap<String, i32>, StoreError> {
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

    /// The carrier events waiting for these tracking numbers, oldest first.
    pub async fn unrouted_for(&self, numbers: &[String]) -> Result<Vec<Unrouted>, StoreError> {
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
        found.sort_by_key(|u| u.event.time);
        Ok(found)
    }

    /// Waiting carrier events that can go now: their order shipped (`part` is set; the
    /// mapping may have committed on another instance after the event was kept), or they
    /// waited `park_hours` (`expires_at <= now`: dead-letter them).
    pub async fn unrouted_due(&self, now: Instant, limit: i64) -> Result<Vec<Unrouted>, StoreError> {
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
        event: serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt { what: "unrouted event".into(), message: e.to_string() })?,
        expires_at: parse_ts(&expires)?,
        part: row.get(4),
    })
}

/// Partition numbers as an SQL list: integers only, so nothing to escape.
fn in_list(parts: &[i32]) -> String {
    parts.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
}
