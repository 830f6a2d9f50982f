//! The promise engine: one order's state, the facts that change it and the timers that
//! wake it, and the notices it decides. Pure: time comes in as an argument, nothing is
//! read or written outside the state it is handed.
//!
//! The model: the customer holds a *promise* (a date, or "no date yet, next update at…").
//! Facts move the *estimate*. When the estimate breaks the promise, a notice is scheduled
//! after a short coalescing window; when the window closes, the latest state decides what
//! (if anything) is said, so a burst of facts becomes one message that tells the end state.
//! Every step, and every silence with its reason, goes to the trace.

mod decide;
mod decision;
mod state;

use chrono::Duration;
use chrono_tz::Tz;

use crate::calendar::{self, local_date};
use crate::domain::{Instant, Kind, Reason};
use crate::event::{Event, Fact};
use crate::policy::Policy;
use crate::trace::{EventOutcome, Silence, Step, Trace};

pub use decision::{Decision, Payload, PromiseChange};
use state::brand_of;
pub use state::{Estimate, HeldSms, OrderState, Pending, Status, Timers, Trigger};

/// How the estimate stands against the promise the customer holds.
enum Assessment {
    Holds,
    /// Later than promised (`Some` new date) or no date at all (`None`).
    Breaks(Option<Instant>),
    /// We had said "no date yet" and now there is one.
    NewDate(Instant),
    StillUnknown,
}

/// What became of a new estimate.
#[derive(PartialEq, Eq)]
enum Adopt {
    Adopted,
    /// A newer fact already gave an estimate.
    Stale,
    /// A warehouse fact or incident would bring it earlier than what is known: kept.
    NotLater,
}

