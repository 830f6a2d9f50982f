//! Invariants that must hold for every stream, not only the stories: the same input gives
//! the same output, a replayed event changes nothing, no SMS in the quiet hours, nothing
//! for an order after it was cancelled, never more notices a day than the cap, and promised
//! updates without news never closer together than the cadence allows.

use belofte_core::calendar;
use belofte_core::domain::{Channel, Instant, Kind};
use belofte_core::engine::Decision;
use belofte_core::event::{decode, Event, Fact};
use belofte_core::policy::Policy;
use belofte_core::world::World;
use belofte::settings;
use chrono::{Duration, TimeZone};
use chrono_tz::Europe::Amsterdam;
use proptest::prelude::*;
use std::collections::HashMap;

fn policy() -> Policy {
    settings::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config")).expect("config").policy
}

/// One randomly chosen fact about order `o` at minute `m` after the start.
#[derive(Debug, Clone)]
struct Step {
    order: u8,
    minute: u32,
    what: u8,
    days: u8,
}

fn step() -> impl Strategy<Value = Step> {
    (0u8..3, 0u32..(12 * 24 * 60), 0u8..12, 0u8..9).prop_map(|(order, minute, what, days)| Step { order, minute, what, days })
}

fn start() -> Instant {
    Amsterdam.with_ymd_and_hms(2026, 11, 16, 9, 0, 0).single().expect("start").with_timezone(&chrono::Utc)
}

fn fmt(t: Instant) -> String {
    t.with_timezone(&Amsterdam).to_rfc3339()
}

