//! The deployment kit (`deploy/`) against the metrics the daemon really serves: every
//! metric that the Grafana dashboard, the Prometheus alerts and their tests name must be
//! one that `/metrics` exposes, and the gauges the alerts need are set by the daemon.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use belofte::daemon::config::{EmailBackendKind, SmsBackendKind};
use belofte::daemon::{Clock, DaemonConfig, Metrics, Overrides, Running};
use belofte::kafka::mock::EmbeddedBroker;
use belofte::kafka::KafkaConfig;
use belofte::render::Templates;
use belofte::settings;
use belofte::store::{Batch, NewMessage};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every metric of the exposition with its type, from its `# TYPE` lines. The catalogue
/// prints them for every metric, with or without samples.
fn served() -> BTreeMap<String, String> {
    served_from(&Metrics::default().render())
}

fn served_from(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

/// Every `belofte_…` identifier in a text.
fn references(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut found = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("belofte_") {
        let start = i + at;
        let mut end = start + "belofte_".len();
        while end < bytes.len() && ident(bytes[end]) {
            end += 1;
        }
        if start == 0 || !ident(bytes[start - 1]) {
            found.insert(text[start..end].to_string());
        }
        i = end;
    }
    found
}

/// The names among `refs` that the exposition does not serve. A histogram serves
/// `NAME_bucket`, `NAME_sum` and `NAME_count`; nothing else has suffixes.
fn unknown(refs: &BTreeSet<String>, served: &BTreeMap<String, String>) -> Vec<String> {
    refs.iter()
        .filter(|name| {
            if served.contains_key(name.as_str()) {
                return false;
            }
            !["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix).is_some_and(|base| served.get(base).is_some_and(|kind| kind == "histogram"))
            })
        })
        .cloned()
        .collect()
}

/// The metric a reference is about (`…_bucket` of a histogram is the histogram).
fn base_name(name: &str, served: &BTreeMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if served.get(base).is_some_and(|k| k == "histogram") {
                return base.to_string();
            }
        }
    }
    name.to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every PromQL expression of the dashboard: panel targets and template variables.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Value::String(s)) => out.push(s.clone()),
                        ("query", Value::String(s)) | ("definition", Value::String(s)) => out.push(s.clone()),
                        ("query", Value::Object(q)) => {
                            if let Some(Value::String(s)) = q.get("query") {
                                out.push(s.clone());
                            }
                        }
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

fn dashboard() -> Value {
    let path = root().join("deploy/grafana/belofte.json");
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

#[test]
fn the_extractor_tells_a_typo_from_a_served_metric() {
    let served = served();
    let refs = references(
        "sum(rate(belofte_events_totl[5m])) + histogram_quantile(0.9, rate(belofte_send_seconds_bucket[5m])) \
         + belofte_orders_bucket + xbelofte_not_a_metric + belofte_orders",
    );
    assert!(refs.contains("belofte_events_totl"));
    assert!(!refs.iter().any(|r| r.contains("not_a_metric")), "only whole identifiers: {refs:?}");
    // A misspelt counter, and a histogram suffix on a gauge, are caught; the rest is served.
    assert_eq!(unknown(&refs, &served), vec!["belofte_events_totl".to_string(), "belofte_orders_bucket".to_string()]);
}

#[test]
fn the_catalogue_serves_the_metrics_the_alerts_need() {
    let served = served();
    for (name, kind) in [
        ("belofte_render_failures_total", "counter"),
        ("belofte_outbox_due", "gauge"),
        ("belofte_outbox_oldest_seconds", "gauge"),
        ("belofte_last_event_timestamp_seconds", "gauge"),
        ("belofte_channel_paused", "gauge"),
        ("belofte_consumer_lag", "gauge"),
        ("belofte_dead_letters_total", "counter"),
        ("belofte_send_seconds", "histogram"),
    ] {
        assert_eq!(served.get(name).map(String::as_str), Some(kind), "{name} is served as a {kind}");
    }
    // Counters watched with increase() are there as 0 before the first failure.
    let text = Metrics::default().render();
    assert!(text.contains("\nbelofte_render_failures_total 0\n"), "{text}");
    assert!(text.contains("\nbelofte_dead_letters_total{why=\"rejected\"} 0\n"), "{text}");
    assert!(text.contains("\nbelofte_dead_letters_total{why=\"parked_too_long\"} 0\n"), "{text}");
}

#[test]
fn the_dashboard_queries_only_served_metrics_and_shows_them_all() {
    let served = served();
    let dashboard = dashboard();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 10, "the dashboard has its queries: {}", queries.len());
    let mut all = BTreeSet::new();
    for q in &queries {
        let refs = references(q);
        let missing = unknown(&refs, &served);
        assert!(missing.is_empty(), "deploy/grafana/belofte.json: {q:?} names metrics /metrics does not serve: {missing:?}");
        all.extend(refs);
    }
    // Every panel target asks Prometheus for something of belofte's.
    let panels = dashboard["panels"].as_array().expect("panels");
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {:?} has targets", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or("");
            assert!(!references(expr).is_empty(), "panel {:?}: {expr:?} names a belofte metric", p["title"]);
        }
    }
    let shown: BTreeSet<String> = all.iter().map(|r| base_name(r, &served)).collect();
    let unshown: Vec<&String> = served.keys().filter(|m| !shown.contains(*m)).collect();
    assert!(unshown.is_empty(), "metrics /metrics serves but the dashboard does not show: {unshown:?}");
}

