//! The promise engine: one order's state, the facts that change it and the timers that
//! wake it, and the notices it decides. Pure: time comes in as an argument, nothing is
//! read or written outside the state it is handed.
//!
//! The model: the customer holds a *promise* (a date, or "no date yet, next update at…").
//! Facts move the *estimate*. When the estimate breaks the promise, a notice is scheduled
//! after a short coalescing window; when the window closes, the latest state decides what
//! (if anything) is said, so a burst of facts becomes one message that tells the end state.

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use super::calendar::{self, local_date};
use super::domain::{Channel, EscalationWhy, Instant, Item, Kind, Lang, PickupPoint, Reason};
use super::event::{normalise_postal_code, Customer, Event, Fact, OrderPlaced, Rejection, Shipping};
use super::name::Name;
use super::notice::Notice;
use super::policy::{Brand, Policy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Shipped,
    Delivered,
    Cancelled,
}

/// What we know about when the parcel will arrive, beyond the promise itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "is", content = "at")]
pub enum Estimate {
    /// Nothing said otherwise: the promise stands.
    Promise,
    /// A promise instant (a delivery day at the promise time) derived from the latest fact.
    Date(Instant),
    /// Something is wrong and nobody can say when it is fixed.
    Unknown,
}

/// What kind of fact (or timer) asked for the pending notice; the kind of the message is
/// settled only when the coalescing window closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Delay,
    Backorder,
    Shipped,
    DeliveryFailed,
    ShipByPassed,
    PromisePassed,
    UpdateDue,
    Followup,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub due: Instant,
    pub trigger: Trigger,
    /// The event id (or `timer:<what>`) that last shaped this notice.
    pub cause: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldSms {
    pub release_at: Instant,
    pub decision: Decision,
    /// The local day it goes out, when that is a later day than its notice's first channel:
    /// it counts towards that day's cap too, and stops counting if it never goes out.
    #[serde(default)]
    pub counted_day: Option<NaiveDate>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    /// Not shipped by then: tell the customer it is at risk.
    pub ship_by: Option<Instant>,
    /// The promise passes undelivered.
    pub promise_passed: Option<Instant>,
    /// We said we would write by then.
    pub next_update: Option<Instant>,
    /// The morning after a late delivery.
    pub followup: Option<Instant>,
}

/// Everything the engine keeps about one order. Serialisable: the daemon stores it as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderState {
    pub order_id: Name,
    pub brand: Name,
    /// The locale messages are written for (the customer's, or the brand's default).
    pub locale: Name,
    pub lang: Lang,
    pub customer: Customer,
    pub shipping: Shipping,
    pub warehouse: Name,
    pub items: Vec<Item>,
    pub promise_label: Option<String>,
    pub placed_at: Instant,
    /// The promise the shop made at checkout: vouchers and follow-ups are measured from it.
    pub original: Instant,
    /// The promise the customer holds now; `None` after we said we have no date yet.
    pub promise: Option<Instant>,
    pub status: Status,
    pub carrier: Option<Name>,
    pub tracking_number: Option<Name>,
    pub shipped_at: Option<Instant>,
    pub delivered_at: Option<Instant>,
    pub estimate: Estimate,
    /// When the fact behind `estimate` happened: an older fact arriving late cannot undo it.
    pub estimate_at: Option<Instant>,
    pub reason: Option<Reason>,
    /// The last kind of customer notice sent.
    pub told: Option<Kind>,
    /// Broken promises told so far (the second one says "again" and escalates).
    pub slips: u32,
    /// Voucher granted so far, in euro.
    pub compensation_eur: u32,
    /// The customer caused the delay (not home, address): no delay notices, no voucher.
    pub customer_caused: bool,
    pub failed_deliveries: u32,
    pub next_attempt_at: Option<Instant>,
    pub pickup_point: Option<Box<PickupPoint>>,
    pub notices_sent: u32,
    /// Notices decided so far (with or without a customer channel): numbers each one so
    /// its outbox rows get a stable, unique key.
    #[serde(default)]
    pub notices_decided: u32,
    /// Customer notices per local day, for the daily cap (only recent days are kept).
    pub notices_by_day: Vec<(NaiveDate, u32)>,
    pub timers: Timers,
    pub pending: Option<Pending>,
    /// Boxed: rare, and a whole decision; inline it made every order ~270 bytes larger.
    pub held_sms: Option<Box<HeldSms>>,
    /// The latest arrival applied: a timer that a late-arriving fact sets in the past fires
    /// now, not back in time.
    pub clock: Option<Instant>,
}

