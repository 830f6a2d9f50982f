//! The one task that owns the engine's state. It takes Kafka records (a poll batch at a
//! time) and timer wake-ups, runs them through the same `World` as `simulate` (one per
//! owned partition, `owned`), commits the changed states, seen ids, parked events and outbox
//! rows in one transaction, and only then stores the Kafka offsets. A crash anywhere before
//! the commit replays the batch; a crash after it finds the ids already seen.
//!
//! Ownership: partition `p` of the by-order topic is one `World`, holding the orders whose
//! events arrive on partition `p` of the order-keyed topics. An event is applied where its
//! order lives (`route`); one that belongs to a partition another instance owns is forwarded
//! there, and the source offset is stored only after the forward is acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use belofte_core::domain::{Channel, Instant};
use belofte_core::engine::Decision;
use belofte_core::policy::Policy;
use belofte_core::event::{decode, Event, Fact};
use belofte_core::world::{event_key, Effects, Outcome};

use crate::kafka::topology::check_copartitioned;
use crate::kafka::{Ingest, Producers, Rebalanced, Record};
use crate::render::line::{action_data, local_rfc3339};
use crate::store::{Batch, NewDeadLetter, NewMessage, Store, Unrouted};

use super::owned::{Owned, LEGACY};
use super::route::{route, Target, Topology};
use super::retention::Sweeper;
use super::{DaemonError, Shared};

/// How often carrier events kept for an unknown tracking number are looked at again: the
/// order may have shipped on another instance, or their time may be up.
const UNROUTED_EVERY: Duration = Duration::from_secs(2);

/// Waiting carrier events taken per look.
const UNROUTED_BATCH: i64 = 500;

