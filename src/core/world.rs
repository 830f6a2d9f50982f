//! All orders together: duplicate detection, routing of carrier events through tracking
//! numbers, parking of events that come before what they refer to, incident fan-out, and
//! the timeline of wake-ups. Still pure: the caller passes the time in. `simulate` drives it
//! on a virtual clock, the daemon on the wall clock and persists what changed.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use chrono::Duration;

use super::domain::Instant;
use super::engine::{Decision, Engine, OrderState};
use super::event::{Event, Fact, Rejection, Route};
use super::policy::Policy;

/// A fixed, fast hasher (the Fx algorithm of rustc): iteration order must not change
/// between two runs on the same input, and keys here are ids, not attacker-chosen.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.add(b as u64);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied to this many orders (an incident may cover none).
    Applied(usize),
    /// Seen before (same source and id): nothing changes.
    Duplicate,
    /// Waiting for the order or tracking number it refers to.
    Parked,
    /// Valid, but about an order that is already closed or placed twice.
    Ignored,
}

/// An event given up on, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub event: Event,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ParkKey {
    Order(String),
    Tracking(String),
}

#[derive(Debug, Clone)]
struct Parked {
    event: Event,
    expires_at: Instant,
}

pub struct World<'p> {
    engine: Engine<'p>,
    /// Orders in a slab; ids map to slots, so the wake-up heap and the tracking index hold
    /// small integers instead of copies of the id.
    orders: Vec<OrderState>,
    index: Map<String, u32>,
    tracking: Map<String, u32>,
    seen: HashSet<u128, BuildHasherDefault<FxHasher>>,
    parked: Map<ParkKey, Vec<Parked>>,
    park_expiry: BinaryHeap<Reverse<(Instant, u64, ParkKeyOrd)>>,
    wakeups: BinaryHeap<Reverse<(Instant, u64, u32)>>,
    seq: u64,
    dead: Vec<DeadLetter>,
    dirty: BTreeSet<String>,
    track_dirty: bool,
    parked_added: Vec<(u128, Event, Instant)>,
    parked_removed: Vec<u128>,
}

/// What changed among parked events since the last call: the daemon keeps them durable.
#[derive(Debug, Default)]
pub struct ParkedChanges {
    /// Event key, event, expiry.
    pub added: Vec<(u128, Event, Instant)>,
    /// Event keys released or dead-lettered.
    pub removed: Vec<u128>,
}

/// `ParkKey` with an order, for the expiry heap.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ParkKeyOrd(u8, String);

impl From<&ParkKey> for ParkKeyOrd {
    fn from(k: &ParkKey) -> Self {
        match k {
            ParkKey::Order(s) => ParkKeyOrd(0, s.clone()),
            ParkKey::Tracking(s) => ParkKeyOrd(1, s.clone()),
        }
    }
}

impl From<&ParkKeyOrd> for ParkKey {
    fn from(k: &ParkKeyOrd) -> Self {
        if k.0 == 0 {
            ParkKey::Order(k.1.clone())
        } else {
            ParkKey::Tracking(k.1.clone())
        }
    }
}

/// The identity of an event for duplicate detection: `source` + `id`, as 128 bits from two
/// differently keyed SipHash runs (a false "duplicate" needs both to collide). Fx is too
/// weak here: similar ids collide.
pub fn event_key(source: &str, id: &str) -> u128 {
    use std::collections::hash_map::DefaultHasher;
    let mut a = DefaultHasher::new();
    (source, id).hash(&mut a);
    let mut b = DefaultHasher::new();
    (id, 0x5eed_u32, source).hash(&mut b);
    ((a.finish() as u128) << 64) | b.finish() as u128
}

impl<'p> World<'p> {
    pub fn new(policy: &'p Policy) -> Self {
        World {
            engine: Engine::new(policy),
            orders: Vec::new(),
            index: Map::default(),
            tracking: Map::default(),
            seen: HashSet::default(),
            parked: Map::default(),
            park_expiry: BinaryHeap::new(),
            wakeups: BinaryHeap::new(),
            seq: 0,
            dead: Vec::new(),
            dirty: BTreeSet::new(),
            track_dirty: false,
            parked_added: Vec::new(),
            parked_removed: Vec::new(),
        }
    }

    /// Remember which orders changed (the daemon persists them); simulate does not need it.
    pub fn tracking_changes(mut self) -> Self {
        self.track_dirty = true;
        self
    }

    /// Parked events added and removed since the last call (only with `tracking_changes`).
    pub fn take_parked_changes(&mut self) -> ParkedChanges {
        ParkedChanges { added: std::mem::take(&mut self.parked_added), removed: std::mem::take(&mut self.parked_removed) }
    }

