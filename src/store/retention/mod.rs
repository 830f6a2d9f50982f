//! Retention: what leaves the database, and when. A closed order (cancelled, or delivered
//! with its follow-up done: `open` false) is deleted `retention_days` after its last change,
//! with its tracking number, its trace and its finished outbox rows (their attempts and
//! provider statuses too); a seen event id is deleted once it is older than the replay horizon.
//! Each table is swept in chunks, one short transaction per chunk, so that a sweep never
//! holds the database long.

use belofte_core::domain::Instant;

use super::{on_backend, Store, StoreError};

mod postgres;
mod sqlite;

/// Rows deleted per statement and transaction.
pub(super) const CHUNK: i64 = 2_000;

/// Seen-id rows deleted per transaction: each holds a batch's ids of one partition (up to
/// `kafka.max_batch_events` of them, 16 bytes each).
pub(super) const SEEN_CHUNK: i64 = 100;

/// The outbox statuses that are finished: nothing will happen to such a row any more.
pub(super) const FINISHED: &str = "('sent', 'failed', 'cancelled')";

/// What one sweep deleted.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Swept {
    /// The closed orders deleted: partition, order id, tracking number.
    pub orders: Vec<(i32, String, Option<String>)>,
    /// Outbox rows of those orders (with their attempts and provider statuses).
    pub messages: u64,
    pub seen: u64,
}

impl Store {
    /// Delete, in the partitions `parts`, the closed orders last changed before
    /// `orders_before` (and what belongs to them), and the seen event ids recorded before
    /// `seen_before`. Rows of other partitions are their owners' to sweep.
    pub async fn sweep(&self, parts: &[i32], orders_before: Instant, seen_before: Instant) -> Result<Swept, StoreError> {
        let mut swept = Swept::default();
        if parts.is_empty() {
            return Ok(swept);
        }
        loop {
            let (orders, messages) = on_backend!(self, b => b.sweep_orders(parts, orders_before).await)?;
            let full = orders.len() as i64 >= CHUNK;
            swept.orders.extend(orders);
            swept.messages += messages;
            if !full {
                break;
            }
        }
        loop {
            let (rows, ids) = on_backend!(self, b => b.sweep_seen(parts, seen_before).await)?;
            swept.seen += ids;
            if rows < SEEN_CHUNK {
                break;
            }
        }
        Ok(swept)
    }
}
