//! What the daemon's end-to-end tests share: the configuration, templates and settings of
//! the repository, the protocol peers (an SMTP server and a Twilio double), a daemon
//! configuration pointed at them and at an embedded broker, how a producer routes an event
//! line, waiting for a condition, and what `simulate` decides for a stream.
#![allow(dead_code)]

pub mod week;

use std::path::{Path, PathBuf};
use std::time::Duration;

use belofte::channels::{SmtpConfig, Tls, TwilioConfig};
use belofte::daemon::config::{EmailBackendKind, SmsBackendKind};
use belofte::daemon::{Clock, DaemonConfig, Running};
use belofte::kafka::mock::EmbeddedBroker;
use belofte::kafka::KafkaConfig;
use belofte::render::line::Line;
use belofte::render::Templates;
use belofte::settings::{self, Settings};
use belofte::simulate::Simulation;
use belofte_core::domain::Instant;
use belofte_core::event::parse_time;
use serde_json::Value;
use testkit::smtp::{SmtpHandle, SmtpScript, SmtpServer};
use testkit::twilio::{TwilioAnswer, TwilioDouble, TwilioHandle};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn settings() -> Settings {
    settings::load(&root().join("config")).expect("config loads")
}

pub fn templates() -> Templates {
    Templates::load(&root().join("templates")).expect("templates load")
}

/// The providers every instance of a test sends to: one SMTP server, one Twilio.
pub struct Peers {
    pub smtp_port: u16,
    pub smtp: SmtpHandle,
    pub twilio_url: String,
    pub twilio: TwilioHandle,
}

pub async fn peers(smtp: SmtpScript, twilio: Vec<TwilioAnswer>) -> Peers {
    let (addr, smtp) = SmtpServer::start(smtp).await;
    let (twilio_url, twilio) = TwilioDouble::start(twilio).await;
    Peers { smtp_port: addr.port(), smtp, twilio_url, twilio }
}

/// A daemon on `broker`, the database at `database_url` and `peers`, in consumer group `group`,
/// with short polls, backoffs and leases so that tests run in seconds.
pub fn config_at(broker: &EmbeddedBroker, database_url: &str, peers: &Peers, group: &str) -> DaemonConfig {
    let mut cfg = DaemonConfig::default();
    cfg.kafka.brokers = broker.bootstrap();
    cfg.kafka.group_id = group.into();
    cfg.kafka.properties.insert("fetch.wait.max.ms".into(), "10".into());
    cfg.kafka.properties.insert("session.timeout.ms".into(), "6000".into());
    cfg.database.url = database_url.to_string();
    cfg.email.backend = EmailBackendKind::Smtp;
    cfg.email.smtp = SmtpConfig { host: "127.0.0.1".into(), port: peers.smtp_port, tls: Tls::None, timeout_secs: 2, ..SmtpConfig::default() };
    cfg.sms.backend = SmsBackendKind::Twilio;
    cfg.sms.twilio = TwilioConfig {
        base_url: peers.twilio_url.clone(),
        account_sid: "ACtest".into(),
        auth_token: Some("token-secret".into()),
        from: Some("Belofte".into()),
        timeout_secs: 1,
        ..TwilioConfig::default()
    };
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.dispatch.poll_ms = 20;
    cfg.dispatch.backoff_base_ms = 20;
    cfg.dispatch.backoff_cap_ms = 200;
    cfg.dispatch.unknown_recheck_secs = 0;
    // Sends cut off by a crash are taken over when their lease runs out: the longest
    // attempt (SMTP 4 × 2 s, Twilio 3 × 1 s) plus this.
    cfg.dispatch.lease_margin_secs = 1;
    cfg
}

/// An embedded broker with every topic belofte uses, each of `partitions` partitions.
pub fn broker(partitions: i32) -> EmbeddedBroker {
    let b = EmbeddedBroker::start(partitions).expect("embedded broker");
    b.create_topics(&KafkaConfig::default().all_topics()).expect("topics");
    b
}

/// Topic and key of an event line, as a producer would choose them.
pub fn route(line: &str) -> (&'static str, Option<Vec<u8>>) {
    let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    let kind = v["type"].as_str().unwrap_or("");
    let key = |f: &str| v["data"][f].as_str().map(|s| s.as_bytes().to_vec());
    if kind.starts_with("order.") {
        ("orders", key("order_id"))
    } else if kind.starts_with("warehouse.") {
        ("warehouse", key("order_id").or_else(|| key("warehouse")))
    } else {
        ("carrier", key("tracking_number").or_else(|| key("carrier")))
    }
}


pub fn processed(r: &Running) -> usize {
    r.shared.metrics.counter_total("belofte_events_total") as usize
}

/// Several stories merged into one stream in time order (the daemon sees one world).
pub fn stories(names: &[&str]) -> Vec<String> {
    let mut lines: Vec<(chrono::DateTime<chrono::Utc>, usize, String)> = Vec::new();
    for name in names {
        let text = std::fs::read_to_string(root().join(format!("tests/scenarios/{name}.jsonl"))).expect("story");
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut v: Value = serde_json::from_str(l).expect("valid story line");
            let t = parse_time(v["time"].as_str().expect("time")).expect("rfc3339");
            // Event ids are unique per story's producers, not across stories.
            let id = format!("{name}-{}", v["id"].as_str().expect("id"));
            v["id"] = Value::String(id);
            lines.push((t, lines.len(), v.to_string()));
        }
    }
    lines.sort();
    lines.into_iter().map(|(_, _, l)| l).collect()
}

