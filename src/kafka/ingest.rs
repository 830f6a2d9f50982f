//! The consumer group that feeds the engine.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use rdkafka::client::ClientContext;
use rdkafka::config::{FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

use super::observe::{means_unreachable, Observed};
use super::{KafkaConfig, KafkaError, Record};

/// Consumes the event topics as one member of the consumer group.
///
/// Drive it from one task: `recv`, apply the event and commit the database transaction,
/// then `store`. Rebalance and statistics callbacks run inside `recv`, so keep awaiting it
/// even when the daemon is otherwise idle (it does, as its main loop).
pub struct Ingest {
    consumer: StreamConsumer<IngestContext>,
    observed: Arc<Observed>,
    rebalances: Arc<Mutex<Vec<Rebalanced>>>,
    rebalanced: Arc<Notify>,
}

/// A change of this member's assignment, as the processor must act on it: drop the state
/// of revoked partitions, load that of assigned ones. In the order they happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalanced {
    /// Taken away. The stored offsets of these partitions were committed before the revoke
    /// returned (or could not be, when the assignment was lost: the new owner replays).
    Revoked(Vec<(String, i32)>),
    Assigned(Vec<(String, i32)>),
}

impl Ingest {
    /// Creates the consumer and subscribes to `cfg.topics`. Does not wait for the brokers:
    /// an unreachable cluster shows up as `is_healthy() == false`, not as an error here.
    pub fn new(cfg: &KafkaConfig) -> Result<Ingest, KafkaError> {
        let mut own = vec![
            ("group.id", cfg.group_id.as_str()),
            // Incremental rebalances: a joining or leaving instance only moves the partitions
            // that change owner; the others keep flowing.
            // Incremental rebalances: a joining or leaving instance only moves the partitions
            // that change owner; the others keep flowing, and a revoke can still commit
            // (an eager rebalance's commit is refused as "rebalance in progress"). The
            // assignor does not keep partition `p` of co-partitioned topics on one member;
            // what arrives on a partition of an order-keyed topic whose by-order partition
            // another member owns is forwarded there (daemon::route).
            ("partition.assignment.strategy", "cooperative-sticky"),
            // The daemon stores an offset only after the database transaction holding the
            // event's effects has committed ...
            ("enable.auto.offset.store", "false"),
            // ... and librdkafka commits what was stored, in the background and on close.
            ("enable.auto.commit", "true"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "false"),
            // Feeds is_healthy() and lag().
            ("statistics.interval.ms", "1000"),
        ];
        if !cfg.group_instance_id.is_empty() {
            own.push(("group.instance.id", cfg.group_instance_id.as_str()));
        }
        let config = cfg.client_config(&own);
        let observed = Arc::new(Observed::new("ingest"));
        let rebalances = Arc::new(Mutex::new(Vec::new()));
        let rebalanced = Arc::new(Notify::new());
        let context = IngestContext {
            observed: Arc::clone(&observed),
            rebalances: Arc::clone(&rebalances),
            rebalanced: Arc::clone(&rebalanced),
        };
        let consumer: StreamConsumer<IngestContext> =
            StreamConsumer::from_config_and_context(&config, context)
                .map_err(|e| KafkaError::new("creating the consumer", e))?;
        let mut topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
        if !topics.contains(&cfg.by_order_topic.as_str()) {
            topics.push(cfg.by_order_topic.as_str());
        }
        consumer
            .subscribe(&topics)
            .map_err(|e| KafkaError::new(format!("subscribing to {topics:?}"), e))?;
        tracing::info!(group = %cfg.group_id, topics = ?cfg.topics, brokers = %cfg.brokers, "kafka consumer subscribed");
        Ok(Ingest { consumer, observed, rebalances, rebalanced })
    }