pub async fn run(
    shared: Arc<Shared>,
    ingest: Arc<Ingest>,
    producers: Arc<Producers>,
    store: Arc<Store>,
    mut topology: Topology,
    keep_trace: bool,
    mut shutdown: watch::Receiver<bool>,
    wake_dispatch: Arc<Notify>,
    mut sweeper: Sweeper,
) -> Result<(), DaemonError> {
    // The engine decides with the wording's policy (voucher tiers of a published brand
    // document). Its worlds borrow it; when a publish changes what the engine reads, the
    // worlds are built again on the new policy from what the store holds — everything is
    // committed between batches — as a restart would, without one.
    let mut engine_policy = shared.live.get().policy.clone();
    let mut checked_policy = engine_policy.clone();
    let mut held: Vec<i32> = Vec::new();
    let mut fences: BTreeMap<i32, i64> = BTreeMap::new();
    shared.metrics.set("belofte_orders", &[], 0.0);
    // "No events for a long time" counts from the start until the first record.
    shared.metrics.set("belofte_last_event_timestamp_seconds", &[], shared.clock.now().timestamp() as f64);

    let mut last_now: Option<Instant> = None;
    let mut broker_error_logged = false;
    let mut last_look = std::time::Instant::now();
    'policy: loop {
        let mut owned = Owned::new(&engine_policy, keep_trace);
        if !held.is_empty() {
            let started = std::time::Instant::now();
            for (p, snapshot) in store.load_parts(&held).await? {
                owned.adopt(p, snapshot);
            }
            tracing::info!(partitions = ?held, orders = owned.order_count(), seconds = started.elapsed().as_secs_f64(), "published voucher tiers: worlds rebuilt on the new policy");
        }
        loop {
            let due = owned.next_due().map(|t| shared.clock.until(t)).unwrap_or(Duration::from_secs(60));
            let sleep = due.min(UNROUTED_EVERY.saturating_sub(last_look.elapsed()));
            let first = tokio::select! {
                biased;
                _ = shutdown.changed() => break 'policy,
                r = ingest.recv() => Some(r),
                // An assignment with no record yet: its worlds are loaded now (below).
                _ = ingest.rebalanced() => None,
                _ = tokio::time::sleep(sleep) => None,
            };
            let mut records = Vec::new();
            let mut changes = Vec::new();
            match first {
                Some(Ok(r)) => {
                    broker_error_logged = false;
                    note_rebalances(&ingest, &mut records, &mut changes);
                    records.push(r);
                    // Whatever else is already waiting joins this transaction.
                    while records.len() < topology.kafka.max_batch_events {
                        tokio::select! {
                            biased;
                            r = ingest.recv() => match r {
                                Ok(r) => {
                                    note_rebalances(&ingest, &mut records, &mut changes);
                                    records.push(r);
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "kafka receive failed");
                                    break;
                                }
                            },
                            _ = std::future::ready(()) => break,
                        }
                    }
                }
                Some(Err(e)) => {
                    if !broker_error_logged {
                        tracing::warn!(error = %e, "kafka receive failed; retrying");
                        broker_error_logged = true;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                None => {}
            }
            note_rebalances(&ingest, &mut records, &mut changes);
            for change in changes {
                rebalance(&shared, &store, &mut topology, &mut owned, &mut fences, change).await?;
            }
            let now = {
                let now = shared.clock.now();
                let now = last_now.map_or(now, |l| l.max(now));
                last_now = Some(now);
                now
            };
            let look = last_look.elapsed() >= UNROUTED_EVERY;
            if look {
                last_look = std::time::Instant::now();
            }
            let started = std::time::Instant::now();
            let mut step = Step { shared: &shared, owned: &mut owned, store: &store, producers: &producers, topology: &topology, now };
            step.run(&records, &fences, look).await?;
            ingest.store(&records)?;
            if sweeper.due() {
                sweeper.sweep(&store, &mut owned, now, &shared.metrics).await?;
            }
            if !records.is_empty() {
                let per = started.elapsed().as_secs_f64() / records.len() as f64;
                shared.metrics.observe_many("belofte_event_seconds", &[], per, records.len() as u64);
                shared.metrics.set("belofte_last_event_timestamp_seconds", &[], now.timestamp() as f64);
            }
            shared.metrics.set("belofte_orders", &[], owned.order_count() as f64);
            shared.metrics.set("belofte_closed_orders", &[], owned.closed_count() as f64);
            shared.metrics.set("belofte_parked_events", &[], owned.parked_count() as f64);
            wake_dispatch.notify_waiters();
            let current = shared.live.get().policy.clone();
            if !Arc::ptr_eq(&current, &checked_policy) {
                checked_policy = current.clone();
                if decides_differently(&engine_policy, &current) {
                    held = owned.parts();
                    drop(owned);
                    engine_policy = current;
                    continue 'policy;
                }
            }
        }
    }
    if let Err(e) = ingest.commit_now() {
        tracing::warn!(error = %e, "final offset commit failed; the last events will be replayed (and deduplicated)");
    }
    Ok(())
}

/// Whether the engine would decide differently under `b` than under `a`: what a published
/// brand document changes and the engine reads, its voucher tiers (tone, names, senders
/// and links are read at render, from the live wording).
fn decides_differently(a: &Policy, b: &Policy) -> bool {
    a.brands.len() != b.brands.len()
        || a.brands.iter().any(|(id, x)| b.brands.get(id).is_none_or(|y| x.compensation != y.compensation))
}

/// Take the assignment changes that happened in the last `recv`. Records received before a
/// revoke of their partition are dropped: their offsets were not stored, so the partition's
/// next owner (perhaps this instance again) replays them from the committed offset.
fn note_rebalances(ingest: &Ingest, records: &mut Vec<Record>, changes: &mut Vec<Rebalanced>) {
    for change in ingest.take_rebalances() {
        if let Rebalanced::Revoked(gone) = &change {
            records.retain(|r| !gone.iter().any(|(t, p)| *t == r.topic && *p == r.partition));
        }
        changes.push(change);
    }
}

