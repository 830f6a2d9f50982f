//! Co-partitioning, checked before `belofte run` consumes anything.
//!
//! An instance owns the orders of the partitions the consumer group gives it. That holds only
//! when an order's events land on the same partition *number* in every topic keyed by order
//! id: the order-keyed event topics (`kafka.order_keyed_topics`) and the topic other events
//! are forwarded to (`kafka.by_order_topic`). Same key, same partitioner, same partition
//! count (and the Java client's partitioner, see `producers`): then partition 2 of `orders`
//! and partition 2 of `warehouse` hold the same orders, and whoever owns partition number 2
//! owns those orders. So the counts are checked here, and start-up stops with every topic and
//! its count when they differ.

use std::fmt;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use super::{KafkaConfig, KafkaError};


/// Why the topics cannot carry ownership by partition.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("kafka: reading the metadata of topic {topic}: {code}")]
    Unreadable { topic: String, code: RDKafkaErrorCode },
    #[error("{0}")]
    NotCopartitioned(Topics),
    #[error("kafka: the co-partitioning check stopped: {0}")]
    Interrupted(String),
}

impl TopologyError {
    /// The brokers did not answer (down, unresolvable, refusing our credentials, or silent
    /// past the timeout): nothing is known yet about the topics, as opposed to an answer
    /// that they are wrong.
    pub fn is_unreachable(&self) -> bool {
        match self {
            TopologyError::Kafka(e) => e.rdkafka().rdkafka_error_code().is_some_and(|c| {
                super::observe::means_unreachable(c) || matches!(c, RDKafkaErrorCode::OperationTimedOut | RDKafkaErrorCode::MessageTimedOut)
            }),
            _ => false,
        }
    }
}

/// Each topic the check looked at with its partition count (`None`: it does not exist), in
/// the order of the configuration: the order-keyed topics, then the by-order topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics(pub Vec<(String, Option<usize>)>);

impl Topics {
    /// The one partition count of all the topics, or why there is none.
    fn common_count(self) -> Result<usize, TopologyError> {
        let mut counts = self.0.iter().map(|(_, count)| *count);
        match counts.next() {
            Some(Some(first)) if counts.all(|c| c == Some(first)) => Ok(first),
            _ => Err(TopologyError::NotCopartitioned(self)),
        }
    }
}

impl fmt::Display for Topics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let listing: Vec<String> = self
            .0
            .iter()
            .map(|(topic, count)| match count {
                Some(1) => format!("{topic} has 1 partition"),
                Some(n) => format!("{topic} has {n} partitions"),
                None => format!("{topic} does not exist"),
            })
            .collect();
        write!(
            f,
            "kafka topics are not co-partitioned: {}. kafka.order_keyed_topics and \
             kafka.by_order_topic need one partition count, so that an order's events land \
             on the same partition number in each and one instance owns them all",
            listing.join(", ")
        )?;
        if self.0.iter().any(|(_, count)| count.is_none()) {
            write!(
                f,
                "; create the missing topics with that count (for development, `belofte \
                 broker` serves every configured topic)"
            )?;
        }
        Ok(())
    }
}

/// Checks that the order-keyed topics and the by-order topic all exist with one partition
/// count, and returns that count. Reads metadata only: nothing is created (auto-creation is
/// off for this client, so a missing topic is reported, not made with the broker's default).
/// `timeout` bounds the wait for each topic's metadata.
pub async fn check_copartitioned(cfg: &KafkaConfig, timeout: Duration) -> Result<usize, TopologyError> {
    let cfg = cfg.clone();
    // librdkafka's metadata calls block, and so does closing the client.
    tokio::task::spawn_blocking(move || partition_counts(&cfg, timeout))
        .await
        .map_err(|e| TopologyError::Interrupted(e.to_string()))??
        .common_count()
}

fn partition_counts(cfg: &KafkaConfig, timeout: Duration) -> Result<Topics, TopologyError> {
    let client: BaseConsumer = cfg
        .client_config(&[("allow.auto.create.topics", "false")])
        .create()
        .map_err(|e| KafkaError::new("creating the client that checks co-partitioning", e))?;
    let mut topics: Vec<&String> = Vec::new();
    for topic in cfg.order_keyed_topics.iter().chain([&cfg.by_order_topic]) {
        if !topics.contains(&topic) {
            topics.push(topic);
        }
    }
    let mut found = Vec::with_capacity(topics.len());
    for topic in topics {
        let metadata = client
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| KafkaError::new(format!("reading the metadata of topic {topic}"), e))?;
        let listed = metadata.topics().iter().find(|t| t.name() == topic.as_str());
        let count = match listed.map(|t| (t.error().map(RDKafkaErrorCode::from), t.partitions())) {
            None | Some((Some(RDKafkaErrorCode::UnknownTopicOrPartition), _)) => None,
            Some((Some(code), _)) => {
                return Err(TopologyError::Unreadable {
                    topic: topic.clone(),
                    code,
                })
            }
            Some((None, partitions)) => Some(partitions.len()),
        };
        found.push((topic.clone(), count));
    }
    Ok(Topics(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(list: &[(&str, Option<usize>)]) -> Topics {
        Topics(list.iter().map(|(t, c)| (t.to_string(), *c)).collect())
    }

    #[test]
    fn the_error_names_every_topic_with_its_count_and_hints_at_creating_missing_ones() {
        let found = topics(&[
            ("orders", Some(3)),
            ("warehouse", Some(1)),
            ("belofte.by-order", None),
        ]);
        let message = found.common_count().map_err(|e| e.to_string());
        let message = message.expect_err("not co-partitioned");
        assert!(
            message.contains(
                "orders has 3 partitions, warehouse has 1 partition, belofte.by-order does not exist"
            ),
            "{message}"
        );
        assert!(message.contains("`belofte broker`"), "{message}");
    }

    #[test]
    fn equal_counts_are_the_partition_count_and_unequal_ones_need_no_creation_hint() {
        let found = topics(&[("orders", Some(6)), ("belofte.by-order", Some(6))]);
        assert_eq!(found.common_count().ok(), Some(6));
        let differing = topics(&[("orders", Some(6)), ("belofte.by-order", Some(3))]);
        let message = differing.common_count().map_err(|e| e.to_string());
        let message = message.expect_err("6 and 3 differ");
        assert!(message.contains("orders has 6 partitions, belofte.by-order has 3 partitions"));
        assert!(!message.contains("create the missing"), "{message}");
    }
}
