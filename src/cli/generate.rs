//! A synthetic but realistic event stream, for benchmarks and load tests: most orders go
//! well, some slip (carrier ETA, warehouse delay, backorder, failed delivery), and now and
//! then a carrier incident covers a region. Deterministic for a seed.

use std::io::Write;

use belofte::rng::Rng;
use chrono_tz::Europe::Amsterdam;

#[derive(Clone, Copy)]
enum Step {
    Placed,
    Picked,
    Packed,
    Shipped { eta_to: i64 },
    InTransit,
    EtaUpdated { eta_to: i64 },
    WarehouseDelayed { days: i64 },
    Backorder { days: i64 },
    OutForDelivery,
    DeliveryFailed,
    Delivered,
    Incident,
}

struct Planned {
    at: i64,
    order: u32,
    step: Step,
}

const BRANDS: [&str; 3] = ["lumen", "hofman", "pip"];
const CARRIERS: [&str; 2] = ["postnl", "dhl"];
const LOCALES: [&str; 3] = ["nl-NL", "nl-BE", "en-GB"];

/// A delivery moment moved off Sunday, and the promise of its day (22:00 local), as
/// Unix seconds: generated on-time orders keep the promise the engine would compute.
fn delivery_day(t: i64) -> (i64, i64) {
    use chrono::{Datelike, TimeZone, Weekday};
    let Some(local) = chrono::DateTime::from_timestamp(t, 0).map(|d| d.with_timezone(&Amsterdam)) else {
        return (t, t);
    };
    let (t, date) = if local.weekday() == Weekday::Sun {
        (t + 86_400, local.date_naive().succ_opt().unwrap_or(local.date_naive()))
    } else {
        (t, local.date_naive())
    };
    let promise = date
        .and_hms_opt(22, 0, 0)
        .and_then(|n| Amsterdam.from_local_datetime(&n).earliest())
        .map(|d| d.timestamp())
        .unwrap_or(t);
    (t.min(promise - 3600), promise)
}