/// The `original`, `previous` and `new` promise a message speaks of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromiseChange {
    pub original: Instant,
    pub previous: Option<Instant>,
    pub new: Option<Instant>,
}

/// What the engine wants done. Customer decisions carry the notice to render; event
/// decisions carry what the actions topic needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub order_id: String,
    pub kind: Kind,
    pub channel: Channel,
    pub send_at: Instant,
    /// Email address or phone number; `None` for events.
    pub to: Option<String>,
    pub brand: String,
    pub locale: String,
    pub reason: Option<Reason>,
    pub promise: PromiseChange,
    pub next_update_at: Option<Instant>,
    pub compensation_eur: Option<u32>,
    pub cause: String,
    /// The order's notice number this decision belongs to (email, SMS and events of one
    /// notice share it).
    pub seq: u32,
    pub payload: Payload,
}

impl Decision {
    /// The idempotency key of the outbox row: order, kind, new promise date (or cause),
    /// channel, and the notice number. A replay decides the same notice with the same key.
    pub fn notification_key(&self) -> String {
        let what = match self.promise.new {
            Some(t) => t.format("%Y-%m-%dT%H:%MZ").to_string(),
            None => self.cause.clone(),
        };
        format!("{}/{}/{}/{}/{}", self.order_id, self.kind, what, self.channel, self.seq)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Payload {
    Customer { notice: Box<Notice> },
    Escalation { why: EscalationWhy, messages_sent: u32 },
    Compensation { amount_eur: u32, delay_days: i64 },
}

impl Decision {
    pub fn notice(&self) -> Option<&Notice> {
        match &self.payload {
            Payload::Customer { notice } => Some(notice),
            _ => None,
        }
    }
}

fn brand_of<'p>(policy: &'p Policy, id: &str) -> Option<&'p Brand> {
    policy.brands.get(id)
}

impl OrderState {
    /// A new order from `order.placed`. Refused when its brand is not configured: the
    /// event is dead-lettered rather than spoken to in an unknown voice.
    pub fn place(policy: &Policy, order: OrderPlaced) -> Result<OrderState, Rejection> {
        let brand = brand_of(policy, &order.brand).ok_or_else(|| Rejection::Field {
            field: "data.brand".into(),
            message: format!(
                "unknown brand {:?} (configured: {})",
                order.brand,
                policy.brands.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })?;
        let tz = brand.time_zone;
        let method = policy.method(&order.shipping.method);
        let original = match order.deliver_by {
            Some(t) => t,
            None => calendar::computed_promise(policy, tz, method, order.placed_at),
        };
        let (locale, lang) = match Lang::of_locale(&order.customer.locale) {
            Some(lang) => (order.customer.locale.clone(), lang),
            None => (Name::from(&brand.default_locale), Lang::of_locale(&brand.default_locale).unwrap_or(Lang::En)),
        };
        let ship_by = calendar::ship_by(policy, tz, method, original);
        let mut shipping = order.shipping;
        shipping.postal_code = normalise_postal_code(&shipping.postal_code).into();
        Ok(OrderState {
            order_id: order.order_id,
            brand: order.brand,
            locale,
            lang,
            customer: order.customer,
            shipping,
            warehouse: order.warehouse,
            items: order.items,
            promise_label: order.promise_label,
            placed_at: order.placed_at,
            original,
            promise: Some(original),
            status: Status::Open,
            carrier: None,
            tracking_number: None,
            shipped_at: None,
            delivered_at: None,
            estimate: Estimate::Promise,
            estimate_at: None,
            reason: None,
            told: None,
            slips: 0,
            compensation_eur: 0,
            customer_caused: false,
            failed_deliveries: 0,
            next_attempt_at: None,
            pickup_point: None,
            notices_sent: 0,
            notices_decided: 0,
            notices_by_day: Vec::new(),
            timers: Timers {
                ship_by: (ship_by > order.placed_at).then_some(ship_by),
                promise_passed: Some(original),
                next_update: None,
                followup: None,
            },
            pending: None,
            held_sms: None,
            clock: None,
        })
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.status, Status::Cancelled) || (self.status == Status::Delivered && self.next_wakeup().is_none())
    }

