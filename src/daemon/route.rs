//! Where an event goes: the world of the partition its order lives in, here or on another
//! instance. The topology of Kafka Streams' repartition topics: an event keyed by order id on
//! partition `p` belongs to by-order partition `p` (the topics are co-partitioned, checked at
//! start-up) and is applied at once where this instance owns it, forwarded otherwise; a
//! carrier event, keyed by tracking number, finds its order's partition through the
//! tracking table and goes there; an incident goes to every partition.

use std::collections::HashMap;

use belofte_core::event::{Event, Route};

use crate::kafka::{KafkaConfig, Record};

use super::owned::{Owned, LEGACY};

/// The topics as ownership sees them.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The internal topic keyed by order id; its partitions are the unit of ownership.
    pub by_order: String,
    /// Consumed topics keyed by order id, co-partitioned with `by_order`.
    pub order_keyed: Vec<String>,
    /// Partitions of `by_order` (read from the brokers at start-up, `kafka::topology`).
    pub partitions: i32,
    /// This instance's name in the store (`partition_owners`).
    pub instance: String,
    /// For the co-partitioning check, when the brokers did not answer it at start-up.
    pub kafka: KafkaConfig,
}

impl Topology {
    /// The by-order partitions among assigned or revoked topic partitions. Partition 0 also
    /// carries the rows stored before ownership by partition (`LEGACY`).
    pub fn own_parts(&self, tps: &[(String, i32)]) -> Vec<i32> {
        let mut parts: Vec<i32> = tps.iter().filter(|(t, _)| *t == self.by_order).map(|(_, p)| *p).collect();
        if parts.contains(&0) {
            parts.push(LEGACY);
        }
        parts.sort_unstable();
        parts.dedup();
        parts
    }

    fn keyed_by_order(&self, topic: &str) -> bool {
        topic == self.by_order || self.order_keyed.iter().any(|t| t == topic)
    }
}

/// What to do with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Apply it to this owned partition's world.
    Local(i32),
    /// Apply it to these owned worlds, and forward a copy to each of these partitions.
    Many { local: Vec<i32>, forward_to: Vec<i32> },
    /// Another instance owns the order: forward it to that partition.
    Forward { part: i32, key: Option<String>, why: &'static str },
    /// No order has shipped with this tracking number yet: keep it until one does.
    Wait { tracking_number: String },
}

/// Decide where `event`, received in `r`, goes. `tracked` and `order_parts` are what the
/// store knows of tracking numbers and orders no local world holds.
pub fn route(
    topology: &Topology,
    owned: &Owned<'_>,
    tracked: &HashMap<String, i32>,
    order_parts: &HashMap<String, i32>,
    r: &Record,
    event: &Event,
) -> Target {
    let arrived = r.partition;
    if r.topic == topology.by_order {
        // Already routed (by whoever forwarded it): this partition is the one. Only the
        // legacy rows, which partition 0's owner holds, are looked up.
        return match event.fact.route() {
            Route::Order(id) => Target::Local(owned.part_of_order(id).unwrap_or(arrived)),
            Route::Tracking(number) => Target::Local(owned.part_of_tracking(number).unwrap_or(arrived)),
            Route::Broadcast => Target::Many {
                local: [arrived, LEGACY].into_iter().filter(|&p| (p == arrived || arrived == 0) && owned.owns(p)).collect(),
                forward_to: Vec::new(),
            },
        };
    }
    match event.fact.route() {
        Route::Order(id) => {
            // Where the order already lives wins: a legacy row, or a producer that keyed
            // one of the order's events by something else.
            if let Some(part) = owned.part_of_order(id) {
                return Target::Local(part);
            }
            if let Some(&part) = order_parts.get(id) {
                return local_or_forward(owned, part, Some(id), "order");
            }
            if topology.keyed_by_order(&r.topic) {
                local_or_forward(owned, arrived, Some(id), "partition")
            } else {
                // A new order on a topic that is not keyed by order id: where the record
                // landed says nothing, so the order takes the partition it landed on in
                // the by-order numbering (any one is right, as long as it is one).
                local_or_forward(owned, arrived.rem_euclid(topology.partitions.max(1)), Some(id), "order")
            }
        }
        Route::Tracking(number) => {
            if let Some(part) = owned.part_of_tracking(number) {
                return Target::Local(part);
            }
            match tracked.get(number) {
                Some(&part) => local_or_forward(owned, part, None, "tracking"),
                None => Target::Wait { tracking_number: number.to_string() },
            }
        }
        Route::Broadcast => Target::Many {
            local: owned.parts(),
            forward_to: (0..topology.partitions).filter(|p| !owned.owns(*p)).collect(),
        },
    }
}

fn local_or_forward(owned: &Owned<'_>, part: i32, key: Option<&str>, why: &'static str) -> Target {
    if owned.owns(part) {
        Target::Local(part)
    } else {
        // Legacy orders live with partition 0's owner.
        Target::Forward { part: part.max(0), key: key.map(str::to_string), why }
    }
}