    /// Put back an event the daemon kept parked (start-up).
    pub fn restore_parked(&mut self, event: Event, expires_at: Instant) {
        let key = match event.fact.route() {
            Route::Order(id) => ParkKey::Order(id.to_string()),
            Route::Tracking(n) => ParkKey::Tracking(n.to_string()),
            Route::Broadcast => return,
        };
        self.seen.insert(event_key(&event.source, &event.id));
        self.seq += 1;
        self.park_expiry.push(Reverse((expires_at, self.seq, ParkKeyOrd::from(&key))));
        self.parked.entry(key).or_default().push(Parked { event, expires_at });
    }

    /// How many events wait for their order or parcel.
    pub fn parked_count(&self) -> usize {
        self.parked.values().map(Vec::len).sum()
    }

    fn touch(&mut self, slot: u32) {
        if self.track_dirty {
            if let Some(o) = self.orders.get(slot as usize) {
                self.dirty.insert(o.order_id.clone());
            }
        }
    }

    pub fn order(&self, id: &str) -> Option<&OrderState> {
        self.index.get(id).map(|&i| &self.orders[i as usize])
    }

    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    /// Restore an order the daemon kept (start-up), with its wake-up.
    pub fn restore(&mut self, state: OrderState) {
        let slot = self.insert(state);
        if let Some(t) = self.orders[slot as usize].tracking_number.clone() {
            self.tracking.insert(t, slot);
        }
        self.schedule(slot, None);
    }

    fn insert(&mut self, state: OrderState) -> u32 {
        let slot = self.orders.len() as u32;
        self.index.insert(state.order_id.clone(), slot);
        self.orders.push(state);
        slot
    }

    /// Every order, for a daemon that writes them all (tests, snapshots).
    pub fn orders(&self) -> impl Iterator<Item = &OrderState> {
        self.orders.iter()
    }

    /// Mark an event id as seen without applying it (the daemon restores its log).
    pub fn remember(&mut self, source: &str, id: &str) {
        self.seen.insert(event_key(source, id));
    }

    /// Mark an event key as seen (the daemon restores its log of keys).
    pub fn remember_key(&mut self, key: u128) {
        self.seen.insert(key);
    }

