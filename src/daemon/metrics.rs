//! Prometheus metrics, kept small and dependency-free: labelled counters, gauges and
//! fixed-bucket histograms, rendered in the text exposition format.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Latency buckets in seconds: from a fast commit to a slow provider.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), f64>>,
    gauges: Mutex<BTreeMap<(&'static str, String), f64>>,
    histograms: Mutex<BTreeMap<(&'static str, String), Histogram>>,
}

/// Counters that alerts watch with `increase()`: they are served as 0 from the start, so
/// the first failure is an increase and not a series that merely appears.
const ZERO_AT_START: &[(&str, &[(&str, &str)])] = &[
    ("belofte_dead_letters_total", &[("why", "rejected")]),
    ("belofte_dead_letters_total", &[("why", "parked_too_long")]),
    ("belofte_render_failures_total", &[]),
    ("belofte_render_fallbacks_total", &[]),
    ("belofte_render_failed_total", &[("channel", "email")]),
    ("belofte_render_failed_total", &[("channel", "sms")]),
    ("belofte_console_throttled_total", &[]),
    ("belofte_callbacks_total", &[("source", "twilio"), ("result", "forbidden")]),
    ("belofte_unreachable_total", &[]),
    ("belofte_retention_deleted_total", &[("what", "orders")]),
    ("belofte_retention_deleted_total", &[("what", "messages")]),
    ("belofte_retention_deleted_total", &[("what", "seen_ids")]),
];

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Metrics {
            counters: Mutex::default(),
            gauges: Mutex::default(),
            histograms: Mutex::default(),
        };
        for (name, pairs) in ZERO_AT_START {
            metrics.add(*name, pairs, 0.0);
        }
        metrics
    }
}

const HELP: &[(&str, &str, &str)] = &[
    ("belofte_events_total", "counter", "Events consumed, by CloudEvents type and outcome (applied, duplicate, parked, ignored, rejected, forwarded)."),
    ("belofte_forwarded_events_total", "counter", "Events forwarded to the by-order partition of the instance that owns their order, by why (partition, tracking, broadcast, order)."),
    ("belofte_dead_letters_total", "counter", "Events sent to the dead-letter topic, by why."),
    ("belofte_render_fallbacks_total", "counter", "Messages the compiled fast path left to Handlebars (a template it does not compile): the same words, slower."),
    ("belofte_render_failures_total", "counter", "Decided messages that could not be rendered (not enqueued; the log names order, kind and channel)."),
    ("belofte_render_failed_total", "counter", "Queued messages whose words could not be rendered when claimed, by channel: kept as render_failed until the wording changes."),
    ("belofte_messages_enqueued_total", "counter", "Messages decided and committed to the outbox, by channel and kind."),
    ("belofte_sends_total", "counter", "Delivery attempts, by channel and result (sent, transient, permanent, unknown, auth_failed, suppressed)."),
    ("belofte_provider_status_total", "counter", "Provider reports that changed a message's status, by channel and status (Twilio's MessageStatus; bounced, delayed, delivered, complained for email)."),
    ("belofte_callbacks_total", "counter", "Calls of the public hooks, by source (twilio, bounce) and result (recorded, unchanged, unknown_message, ignored, forbidden, unauthorized, bad_request, error)."),
    ("belofte_fallbacks_total", "counter", "Notices sent again on the other channel because the first one did not reach the customer, by from and to channel."),
    ("belofte_unreachable_total", "counter", "Notices whose every channel failed: an escalation `unreachable` was raised."),
    ("belofte_consumer_lag", "gauge", "Messages behind the end of the assigned partitions."),
    ("belofte_outbox_depth", "gauge", "Outbox rows by channel and status."),
    ("belofte_outbox_due", "gauge", "Outbox rows whose send time has passed and that are not sent yet, by channel (held SMS are not due)."),
    ("belofte_outbox_oldest_seconds", "gauge", "How long the oldest due, unsent outbox row has waited past its send time, by channel (0: none)."),
    ("belofte_last_event_timestamp_seconds", "gauge", "Unix time of the last Kafka record this instance consumed (its start until the first)."),
    ("belofte_orders", "gauge", "Orders held in memory (open ones; closed orders are remembered by id only)."),
    ("belofte_closed_orders", "gauge", "Closed orders remembered by id (until the retention sweep deletes them)."),
    ("belofte_retention_deleted_total", "counter", "Rows the retention sweep deleted, by what (orders, messages, seen_ids)."),
    ("belofte_partitions_owned", "gauge", "Partitions of the by-order topic this instance owns (their orders are the ones in memory)."),
    ("belofte_parked_events", "gauge", "Events waiting for their order or tracking number."),
    ("belofte_channel_paused", "gauge", "1 while a channel is paused because its credentials were refused."),
    ("belofte_console_throttled_total", "counter", "Client addresses refused by the console for a minute after too many wrong tokens."),
    ("belofte_wording_version", "gauge", "The published wording version in use (0: the templates and brands shipped with the release)."),
    ("belofte_ready", "gauge", "1 when the broker, the database and the dispatcher are usable."),
    ("belofte_event_seconds", "histogram", "From receiving an event to its effects committed."),
    ("belofte_send_seconds", "histogram", "One delivery attempt, by channel."),
];

