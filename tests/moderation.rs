//! Moderation (*met mate*): promised updates move apart when there is no news, a person is
//! asked once after four of them, news starts the count again, and an event from a producer
//! whose clock runs ahead is refused instead of freezing the order.

use std::path::PathBuf;

use belofte::render::Templates;
use belofte::settings;
use belofte::simulate::Simulation;
use belofte_core::event::decode;
use belofte_core::world::World;
use chrono::{DateTime, Duration, NaiveDate, TimeZone};
use chrono_tz::Europe::Amsterdam;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn placed(order: &str, at: &str) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"p-{order}","source":"/webshop","type":"order.placed","time":"{at}","data":{{"order_id":"{order}","brand":"lumen","placed_at":"{at}","customer":{{"name":"Sanne Bakker","email":"sanne@example.nl","phone":"+31620244969","locale":"nl-NL","channels":["email","sms"]}},"shipping":{{"method":"standard","carrier":"postnl","country":"NL","postal_code":"3811AB"}},"warehouse":"tilburg","items":[{{"sku":"TAB","name":"Lumen Tab 10","qty":1}}]}}}}"#
    )
}

fn backorder(order: &str, id: &str, at: &str, restock: Option<&str>) -> String {
    let restock = restock.map_or("null".to_string(), |t| format!("\"{t}\""));
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"/warehouse/tilburg","type":"warehouse.backorder","time":"{at}","data":{{"order_id":"{order}","sku":"TAB","expected_restock_at":{restock}}}}}"#
    )
}

/// What `simulate` prints for these events, run on to `until`.
fn simulate(lines: &[String], until: &str) -> Vec<Value> {
    let s = settings::load(&root().join("config")).expect("config");
    let t = Templates::load(&root().join("templates")).expect("templates");
    let until = DateTime::parse_from_rfc3339(until).expect("until").with_timezone(&chrono::Utc);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    Simulation::new(&s.policy, &t).run(lines.join("\n").as_bytes(), Some(until), &mut out, &mut err, "test").expect("simulate");
    String::from_utf8(out).expect("utf8").lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
}

fn day_of(line: &Value) -> NaiveDate {
    DateTime::parse_from_rfc3339(line["send_at"].as_str().expect("send_at")).expect("time").date_naive()
}

fn updates(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l["kind"] == "update" && l["channel"] == "email").collect()
}

fn escalations<'a>(lines: &'a [Value], why: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["kind"] == "escalation" && l["why"] == why).collect()
}

#[test]
fn a_backorder_without_a_date_for_sixty_days_gets_ten_updates_further_apart_and_one_person() {
    let lines = vec![
        placed("B-1", "2026-11-02T10:00:00+01:00"),
        backorder("B-1", "wh-1", "2026-11-02T11:00:00+01:00", None),
    ];
    let out = simulate(&lines, "2027-01-01T11:00:00+01:00");
    let start = NaiveDate::from_ymd_opt(2026, 11, 2).expect("date");
    let days: Vec<i64> = updates(&out).iter().map(|l| (day_of(l) - start).num_days()).collect();
    assert_eq!(days, vec![1, 3, 7, 14, 21, 28, 35, 42, 49, 56], "updates 1, 2, 4, then 7 days apart, not daily");
    let people = escalations(&out, "no_news");
    assert_eq!(people.len(), 1, "exactly one person is asked: {people:?}");
    assert_eq!(day_of(people[0]), start + Duration::days(14), "with the fourth update without news");
    // Each update says honestly when the next one comes: a date, not "morgen".
    let fourth = updates(&out)[3]["text"].as_str().expect("text");
    assert!(fourth.contains("maandag 23 november"), "the fourth update names the next one: {fourth}");
    assert!(!fourth.contains("morgen"), "{fourth}");
}