    /// Events given up on since the last call.
    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead)
    }

    /// Orders whose state changed since the last call (the daemon persists these).
    pub fn take_dirty(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.dirty)
    }

    /// The next moment something is due (a timer, a notice, a parked event expiring).
    pub fn next_due(&self) -> Option<Instant> {
        let wake = self.wakeups.peek().map(|Reverse((t, _, _))| *t);
        let park = self.park_expiry.peek().map(|Reverse((t, _, _))| *t);
        wake.into_iter().chain(park).min()
    }

    /// One event, arrived at `now`. Timers due before `now` must have been run first
    /// (`advance`).
    pub fn ingest(&mut self, event: Event, now: Instant) -> Result<(Outcome, Vec<Decision>), Rejection> {
        let key = event_key(&event.source, &event.id);
        if self.seen.contains(&key) {
            return Ok((Outcome::Duplicate, Vec::new()));
        }
        let mut out = Vec::new();
        let outcome = self.route(event, now, &mut out)?;
        self.seen.insert(key);
        Ok((outcome, out))
    }

    fn route(&mut self, event: Event, now: Instant, out: &mut Vec<Decision>) -> Result<Outcome, Rejection> {
        match event.fact.route() {
            Route::Order(id) => {
                let slot = self.index.get(id).copied();
                if let Fact::OrderPlaced(placed) = &event.fact {
                    if slot.is_some() {
                        return Ok(Outcome::Ignored);
                    }
                    let state = OrderState::place(self.engine.policy(), placed)?;
                    let slot = self.insert(state);
                    self.touch(slot);
                    self.schedule(slot, None);
                    self.release(&ParkKey::Order(placed.order_id.clone()), now, out);
                    return Ok(Outcome::Applied(1));
                }
                match slot {
                    Some(slot) => {
                        self.apply_to(slot, &event, now, out);
                        Ok(Outcome::Applied(1))
                    }
                    None => {
                        self.park(ParkKey::Order(id.to_string()), event, now);
                        Ok(Outcome::Parked)
                    }
                }
            }
            Route::Tracking(number) => match self.tracking.get(number).copied() {
                Some(slot) => {
                    self.apply_to(slot, &event, now, out);
                    Ok(Outcome::Applied(1))
                }
                None => {
                    self.park(ParkKey::Tracking(number.to_string()), event, now);
                    Ok(Outcome::Parked)
                }
            },
            Route::Broadcast => {
                let policy = self.engine.policy();
                let mut covered: Vec<(&str, u32)> = self
                    .orders
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| o.covered_by(policy, &event.fact))
                    .map(|(i, o)| (o.order_id.as_str(), i as u32))
                    .collect();
                covered.sort_unstable();
                let slots: Vec<u32> = covered.into_iter().map(|(_, i)| i).collect();
                for &slot in &slots {
                    self.apply_to(slot, &event, now, out);
                }
                Ok(Outcome::Applied(slots.len()))
            }
        }
    }

    fn apply_to(&mut self, slot: u32, event: &Event, now: Instant, out: &mut Vec<Decision>) {
        let Some(state) = self.orders.get_mut(slot as usize) else { return };
        let had_tracking = state.tracking_number.is_some();
        let wake_before = state.next_wakeup();
        self.engine.apply(state, event, now);
        out.extend(self.engine.tick(state, now));
        let new_tracking = if had_tracking { None } else { state.tracking_number.clone() };
        self.touch(slot);
        self.schedule(slot, wake_before);
        if let Some(number) = new_tracking {
            self.tracking.insert(number.clone(), slot);
            self.release(&ParkKey::Tracking(number), now, out);
        }
    }

    fn park(&mut self, key: ParkKey, event: Event, now: Instant) {
        let expires_at = now + Duration::hours(self.engine.policy().park_hours);
        if self.track_dirty {
            self.parked_added.push((event_key(&event.source, &event.id), event.clone(), expires_at));
        }
        self.seq += 1;
        self.park_expiry.push(Reverse((expires_at, self.seq, ParkKeyOrd::from(&key))));
        self.parked.entry(key).or_default().push(Parked { event, expires_at });
    }

    /// What waited for this order or tracking number, applied now in the order it happened.
    fn release(&mut self, key: &ParkKey, now: Instant, out: &mut Vec<Decision>) {
        let Some(mut waiting) = self.parked.remove(key) else { return };
        if self.track_dirty {
            self.parked_removed.extend(waiting.iter().map(|p| event_key(&p.event.source, &p.event.id)));
        }
        waiting.sort_by_key(|p| p.event.time);
        for p in waiting {
            // A parked event may be an order.placed's follower or a carrier event; route
            // again so carrier events find their order through the new mapping.
            if let Err(rejection) = self.route(p.event.clone(), now, out) {
                self.dead.push(DeadLetter { event: p.event, reason: rejection.to_string() });
            }
        }
    }

    /// Put the order's next wake-up on the heap, unless it is the one already there.
    fn schedule(&mut self, slot: u32, already: Option<Instant>) {
        if let Some(t) = self.orders.get(slot as usize).and_then(OrderState::next_wakeup).filter(|t| Some(*t) != already) {
            self.seq += 1;
            self.wakeups.push(Reverse((t, self.seq, slot)));
        }
    }

    /// Run everything due at or before `until`, in time order.
    pub fn advance(&mut self, until: Instant) -> Vec<Decision> {
        let mut out = Vec::new();
        while let Some(t) = self.next_due().filter(|t| *t <= until) {
            let wake_first = self.wakeups.peek().is_some_and(|Reverse((w, _, _))| *w == t);
            if wake_first {
                let Some(Reverse((_, _, slot))) = self.wakeups.pop() else { break };
                let Some(state) = self.orders.get_mut(slot as usize) else { continue };
                // Stale heap entries (the wake-up moved) are skipped.
                if state.next_wakeup() != Some(t) {
                    continue;
                }
                out.extend(self.engine.tick(state, t));
                self.touch(slot);
                self.schedule(slot, None);
            } else {
                let Some(Reverse((_, _, key))) = self.park_expiry.pop() else { break };
                let key = ParkKey::from(&key);
                if let Some(list) = self.parked.get_mut(&key) {
                    let (expired, kept): (Vec<_>, Vec<_>) = list.drain(..).partition(|p| p.expires_at <= t);
                    *list = kept;
                    if list.is_empty() {
                        self.parked.remove(&key);
                    }
                    let hours = self.engine.policy().park_hours;
                    if self.track_dirty {
                        self.parked_removed.extend(expired.iter().map(|p| event_key(&p.event.source, &p.event.id)));
                    }
                    for p in expired {
                        let reason = match &key {
                            ParkKey::Order(id) => format!("no order.placed for order {id:?} within {hours} h"),
                            ParkKey::Tracking(n) => {
                                format!("no warehouse.shipped with tracking number {n:?} within {hours} h")
                            }
                        };
                        self.dead.push(DeadLetter { event: p.event, reason });
                    }
                }
            }
        }
        out
    }
}
