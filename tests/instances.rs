//! Several instances on one PostgreSQL database (issue 11): three daemons in one consumer
//! group share the orders of a six-partition broker while the stream runs, are scaled
//! 1 → 3 → 2, and one of them crashes. The customers must get exactly what `simulate`
//! decides on the same stream: nothing lost, no SMS twice, an email repeated only under its
//! own Message-ID.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use belofte::daemon::{Clock, DaemonConfig, Overrides, Running};
use belofte::kafka::mock::EmbeddedBroker;
use support::week::{assert_delivered_as_simulated, monday_nine, settled, week, Applied};
use support::{config_at, eventually_async, peers, route, seen_by_customer, settings, simulated, templates, Peers};
use testkit::smtp::SmtpScript;

const PARTITIONS: i32 = 6;
const ORDERS: usize = 1200;
/// The longest a start, a crash or a clean stop of one instance may take.
const SCALING: Duration = Duration::from_secs(30);


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
    let moments = week(ORDERS, monday_nine());
    let lines: Vec<String> = moments.iter().flat_map(|m| m.lines.iter().cloned()).collect();
    let until = moments.last().expect("a moment").at + chrono::Duration::days(3);
    let expected = simulated(&lines, until);
    let want_email = expected.iter().filter(|l| l.channel == "email").count();
    let want_sms = expected.iter().filter(|l| l.channel == "sms").count();
    let want_events = expected.iter().filter(|l| l.channel == "event").count();
    assert!(want_email >= 100 && want_sms >= 50 && want_events >= 10, "the week decides enough to compare: {want_email} {want_sms} {want_events}");
    for incident in ["storm-1", "outage-1"] {
        assert!(expected.iter().any(|l| l.cause == incident), "{incident} decides messages");
    }

    let clock = Clock::manual(moments[0].at);
    let applied = Applied::open(&db.url).await;
    let mut running: BTreeMap<&str, Running> = BTreeMap::new();
    running.insert("a", start(instance(&broker, &db.url, &peers, "a"), &clock).await);
    let mut produced: Vec<String> = Vec::new();
    for (step, m) in moments.iter().enumerate() {
        clock.set(m.at);
        for line in &m.lines {
            let (topic, key) = route(line);
            broker.produce(topic, key.as_deref(), line.as_bytes()).expect("produce");
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
        settled(&applied, &produced, PARTITIONS, Duration::from_secs(40)).await;
    }
    clock.set(until);

    let store = running.values().next().expect("an instance runs").store.clone();
    let want_rows = expected.len();
    eventually_async("every outbox row sent", Duration::from_secs(40), || {
        let store = store.clone();
        async move { store.outbox().await.map(|rows| rows.len() >= want_rows && rows.iter().all(|r| r.status == "sent")).unwrap_or(false) }
    })
    .await;

    // The same words, at the same moments, to the same people as simulate. Only sends in
    // flight at the crash (at most the SMTP pool's 4 connections) came twice.
    let rows = store.outbox().await.expect("outbox");
    assert_delivered_as_simulated(&rows, &expected, &peers, &broker, seen_by_customer, 4);

    for (_, r) in running {
        bounded("a shutdown", r.shutdown()).await.expect("clean shutdown");
    }
    applied.close().await;
}
