//! `belofte demo`: the whole product on one machine with nothing installed. An embedded
//! Kafka broker (librdkafka's mock cluster), the daemon with email captured as `.eml` files
//! and SMS as JSON lines, and the scenario stories published into it in fast motion.
//!
//! Each story is moved by whole weeks into the current week, so weekdays, cut-offs and quiet
//! hours stay what they were; the daemon's clock then runs `speed` times faster than the
//! wall clock from the first event on.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use chrono_tz::Europe::Amsterdam;
use serde_json::Value;

use belofte_core::domain::Instant;
use belofte_core::event::parse_time;
use belofte::daemon::config::{EmailBackendKind, SmsBackendKind};
use belofte::daemon::{Clock, DaemonConfig, Overrides, Running};
use belofte::kafka::mock::EmbeddedBroker;
use belofte::render::Templates;
use belofte::settings::Settings;

/// One event to publish: when, where, with which key.
struct Planned {
    at: Instant,
    topic: &'static str,
    key: String,
    payload: Vec<u8>,
    story: String,
}

/// Move every RFC 3339 timestamp in a JSON value by `shift`.
fn shift_times(v: &mut Value, shift: chrono::Duration) {
    match v {
        Value::String(s) => {
            if let Some(t) = parse_time(s) {
                *s = (t + shift).with_timezone(&Amsterdam).to_rfc3339();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| shift_times(i, shift)),
        Value::Object(map) => map.values_mut().for_each(|i| shift_times(i, shift)),
        _ => {}
    }
}

pub(crate) fn topic_and_key(event: &Value) -> (&'static str, String) {
    let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
    let data = event.get("data");
    let field = |name: &str| data.and_then(|d| d.get(name)).and_then(Value::as_str).unwrap_or("").to_string();
    if kind.starts_with("order.") {
        ("orders", field("order_id"))
    } else if kind.starts_with("warehouse.") {
        ("warehouse", if kind == "warehouse.incident" { field("warehouse") } else { field("order_id") })
    } else {
        ("carrier", if kind == "carrier.incident" { field("carrier") } else { field("tracking_number") })
    }
}

/// The stories of a folder, shifted into this week, in publishing order.
fn plan(dir: &Path, now: Instant) -> Result<Vec<Planned>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("scenario folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut planned = Vec::new();
    for file in files {
        let story = file.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        let text = std::fs::read_to_string(&file)?;
        let first = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|v| v.get("time").and_then(Value::as_str).and_then(parse_time));
        let Some(first) = first else { continue };
        // Whole weeks, so that the story lands in the week before now.
        let weeks = ((now - first).num_days() as f64 / 7.0).floor() as i64;
        let shift = chrono::Duration::weeks(weeks);
        let mut last_at = first + shift;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Value>(line) {
                Ok(mut event) if event.get("time").and_then(Value::as_str).and_then(parse_time).is_some() => {
                    shift_times(&mut event, shift);
                    // Ids are unique per producer and story; across stories they may clash.
                    if let Some(id) = event.get_mut("id") {
                        if let Some(s) = id.as_str() {
                            *id = Value::String(format!("{story}-{s}"));
                        }
                    }
                    let at = event.get("time").and_then(Value::as_str).and_then(parse_time).unwrap_or(last_at);
                    last_at = at;
                    let (topic, key) = topic_and_key(&event);
                    planned.push(Planned { at, topic, key, payload: serde_json::to_vec(&event)?, story: story.clone() });
                }
                // A broken line goes out as it is: the demo shows it dead-lettered.
                _ => planned.push(Planned {
                    at: last_at,
                    topic: "warehouse",
                    key: String::new(),
                    payload: line.as_bytes().to_vec(),
                    story: story.clone(),
                }),
            }
        }
    }
    planned.sort_by_key(|p| p.at);
    Ok(planned)
}

