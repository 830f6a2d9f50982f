//! What librdkafka tells us about the brokers: logs and errors (rate-limited, at warn), and
//! statistics from which broker health and consumer lag are derived.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

/// An unreachable broker makes librdkafka repeat the same complaint several times a second;
/// one line per distinct complaint per window is enough for an operator.
const LOG_WINDOW: Duration = Duration::from_secs(30);
/// Bounds the limiter's memory when messages vary in ways the normalisation does not catch.
const MAX_TRACKED: usize = 512;

pub(crate) struct LogLimiter {
    seen: Mutex<HashMap<String, Seen>>,
}

struct Seen {
    last_logged: Instant,
    suppressed: u64,
}

impl LogLimiter {
    pub(crate) fn new() -> Self {
        LogLimiter {
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(n)` when this message should be logged now, `n` being how many identical ones
    /// were swallowed since it was last logged; `None` to stay quiet.
    pub(crate) fn admit(&self, message: &str) -> Option<u64> {
        let key = normalise(message);
        let now = Instant::now();
        // A poisoned lock only means another thread panicked while logging; the map is
        // still a valid cache.
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_TRACKED {
            seen.retain(|_, s| now.duration_since(s.last_logged) < LOG_WINDOW);
        }
        match seen.get_mut(&key) {
            Some(s) if now.duration_since(s.last_logged) < LOG_WINDOW => {
                s.suppressed += 1;
                None
            }
            Some(s) => {
                let suppressed = s.suppressed;
                s.last_logged = now;
                s.suppressed = 0;
                Some(suppressed)
            }
            None => {
                seen.insert(
                    key,
                    Seen {
                        last_logged: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

/// librdkafka puts durations, counters and ports into otherwise identical messages, mostly
/// in a parenthesised tail: "failed: Connection refused (after 12ms in state CONNECT, 3
/// identical error(s) suppressed)". Digits and parenthesised parts do not make a message new.
fn normalise(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut depth = 0usize;
    let mut in_number = false;
    for c in message.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            c if c.is_ascii_digit() => {
                if !in_number {
                    out.push('#');
                }
                in_number = true;
                continue;
            }
            c => out.push(c),
        }
        in_number = false;
    }
    out.trim_end().to_string()
}

/// Everything the callbacks learn, shared with the handle the daemon holds.
pub(crate) struct Observed {
    client: &'static str,
    limiter: LogLimiter,
    healthy: AtomicBool,
    lag: AtomicI64,
}

impl Observed {
    pub(crate) fn new(client: &'static str) -> Self {
        Observed {
            client,
            limiter: LogLimiter::new(),
            // Not ready until a broker has been seen: /readyz must not report a daemon that
            // has never reached Kafka as ready.
            healthy: AtomicBool::new(false),
            lag: AtomicI64::new(0),
        }
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn lag(&self) -> i64 {
        self.lag.load(Ordering::Relaxed)
    }

    pub(crate) fn set_healthy(&self, healthy: bool) {
        let was = self.healthy.swap(healthy, Ordering::Relaxed);
        if was != healthy {
            if healthy {
                tracing::info!(client = self.client, "kafka brokers reachable");
            } else {
                tracing::warn!(client = self.client, "kafka brokers unreachable");
            }
        }
    }

    pub(crate) fn warn(&self, message: &str) {
        if let Some(suppressed) = self.limiter.admit(message) {
            if suppressed > 0 {
                tracing::warn!(client = self.client, suppressed, "{message}");
            } else {
                tracing::warn!(client = self.client, "{message}");
            }
        }
    }

    pub(crate) fn on_log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            // librdkafka's "error" logs are mostly connection trouble it retries on its own:
            // worth a warning, not an error per attempt.
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning
                if fac != "FAIL" =>
            {
                self.warn(&format!("librdkafka {fac}: {message}"))
            }
            // A broker connection failure is also delivered as an error event, which
            // `on_error` logs; once is enough.
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                tracing::debug!(client = self.client, "librdkafka {fac}: {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(client = self.client, "librdkafka {fac}: {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(client = self.client, "librdkafka {fac}: {message}")
            }
        }
    }

    pub(crate) fn on_error(&self, error: &RdKafkaError, reason: &str) {
        if error.rdkafka_error_code().is_some_and(means_unreachable) {
            self.set_healthy(false);
        }
        self.warn(&format!("{error}: {reason}"));
    }

    /// Brokers: healthy iff at least one real broker connection is up. Lag: high watermark
    /// minus the application's position, summed over the partitions being fetched.
    pub(crate) fn on_stats(&self, json: &[u8]) {
        let stats: Stats = match serde_json::from_slice(json) {
            Ok(stats) => stats,
            Err(e) => {
                self.warn(&format!("unreadable librdkafka statistics: {e}"));
                return;
            }
        };
        let mut real = stats
            .brokers
            .values()
            .filter(|b| b.source != "internal" && b.source != "logical")
            .peekable();
        if real.peek().is_some() {
            let up = real.any(|b| b.state == "UP");
            self.set_healthy(up);
        }
        let lag: i64 = stats
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0)
            .filter(|p| !matches!(p.fetch_state.as_str(), "none" | "stopping" | "stopped"))
            .map(|p| {
                if p.app_offset >= 0 && p.hi_offset >= 0 {
                    (p.hi_offset - p.app_offset).max(0)
                } else {
                    // Nothing handed to the application yet: measure from the committed offset.
                    p.consumer_lag.max(0)
                }
            })
            .sum();
        self.lag.store(lag, Ordering::Relaxed);
    }
}

/// Errors that mean "cannot talk to the cluster", as opposed to a problem with one request.
pub(crate) fn means_unreachable(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SSL
    )
}

/// The few fields of librdkafka's statistics JSON that belofte reads. Parsed by hand rather
/// than through `rdkafka::statistics::Statistics`, whose strict schema breaks when librdkafka
/// adds or drops a field.
#[derive(Deserialize)]
struct Stats {
    #[serde(default)]
    brokers: BTreeMap<String, BrokerStats>,
    #[serde(default)]
    topics: BTreeMap<String, TopicStats>,
}

#[derive(Deserialize)]
struct BrokerStats {
    #[serde(default)]
    source: String,
    #[serde(default)]
    state: String,
}

#[derive(Deserialize)]
struct TopicStats {
    #[serde(default)]
    partitions: BTreeMap<String, PartitionStats>,
}

#[derive(Deserialize)]
struct PartitionStats {
    #[serde(default = "minus_one")]
    partition: i32,
    #[serde(default)]
    fetch_state: String,
    #[serde(default = "minus_one_i64")]
    app_offset: i64,
    #[serde(default = "minus_one_i64")]
    hi_offset: i64,
    #[serde(default = "minus_one_i64")]
    consumer_lag: i64,
}

fn minus_one() -> i32 {
    -1
}

fn minus_one_i64() -> i64 {
    -1
}

/// The producers' context: the same quiet logging, no health of their own (the consumer's
/// view of the brokers is what /readyz reports).
pub(crate) struct ProducerObserver {
    pub(crate) observed: Observed,
}

impl ClientContext for ProducerObserver {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_messages_are_admitted_once_per_window() {
        let limiter = LogLimiter::new();
        assert_eq!(
            limiter.admit("connect to 127.0.0.1:4001 failed after 3ms"),
            Some(0)
        );
        assert_eq!(
            limiter.admit("connect to 127.0.0.1:4001 failed after 17ms"),
            None
        );
        assert_eq!(limiter.admit("something else"), Some(0));
        assert_eq!(
            limiter.admit(
                "connect to 127.0.0.1:4001 failed after 9ms (1 identical error(s) suppressed)"
            ),
            None
        );
    }

    #[test]
    fn stats_drive_health_and_lag() {
        let observed = Observed::new("test");
        let stats = br#"{"brokers":{
            ":0/internal":{"source":"internal","state":"UP"},
            "127.0.0.1:1/1":{"source":"learned","state":"UP"}},
          "topics":{"orders":{"partitions":{
            "0":{"partition":0,"fetch_state":"active","app_offset":5,"hi_offset":9,"consumer_lag":9},
            "1":{"partition":1,"fetch_state":"none","app_offset":-1001,"hi_offset":4,"consumer_lag":4},
            "2":{"partition":2,"fetch_state":"active","app_offset":-1001,"hi_offset":3,"consumer_lag":2},
            "-1":{"partition":-1,"fetch_state":"none"}}}}}"#;
        observed.on_stats(stats);
        assert!(observed.is_healthy());
        assert_eq!(observed.lag(), 6);
        let down = br#"{"brokers":{
            ":0/internal":{"source":"internal","state":"UP"},
            "127.0.0.1:1/1":{"source":"learned","state":"TRY_CONNECT"}}}"#;
        observed.on_stats(down);
        assert!(!observed.is_healthy());
    }
}