/// Write about `events` events (one JSON object per line, in arrival order) to `out`.
pub fn write_stream(out: &mut impl Write, events: u64, delayed_percent: u32, seed: u64) -> std::io::Result<()> {
    let mut rng = Rng::new(seed);
    // Monday 2 November 2026, 08:00 in Amsterdam.
    let start: i64 = 1_793_602_800;
    let orders = (events / 7).max(1);
    // Orders arrive over the stream so that each carries its own week of history.
    let spacing = (14 * 24 * 3600 / orders as i64).max(1);
    let mut plan: Vec<Planned> = Vec::with_capacity(events as usize + 16);
    // The shop's promise per order: the on-time delivery moment plus a margin, so an order
    // that goes well is quiet and one that slips breaks its promise.
    let mut promises: Vec<i64> = Vec::with_capacity(orders as usize);
    for o in 0..orders as u32 {
        let placed = start + o as i64 * spacing + rng.below(60) as i64;
        let day = 24 * 3600;
        let mut push = |at: i64, step: Step| plan.push(Planned { at, order: o, step });
        push(placed, Step::Placed);
        let trouble = rng.below(100) < delayed_percent as u64;
        let kind = rng.below(4);
        let mut ship = placed + 3 * 3600;
        let (on_time, promise) = delivery_day(ship + day + 3 * 3600);
        promises.push(promise);
        if trouble && kind == 1 {
            push(placed + 2 * 3600, Step::WarehouseDelayed { days: 2 });
            ship += 2 * day;
        }
        if trouble && kind == 2 {
            push(placed + 2 * 3600, Step::Backorder { days: 5 });
            ship += 5 * day;
        }
        push(ship - 2 * 3600, Step::Picked);
        push(ship - 3600, Step::Packed);
        let (mut deliver, expected) = if ship == placed + 3 * 3600 { (on_time, promise) } else { delivery_day(ship + day + 3 * 3600) };
        push(ship, Step::Shipped { eta_to: expected - 3600 });
        push(ship + 10 * 3600, Step::InTransit);
        if trouble && kind == 0 {
            let (later, later_promise) = delivery_day(deliver + 2 * day);
            push(ship + 11 * 3600, Step::EtaUpdated { eta_to: later_promise - 3600 });
            deliver = later;
        }
        if trouble && kind == 3 {
            push(deliver - 3600, Step::OutForDelivery);
            push(deliver, Step::DeliveryFailed);
            deliver += day;
        }
        push(deliver - 1800, Step::OutForDelivery);
        push(deliver, Step::Delivered);
    }
    // A regional carrier incident every ~100k events.
    let incidents = (events / 100_000).max(1);
    for i in 0..incidents {
        let at = start + (i as i64 + 1) * (14 * 24 * 3600) / (incidents as i64 + 1);
        plan.push(Planned { at, order: i as u32, step: Step::Incident });
    }
    plan.sort_by_key(|p| (p.at, p.order));

    let fmt = |t: i64| -> String {
        chrono::DateTime::from_timestamp(t, 0).map(|d| d.with_timezone(&Amsterdam).to_rfc3339()).unwrap_or_default()
    };
    for (n, p) in plan.iter().enumerate() {
        let o = p.order;
        let order_id = format!("G-{o:07}");
        let tracking = format!("TRK{o:09}");
        let brand = BRANDS[(o % 3) as usize];
        let carrier = CARRIERS[(o % 2) as usize];
        let time = fmt(p.at);
        let (kind, source, subject, data) = match p.step {
            Step::Placed => (
                "order.placed",
                "/webshop",
                order_id.clone(),
                format!(
                    r#"{{"order_id":"{order_id}","brand":"{brand}","placed_at":"{time}","customer":{{"name":"Klant {o}","email":"klant{o}@example.nl","phone":"+316{:08}","locale":"{}","channels":["email","sms"]}},"shipping":{{"method":"standard","carrier":"{carrier}","country":"NL","postal_code":"{}AB"}},"warehouse":"tilburg","items":[{{"sku":"SKU-{}","name":"Artikel {}","qty":1}}],"promise":{{"deliver_by":"{}"}}}}"#,
                    o % 100_000_000,
                    if brand == "pip" { LOCALES[(o % 3) as usize] } else { "nl-NL" },
                    1000 + o % 9000,
                    o % 500,
                    o % 500,
                    fmt(promises[o as usize])
                ),
            ),
            Step::Picked => ("warehouse.picked", "/warehouse/tilburg", order_id.clone(), format!(r#"{{"order_id":"{order_id}"}}"#)),
            Step::Packed => ("warehouse.packed", "/warehouse/tilburg", order_id.clone(), format!(r#"{{"order_id":"{order_id}"}}"#)),
            Step::Shipped { eta_to } => (
                "warehouse.shipped",
                "/warehouse/tilburg",
                order_id.clone(),
                format!(
                    r#"{{"order_id":"{order_id}","carrier":"{carrier}","tracking_number":"{tracking}","eta":{{"from":"{}","to":"{}"}}}}"#,
                    fmt(eta_to - 8 * 3600),
                    fmt(eta_to)
                ),
            ),
            Step::InTransit => (
                "carrier.in_transit",
                "/carrier",
                tracking.clone(),
                format!(r#"{{"tracking_number":"{tracking}"}}"#),
            ),
            Step::EtaUpdated { eta_to } => (
                "carrier.eta_updated",
                "/carrier",
                tracking.clone(),
                format!(
                    r#"{{"tracking_number":"{tracking}","reason":"sorting_backlog","eta":{{"from":"{}","to":"{}"}}}}"#,
                    fmt(eta_to - 8 * 3600),
                    fmt(eta_to)
                ),
            ),
            Step::WarehouseDelayed { days } => (
                "warehouse.delayed",
                "/warehouse/tilburg",
                order_id.clone(),
                format!(
                    r#"{{"order_id":"{order_id}","reason":"staff_shortage","expected_ship_at":"{}"}}"#,
                    fmt(p.at + days * 86400)
                ),
            ),
            Step::Backorder { days } => (
                "warehouse.backorder",
                "/warehouse/tilburg",
                order_id.clone(),
                format!(
                    r#"{{"order_id":"{order_id}","sku":"SKU-{}","expected_restock_at":"{}"}}"#,
                    o % 500,
                    fmt(p.at + days * 86400)
                ),
            ),
            Step::OutForDelivery => (
                "carrier.out_for_delivery",
                "/carrier",
                tracking.clone(),
                format!(r#"{{"tracking_number":"{tracking}"}}"#),
            ),
            Step::DeliveryFailed => (
                "carrier.delivery_failed",
                "/carrier",
                tracking.clone(),
                format!(
                    r#"{{"tracking_number":"{tracking}","reason":"not_home","next_attempt_at":"{}","pickup_point":{{"name":"Servicepunt {}","address":"Dorpsstraat {}, Utrecht"}}}}"#,
                    fmt(p.at + 86400),
                    o % 50,
                    o % 200
                ),
            ),
            Step::Delivered => (
                "carrier.delivered",
                "/carrier",
                tracking.clone(),
                format!(r#"{{"tracking_number":"{tracking}"}}"#),
            ),
            Step::Incident => (
                "carrier.incident",
                "/carrier",
                carrier.to_string(),
                format!(
                    r#"{{"carrier":"{carrier}","reason":"weather","expected_delay_hours":24,"postal_code_prefixes":["{}"]}}"#,
                    // One region (two-digit postal area) per storm.
                    10 + o % 90
                ),
            ),
        };
        writeln!(
            out,
            r#"{{"specversion":"1.0","id":"gen-{n}","source":"{source}","type":"{kind}","time":"{time}","subject":"{subject}","datacontenttype":"application/json","data":{data}}}"#
        )?;
    }
    Ok(())
}
