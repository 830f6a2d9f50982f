//! Kafka at the edges: the consumer group that ingests events, the dead-letter and actions producers.
