//! The promise policy as the engine uses it: parsed, validated values only. Loading and
//! reporting bad values (file, key, line) is `crate::settings`' job.

use chrono::{NaiveDate, NaiveTime, Weekday};
use chrono_tz::Tz;
use std::collections::{BTreeMap, HashSet};

use super::domain::{Channel, Kind, Tone};

#[derive(Debug, Clone)]
pub struct Policy {
    /// Orders placed at or after this local time count as placed the next day.
    pub cutoff: NaiveTime,
    /// The local time of day a computed or moved promise ends.
    pub promise_time: NaiveTime,
    pub delivery_days: HashSet<Weekday>,
    /// Dates with no deliveries (public holidays), in every brand's own calendar.
    pub non_delivery_dates: HashSet<NaiveDate>,
    pub coalesce_seconds: i64,
    pub max_notices_per_day: u32,
    /// When a notice held back by the daily cap goes out the next day.
    pub cap_release_time: NaiveTime,
    pub quiet_from: NaiveTime,
    pub quiet_until: NaiveTime,
    /// Moderation: days from one promised update to the next, the first after the notice
    /// that gave no date; the last step repeats (1, 2, 4, then every 7 days).
    pub update_cadence_days: Vec<u32>,
    pub next_update_time: NaiveTime,
    /// After this many updates without news a person is asked to take the order up
    /// (`escalation`, why `no_news`); 0: never.
    pub no_news_escalate_after: u32,
    /// An event stamped further ahead than this of its arrival is refused: a producer's
    /// broken clock must not freeze an order or run its timers years ahead.
    pub max_future_skew: chrono::Duration,
    pub followup_after_days: u32,
    pub followup_time: NaiveTime,
    /// How long an event waits for the order (or tracking number) it refers to.
    pub park_hours: i64,
    /// Which channels each customer kind uses (consent and addresses permitting).
    pub channels: BTreeMap<Kind, Vec<Channel>>,
    pub shipping: BTreeMap<String, ShippingMethod>,
    pub brands: BTreeMap<String, Brand>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShippingMethod {
    /// Local time on the ship-by day by which the order must have shipped.
    pub ship_by_time: NaiveTime,
    /// The ship-by day: this many delivery days before the promise day (0: the promise day).
    pub ship_by_days_before: u32,
    /// Delivery days from shipping to delivery.
    pub transit_days: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompensationTier {
    pub min_days: i64,
    pub eur: u32,
}

#[derive(Debug, Clone)]
pub struct Brand {
    pub id: String,
    pub display_name: String,
    pub tone: Tone,
    pub time_zone: Tz,
    pub default_locale: String,
    pub email_from: String,
    pub sms_from: String,
    pub support_url: String,
    pub support_phone: Option<String>,
    /// Ascending by `min_days`; empty: this brand gives no vouchers.
    pub compensation: Vec<CompensationTier>,
}

impl Brand {
    /// The voucher for a delay of `days` whole days (0 when below the first tier).
    pub fn compensation_for(&self, days: i64) -> u32 {
        self.compensation.iter().filter(|t| days >= t.min_days).map(|t| t.eur).max().unwrap_or(0)
    }
}

impl Policy {
    pub const DEFAULT_METHOD: &'static str = "standard";

    /// The rules for a shipping method; an unknown method gets the `standard` ones.
    pub fn method(&self, name: &str) -> &ShippingMethod {
        self.shipping
            .get(name)
            .or_else(|| self.shipping.get(Self::DEFAULT_METHOD))
            .or_else(|| self.shipping.values().next())
            .unwrap_or(&FALLBACK_METHOD)
    }

    /// Days until the next promised update, after `quiet_updates` updates without news.
    pub fn update_step_days(&self, quiet_updates: u32) -> u32 {
        let last = self.update_cadence_days.len().saturating_sub(1);
        self.update_cadence_days.get((quiet_updates as usize).min(last)).copied().unwrap_or(1)
    }

    pub fn channels_for(&self, kind: Kind) -> &[Channel] {
        self.channels.get(&kind).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn is_delivery_day(&self, date: NaiveDate) -> bool {
        use chrono::Datelike;
        self.delivery_days.contains(&date.weekday()) && !self.non_delivery_dates.contains(&date)
    }
}

static FALLBACK_METHOD: ShippingMethod = ShippingMethod {
    ship_by_time: match NaiveTime::from_hms_opt(2, 0, 0) {
        Some(t) => t,
        None => NaiveTime::MIN,
    },
    ship_by_days_before: 0,
    transit_days: 1,
};
