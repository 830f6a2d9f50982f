//! All orders together: duplicate detection, routing of carrier events through tracking
//! numbers, parking of events that come before what they refer to, incident fan-out, and
//! the timeline of wake-ups. Still pure: the caller passes the time in. `simulate` drives it
//! on a virtual clock, the daemon on the wall clock and persists what changed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

pub use super::hash::{event_key, FxHasher};

use chrono::Duration;

use super::domain::Instant;
use super::engine::{Decision, Engine, OrderState};
use super::trace::{EventOutcome, Step, Trace, What};
use super::event::{Event, Fact, Rejection, Route};
use super::policy::Policy;
use super::name::Name;
use super::slab::Slab;
use super::table::{prefetch_all, KeySet, SlotIndex};

type Map<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

fn id_hash(id: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(id.as_bytes());
    h.finish()
}

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
    Order(Name),
    Tracking(Name),
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
    orders: Slab<OrderState>,
    /// Slots by order id and by tracking number. The tables hold only the slot: the id is
    /// compared in the order itself, which the event is about to touch anyway, so a
    /// look-up costs one cache miss less than a map keeping its own copy of the key (and
    /// a million orders cost 4 bytes each here instead of 32).
    index: SlotIndex,
    tracking: SlotIndex,
    seen: KeySet,
    /// The keys seen before the last `rotate_seen` (the daemon forgets keys older than its
    /// replay horizon by rotating; `simulate` never does, and this stays empty).
    seen_old: KeySet,
    /// Orders that left memory once closed (`forget_closed`), by id and tracking number: a
    /// late or repeated event about one is ignored, as it was while the order was here.
    closed: HashSet<Name, BuildHasherDefault<FxHasher>>,
    closed_tracking: HashSet<Name, BuildHasherDefault<FxHasher>>,
    parked: Map<ParkKey, Vec<Parked>>,
    park_expiry: BinaryHeap<Reverse<(Instant, u64, ParkKeyOrd)>>,
    wakeups: BinaryHeap<Reverse<(Instant, u64, u32)>>,
    seq: u64,
    /// What the call under way did; handed to the caller when it returns.
    fx: Effects,
    trace: Trace,
    /// Fill `Effects::changed` (the daemon persists those orders; simulate needs none).
    track_changes: bool,
}

/// What one call of the world did: what the caller must act on and, for the daemon,
/// persist. Returned by every call that changes the world, so nothing waits inside it.
#[derive(Debug, Default)]
pub struct Effects {
    /// Messages and events decided, in order.
    pub decisions: Vec<Decision>,
    /// Events given up on (parked too long, or refused when released).
    pub dead_letters: Vec<DeadLetter>,
    /// Orders whose state changed (an id may repeat), with `World::tracking_changes`.
    pub changed: Vec<Name>,
    /// Parked events added: event key, event, expiry.
    pub parked_added: Vec<(u128, Event, Instant)>,
    /// Parked events released or dead-lettered, by event key.
    pub parked_removed: Vec<u128>,
    /// The steps taken, when the world is traced.
    pub trace: Vec<Step>,
}

impl Effects {
    /// Add what a later call did (the daemon gathers a poll batch).
    pub fn absorb(&mut self, mut later: Effects) {
        self.decisions.append(&mut later.decisions);
        self.dead_letters.append(&mut later.dead_letters);
        self.changed.append(&mut later.changed);
        self.parked_added.append(&mut later.parked_added);
        self.parked_removed.append(&mut later.parked_removed);
        self.trace.append(&mut later.trace);
    }
}

/// `ParkKey` with an order, for the expiry heap.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ParkKeyOrd(u8, Name);

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

impl<'p> World<'p> {
    pub fn new(policy: &'p Policy) -> Self {
        World {
            engine: Engine::new(policy),
            orders: Slab::default(),
            index: SlotIndex::default(),
            tracking: SlotIndex::default(),
            seen: KeySet::default(),
            seen_old: KeySet::default(),
            closed: HashSet::default(),
            closed_tracking: HashSet::default(),
            parked: Map::default(),
            park_expiry: BinaryHeap::new(),
            wakeups: BinaryHeap::new(),
            seq: 0,
            fx: Effects::default(),
            trace: Trace::default(),
            track_changes: false,
        }
    }

    /// Report the orders each call changed, in `Effects::changed`: the daemon writes those.
    pub fn tracking_changes(mut self) -> Self {
        self.track_changes = true;
        self
    }

