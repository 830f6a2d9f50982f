//! An in-process Kafka cluster (librdkafka's mock cluster) for tests and `belofte demo`:
//! real Kafka protocol on a loopback port, no installation, with fault injection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::observe::Observed;
use super::KafkaError;

/// One consumed record as `consume_all` returns it: key, payload, headers in order.
pub type ConsumedRecord = (Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>);

/// How long `produce` waits for the broker's acknowledgement.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// A one-broker mock Kafka cluster on loopback.
///
/// `MockCluster` holds a raw librdkafka pointer and is neither `Send` nor `Sync`, yet the
/// demo and the tests want to hand the broker to other tasks. So the cluster lives on a
/// thread of its own that owns it from creation to destruction and takes commands over a
/// channel; this handle is `Send + Sync` and needs no `unsafe`.
pub struct EmbeddedBroker {
    bootstrap: String,
    partitions: i32,
    commands: Option<mpsc::Sender<Command>>,
    owner: Option<thread::JoinHandle<()>>,
    producer: Option<ThreadedProducer<SyncDelivery>>,
}

enum Command {
    CreateTopic {
        name: String,
        partitions: i32,
        reply: mpsc::Sender<Result<(), RdKafkaError>>,
    },
    SetDown {
        down: bool,
        reply: mpsc::Sender<Result<(), RdKafkaError>>,
    },
}

impl EmbeddedBroker {
    /// Starts the cluster; `partitions` is the partition count `create_topics` uses.
    pub fn start(partitions: i32) -> Result<EmbeddedBroker, KafkaError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (commands, inbox) = mpsc::channel();
        let owner = thread::Builder::new()
            .name("belofte-mock-kafka".to_string())
            .spawn(move || own_cluster(ready_tx, inbox))
            .map_err(|e| {
                KafkaError::new(
                    "starting the embedded broker",
                    RdKafkaError::ClientCreation(e.to_string()),
                )
            })?;
        let bootstrap = match ready_rx.recv() {
            Ok(Ok(bootstrap)) => bootstrap,
            Ok(Err(e)) => return Err(KafkaError::new("starting the embedded broker", e)),
            Err(_) => {
                return Err(KafkaError::new(
                    "starting the embedded broker",
                    RdKafkaError::ClientCreation("mock cluster thread exited".to_string()),
                ))
            }
        };
        let mut broker = EmbeddedBroker {
            bootstrap,
            partitions,
            commands: Some(commands),
            owner: Some(owner),
            producer: None,
        };
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &broker.bootstrap)
            // One record at a time, acknowledged before `produce` returns: no batching delay.
            .set("linger.ms", "0")
            .set(
                "message.timeout.ms",
                PRODUCE_TIMEOUT.as_millis().to_string(),
            )
            .create_with_context(SyncDelivery {
                observed: Observed::new("embedded-broker"),
            })
            .map_err(|e| KafkaError::new("creating the embedded broker's producer", e))?;
        broker.producer = Some(producer);
        Ok(broker)
    }

    /// The `bootstrap.servers` value for clients of this cluster.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// Creates each topic with the partition count given to `start`.
    pub fn create_topics(&self, topics: &[&str]) -> Result<(), KafkaError> {
        for topic in topics {
            self.create_topic(topic, self.partitions)?;
        }
        Ok(())
    }

    /// Creates one topic with its own partition count (a cluster whose topics differ).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), KafkaError> {
        self.command(format!("creating topic {topic}"), |reply| {
            Command::CreateTopic {
                name: topic.to_string(),
                partitions,
                reply,
            }
        })
    }

    /// Takes the broker down (`true`: connections are cut and refused) or brings it back.
    pub fn set_down(&self, down: bool) -> Result<(), KafkaError> {
        let what = if down {
            "taking the broker down"
        } else {
            "bringing the broker up"
        };
        self.command(what, |reply| Command::SetDown { down, reply })
    }

    /// Produces one record and waits until the broker has acknowledged it; returns its
    /// partition and offset. Blocking: from async code, keep it short or use
    /// `spawn_blocking`.
    pub fn produce(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<(i32, i64), KafkaError> {
        let context = || format!("producing to {topic}");
        let producer = self.producer.as_ref().ok_or_else(|| {
            KafkaError::new(
                context(),
                RdKafkaError::ClientCreation("no producer".to_string()),
            )
        })?;
        let (tx, rx) = mpsc::sync_channel(1);
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(tx)).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        producer
            .send(record)
            .map_err(|(e, _)| KafkaError::new(context(), e))?;
        match rx.recv_timeout(PRODUCE_TIMEOUT + Duration::from_secs(5)) {
            Ok(result) => result.map_err(|e| KafkaError::new(context(), e)),
            Err(_) => Err(KafkaError::new(
                context(),
                RdKafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::MessageTimedOut),
            )),
        }
    }

    /// Every record in `topic` up to its end as of this call, ordered by partition and
    /// offset; waits up to `timeout` for the topic to exist. For assertions: reads outside
    /// any consumer group's offsets (nothing is committed).
    pub fn consume_all(&self, topic: &str, timeout: Duration) -> Vec<ConsumedRecord> {
        match self.try_consume_all(topic, timeout) {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, topic, "embedded broker: reading the topic failed");
                Vec::new()
            }
        }
    }

    fn try_consume_all(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> Result<Vec<ConsumedRecord>, KafkaError> {
        static READERS: AtomicU64 = AtomicU64::new(0);
        let deadline = Instant::now() + timeout;
        let remaining = || deadline.saturating_duration_since(Instant::now());
        let group = format!(
            "belofte-mock-reader-{}-{}",
            std::process::id(),
            READERS.fetch_add(1, Ordering::Relaxed)
        );
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            // librdkafka wants a group for assign(); a fresh one that never commits.
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(|e| KafkaError::new("creating a reader", e))?;

        let partitions = loop {
            let metadata = consumer
                .fetch_metadata(Some(topic), remaining().max(Duration::from_millis(100)))
                .map_err(|e| KafkaError::new(format!("reading metadata of {topic}"), e))?;
            let found: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if !found.is_empty() {
                break found;
            }
            if remaining().is_zero() {
                return Ok(Vec::new());
            }
            thread::sleep(Duration::from_millis(100));
        };

        let mut ends = Vec::new();
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, remaining().max(Duration::from_millis(100)))
                .map_err(|e| KafkaError::new(format!("reading watermarks of {topic}[{p}]"), e))?;
            if high > low {
                tpl.add_partition_offset(topic, p, Offset::Offset(low))
                    .map_err(|e| KafkaError::new("building the assignment", e))?;
                ends.push((p, high));
            }
        }
        if ends.is_empty() {
            return Ok(Vec::new());
        }
        consumer
            .assign(&tpl)
            .map_err(|e| KafkaError::new(format!("assigning {topic}"), e))?;

        let mut records = Vec::new();
        let mut next: Vec<(i32, i64)> = ends.iter().map(|(p, _)| (*p, -1)).collect();
        let done = |next: &[(i32, i64)]| {
            ends.iter()
                .all(|(p, high)| next.iter().any(|(q, n)| q == p && n >= high))
        };
        while !done(&next) && !remaining().is_zero() {
            let Some(result) = consumer.poll(remaining().min(Duration::from_millis(200))) else {
                continue;
            };
            let message = match result {
                Ok(message) => message,
                Err(e) => {
                    tracing::debug!(error = %e, topic, "embedded broker reader");
                    continue;
                }
            };
            let headers = message
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            records.push((
                message.partition(),
                message.offset(),
                (
                    message.key().map(<[u8]>::to_vec),
                    message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    headers,
                ),
            ));
            if let Some(slot) = next.iter_mut().find(|(p, _)| *p == message.partition()) {
                slot.1 = slot.1.max(message.offset() + 1);
            }
        }
        records.sort_by_key(|(p, o, _)| (*p, *o));
        Ok(records.into_iter().map(|(_, _, r)| r).collect())
    }

    fn command(
        &self,
        what: impl std::fmt::Display,
        make: impl FnOnce(mpsc::Sender<Result<(), RdKafkaError>>) -> Command,
    ) -> Result<(), KafkaError> {
        let gone = || RdKafkaError::ClientCreation("mock cluster thread exited".to_string());
        let (reply, answer) = mpsc::channel();
        let commands = self
            .commands
            .as_ref()
            .ok_or_else(|| KafkaError::new(&what, gone()))?;
        commands
            .send(make(reply))
            .map_err(|_| KafkaError::new(&what, gone()))?;
        match answer.recv() {
            Ok(result) => result.map_err(|e| KafkaError::new(&what, e)),
            Err(_) => Err(KafkaError::new(&what, gone())),
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        // Clients first, while the brokers still answer; then the cluster, by closing its
        // command channel, which ends the owner thread.
        self.producer = None;
        self.commands = None;
        if let Some(owner) = self.owner.take() {
            if owner.join().is_err() {
                tracing::warn!("embedded broker thread panicked");
            }
        }
    }
}

