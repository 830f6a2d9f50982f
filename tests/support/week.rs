//! A deterministic week of orders, shared by the several-instance tests: the stream, how to
//! wait until the daemons have applied what was produced, and the comparison of what the
//! customers received with what `simulate` decides.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use belofte::kafka::mock::EmbeddedBroker;
use belofte::render::line::Line;
use belofte::store::OutboxView;
use belofte_core::domain::Instant;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use super::Peers;

const BRANDS: [&str; 3] = ["lumen", "hofman", "pip"];
const LOCALES: [&str; 3] = ["nl-NL", "en-GB", "nl-BE"];
const CARRIERS: [&str; 2] = ["postnl", "dhl"];

/// One moment of the stream: every event of it carries that time.
pub struct Moment {
    pub at: Instant,
    pub lines: Vec<String>,
}

/// Monday 16 November 2026, 09:00 in Amsterdam (UTC+1): the week of the in-process test.
pub fn monday_nine() -> Instant {
    Utc.with_ymd_and_hms(2026, 11, 16, 8, 0, 0).single().expect("a real moment")
}

/// The moment `day` days after the week's first morning at `hour:minute`, the week's first
/// morning being 09:00 at `origin`.
fn at_from(origin: Instant, day: i64, hour: u32, minute: u32) -> Instant {
    origin + chrono::Duration::days(day) + chrono::Duration::hours(i64::from(hour) - 9) + chrono::Duration::minutes(i64::from(minute))
}

pub fn rfc(t: Instant) -> String {
    t.with_timezone(&chrono::FixedOffset::east_opt(3600).expect("offset")).to_rfc3339()
}

fn cloudevent(id: String, source: &str, kind: &str, t: Instant, data: Value) -> String {
    json!({"specversion": "1.0", "id": id, "source": source, "type": kind, "time": rfc(t), "datacontenttype": "application/json", "data": data}).to_string()
}

struct Order {
    id: String,
    carrier: &'static str,
    tracking: String,
}

fn order(i: usize) -> Order {
    let carrier = CARRIERS[i % 2];
    Order { id: format!("M-{i:04}"), carrier, tracking: format!("{}{i:06}", carrier.to_uppercase()) }
}