/// Act on one assignment change: drop the worlds of revoked by-order partitions (all they
/// did is committed: the processor only awaits `recv` between batches), load those of
/// assigned ones after taking them over in the store.
async fn rebalance(
    shared: &Shared,
    store: &Store,
    topology: &mut Topology,
    owned: &mut Owned<'_>,
    fences: &mut BTreeMap<i32, i64>,
    change: Rebalanced,
) -> Result<(), DaemonError> {
    match change {
        Rebalanced::Revoked(gone) => {
            let parts = topology.own_parts(&gone);
            for &p in &parts {
                owned.drop_part(p);
                fences.remove(&p);
            }
            if !parts.is_empty() {
                tracing::info!(partitions = ?parts, orders = owned.order_count(), "partitions given up");
            }
        }
        Rebalanced::Assigned(added) => {
            let parts = topology.own_parts(&added);
            // The brokers answer now (they assigned us partitions): the check start-up could
            // not make, before any record is routed. Its partition count is what an incident
            // is copied to, also by an instance that owns none of the by-order topic.
            if topology.partitions == 0 {
                let count = check_copartitioned(&topology.kafka, Duration::from_secs(30)).await?;
                topology.partitions = i32::try_from(count).unwrap_or(i32::MAX);
                tracing::info!(partitions = count, "kafka topics are co-partitioned");
            }
            if parts.is_empty() {
                return Ok(());
            }
            let started = std::time::Instant::now();
            let epochs = store.take_over(&parts, &topology.instance).await?;
            let snapshots = store.load_parts(&parts).await?;
            for (p, snapshot) in snapshots {
                owned.adopt(p, snapshot);
            }
            fences.extend(epochs);
            tracing::info!(
                partitions = ?parts,
                orders = owned.order_count(),
                parked = owned.parked_count(),
                seconds = started.elapsed().as_secs_f64(),
                "partitions taken over"
            );
        }
    }
    shared.metrics.set("belofte_partitions_owned", &[], owned.parts().iter().filter(|&&p| p != LEGACY).count() as f64);
    Ok(())
}

/// One transaction's worth: due timers, then the records, all at `now`.
struct Step<'a, 'p> {
    shared: &'a Shared,
    owned: &'a mut Owned<'p>,
    store: &'a Store,
    producers: &'a Producers,
    topology: &'a Topology,
    now: Instant,
}

/// An event to forward: partition, key, CloudEvent, why (a header).
struct Forward {
    part: i32,
    key: Option<String>,
    payload: Vec<u8>,
    why: &'static str,
}

/// What a batch gathers before it commits.
#[derive(Default)]
struct Gathered {
    batch: Batch,
    decisions: Vec<Decision>,
    changed: BTreeMap<i32, Vec<belofte_core::name::Name>>,
    forwards: Vec<Forward>,
    dead: Vec<(Record, String)>,
    /// Of `dead`, the events a world gave up on (parked too long, refused when released).
    given_up: usize,
}

impl Gathered {
    fn absorb(&mut self, part: i32, mut fx: Effects) {
        self.decisions.append(&mut fx.decisions);
        self.changed.entry(part).or_default().append(&mut fx.changed);
        self.batch.parked_added.extend(fx.parked_added.drain(..).map(|(k, e, t)| (part, k, e, t)));
        self.batch.parked_removed.append(&mut fx.parked_removed);
        // An event that names no order (a carrier event for an unknown parcel) has no
        // timeline to join.
        self.batch.trace.extend(fx.trace.drain(..).filter(|s| s.order_id.is_some()));
        for letter in fx.dead_letters.drain(..) {
            tracing::warn!(event = %letter.event.id, reason = %letter.reason, "parked event given up");
            self.given_up += 1;
            self.dead.push((parked_record(&letter.event), letter.reason));
        }
    }
}