    /// The earliest moment this order needs the engine again, if any.
    pub fn next_wakeup(&self) -> Option<Instant> {
        // Asked several times per event: a plain loop, not an iterator chain.
        let mut next = self.pending.as_ref().map(|p| p.due);
        for t in [
            self.held_sms.as_ref().map(|h| h.release_at),
            self.timers.ship_by,
            self.timers.promise_passed,
            self.timers.next_update,
            self.timers.followup,
        ]
        .into_iter()
        .flatten()
        {
            if next.is_none_or(|n| t < n) {
                next = Some(t);
            }
        }
        next
    }

    /// Whether an incident covers this order, as policy.md defines coverage.
    pub fn covered_by(&self, policy: &Policy, fact: &Fact) -> bool {
        match fact {
            Fact::WarehouseIncident { warehouse, expected_recovery_at, .. } => {
                self.status == Status::Open
                    && self.warehouse == *warehouse
                    && match (expected_recovery_at, self.current_ship_by(policy)) {
                        (Some(recovery), Some(ship_by)) => ship_by < *recovery,
                        (None, _) => true,
                        (Some(_), None) => false,
                    }
            }
            Fact::CarrierIncident { carrier, postal_code_prefixes, .. } => {
                self.status == Status::Shipped
                    && self.carrier.as_deref().unwrap_or(&self.shipping.carrier) == carrier
                    && (postal_code_prefixes.is_empty()
                        || postal_code_prefixes.iter().any(|p| self.shipping.postal_code.starts_with(p.as_str())))
            }
            _ => false,
        }
    }

    /// The ship-by deadline of the promise the customer holds now.
    fn current_ship_by(&self, policy: &Policy) -> Option<Instant> {
        let brand = brand_of(policy, &self.brand)?;
        let promise = self.promise?;
        Some(calendar::ship_by(policy, brand.time_zone, policy.method(&self.shipping.method), promise))
    }
}

/// How the estimate stands against the promise the customer holds.
enum Assessment {
    Holds,
    /// Later than promised (`Some` new date) or no date at all (`None`).
    Breaks(Option<Instant>),
    /// We had said "no date yet" and now there is one.
    NewDate(Instant),
    StillUnknown,
}

pub struct Engine<'p> {
    policy: &'p Policy,
}

impl<'p> Engine<'p> {
    pub fn new(policy: &'p Policy) -> Self {
        Engine { policy }
    }