#[test]
fn news_after_the_third_update_starts_the_count_again() {
    let lines = vec![
        placed("B-2", "2026-11-02T10:00:00+01:00"),
        backorder("B-2", "wh-1", "2026-11-02T11:00:00+01:00", None),
        // After the updates of days 1, 3 and 7: a restock date is news, and it is told.
        backorder("B-2", "wh-2", "2026-11-10T09:00:00+01:00", Some("2026-11-12T09:00:00+01:00")),
        // The date falls through again: no date, the count starts from the beginning.
        backorder("B-2", "wh-3", "2026-11-11T09:00:00+01:00", None),
    ];
    let out = simulate(&lines, "2026-12-05T11:00:00+01:00");
    let start = NaiveDate::from_ymd_opt(2026, 11, 2).expect("date");
    let no_news: Vec<i64> = updates(&out)
        .iter()
        .filter(|l| l["promise"]["new"].is_null())
        .map(|l| (day_of(l) - start).num_days())
        .collect();
    // 1, 3, 7; then after the news of day 8 and the new backorder of day 9: 10, 12, 16, 23, 30.
    assert_eq!(no_news, vec![1, 3, 7, 10, 12, 16, 23, 30]);
    let people = escalations(&out, "no_news");
    assert_eq!(people.len(), 1, "{people:?}");
    assert_eq!(day_of(people[0]), start + Duration::days(23), "the fourth update after the news, not the fourth overall");
}

#[test]
fn an_event_from_a_clock_ten_years_ahead_is_refused_and_the_order_keeps_listening() {
    let s = settings::load(&root().join("config")).expect("config");
    let mut world = World::new(&s.policy);
    let now = Amsterdam.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).single().expect("now").with_timezone(&chrono::Utc);
    let ev = |l: String| decode(l.as_bytes()).expect("valid event");
    world.ingest(ev(placed("B-3", "2026-11-02T10:00:00+01:00")), now).expect("placed");
    let future = ev(backorder("B-3", "wh-future", "2036-11-02T11:00:00+01:00", None));
    let refused = world.ingest(future, now).expect_err("ten years ahead is refused");
    let reason = refused.to_string();
    assert!(reason.contains("ahead of its arrival") && reason.contains("max_future_skew"), "{reason}");
    // The next real fact about the order is applied as usual.
    let (_, fx) = world.ingest(ev(backorder("B-3", "wh-real", "2026-11-02T11:55:00+01:00", None)), now).expect("applied");
    assert!(fx.decisions.is_empty(), "coalescing: decided after the window");
    let fx = world.advance(now + Duration::minutes(3));
    assert!(fx.decisions.iter().any(|d| d.kind.as_str() == "backorder"), "the real backorder is told: {:?}", fx.decisions);
}

#[test]
fn an_event_a_little_ahead_is_within_the_skew() {
    let s = settings::load(&root().join("config")).expect("config");
    let mut world = World::new(&s.policy);
    let now = Amsterdam.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).single().expect("now").with_timezone(&chrono::Utc);
    let ev = |l: String| decode(l.as_bytes()).expect("valid event");
    world.ingest(ev(placed("B-4", "2026-11-02T12:59:00+01:00")), now).expect("59 minutes ahead is accepted");
    assert!(world.order("B-4").is_some());
}

#[test]
fn the_trace_says_why_no_update_went_out_in_between() {
    let s = settings::load(&root().join("config")).expect("config");
    let t = Templates::load(&root().join("templates")).expect("templates");
    let lines = [placed("B-5", "2026-11-02T10:00:00+01:00"), backorder("B-5", "wh-1", "2026-11-02T11:00:00+01:00", None)];
    let until = DateTime::parse_from_rfc3339("2026-11-20T00:00:00+01:00").expect("until").with_timezone(&chrono::Utc);
    let (mut out, mut err, mut trace) = (Vec::new(), Vec::new(), Vec::new());
    Simulation::new(&s.policy, &t).traced(&mut trace).run(lines.join("\n").as_bytes(), Some(until), &mut out, &mut err, "t").expect("simulate");
    let steps: Vec<Value> = String::from_utf8(trace).expect("utf8").lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let until: Vec<&str> = steps.iter().filter(|s| s["reason"] == "cadence").filter_map(|s| s["until"].as_str()).collect();
    assert_eq!(
        until,
        vec![
            "2026-11-03T12:00:00+01:00",
            "2026-11-05T12:00:00+01:00",
            "2026-11-09T12:00:00+01:00",
            "2026-11-16T12:00:00+01:00",
            "2026-11-23T12:00:00+01:00"
        ]
    );
}