#[test]
fn the_alert_rules_and_their_tests_name_only_served_metrics() {
    let served = served();
    let dir = root().join("deploy/prometheus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "rules and their tests: {files:?}");
    for f in &files {
        let refs = references(&read(f));
        assert!(!refs.is_empty(), "{} names belofte metrics", f.display());
        let missing = unknown(&refs, &served);
        assert!(missing.is_empty(), "{}: names metrics /metrics does not serve: {missing:?}", f.display());
    }
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

fn message(key: &str, channel: &str, send_at: DateTime<Utc>) -> NewMessage {
    NewMessage {
        notification_key: key.into(),
        order_id: "K-1".into(),
        kind: "delayed".into(),
        channel: channel.into(),
        recipient: None,
        send_at,
        line: "{}".into(),
    }
}

/// The real exposition of a running daemon serves the alerts' gauges, and the outbox
/// gauges count exactly the rows that are due and not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_the_outbox_age_and_the_last_event_time() {
    let broker = EmbeddedBroker::start(1).expect("embedded broker");
    broker.create_topics(&KafkaConfig::default().all_topics()).expect("topics");
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings::load(&root().join("config")).expect("config loads");
    let templates = Templates::load(&root().join("templates")).expect("templates load");
    let mut cfg = DaemonConfig::default();
    cfg.kafka.brokers = broker.bootstrap();
    cfg.kafka.group_id = "deploy-kit".into();
    cfg.database.url = format!("sqlite://{}", dir.path().join("belofte.db").display());
    cfg.email.backend = EmailBackendKind::Memory;
    cfg.sms.backend = SmsBackendKind::Memory;
    cfg.http.listen = "127.0.0.1:0".into();
    let now = Utc.with_ymd_and_hms(2026, 11, 10, 12, 0, 0).single().expect("time");
    let clock = Clock::manual(now);
    let running = Running::start(settings, templates, cfg, Overrides { clock: Some(clock.clone()), ..Overrides::default() })
        .await
        .expect("daemon starts");
    let store = Arc::clone(&running.store);
    // No dispatcher serves the `fax` channel, so these rows stay as they are: one due for
    // ten minutes, one held for an hour from now (not due).
    let batch = Batch {
        messages: vec![
            message("k-due", "fax", now - chrono::Duration::minutes(10)),
            message("k-held", "fax", now + chrono::Duration::hours(1)),
        ],
        ..Batch::default()
    };
    store.commit(&batch, now).await.expect("commit");

    let metrics = http_get(running.http_addr, "/metrics").await;
    let body = metrics.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(body.contains("\nbelofte_outbox_due{channel=\"fax\"} 1\n"), "{body}");
    assert!(body.contains("\nbelofte_outbox_oldest_seconds{channel=\"fax\"} 600\n"), "{body}");
    assert!(body.contains("\nbelofte_outbox_due{channel=\"email\"} 0\n"), "every channel has a series: {body}");
    assert!(body.contains("\nbelofte_outbox_oldest_seconds{channel=\"sms\"} 0\n"), "{body}");
    let started = format!("\nbelofte_last_event_timestamp_seconds {}\n", now.timestamp());
    let mut waited = 0;
    let mut body = body.to_string();
    // The processor sets it once its state is restored, right after the start.
    while !body.contains(&started) && waited < 50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
        body = http_get(running.http_addr, "/metrics").await;
    }
    assert!(body.contains(&started), "{body}");
    assert!(body.contains("\nbelofte_render_failures_total 0\n"), "{body}");
    // Every metric of the catalogue is in the real exposition's TYPE lines.
    assert_eq!(served_from(&body), served());

    // An hour later the held row is due too, and the oldest has waited 70 minutes.
    clock.set(now + chrono::Duration::hours(1));
    let body = http_get(running.http_addr, "/metrics").await;
    assert!(body.contains("\nbelofte_outbox_due{channel=\"fax\"} 2\n"), "{body}");
    assert!(body.contains("\nbelofte_outbox_oldest_seconds{channel=\"fax\"} 4200\n"), "{body}");
    running.shutdown().await.expect("clean shutdown");
}
