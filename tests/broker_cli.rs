//! `belofte broker`, the real binary: a developer's Kafka on a fixed address with every
//! configured topic, that clients keep using after bootstrap, stopped cleanly by Ctrl-C.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use belofte::kafka::topology::check_copartitioned;
use belofte::kafka::{Ingest, KafkaConfig, Producers};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// Generous: the mock group coordinator alone waits 3 s before the first assignment.
const DEADLINE: Duration = Duration::from_secs(30);

/// The running command, killed if a test fails before it stops it.
struct BrokerProcess {
    child: Child,
    stdout: mpsc::Receiver<String>,
}

impl BrokerProcess {
    fn start(listen: SocketAddr) -> BrokerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_belofte"))
            .args(["broker", "--listen", &listen.to_string(), "--partitions", "3"])
            .args(["--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("belofte broker starts");
        let out = child.stdout.take().expect("stdout");
        let (tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        BrokerProcess { child, stdout }
    }

    /// Every line up to and including the first that contains `text`.
    fn wait_for_line(&self, text: &str) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        while let Ok(line) = self.stdout.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            let found = line.contains(text);
            seen.push(line);
            if found {
                return seen;
            }
        }
        panic!("no line with {text:?} from belofte broker; it printed {seen:?}");
    }

    fn interrupt(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGINT sent");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "belofte broker did not stop on SIGINT");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_address() -> SocketAddr {
    let probe = TcpListener::bind("127.0.0.1:0").expect("a free port");
    probe.local_addr().expect("its address")
}

/// Partition count per topic, as a client bootstrapped at `brokers` sees the cluster.
fn partition_counts(brokers: &str) -> BTreeMap<String, usize> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("client");
    let metadata = client.fetch_metadata(None, DEADLINE).expect("metadata");
    metadata
        .topics()
        .iter()
        .map(|t| (t.name().to_string(), t.partitions().len()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_developer_gets_a_kafka_on_a_fixed_address_until_ctrl_c() {
    let listen = free_address();
    let mut broker = BrokerProcess::start(listen);
    let announced = broker.wait_for_line("listening on");
    assert!(announced.last().is_some_and(|l| l.contains(&listen.to_string())), "{announced:?}");

    let cfg = KafkaConfig {
        brokers: listen.to_string(),
        group_id: "broker-cli".to_string(),
        topics: vec!["belofte.actions".to_string()],
        ..KafkaConfig::default()
    };
    let counts = tokio::task::spawn_blocking({
        let brokers = cfg.brokers.clone();
        move || partition_counts(&brokers)
    })
    .await
    .expect("metadata read");
    for topic in KafkaConfig::default().all_topics() {
        assert_eq!(counts.get(topic), Some(&3), "{topic} with 3 partitions: {counts:?}");
    }
    assert_eq!(check_copartitioned(&cfg, Duration::from_secs(30)).await.ok(), Some(3), "belofte run would start on it");

    // Bootstrapped at the fixed address, the clients then talk to the broker the metadata
    // advertises: producing and consuming show that this works, not just the first request.
    let producers = Producers::new(&cfg).expect("producer");
    let event = br#"{"specversion":"1.0","id":"esc-1","type":"belofte.escalation"}"#;
    producers.action("O-1", event, "esc-1").await.expect("produced and acknowledged");
    let ingest = Ingest::new(&cfg).expect("consumer");
    let record = tokio::time::timeout(DEADLINE, ingest.recv())
        .await
        .expect("a record within the deadline")
        .expect("consumed");
    assert_eq!(record.key.as_deref(), Some(&b"O-1"[..]));
    assert_eq!(record.payload.as_deref(), Some(&event[..]));
    // Closing a consumer blocks while it leaves the group.
    tokio::task::spawn_blocking(move || drop((ingest, producers)))
        .await
        .expect("clients closed");

    let status = broker.interrupt();
    assert_eq!(status.code(), Some(0), "Ctrl-C is a clean stop");
}
