//! Kafka at the edges against the embedded mock cluster: offsets (at-least-once across
//! restarts), dead-letter and action records, a broker outage, a cooperative rebalance.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use belofte::kafka::mock::EmbeddedBroker;
use belofte::kafka::{Ingest, KafkaConfig, Producers, Record};
use tokio::sync::mpsc;

const TOPIC: &str = "orders";
/// Generous: the mock group coordinator alone waits 3 s before the first assignment.
const DEADLINE: Duration = Duration::from_secs(30);

type Position = (i32, i64);

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// `session_ms`: the mock coordinator waits (session timeout − 1 s) for members to rejoin,
/// so a short one keeps the rebalance test fast; an outage must not outlast it, though, or
/// the group would expire the member and replay its uncommitted offsets.
fn config(broker: &EmbeddedBroker, group: &str, session_ms: u32) -> KafkaConfig {
    let mut cfg = KafkaConfig {
        brokers: broker.bootstrap(),
        group_id: group.to_string(),
        topics: vec![TOPIC.to_string()],
        ..KafkaConfig::default()
    };
    // Reconnect quickly after the outage; notice a rebalance quickly.
    for (key, value) in [
        ("session.timeout.ms", session_ms.to_string()),
        ("heartbeat.interval.ms", "500".to_string()),
        ("reconnect.backoff.max.ms", "500".to_string()),
    ] {
        cfg.properties.insert(key.to_string(), value);
    }
    cfg
}

fn start_broker() -> Arc<EmbeddedBroker> {
    init_logs();
    let broker = EmbeddedBroker::start(3).expect("embedded broker starts");
    broker.create_topics(&[TOPIC]).expect("topic created");
    Arc::new(broker)
}