impl Step<'_, '_> {
    async fn run(&mut self, records: &[Record], fences: &BTreeMap<i32, i64>, look: bool) -> Result<(), DaemonError> {
        let metrics = &self.shared.metrics;
        let now = self.now;
        let mut g = Gathered::default();
        for (p, w) in self.owned.worlds() {
            let fx = w.advance(now);
            g.absorb(p, fx);
        }
        let mut events = Vec::with_capacity(records.len());
        for r in records {
            match r.payload.as_deref().map(decode) {
                None => {
                    metrics.inc("belofte_events_total", &[("type", "unknown"), ("outcome", "rejected")]);
                    g.dead.push((r.clone(), "empty record (no payload)".into()));
                }
                Some(Err(reason)) => {
                    tracing::warn!(topic = %r.topic, partition = r.partition, offset = r.offset, %reason, "event rejected");
                    metrics.inc("belofte_events_total", &[("type", "unknown"), ("outcome", "rejected")]);
                    g.dead.push((r.clone(), reason.to_string()));
                }
                Some(Ok(event)) => events.push((r, event)),
            }
        }
        let lookups = Lookups::gather(self.store, self.owned, self.topology, &events).await?;
        let mut waiting = lookups.waiting;
        for (r, event) in events {
            let target = route(self.topology, self.owned, &lookups.tracked, &lookups.order_parts, r, &event);
            self.deliver(&mut g, r, event, target, &mut waiting);
        }
        if look {
            self.look_at_waiting(&mut g).await?;
        }
        for (part, mut ids) in std::mem::take(&mut g.changed) {
            // Each changed order is written once per batch, however many events touched it.
            ids.sort_unstable();
            ids.dedup();
            if let Some(w) = self.owned.world(part) {
                for id in &ids {
                    if let Some(o) = w.order(id) {
                        g.batch.orders.push((part, o.clone()));
                    }
                }
            }
        }
        let decisions = std::mem::take(&mut g.decisions);
        let wording = self.shared.live.get();
        for d in &decisions {
            self.enqueue(&mut g.batch, &wording.policy, d);
        }
        // Forwards first: the batch may delete waiting events they carry, and a delete must
        // not commit before the owner is sure to get the event.
        let forwarded = futures_util::future::try_join_all(
            g.forwards.iter().map(|f| self.producers.forward(f.part, f.key.as_deref(), &f.payload, f.why)),
        );
        forwarded.await?;
        for f in &g.forwards {
            metrics.inc("belofte_forwarded_events_total", &[("why", f.why)]);
        }
        for _ in 0..g.given_up {
            metrics.inc("belofte_dead_letters_total", &[("why", "parked_too_long")]);
        }
        g.batch.fences = g.batch.orders.iter().map(|(p, _)| *p).chain(g.batch.seen.iter().map(|(p, _)| *p)).filter_map(|p| fences.get(&p).map(|e| (p, *e))).collect();
        g.batch.fences.sort_unstable();
        g.batch.fences.dedup();
        // Kept in the store too, in the same transaction, so the console lists them with
        // their reasons.
        g.batch.dead_letters = g.dead.iter().map(|(r, reason)| dead_letter_row(r, reason)).collect();
        self.store.commit(&g.batch, now).await?;
        // A closed order leaves memory once its final state is stored; its id stays, so a
        // late or repeated event about it is ignored as before (the sweep deletes it later).
        for (part, o) in &g.batch.orders {
            if o.is_closed() && o.next_wakeup().is_none() {
                if let Some(w) = self.owned.world(*part) {
                    w.forget_closed(&o.order_id);
                }
            }
        }
        // All of the batch's dead letters are in flight at once (one by one, a batch of
        // broken events took seconds of broker round trips); every one is acknowledged
        // before the caller stores the offsets.
        futures_util::future::try_join_all(g.dead.iter().map(|(r, reason)| self.producers.dead_letter(r, reason))).await?;
        for (r, _) in &g.dead {
            if r.partition >= 0 {
                metrics.inc("belofte_dead_letters_total", &[("why", "rejected")]);
            }
        }
        Ok(())
    }

