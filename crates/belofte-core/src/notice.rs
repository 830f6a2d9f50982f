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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promise_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// What went wrong; `None` where nothing did (back on track) or nobody said (at risk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// The second or later broken promise: the words must say it happens again.
    pub again: bool,
    pub original: Instant,
    /// The promise the customer held before this notice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Instant>,
    /// The promise this notice makes; `None` when there is no credible date yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Instant>,
    /// When the customer hears from us again, where no date can be given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_update_at: Option<Instant>,
    /// The voucher this order has earned in all (what the message names), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation_eur: Option<u32>,
    /// The voucher named in an earlier message, when this one raises it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_compensation_eur: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Instant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pickup_point: Option<PickupPoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Instant>,
    /// How many deliveries failed so far (for `delivery_failed`).
    pub failed_attempts: u32,
    /// When the notice is decided (the renderer may say "today" or "tomorrow" from it).
    pub decided_at: Instant,
}
