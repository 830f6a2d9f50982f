//! One order's state: the promise it holds, what is known, its timers and what waits to be
//! said. Serialisable: the daemon stores it as is.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::calendar;
use crate::domain::{Instant, Item, Kind, Lang, PickupPoint, Reason};
use crate::event::{normalise_postal_code, Customer, Fact, OrderPlaced, Rejection, Shipping};
use crate::name::Name;
use crate::policy::{Brand, Policy};

use super::Decision;

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
    /// Moderation: promised updates sent since the last news (a date, a shipment, a
    /// delivery): each next one comes later, and at `no_news_escalate_after` a person is asked.
    #[serde(default)]
    pub quiet_updates: u32,
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


pub(super) fn brand_of<'p>(policy: &'p Policy, id: &str) -> Option<&'p Brand> {
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
            quiet_updates: 0,
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