/// Feed a stream on a hand-set clock, each event at its own time, waiting for each.
pub async fn feed(broker: &EmbeddedBroker, running: &Running, clock: &Clock, lines: &[String], from: usize) {
    for (i, line) in lines.iter().enumerate() {
        let v: Value = serde_json::from_str(line).expect("json");
        clock.set(parse_time(v["time"].as_str().expect("time")).expect("time"));
        let (topic, key) = route(line);
        broker.produce(topic, key.as_deref(), line.as_bytes()).expect("produce");
        let want = from + i + 1;
        eventually("the event to be processed", Duration::from_secs(30), || processed(running) >= want).await;
    }
}


pub async fn eventually(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn eventually_async<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !f().await {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What `simulate` prints for the same stream, as parsed lines.
pub fn simulated(lines: &[String], until: Instant) -> Vec<Line> {
    simulated_with(&settings(), lines, until)
}

/// What `simulate` prints for the same stream under the settings `s`.
pub fn simulated_with(s: &Settings, lines: &[String], until: Instant) -> Vec<Line> {
    let t = templates();
    let input = lines.join("\n");
    let mut out = Vec::new();
    let mut err = Vec::new();
    Simulation::new(&s.policy, &t).run(input.as_bytes(), Some(until), &mut out, &mut err, "test").expect("simulate");
    String::from_utf8(out).expect("utf8").lines().map(|l| serde_json::from_str(l).expect("line")).collect()
}

/// The fields a customer sees, to compare the daemon's outbox with simulate's lines.
pub fn seen_by_customer(l: &Line) -> String {
    format!("{} {}", l.send_at, read_by_customer(l))
}

/// What a customer reads, without when it was sent: a daemon on the wall clock decides a
/// moment after the event's time, `simulate` at it.
pub fn read_by_customer(l: &Line) -> String {
    format!("{} {} {} {:?} {:?} {:?} {:?} {:?}", l.order_id, l.kind, l.channel, l.to, l.subject, l.text, l.promise.as_ref().map(|p| &p.new), l.compensation_eur)
}

/// An order placed now by `name` and its warehouse delay of four days: one notice decided at
/// once (with `settings_now`), on `channels`.
pub fn order_now(id: &str, name: &str, channels: &[&str], phone: &str) -> Vec<String> {
    let now = chrono::Utc::now();
    let t = |d: chrono::Duration| (now + d).to_rfc3339();
    let channels = serde_json::to_string(channels).expect("json");
    let name = serde_json::to_string(name).expect("json");
    vec![
        format!(
            r#"{{"specversion":"1.0","id":"{id}-p","source":"/webshop","type":"order.placed","time":"{}","data":{{"order_id":"{id}","brand":"lumen","placed_at":"{}","customer":{{"name":{name},"email":"{id}@example.nl","phone":"{phone}","locale":"nl-NL","channels":{channels}}},"shipping":{{"method":"standard","carrier":"postnl","country":"NL","postal_code":"1011AA"}},"warehouse":"tilburg","items":[{{"sku":"S","name":"Ding","qty":1}}],"promise":{{"deliver_by":"{}"}}}}}}"#,
            t(chrono::Duration::zero()),
            t(chrono::Duration::zero()),
            t(chrono::Duration::days(2))
        ),
        format!(
            r#"{{"specversion":"1.0","id":"{id}-d","source":"/warehouse/tilburg","type":"warehouse.delayed","time":"{}","data":{{"order_id":"{id}","reason":"capacity","expected_ship_at":"{}"}}}}"#,
            t(chrono::Duration::zero()),
            t(chrono::Duration::days(6))
        ),
    ]
}

/// The configuration folder of a `belofte run` process, as an operator writes it:
/// `local.toml` beside the shipped `default.toml`, with this machine's broker, database,
/// consumer group and providers, short polls, backoffs and leases, and the policy of
/// `settings_now` (it speaks at once at any hour: the wall clock runs these tests).
pub fn process_config(dir: &Path, broker: &str, database_url: &str, group: &str, smtp_port: u16, twilio_url: &str) -> PathBuf {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    std::fs::copy(root().join("config/default.toml"), config.join("default.toml")).expect("default.toml");
    let policy = settings_now().policy;
    std::fs::write(
        config.join("local.toml"),
        format!(
            r#"
[policy]
coalesce_seconds = {coalesce}
quiet_from = "{quiet}"
quiet_until = "{quiet}"
max_notices_per_day = {cap}
[database]
url = "{database_url}"
[kafka]
brokers = "{broker}"
group_id = "{group}"
[kafka.properties]
"fetch.wait.max.ms" = "10"
"session.timeout.ms" = "6000"
# An action being published by an instance that is killed is held for its lease: this
# (300 s by librdkafka's default) plus 30 s for room in the local queue.
"message.timeout.ms" = "5000"
[email]
backend = "smtp"
[email.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
timeout_secs = 2
[sms]
backend = "twilio"
[sms.twilio]
base_url = "{twilio_url}"
account_sid = "ACtest"
auth_token = "secret"
from = "Belofte"
timeout_secs = 1
[http]
listen = "127.0.0.1:0"
[dispatch]
poll_ms = 20
backoff_base_ms = 20
backoff_cap_ms = 200
unknown_recheck_secs = 0
lease_margin_secs = 1
"#,
            coalesce = policy.coalesce_seconds,
            quiet = policy.quiet_until.format("%H:%M"),
            cap = policy.max_notices_per_day,
        ),
    )
    .expect("local.toml");
    config
}

/// Wall-clock settings for tests that run "now": no coalescing wait, no quiet hours, no
/// daily cap in the way.
pub fn settings_now() -> Settings {
    let mut s = settings();
    s.policy.coalesce_seconds = 0;
    s.policy.quiet_from = s.policy.quiet_until;
    s.policy.max_notices_per_day = 100;
    s
}