impl Adopt {
    /// The event's outcome when the estimate was not adopted (nothing more to do).
    fn refused(self) -> Option<EventOutcome> {
        match self {
            Adopt::Adopted => None,
            Adopt::Stale => Some(EventOutcome::Stale),
            Adopt::NotLater => Some(EventOutcome::Applied),
        }
    }
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
    pub fn apply(&self, state: &mut OrderState, event: &Event, now: Instant, trace: &mut Trace) -> EventOutcome {
        if matches!(state.status, Status::Cancelled) {
            return EventOutcome::Ignored;
        }
        state.clock = Some(state.clock.map_or(now, |c| c.max(now)));
        let Some(brand) = brand_of(self.policy, &state.brand) else { return EventOutcome::Ignored };
        let tz = brand.time_zone;
        let method = self.policy.method(&state.shipping.method);
        let at = event.time;
        let cause = event.id.as_str();
        // A warehouse's expected ship (or restock, or recovery) time, as an estimate.
        let after_shipping = |t: &Option<Instant>| match t {
            Some(t) => Estimate::Date(calendar::promise_after_shipping(self.policy, tz, method, *t)),
            None => Estimate::Unknown,
        };
        // The estimate a fact brings, adopted unless a newer fact already gave one.
        let mut adopt = |state: &mut OrderState, estimate: Estimate, carrier: bool| -> Adopt {
            let adopted = set_estimate(state, estimate, at, carrier);
            if adopted == Adopt::NotLater {
                trace.record(|| {
                    Step::silence(&state.order_id, now, tz, cause, Silence::SameDate, "A later estimate is already known; this one changes nothing.".into())
                });
            }
            adopted
        };
        let trigger = match &event.fact {
            Fact::OrderPlaced(_) => return EventOutcome::Ignored,
            Fact::OrderCancelled { .. } => {
                if state.pending.is_some() || state.held_sms.is_some() {
                    trace.record(|| {
                        Step::silence(&state.order_id, now, tz, cause, Silence::Cancelled, "The order was cancelled: pending and held messages are dropped.".into())
                    });
                }
                state.status = Status::Cancelled;
                state.pending = None;
                state.held_sms = None;
                state.timers = Timers::default();
                return EventOutcome::Applied;
            }
            Fact::Picked { .. } | Fact::Packed { .. } => return EventOutcome::Applied,
            Fact::Shipped { carrier, tracking_number, eta, .. } => {
                if state.status != Status::Open {
                    return EventOutcome::Ignored;
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
                adopt(state, Estimate::Date(estimate), true);
                Trigger::Shipped
            }
            Fact::WarehouseDelayed { reason, expected_ship_at, .. } => {
                if state.status != Status::Open || state.shipped_at.is_some_and(|s| at < s) {
                    return EventOutcome::Ignored;
                }
                let estimate = after_shipping(expected_ship_at);
                if let Some(outcome) = adopt(state, estimate, false).refused() {
                    return outcome;
                }
                state.reason = Some(*reason);
                Trigger::Delay
            }
            Fact::Backorder { expected_restock_at, .. } => {
                if state.status != Status::Open {
                    return EventOutcome::Ignored;
                }
                let estimate = after_shipping(expected_restock_at);
                if let Some(outcome) = adopt(state, estimate, false).refused() {
                    return outcome;
                }
                state.reason = Some(Reason::OutOfStock);
                Trigger::Backorder
            }
            Fact::WarehouseIncident { reason, expected_recovery_at, .. } => {
                let estimate = after_shipping(expected_recovery_at);
                if let Some(outcome) = adopt(state, estimate, false).refused() {
                    return outcome;
                }
                state.reason = Some(*reason);
                Trigger::Delay
            }
            Fact::CarrierIncident { reason, expected_delay_minutes, .. } => {
                let base = state.promise.unwrap_or(state.original);
                let late = base + Duration::minutes(*expected_delay_minutes);
                let estimate = calendar::promise_on(self.policy, tz, local_date(tz, late));
                if let Some(outcome) = adopt(state, Estimate::Date(estimate), false).refused() {
                    return outcome;
                }
                state.reason = Some(*reason);
                Trigger::Delay
            }
            Fact::InTransit { eta, .. } | Fact::OutForDelivery { eta, .. } => {
                let Some(eta) = eta else { return EventOutcome::Applied };
                if state.status != Status::Shipped {
                    return EventOutcome::Ignored;
                }
                let estimate = calendar::promise_on(self.policy, tz, local_date(tz, eta.to));
                if adopt(state, Estimate::Date(estimate), true) != Adopt::Adopted {
                    return EventOutcome::Stale;
                }
                Trigger::Delay
            }
            Fact::EtaUpdated { eta, reason, .. } => {
                if state.status != Status::Shipped {
                    return EventOutcome::Ignored;
                }
                let estimate = calendar::promise_on(self.policy, tz, local_date(tz, eta.to));
                if adopt(state, Estimate::Date(estimate), true) != Adopt::Adopted {
                    return EventOutcome::Stale;
                }
                if reason.is_some() {
                    state.reason = *reason;
                }
                Trigger::Delay
            }
            Fact::Exception { reason, eta, .. } => {
                if state.status != Status::Shipped {
                    return EventOutcome::Ignored;
                }
                let estimate = match eta {
                    Some(eta) => Estimate::Date(calendar::promise_on(self.policy, tz, local_date(tz, eta.to))),
                    None => Estimate::Unknown,
                };
                if adopt(state, estimate, true) != Adopt::Adopted {
                    return EventOutcome::Stale;
                }
                state.reason = Some(*reason);
                Trigger::Delay
            }
            Fact::DeliveryFailed { reason, next_attempt_at, pickup_point, .. } => {
                if state.status != Status::Shipped {
                    return EventOutcome::Ignored;
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
                    adopt(state, Estimate::Date(estimate), true);
                }
                Trigger::DeliveryFailed
            }
            Fact::Delivered { .. } => {
                if state.status == Status::Delivered {
                    return EventOutcome::Ignored;
                }
                if state.pending.is_some() || state.held_sms.is_some() {
                    trace.record(|| {
                        Step::silence(&state.order_id, now, tz, cause, Silence::Delivered, "Delivered first: pending and held messages are dropped.".into())
                    });
                }
                state.status = Status::Delivered;
                state.delivered_at = Some(at);
                state.pending = None;
                drop_held_sms(state);
                state.timers = Timers::default();
                if state.customer_caused && at > state.original {
                    trace.record(|| {
                        Step::silence(&state.order_id, now, tz, cause, Silence::CustomerCaused, "Delivered after the promise, but the customer caused the delay: no follow-up.".into())
                    });
                }
                if !state.customer_caused && at > state.original {
                    state.timers.followup = Some(calendar::days_later_at(
                        tz,
                        at,
                        self.policy.followup_after_days,
                        self.policy.followup_time,
                    ));
                }
                return EventOutcome::Applied;
            }
        };
        self.consider(state, trigger, cause, now, true, trace);
        EventOutcome::Applied
    }

    /// Schedule a notice if the state now calls for one (or keep the pending one, updated).
    fn consider(&self, state: &mut OrderState, trigger: Trigger, cause: &str, now: Instant, coalesce: bool, trace: &mut Trace) {
        // Assessed only where it decides (it converts times to the brand's zone).
        let assessment = match trigger {
            Trigger::DeliveryFailed | Trigger::UpdateDue | Trigger::Followup | Trigger::ShipByPassed => None,
            _ => Some(self.assess(state)),
        };
        let wants = match &assessment {
            None => true,
            Some(Assessment::Holds) => trigger == Trigger::Shipped && state.told == Some(Kind::AtRisk),
            Some(Assessment::StillUnknown) => trigger == Trigger::Backorder && state.told != Some(Kind::Backorder),
            Some(Assessment::Breaks(_) | Assessment::NewDate(_)) => true,
        };
        let from_fact = matches!(
            trigger,
            Trigger::Delay | Trigger::Backorder | Trigger::Shipped | Trigger::DeliveryFailed
        );
        let tz = |brand: &str| self.policy.brands.get(brand).map_or(chrono_tz::UTC, |b| b.time_zone);
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
                let due = p.due;
                trace.record(|| {
                    let detail = "Folded into the notice already pending; it tells the latest state.".into();
                    Step::silence(&state.order_id, now, tz(&state.brand), cause, Silence::Coalesced, detail).on(None, Some(due))
                });
            }
            None if wants => {
                let window = if coalesce { Duration::seconds(self.policy.coalesce_seconds) } else { Duration::zero() };
                state.pending = Some(Pending { due: now + window, trigger, cause: cause.to_string() });
            }
            None => {
                if let (true, Some(assessment)) = (from_fact, &assessment) {
                    trace.record(|| self.why_quiet(state, assessment, cause, now, tz(&state.brand)));
                }
            }
        }
    }

    /// The silence of a fact that asks for no notice.
    fn why_quiet(&self, state: &OrderState, assessment: &Assessment, cause: &str, now: Instant, tz: Tz) -> Step {
        let (reason, detail) = match (assessment, state.estimate, state.promise) {
            (Assessment::StillUnknown, _, _) => {
                (Silence::SameDate, "Still no date; the customer already knows there is none yet.".to_string())
            }
            (_, Estimate::Date(d), Some(p)) if local_date(tz, d) < local_date(tz, p) => (
                Silence::EarlierThanPromised,
                format!("The estimate ({}) is earlier than the promise ({}): not a broken promise.", local_date(tz, d), local_date(tz, p)),
            ),
            (_, Estimate::Date(d), Some(p)) => (
                Silence::EstimateFits,
                format!("The estimate ({}) still fits the promise ({}).", local_date(tz, d), local_date(tz, p)),
            ),
            _ => (Silence::EstimateFits, "The promise still holds.".to_string()),
        };
        Step::silence(&state.order_id, now, tz, cause, reason, detail)
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

    fn tz(&self, state: &OrderState) -> Tz {
        brand_of(self.policy, &state.brand).map_or(chrono_tz::UTC, |b| b.time_zone)
    }

    /// Run every timer and pending notice due at or before `now`, in time order.
    pub fn tick(&self, state: &mut OrderState, now: Instant, trace: &mut Trace) -> Vec<Decision> {
        let mut out = Vec::new();
        // Each pass handles the earliest due item at its own time, so a daemon that wakes
        // late decides exactly what simulate decides on time.
        for _ in 0..64 {
            let Some(due) = state.next_wakeup().filter(|t| *t <= now) else { break };
            self.fire(state, due, &mut out, trace);
        }
        out
    }

    fn fire(&self, state: &mut OrderState, due: Instant, out: &mut Vec<Decision>, trace: &mut Trace) {
        let at = state.clock.map_or(due, |c| c.max(due));
        if let Some(held) = state.held_sms.as_ref().filter(|h| h.release_at == due) {
            let mut d = held.decision.clone();
            d.send_at = at;
            state.held_sms = None;
            trace.record(|| decide::message_step(&d, self.tz(state), "The SMS held for quiet hours goes out."));
            out.push(d);
            return;
        }
        if state.pending.as_ref().is_some_and(|p| p.due == due) {
            self.flush(state, at, out, trace);
            return;
        }
        if state.timers.ship_by == Some(due) {
            state.timers.ship_by = None;
            if state.status == Status::Open && state.told.is_none() {
                self.consider(state, Trigger::ShipByPassed, "timer:ship_by", at, false, trace);
            }
            return;
        }
        if state.timers.promise_passed == Some(due) {
            state.timers.promise_passed = None;
            let Some(brand) = brand_of(self.policy, &state.brand) else { return };
            let undelivered = matches!(state.status, Status::Open | Status::Shipped);
            if undelivered && state.customer_caused {
                trace.record(|| {
                    Step::silence(&state.order_id, at, brand.time_zone, "timer:promise_passed", Silence::CustomerCaused, "The promise passed, but the customer caused the delay: no delay message.".into())
                });
            }
            if undelivered && !state.customer_caused && state.promise == Some(due) {
                let estimate = if state.status == Status::Shipped {
                    let next = calendar::next_delivery_day(self.policy, local_date(brand.time_zone, due));
                    Estimate::Date(calendar::promise_on(self.policy, brand.time_zone, next))
                } else {
                    Estimate::Unknown
                };
                state.estimate = estimate;
                state.estimate_at = Some(at);
                self.consider(state, Trigger::PromisePassed, "timer:promise_passed", at, false, trace);
            }
            return;
        }
        if state.timers.next_update == Some(due) {
            state.timers.next_update = None;
            self.consider(state, Trigger::UpdateDue, "timer:next_update", at, false, trace);
            return;
        }
        if state.timers.followup == Some(due) {
            state.timers.followup = None;
            self.consider(state, Trigger::Followup, "timer:followup", at, false, trace);
            return;
        }
        // Nothing matched exactly (cannot happen); clear to guarantee progress.
        state.pending = None;
    }
}

/// Adopt an estimate unless a newer fact already gave one. `carrier` facts speak for the
/// parcel itself and may also bring the estimate *earlier*; warehouse facts and incidents
/// only ever push it later than what is known.
fn set_estimate(state: &mut OrderState, estimate: Estimate, at: Instant, carrier: bool) -> Adopt {
    if state.estimate_at.is_some_and(|t| at < t) {
        return Adopt::Stale;
    }
    if !carrier {
        if let (Estimate::Date(new), Estimate::Date(known)) = (estimate, state.estimate) {
            if new < known {
                return Adopt::NotLater;
            }
        }
    }
    state.estimate = estimate;
    state.estimate_at = Some(at);
    Adopt::Adopted
}

/// A held SMS that will not go out (superseded, delivered first) stops counting.
fn drop_held_sms(state: &mut OrderState) {
    if let Some(day) = state.held_sms.take().and_then(|h| h.counted_day) {
        if let Some((_, n)) = state.notices_by_day.iter_mut().find(|(d, _)| *d == day) {
            *n = n.saturating_sub(1);
        }
    }
}