fn labels(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        // Label values are mostly fixed words: escape (and allocate) only when needed.
        let v: Cow<'_, str> = if v.contains(['\\', '"', '\n']) {
            Cow::Owned(v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
        } else {
            Cow::Borrowed(v)
        };
        let _ = write!(s, "{k}=\"{v}\"");
    }
    s
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take the metrics down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    pub fn inc(&self, name: &'static str, pairs: &[(&str, &str)]) {
        self.add(name, pairs, 1.0);
    }

    pub fn add(&self, name: &'static str, pairs: &[(&str, &str)], v: f64) {
        *lock(&self.counters).entry((name, labels(pairs))).or_default() += v;
    }

    /// A counter kept elsewhere (an atomic), read out at scrape time.
    pub fn set_total(&self, name: &'static str, pairs: &[(&str, &str)], v: f64) {
        lock(&self.counters).insert((name, labels(pairs)), v);
    }

    pub fn set(&self, name: &'static str, pairs: &[(&str, &str)], v: f64) {
        lock(&self.gauges).insert((name, labels(pairs)), v);
    }

    /// Replace every series of a gauge (outbox depth: statuses that emptied must read 0).
    pub fn reset(&self, name: &'static str) {
        for ((n, _), v) in lock(&self.gauges).iter_mut() {
            if *n == name {
                *v = 0.0;
            }
        }
    }

    pub fn observe(&self, name: &'static str, pairs: &[(&str, &str)], seconds: f64) {
        self.observe_many(name, pairs, seconds, 1);
    }

    /// `n` observations of the same value at once (the events of one batch share its time).
    pub fn observe_many(&self, name: &'static str, pairs: &[(&str, &str)], seconds: f64, n: u64) {
        let mut h = lock(&self.histograms);
        let entry = h.entry((name, labels(pairs))).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                entry.counts[i] += n;
            }
        }
        entry.sum += seconds * n as f64;
        entry.count += n;
    }

    /// A counter's value (tests and the demo's summary).
    pub fn counter(&self, name: &'static str, pairs: &[(&str, &str)]) -> f64 {
        lock(&self.counters).get(&(name, labels(pairs))).copied().unwrap_or(0.0)
    }

    /// A counter summed over all its labels.
    pub fn counter_total(&self, name: &'static str) -> f64 {
        lock(&self.counters).iter().filter(|((n, _), _)| *n == name).map(|(_, v)| v).sum()
    }

    /// How many observations a histogram holds, summed over its labels (the benchmark
    /// reads `belofte_event_seconds`, observed once per event after its commit).
    pub fn histogram_count(&self, name: &'static str) -> u64 {
        lock(&self.histograms).iter().filter(|((n, _), _)| *n == name).map(|(_, h)| h.count).sum()
    }

    pub fn gauge(&self, name: &'static str, pairs: &[(&str, &str)]) -> f64 {
        lock(&self.gauges).get(&(name, labels(pairs))).copied().unwrap_or(0.0)
    }

    pub fn render(&self) -> String {
        let counters = lock(&self.counters);
        let gauges = lock(&self.gauges);
        let histograms = lock(&self.histograms);
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let series = |l: &String| if l.is_empty() { String::new() } else { format!("{{{l}}}") };
            match *kind {
                "counter" => {
                    for ((n, l), v) in counters.iter().filter(|((n, _), _)| n == name) {
                        let _ = writeln!(out, "{n}{} {v}", series(l));
                    }
                }
                "gauge" => {
                    for ((n, l), v) in gauges.iter().filter(|((n, _), _)| n == name) {
                        let _ = writeln!(out, "{n}{} {v}", series(l));
                    }
                }
                _ => {
                    for ((n, l), h) in histograms.iter().filter(|((n, _), _)| n == name) {
                        let sep = if l.is_empty() { "" } else { "," };
                        for (i, b) in BUCKETS.iter().enumerate() {
                            let _ = writeln!(out, "{n}_bucket{{{l}{sep}le=\"{b}\"}} {}", h.counts[i]);
                        }
                        let _ = writeln!(out, "{n}_bucket{{{l}{sep}le=\"+Inf\"}} {}", h.count);
                        let _ = writeln!(out, "{n}_sum{} {}", series(l), h.sum);
                        let _ = writeln!(out, "{n}_count{} {}", series(l), h.count);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{Metrics, HELP};

    #[test]
    fn a_batch_counts_each_of_its_events_and_odd_label_values_are_escaped() {
        let m = Metrics::default();
        m.observe_many("belofte_event_seconds", &[], 0.002, 5);
        m.observe("belofte_event_seconds", &[], 0.02);
        m.inc("belofte_callbacks_total", &[("source", "twilio"), ("result", "say \"hi\"\\\n")]);
        let text = m.render();
        assert!(text.contains("belofte_event_seconds_bucket{le=\"0.0025\"} 5\n"), "{text}");
        assert!(text.contains("belofte_event_seconds_bucket{le=\"0.025\"} 6\n"), "{text}");
        assert!(text.contains("belofte_event_seconds_count 6\n"), "{text}");
        assert!(text.contains("belofte_event_seconds_sum 0.03"), "{text}");
        assert!(text.contains(r#"belofte_callbacks_total{source="twilio",result="say \"hi\"\\\n"} 1"#), "{text}");
    }

    /// The names the daemon's code records, found where it calls `metrics.inc("…"` and the
    /// like in `src/`.
    fn recorded_names() -> Vec<String> {
        let mut names = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("src is readable") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("source");
                    for call in [".inc(\"", ".add(\"", ".set(\"", ".observe(\"", ".observe_many(\"", ".set_total(\""] {
                        for (at, _) in text.match_indices(call) {
                            let rest = &text[at + call.len()..];
                            if let Some(name) = rest.strip_prefix("belofte_").and_then(|r| r.split('"').next()) {
                                names.push(format!("belofte_{name}"));
                            }
                        }
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// A metric missing from `HELP` is counted and never served: an alert on it would never
    /// fire.
    #[test]
    fn every_metric_the_daemon_records_is_served() {
        let names = recorded_names();
        assert!(names.len() >= 20, "the search finds the daemon's metrics: {names:?}");
        let missing: Vec<&String> = names.iter().filter(|n| !HELP.iter().any(|(h, _, _)| h == n)).collect();
        assert!(missing.is_empty(), "recorded but not served on /metrics: {missing:?}");
    }
}
