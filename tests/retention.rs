//! Retention: a closed order leaves memory when it closes and the database
//! `retention_days` later; a late event about it meanwhile is ignored, not parked or
//! dead-lettered; open orders are never touched; a restart loads only the open ones.

mod backends;
mod support;

use std::time::Duration;

use belofte::daemon::{Clock, Overrides, Running};
use belofte::kafka::mock::EmbeddedBroker;
use support::{config_at, eventually, eventually_async, peers, route, settings, templates};
use testkit::smtp::SmtpScript;

on_both_backends!(a_cancelled_order_leaves_memory_at_once_and_the_database_after_the_retention_days);

fn event(id: &str, kind: &str, source: &str, at: chrono::DateTime<chrono::Utc>, data: &str) -> String {
    format!(r#"{{"specversion":"1.0","id":"{id}","source":"{source}","type":"{kind}","time":"{}","data":{data}}}"#, at.to_rfc3339())
}

fn placed(id: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    let data = format!(
        r#"{{"order_id":"{id}","brand":"lumen","placed_at":"{t}","customer":{{"name":"Test Klant","email":"{id}@example.nl","locale":"nl-NL","channels":["email"]}},"shipping":{{"method":"standard","carrier":"postnl","country":"NL","postal_code":"1011AA"}},"warehouse":"tilburg","items":[{{"sku":"S","name":"Ding","qty":1}}],"promise":{{"deliver_by":"{by}"}}}}"#,
        t = at.to_rfc3339(),
        by = (at + chrono::Duration::days(2)).to_rfc3339()
    );
    event(&format!("{id}-p"), "order.placed", "/webshop", at, &data)
}

fn delayed(id: &str, n: u32, at: chrono::DateTime<chrono::Utc>) -> String {
    let data = format!(r#"{{"order_id":"{id}","reason":"capacity","expected_ship_at":"{}"}}"#, (at + chrono::Duration::days(6)).to_rfc3339());
    event(&format!("{id}-d{n}"), "warehouse.delayed", "/warehouse/tilburg", at, &data)
}

fn cancelled(id: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    event(&format!("{id}-c"), "order.cancelled", "/webshop", at, &format!(r#"{{"order_id":"{id}"}}"#))
}

fn produce(broker: &EmbeddedBroker, line: &str) {
    let (topic, key) = route(line);
    broker.produce(topic, key.as_deref(), line.as_bytes()).expect("produce");
}

fn events(r: &Running, kind: &str, outcome: &str) -> f64 {
    r.shared.metrics.counter("belofte_events_total", &[("type", kind), ("outcome", outcome)])
}

async fn a_cancelled_order_leaves_memory_at_once_and_the_database_after_the_retention_days(db: &backends::Db) {
    let broker = support::broker(3);
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let mut cfg = config_at(&broker, &db.url, &peers, "retention");
    cfg.database.sweep_seconds = 1;
    let settings_now = || {
        let mut s = settings();
        s.policy.coalesce_seconds = 0;
        s.policy.quiet_from = s.policy.quiet_until;
        s
    };
    let t0 = chrono::Utc::now();
    let clock = Clock::manual(t0);
    let start = || Running::start(settings_now(), templates(), cfg.clone(), Overrides { clock: Some(clock.clone()), ..Overrides::default() });
    let running = start().await.expect("daemon starts");

    // Two customers are told of a delay; one of them cancels, the other keeps waiting.
    for line in [placed("R-1", t0), delayed("R-1", 1, t0), placed("R-2", t0), delayed("R-2", 1, t0)] {
        produce(&broker, &line);
    }
    peers.smtp.wait_for_accepted(2, Duration::from_secs(30)).await;
    produce(&broker, &cancelled("R-1", t0));
    eventually("the cancelled order to leave memory", Duration::from_secs(30), || {
        running.shared.metrics.gauge("belofte_closed_orders", &[]) == 1.0 && running.shared.metrics.gauge("belofte_orders", &[]) == 1.0
    })
    .await;

    // The warehouse reports late about the cancelled order: ignored, as before it left.
    // (A first delay may have been parked for a moment: the warehouse topic can be read
    // before the orders topic.)
    let parked_before = events(&running, "warehouse.delayed", "parked");
    produce(&broker, &delayed("R-1", 2, t0));
    eventually("the late event", Duration::from_secs(30), || events(&running, "warehouse.delayed", "ignored") == 1.0).await;
    assert_eq!(events(&running, "warehouse.delayed", "parked"), parked_before, "not parked as if the order were unknown");

    // A restart loads the open order's state and the closed one by id only.
    running.shutdown().await.expect("clean shutdown");
    let running = start().await.expect("daemon restarts");
    eventually("the partitions loaded", Duration::from_secs(30), || running.shared.metrics.gauge("belofte_closed_orders", &[]) == 1.0).await;
    assert_eq!(running.shared.metrics.gauge("belofte_orders", &[]), 1.0, "only the open order is in memory");

    // 31 days on: the cancelled order and its sent email leave the database; the open order
    // stays, and the seen ids older than the replay horizon are gone.
    let r1_rows = running.store.outbox().await.expect("outbox").iter().filter(|r| r.order_id == "R-1").count();
    assert!(r1_rows >= 1, "the delay email was sent");
    clock.set(t0 + chrono::Duration::days(31));
    eventually("the sweep", Duration::from_secs(30), || {
        running.shared.metrics.counter("belofte_retention_deleted_total", &[("what", "orders")]) == 1.0
    })
    .await;
    let store = running.store.clone();
    eventually_async("R-1's messages deleted", Duration::from_secs(10), || {
        let store = store.clone();
        async move { store.outbox().await.map(|rows| !rows.iter().any(|r| r.order_id == "R-1")).unwrap_or(false) }
    })
    .await;
    assert!(running.store.outbox().await.expect("outbox").iter().any(|r| r.order_id == "R-2"), "the open order's messages stay");
    assert_eq!(running.shared.metrics.counter("belofte_retention_deleted_total", &[("what", "messages")]), r1_rows as f64);
    assert!(running.shared.metrics.counter("belofte_retention_deleted_total", &[("what", "seen_ids")]) >= 5.0);
    assert_eq!(running.shared.metrics.gauge("belofte_closed_orders", &[]), 0.0);
    assert_eq!(running.shared.metrics.gauge("belofte_orders", &[]), 1.0, "the open order is still held");

    // Forgotten now: an event about it is about an unknown order.
    let parked_before = events(&running, "warehouse.delayed", "parked");
    produce(&broker, &delayed("R-1", 3, t0 + chrono::Duration::days(31)));
    eventually("the event about a forgotten order", Duration::from_secs(30), || events(&running, "warehouse.delayed", "parked") == parked_before + 1.0).await;
    running.shutdown().await.expect("clean shutdown");
}
