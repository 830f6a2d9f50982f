//! The one task that owns the engine's state. It takes Kafka records (a poll batch at a
//! time) and timer wake-ups, runs them through the same `World` as `simulate`, commits
//! the changed states, seen ids, parked events and outbox rows in one transaction, and only
//! then stores the Kafka offsets. A crash anywhere before the commit replays the batch; a
//! crash after it finds the ids already seen.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use belofte_core::domain::{Channel, Instant};
use belofte_core::engine::Decision;
use belofte_core::event::{decode, Event};
use crate::render::line::{action_data, local_rfc3339, render_line};
use belofte_core::world::{event_key, Outcome, World};
use crate::kafka::{Ingest, Producers, Record};
use crate::store::{Batch, NewMessage, Store};

use super::{DaemonError, Shared};

/// Records taken per transaction at most: group commit without unbounded latency.
const MAX_BATCH: usize = 512;

pub async fn run(
    shared: Arc<Shared>,
    ingest: Arc<Ingest>,
    producers: Arc<Producers>,
    store: Arc<Store>,
    mut shutdown: watch::Receiver<bool>,
    wake_dispatch: Arc<Notify>,
) -> Result<(), DaemonError> {
    let policy = &shared.settings.policy;
    let mut world = World::new(policy).tracking_changes();
    let snapshot = store.load().await?;
    let restored = snapshot.orders.len();
    for key in snapshot.seen {
        world.remember_key(key);
    }
    for order in snapshot.orders {
        world.restore(order);
    }
    for (event, expires) in snapshot.parked {
        world.restore_parked(event, expires);
    }
    tracing::info!(orders = restored, parked = world.parked_count(), "state restored");
    shared.metrics.set("belofte_orders", &[], world.order_count() as f64);
    // "No events for a long time" counts from the start until the first record.
    shared.metrics.set("belofte_last_event_timestamp_seconds", &[], shared.clock.now().timestamp() as f64);

    let mut last_now: Option<Instant> = None;
    let mut broker_error_logged = false;
    loop {
        let sleep = world.next_due().map(|t| shared.clock.until(t)).unwrap_or(Duration::from_secs(60));
        let first = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            r = ingest.recv() => Some(r),
            _ = tokio::time::sleep(sleep) => None,
        };
        let mut records = Vec::new();
        match first {
            Some(Ok(r)) => {
                broker_error_logged = false;
                records.push(r);
                // Whatever else is already waiting joins this transaction.
                while records.len() < MAX_BATCH {
                    tokio::select! {
                        biased;
                        r = ingest.recv() => match r {
                            Ok(r) => records.push(r),
                            Err(e) => {
                                tracing::warn!(error = %e, "kafka receive failed");
                                break;
                            }
                        },
                        _ = std::future::ready(()) => break,
                    }
                }
            }
            Some(Err(e)) => {
                if !broker_error_logged {
                    tracing::warn!(error = %e, "kafka receive failed; retrying");
                    broker_error_logged = true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            None => {}
        }
        let now = {
            let now = shared.clock.now();
            let now = last_now.map_or(now, |l| l.max(now));
            last_now = Some(now);
            now
        };
        let started = std::time::Instant::now();
        process(&shared, &mut world, &store, &producers, &records, now).await?;
        for r in &records {
            ingest.store(r)?;
        }
        if !records.is_empty() {
            let per = started.elapsed().as_secs_f64() / records.len() as f64;
            for _ in &records {
                shared.metrics.observe("belofte_event_seconds", &[], per);
            }
            shared.metrics.set("belofte_last_event_timestamp_seconds", &[], now.timestamp() as f64);
        }
        shared.metrics.set("belofte_orders", &[], world.order_count() as f64);
        shared.metrics.set("belofte_parked_events", &[], world.parked_count() as f64);
        wake_dispatch.notify_waiters();
    }
    if let Err(e) = ingest.commit_now() {
        tracing::warn!(error = %e, "final offset commit failed; the last events will be replayed (and deduplicated)");
    }
    Ok(())
}

/// One transaction's worth: due timers, then the records, all at `now`.
async fn process(
    shared: &Shared,
    world: &mut World<'_>,
    store: &Store,
    producers: &Producers,
    records: &[Record],
    now: Instant,
) -> Result<(), DaemonError> {
    let metrics = &shared.metrics;
    let mut effects = world.advance(now);
    let mut batch = Batch::default();
    let mut dead: Vec<(Record, String)> = Vec::new();
    for r in records {
        let Some(payload) = r.payload.as_deref() else {
            metrics.inc("belofte_events_total", &[("type", "unknown"), ("outcome", "rejected")]);
            dead.push((r.clone(), "empty record (no payload)".into()));
            continue;
        };
        let event = match decode(payload) {
            Ok(e) => e,
            Err(reason) => {
                tracing::warn!(topic = %r.topic, partition = r.partition, offset = r.offset, %reason, "event rejected");
                metrics.inc("belofte_events_total", &[("type", "unknown"), ("outcome", "rejected")]);
                dead.push((r.clone(), reason.to_string()));
                continue;
            }
        };
        let kind = event.type_name();
        let key = event_key(&event.source, &event.id);
        match world.ingest_keyed(event, key, now) {
            Ok((outcome, ds)) => {
                let label = match outcome {
                    Outcome::Applied(_) => "applied",
                    Outcome::Duplicate => "duplicate",
                    Outcome::Parked => "parked",
                    Outcome::Ignored => "ignored",
                };
                metrics.inc("belofte_events_total", &[("type", kind), ("outcome", label)]);
                if outcome != Outcome::Duplicate {
                    batch.seen.push(key);
                }
                effects.absorb(ds);
            }
            Err(reason) => {
                tracing::warn!(topic = %r.topic, offset = r.offset, %reason, "event rejected");
                metrics.inc("belofte_events_total", &[("type", kind), ("outcome", "rejected")]);
                dead.push((r.clone(), reason.to_string()));
            }
        }
    }
    for letter in std::mem::take(&mut effects.dead_letters) {
        metrics.inc("belofte_dead_letters_total", &[("why", "parked_too_long")]);
        tracing::warn!(event = %letter.event.id, reason = %letter.reason, "parked event given up");
        dead.push((parked_record(&letter.event), letter.reason));
    }
    // Each changed order is written once per batch, however many events touched it.
    let mut changed = std::mem::take(&mut effects.changed);
    changed.sort_unstable();
    changed.dedup();
    for id in &changed {
        if let Some(o) = world.order(id) {
            batch.orders.push(o.clone());
        }
    }
    batch.parked_added = std::mem::take(&mut effects.parked_added);
    batch.parked_removed = std::mem::take(&mut effects.parked_removed);
    for d in &effects.decisions {
        match message(shared, d) {
            Ok(m) => {
                metrics.inc("belofte_messages_enqueued_total", &[("channel", d.channel.as_str()), ("kind", d.kind.as_str())]);
                // The facts of a customer message stay beside its words: a fallback on the
                // other channel is rendered from them (daemon::feedback).
                if matches!(d.channel, Channel::Email | Channel::Sms) {
                    match serde_json::to_string(d) {
                        Ok(json) => {
                            batch.notices.insert(m.notification_key.clone(), (d.seq, json));
                        }
                        Err(e) => tracing::warn!(order = %d.order_id, error = %e, "cannot keep the decision; no fallback for this message"),
                    }
                }
                batch.messages.push(m);
            }
            Err(e) => {
                // `belofte check` runs at start-up, so this is a bug, not an ops mistake.
                metrics.inc("belofte_render_failures_total", &[]);
                tracing::error!(order = %d.order_id, kind = %d.kind, channel = %d.channel, error = %e, "cannot render a decided message");
            }
        }
    }
    store.commit(&batch, now).await?;
    // All of the batch's dead letters are in flight at once (one by one, a batch of broken
    // events took seconds of broker round trips); every one is acknowledged before the
    // caller stores the offsets.
    futures_util::future::try_join_all(dead.iter().map(|(r, reason)| producers.dead_letter(r, reason))).await?;
    for (r, _) in &dead {
        if r.partition >= 0 {
            metrics.inc("belofte_dead_letters_total", &[("why", "rejected")]);
        }
    }
    Ok(())
}

/// A parked event that expired has no record of its own any more: dead-letter its JSON.
fn parked_record(event: &Event) -> Record {
    Record {
        topic: "(parked)".into(),
        partition: -1,
        offset: -1,
        key: None,
        payload: serde_json::to_vec(event).ok(),
        timestamp_ms: None,
    }
}

/// The outbox row of a decision: the rendered line (customer channels) or the CloudEvent
/// (actions).
fn message(shared: &Shared, d: &Decision) -> Result<NewMessage, String> {
    let policy = &shared.settings.policy;
    match d.channel {
        Channel::Email | Channel::Sms => {
            let line = render_line(policy, &shared.templates, d, true).map_err(|e| e.to_string())?;
            let line = serde_json::to_string(&line).map_err(|e| e.to_string())?;
            Ok(NewMessage::of(d, d.notification_key(), line))
        }
        Channel::Event => event_message(shared, d, &d.notification_key()),
    }
}

/// The outbox row of an action (escalation, compensation): the CloudEvent, with `key` as
/// its id and notification key.
pub(super) fn event_message(shared: &Shared, d: &Decision, key: &str) -> Result<NewMessage, String> {
    let policy = &shared.settings.policy;
    let data = action_data(policy, d).ok_or("no action data")?;
    let tz = policy.brands.get(&d.brand).map(|b| b.time_zone).ok_or("unknown brand")?;
    let line = serde_json::to_string(&serde_json::json!({
        "specversion": "1.0",
        "id": key,
        "source": "/belofte",
        "type": format!("belofte.{}", d.kind),
        "time": local_rfc3339(tz, d.send_at),
        "subject": d.order_id,
        "datacontenttype": "application/json",
        "data": data,
    }))
    .map_err(|e| e.to_string())?;
    Ok(NewMessage::of(d, key.to_string(), line))
}
