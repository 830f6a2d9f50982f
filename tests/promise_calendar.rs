//! The promise a shop makes, computed as a customer in the Netherlands lives it: the
//! cut-off, Sundays and holidays without deliveries, and both DST changes.

use belofte_core::calendar::{self, local_at};
use belofte_core::policy::Policy;
use belofte::settings;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use chrono_tz::Europe::Amsterdam;

fn policy() -> Policy {
    settings::load(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config").as_path())
        .expect("default config loads")
        .policy
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("valid time").with_timezone(&Utc)
}

fn local(s: DateTime<Utc>) -> String {
    s.with_timezone(&Amsterdam).to_rfc3339()
}

fn promise_for(placed: &str) -> String {
    let p = policy();
    local(calendar::computed_promise(&p, Amsterdam, p.method("standard"), t(placed)))
}

#[test]
fn before_the_cutoff_is_tomorrow_after_it_the_day_after() {
    // Monday before 22:30 → Tuesday 22:00; after → Wednesday.
    assert_eq!(promise_for("2026-11-02T14:00:00+01:00"), "2026-11-03T22:00:00+01:00");
    assert_eq!(promise_for("2026-11-02T22:29:59+01:00"), "2026-11-03T22:00:00+01:00");
    assert_eq!(promise_for("2026-11-02T22:30:00+01:00"), "2026-11-04T22:00:00+01:00");
    // Tuesday 23:10 (the on_time story) → Thursday.
    assert_eq!(promise_for("2026-11-03T23:10:00+01:00"), "2026-11-05T22:00:00+01:00");
}

#[test]
fn weekends_skip_sunday_and_holidays_are_no_delivery_days() {
    // Friday → Saturday (a delivery day); Saturday → Monday; Sunday → Monday.
    assert_eq!(promise_for("2026-11-20T15:05:00+01:00"), "2026-11-21T22:00:00+01:00");
    assert_eq!(promise_for("2026-11-21T10:00:00+01:00"), "2026-11-23T22:00:00+01:00");
    assert_eq!(promise_for("2026-11-22T10:00:00+01:00"), "2026-11-23T22:00:00+01:00");
    // Saturday after the cut-off: Monday is the first, Tuesday the one after.
    assert_eq!(promise_for("2026-11-21T23:00:00+01:00"), "2026-11-24T22:00:00+01:00");
    // Christmas Eve: 25 and 26 December are holidays in the default config, 27th a Sunday.
    assert_eq!(promise_for("2026-12-24T12:00:00+01:00"), "2026-12-28T22:00:00+01:00");
    // The UTC date differs from the local date just after midnight.
    assert_eq!(promise_for("2026-11-03T00:30:00+01:00"), "2026-11-04T22:00:00+01:00");
}

#[test]
fn dst_changes_keep_local_wall_clock_times() {
    // Spring forward (Sunday 29 March 2026): an order on Saturday 28 March after the
    // cut-off is due Tuesday 31 March at 22:00 summer time.
    assert_eq!(promise_for("2026-03-28T23:00:00+01:00"), "2026-03-31T22:00:00+02:00");
    // Placed on the Sunday itself, after the jump.
    assert_eq!(promise_for("2026-03-29T10:00:00+02:00"), "2026-03-30T22:00:00+02:00");
    // Fall back (Sunday 25 October 2026).
    assert_eq!(promise_for("2026-10-24T23:00:00+02:00"), "2026-10-27T22:00:00+01:00");
    assert_eq!(promise_for("2026-10-25T02:30:00+01:00"), "2026-10-26T22:00:00+01:00");

    // 02:00 does not exist on 29 March: the ship-by deadline moves to the first valid
    // instant after the gap; on 25 October it happens twice: the earlier one counts.
    let p = policy();
    let gap = local_at(Amsterdam, NaiveDate::from_ymd_opt(2026, 3, 29).expect("date"), NaiveTime::from_hms_opt(2, 0, 0).expect("time"));
    assert_eq!(local(gap), "2026-03-29T03:00:00+02:00");
    let fold = local_at(Amsterdam, NaiveDate::from_ymd_opt(2026, 10, 25).expect("date"), NaiveTime::from_hms_opt(2, 30, 0).expect("time"));
    assert_eq!(local(fold), "2026-10-25T02:30:00+02:00");
    let ship_by = calendar::ship_by(&p, Amsterdam, p.method("standard"), t("2026-03-29T22:00:00+02:00"));
    assert_eq!(local(ship_by), "2026-03-29T03:00:00+02:00");
}

#[test]
fn quiet_hours_hold_sms_to_the_morning() {
    let p = policy();
    let release = |s: &str| local(calendar::after_quiet_hours(&p, Amsterdam, t(s)));
    assert_eq!(release("2026-11-17T06:40:00+01:00"), "2026-11-17T08:00:00+01:00");
    assert_eq!(release("2026-11-17T21:00:00+01:00"), "2026-11-18T08:00:00+01:00");
    assert_eq!(release("2026-11-17T20:59:00+01:00"), "2026-11-17T20:59:00+01:00");
    assert_eq!(release("2026-11-17T08:00:00+01:00"), "2026-11-17T08:00:00+01:00");
    // The night the clocks go back still ends at 08:00 local.
    assert_eq!(release("2026-10-24T23:00:00+02:00"), "2026-10-25T08:00:00+01:00");
}

#[test]
fn a_slower_method_ships_earlier_and_travels_longer() {
    let p = policy();
    let economy = p.method("economy");
    let promise = calendar::computed_promise(&p, Amsterdam, economy, t("2026-11-02T14:00:00+01:00"));
    assert_eq!(local(promise), "2026-11-04T22:00:00+01:00");
    // Ship-by one delivery day before, at 18:00.
    assert_eq!(local(calendar::ship_by(&p, Amsterdam, economy, promise)), "2026-11-03T18:00:00+01:00");
    // An unknown method falls back to standard.
    assert_eq!(p.method("drone"), p.method("standard"));
}
