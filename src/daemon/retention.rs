//! The sweep: closed orders leave the database `retention_days` after their last change, and
//! seen event ids after the replay horizon (`[database]`). It runs in the processor between
//! batches, over the partitions this instance owns, so it never races a batch of its own.
//! Closed orders left memory already, when their final state was committed
//! (`World::forget_closed`); what the sweep deletes, the worlds forget by id too.

use std::time::Duration;

use belofte_core::domain::Instant;

use crate::store::{Store, StoreError};

use super::config::DatabaseConfig;
use super::metrics::Metrics;
use super::owned::Owned;

pub struct Sweeper {
    keep: chrono::Duration,
    horizon: chrono::Duration,
    every: Duration,
    last: std::time::Instant,
    /// When the worlds' seen keys were last rotated (the daemon's clock).
    rotated: Option<Instant>,
}

impl Sweeper {
    pub fn new(cfg: &DatabaseConfig) -> Sweeper {
        Sweeper {
            keep: chrono::Duration::days(i64::from(cfg.retention_days)),
            horizon: chrono::Duration::hours(i64::from(cfg.replay_horizon_hours)),
            every: Duration::from_secs(u64::from(cfg.sweep_seconds.max(1))),
            last: std::time::Instant::now(),
            rotated: None,
        }
    }

    pub fn due(&self) -> bool {
        self.last.elapsed() >= self.every
    }

    /// Delete what has passed retention in the owned partitions and forget it in memory;
    /// once per replay horizon, start a new generation of seen keys in every world.
    pub async fn sweep(&mut self, store: &Store, owned: &mut Owned<'_>, now: Instant, metrics: &Metrics) -> Result<(), StoreError> {
        self.last = std::time::Instant::now();
        let swept = store.sweep(&owned.parts(), now - self.keep, now - self.horizon).await?;
        for (part, id, tracking) in &swept.orders {
            if let Some(w) = owned.world(*part) {
                w.drop_closed(id, tracking.as_deref());
            }
        }
        metrics.add("belofte_retention_deleted_total", &[("what", "orders")], swept.orders.len() as f64);
        metrics.add("belofte_retention_deleted_total", &[("what", "messages")], swept.messages as f64);
        metrics.add("belofte_retention_deleted_total", &[("what", "seen_ids")], swept.seen as f64);
        if !swept.orders.is_empty() || swept.seen > 0 {
            tracing::info!(orders = swept.orders.len(), messages = swept.messages, seen_ids = swept.seen, "retention sweep");
        }
        let rotated = *self.rotated.get_or_insert(now);
        if now - rotated >= self.horizon {
            for (_, w) in owned.worlds() {
                w.rotate_seen();
            }
            self.rotated = Some(now);
        }
        Ok(())
    }
}