    /// The assignment changes since the last call, oldest first. They happen inside `recv`:
    /// a record `recv` returned before a revoke of its partition must not be processed (the
    /// partition's new owner replays it from the committed offset).
    pub fn take_rebalances(&self) -> Vec<Rebalanced> {
        match self.rebalances.lock() {
            Ok(mut queue) => std::mem::take(&mut *queue),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    /// Completes once an assignment change is waiting in `take_rebalances` (at once if one
    /// came since the last wait). `recv` returns only with a record: a processor waiting for
    /// one also waits on this, so that partitions assigned to an idle instance are taken over
    /// (their orders loaded, their timers running) when they arrive, not with the next record.
    pub async fn rebalanced(&self) {
        self.rebalanced.notified().await;
    }

    /// The next record. Transient trouble (brokers unreachable, a topic that does not exist
    /// yet) is logged and waited out here; only a fatal error, after which the consumer is
    /// unusable, is returned. Cancellation safe.
    pub async fn recv(&self) -> Result<Record, KafkaError> {
        loop {
            match self.consumer.recv().await {
                Ok(message) => {
                    self.observed.set_healthy(true);
                    return Ok(Record {
                        topic: message.topic().to_string(),
                        partition: message.partition(),
                        offset: message.offset(),
                        key: message.key().map(<[u8]>::to_vec),
                        payload: message.payload().map(<[u8]>::to_vec),
                        timestamp_ms: message.timestamp().to_millis(),
                    });
                }
                Err(e @ RdKafkaError::MessageConsumptionFatal(_)) => {
                    self.observed.set_healthy(false);
                    return Err(KafkaError::new("consuming", e));
                }
                // Connection trouble was already logged, with librdkafka's reason, and
                // reflected in health by the context's error callback; per-partition fetch
                // errors (an unknown topic, say) arrive only here.
                Err(e) => {
                    if e.rdkafka_error_code().is_some_and(means_unreachable) {
                        tracing::debug!(error = %e, "kafka consumer waiting for the brokers");
                    } else {
                        self.observed.warn(&format!("consuming: {e}"));
                    }
                }
            }
        }
    }

    /// Marks each record and everything before it in its partition as done: the next
    /// commit (auto, `commit_now`, or the one on revoke) moves the group's position past
    /// them. One call for a batch: per partition only its last record counts, and the
    /// offsets go to librdkafka in one list.
    ///
    /// Call only after the records' effects are committed to the database. A partition
    /// taken away meanwhile (processing outlasted `max.poll.interval.ms`, or the session
    /// expired) is skipped: its new owner starts from the last committed offset and replays
    /// the records, which the database's duplicate check then drops.
    pub fn store(&self, records: &[Record]) -> Result<(), KafkaError> {
        // The position to resume from is the offset after the last processed record.
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for r in records {
            let at = next.entry((r.topic.as_str(), r.partition)).or_insert(r.offset + 1);
            *at = (*at).max(r.offset + 1);
        }
        if next.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::with_capacity(next.len());
        for (&(topic, partition), &offset) in &next {
            tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
                .map_err(|e| KafkaError::new(format!("storing offset {offset} of {topic}[{partition}]"), e))?;
        }
        match self.consumer.store_offsets(&tpl) {
            // Also a partial success: librdkafka marks the partitions it could not store.
            Ok(()) => {
                for e in tpl.elements() {
                    if e.error().is_err() {
                        tracing::info!(partition = %format!("{}[{}]", e.topic(), e.partition()), "partition no longer assigned; its new owner replays its records");
                    }
                }
                Ok(())
            }
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::State | RDKafkaErrorCode::UnknownPartition)
                ) =>
            {
                tracing::info!(partitions = %describe(&tpl), "partitions no longer assigned; their new owner replays these records");
                Ok(())
            }
            Err(e) => Err(KafkaError::new(format!("storing offsets {}", describe(&tpl)), e)),
        }
    }

