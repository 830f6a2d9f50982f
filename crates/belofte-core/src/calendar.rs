//! Local time as the customer lives it: delivery days, cut-off, ship-by, quiet hours, DST.
//! Every function takes the time zone explicitly; nothing here reads a clock.

use chrono::{Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::domain::Instant;
use super::policy::{Policy, ShippingMethod};

/// The instant of a local wall-clock time. In the spring-forward gap the clock jumps, so the
/// first valid instant after it is used; in the autumn fold the earlier of the two.
pub fn local_at(tz: Tz, date: NaiveDate, time: NaiveTime) -> Instant {
    let naive = NaiveDateTime::new(date, time);
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(early, _) => early.with_timezone(&Utc),
        LocalResult::None => {
            // Gaps are at most a few hours wide; step forward minute by minute until valid.
            let mut probe = naive;
            for _ in 0..(6 * 60) {
                probe += chrono::Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&naive)
        }
    }
}

pub fn local_date(tz: Tz, t: Instant) -> NaiveDate {
    t.with_timezone(&tz).date_naive()
}

pub fn local_time(tz: Tz, t: Instant) -> NaiveTime {
    t.with_timezone(&tz).time()
}

fn succ(date: NaiveDate) -> NaiveDate {
    date.checked_add_days(Days::new(1)).unwrap_or(date)
}

fn pred(date: NaiveDate) -> NaiveDate {
    date.checked_sub_days(Days::new(1)).unwrap_or(date)
}

/// The first delivery day strictly after `date`.
pub fn next_delivery_day(policy: &Policy, date: NaiveDate) -> NaiveDate {
    let mut d = succ(date);
    // A year without a delivery day is a configuration error caught at load; bound anyway.
    for _ in 0..366 {
        if policy.is_delivery_day(d) {
            return d;
        }
        d = succ(d);
    }
    d
}

/// `date` itself when it is a delivery day, else the next one.
pub fn delivery_day_on_or_after(policy: &Policy, date: NaiveDate) -> NaiveDate {
    if policy.is_delivery_day(date) {
        date
    } else {
        next_delivery_day(policy, date)
    }
}

/// The `n`th delivery day after `date` (n = 0: `date` itself, whatever day it is).
pub fn delivery_days_after(policy: &Policy, date: NaiveDate, n: u32) -> NaiveDate {
    (0..n).fold(date, |d, _| next_delivery_day(policy, d))
}

/// A promise on a local date: that date (or the next delivery day) at the promise time.
pub fn promise_on(policy: &Policy, tz: Tz, date: NaiveDate) -> Instant {
    local_at(tz, delivery_day_on_or_after(policy, date), policy.promise_time)
}

/// The promise the shop makes when the order carries none: ordered before the cut-off,
/// delivered `transit_days` delivery days after the order day; after it, the delivery day
/// after that.
pub fn computed_promise(policy: &Policy, tz: Tz, method: &ShippingMethod, placed_at: Instant) -> Instant {
    let local = placed_at.with_timezone(&tz);
    let mut date = delivery_days_after(policy, local.date_naive(), method.transit_days.max(1));
    if local.time() >= policy.cutoff {
        date = next_delivery_day(policy, date);
    }
    local_at(tz, date, policy.promise_time)
}

/// The moment by which an order must have shipped to keep `promise`.
pub fn ship_by(policy: &Policy, tz: Tz, method: &ShippingMethod, promise: Instant) -> Instant {
    let mut day = local_date(tz, promise);
    for _ in 0..method.ship_by_days_before {
        day = pred(day);
        while !policy.is_delivery_day(day) {
            day = pred(day);
        }
    }
    local_at(tz, day, method.ship_by_time)
}

/// When a parcel that ships at `ship_at` arrives: `transit_days` delivery days later, at the
/// promise time.
pub fn promise_after_shipping(policy: &Policy, tz: Tz, method: &ShippingMethod, ship_at: Instant) -> Instant {
    let date = delivery_days_after(policy, local_date(tz, ship_at), method.transit_days.max(1));
    local_at(tz, date, policy.promise_time)
}

/// Whether a local time falls in the quiet hours (which may wrap past midnight).
pub fn in_quiet_hours(policy: &Policy, tz: Tz, t: Instant) -> bool {
    let time = local_time(tz, t);
    let (from, until) = (policy.quiet_from, policy.quiet_until);
    if from == until {
        false
    } else if from > until {
        time >= from || time < until
    } else {
        time >= from && time < until
    }
}

/// The first moment at or after `t` outside the quiet hours.
pub fn after_quiet_hours(policy: &Policy, tz: Tz, t: Instant) -> Instant {
    if !in_quiet_hours(policy, tz, t) {
        return t;
    }
    let date = local_date(tz, t);
    let today = local_at(tz, date, policy.quiet_until);
    if today > t {
        today
    } else {
        local_at(tz, succ(date), policy.quiet_until)
    }
}

/// `days` local days after the day of `t`, at `time`.
pub fn days_later_at(tz: Tz, t: Instant, days: u32, time: NaiveTime) -> Instant {
    let date = local_date(tz, t).checked_add_days(Days::new(days as u64)).unwrap_or(local_date(tz, t));
    local_at(tz, date, time)
}

/// Whole days between the local dates of two promises (negative when `to` is earlier).
pub fn days_between(tz: Tz, from: Instant, to: Instant) -> i64 {
    (local_date(tz, to) - local_date(tz, from)).num_days()
}