    /// Record the trace of every step (`trace.md`) in the effects of each call.
    pub fn traced(mut self) -> Self {
        self.trace = Trace::new(true);
        self
    }

    fn effects(&mut self) -> Effects {
        let mut fx = std::mem::take(&mut self.fx);
        fx.trace = self.trace.take();
        fx
    }

    /// Put back an event the daemon kept parked (start-up).
    pub fn restore_parked(&mut self, event: Event, expires_at: Instant) {
        let key = match event.fact.route() {
            Route::Order(id) => ParkKey::Order(Name::new(id)),
            Route::Tracking(n) => ParkKey::Tracking(Name::new(n)),
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
        if !self.track_changes {
            return;
        }
        if let Some(o) = self.orders.get(slot) {
            self.fx.changed.push(o.order_id.clone());
        }
    }

    pub fn order(&self, id: &str) -> Option<&OrderState> {
        self.find_order(id).and_then(|i| self.orders.get(i))
    }

    /// Whether an order here shipped with tracking number `number` (the daemon routes
    /// carrier events to the world that knows their parcel).
    pub fn knows_tracking(&self, number: &str) -> bool {
        self.find_tracking(number).is_some() || self.closed_tracking.contains(number)
    }

    /// Whether order `id` is here, in memory or closed and remembered by id.
    pub fn knows_order(&self, id: &str) -> bool {
        self.find_order(id).is_some() || self.closed.contains(id)
    }

    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    /// Restore an order the daemon kept (start-up), with its wake-up.
    pub fn restore(&mut self, state: OrderState) {
        let slot = self.insert(state);
        self.index_tracking(slot);
        self.schedule(slot, None);
    }

    fn insert(&mut self, state: OrderState) -> u32 {
        let slot = self.orders.push(state);
        let orders = &self.orders;
        let Some(id) = orders.get(slot).map(|o| o.order_id.as_str()) else { return slot };
        self.index.set(id_hash(id), slot, |s| orders.get(s).is_some_and(|o| o.order_id == id));
        slot
    }

    /// Route the order's tracking number to it (a number shipped twice: the latest order).
    fn index_tracking(&mut self, slot: u32) {
        let orders = &self.orders;
        let Some(number) = orders.get(slot).and_then(|o| o.tracking_number.as_deref()) else { return };
        let same = |s: u32| orders.get(s).is_some_and(|o| o.tracking_number.as_deref() == Some(number));
        self.tracking.set(id_hash(number), slot, same);
    }

    fn find_order(&self, id: &str) -> Option<u32> {
        let orders = &self.orders;
        self.index.find(id_hash(id), |s| orders.get(s).is_some_and(|o| o.order_id == id))
    }

    fn find_tracking(&self, number: &str) -> Option<u32> {
        let orders = &self.orders;
        let same = |s: u32| orders.get(s).is_some_and(|o| o.tracking_number.as_deref() == Some(number));
        self.tracking.find(id_hash(number), same)
    }

    /// Let a closed order leave memory, once its final state is stored (the daemon): its id
    /// and tracking number stay, so that a late or repeated event about it is still ignored
    /// rather than parked. An order still open or with a wake-up stays. Returns whether it left.
    pub fn forget_closed(&mut self, id: &str) -> bool {
        let Some(slot) = self.find_order(id) else { return false };
        let Some(state) = self.orders.get(slot) else { return false };
        if !state.is_closed() || state.next_wakeup().is_some() {
            return false;
        }
        let tracking = state.tracking_number.clone();
        self.index.remove(id_hash(id), slot);
        if let Some(number) = &tracking {
            self.tracking.remove(id_hash(number), slot);
        }
        self.orders.remove(slot);
        self.remember_closed(id, tracking.as_deref());
        true
    }

    /// Remember an order that left memory closed (the daemon's start-up loads only open
    /// orders' states, and closed ones by id).
    pub fn remember_closed(&mut self, id: &str, tracking_number: Option<&str>) {
        self.closed.insert(Name::new(id));
        if let Some(n) = tracking_number {
            self.closed_tracking.insert(Name::new(n));
        }
    }

    /// Forget a closed order altogether: its rows left the database after the retention
    /// period, and an event about it now is about an unknown order.
    pub fn drop_closed(&mut self, id: &str, tracking_number: Option<&str>) {
        self.closed.remove(id);
        if let Some(n) = tracking_number {
            self.closed_tracking.remove(n);
        }
    }

    /// How many closed orders are remembered by id only.
    pub fn closed_count(&self) -> usize {
        self.closed.len()
    }

    /// Start a new generation of seen event keys and forget the one before the last: called
    /// once per replay horizon, a key is remembered for at least one horizon and at most two.
    pub fn rotate_seen(&mut self) {
        self.seen_old = std::mem::take(&mut self.seen);
    }

    /// Mark an event key as seen (the daemon restores its log of keys).
    pub fn remember_key(&mut self, key: u128) {
        self.seen.insert(key);
    }

    /// The next moment something is due (a timer, a notice, a parked event expiring).
    pub fn next_due(&self) -> Option<Instant> {
        let wake = self.wakeups.peek().map(|Reverse((t, _, _))| *t);
        let park = self.park_expiry.peek().map(|Reverse((t, _, _))| *t);
        wake.into_iter().chain(park).min()
    }

    /// One event, arrived at `now`. Timers due before `now` must have been run first
    /// (`advance`).
    pub fn ingest(&mut self, event: Event, now: Instant) -> Result<(Outcome, Effects), Rejection> {
        let key = event_key(&event.source, &event.id);
        self.ingest_keyed(event, key, now)
    }

    /// `ingest` with the event's `event_key` computed already (by a decoding thread).
    pub fn ingest_keyed(
        &mut self,
        event: Event,
        key: u128,
        now: Instant,
    ) -> Result<(Outcome, Effects), Rejection> {
        debug_assert_eq!(key, event_key(&event.source, &event.id));
        let skew = self.engine.policy().max_future_skew;
        if event.time > now + skew {
            return Err(Rejection::FromTheFuture {
                time: event.time.to_rfc3339(),
                arrived: now.to_rfc3339(),
                ahead_minutes: (event.time - now).num_minutes(),
                max_minutes: skew.num_minutes(),
            });
        }
        // One probe of the (large, cache-cold) set: mark first, unmark if it is refused,
        // so a corrected event with the same id can still come.
        if (!self.seen_old.is_empty() && self.seen_old.contains(key)) || !self.seen.insert(key) {
            if self.trace.is_on() {
                let order = self.order_named_by(&event).map(|o| (o.order_id.clone(), self.tz_of(o)));
                self.trace.record(|| event_step(&event, order, now, EventOutcome::Duplicate));
            }
            return Ok((Outcome::Duplicate, self.effects()));
        }
        let mut out = Vec::new();
        let routed = self.route(event, now, &mut out);
        let mut fx = self.effects();
        match routed {
            Ok(outcome) => {
                fx.decisions = out;
                Ok((outcome, fx))
            }
            Err(rejection) => {
                self.seen.remove(key);
                Err(rejection)
            }
        }
    }

    /// Ask the memory, ahead of time, for the places `ingest_keyed(event, key, …)` will
    /// look at first: the event key's place in the seen set and its order's (or parcel's)
    /// place in the index. Changes nothing; a caller holding the next events calls this a
    /// few events early, then `prefetch_order`, so that the look-ups find their lines in
    /// the cache instead of waiting on them one after the other.
    pub fn prefetch_places(&self, event: &Event, key: u128) {
        self.seen.prefetch(key);
        match event.fact.route() {
            Route::Order(id) => self.index.prefetch(id_hash(id)),
            Route::Tracking(n) => self.tracking.prefetch(id_hash(n)),
            Route::Broadcast => {}
        }
    }

    /// Ask the memory for the order the event most likely touches (after
    /// `prefetch_places`, whose line this reads). Changes nothing.
    pub fn prefetch_order(&self, event: &Event) {
        let slot = match event.fact.route() {
            Route::Order(id) => self.index.likely(id_hash(id)),
            Route::Tracking(n) => self.tracking.likely(id_hash(n)),
            Route::Broadcast => None,
        };
        if let Some(order) = slot.and_then(|s| self.orders.get(s)) {
            prefetch_all(order);
        }
    }

    /// The order an event names, when it is known (for the trace of a duplicate).
    fn order_named_by(&self, event: &Event) -> Option<&OrderState> {
        match event.fact.route() {
            Route::Order(id) => self.order(id),
            Route::Tracking(n) => self.find_tracking(n).and_then(|s| self.orders.get(s)),
            Route::Broadcast => None,
        }
    }

    fn tz_of(&self, order: &OrderState) -> chrono_tz::Tz {
        self.engine.policy().brands.get(order.brand.as_str()).map_or(chrono_tz::UTC, |b| b.time_zone)
    }

    fn route(&mut self, event: Event, now: Instant, out: &mut Vec<Decision>) -> Result<Outcome, Rejection> {
        match event.fact.route() {
            Route::Order(id) => {
                let slot = self.find_order(id);
                if let Fact::OrderPlaced(_) = &event.fact {
                    if let Some(slot) = slot {
                        self.trace_event(&event, Some(slot), now, EventOutcome::Ignored);
                        return Ok(Outcome::Ignored);
                    }
                    if self.closed.contains(id) {
                        self.trace.record(|| event_step(&event, Some((Name::new(id), chrono_tz::UTC)), now, EventOutcome::Ignored));
                        return Ok(Outcome::Ignored);
                    }
                    let (type_name, id, source, time) = (event.type_name(), event.id.clone(), event.source.clone(), event.time);
                    let Fact::OrderPlaced(placed) = event.fact else { return Ok(Outcome::Ignored) };
                    let state = OrderState::place(self.engine.policy(), *placed)?;
                    let key = ParkKey::Order(state.order_id.clone());
                    let slot = self.insert(state);
                    if self.trace.is_on() {
                        let order = self.orders.get(slot).map(|o| (o.order_id.clone(), self.tz_of(o)));
                        self.trace.record(|| step_of(EventNamed { type_name, id, source, time }, order, now, EventOutcome::Applied));
                    }
                    self.touch(slot);
                    self.schedule(slot, None);
                    self.release(&key, now, out);
                    return Ok(Outcome::Applied(1));
                }
                match slot {
                    Some(slot) => {
                        self.apply_to(slot, &event, now, out);
                        Ok(Outcome::Applied(1))
                    }
                    None if self.closed.contains(id) => {
                        self.trace.record(|| event_step(&event, Some((Name::new(id), chrono_tz::UTC)), now, EventOutcome::Ignored));
                        Ok(Outcome::Ignored)
                    }
                    None => {
                        self.trace.record(|| event_step(&event, Some((Name::new(id), chrono_tz::UTC)), now, EventOutcome::Parked));
                        self.park(ParkKey::Order(Name::new(id)), event, now);
                        Ok(Outcome::Parked)
                    }
                }
            }
            Route::Tracking(number) => match self.find_tracking(number) {
                Some(slot) => {
                    self.apply_to(slot, &event, now, out);
                    Ok(Outcome::Applied(1))
                }
                None if self.closed_tracking.contains(number) => {
                    self.trace.record(|| event_step(&event, None, now, EventOutcome::Ignored));
                    Ok(Outcome::Ignored)
                }
                None => {
                    self.trace.record(|| event_step(&event, None, now, EventOutcome::Parked));
                    self.park(ParkKey::Tracking(Name::new(number)), event, now);
                    Ok(Outcome::Parked)
                }
            },
            Route::Broadcast => {
                let policy = self.engine.policy();
                let mut covered: Vec<(&str, u32)> = self
                    .orders
                    .iter()
                    .filter(|(_, o)| o.covered_by(policy, &event.fact))
                    .map(|(slot, o)| (o.order_id.as_str(), slot))
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
        let Some(state) = self.orders.get_mut(slot) else { return };
        let had_tracking = state.tracking_number.is_some();
        let wake_before = state.next_wakeup();
        // The event's outcome is known after the steps it caused, but is read first.
        let mark = self.trace.len();
        let outcome = self.engine.apply(state, event, now, &mut self.trace);
        out.extend(self.engine.tick(state, now, &mut self.trace));
        if self.trace.is_on() {
            let tz = self.engine.policy().brands.get(state.brand.as_str()).map_or(chrono_tz::UTC, |b| b.time_zone);
            let order = Some((state.order_id.clone(), tz));
            self.trace.insert_at(mark, || event_step(event, order, now, outcome));
        }
        let new_tracking = if had_tracking { None } else { state.tracking_number.clone() };
        self.touch(slot);
        self.schedule(slot, wake_before);
        if let Some(number) = new_tracking {
            self.index_tracking(slot);
            self.release(&ParkKey::Tracking(number), now, out);
        }
    }

    fn park(&mut self, key: ParkKey, event: Event, now: Instant) {
        let expires_at = now + Duration::hours(self.engine.policy().park_hours);
        self.fx.parked_added.push((event_key(&event.source, &event.id), event.clone(), expires_at));
        self.seq += 1;
        self.park_expiry.push(Reverse((expires_at, self.seq, ParkKeyOrd::from(&key))));
        self.parked.entry(key).or_default().push(Parked { event, expires_at });
    }

    /// What waited for this order or tracking number, applied now in the order it happened.
    fn release(&mut self, key: &ParkKey, now: Instant, out: &mut Vec<Decision>) {
        let Some(mut waiting) = self.parked.remove(key) else { return };
        self.fx.parked_removed.extend(waiting.iter().map(|p| event_key(&p.event.source, &p.event.id)));
        waiting.sort_by_key(|p| p.event.time);
        for p in waiting {
            // A parked event may be an order.placed's follower or a carrier event; route
            // again so carrier events find their order through the new mapping.
            if let Err(rejection) = self.route(p.event.clone(), now, out) {
                self.fx.dead_letters.push(DeadLetter { event: p.event, reason: rejection.to_string() });
            }
        }
    }

    /// Put the order's next wake-up on the heap, unless it is the one already there.
    fn schedule(&mut self, slot: u32, already: Option<Instant>) {
        if let Some(t) = self.orders.get(slot).and_then(OrderState::next_wakeup).filter(|t| Some(*t) != already) {
            self.seq += 1;
            self.wakeups.push(Reverse((t, self.seq, slot)));
        }
    }

    /// Run everything due at or before `until`, in time order.
    pub fn advance(&mut self, until: Instant) -> Effects {
        let mut out = Vec::new();
        while let Some(t) = self.next_due().filter(|t| *t <= until) {
            let wake_first = self.wakeups.peek().is_some_and(|Reverse((w, _, _))| *w == t);
            if wake_first {
                let Some(Reverse((_, _, slot))) = self.wakeups.pop() else { break };
                let Some(state) = self.orders.get_mut(slot) else { continue };
                // Stale heap entries (the wake-up moved) are skipped.
                if state.next_wakeup() != Some(t) {
                    continue;
                }
                out.extend(self.engine.tick(state, t, &mut self.trace));
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
                    self.fx.parked_removed.extend(expired.iter().map(|p| event_key(&p.event.source, &p.event.id)));
                    for p in expired {
                        let reason = match &key {
                            ParkKey::Order(id) => format!("no order.placed for order {id:?} within {hours} h"),
                            ParkKey::Tracking(n) => {
                                format!("no warehouse.shipped with tracking number {n:?} within {hours} h")
                            }
                        };
                        self.fx.dead_letters.push(DeadLetter { event: p.event, reason });
                    }
                }
            }
        }
        let mut fx = self.effects();
        fx.decisions = out;
        fx
    }

    fn trace_event(&mut self, event: &Event, slot: Option<u32>, now: Instant, outcome: EventOutcome) {
        if self.trace.is_on() {
            let order = slot.and_then(|s| self.orders.get(s)).map(|o| (o.order_id.clone(), self.tz_of(o)));
            self.trace.record(|| event_step(event, order, now, outcome));
        }
    }
}

/// The trace step of an event at one order (`None`: it names no known order).
fn event_step(event: &Event, order: Option<(Name, chrono_tz::Tz)>, now: Instant, outcome: EventOutcome) -> Step {
    let named = EventNamed { type_name: event.type_name(), id: event.id.clone(), source: event.source.clone(), time: event.time };
    step_of(named, order, now, outcome)
}

/// What names an event in its trace step (taken before an `order.placed` is consumed).
struct EventNamed {
    type_name: &'static str,
    id: Name,
    source: Name,
    time: Instant,
}

fn step_of(named: EventNamed, order: Option<(Name, chrono_tz::Tz)>, now: Instant, outcome: EventOutcome) -> Step {
    let EventNamed { type_name, id, source, time } = named;
    let detail = match outcome {
        EventOutcome::Applied => format!("{type_name} applied."),
        EventOutcome::Duplicate => format!("{type_name} seen before (same source and id): nothing changes."),
        EventOutcome::Stale => format!("{type_name} is older than the fact behind the current estimate: ignored for the estimate."),
        EventOutcome::Parked => format!("{type_name} waits for its order or tracking number."),
        EventOutcome::Ignored => format!("{type_name} changes nothing in the order's state (closed, or placed twice)."),
    };
    let cause = id.to_string();
    let (order_id, tz) = match order {
        Some((o, tz)) => (Some(o), tz),
        None => (None, chrono_tz::UTC),
    };
    Step { order_id, at: now, tz, cause, what: What::Event { type_name, id, source, time, outcome }, detail }
}

