//! What ownership by partition keeps: each partition's orders, seen ids and parked events
//! (loaded when the partition is assigned), the epoch that fences a presumed-dead owner, the
//! tracking-number → order table, and carrier events waiting for their tracking number. The
//! queries of each backend are in `sqlite` and `postgres`.

use std::collections::{BTreeMap, HashMap};

use belofte_core::domain::Instant;
use belofte_core::event::Event;

use super::{on_backend, Snapshot, Store, StoreError};

mod postgres;
mod sqlite;

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
    /// Take partitions over for `owner`: each one's epoch goes up by one and is returned. A
    /// batch commits only while its partitions still have the epoch they were taken with.
    pub async fn take_over(&self, parts: &[i32], owner: &str) -> Result<Vec<(i32, i64)>, StoreError> {
        let mut epochs = on_backend!(self, b => b.take_over(parts, owner).await)?;
        epochs.sort_unstable();
        Ok(epochs)
    }

    /// What the store keeps of some partitions, per partition.
    pub async fn load_parts(&self, parts: &[i32]) -> Result<BTreeMap<i32, Snapshot>, StoreError> {
        let mut snaps: BTreeMap<i32, Snapshot> = parts.iter().map(|&p| (p, Snapshot::default())).collect();
        if !parts.is_empty() {
            on_backend!(self, b => b.load_parts(parts, &mut snaps).await)?;
        }
        Ok(snaps)
    }

    /// The partitions of the orders that shipped with these tracking numbers.
    pub async fn tracked(&self, numbers: &[String]) -> Result<HashMap<String, i32>, StoreError> {
        on_backend!(self, b => b.tracked(numbers).await)
    }

    /// The partitions of these orders, where the store has them.
    pub async fn parts_of_orders(&self, ids: &[String]) -> Result<HashMap<String, i32>, StoreError> {
        on_backend!(self, b => b.parts_of_orders(ids).await)
    }

    /// The carrier events waiting for these tracking numbers, oldest first.
    pub async fn unrouted_for(&self, numbers: &[String]) -> Result<Vec<Unrouted>, StoreError> {
        let mut found = on_backend!(self, b => b.unrouted_for(numbers).await)?;
        found.sort_by_key(|u| u.event.time);
        Ok(found)
    }

    /// Waiting carrier events that can go now: their order shipped (`part` is set; the
    /// mapping may have committed on another instance after the event was kept), or they
    /// waited `park_hours` (`expires_at <= now`: dead-letter them).
    pub async fn unrouted_due(&self, now: Instant, limit: i64) -> Result<Vec<Unrouted>, StoreError> {
        on_backend!(self, b => b.unrouted_due(now, limit).await)
    }
}

fn unrouted_event(json: &str) -> Result<Event, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt { what: "unrouted event".into(), message: e.to_string() })
}