    pub fn policy(&self) -> &'p Policy {
        self.policy
    }

    /// Apply one fact (already routed to this order) that arrived at `now`.
    pub fn apply(&self, state: &mut OrderState, event: &Event, now: Instant) {
        if matches!(state.status, Status::Cancelled) {
            return;
        }
        state.clock = Some(state.clock.map_or(now, |c| c.max(now)));
        let Some(brand) = brand_of(self.policy, &state.brand) else { return };
        let tz = brand.time_zone;
        let method = self.policy.method(&state.shipping.method);
        let at = event.time;
        let trigger = match &event.fact {
            Fact::OrderPlaced(_) => return,
            Fact::OrderCancelled { .. } => {
                state.status = Status::Cancelled;
                state.pending = None;
                state.held_sms = None;
                state.timers = Timers::default();
                return;
            }
            Fact::Picked { .. } | Fact::Packed { .. } => return,
            Fact::Shipped { carrier, tracking_number, eta, .. } => {
                if state.status != Status::Open {
                    return;
                }
                state.status = Status::Shipped;
                state.shipped_at = Some(at);
                state.carrier = Some(carrier.clone());
                state.tracking_number = Some(tracking_number.clone());
                state.timers.ship_by = None;
                let estimate = match eta {
                    Some(eta) => calendar::promise_on(self.policy, tz, local_date(tz, eta.to)),
                    None => calendar::promise_after_shipping(self.policy, tz, method, at),
                };
                set_estimate(state, Estimate::Date(estimate), at, true);
                Trigger::Shipped
            }
            Fact::WarehouseDelayed { reason, expected_ship_at, .. } => {
                if state.status != Status::Open || state.shipped_at.is_some_and(|s| at < s) {
                    return;
                }
                let estimate = match expected_ship_at {
                    Some(t) => Estimate::Date(calendar::promise_after_shipping(self.policy, tz, method, *t)),
                    None => Estimate::Unknown,
                };
                if !set_estimate(state, estimate, at, false) {
                    return;
                }
                state.reason = Some(*reason);
                Trigger::Delay
            }
            Fact::Backorder { expected_restock_at, .. } => {
                if state.status != Status::Open {
                    return;
                }
                let estimate = match expected_restock_at {
                    Some(t) => Estimate::Date(calendar::promise_after_shipping(self.policy, tz, method, *t)),
                    None => Estimate::Unknown,
                };
                if !set_estimate(state, estimate, at, false) {
                    return;
                }
                state.reason = Some(Reason::OutOfStock);
                Trigger::Backorder
            }
            Fact::WarehouseIncident { reason, expected_recovery_at, .. } => {
                let estimate = match expected_recovery_at {
                    Some(t) => Estimate::Date(calendar::promise_after_shipping(self.policy, tz, method, *t)),
                    None => Estimate::Unknown,
                };
                if !set_estimate(state, estimate, at, false) {
                    return;
                }
                state.reason = Some(*reason);
                Trigger::Delay
            }
            Fact::CarrierIncident { reason, expected_delay_minutes, .. } => {
                let base = state.promise.unwrap_or(state.original);
                let late = base + Duration::minutes(*expected_delay_minutes);
                let estimate = calendar::promise_on(self.policy, tz, local_date(tz, late));
                if !set_estimate(state, Estimate::Date(estimate), at, false) {
                    return;
                }
                state.reason = Some(*reason);
                Trigger::Delay
            }
            Fact::InTransit { eta, .. } | Fact::OutForDelivery { eta, .. } => {
                let Some(eta) = eta else { return };
                if state.status != Status::Shipped {
                    return;
                }
                let estimate = calendar::promise_on(self.policy, tz, local_date(tz, eta.to));
                if !set_estimate(state, Estimate::Date(estimate), at, true) {
                    return;
                }
                Trigger::Delay
            }
            Fact::EtaUpdated { eta, reason, .. } => {
                if state.status != Status::Shipped {
                    return;
                }
                let estimate = calendar::promise_on(self.policy, tz, local_date(tz, eta.to));
                if !set_estimate(state, Estimate::Date(estimate), at, true) {
                    return;
                }
                if reason.is_some() {
                    state.reason = *reason;
                }
                Trigger::Delay
            }
            Fact::Exception { reason, eta, .. } => {
                if state.status != Status::Shipped {
                    return;
                }
                let estimate = match eta {
                    Some(eta) => Estimate::Date(calendar::promise_on(self.policy, tz, local_date(tz, eta.to))),
                    None => Estimate::Unknown,
                };
                if !set_estimate(state, estimate, at, true) {
                    return;
                }
                state.reason = Some(*reason);
                Trigger::Delay
            }
            Fact::DeliveryFailed { reason, next_attempt_at, pickup_point, .. } => {
                if state.status != Status::Shipped {
                    return;
                }
                state.failed_deliveries += 1;
                state.reason = Some(*reason);
                if matches!(reason, Reason::NotHome | Reason::AddressIssue) {
                    state.customer_caused = true;
                }
                state.next_attempt_at = *next_attempt_at;
                state.pickup_point = pickup_point.clone().map(Box::new);
                if let Some(t) = next_attempt_at {
                    let estimate = calendar::promise_on(self.policy, tz, local_date(tz, *t));
                    set_estimate(state, Estimate::Date(estimate), at, true);
                }
                Trigger::DeliveryFailed
            }
            Fact::Delivered { .. } => {
                if state.status == Status::Delivered {
                    return;
                }
                state.status = Status::Delivered;
                state.delivered_at = Some(at);
                state.pending = None;
                drop_held_sms(state);
                state.timers = Timers::default();
                if !state.customer_caused && at > state.original {
                    state.timers.followup = Some(calendar::days_later_at(
                        tz,
                        at,
                        self.policy.followup_after_days,
                        self.policy.followup_time,
                    ));
                }
                return;
            }
        };
        self.consider(state, trigger, &event.id, now, true);
    }

    /// Schedule a notice if the state now calls for one (or keep the pending one, updated).
    fn consider(&self, state: &mut OrderState, trigger: Trigger, cause: &str, now: Instant, coalesce: bool) {
        let wants = match trigger {
            Trigger::DeliveryFailed | Trigger::UpdateDue | Trigger::Followup | Trigger::ShipByPassed => true,
            _ => match self.assess(state) {
                Assessment::Holds => trigger == Trigger::Shipped && state.told == Some(Kind::AtRisk),
                Assessment::StillUnknown => trigger == Trigger::Backorder && state.told != Some(Kind::Backorder),
                Assessment::Breaks(_) | Assessment::NewDate(_) => true,
            },
        };
        let from_fact = matches!(
            trigger,
            Trigger::Delay | Trigger::Backorder | Trigger::Shipped | Trigger::DeliveryFailed
        );
        match &mut state.pending {
            Some(p) => {
                // A failed delivery is news of its own: a later fact in the window does not
                // turn it into a delay message; and a timer does not overrule a fact.
                if from_fact && p.trigger != Trigger::DeliveryFailed {
                    p.trigger = trigger;
                    cause.clone_into(&mut p.cause);
                } else if trigger == Trigger::DeliveryFailed {
                    cause.clone_into(&mut p.cause);
                }
            }
            None if wants => {
                let window = if coalesce { Duration::seconds(self.policy.coalesce_seconds) } else { Duration::zero() };
                state.pending = Some(Pending { due: now + window, trigger, cause: cause.to_string() });
            }
            None => {}
        }
    }

    fn assess(&self, state: &OrderState) -> Assessment {
        let Some(brand) = brand_of(self.policy, &state.brand) else { return Assessment::Holds };
        let tz = brand.time_zone;
        match (state.estimate, state.promise) {
            (Estimate::Promise, _) => Assessment::Holds,
            (Estimate::Date(d), Some(p)) => {
                if local_date(tz, d) > local_date(tz, p) {
                    Assessment::Breaks(Some(d))
                } else {
                    Assessment::Holds
                }
            }
            (Estimate::Date(d), None) => Assessment::NewDate(d),
            (Estimate::Unknown, Some(_)) => Assessment::Breaks(None),
            (Estimate::Unknown, None) => Assessment::StillUnknown,
        }
    }

    /// Run every timer and pending notice due at or before `now`, in time order.
    pub fn tick(&self, state: &mut OrderState, now: Instant) -> Vec<Decision> {
        let mut out = Vec::new();
        // Each pass handles the earliest due item at its own time, so a daemon that wakes
        // late decides exactly what simulate decides on time.
        for _ in 0..64 {
            let Some(due) = state.next_wakeup().filter(|t| *t <= now) else { break };
            self.fire(state, due, &mut out);
        }
        out
    }

    fn fire(&self, state: &mut OrderState, due: Instant, out: &mut Vec<Decision>) {
        let at = state.clock.map_or(due, |c| c.max(due));
        if let Some(held) = state.held_sms.as_ref().filter(|h| h.release_at == due) {
            let mut d = held.decision.clone();
            d.send_at = at;
            state.held_sms = None;
            out.push(d);
            return;
        }
        if state.pending.as_ref().is_some_and(|p| p.due == due) {
            self.flush(state, at, out);
            return;
        }
        if state.timers.ship_by == Some(due) {
            state.timers.ship_by = None;
            if state.status == Status::Open && state.told.is_none() {
                self.consider(state, Trigger::ShipByPassed, "timer:ship_by", at, false);
            }
            return;
        }
        if state.timers.promise_passed == Some(due) {
            state.timers.promise_passed = None;
            let Some(brand) = brand_of(self.policy, &state.brand) else { return };
            let undelivered = matches!(state.status, Status::Open | Status::Shipped);
            if undelivered && !state.customer_caused && state.promise == Some(due) {
                let estimate = if state.status == Status::Shipped {
                    let next = calendar::next_delivery_day(self.policy, local_date(brand.time_zone, due));
                    Estimate::Date(calendar::promise_on(self.policy, brand.time_zone, next))
                } else {
                    Estimate::Unknown
                };
                state.estimate = estimate;
                state.estimate_at = Some(at);
                self.consider(state, Trigger::PromisePassed, "timer:promise_passed", at, false);
            }
            return;
        }
        if state.timers.next_update == Some(due) {
            state.timers.next_update = None;
            self.consider(state, Trigger::UpdateDue, "timer:next_update", at, false);
            return;
        }
        if state.timers.followup == Some(due) {
            state.timers.followup = None;
            self.consider(state, Trigger::Followup, "timer:followup", at, false);
            return;
        }
        // Nothing matched exactly (cannot happen); clear to guarantee progress.
        state.pending = None;
    }

    /// The coalescing window has closed: decide from the latest state what to say.
    fn flush(&self, state: &mut OrderState, now: Instant, out: &mut Vec<Decision>) {
        let Some(pending) = state.pending.take() else { return };
        let Some(brand) = brand_of(self.policy, &state.brand) else { return };
        let tz = brand.time_zone;
        let open = matches!(state.status, Status::Open | Status::Shipped);
        let assessment = self.assess(state);
        let kind = match pending.trigger {
            Trigger::DeliveryFailed if open => Some(Kind::DeliveryFailed),
            Trigger::Followup if state.status == Status::Delivered => Some(Kind::LateDeliveryFollowup),
            Trigger::UpdateDue if open && (state.promise.is_none() || state.told == Some(Kind::AtRisk)) => {
                match assessment {
                    Assessment::NewDate(_) => Some(Kind::Update),
                    Assessment::Breaks(_) if !state.customer_caused => Some(Kind::Delayed),
                    _ => Some(Kind::Update),
                }
            }
            Trigger::DeliveryFailed | Trigger::Followup | Trigger::UpdateDue => None,
            trigger if open => match assessment {
                Assessment::Breaks(_) if state.customer_caused => None,
                Assessment::Breaks(_) if trigger == Trigger::Backorder => Some(Kind::Backorder),
                Assessment::Breaks(_) => Some(Kind::Delayed),
                Assessment::NewDate(_) if trigger == Trigger::Backorder => Some(Kind::Backorder),
                Assessment::NewDate(_) => Some(Kind::Update),
                Assessment::StillUnknown if trigger == Trigger::Backorder && state.told != Some(Kind::Backorder) => {
                    Some(Kind::Backorder)
                }
                Assessment::StillUnknown => None,
                Assessment::Holds => {
                    if state.told == Some(Kind::AtRisk) && state.status == Status::Shipped {
                        Some(Kind::BackOnTrack)
                    } else if trigger == Trigger::ShipByPassed && state.status == Status::Open && state.told.is_none() {
                        Some(Kind::AtRisk)
                    } else {
                        None
                    }
                }
            },
            _ => None,
        };
        let Some(kind) = kind else { return };

        // The daily cap: a notice beyond it waits for the next morning and then tells the
        // state of that moment. A failed delivery is never held back.
        let capped = kind != Kind::DeliveryFailed;
        let channels = self.channels(state, kind);
        // When each channel may go out (an SMS waits out quiet hours).
        let release: Vec<Instant> = channels.iter().map(|(c, _)| self.release_time(*c, tz, now)).collect();
        let send_day = local_date(tz, release.iter().copied().min().unwrap_or(now));
        // Every local day the notice reaches the customer counts (an e-mail tonight and the
        // SMS held to tomorrow morning are a message on both days).
        let mut days: Vec<NaiveDate> = release.iter().map(|t| local_date(tz, *t)).collect();
        days.sort_unstable();
        days.dedup();
        let full = days.iter().any(|d| notices_on(state, *d) >= self.policy.max_notices_per_day);
        if capped && !channels.is_empty() && full {
            let next_day = send_day.succ_opt().unwrap_or(send_day);
            let due = calendar::local_at(tz, next_day, self.policy.cap_release_time);
            state.pending = Some(Pending { due, ..pending });
            return;
        }

        let previous = state.promise;
        let mut new = previous;
        let mut next_update_at = None;
        let mut escalation = None;
        let mut again = false;
        match kind {
            Kind::Delayed | Kind::Backorder | Kind::Update => {
                let date = match assessment {
                    Assessment::Breaks(d) => d,
                    Assessment::NewDate(d) => Some(d),
                    _ => None,
                };
                let breaks = matches!(assessment, Assessment::Breaks(_));
                if breaks {
                    state.slips += 1;
                }
                again = breaks && state.slips >= 2;
                new = date;
                if date.is_none() {
                    next_update_at = Some(self.next_update(tz, now));
                }
                if again {
                    escalation = Some(EscalationWhy::RepeatedSlip);
                } else if breaks && date.is_none() {
                    escalation = Some(EscalationWhy::NoEstimate);
                }
            }
            Kind::AtRisk => {
                new = None;
                next_update_at = Some(self.next_update(tz, now));
            }
            Kind::DeliveryFailed => {
                new = state.next_attempt_at.map(|t| calendar::promise_on(self.policy, tz, local_date(tz, t)));
                // No next attempt and not the customer's doing: say when we write again.
                // (Not home with a pickup point: the customer can act; no update promised.)
                if new.is_none() && !state.customer_caused {
                    next_update_at = Some(self.next_update(tz, now));
                }
                if state.failed_deliveries >= 2 {
                    escalation = Some(EscalationWhy::PermanentDeliveryFailure);
                }
            }
            Kind::BackOnTrack | Kind::LateDeliveryFollowup => {}
            Kind::Escalation | Kind::Compensation => return,
        }

        // Move the promise and its timers.
        match kind {
            Kind::AtRisk | Kind::LateDeliveryFollowup | Kind::BackOnTrack => {}
            Kind::DeliveryFailed => {
                if new.is_some() || next_update_at.is_some() {
                    state.promise = new;
                }
            }
            // An update while the promise still nominally holds (after "at risk") leaves it.
            Kind::Update if matches!(assessment, Assessment::Holds) => {}
            _ => state.promise = new,
        }
        if kind != Kind::LateDeliveryFollowup {
            state.timers.next_update = next_update_at;
            state.timers.promise_passed = state.promise.filter(|p| *p > now && !state.customer_caused);
        }
        state.timers.ship_by = None;
        state.told = Some(kind);

        // Vouchers: the tier of the worst delay, granted as the difference when it rises.
        let previous_voucher = state.compensation_eur;
        let mut granted = None;
        let moved = matches!(kind, Kind::Delayed | Kind::Backorder | Kind::Update | Kind::DeliveryFailed);
        if let (true, false, Some(new_promise)) = (moved, state.customer_caused, new) {
            let days = calendar::days_between(tz, state.original, new_promise);
            let tier = brand.compensation_for(days);
            if tier > state.compensation_eur {
                granted = Some((tier - state.compensation_eur, days));
                state.compensation_eur = tier;
            }
        }
        let voucher = (state.compensation_eur > 0 && !state.customer_caused).then_some(state.compensation_eur);

        let promise = PromiseChange { original: state.original, previous, new };
        let notice = Notice {
            order_id: state.order_id.to_string(),
            kind,
            brand: state.brand.to_string(),
            locale: state.locale.to_string(),
            lang: state.lang,
            customer_name: state.customer.name.clone(),
            items: state.items.clone(),
            promise_label: state.promise_label.clone(),
            carrier: Some(state.carrier.as_ref().unwrap_or(&state.shipping.carrier).to_string()),
            tracking_number: state.tracking_number.as_deref().map(str::to_string),
            reason: match kind {
                Kind::AtRisk | Kind::BackOnTrack => None,
                _ => state.reason,
            },
            again,
            original: state.original,
            previous,
            new,
            next_update_at,
            compensation_eur: voucher,
            previous_compensation_eur: (granted.is_some() && previous_voucher > 0).then_some(previous_voucher),
            next_attempt_at: state.next_attempt_at.filter(|_| kind == Kind::DeliveryFailed),
            pickup_point: state.pickup_point.as_deref().cloned().filter(|_| kind == Kind::DeliveryFailed),
            delivered_at: state.delivered_at,
            failed_attempts: state.failed_deliveries,
            decided_at: now,
        };
        state.notices_decided += 1;
        let seq = state.notices_decided;
        let (order_id, brand_id, locale) = (state.order_id.to_string(), state.brand.to_string(), state.locale.to_string());
        let header = |kind: Kind, channel: Channel, to: Option<String>, compensation_eur: Option<u32>| Decision {
            order_id: order_id.clone(),
            kind,
            channel,
            send_at: now,
            to,
            brand: brand_id.clone(),
            locale: locale.clone(),
            reason: notice.reason,
            promise,
            next_update_at,
            compensation_eur,
            cause: pending.cause.clone(),
            seq,
            payload: Payload::Customer { notice: Box::new(notice.clone()) },
        };

        let mut customer = Vec::new();
        // Whatever still waits for the morning is superseded by this newer notice.
        drop_held_sms(state);
        for ((channel, to), &send_at) in channels.iter().zip(&release) {
            let mut d = header(kind, *channel, Some(to.clone()), voucher);
            d.send_at = send_at;
            if send_at > now {
                // Quiet hours: the SMS waits; a newer notice replaces one still waiting.
                let day = local_date(tz, send_at);
                let counted_day = (capped && day != send_day).then_some(day);
                state.held_sms = Some(Box::new(HeldSms { release_at: send_at, decision: d, counted_day }));
            } else {
                customer.push(d);
            }
        }
        if !channels.is_empty() {
            state.notices_sent += 1;
            if capped {
                for day in days {
                    count_notice(state, day);
                }
            }
        }
        out.extend(customer);
        if let Some((amount, days)) = granted {
            let mut d = header(Kind::Compensation, Channel::Event, None, Some(amount));
            d.payload = Payload::Compensation { amount_eur: amount, delay_days: days };
            out.push(d);
        }
        if let Some(why) = escalation {
            let mut d = header(Kind::Escalation, Channel::Event, None, None);
            d.payload = Payload::Escalation { why, messages_sent: state.notices_sent };
            out.push(d);
        }
    }

    fn next_update(&self, tz: chrono_tz::Tz, now: Instant) -> Instant {
        calendar::days_later_at(tz, now, self.policy.next_update_after_days, self.policy.next_update_time)
    }

    /// The channels this notice goes out on: configured for the kind, consented to, with an
    /// address to send to.
    fn channels(&self, state: &OrderState, kind: Kind) -> Vec<(Channel, String)> {
        self.policy
            .channels_for(kind)
            .iter()
            .filter(|c| state.customer.channels.contains(c))
            .filter_map(|c| {
                let to = match c {
                    Channel::Email => state.customer.email.as_ref(),
                    Channel::Sms => state.customer.phone.as_ref(),
                    Channel::Event => None,
                }?;
                Some((*c, to.to_string()))
            })
            .collect()
    }

    fn release_time(&self, channel: Channel, tz: chrono_tz::Tz, now: Instant) -> Instant {
        match channel {
            Channel::Sms => calendar::after_quiet_hours(self.policy, tz, now),
            _ => now,
        }
    }
}

