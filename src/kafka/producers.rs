//! What belofte writes to Kafka: rejected events to the dead-letter topic, escalation and
//! compensation CloudEvents to the actions topic, events forwarded to their owner on the
//! by-order topic.

use std::time::Duration;

use rdkafka::config::FromClientConfigAndContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::observe::{Observed, ProducerObserver};
use super::{KafkaConfig, KafkaError, Record};

/// How long `send` may wait for room in librdkafka's local queue. Delivery itself is bounded
/// by librdkafka's `message.timeout.ms` (settable through `kafka.properties`).
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// CloudEvents Kafka binding, structured mode: the record value is the whole event.
const CLOUDEVENTS_CONTENT_TYPE: &str = "application/cloudevents+json; charset=UTF-8";

/// One idempotent producer for every topic belofte writes, partitioning keys as Java does.
pub struct Producers {
    producer: FutureProducer<ProducerObserver>,
    dead_letter_topic: String,
    actions_topic: String,
    by_order_topic: String,
}

impl Producers {
    /// The longest `action` or `dead_letter` can take: the wait for room in the local queue
    /// and librdkafka's `message.timeout.ms` (its default 300 s, unless `kafka.properties`
    /// sets it).
    pub fn delivery_limit(cfg: &KafkaConfig) -> Duration {
        let message_timeout_ms = cfg.properties.get("message.timeout.ms").and_then(|v| v.parse::<u64>().ok()).unwrap_or(300_000);
        QUEUE_TIMEOUT + Duration::from_millis(message_timeout_ms)
    }

    pub fn new(cfg: &KafkaConfig) -> Result<Producers, KafkaError> {
        let config = cfg.client_config(&[
            // Retries after a lost acknowledgement must not write a record twice, and a
            // record counts as written only when every in-sync replica has it.
            ("enable.idempotence", "true"),
            ("acks", "all"),
            // The Java client's partitioner (murmur2 of the key; no key: random), instead of
            // librdkafka's CRC32 default: actions keyed by order id land where the shop's
            // Java and Kafka Streams producers would put that key. Ownership does not depend
            // on it: forwards to `by_order_topic` name their partition.
            ("partitioner", "murmur2_random"),
        ]);
        let context = ProducerObserver {
            observed: Observed::new("producer"),
        };
        let producer = FutureProducer::from_config_and_context(&config, context)
            .map_err(|e| KafkaError::new("creating the producer", e))?;
        Ok(Producers {
            producer,
            dead_letter_topic: cfg.dead_letter_topic.clone(),
            actions_topic: cfg.actions_topic.clone(),
            by_order_topic: cfg.by_order_topic.clone(),
        })
    }

    /// Copies `r` (same key and payload) to the dead-letter topic with why and where from in
    /// headers; returns once the broker has acknowledged it, so the caller can then store
    /// `r`'s offset without losing the event.
    pub async fn dead_letter(&self, r: &Record, reason: &str) -> Result<(), KafkaError> {
        let partition = r.partition.to_string();
        let offset = r.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "belofte-reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "belofte-source-topic",
                value: Some(r.topic.as_str()),
            })
            .insert(Header {
                key: "belofte-source-partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "belofte-source-offset",
                value: Some(offset.as_str()),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.dead_letter_topic).headers(headers);
        if let Some(key) = &r.key {
            record = record.key(key.as_slice());
        }
        if let Some(payload) = &r.payload {
            record = record.payload(payload.as_slice());
        }
        self.producer
            .send(record, QUEUE_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| {
                KafkaError::new(
                    format!(
                        "dead-lettering {} to {}",
                        r.position(),
                        self.dead_letter_topic
                    ),
                    e,
                )
            })
    }

    /// Forwards an event to partition `partition` of the by-order topic, as it came (the
    /// same CloudEvent, so its owner drops a second copy by `source` + `id`), keyed by the
    /// order id where one is known; waits for the broker's acknowledgement, so that the
    /// caller stores the source offset only once the owner is sure to get it.
    pub async fn forward(&self, partition: i32, key: Option<&str>, payload: &[u8], why: &str) -> Result<(), KafkaError> {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "content-type",
                value: Some(CLOUDEVENTS_CONTENT_TYPE),
            })
            .insert(Header {
                key: "belofte-forwarded",
                value: Some(why),
            });
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.by_order_topic)
            .partition(partition)
            .payload(payload)
            .headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        self.producer
            .send(record, QUEUE_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| KafkaError::new(format!("forwarding to {}[{partition}]", self.by_order_topic), e))
    }

    /// Produces one CloudEvent (structured mode) to the actions topic, keyed by order id so
    /// an order's actions stay in order; waits for the broker's acknowledgement.
    pub async fn action(
        &self,
        key: &str,
        cloudevent_json: &[u8],
        id: &str,
    ) -> Result<(), KafkaError> {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "ce_id",
                value: Some(id),
            })
            .insert(Header {
                key: "content-type",
                value: Some(CLOUDEVENTS_CONTENT_TYPE),
            });
        let record = FutureRecord::to(&self.actions_topic)
            .key(key)
            .payload(cloudevent_json)
            .headers(headers);
        self.producer
            .send(record, QUEUE_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| {
                KafkaError::new(
                    format!("producing action {id} to {}", self.actions_topic),
                    e,
                )
            })
    }
}