/// `serve`: the console's address; the daemon stays up after the stories until Ctrl-C.
pub async fn run(settings: Settings, templates: Templates, out: Option<PathBuf>, scenarios: Option<PathBuf>, speed: f64, serve: Option<String>) -> Result<()> {
    let out = match out {
        Some(o) => o,
        None => std::env::temp_dir().join(format!("belofte-demo-{}", Utc::now().format("%Y%m%d-%H%M%S"))),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let scenarios = scenarios.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios"));
    let events = plan(&scenarios, Utc::now())?;
    let (Some(start), Some(last)) = (events.first().map(|e| e.at), events.last().map(|e| e.at)) else {
        anyhow::bail!("no stories (NAME.jsonl) in {}", scenarios.display());
    };
    // Late-delivery follow-ups come the morning after; let the clock run on for them.
    let end = last + chrono::Duration::days(2);

    eprintln!("belofte demo");
    eprintln!("  stories:  {} events from {}", events.len(), scenarios.display());
    eprintln!("  output:   {}", out.display());
    eprintln!("  speed:    {speed:.0}× ({:.0} s for {} days of stories)", (end - start).num_seconds() as f64 / speed, (end - start).num_days());

    let broker = EmbeddedBroker::start(3).context("embedded Kafka broker")?;

    let mut cfg = DaemonConfig::default();
    broker.create_topics(&cfg.kafka.all_topics()).context("topics")?;
    cfg.kafka.brokers = broker.bootstrap();
    cfg.kafka.group_id = "belofte-demo".into();
    // Fast motion: a broker wait of 500 ms would be hours of story time.
    cfg.kafka.properties.insert("fetch.wait.max.ms".into(), "5".into());
    cfg.kafka.properties.insert("fetch.error.backoff.ms".into(), "5".into());
    cfg.database.url = format!("sqlite://{}", out.join("belofte.db").display());
    cfg.email.backend = EmailBackendKind::File;
    cfg.email.file_dir = out.join("email").display().to_string();
    cfg.sms.backend = SmsBackendKind::File;
    cfg.sms.file_path = out.join("sms.jsonl").display().to_string();
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.dispatch.poll_ms = 60_000;
    let token = match &serve {
        Some(listen) => {
            cfg.http.listen = listen.clone();
            let token = console_token()?;
            cfg.console.token = Some(token.clone());
            Some(token)
        }
        None => None,
    };
    let clock = Clock::scaled(start, speed);
    let running = Running::start(settings, templates, cfg, Overrides { clock: Some(clock.clone()), ..Overrides::default() })
        .await
        .context("starting the daemon")?;
    eprintln!("  daemon:   http://{}/metrics", running.http_addr);
    // The story starts once the consumer has its partitions (the embedded broker takes a
    // few seconds to form the group).
    let waited = std::time::Instant::now();
    while running.ingest.assigned_partitions() == 0 && waited.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    clock.resume();
    eprintln!();

    let total = events.len();
    let mut published = 0usize;
    let mut pending = events.into_iter().peekable();
    let mut stories: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        let now = clock.now();
        while let Some(e) = pending.next_if(|e| e.at <= now) {
            let key = (!e.key.is_empty()).then_some(e.key.as_bytes());
            broker.produce(e.topic, key, &e.payload).context("publishing a story event")?;
            *stories.entry(e.story).or_default() += 1;
            published += 1;
        }
        let sent = running.shared.metrics.counter("belofte_sends_total", &[("channel", "email"), ("result", "sent")])
            + running.shared.metrics.counter("belofte_sends_total", &[("channel", "sms"), ("result", "sent")]);
        progress(now, start, end, published, total, sent as u64);
        if now >= end && pending.peek().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the last sends land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!();
    let store = running.store.clone();
    let shared = running.shared.clone();
    if let Some(token) = token {
        summary(&store, &shared, &out, stories.len()).await?;
        println!();
        println!("  Console: http://{}/console/  (log in with any name and the token {token})", running.http_addr);
        println!("  API:     curl -H 'Authorization: Bearer {token}' http://{}/api/outbox", running.http_addr);
        println!("  Ctrl-C stops the daemon.");
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
        running.shutdown().await.context("stopping the daemon")?;
        return Ok(());
    }
    running.shutdown().await.context("stopping the daemon")?;
    summary(&store, &shared, &out, stories.len()).await
}

/// The console's token for `demo --serve`: the configured one (`BELOFTE__CONSOLE__TOKEN`),
/// else a new random one for this run.
fn console_token() -> Result<String> {
    if let Ok(t) = std::env::var("BELOFTE__CONSOLE__TOKEN") {
        if t.chars().count() >= 16 {
            return Ok(t);
        }
        anyhow::bail!("BELOFTE__CONSOLE__TOKEN is shorter than 16 characters");
    }
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(|_| anyhow::anyhow!("no random source for the console token"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn progress(now: Instant, start: Instant, end: Instant, published: usize, total: usize, sent: u64) {
    let span = (end - start).num_seconds().max(1) as f64;
    let done = ((now - start).num_seconds() as f64 / span).clamp(0.0, 1.0);
    let width = 30;
    let filled = (done * width as f64) as usize;
    let local = now.with_timezone(&Amsterdam).format("%a %d %b %H:%M");
    eprint!(
        "\r  [{}{}] {local}  events {published}/{total}  messages delivered {sent}   ",
        "#".repeat(filled),
        "-".repeat(width - filled)
    );
    let _ = std::io::stderr().flush();
}

async fn summary(store: &belofte::store::Store, shared: &belofte::daemon::Shared, out: &Path, stories: usize) -> Result<()> {
    let rows = store.outbox().await?;
    println!("What the customers were told ({} stories; times are story time, Europe/Amsterdam):", stories);
    println!();
    let mut by_order: BTreeMap<String, Vec<&belofte::store::OutboxView>> = BTreeMap::new();
    for r in &rows {
        by_order.entry(r.order_id.clone()).or_default().push(r);
    }
    for (order, rows) in &by_order {
        println!("  {order}");
        for r in rows {
            let when = DateTime::parse_from_rfc3339(&r.send_at)
                .map(|t| t.with_timezone(&Amsterdam).format("%a %d %b %H:%M").to_string())
                .unwrap_or_else(|_| r.send_at.clone());
            let line: Value = serde_json::from_str(&r.line).unwrap_or(Value::Null);
            let what = match r.channel.as_str() {
                "email" => line.get("subject").and_then(Value::as_str).unwrap_or("").to_string(),
                "sms" => line.get("text").and_then(Value::as_str).unwrap_or("").chars().take(70).collect::<String>() + "…",
                _ => {
                    let data = line.get("data");
                    match r.kind.as_str() {
                        "compensation" => format!("voucher +€{}", data.and_then(|d| d.get("amount_eur")).and_then(Value::as_u64).unwrap_or(0)),
                        _ => format!("to a person: {}", data.and_then(|d| d.get("why")).and_then(Value::as_str).unwrap_or("")),
                    }
                }
            };
            let to = r.recipient.clone().unwrap_or_else(|| "belofte.actions".into());
            println!("    {when}  {:<22} {:<5} {:<28} {what}  [{}]", r.kind, r.channel, to, r.status);
        }
    }
    let rejected = shared.metrics.counter("belofte_dead_letters_total", &[("why", "rejected")]);
    println!();
    println!("  {} messages to {} orders; {} broken events dead-lettered (see belofte.dead-letter).", rows.len(), by_order.len(), rejected);
    println!("  Email:  {}/*.eml", out.join("email").display());
    println!("  SMS:    {}", out.join("sms.jsonl").display());
    println!("  State:  {}", out.join("belofte.db").display());
    Ok(())
}
