//! `belofte run` starts only on topics that keep each order on one partition number: the
//! order-keyed topics and the by-order topic with one partition count, all of them present.

use std::path::{Path, PathBuf};

use belofte::daemon::config::{EmailBackendKind, SmsBackendKind};
use belofte::daemon::{DaemonConfig, DaemonError, Overrides, Running};
use belofte::kafka::mock::EmbeddedBroker;
use belofte::kafka::KafkaConfig;
use belofte::render::Templates;
use belofte::settings;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A broker whose topics all have 3 partitions, except those given with their own count
/// and those left out.
fn broker(own_counts: &[(&str, i32)], left_out: &[&str]) -> EmbeddedBroker {
    let broker = EmbeddedBroker::start(3).expect("embedded broker");
    for (topic, partitions) in own_counts {
        broker.create_topic(topic, *partitions).expect("topic");
    }
    let defaults = KafkaConfig::default();
    let rest: Vec<&str> = defaults
        .all_topics()
        .into_iter()
        .filter(|t| !left_out.contains(t) && !own_counts.iter().any(|(o, _)| o == t))
        .collect();
    broker.create_topics(&rest).expect("topics");
    broker
}

fn config(broker: &EmbeddedBroker, db: &Path) -> DaemonConfig {
    let mut cfg = DaemonConfig::default();
    cfg.kafka.brokers = broker.bootstrap();
    cfg.kafka.group_id = "topology".into();
    cfg.database.url = format!("sqlite://{}", db.display());
    cfg.email.backend = EmailBackendKind::Memory;
    cfg.sms.backend = SmsBackendKind::Memory;
    cfg.http.listen = "127.0.0.1:0".into();
    cfg
}

async fn start(broker: &EmbeddedBroker, db: &Path) -> Result<Running, DaemonError> {
    let settings = settings::load(&root().join("config")).expect("config loads");
    let templates = Templates::load(&root().join("templates")).expect("templates load");
    Running::start(settings, templates, config(broker, db), Overrides::default()).await
}

fn refusal(started: Result<Running, DaemonError>) -> String {
    match started {
        Ok(_) => panic!("the daemon started on topics that split orders"),
        Err(e @ DaemonError::Topology(_)) => e.to_string(),
        Err(e) => panic!("refused for another reason: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_is_told_which_topics_have_which_partition_counts() {
    let broker = broker(&[("warehouse", 2)], &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("belofte.db");

    let message = refusal(start(&broker, &db).await);

    assert!(
        message.contains(
            "orders has 3 partitions, warehouse has 2 partitions, belofte.by-order has 3 partitions"
        ),
        "{message}"
    );
    assert!(!db.exists(), "refused before the database was touched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_by_order_topic_is_named_with_how_to_get_it() {
    let broker = broker(&[], &["belofte.by-order"]);
    let dir = tempfile::tempdir().expect("tempdir");

    let message = refusal(start(&broker, &dir.path().join("belofte.db")).await);

    assert!(message.contains("belofte.by-order does not exist"), "{message}");
    assert!(message.contains("create the missing topics"), "{message}");
    assert!(message.contains("`belofte broker`"), "{message}");
    // Looking did not create it with the broker's default partition count.
    let again = refusal(start(&broker, &dir.path().join("belofte.db")).await);
    assert!(again.contains("belofte.by-order does not exist"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn co_partitioned_topics_start_the_daemon() {
    let broker = broker(&[], &[]);
    let dir = tempfile::tempdir().expect("tempdir");

    let running = start(&broker, &dir.path().join("belofte.db"))
        .await
        .expect("the daemon starts on co-partitioned topics");

    running.shutdown().await.expect("clean shutdown");
}