/// A deterministic week of `orders` orders (no randomness: each order's story follows from
/// its number). Most arrive on time; some are delayed at the warehouse, some ship late, a
/// carrier storm covers postal codes 1… and 2…, the warehouse has an outage, some
/// deliveries fail, a few parcels never arrive. A sixth of the parcels are scanned by the
/// carrier (keyed by tracking number) before their `warehouse.shipped`, another sixth
/// report an exception before it.
pub fn week(orders: usize, origin: Instant) -> Vec<Moment> {
    let at = |day, hour, minute| at_from(origin, day, hour, minute);
    let wh = "/warehouse/tilburg";
    let shipped = |o: &Order, i: usize, t: Instant, eta_day: i64| {
        cloudevent(
            format!("{}-shipped", o.id),
            wh,
            "warehouse.shipped",
            t,
            json!({"order_id": o.id, "carrier": o.carrier, "tracking_number": o.tracking,
                   "eta": {"from": rfc(at(eta_day, 9, 0)), "to": rfc(at(eta_day, 18, (i % 3) as u32))}}),
        )
    };
    let carrier = |o: &Order, what: &str, kind: &str, t: Instant, mut data: Value| {
        data["tracking_number"] = json!(o.tracking);
        cloudevent(format!("{}-{what}", o.tracking), &format!("/carrier/{}", o.carrier), kind, t, data)
    };
    // What every order does at moment `t`.
    let moment = |t: Instant, f: &dyn Fn(usize, &Order, Instant) -> Vec<String>| Moment { at: t, lines: (0..orders).flat_map(|i| f(i, &order(i), t)).collect() };
    let mut moments = Vec::new();
    moments.push(moment(at(0, 9, 0), &|i, o, t| {
        let channels = if i % 5 == 4 { json!(["email"]) } else { json!(["email", "sms"]) };
        vec![cloudevent(
            format!("{}-placed", o.id),
            "/webshop",
            "order.placed",
            t,
            json!({"order_id": o.id, "brand": BRANDS[i % 3], "placed_at": rfc(t),
                   "customer": {"name": format!("Klant {i}"), "email": format!("m{i}@example.nl"), "phone": format!("+316{:08}", 10_000 + i),
                                "locale": LOCALES[(i / 3) % 3], "channels": channels},
                   "shipping": {"method": "standard", "carrier": o.carrier, "country": "NL", "postal_code": format!("{}{:03}AB", 1 + i % 9, i % 1000)},
                   "warehouse": "tilburg", "items": [{"sku": "SKU-1", "name": "Ding", "qty": 1}],
                   "promise": {"deliver_by": rfc(at(1, 22, 0))}}),
        )]
    }));
    moments.push(moment(at(0, 11, 0), &|i, o, t| {
        let mut v = vec![cloudevent(format!("{}-picked", o.id), wh, "warehouse.picked", t, json!({"order_id": o.id}))];
        if i % 6 == 3 {
            v.push(cloudevent(
                format!("{}-delayed", o.id),
                wh,
                "warehouse.delayed",
                t,
                json!({"order_id": o.id, "reason": "capacity", "expected_ship_at": rfc(at(1, 15, 0))}),
            ));
        }
        v
    }));
    // The carrier scans parcels before the warehouse's shipped event reaches Kafka.
    moments.push(moment(at(0, 13, 0), &|i, o, t| match i % 6 {
        0 => vec![carrier(o, "transit", "carrier.in_transit", t, json!({"eta": {"from": rfc(at(2, 10, 0)), "to": rfc(at(2, 14, 0))}}))],
        5 => vec![carrier(o, "exception", "carrier.exception", t, json!({"reason": "sorting_backlog"}))],
        _ => vec![],
    }));
    moments.push(moment(at(0, 17, 0), &|i, o, t| if i % 6 == 3 { vec![] } else { vec![shipped(o, i, t, if i % 5 == 2 { 2 } else { 1 })] }));
    moments.push(Moment {
        at: at(0, 20, 0),
        lines: vec![cloudevent(
            "storm-1".into(),
            "/carrier/postnl",
            "carrier.incident",
            at(0, 20, 0),
            json!({"carrier": "postnl", "reason": "weather", "expected_delay_hours": 24, "postal_code_prefixes": ["1", "2"]}),
        )],
    });
    moments.push(Moment {
        at: at(1, 7, 0),
        lines: vec![cloudevent(
            "outage-1".into(),
            wh,
            "warehouse.incident",
            at(1, 7, 0),
            json!({"warehouse": "tilburg", "reason": "system_outage", "expected_recovery_at": rfc(at(2, 20, 0))}),
        )],
    });
    moments.push(moment(at(1, 8, 30), &|i, o, t| match i % 6 {
        3 => vec![shipped(o, i, t, 2)],
        _ if i % 2 == 0 && i % 5 != 2 => vec![carrier(o, "out", "carrier.out_for_delivery", t, json!({}))],
        _ => vec![],
    }));
    moments.push(moment(at(1, 15, 0), &|i, o, t| {
        if i % 6 == 3 || i % 5 == 2 {
            vec![]
        } else if i % 4 == 0 {
            vec![carrier(o, "delivered", "carrier.delivered", t, json!({}))]
        } else if i % 8 == 1 {
            vec![carrier(o, "failed", "carrier.delivery_failed", t, json!({"reason": "not_home", "next_attempt_at": rfc(at(2, 10, 0))}))]
        } else {
            vec![]
        }
    }));
    moments.push(moment(at(2, 16, 0), &|i, o, t| {
        let delivered_before = i % 6 != 3 && i % 5 != 2 && i % 4 == 0;
        if delivered_before || i % 13 == 7 {
            vec![]
        } else {
            vec![carrier(o, "delivered", "carrier.delivered", t, json!({}))]
        }
    }));
    moments
}

/// The store's view, read directly: how many of the stream's events have been applied. The
/// database is the test's own, so every row is the stream's.
pub enum Applied {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Applied {
    pub async fn open(url: &str) -> Applied {
        if url.starts_with("postgres") {
            Applied::Postgres(sqlx::PgPool::connect(url).await.expect("test connection"))
        } else {
            Applied::Sqlite(sqlx::SqlitePool::connect(url).await.expect("test connection"))
        }
    }

    /// Seen event ids stored for real partitions (a broadcast is seen in each; 16 bytes an
    /// id in `seen_batches`), and carrier events kept for a tracking number no order has
    /// shipped with yet.
    async fn count(&self) -> (i64, i64) {
        const SEEN: &str = "SELECT CAST(coalesce(sum(length(keys)), 0) / 16 AS BIGINT) FROM seen_batches WHERE part >= 0";
        const KEPT: &str = "SELECT count(*) FROM unrouted";
        let one = |r: Result<i64, sqlx::Error>| r.unwrap_or(-1);
        match self {
            Applied::Postgres(p) => (one(sqlx::query_scalar(SEEN).fetch_one(p).await), one(sqlx::query_scalar(KEPT).fetch_one(p).await)),
            Applied::Sqlite(p) => (one(sqlx::query_scalar(SEEN).fetch_one(p).await), one(sqlx::query_scalar(KEPT).fetch_one(p).await)),
        }
    }