    /// Apply, forward or keep one event, as `route` decided.
    fn deliver(&mut self, g: &mut Gathered, r: &Record, event: Event, target: Target, waiting: &mut HashMap<String, Vec<Unrouted>>) {
        let metrics = &self.shared.metrics;
        let kind = event.type_name();
        match target {
            Target::Local(part) => {
                let key = event_key(&event.source, &event.id);
                // An order that ships (or is placed after its parcel's shipped event was kept)
                // gets its tracking number recorded for carrier events.
                let shipped = match &event.fact {
                    Fact::Shipped { order_id, .. } => Some(order_id.clone()),
                    Fact::OrderPlaced(o) => Some(o.order_id.clone()),
                    _ => None,
                };
                match self.apply(g, part, event, key) {
                    Ok(outcome) => {
                        metrics.inc("belofte_events_total", &[("type", kind), ("outcome", outcome_label(outcome))]);
                        if let (Some(order), Outcome::Applied(_)) = (shipped, outcome) {
                            self.shipped(g, part, order.as_str(), waiting);
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(topic = %r.topic, offset = r.offset, %reason, "event rejected");
                        metrics.inc("belofte_events_total", &[("type", kind), ("outcome", "rejected")]);
                        g.dead.push((r.clone(), reason));
                    }
                }
            }
            Target::Many { local, forward_to } => {
                let key = event_key(&event.source, &event.id);
                let mut outcome = if local.is_empty() { Outcome::Applied(0) } else { Outcome::Duplicate };
                for part in local {
                    match self.apply(g, part, event.clone(), key) {
                        Ok(Outcome::Applied(n)) => {
                            outcome = match outcome {
                                Outcome::Applied(m) => Outcome::Applied(m + n),
                                _ => Outcome::Applied(n),
                            }
                        }
                        Ok(_) => {}
                        Err(reason) => {
                            tracing::warn!(topic = %r.topic, offset = r.offset, %reason, "event rejected");
                            metrics.inc("belofte_events_total", &[("type", kind), ("outcome", "rejected")]);
                            g.dead.push((r.clone(), reason));
                            return;
                        }
                    }
                }
                let label = if matches!(outcome, Outcome::Applied(0)) && !forward_to.is_empty() { "forwarded" } else { outcome_label(outcome) };
                metrics.inc("belofte_events_total", &[("type", kind), ("outcome", label)]);
                for part in forward_to {
                    g.forwards.push(Forward { part, key: None, payload: payload_of(r), why: "broadcast" });
                }
            }
            Target::Forward { part, key, why } => {
                metrics.inc("belofte_events_total", &[("type", kind), ("outcome", "forwarded")]);
                g.forwards.push(Forward { part, key, payload: payload_of(r), why });
            }
            Target::Wait { tracking_number } => {
                metrics.inc("belofte_events_total", &[("type", kind), ("outcome", "parked")]);
                let key = event_key(&event.source, &event.id);
                let expires = self.now + chrono::Duration::hours(self.shared.settings.policy.park_hours);
                g.batch.unrouted_added.push((key, tracking_number, event, expires));
            }
        }
    }

    /// One event into partition `part`'s world; what it did joins the batch.
    fn apply(&mut self, g: &mut Gathered, part: i32, event: Event, key: u128) -> Result<Outcome, String> {
        let Some(world) = self.owned.world(part) else { return Err(format!("partition {part} is not owned here")) };
        match world.ingest_keyed(event, key, self.now) {
            Ok((outcome, fx)) => {
                if outcome != Outcome::Duplicate {
                    g.batch.seen.push((part, key));
                }
                g.absorb(part, fx);
                Ok(outcome)
            }
            Err(rejection) => Err(rejection.to_string()),
        }
    }

    /// An order shipped with `number`: the number's owner is recorded for the carrier
    /// events of other instances, and carrier events that waited for it are applied now,
    /// in the order they happened.
    fn shipped(&mut self, g: &mut Gathered, part: i32, order: &str, waiting: &mut HashMap<String, Vec<Unrouted>>) {
        let number = self.owned.world(part).and_then(|w| w.order(order)).and_then(|o| o.tracking_number.clone());
        let Some(number) = number else { return };
        g.batch.tracking.push((number.to_string(), order.to_string(), part));
        for u in waiting.remove(number.as_str()).unwrap_or_default() {
            self.release(g, part, u);
        }
    }

    /// A kept carrier event into the world of its order's partition; it leaves `unrouted`.
    fn release(&mut self, g: &mut Gathered, part: i32, u: Unrouted) {
        g.batch.unrouted_removed.push(u.key);
        let kind = u.event.type_name();
        match self.apply(g, part, u.event.clone(), u.key) {
            Ok(outcome) => self.shared.metrics.inc("belofte_events_total", &[("type", kind), ("outcome", outcome_label(outcome))]),
            Err(reason) => g.dead.push((parked_record(&u.event), reason)),
        }
    }

    /// Waiting carrier events whose order has shipped since (perhaps on another instance)
    /// go to it; those that waited too long are dead-lettered.
    async fn look_at_waiting(&mut self, g: &mut Gathered) -> Result<(), DaemonError> {
        let due = self.store.unrouted_due(self.now, UNROUTED_BATCH).await?;
        let hours = self.shared.settings.policy.park_hours;
        for u in due {
            if g.batch.unrouted_removed.contains(&u.key) {
                continue;
            }
            match u.part {
                Some(part) if self.owned.owns(part) => self.release(g, part, u),
                Some(part) => {
                    g.batch.unrouted_removed.push(u.key);
                    match serde_json::to_vec(&u.event) {
                        Ok(payload) => g.forwards.push(Forward { part, key: None, payload, why: "tracking" }),
                        Err(e) => g.dead.push((parked_record(&u.event), format!("cannot forward the kept event: {e}"))),
                    }
                }
                None => {
                    g.batch.unrouted_removed.push(u.key);
                    self.shared.metrics.inc("belofte_dead_letters_total", &[("why", "parked_too_long")]);
                    let reason = format!("no warehouse.shipped with tracking number {:?} within {hours} h", u.tracking_number);
                    g.dead.push((parked_record(&u.event), reason));
                }
            }
        }
        Ok(())
    }

    fn enqueue(&self, batch: &mut Batch, policy: &Policy, d: &Decision) {
        let metrics = &self.shared.metrics;
        match message(self.shared, policy, d) {
            Ok(m) => {
                metrics.inc("belofte_messages_enqueued_total", &[("channel", d.channel.as_str()), ("kind", d.kind.as_str())]);
                // A customer message keeps its decision: its words are rendered from it when
                // it is sent (with the wording current then), and a fallback on the other
                // channel from the same facts (daemon::fallback).
                if matches!(d.channel, Channel::Email | Channel::Sms) {
                    match serde_json::to_string(d) {
                        Ok(json) => {
                            batch.notices.insert(m.notification_key.clone(), (d.seq, json));
                            batch.unrendered.insert(m.notification_key.clone());
                        }
                        Err(e) => {
                            metrics.inc("belofte_render_failures_total", &[]);
                            tracing::error!(order = %d.order_id, error = %e, "ALERT: cannot keep the decision of a message");
                            return;
                        }
                    }
                }
                batch.messages.push(m);
            }
            Err(e) => {
                // Only an action whose brand is gone from the configuration gets here.
                metrics.inc("belofte_render_failures_total", &[]);
                tracing::error!(order = %d.order_id, kind = %d.kind, channel = %d.channel, error = %e, "ALERT: cannot enqueue a decided message");
            }
        }
    }
}

/// What the routing of a batch needs from the store, read in a few queries up front.
struct Lookups {
    /// Tracking numbers no local world knows → the partition of their order.
    tracked: HashMap<String, i32>,
    /// Orders no local world knows, named by events that are not `order.placed` → their
    /// partition (a producer that keyed an order's event by something else).
    order_parts: HashMap<String, i32>,
    /// Carrier events waiting for a tracking number this batch ships.
    waiting: HashMap<String, Vec<Unrouted>>,
}

impl Lookups {
    async fn gather(store: &Store, owned: &Owned<'_>, topology: &Topology, events: &[(&Record, Event)]) -> Result<Lookups, DaemonError> {
        let mut numbers = Vec::new();
        let mut shipped = Vec::new();
        let mut orders = Vec::new();
        for (r, e) in events {
            // A shipped event forwarded here (its warehouse partition is consumed by another
            // instance) releases the carrier events kept for its number like any other:
            // skipped, they waited for the next look and were applied after later events.
            if let Fact::Shipped { tracking_number, .. } = &e.fact {
                shipped.push(tracking_number.to_string());
                continue;
            }
            // Forwarded events are routed already; nothing to look up for them.
            if r.topic == topology.by_order {
                continue;
            }
            match &e.fact {
                Fact::OrderPlaced(_) => {}
                f => match f.route() {
                    belofte_core::event::Route::Tracking(n) if owned.part_of_tracking(n).is_none() => numbers.push(n.to_string()),
                    belofte_core::event::Route::Order(id) if owned.part_of_order(id).is_none() => orders.push(id.to_string()),
                    _ => {}
                },
            }
        }
        numbers.sort_unstable();
        numbers.dedup();
        orders.sort_unstable();
        orders.dedup();
        let tracked = if numbers.is_empty() { HashMap::new() } else { store.tracked(&numbers).await? };
        let order_parts = if orders.is_empty() { HashMap::new() } else { store.parts_of_orders(&orders).await? };
        let mut waiting: HashMap<String, Vec<Unrouted>> = HashMap::new();
        if !shipped.is_empty() {
            for u in store.unrouted_for(&shipped).await? {
                waiting.entry(u.tracking_number.clone()).or_default().push(u);
            }
        }
        Ok(Lookups { tracked, order_parts, waiting })
    }
}

fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Applied(_) => "applied",
        Outcome::Duplicate => "duplicate",
        Outcome::Parked => "parked",
        Outcome::Ignored => "ignored",
    }
}