fn own_cluster(ready: mpsc::Sender<Result<String, RdKafkaError>>, inbox: mpsc::Receiver<Command>) {
    let cluster = match MockCluster::new(1) {
        Ok(cluster) => cluster,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready.send(Ok(cluster.bootstrap_servers())).is_err() {
        return;
    }
    // Ends when the handle is dropped; the cluster is destroyed on this thread's way out.
    while let Ok(command) = inbox.recv() {
        match command {
            Command::CreateTopic {
                name,
                partitions,
                reply,
            } => {
                let _ = reply.send(cluster.create_topic(&name, partitions, 1));
            }
            Command::SetDown { down, reply } => {
                // -1: every broker of the cluster.
                let result = if down {
                    cluster.broker_down(-1)
                } else {
                    cluster.broker_up(-1)
                };
                let _ = reply.send(result);
            }
        }
    }
}

/// Hands each delivery report to the `produce` call that waits for it.
struct SyncDelivery {
    observed: Observed,
}

type DeliveryReply = mpsc::SyncSender<Result<(i32, i64), RdKafkaError>>;

impl ClientContext for SyncDelivery {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.observed.on_log(level, fac, message);
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        self.observed.on_error(&error, reason);
    }
}

impl ProducerContext for SyncDelivery {
    type DeliveryOpaque = Box<DeliveryReply>;

    fn delivery(&self, result: &DeliveryResult<'_>, reply: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((e, _)) => Err(e.clone()),
        };
        // The waiter may have given up (timeout); nothing else to tell.
        let _ = reply.send(outcome);
    }
}