/// Produces `orders` records `from..to` (key `order-i`, payload `event-i`) off the runtime.
async fn produce(broker: &Arc<EmbeddedBroker>, from: usize, to: usize) -> Vec<Position> {
    let broker = Arc::clone(broker);
    tokio::task::spawn_blocking(move || {
        (from..to)
            .map(|i| {
                broker
                    .produce(
                        TOPIC,
                        Some(format!("order-{i}").as_bytes()),
                        format!("event-{i}").as_bytes(),
                    )
                    .expect("produced")
            })
            .collect()
    })
    .await
    .expect("producer task")
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn pos(r: &Record) -> Position {
    (r.partition, r.offset)
}

/// The daemon's loop in miniature: receive, "commit to the database", store the offset.
fn spawn_worker(
    name: &'static str,
    ingest: Arc<Ingest>,
    out: mpsc::UnboundedSender<(&'static str, Record)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let record = ingest.recv().await.expect("recv");
            ingest.store(std::slice::from_ref(&record)).expect("store");
            if out.send((name, record)).is_err() {
                return;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_offsets_survive_a_restart_and_unstored_records_come_back() {
    let broker = start_broker();
    let produced: BTreeSet<Position> = produce(&broker, 0, 100).await.into_iter().collect();
    assert_eq!(produced.len(), 100);
    let partitions: BTreeSet<i32> = produced.iter().map(|(p, _)| *p).collect();
    assert_eq!(partitions.len(), 3, "keys spread over all partitions");

    let cfg = config(&broker, "restart", 6000);
    let first = Ingest::new(&cfg).expect("consumer");
    let mut received = Vec::new();
    while received.len() < 100 {
        let record = within("the first 100 records", first.recv())
            .await
            .expect("recv");
        assert_eq!(
            record.payload.as_deref(),
            Some(format!("event-{}", key_number(&record)).as_bytes())
        );
        received.push(record);
    }
    let got: BTreeSet<Position> = received.iter().map(pos).collect();
    assert_eq!(got, produced, "every record once");
    assert!(first.is_healthy());

    // Processed and committed to the database: the first 60. The rest were in flight when
    // the process stopped. Per partition, delivery is in offset order, so this is a prefix
    // of each partition.
    first.store(&received[..60]).expect("store");
    first.commit_now().expect("commit");
    tokio::task::block_in_place(move || drop(first));

    let second = Ingest::new(&cfg).expect("consumer");
    let mut replayed = BTreeSet::new();
    while replayed.len() < 40 {
        let record = within("the 40 unstored records", second.recv())
            .await
            .expect("recv");
        assert!(
            replayed.insert(pos(&record)),
            "delivered twice: {}",
            record.position()
        );
    }
    let unstored: BTreeSet<Position> = received[60..].iter().map(pos).collect();
    assert_eq!(replayed, unstored, "exactly the unstored records come back");
    // Nothing else arrives (keep polling meanwhile, which also serves the statistics).
    let extra = tokio::time::timeout(Duration::from_secs(2), second.recv()).await;
    assert!(
        extra.is_err(),
        "unexpected record: {:?}",
        extra.map(|r| r.map(|r| r.position()))
    );
    assert_eq!(second.lag(), 0, "everything consumed");
    assert!(second.is_healthy());
    tokio::task::block_in_place(move || drop(second));
}

fn key_number(record: &Record) -> String {
    let key = String::from_utf8(record.key.clone().expect("key")).expect("utf-8 key");
    key.trim_start_matches("order-").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_and_actions_carry_their_headers() {
    let broker = start_broker();
    let cfg = config(&broker, "producers", 6000);
    broker
        .create_topics(&[&cfg.dead_letter_topic, &cfg.actions_topic])
        .expect("topics");
    let producers = Producers::new(&cfg).expect("producers");

    let rejected = Record {
        topic: "warehouse".to_string(),
        partition: 2,
        offset: 41,
        key: Some(b"B-1001".to_vec()),
        payload: Some(b"{not json".to_vec()),
        timestamp_ms: Some(1_790_000_000_000),
    };
    within(
        "the dead letter",
        producers.dead_letter(
            &rejected,
            "not JSON: key must be a string at line 1 column 2",
        ),
    )
    .await
    .expect("dead-lettered");
    let event =
        br#"{"specversion":"1.0","id":"esc-1","source":"/belofte","type":"belofte.escalation"}"#;
    within("the action", producers.action("B-1001", event, "esc-1"))
        .await
        .expect("action produced");

    let dead = read(&broker, &cfg.dead_letter_topic).await;
    assert_eq!(dead.len(), 1);
    let (key, payload, headers) = &dead[0];
    assert_eq!(key.as_deref(), Some(b"B-1001".as_slice()));
    assert_eq!(payload, b"{not json");
    let headers = as_map(headers);
    assert_eq!(
        headers["belofte-reason"],
        "not JSON: key must be a string at line 1 column 2"
    );
    assert_eq!(headers["belofte-source-topic"], "warehouse");
    assert_eq!(headers["belofte-source-partition"], "2");
    assert_eq!(headers["belofte-source-offset"], "41");

    let actions = read(&broker, &cfg.actions_topic).await;
    assert_eq!(actions.len(), 1);
    let (key, payload, headers) = &actions[0];
    assert_eq!(key.as_deref(), Some(b"B-1001".as_slice()));
    assert_eq!(payload.as_slice(), event.as_slice());
    let headers = as_map(headers);
    assert_eq!(headers["ce_id"], "esc-1");
    assert_eq!(
        headers["content-type"],
        "application/cloudevents+json; charset=UTF-8"
    );
}

async fn read(
    broker: &Arc<EmbeddedBroker>,
    topic: &str,
) -> Vec<belofte::kafka::mock::ConsumedRecord> {
    let broker = Arc::clone(broker);
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || broker.consume_all(&topic, Duration::from_secs(10)))
        .await
        .expect("reader task")
}

fn as_map(headers: &[(String, Vec<u8>)]) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                String::from_utf8(v.clone()).expect("utf-8 header"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_is_reported_and_nothing_is_lost() {
    let broker = start_broker();
    let mut produced: BTreeSet<Position> = produce(&broker, 0, 30).await.into_iter().collect();

    let ingest = Arc::new(Ingest::new(&config(&broker, "outage", 45000)).expect("consumer"));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let worker = spawn_worker("only", Arc::clone(&ingest), tx);
    let mut received: Vec<Position> = Vec::new();
    while received.len() < 30 {
        let (_, record) = within("the first records", rx.recv())
            .await
            .expect("worker alive");
        received.push(pos(&record));
    }
    eventually("the consumer reports healthy", || ingest.is_healthy()).await;

    broker.set_down(true).expect("broker down");
    eventually("the consumer reports the outage", || !ingest.is_healthy()).await;
    // Written while the broker is down: the producer retries until it is back.
    let during = {
        let broker = Arc::clone(&broker);
        tokio::spawn(async move { produce(&broker, 30, 40).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!ingest.is_healthy(), "still down");

    broker.set_down(false).expect("broker up");
    eventually("the consumer is healthy again", || ingest.is_healthy()).await;
    produced.extend(
        within("the producer to catch up", during)
            .await
            .expect("producer"),
    );
    produced.extend(produce(&broker, 40, 60).await);

    while !produced.iter().all(|p| received.contains(p)) {
        let (_, record) = within("the records after the outage", rx.recv())
            .await
            .expect("worker alive");
        received.push(pos(&record));
    }
    let distinct: BTreeSet<Position> = received.iter().copied().collect();
    assert_eq!(distinct, produced, "no record lost");
    assert_eq!(received.len(), 60, "no record redelivered: all were stored");
    stop(vec![worker], vec![ingest]).await;
}

/// Stops the workers, then closes the consumers (blocking: leaves the group, commits) while
/// the broker is still there.
async fn stop(workers: Vec<tokio::task::JoinHandle<()>>, consumers: Vec<Arc<Ingest>>) {
    for worker in workers {
        worker.abort();
        let _ = worker.await;
    }
    tokio::task::block_in_place(move || drop(consumers));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_consumer_takes_over_partitions_without_loss_or_duplicates() {
    let broker = start_broker();
    let cfg = config(&broker, "rebalance", 6000);
    let mut produced: BTreeSet<Position> = produce(&broker, 0, 30).await.into_iter().collect();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let a = Arc::new(Ingest::new(&cfg).expect("consumer a"));
    let worker_a = spawn_worker("a", Arc::clone(&a), tx.clone());
    let mut processed: Vec<(&'static str, Position)> = Vec::new();
    while processed.len() < 30 {
        let (who, record) = within("a to consume", rx.recv())
            .await
            .expect("worker alive");
        processed.push((who, pos(&record)));
    }

    let b = Arc::new(Ingest::new(&cfg).expect("consumer b"));
    let worker_b = spawn_worker("b", Arc::clone(&b), tx);
    // Keep the stream flowing until b owns a partition and has processed from it.
    let start = Instant::now();
    let mut next = 30;
    while processed.iter().filter(|(who, _)| *who == "b").count() < 5 {
        assert!(start.elapsed() < DEADLINE, "b never got a partition");
        produced.extend(produce(&broker, next, next + 3).await);
        next += 3;
        while let Ok((who, record)) = rx.try_recv() {
            processed.push((who, pos(&record)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    produced.extend(produce(&broker, next, next + 30).await);

    let all = |processed: &[(&str, Position)]| {
        let seen: BTreeSet<Position> = processed.iter().map(|(_, p)| *p).collect();
        produced.is_subset(&seen)
    };
    while !all(&processed) {
        let (who, record) = within("every record", rx.recv())
            .await
            .expect("workers alive");
        processed.push((who, pos(&record)));
    }
    // Let any stray redelivery show up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while let Ok((who, record)) = rx.try_recv() {
        processed.push((who, pos(&record)));
    }

    let mut by_position: BTreeMap<Position, Vec<&str>> = BTreeMap::new();
    for (who, p) in &processed {
        by_position.entry(*p).or_default().push(who);
    }
    let twice: Vec<_> = by_position
        .iter()
        .filter(|(_, who)| who.len() > 1)
        .collect();
    assert!(twice.is_empty(), "processed more than once: {twice:?}");
    assert_eq!(by_position.len(), produced.len());
    let a_partitions: BTreeSet<i32> = processed
        .iter()
        .filter(|(w, _)| *w == "a")
        .map(|(_, p)| p.0)
        .collect();
    let b_partitions: BTreeSet<i32> = processed
        .iter()
        .filter(|(w, _)| *w == "b")
        .map(|(_, p)| p.0)
        .collect();
    assert!(!b_partitions.is_empty() && !a_partitions.is_empty());

    stop(vec![worker_a, worker_b], vec![a, b]).await;
}
