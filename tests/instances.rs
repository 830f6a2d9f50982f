//! Several instances on one PostgreSQL database (issue 11): three daemons in one consumer
//! group share the orders of a six-partition broker while the stream runs, are scaled
//! 1 → 3 → 2, and one of them crashes. The customers must get exactly what `simulate`
//! decides on the same stream: nothing lost, no SMS twice, an email repeated only under its
//! own Message-ID.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use belofte::daemon::{Clock, DaemonConfig, Overrides, Running};
use belofte::kafka::mock::EmbeddedBroker;
use belofte::render::line::Line;
use belofte_core::domain::Instant;
use belofte_core::world::event_key;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use support::{config_at, eventually_async, peers, route, seen_by_customer, settings, simulated, templates, Peers};
use testkit::smtp::SmtpScript;

const PARTITIONS: i32 = 6;
const ORDERS: usize = 1200;
/// The longest a start, a crash or a clean stop of one instance may take.
const SCALING: Duration = Duration::from_secs(30);

const BRANDS: [&str; 3] = ["lumen", "hofman", "pip"];
const LOCALES: [&str; 3] = ["nl-NL", "en-GB", "nl-BE"];
const CARRIERS: [&str; 2] = ["postnl", "dhl"];

/// One moment of the stream: every event of it carries that time.
struct Moment {
    at: Instant,
    lines: Vec<String>,
}

/// Monday 16 November 2026 in Amsterdam (UTC+1), `day` days and `hour:minute` later.
fn at(day: i64, hour: u32, minute: u32) -> Instant {
    Utc.with_ymd_and_hms(2026, 11, 16, hour, minute, 0).single().expect("a real moment") - chrono::Duration::hours(1) + chrono::Duration::days(day)
}