/// Turn steps into CloudEvents: every order is placed first, then the random facts in the
/// order generated (so arrival is out of time order now and then).
fn events(steps: &[Step]) -> Vec<Event> {
    let s = start();
    let brands = ["lumen", "hofman", "pip"];
    let mut lines = Vec::new();
    for o in 0..3u8 {
        let brand = brands[o as usize];
        lines.push(format!(
            r#"{{"specversion":"1.0","id":"p-{o}","source":"/webshop","type":"order.placed","time":"{t}","data":{{"order_id":"O-{o}","brand":"{brand}","placed_at":"{t}","customer":{{"name":"Klant {o}","email":"k{o}@example.nl","phone":"+3161234567{o}","locale":"nl-NL","channels":["email","sms"]}},"shipping":{{"method":"standard","carrier":"postnl","country":"NL","postal_code":"1012AB"}},"warehouse":"tilburg","items":[{{"sku":"S","name":"Ding","qty":1}}]}}}}"#,
            t = fmt(s + Duration::minutes(o as i64))
        ));
    }
    for (n, st) in steps.iter().enumerate() {
        let t = s + Duration::minutes(st.minute as i64);
        let later = fmt(t + Duration::days(st.days as i64));
        let o = st.order;
        let (kind, data) = match st.what {
            0 => ("warehouse.shipped", format!(r#"{{"order_id":"O-{o}","carrier":"postnl","tracking_number":"T{o}","eta":{{"from":"{later}","to":"{later}"}}}}"#)),
            1 => ("warehouse.delayed", format!(r#"{{"order_id":"O-{o}","reason":"capacity","expected_ship_at":"{later}"}}"#)),
            2 => ("warehouse.backorder", format!(r#"{{"order_id":"O-{o}","sku":"S","expected_restock_at":null}}"#)),
            3 => ("carrier.eta_updated", format!(r#"{{"tracking_number":"T{o}","reason":"weather","eta":{{"from":"{later}","to":"{later}"}}}}"#)),
            4 => ("carrier.exception", format!(r#"{{"tracking_number":"T{o}","reason":"damaged"}}"#)),
            5 => ("carrier.delivery_failed", format!(r#"{{"tracking_number":"T{o}","reason":"vehicle_breakdown","next_attempt_at":"{later}"}}"#)),
            6 => ("carrier.delivered", format!(r#"{{"tracking_number":"T{o}"}}"#)),
            7 => ("order.cancelled", format!(r#"{{"order_id":"O-{o}"}}"#)),
            8 => ("carrier.incident", r#"{"carrier":"postnl","reason":"weather","expected_delay_hours":30}"#.to_string()),
            9 => ("warehouse.incident", format!(r#"{{"warehouse":"tilburg","reason":"system_outage","expected_recovery_at":"{later}"}}"#)),
            10 => ("carrier.out_for_delivery", format!(r#"{{"tracking_number":"T{o}","eta":{{"from":"{later}","to":"{later}"}}}}"#)),
            _ => ("carrier.delivery_failed", format!(r#"{{"tracking_number":"T{o}","reason":"not_home"}}"#)),
        };
        lines.push(format!(
            r#"{{"specversion":"1.0","id":"e-{n}","source":"/test","type":"{kind}","time":"{}","data":{data}}}"#,
            fmt(t)
        ));
    }
    lines.iter().map(|l| decode(l.as_bytes()).expect("generated events are valid")).collect()
}

/// The simulate loop without rendering: arrival = max(time, previous arrival).
fn run(policy: &Policy, events: &[Event]) -> (Vec<Decision>, HashMap<String, Instant>) {
    run_with(policy, events, false)
}

/// The same loop; with `daemon_memory`, the world does what the daemon's does to stay
/// small: every closed order leaves memory as soon as it can, and the seen keys are
/// rotated once halfway.
fn run_with(policy: &Policy, events: &[Event], daemon_memory: bool) -> (Vec<Decision>, HashMap<String, Instant>) {
    let mut world = World::new(policy);
    let mut out = Vec::new();
    let mut cancelled = HashMap::new();
    let mut clock = events[0].time;
    for (i, e) in events.iter().enumerate() {
        clock = clock.max(e.time);
        if daemon_memory && i == events.len() / 2 {
            world.rotate_seen();
        }
        out.extend(world.advance(clock).decisions);
        if let Fact::OrderCancelled { order_id, .. } = &e.fact {
            cancelled.entry(order_id.to_string()).or_insert(clock);
        }
        out.extend(world.ingest(e.clone(), clock).expect("accepted").1.decisions);
        if daemon_memory {
            for o in 0..3 {
                world.forget_closed(&format!("O-{o}"));
            }
        }
    }
    out.extend(world.advance(clock + Duration::days(10)).decisions);
    (out, cancelled)
}

/// `d` as JSON the way a release before the compact encoding wrote it: every absent fact
/// as an explicit `null`.
fn with_nulls(d: &Decision) -> serde_json::Value {
    fn fill(v: Option<&mut serde_json::Value>, keys: &[&str]) {
        if let Some(serde_json::Value::Object(o)) = v {
            for k in keys {
                o.entry(k.to_string()).or_insert(serde_json::Value::Null);
            }
        }
    }
    let mut v = serde_json::to_value(d).expect("json");
    fill(Some(&mut v), &["to", "reason", "next_update_at", "compensation_eur"]);
    fill(v.get_mut("promise"), &["previous", "new"]);
    let notice_keys = [
        "promise_label", "carrier", "tracking_number", "reason", "previous", "new", "next_update_at", "compensation_eur",
        "previous_compensation_eur", "next_attempt_at", "pickup_point", "delivered_at",
    ];
    fill(v.get_mut("payload").and_then(|p| p.get_mut("notice")), &notice_keys);
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The outbox keeps each customer message's decision as JSON, absent facts left out:
    /// every decision reads back as itself, and so does one an older release kept.
    #[test]
    fn a_kept_decision_reads_back_as_itself(steps in prop::collection::vec(step(), 1..40)) {
        let p = policy();
        for d in run(&p, &events(&steps)).0 {
            let json = serde_json::to_string(&d).expect("json");
            prop_assert!(!json.contains(":null"), "absent facts take no room: {}", json);
            prop_assert_eq!(&serde_json::from_str::<Decision>(&json).expect("reads back"), &d);
            let old = with_nulls(&d);
            prop_assert_eq!(&serde_json::from_value::<Decision>(old).expect("an old row reads"), &d);
        }
    }

    #[test]
    fn closed_orders_leaving_memory_change_no_message(steps in prop::collection::vec(step(), 1..60)) {
        let p = policy();
        let evs = events(&steps);
        prop_assert_eq!(run(&p, &evs).0, run_with(&p, &evs, true).0);
    }

    #[test]
    fn same_input_same_output(steps in prop::collection::vec(step(), 1..40)) {
        let p = policy();
        let evs = events(&steps);
        prop_assert_eq!(run(&p, &evs).0, run(&p, &evs).0);
    }

    #[test]
    fn a_replayed_event_changes_nothing(steps in prop::collection::vec(step(), 1..40), pick in any::<prop::sample::Index>(), later in 0usize..40) {
        let p = policy();
        let evs = events(&steps);
        let mut replayed = evs.clone();
        let i = pick.index(evs.len());
        let at = (i + 1 + later).min(replayed.len());
        replayed.insert(at, evs[i].clone());
        prop_assert_eq!(run(&p, &evs).0, run(&p, &replayed).0);
    }

    #[test]
    fn customers_are_spared_at_night_after_cancelling_and_beyond_the_cap(steps in prop::collection::vec(step(), 1..60)) {
        let p = policy();
        let (out, cancelled) = run(&p, &events(&steps));
        let mut per_day: HashMap<(String, chrono::NaiveDate), std::collections::BTreeSet<(Kind, String)>> = HashMap::new();
        let mut last = None;
        for d in &out {
            prop_assert!(last.is_none_or(|l| l <= d.send_at), "out of send_at order");
            last = Some(d.send_at);
            if d.channel == Channel::Sms {
                prop_assert!(!calendar::in_quiet_hours(&p, Amsterdam, d.send_at), "SMS at night: {:?}", d);
            }
            if let Some(c) = cancelled.get(&d.order_id) {
                prop_assert!(d.send_at <= *c, "message after cancellation: {:?}", d);
            }
            if matches!(d.channel, Channel::Email | Channel::Sms) && d.kind != Kind::DeliveryFailed {
                let day = calendar::local_date(Amsterdam, d.send_at);
                per_day.entry((d.order_id.clone(), day)).or_default().insert((d.kind, d.cause.clone()));
            }
        }
        for ((order, day), notices) in per_day {
            prop_assert!(notices.len() as u32 <= p.max_notices_per_day, "{} got {:?} on {}", order, notices, day);
        }
    }

    #[test]
    fn updates_without_news_come_no_closer_together_than_the_cadence(steps in prop::collection::vec(step(), 1..60)) {
        let p = policy();
        let (out, _) = run(&p, &events(&steps));
        // Per order, its emails in order: a streak of updates without news follows the
        // message that gave no date; the i-th of them comes at least step(i-1) days after
        // the one before.
        let mut last: HashMap<&str, (chrono::NaiveDate, u32)> = HashMap::new();
        for d in out.iter().filter(|d| d.channel == Channel::Email) {
            let day = calendar::local_date(Amsterdam, d.send_at);
            let no_news = d.kind == Kind::Update && d.promise.new.is_none();
            let streak = match last.get(d.order_id.as_str()) {
                Some((previous, streak)) if no_news => {
                    let step = p.update_step_days(*streak) as i64;
                    prop_assert!((day - *previous).num_days() >= step, "update {} days after the previous, the cadence says {}: {:?}", (day - *previous).num_days(), step, d);
                    streak + 1
                }
                _ => 0,
            };
            last.insert(d.order_id.as_str(), (day, streak));
        }
    }
}
