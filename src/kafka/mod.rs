//! Kafka at the edges: the consumer group that ingests events, the dead-letter and actions producers.
//!
//! Delivery guarantee: at least once. [`Ingest`] never lets librdkafka store an offset on its
//! own; the daemon calls [`Ingest::store`] only after the event's effects are committed to the
//! database, and librdkafka's auto-commit then commits those *stored* offsets. A crash before
//! the store replays the event, which the store's duplicate detection (`source` + `id`) drops.

mod ingest;
pub mod mock;
mod observe;
mod producers;
pub mod topology;

use std::collections::BTreeMap;
use std::fmt;

use rdkafka::config::ClientConfig;
use serde::Deserialize;

pub use ingest::{Ingest, Rebalanced};
pub use producers::Producers;

/// The `[kafka]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The consumer group; every instance of the daemon shares it.
    pub group_id: String,
    /// Static membership (`group.instance.id`, KIP-345): a stable name per instance, such as
    /// the pod name. A restarted instance then gets its partitions back at once instead of
    /// the group waiting out the session timeout. Empty: dynamic membership.
    pub group_instance_id: String,
    /// The event topics to consume.
    pub topics: Vec<String>,
    /// Where undecodable or rejected events go, with the reason in headers.
    pub dead_letter_topic: String,
    /// Where escalation and compensation CloudEvents go.
    pub actions_topic: String,
    /// The internal topic keyed by order id to which events keyed otherwise (a carrier's
    /// tracking number, an incident) are forwarded, so they reach the instance that owns the
    /// order's partition (the pattern of Kafka Streams' repartition topics). Its partitions
    /// are the unit of ownership between instances.
    pub by_order_topic: String,
    /// The consumed topics whose record key is the order id. With `by_order_topic` they must
    /// have one partition count (checked at start-up, [`topology`]): an order's events then
    /// land on the same partition number everywhere, and one instance owns them all.
    pub order_keyed_topics: Vec<String>,
    /// Records taken into one transaction at most: whatever the consumer already holds joins
    /// the batch, up to this. A backlog is worked off in large batches (each order, each
    /// page written once per batch); a steady trickle still commits a few at a time.
    pub max_batch_events: usize,
    /// Any librdkafka setting (`security.protocol`, `sasl.*`, …), applied after belofte's own,
    /// so an operator can override everything.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "localhost:9092".to_string(),
            group_id: "belofte".to_string(),
            group_instance_id: String::new(),
            topics: vec![
                "orders".to_string(),
                "warehouse".to_string(),
                "carrier".to_string(),
            ],
            dead_letter_topic: "belofte.dead-letter".to_string(),
            actions_topic: "belofte.actions".to_string(),
            by_order_topic: "belofte.by-order".to_string(),
            order_keyed_topics: vec!["orders".to_string(), "warehouse".to_string()],
            max_batch_events: 8192,
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// Every topic belofte reads or writes: the consumed ones, the by-order topic, the
    /// dead-letter and actions topics, each once. What a development broker must create.
    pub fn all_topics(&self) -> Vec<&str> {
        let mut all: Vec<&str> = Vec::new();
        let named = [&self.by_order_topic, &self.dead_letter_topic, &self.actions_topic];
        for topic in self.topics.iter().chain(named) {
            if !all.contains(&topic.as_str()) {
                all.push(topic);
            }
        }
        all
    }

    /// Base settings, then belofte's settings for this client, then the operator's properties.
    fn client_config(&self, own: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        config.set("client.id", "belofte");
        for (key, value) in own {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            if own.iter().any(|(k, v)| k == key && v != value) {
                // Allowed on purpose (an operator may know better), but these settings carry
                // the delivery guarantee, so the override must be visible in the log.
                tracing::warn!(
                    setting = %key,
                    belofte = own.iter().find(|(k, _)| k == key).map(|(_, v)| *v).unwrap_or(""),
                    configured = %value,
                    "kafka.properties overrides a setting belofte relies on"
                );
            }
            config.set(key, value);
        }
        config
    }
}

/// One consumed Kafka record, copied out of librdkafka's buffer so it can outlive the poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// Create or log-append time, milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    /// `topic[partition]@offset`, for logs and dead-letter reasons.
    pub fn position(&self) -> String {
        format!("{}[{}]@{}", self.topic, self.partition, self.offset)
    }
}

/// A Kafka failure with what belofte was doing when it happened.
#[derive(Debug, thiserror::Error)]
#[error("kafka: {context}: {cause}")]
pub struct KafkaError {
    context: String,
    // Not named `source`: the cause is already part of the message, and a second copy in the
    // error chain would print it twice under `{:#}`.
    cause: rdkafka::error::KafkaError,
}

impl KafkaError {
    pub(crate) fn new(context: impl fmt::Display, cause: rdkafka::error::KafkaError) -> Self {
        KafkaError {
            context: context.to_string(),
            cause,
        }
    }

    /// What belofte was doing.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The underlying rdkafka error.
    pub fn rdkafka(&self) -> &rdkafka::error::KafkaError {
        &self.cause
    }

    /// A fatal error leaves the client unusable: the daemon should stop (and be restarted)
    /// rather than retry.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self.cause,
            rdkafka::error::KafkaError::MessageConsumptionFatal(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_fill_what_is_not_given() {
        let cfg: KafkaConfig = toml::from_str(
            r#"
            brokers = "kafka-1:9093,kafka-2:9093"
            [properties]
            "security.protocol" = "SASL_SSL"
            "#,
        )
        .expect("valid [kafka] section");
        assert_eq!(cfg.brokers, "kafka-1:9093,kafka-2:9093");
        assert_eq!(cfg.group_id, "belofte");
        assert_eq!(cfg.topics, ["orders", "warehouse", "carrier"]);
        assert_eq!(cfg.order_keyed_topics, ["orders", "warehouse"]);
        assert_eq!(
            cfg.all_topics(),
            [
                "orders",
                "warehouse",
                "carrier",
                "belofte.by-order",
                "belofte.dead-letter",
                "belofte.actions"
            ]
        );
        assert_eq!(cfg.properties["security.protocol"], "SASL_SSL");
        assert!(toml::from_str::<KafkaConfig>("group = \"typo\"").is_err());
    }

    #[test]
    fn handles_can_be_shared_across_tasks() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Ingest>();
        shareable::<Producers>();
        shareable::<mock::EmbeddedBroker>();
    }

    /// Compiles only if the daemon can `tokio::spawn` work that awaits these.
    #[allow(dead_code)]
    fn futures_are_send(producers: &Producers, ingest: &Ingest, record: &Record) {
        fn send<F: Send>(_: F) {}
        send(producers.action("B-1001", b"{}", "id"));
        send(producers.dead_letter(record, "reason"));
        send(ingest.recv());
    }
}