    pub async fn close(self) {
        match self {
            Applied::Postgres(p) => p.close().await,
            Applied::Sqlite(p) => p.close().await,
        }
    }
}

pub fn is_broadcast(line: &str) -> bool {
    line.contains("\"type\":\"carrier.incident\"") || line.contains("\"type\":\"warehouse.incident\"")
}

/// Every event produced so far has done what it does at its own moment: applied by the
/// owner of its order (an incident by the owner of every one of the `partitions`), or kept
/// for its tracking number until the parcel ships. Only then may the stream move on, as
/// `simulate`'s does: the next moment must not overtake this one's events.
pub async fn settled(applied: &Applied, produced: &[String], partitions: i32, within: Duration) {
    let mut shipped: BTreeSet<&str> = BTreeSet::new();
    let events: Vec<Value> = produced.iter().map(|l| serde_json::from_str(l).expect("json")).collect();
    for v in &events {
        if v["type"] == "warehouse.shipped" {
            shipped.insert(v["data"]["tracking_number"].as_str().expect("number"));
        }
    }
    let waiting =
        events.iter().filter(|v| v["data"]["tracking_number"].as_str().is_some_and(|n| v["type"] != "warehouse.shipped" && !shipped.contains(n))).count() as i64;
    let broadcasts = produced.iter().filter(|l| is_broadcast(l)).count() as i64;
    let want_seen = produced.len() as i64 - waiting - broadcasts + broadcasts * i64::from(partitions);
    let start = std::time::Instant::now();
    loop {
        let last = applied.count().await;
        if last == (want_seen, waiting) {
            return;
        }
        assert!(start.elapsed() < within, "events applied (seen rows, kept carrier events): {last:?}, want {:?}", (want_seen, waiting));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the customers and the actions topic received equals what `simulate` decided
/// (`expected`), compared by `seen`: none lost, none added by a replay, a forward or a
/// broadcast copy. Every email arrived under one Message-ID per notification, and at most
/// `repeats` of them twice (the sends in flight at a crash: SMTP cannot be asked what
/// arrived); Twilio was asked for every SMS exactly once.
pub fn assert_delivered_as_simulated(rows: &[OutboxView], expected: &[Line], peers: &Peers, broker: &EmbeddedBroker, seen: fn(&Line) -> String, repeats: usize) {
    let want_email = expected.iter().filter(|l| l.channel == "email").count();
    let want_events = expected.iter().filter(|l| l.channel == "event").count();
    let customer: Vec<&Line> = expected.iter().filter(|l| l.channel != "event").collect();
    let mut got: Vec<String> = rows.iter().filter(|r| r.channel != "event").map(|r| seen(&serde_json::from_str::<Line>(&r.line).expect("line"))).collect();
    let mut want: Vec<String> = customer.iter().map(|l| seen(l)).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "the customers' messages are simulate's");
    let mut got_actions: Vec<(String, String)> = rows.iter().filter(|r| r.channel == "event").map(|r| (r.order_id.clone(), r.kind.clone())).collect();
    let mut want_actions: Vec<(String, String)> = expected.iter().filter(|l| l.channel == "event").map(|l| (l.order_id.clone(), l.kind.clone())).collect();
    got_actions.sort();
    want_actions.sort();
    assert_eq!(got_actions, want_actions, "the actions are simulate's");

    let mails = peers.smtp.accepted();
    let mut by_key: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &mails {
        by_key.entry(m.header("X-Belofte-Key").expect("key")).or_default().insert(m.header("Message-ID").expect("id"));
    }
    let email_keys: BTreeSet<String> = rows.iter().filter(|r| r.channel == "email").map(|r| r.notification_key.clone()).collect();
    assert_eq!(by_key.keys().cloned().collect::<BTreeSet<_>>(), email_keys, "every email, none lost");
    assert!(by_key.values().all(|ids| ids.len() == 1), "one Message-ID per notification");
    assert!(mails.len() <= want_email + repeats, "only emails in flight at a crash are repeated: {} for {want_email}", mails.len());

    let mut posted: Vec<(String, String)> =
        peers.twilio.posts().iter().map(|p| (p.field("To").unwrap_or("").to_string(), p.field("Body").unwrap_or("").to_string())).collect();
    let mut want_posted: Vec<(String, String)> =
        customer.iter().filter(|l| l.channel == "sms").map(|l| (l.to.clone().unwrap_or_default(), l.text.clone().unwrap_or_default())).collect();
    posted.sort();
    want_posted.sort();
    assert_eq!(posted, want_posted, "every SMS once: none lost, none twice");

    // Escalations and vouchers reached the actions topic, each under its own id.
    let actions = broker.consume_all("belofte.actions", Duration::from_secs(10));
    let ids: BTreeSet<String> =
        actions.iter().map(|(_, payload, _)| serde_json::from_slice::<Value>(payload).expect("cloudevent")["id"].as_str().unwrap_or("").to_string()).collect();
    let event_keys: BTreeSet<String> = rows.iter().filter(|r| r.channel == "event").map(|r| r.notification_key.clone()).collect();
    assert_eq!(ids, event_keys);
    assert_eq!(event_keys.len(), want_events);
}