/// Adopt an estimate unless a newer fact already gave one. `carrier` facts speak for the
/// parcel itself and may also bring the estimate *earlier*; warehouse facts and incidents
/// only ever push it later than what is known.
fn set_estimate(state: &mut OrderState, estimate: Estimate, at: Instant, carrier: bool) -> bool {
    if state.estimate_at.is_some_and(|t| at < t) {
        return false;
    }
    if !carrier {
        if let (Estimate::Date(new), Estimate::Date(known)) = (estimate, state.estimate) {
            if new < known {
                return false;
            }
        }
    }
    state.estimate = estimate;
    state.estimate_at = Some(at);
    true
}

fn notices_on(state: &OrderState, day: NaiveDate) -> u32 {
    state.notices_by_day.iter().find(|(d, _)| *d == day).map(|(_, n)| *n).unwrap_or(0)
}

/// A held SMS that will not go out (superseded, delivered first) stops counting.
fn drop_held_sms(state: &mut OrderState) {
    if let Some(day) = state.held_sms.take().and_then(|h| h.counted_day) {
        if let Some((_, n)) = state.notices_by_day.iter_mut().find(|(d, _)| *d == day) {
            *n = n.saturating_sub(1);
        }
    }
}

fn count_notice(state: &mut OrderState, day: NaiveDate) {
    state.notices_by_day.retain(|(d, _)| (day - *d).num_days() < 2);
    match state.notices_by_day.iter_mut().find(|(d, _)| *d == day) {
        Some((_, n)) => *n += 1,
        None => state.notices_by_day.push((day, 1)),
    }
}