/// The CloudEvent to forward: the record's own bytes (a record without them was rejected
/// before it was routed).
fn payload_of(r: &Record) -> Vec<u8> {
    r.payload.clone().unwrap_or_default()
}

/// A parked event that expired has no record of its own any more: dead-letter its JSON.
fn dead_letter_row(r: &Record, reason: &str) -> NewDeadLetter {
    NewDeadLetter { topic: r.topic.clone(), partition: r.partition, offset: r.offset, reason: reason.to_string(), payload: r.payload.clone() }
}

fn parked_record(event: &Event) -> Record {
    Record {
        topic: "(parked)".into(),
        partition: -1,
        offset: -1,
        key: None,
        payload: serde_json::to_vec(event).ok(),
        timestamp_ms: None,
    }
}

/// The outbox row of a decision: a customer message without its words (rendered at send
/// from the decision kept beside it), or the CloudEvent of an action.
fn message(shared: &Shared, policy: &Policy, d: &Decision) -> Result<NewMessage, String> {
    match d.channel {
        Channel::Email | Channel::Sms => {
            // A brand gone from the configuration is refused here; anything else the words
            // need is checked when they are rendered (a row that fails is kept).
            policy.brands.get(&d.brand).ok_or("unknown brand")?;
            Ok(NewMessage::unrendered(d, d.notification_key()))
        }
        Channel::Event => event_message(shared, d, &d.notification_key()),
    }
}

/// The outbox row of an action (escalation, compensation): the CloudEvent, with `key` as
/// its id and notification key.
pub(super) fn event_message(shared: &Shared, d: &Decision, key: &str) -> Result<NewMessage, String> {
    let policy = &shared.settings.policy;
    let data = action_data(policy, d).ok_or("no action data")?;
    let tz = policy.brands.get(&d.brand).map(|b| b.time_zone).ok_or("unknown brand")?;
    let line = serde_json::to_string(&serde_json::json!({
        "specversion": "1.0",
        "id": key,
        "source": "/belofte",
        "type": format!("belofte.{}", d.kind),
        "time": local_rfc3339(tz, d.send_at),
        "subject": d.order_id,
        "datacontenttype": "application/json",
        "data": data,
    }))
    .map_err(|e| e.to_string())?;
    Ok(NewMessage::of(d, key.to_string(), line))
}
