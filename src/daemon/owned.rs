//! The orders this instance owns: one `World` per partition of the by-order topic that the
//! consumer group assigned to it, loaded on assign and dropped on revoke.
//!
//! An order belongs to the partition its events arrive on (orders and warehouse topics are
//! keyed by order id and co-partitioned with the by-order topic), so partition `p`'s world
//! holds exactly the orders whose events only partition `p` carries. Worlds never share an
//! order: each one is what a single-instance daemon would hold for those orders, and the
//! engine inside is the same one `simulate` runs.
//!
//! Rows stored before ownership existed carry no partition (`LEGACY`): they live in a world
//! of their own, held by whoever owns partition 0 (with SQLite, the one instance), and their
//! events are routed to it by looking the order up there first.

use std::collections::BTreeMap;

use belofte_core::domain::Instant;
use belofte_core::policy::Policy;
use belofte_core::world::World;

use crate::store::Snapshot;

/// The partition of rows written before partitions were recorded.
pub const LEGACY: i32 = -1;

pub struct Owned<'p> {
    policy: &'p Policy,
    /// The worlds record their trace (`[trace] keep`).
    traced: bool,
    worlds: BTreeMap<i32, World<'p>>,
}

impl<'p> Owned<'p> {
    pub fn new(policy: &'p Policy, traced: bool) -> Self {
        Owned { policy, traced, worlds: BTreeMap::new() }
    }

    /// Take over partition `part` with what the store kept of it.
    pub fn adopt(&mut self, part: i32, snapshot: Snapshot) {
        let mut world = World::new(self.policy).tracking_changes();
        if self.traced {
            world = world.traced();
        }
        for key in snapshot.seen {
            world.remember_key(key);
        }
        for order in snapshot.orders {
            world.restore(order);
        }
        for (id, tracking_number) in &snapshot.closed {
            world.remember_closed(id, tracking_number.as_deref());
        }
        for (event, expires) in snapshot.parked {
            world.restore_parked(event, expires);
        }
        self.worlds.insert(part, world);
    }

    /// Give partition `part` up; whatever it held was committed before the revoke returned.
    pub fn drop_part(&mut self, part: i32) -> bool {
        self.worlds.remove(&part).is_some()
    }

    pub fn owns(&self, part: i32) -> bool {
        self.worlds.contains_key(&part)
    }

    /// The partitions held, the legacy one included.
    pub fn parts(&self) -> Vec<i32> {
        self.worlds.keys().copied().collect()
    }

    pub fn world(&mut self, part: i32) -> Option<&mut World<'p>> {
        self.worlds.get_mut(&part)
    }

    /// Every world, for timers and broadcasts.
    pub fn worlds(&mut self) -> impl Iterator<Item = (i32, &mut World<'p>)> {
        self.worlds.iter_mut().map(|(p, w)| (*p, w))
    }

    /// The partition whose world holds order `id`.
    pub fn part_of_order(&self, id: &str) -> Option<i32> {
        self.worlds.iter().find(|(_, w)| w.knows_order(id)).map(|(p, _)| *p)
    }

    /// The partition holding the order shipped with tracking number `number`.
    pub fn part_of_tracking(&self, number: &str) -> Option<i32> {
        self.worlds.iter().find(|(_, w)| w.knows_tracking(number)).map(|(p, _)| *p)
    }

    /// The earliest moment any world has something due.
    pub fn next_due(&self) -> Option<Instant> {
        self.worlds.values().filter_map(World::next_due).min()
    }

    pub fn order_count(&self) -> usize {
        self.worlds.values().map(World::order_count).sum()
    }

    /// Closed orders remembered by id only.
    pub fn closed_count(&self) -> usize {
        self.worlds.values().map(World::closed_count).sum()
    }

    pub fn parked_count(&self) -> usize {
        self.worlds.values().map(World::parked_count).sum()
    }
}