    /// Commits the stored offsets now and waits for the broker's answer (graceful shutdown).
    pub fn commit_now(&self) -> Result<(), KafkaError> {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => Ok(()),
            Err(e) if nothing_to_commit(&e) => Ok(()),
            Err(e) => Err(KafkaError::new("committing stored offsets", e)),
        }
    }

    /// Records not yet handed to the daemon, summed over the assigned partitions (high
    /// watermark minus position). Best effort: refreshed from librdkafka's statistics once a
    /// second, without a broker round trip, so /metrics stays cheap.
    pub fn lag(&self) -> i64 {
        self.observed.lag()
    }

    /// Whether a broker is reachable: false after "all brokers down" or transport errors,
    /// true again once a message arrives or the statistics show a broker connection up.
    pub fn is_healthy(&self) -> bool {
        self.observed.is_healthy()
    }

    /// How many partitions this member holds now (the demo waits for its first ones).
    pub fn assigned_partitions(&self) -> usize {
        self.consumer.assignment().map(|tpl| tpl.count()).unwrap_or(0)
    }
}

fn nothing_to_commit(e: &RdKafkaError) -> bool {
    e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset)
}

pub(crate) struct IngestContext {
    observed: Arc<Observed>,
    rebalances: Arc<Mutex<Vec<Rebalanced>>>,
    rebalanced: Arc<Notify>,
}

impl IngestContext {
    fn tell(&self, change: Rebalanced) {
        match self.rebalances.lock() {
            Ok(mut queue) => queue.push(change),
            Err(poisoned) => poisoned.into_inner().push(change),
        }
        self.rebalanced.notify_one();
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()
}

impl ClientContext for IngestContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.observed.on_log(level, fac, message);
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        self.observed.on_error(&error, reason);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.observed.on_stats(statistics);
    }
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            // Drain on revoke: hand the new owner an exact starting point. This callback runs
            // inside `recv`, and the daemon processes one record at a time and stores its
            // offset after the database commit, before it awaits `recv` again. So when we get
            // here nothing is in flight: every stored offset is final and every record past it
            // was not processed. Committing now (synchronously, before librdkafka gives the
            // partitions up) means the new owner neither skips nor replays processed records.
            self.tell(Rebalanced::Revoked(partitions_of(revoked)));
            if consumer.assignment_lost() {
                // The group already moved on (session timeout); a commit would be rejected
                // and the new owner replays from the last commit, which dedup absorbs.
                self.observed
                    .warn("partition assignment lost; stored offsets since the last commit will be replayed");
                return;
            }
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => {
                    tracing::info!(partitions = %describe(revoked), "committed stored offsets on revoke")
                }
                Err(e) if nothing_to_commit(&e) => {}
                Err(e) => self.observed.warn(&format!(
                    "commit on revoke failed (the new owner replays from the last commit): {e}"
                )),
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let now = consumer
            .assignment()
            .map(|tpl| describe(&tpl))
            .unwrap_or_else(|e| format!("unknown ({e})"));
        match rebalance {
            // A cooperative rebalance ends with a round that changes nothing for most members.
            Rebalance::Assign(added) if added.count() == 0 => {
                tracing::debug!(assignment = %now, "kafka rebalance: no partitions added")
            }
            Rebalance::Assign(added) => {
                self.tell(Rebalanced::Assigned(partitions_of(added)));
                tracing::info!(added = %describe(added), assignment = %now, "kafka partitions assigned")
            }
            Rebalance::Revoke(removed) => {
                tracing::info!(removed = %describe(removed), assignment = %now, "kafka partitions revoked")
            }
            Rebalance::Error(e) => self.observed.warn(&format!("rebalance failed: {e}")),
        }
    }

    fn commit_callback(&self, result: Result<(), RdKafkaError>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(offsets = %describe(offsets), "kafka offsets committed"),
            Err(e) if nothing_to_commit(&e) => {}
            // The offsets stay stored; the next auto-commit tries again.
            Err(e) => self.observed.warn(&format!("offset commit failed: {e}")),
        }
    }
}

/// `orders[0]@12, orders[1]` — partitions, with the offset where one is known.
fn describe(tpl: &TopicPartitionList) -> String {
    let parts: Vec<String> = tpl
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => format!("{}[{}]@{}", e.topic(), e.partition(), o),
            _ => format!("{}[{}]", e.topic(), e.partition()),
        })
        .collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}
