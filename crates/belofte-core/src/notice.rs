//! What the engine decided to tell one customer: every fact the words need, no words yet.
//! The renderer turns a `Notice` into text; the engine never formats anything.

use serde::{Deserialize, Serialize};

use super::domain::{Instant, Item, Kind, Lang, PickupPoint, Reason};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub order_id: String,
    pub kind: Kind,
    /// Brand id; the renderer looks up name, tone, time zone and support details.
    pub brand: String,
    /// The customer's locale as given (`nl-BE`), or the brand's default when the customer's
    /// language has no templates.
    pub locale: String,
    pub lang: Lang,
    pub customer_name: String,
    pub items: Vec<Item>,
    /// The shop's own words for the promise ("op de releasedag"), when it gave some.
    pub promise_label: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    /// What went wrong; `None` where nothing did (back on track) or nobody said (at risk).
    pub reason: Option<Reason>,
    /// The second or later broken promise: the words must say it happens again.
    pub again: bool,
    pub original: Instant,
    /// The promise the customer held before this notice.
    pub previous: Option<Instant>,
    /// The promise this notice makes; `None` when there is no credible date yet.
    pub new: Option<Instant>,
    /// When the customer hears from us again, where no date can be given.
    pub next_update_at: Option<Instant>,
    /// The voucher this order has earned in all (what the message names), if any.
    pub compensation_eur: Option<u32>,
    /// The voucher named in an earlier message, when this one raises it.
    pub previous_compensation_eur: Option<u32>,
    pub next_attempt_at: Option<Instant>,
    pub pickup_point: Option<PickupPoint>,
    pub delivered_at: Option<Instant>,
    /// How many deliveries failed so far (for `delivery_failed`).
    pub failed_attempts: u32,
    /// When the notice is decided (the renderer may say "today" or "tomorrow" from it).
    pub decided_at: Instant,
}