fn rfc(t: Instant) -> String {
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
fn week(orders: usize) -> Vec<Moment> {
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

/// The store's view, read directly: which of the stream's events have been applied where.
struct Applied {
    pool: sqlx::PgPool,
}

impl Applied {
    /// Rows of `seen_events` for these event keys in real partitions (a broadcast is seen in
    /// each), plus carrier events kept for a tracking number no order has shipped with.
    async fn count(&self, keys: &[Vec<u8>]) -> (i64, i64) {
        let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM seen_events WHERE event_key = ANY($1) AND part >= 0")
            .bind(keys)
            .fetch_one(&self.pool)
            .await
            .unwrap_or(-1);
        let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM unrouted WHERE event_key = ANY($1)").bind(keys).fetch_one(&self.pool).await.unwrap_or(-1);
        (seen, kept)
    }
}

fn key_of(line: &str) -> Vec<u8> {
    let v: Value = serde_json::from_str(line).expect("json");
    event_key(v["source"].as_str().expect("source"), v["id"].as_str().expect("id")).to_be_bytes().to_vec()
}

fn is_broadcast(line: &str) -> bool {
    line.contains("\"type\":\"carrier.incident\"") || line.contains("\"type\":\"warehouse.incident\"")
}

/// Every event produced so far has done what it does at its own moment: applied by the
/// owner of its order (an incident by the owner of every partition), or kept for its
/// tracking number until the parcel ships. Only then may the clock move on, as `simulate`'s
/// does: the next moment's timers must not run before this moment's events.
async fn settled(applied: &Applied, produced: &[String], shipped: &BTreeSet<String>) {
    let keys: Vec<Vec<u8>> = produced.iter().map(|l| key_of(l)).collect();
    let waiting = produced
        .iter()
        .filter(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            v["data"]["tracking_number"].as_str().is_some_and(|n| v["type"] != "warehouse.shipped" && !shipped.contains(n))
        })
        .count() as i64;
    let broadcasts = produced.iter().filter(|l| is_broadcast(l)).count() as i64;
    let want_seen = produced.len() as i64 - waiting - broadcasts + broadcasts * i64::from(PARTITIONS);
    let start = std::time::Instant::now();
    loop {
        let last = applied.count(&keys).await;
        if last == (want_seen, waiting) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(40), "events applied (seen rows, kept carrier events): {last:?}, want {:?}", (want_seen, waiting));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn instance(broker: &EmbeddedBroker, url: &str, peers: &Peers, name: &str) -> DaemonConfig {
    let mut cfg = config_at(broker, url, peers, "instances");
    cfg.kafka.group_instance_id = name.into();
    cfg
}

async fn start(cfg: DaemonConfig, clock: &Clock) -> Running {
    Running::start(settings(), templates(), cfg, Overrides { clock: Some(clock.clone()), ..Default::default() })
        .await
        .expect("daemon starts")
}

/// A start, crash or stop of one instance, bounded: one that hangs names itself.
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(SCALING, f).await.unwrap_or_else(|_| panic!("{what} took longer than {SCALING:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_scaled_and_crashed_mid_stream_deliver_exactly_what_simulate_decides() {
    let broker = support::broker(PARTITIONS);
    let db = testkit::pg::TestDb::create().await;
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let moments = week(ORDERS);
    let lines: Vec<String> = moments.iter().flat_map(|m| m.lines.iter().cloned()).collect();
    let until = moments.last().expect("a moment").at + chrono::Duration::days(3);
    let expected = simulated(&lines, until);
    let customer: Vec<&Line> = expected.iter().filter(|l| l.channel != "event").collect();
    let want_email = expected.iter().filter(|l| l.channel == "email").count();
    let want_sms = expected.iter().filter(|l| l.channel == "sms").count();
    let want_events = expected.iter().filter(|l| l.channel == "event").count();
    assert!(want_email >= 100 && want_sms >= 50 && want_events >= 10, "the week decides enough to compare: {want_email} {want_sms} {want_events}");
    for incident in ["storm-1", "outage-1"] {
        assert!(expected.iter().any(|l| l.cause == incident), "{incident} decides messages");
    }

    let clock = Clock::manual(moments[0].at);
    let applied = Applied { pool: sqlx::PgPool::connect(&db.url).await.expect("test connection") };
    let mut running: BTreeMap<&str, Running> = BTreeMap::new();
    running.insert("a", start(instance(&broker, &db.url, &peers, "a"), &clock).await);
    let mut produced: Vec<String> = Vec::new();
    let mut shipped: BTreeSet<String> = BTreeSet::new();
    for (step, m) in moments.iter().enumerate() {
        clock.set(m.at);
        for line in &m.lines {
            let (topic, key) = route(line);
            broker.produce(topic, key.as_deref(), line.as_bytes()).expect("produce");
            let v: Value = serde_json::from_str(line).expect("json");
            if v["type"] == "warehouse.shipped" {
                shipped.insert(v["data"]["tracking_number"].as_str().expect("number").to_string());
            }
        }
        produced.extend(m.lines.iter().cloned());
        // Scaling while the moment's events are being consumed: 1 → 3, a crash and its
        // replacement, then one stopped cleanly: 2 remain.
        match step {
            1 => {
                for name in ["b", "c"] {
                    let r = bounded("a start", start(instance(&broker, &db.url, &peers, name), &clock)).await;
                    running.insert(name, r);
                }
            }
            4 => {
                let crashed = running.remove("b").expect("b runs");
                bounded("the crash of b", crashed.abort()).await;
                let r = bounded("a start", start(instance(&broker, &db.url, &peers, "d"), &clock)).await;
                running.insert("d", r);
            }
            6 => {
                let stopped = running.remove("a").expect("a runs");
                bounded("the shutdown of a", stopped.shutdown()).await.expect("clean shutdown");
            }
            _ => {}
        }
        settled(&applied, &produced, &shipped).await;
    }
    clock.set(until);

    let store = running.values().next().expect("an instance runs").store.clone();
    let want_rows = expected.len();
    eventually_async("every outbox row sent", Duration::from_secs(40), || {
        let store = store.clone();
        async move { store.outbox().await.map(|rows| rows.len() >= want_rows && rows.iter().all(|r| r.status == "sent")).unwrap_or(false) }
    })
    .await;

    // The same words, at the same moments, to the same people as simulate: none lost, none
    // added by a replay, a forward or a broadcast copy.
    let rows = store.outbox().await.expect("outbox");
    let mut got: Vec<String> =
        rows.iter().filter(|r| r.channel != "event").map(|r| seen_by_customer(&serde_json::from_str::<Line>(&r.line).expect("line"))).collect();
    let mut want: Vec<String> = customer.iter().map(|l| seen_by_customer(l)).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let mut got_actions: Vec<(String, String)> = rows.iter().filter(|r| r.channel == "event").map(|r| (r.order_id.clone(), r.kind.clone())).collect();
    let mut want_actions: Vec<(String, String)> = expected.iter().filter(|l| l.channel == "event").map(|l| (l.order_id.clone(), l.kind.clone())).collect();
    got_actions.sort();
    want_actions.sort();
    assert_eq!(got_actions, want_actions);

    // Every email arrived, each notification under one Message-ID; only sends in flight at
    // the crash (at most the SMTP pool's 4 connections) came twice.
    let mails = peers.smtp.accepted();
    let mut by_key: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &mails {
        by_key.entry(m.header("X-Belofte-Key").expect("key")).or_default().insert(m.header("Message-ID").expect("id"));
    }
    let email_keys: BTreeSet<String> = rows.iter().filter(|r| r.channel == "email").map(|r| r.notification_key.clone()).collect();
    assert_eq!(by_key.keys().cloned().collect::<BTreeSet<_>>(), email_keys, "every email, none lost");
    assert!(by_key.values().all(|ids| ids.len() == 1), "one Message-ID per notification");
    assert!(mails.len() <= want_email + 4, "only emails in flight at the crash are repeated: {} for {want_email}", mails.len());

    // Twilio was asked for each SMS exactly once.
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

    for (_, r) in running {
        bounded("a shutdown", r.shutdown()).await.expect("clean shutdown");
    }
    applied.pool.close().await;
}
