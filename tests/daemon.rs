//! The daemon against real protocol peers on loopback: an embedded Kafka broker
//! (librdkafka's mock cluster), an SMTP server, an HTTP double of Twilio, and SQLite files
//! or PostgreSQL databases.

mod backends;
mod support;

use std::path::Path;
use std::time::Duration;

use belofte_core::event::parse_time;
use belofte::render::line::Line;
use belofte::daemon::{Clock, DaemonConfig, Overrides, Running};
use belofte::kafka::mock::EmbeddedBroker;
use serde_json::Value;
use support::{config_at, eventually, eventually_async, feed, peers, processed, route, seen_by_customer, settings, settings_now, simulated, stories, templates, Peers};
use testkit::smtp::{DataAnswer, SmtpScript};
use testkit::twilio::TwilioAnswer;

fn broker() -> EmbeddedBroker {
    support::broker(3)
}

fn config(broker: &EmbeddedBroker, db: &Path, peers: &Peers, group: &str) -> DaemonConfig {
    config_at(broker, &format!("sqlite://{}", db.display()), peers, group)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_delivers_exactly_what_simulate_decides() {
    let broker = broker();
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let lines = stories(&["kpn_slips", "webshop_18h", "delivery_failed", "storm_incident"]);
    let first = parse_time(serde_json::from_str::<Value>(&lines[0]).expect("json")["time"].as_str().expect("t")).expect("t");
    let last = parse_time(serde_json::from_str::<Value>(lines.last().expect("l")).expect("json")["time"].as_str().expect("t")).expect("t");
    let until = last + chrono::Duration::days(3);
    let expected = simulated(&lines, until);

    let clock = Clock::manual(first);
    let cfg = config(&broker, &dir.path().join("belofte.db"), &peers, "e2e");
    let running = Running::start(settings(), templates(), cfg, Overrides { clock: Some(clock.clone()), ..Default::default() })
        .await
        .expect("daemon starts");
    feed(&broker, &running, &clock, &lines, 0).await;
    clock.set(until);
    let want_email = expected.iter().filter(|l| l.channel == "email").count();
    let want_sms = expected.iter().filter(|l| l.channel == "sms").count();
    let want_events = expected.iter().filter(|l| l.channel == "event").count();
    assert!(want_email >= 8 && want_sms >= 5 && want_events >= 5, "the stories decide enough to compare: {want_email} {want_sms} {want_events}");
    peers.smtp.wait_for_accepted(want_email, Duration::from_secs(30)).await;
    peers.twilio.wait_for_messages(want_sms, Duration::from_secs(30)).await;
    let store = running.store.clone();
    eventually_async("every outbox row sent", Duration::from_secs(30), || {
        let store = store.clone();
        async move { store.outbox().await.map(|rows| rows.len() == want_email + want_sms + want_events && rows.iter().all(|r| r.status == "sent")).unwrap_or(false) }
    })
    .await;

    // The same words, at the same moments, to the same people as simulate.
    let rows = running.store.outbox().await.expect("outbox");
    let mut got: Vec<String> = rows
        .iter()
        .filter(|r| r.channel != "event")
        .map(|r| seen_by_customer(&serde_json::from_str::<Line>(&r.line).expect("line")))
        .collect();
    let mut want: Vec<String> = expected.iter().filter(|l| l.channel != "event").map(seen_by_customer).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);

    // The SMTP server got each email once, as multipart text + HTML with a stable id.
    let mails = peers.smtp.accepted();
    assert_eq!(mails.len(), want_email);
    let mut keys: Vec<String> = mails.iter().map(|m| m.header("X-Belofte-Key").expect("key header")).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), want_email, "no email twice");
    let hofman = mails.iter().find(|m| m.rcpt_to.iter().any(|r| r.contains("ingrid.hoekstra"))).expect("the formal customer's email");
    assert!(hofman.header("From").expect("from").contains("klantenservice@hofman.example"));
    assert!(hofman.header("Message-ID").expect("message id").contains("@belofte."));
    assert!(hofman.data.contains("multipart/alternative") && hofman.data.contains("text/plain") && hofman.data.contains("text/html"));

    // Twilio got each SMS once, with the account's credentials and the brand as sender.
    let posts = peers.twilio.posts();
    assert_eq!(posts.len(), want_sms);
    for p in &posts {
        assert_eq!(p.basic_auth.as_ref().map(|(u, s)| (u.as_str(), s.as_str())), Some(("ACtest", "token-secret")));
        assert!(p.field("To").is_some_and(|t| t.starts_with('+')));
    }
    let bodies: Vec<&str> = posts.iter().filter_map(|p| p.field("Body")).collect();
    for l in expected.iter().filter(|l| l.channel == "sms") {
        assert!(bodies.contains(&l.text.as_deref().unwrap_or("")), "SMS sent as simulated: {:?}", l.text);
    }
    assert!(posts.iter().any(|p| p.field("From") == Some("Hofman")), "the brand's sender id");

    // Escalations and vouchers went to the actions topic as CloudEvents.
    let actions = broker.consume_all("belofte.actions", Duration::from_secs(10));
    assert_eq!(actions.len(), want_events);
    let kinds: Vec<String> = actions
        .iter()
        .map(|(_, payload, _)| serde_json::from_slice::<Value>(payload).expect("cloudevent")["type"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(kinds.iter().any(|k| k == "belofte.escalation") && kinds.iter().any(|k| k == "belofte.compensation"));

    // Operations: health, readiness and metrics answer.
    let metrics = http_get(running.http_addr, "/metrics").await;
    assert!(metrics.contains("belofte_events_total{type=\"carrier.exception\",outcome=\"applied\"}"), "{metrics}");
    assert!(metrics.contains("belofte_sends_total{channel=\"email\",result=\"sent\"}"));
    assert!(metrics.contains("belofte_event_seconds_bucket"));
    assert!(http_get(running.http_addr, "/healthz").await.contains("ok"));
    running.shutdown().await.expect("clean shutdown");
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_stream_loses_nothing_and_sends_nothing_twice() {
    let broker = broker();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("belofte.db");
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let lines = stories(&["kpn_slips", "switch_laptop", "bol_preorder", "silence"]);
    let first = parse_time(serde_json::from_str::<Value>(&lines[0]).expect("json")["time"].as_str().expect("t")).expect("t");
    let last = parse_time(serde_json::from_str::<Value>(lines.last().expect("l")).expect("json")["time"].as_str().expect("t")).expect("t");
    let until = last + chrono::Duration::days(3);
    let expected = simulated(&lines, until);
    let half = lines.len() / 2;

    let clock = Clock::manual(first);
    let start = |clock: Clock| {
        let cfg = config(&broker, &db, &peers, "crash");
        Running::start(settings(), templates(), cfg, Overrides { clock: Some(clock), ..Default::default() })
    };
    let running = start(clock.clone()).await.expect("daemon starts");
    feed(&broker, &running, &clock, &lines[..half], 0).await;
    // Crash: no shutdown, no offset commit, sends possibly in flight.
    running.abort().await;

    let running = start(clock.clone()).await.expect("daemon restarts on the same database");
    // Records after the last committed offset come again; they are recognised and skipped.
    let replayed_or_new = |r: &Running| processed(r);
    feed(&broker, &running, &clock, &lines[half..], 0).await;
    clock.set(until);
    let want_email = expected.iter().filter(|l| l.channel == "email").count();
    let want_sms = expected.iter().filter(|l| l.channel == "sms").count();
    let store = running.store.clone();
    eventually_async("every message sent", Duration::from_secs(30), || {
        let store = store.clone();
        async move { store.outbox().await.map(|rows| rows.iter().filter(|r| r.channel != "event").filter(|r| r.status == "sent").count() == want_email + want_sms).unwrap_or(false) }
    })
    .await;
    assert!(replayed_or_new(&running) >= lines.len() - half);

    // Every email key arrived, each under one Message-ID (a send cut off by the crash is
    // repeated with the same id, which mailboxes keep once).
    let mails = peers.smtp.accepted();
    let mut by_key: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for m in &mails {
        by_key.entry(m.header("X-Belofte-Key").expect("key")).or_default().insert(m.header("Message-ID").expect("id"));
    }
    assert_eq!(by_key.len(), want_email, "every email, none lost");
    assert!(by_key.values().all(|ids| ids.len() == 1), "one Message-ID per notification");
    // Only sends in flight at the crash (at most the SMTP pool's 4 connections) are repeated.
    assert!(mails.len() <= want_email + 4, "only emails in flight at the crash are repeated: {} for {want_email}", mails.len());
    // Twilio: every SMS exactly once (a cut-off send is looked up before any resend).
    let posts = peers.twilio.posts();
    let mut bodies: Vec<(String, String)> =
        posts.iter().map(|p| (p.field("To").unwrap_or("").to_string(), p.field("Body").unwrap_or("").to_string())).collect();
    bodies.sort();
    let before = bodies.len();
    bodies.dedup();
    assert_eq!(before, bodies.len(), "no SMS twice");
    assert_eq!(bodies.len(), want_sms, "every SMS, none lost");
    running.shutdown().await.expect("clean shutdown");
}

/// An order placed now that is delayed at once: one email, one SMS (coalescing off).
fn order_now(id: &str, channels: &[&str], phone: &str) -> Vec<String> {
    support::order_now(id, "Test Klant", channels, phone)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_that_fail_get_the_right_retries_and_nothing_twice() {
    let broker = broker();
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = peers(
        SmtpScript::data([DataAnswer::temp_fail(), DataAnswer::Accept, DataAnswer::reject(), DataAnswer::DropConnection, DataAnswer::Accept]),
        vec![
            TwilioAnswer::TooManyRequests,
            TwilioAnswer::Unavailable,
            TwilioAnswer::Created,
            TwilioAnswer::Delay(Duration::from_secs(3)),
            TwilioAnswer::InvalidNumber,
        ],
    )
    .await;
    let mut cfg = config(&broker, &dir.path().join("belofte.db"), &peers, "failures");
    cfg.dispatch.batch = 1;
    let running = Running::start(settings_now(), templates(), cfg, Overrides::default()).await.expect("daemon starts");
    let store = running.store.clone();
    let mut fed = 0;
    let mut send = |id: &str, channels: &[&str], phone: &str| {
        let lines = order_now(id, channels, phone);
        for l in &lines {
            let (topic, key) = route(l);
            broker.produce(topic, key.as_deref(), l.as_bytes()).expect("produce");
        }
        fed += lines.len();
        fed
    };
    let settled = |order: &'static str, status: &'static str| {
        let store = store.clone();
        move || {
            let store = store.clone();
            async move { store.outbox().await.map(|rows| rows.iter().any(|r| r.order_id == order && r.channel != "event" && r.status == status)).unwrap_or(false) }
        }
    };

    // SMTP 451, then 250: retried once, delivered once.
    send("M-1", &["email"], "+31600000001");
    eventually_async("M-1 sent", Duration::from_secs(30), settled("M-1", "sent")).await;
    // SMTP 550: failed for good, reason recorded, not retried.
    send("M-2", &["email"], "+31600000002");
    eventually_async("M-2 failed", Duration::from_secs(30), settled("M-2", "failed")).await;
    // Connection dropped after DATA: unknown, then resent with the same Message-ID.
    send("M-3", &["email"], "+31600000003");
    eventually_async("M-3 sent", Duration::from_secs(30), settled("M-3", "sent")).await;
    // Twilio 429, 503, then 201: two retries, one message.
    send("S-1", &["sms"], "+31611111111");
    eventually_async("S-1 sent", Duration::from_secs(30), settled("S-1", "sent")).await;
    // Twilio answers after the client's timeout: unknown, looked up, found, not resent.
    send("S-2", &["sms"], "+31622222222");
    eventually_async("S-2 sent", Duration::from_secs(30), settled("S-2", "sent")).await;
    // Twilio 21211: failed for good, and the number is not tried again.
    send("S-3", &["sms"], "+31633333333");
    eventually_async("S-3 failed", Duration::from_secs(30), settled("S-3", "failed")).await;

    let rows = running.store.outbox().await.expect("outbox");
    let row = |order: &str| rows.iter().find(|r| r.order_id == order && r.channel != "event").expect("row").clone();
    assert_eq!(row("M-1").attempts, 2);
    let m2 = row("M-2");
    assert_eq!(m2.attempts, 1);
    assert!(m2.last_error.as_deref().unwrap_or("").contains("550"), "{:?}", m2.last_error);
    let m3 = row("M-3");
    assert_eq!(m3.attempts, 2);
    let m3_attempts = running.store.attempts(m3.id).await.expect("attempts");
    assert_eq!(m3_attempts.iter().map(|(o, _)| o.as_str()).collect::<Vec<_>>(), ["unknown", "sent"]);
    let m3_copies: Vec<_> = peers.smtp.messages().into_iter().filter(|m| m.rcpt_to.iter().any(|r| r.contains("M-3"))).collect();
    assert_eq!(m3_copies.len(), 2);
    assert_eq!(m3_copies[0].header("Message-ID"), m3_copies[1].header("Message-ID"), "the resend is the same message");
    assert_eq!(peers.smtp.accepted().iter().filter(|m| m.rcpt_to.iter().any(|r| r.contains("M-1"))).count(), 1);

    assert_eq!(row("S-1").attempts, 3);
    let s2 = row("S-2");
    assert_eq!(running.store.attempts(s2.id).await.expect("attempts").iter().map(|(o, _)| o.as_str()).collect::<Vec<_>>(), ["unknown", "sent"]);
    let posts_to = |n: &str| peers.twilio.posts().iter().filter(|p| p.field("To") == Some(n)).count();
    assert_eq!(posts_to("+31622222222"), 1, "the timed-out SMS was found, not sent again");
    assert_eq!(peers.twilio.messages().iter().filter(|m| m.to == "+31611111111").count(), 1);
    let s3 = row("S-3");
    assert!(s3.last_error.as_deref().unwrap_or("").contains("21211"));
    assert_eq!(
        running.store.suppressed("sms", "+31633333333").await.expect("suppressions").map(|r| r.contains("21211")),
        Some(true)
    );
    // A later SMS to the refused number is not even tried.
    let before = posts_to("+31633333333");
    send("S-4", &["sms"], "+31633333333");
    eventually_async("S-4 failed", Duration::from_secs(30), settled("S-4", "failed")).await;
    assert_eq!(posts_to("+31633333333"), before);
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_are_dead_lettered_and_a_second_instance_is_refused() {
    let broker = broker();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("belofte.db");
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let running = Running::start(settings_now(), templates(), config(&broker, &db, &peers, "bad"), Overrides::default())
        .await
        .expect("daemon starts");
    for bad in [
        "this is not json".to_string(),
        r#"{"specversion":"1.0","id":"x1","source":"/t","type":"warehouse.picked","time":"2026-11-23T10:00:00+01:00","data":{}}"#.to_string(),
        r#"{"specversion":"1.0","id":"x2","source":"/t","type":"warehouse.teleported","time":"2026-11-23T10:00:00+01:00","data":{"order_id":"B"}}"#.to_string(),
    ] {
        broker.produce("warehouse", None, bad.as_bytes()).expect("produce");
    }
    for l in order_now("G-1", &["email"], "+31600000009") {
        let (topic, key) = route(&l);
        broker.produce(topic, key.as_deref(), l.as_bytes()).expect("produce");
    }
    // The consumer went on: the good order after the bad events is delivered.
    peers.smtp.wait_for_accepted(1, Duration::from_secs(30)).await;
    // Partitions are consumed side by side: the good order's partition may be done before
    // a bad event's. Each dead letter is counted once the broker has acknowledged it.
    let rejected = || running.shared.metrics.counter("belofte_dead_letters_total", &[("why", "rejected")]);
    eventually("three dead letters acknowledged", Duration::from_secs(30), || rejected() >= 3.0).await;
    let dead = broker.consume_all("belofte.dead-letter", Duration::from_secs(10));
    assert_eq!(dead.len(), 3);
    let reasons: Vec<String> = dead
        .iter()
        .map(|(_, _, headers)| {
            headers.iter().find(|(k, _)| k == "belofte-reason").map(|(_, v)| String::from_utf8_lossy(v).to_string()).unwrap_or_default()
        })
        .collect();
    for needle in ["not JSON", "missing field `order_id`", "unknown event type `warehouse.teleported`"] {
        assert!(reasons.iter().any(|r| r.contains(needle)), "{needle} in {reasons:?}");
    }
    assert_eq!(running.shared.metrics.counter("belofte_events_total", &[("type", "unknown"), ("outcome", "rejected")]), 3.0);

    // SQLite is single-instance: a second daemon on the same file says so and stops.
    let second = Running::start(settings_now(), templates(), config(&broker, &db, &peers, "bad"), Overrides::default()).await;
    let err = second.err().expect("the second instance is refused").to_string();
    assert!(err.contains("another belofte instance") && err.contains("PostgreSQL"), "{err}");
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_is_waited_out_and_reported_not_ready() {
    let broker = broker();
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let mut cfg = config(&broker, &dir.path().join("belofte.db"), &peers, "outage");
    // Keep the group membership through the outage (the default session timeout).
    cfg.kafka.properties.remove("session.timeout.ms");
    let running = Running::start(settings_now(), templates(), cfg, Overrides::default()).await.expect("daemon starts");
    for l in order_now("O-1", &["email"], "+31600000001") {
        let (topic, key) = route(&l);
        broker.produce(topic, key.as_deref(), l.as_bytes()).expect("produce");
    }
    peers.smtp.wait_for_accepted(1, Duration::from_secs(30)).await;
    let ready = |addr| async move { http_get(addr, "/readyz").await.starts_with("HTTP/1.1 200") };
    assert!(ready(running.http_addr).await);

    broker.set_down(true).expect("broker down");
    let addr = running.http_addr;
    eventually_async("not ready while the broker is down", Duration::from_secs(30), || async move { !ready(addr).await }).await;
    assert!(http_get(addr, "/readyz").await.contains("kafka broker unreachable"));
    broker.set_down(false).expect("broker up");
    for l in order_now("O-2", &["email"], "+31600000002") {
        let (topic, key) = route(&l);
        broker.produce(topic, key.as_deref(), l.as_bytes()).expect("produce");
    }
    peers.smtp.wait_for_accepted(2, Duration::from_secs(60)).await;
    eventually_async("ready again", Duration::from_secs(30), || async move { ready(addr).await }).await;
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_from_a_clock_two_days_ahead_is_dead_lettered_and_the_next_real_one_applied() {
    let broker = broker();
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let running = Running::start(settings_now(), templates(), config(&broker, &dir.path().join("belofte.db"), &peers, "skew"), Overrides::default())
        .await
        .expect("daemon starts");
    let lines = order_now("F-1", &["email"], "+31600000011");
    let (topic, key) = route(&lines[0]);
    broker.produce(topic, key.as_deref(), lines[0].as_bytes()).expect("produce");
    // A producer whose clock is two days ahead says the order is delayed.
    let ahead = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let future = format!(
        r#"{{"specversion":"1.0","id":"F-1-future","source":"/warehouse/tilburg","type":"warehouse.delayed","time":"{ahead}","data":{{"order_id":"F-1","reason":"capacity","expected_ship_at":null}}}}"#
    );
    broker.produce("warehouse", Some(b"F-1"), future.as_bytes()).expect("produce");
    // Then the real fact, stamped now.
    broker.produce("warehouse", Some(b"F-1"), lines[1].as_bytes()).expect("produce");
    peers.smtp.wait_for_accepted(1, Duration::from_secs(30)).await;
    let dead = broker.consume_all("belofte.dead-letter", Duration::from_secs(10));
    assert_eq!(dead.len(), 1, "only the event from the future is dead-lettered");
    let reason = dead[0].2.iter().find(|(k, _)| k == "belofte-reason").map(|(_, v)| String::from_utf8_lossy(v).to_string()).unwrap_or_default();
    assert!(reason.contains("ahead of its arrival") && reason.contains("max_future_skew"), "{reason}");
    assert_eq!(running.shared.metrics.counter("belofte_events_total", &[("type", "warehouse.delayed"), ("outcome", "rejected")]), 1.0);
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_database_url_of_another_kind_is_refused_and_never_taken_for_a_file_name() {
    let url = "mysql://belofte:secret@127.0.0.1:3306/belofte";
    let refused = belofte::store::Store::open(url).await.err().expect("refused").to_string();
    assert!(refused.contains("mysql:// is not supported") && refused.contains("sqlite://") && refused.contains("postgres://"), "{refused}");
    assert!(!refused.contains("secret"), "the password is not repeated: {refused}");
    // Before, such a URL was taken for a path: a SQLite file `mysql:/belofte:secret@…`.
    assert!(!std::path::Path::new("mysql:").exists(), "no file was created");
}

on_both_backends!(an_sms_the_provider_takes_late_is_found_after_a_crash_not_sent_again);

/// Twilio takes the request, the instance is killed while it waits for the answer, Twilio
/// creates the message only then. The restarted instance leaves the row alone until the
/// lease of the killed attempt ran out — by then Twilio's timeout has passed since the
/// request — and its look-up finds the message instead of sending it again.
async fn an_sms_the_provider_takes_late_is_found_after_a_crash_not_sent_again(db: &backends::Db) {
    let broker = broker();
    let late = Duration::from_millis(1800);
    let peers = peers(SmtpScript::accept_all(), vec![TwilioAnswer::ProcessedLate(late)]).await;
    let mut cfg = config_at(&broker, &db.url, &peers, "late");
    // The double answers within Twilio's timeout, as Twilio does (here after the kill).
    cfg.sms.twilio.timeout_secs = 2;
    let start = || Running::start(settings_now(), templates(), cfg.clone(), Overrides::default());
    let running = start().await.expect("daemon starts");
    for l in order_now("L-1", &["sms"], "+31644444444") {
        let (topic, key) = route(&l);
        broker.produce(topic, key.as_deref(), l.as_bytes()).expect("produce");
    }
    eventually("the SMS request at Twilio", Duration::from_secs(30), || peers.twilio.posts().len() == 1).await;
    running.abort().await;
    assert!(peers.twilio.messages().is_empty(), "killed before Twilio created the message");

    let running = start().await.expect("daemon restarts on the same database");
    let store = running.store.clone();
    eventually_async("the SMS row settled", Duration::from_secs(30), || {
        let store = store.clone();
        async move { store.outbox().await.map(|rows| rows.iter().any(|r| r.channel == "sms" && r.status == "sent")).unwrap_or(false) }
    })
    .await;
    let created = peers.twilio.messages();
    assert_eq!(created.len(), 1, "the customer got the SMS once");
    assert_eq!(peers.twilio.posts().len(), 1, "and it was not sent again");
    let row = running.store.outbox().await.expect("outbox").into_iter().find(|r| r.channel == "sms").expect("the SMS row");
    assert_eq!(row.provider_id.as_deref(), Some(created[0].sid.as_str()), "the look-up found Twilio's message");
    running.shutdown().await.expect("clean shutdown");
}
