//! Draining the outbox: one worker per channel claims due rows, delivers them concurrently
//! and settles each attempt. Transient failures back off exponentially with jitter;
//! permanent ones are recorded (an invalid or opted-out number is remembered and not tried
//! again); an unknown end is looked up (SMS) or resent with the same Message-ID (email)
//! before anything else; refused credentials pause the channel instead of burning the queue.
//!
//! Every claim is a lease (`store::Lease`): the row is held by this instance for its
//! channel's longest attempt plus `dispatch.lease_margin_secs`. When an instance dies
//! mid-send, its rows become claimable once their leases run out — by then the provider's
//! timeout has passed since the request, so a look-up finds a message the provider took late.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::channels::{EmailBackend, OutgoingEmail, OutgoingSms, SendOutcome, SmsBackend};
use belofte_core::domain::{Channel, Instant};
use crate::render::line::Line;
use crate::wording::Wording;
use crate::rng::Rng;
use crate::kafka::Producers;
use crate::store::{Claimed, Lease, Settle, Store, Words};

use super::config::DispatchConfig;
use super::fallback;
use super::feedback::Feedback;
use super::Shared;

/// The channels paused after their credentials were refused: until when, and why. The
/// dispatcher writes it; the console shows it.
#[derive(Debug, Default)]
pub struct Pauses(Mutex<HashMap<Channel, (Instant, String)>>);

impl Pauses {
    /// The channels paused at `now`, with the end of the pause and why, in channel order.
    pub fn list(&self, now: Instant) -> Vec<(Channel, Instant, String)> {
        let p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut paused: Vec<_> = p.iter().filter(|(_, (until, _))| *until > now).map(|(c, (until, why))| (*c, *until, why.clone())).collect();
        paused.sort_by_key(|(c, _, _)| c.as_str());
        paused
    }
}

/// One attempt that ended: the row, how it is to be recorded, and the pause (until, why)
/// that refused credentials ask for.
struct Ended {
    row: Claimed,
    settle: Settle,
    pause: Option<(Instant, String)>,
}

pub struct Dispatcher {
    pub shared: Arc<Shared>,
    pub store: Arc<Store>,
    pub email: EmailBackend,
    pub sms: SmsBackend,
    pub producers: Arc<Producers>,
    pub cfg: DispatchConfig,
    /// Where a message that failed for good is handed on (fallback, unreachable); it also
    /// holds the VERP encoder for the envelope sender.
    pub feedback: Arc<Feedback>,
    leases: Leases,
    paused: Arc<Pauses>,
    rng: Mutex<Rng>,
}

impl Dispatcher {
    pub fn new(
        shared: Arc<Shared>,
        store: Arc<Store>,
        email: EmailBackend,
        sms: SmsBackend,
        producers: Arc<Producers>,
        cfg: DispatchConfig,
        feedback: Arc<Feedback>,
        leases: Leases,
        paused: Arc<Pauses>,
    ) -> Dispatcher {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7);
        Dispatcher {
            shared,
            store,
            email,
            sms,
            producers,
            cfg,
            feedback,
            leases,
            paused,
            rng: Mutex::new(Rng::new(seed)),
        }
    }

    /// At most this many sends of `channel` in flight: `dispatch.batch`, and for SMTP no
    /// more than its pool runs at once — a claimed row starts its attempt at once, so its
    /// lease counts from the real start (a row queued behind the pool could outlive it).
    fn places(&self, channel: Channel) -> i64 {
        let batch = self.cfg.batch.max(1);
        match (channel, self.email.concurrency()) {
            (Channel::Email, Some(pool)) => batch.min(pool.max(1) as i64),
            _ => batch,
        }
    }

    fn paused_until(&self, channel: Channel) -> Option<Instant> {
        let now = self.shared.clock.now();
        let mut p = self.paused.0.lock().unwrap_or_else(|e| e.into_inner());
        match p.get(&channel) {
            Some((t, _)) if *t > now => Some(*t),
            Some(_) => {
                p.remove(&channel);
                self.shared.metrics.set("belofte_channel_paused", &[("channel", channel.as_str())], 0.0);
                tracing::info!(%channel, "channel resumes after its pause");
                None
            }
            None => None,
        }
    }

    /// The end of a pause that starts now.
    fn pause_end(&self) -> Instant {
        self.shared.clock.now() + chrono::Duration::seconds(self.cfg.auth_pause_secs as i64)
    }

    /// Pause `channel` until `until`. Called only once the attempt that was refused is
    /// settled, so that a paused channel never shows a row still `sending`.
    fn pause(&self, channel: Channel, until: Instant, why: &str) {
        let mut p = self.paused.0.lock().unwrap_or_else(|e| e.into_inner());
        if p.insert(channel, (until, why.to_string())).is_none() {
            // An operator must act (rotate credentials): this is the alert.
            tracing::error!(%channel, reason = why, pause_secs = self.cfg.auth_pause_secs, "ALERT: credentials refused; channel paused, messages stay queued");
        }
        self.shared.metrics.set("belofte_channel_paused", &[("channel", channel.as_str())], 1.0);
    }

    /// `base · 2^attempts`, capped, times a jitter in [0.5, 1).
    fn backoff(&self, attempts: i64) -> chrono::Duration {
        let exp = self.cfg.backoff_base_ms.saturating_mul(1u64 << attempts.clamp(0, 30));
        let capped = exp.min(self.cfg.backoff_cap_ms) as f64;
        let jitter = {
            let mut r = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            0.5 + (r.below(1000) as f64) / 2000.0
        };
        chrono::Duration::milliseconds((capped * jitter) as i64)
    }

    /// The worker of one channel, until shutdown. Up to `batch` sends are in flight; as
    /// soon as some end, those that ended are settled together in one transaction and the
    /// freed places are topped up from the outbox. In-flight sends finish (and are
    /// settled) before it returns.
    pub async fn run(self: Arc<Self>, channel: Channel, mut shutdown: watch::Receiver<bool>, wake: Arc<Notify>) {
        let poll = self.shared.clock.real(Duration::from_millis(self.cfg.poll_ms)).max(Duration::from_millis(5));
        let mut in_flight: JoinSet<Ended> = JoinSet::new();
        loop {
            let stopping = *shutdown.borrow();
            let paused = self.paused_until(channel);
            let room = self.places(channel) - in_flight.len() as i64;
            if !stopping && paused.is_none() && room > 0 {
                let now = self.shared.clock.now();
                // Rows decided but not yet worded get their words now, with the wording in
                // use at this claim (a publish applies to every message still queued).
                let wording = self.shared.live.get();
                let render = |row: &Claimed| words_of(&wording, row);
                let words = Words { version: wording.version, render: &render };
                match self.store.claim_rendering(channel.as_str(), now, room, self.leases.of(channel), &words).await {
                    Ok(claims) => {
                        self.render_failed(channel, wording.version, &claims.render_failed);
                        self.start(channel, claims.rows, &mut in_flight).await
                    }
                    Err(e) => {
                        tracing::warn!(%channel, error = %e, "cannot claim outbox rows");
                        if in_flight.is_empty() {
                            tokio::time::sleep(poll).await;
                            continue;
                        }
                    }
                }
            }
            if in_flight.is_empty() {
                if stopping {
                    break;
                }
                let wait = match paused {
                    Some(until) => self.shared.clock.until(until).min(Duration::from_secs(5)),
                    None => poll,
                };
                tokio::select! {
                    _ = shutdown.changed() => {},
                    _ = wake.notified(), if paused.is_none() => {},
                    _ = tokio::time::sleep(wait) => {},
                }
                continue;
            }
            let mut ended = Vec::new();
            if let Some(first) = in_flight.join_next().await {
                ended.push(first);
            }
            while let Some(more) = in_flight.try_join_next() {
                ended.push(more);
            }
            let ended: Vec<Ended> = ended
                .into_iter()
                .filter_map(|r| r.map_err(|e| tracing::error!(%channel, error = %e, "a send task failed")).ok())
                .collect();
            let pairs: Vec<(&Claimed, &Settle)> = ended.iter().map(|e| (&e.row, &e.settle)).collect();
            let settled = self.store.settle_many(&pairs, self.shared.clock.now()).await;
            // Refused credentials pause the channel whether or not the settle committed;
            // after it, so the console never shows the channel paused beside a row still
            // `sending` that is about to go back to the queue.
            for (until, why) in ended.iter().filter_map(|e| e.pause.as_ref()) {
                self.pause(channel, *until, why);
            }
            let stale = match settled {
                Ok(stale) => stale,
                Err(e) => {
                    // The rows stay `sending`; when their leases run out they are claimed
                    // again as unknown (look-up for SMS, same Message-ID for email).
                    tracing::error!(%channel, rows = pairs.len(), error = %e, "cannot record delivery attempts");
                    continue;
                }
            };
            for Ended { row, settle, .. } in ended.iter().filter(|e| stale.contains(&e.row.id)) {
                // Our lease ran out before the attempt ended (a stalled process or database)
                // and another claim took the row over: its result stands, not this one.
                tracing::warn!(%channel, key = %row.notification_key, outcome = ?settle, "attempt ended after its lease was taken over; its result is not recorded");
            }
            if channel != Channel::Event {
                // Only once the failure is committed: the fallback reads it back.
                for Ended { row, settle, .. } in ended.iter().filter(|e| !stale.contains(&e.row.id)) {
                    if matches!(settle, Settle::Failed { .. }) {
                        if let Err(e) = fallback::after_failure(&self.feedback, &row.notification_key).await {
                            tracing::error!(%channel, key = %row.notification_key, error = %e, "cannot decide the fallback of a failed message");
                        }
                    }
                }
            }
        }
        self.update_depth().await;
    }

    /// Start sending claimed rows; a suppressed recipient is settled as failed without a send.
    async fn start(self: &Arc<Self>, channel: Channel, rows: Vec<Claimed>, in_flight: &mut JoinSet<Ended>) {
        if rows.is_empty() {
            return;
        }
        let recipients: Vec<&str> = rows.iter().filter_map(|r| r.recipient.as_deref()).collect();
        let suppressed = if channel == Channel::Event {
            HashMap::new()
        } else {
            self.store.suppressed_among(channel.as_str(), &recipients).await.unwrap_or_else(|e| {
                tracing::warn!(%channel, error = %e, "cannot read suppressions; sending anyway");
                HashMap::new()
            })
        };
        for row in rows {
            let me = Arc::clone(self);
            let refused = row.recipient.as_ref().and_then(|r| suppressed.get(r)).cloned();
            in_flight.spawn(async move {
                let (settle, pause) = me.deliver(channel, &row, refused).await;
                Ended { row, settle, pause }
            });
        }
    }

    /// Rows that could not be rendered are kept (`render_failed`, with the reason) and go
    /// back to the queue when the wording changes (`live::look`): someone must fix a template.
    fn render_failed(&self, channel: Channel, version: i64, failed: &[(Claimed, String)]) {
        for (row, reason) in failed {
            self.shared.metrics.inc("belofte_render_failed_total", &[("channel", channel.as_str())]);
            tracing::error!(%channel, key = %row.notification_key, wording = version, %reason, "ALERT: message cannot be rendered; kept as render_failed until the wording changes");
        }
    }

    async fn update_depth(&self) {
        if let Ok(counts) = self.store.outbox_counts().await {
            self.shared.metrics.reset("belofte_outbox_depth");
            for (channel, status, n) in counts {
                self.shared.metrics.set("belofte_outbox_depth", &[("channel", &channel), ("status", &status)], n as f64);
            }
        }
    }

    /// One attempt at one row, how it is to be recorded, and — when the provider refused
    /// our credentials — until when and why the channel is to pause.
    async fn deliver(&self, channel: Channel, row: &Claimed, suppressed: Option<String>) -> (Settle, Option<(Instant, String)>) {
        let started = std::time::Instant::now();
        let (outcome, label) = match suppressed {
            Some(reason) => {
                (Attempt::Done(Settle::Failed { error: format!("recipient suppressed earlier: {reason}"), suppress: false }), "suppressed")
            }
            None => self.attempt(channel, row).await,
        };
        let now = self.shared.clock.now();
        let mut pause = None;
        let settle = match outcome {
            Attempt::Done(s) => s,
            Attempt::Provider(o) => match o {
                SendOutcome::Sent { provider_id } => Settle::Sent { provider_id },
                SendOutcome::Transient(error) => {
                    if row.attempts + 1 >= self.cfg.max_attempts {
                        Settle::Failed { error: format!("gave up after {} attempts: {error}", row.attempts + 1), suppress: false }
                    } else {
                        Settle::Retry { error, at: now + self.backoff(row.attempts) }
                    }
                }
                SendOutcome::Permanent { reason, pause: true, .. } => {
                    let until = self.pause_end();
                    pause = Some((until, reason));
                    Settle::Release { at: until }
                }
                SendOutcome::Permanent { reason, suppress, .. } => Settle::Failed { error: reason, suppress },
                SendOutcome::Unknown(error) => {
                    Settle::Unknown { error, at: now + chrono::Duration::seconds(self.cfg.unknown_recheck_secs as i64) }
                }
                SendOutcome::AuthFailed(error) => {
                    let until = self.pause_end();
                    pause = Some((until, error));
                    Settle::Release { at: until }
                }
            },
        };
        self.shared.metrics.inc("belofte_sends_total", &[("channel", channel.as_str()), ("result", label)]);
        self.shared.metrics.observe("belofte_send_seconds", &[("channel", channel.as_str())], started.elapsed().as_secs_f64());
        match &settle {
            Settle::Sent { .. } => tracing::info!(%channel, key = %row.notification_key, "delivered"),
            Settle::Failed { error, .. } => tracing::warn!(%channel, key = %row.notification_key, %error, "delivery failed for good"),
            Settle::Retry { error, .. } | Settle::Unknown { error, .. } => {
                tracing::info!(%channel, key = %row.notification_key, %error, "delivery will be retried")
            }
            Settle::Release { .. } => {}
        }
        (settle, pause)
    }

    async fn attempt(&self, channel: Channel, row: &Claimed) -> (Attempt, &'static str) {
        // Senders are brand fields: from the wording in use, like the words.
        let wording = self.shared.live.get();
        let policy = &wording.policy;
        match channel {
            Channel::Event => {
                let line = self.with_messages_reached(row).await;
                let out = match self.producers.action(&row.order_id, line.as_bytes(), &row.notification_key).await {
                    Ok(()) => SendOutcome::Sent { provider_id: None },
                    Err(e) => SendOutcome::Transient(e.to_string()),
                };
                let label = out.label();
                (Attempt::Provider(out), label)
            }
            _ => {
                let line: Line = match serde_json::from_str(&row.line) {
                    Ok(l) => l,
                    Err(e) => {
                        return (Attempt::Done(Settle::Failed { error: format!("unreadable outbox line: {e}"), suppress: false }), "permanent")
                    }
                };
                let Some(brand) = policy.brands.get(&line.brand) else {
                    return (Attempt::Done(Settle::Failed { error: format!("brand {:?} is not configured", line.brand), suppress: false }), "permanent");
                };
                let to = row.recipient.clone().unwrap_or_default();
                if channel == Channel::Email {
                    let m = OutgoingEmail {
                        key: row.notification_key.clone(),
                        from: brand.email_from.clone(),
                        to,
                        subject: line.subject.clone().unwrap_or_default(),
                        text: line.text.clone().unwrap_or_default(),
                        html: line.html.clone(),
                        envelope_from: self.envelope_sender(&row.notification_key),
                    };
                    // An unknown earlier end is resent as is: the Message-ID is the same, so
                    // the receiving side (and e.g. Gmail) keeps one copy.
                    let out = self.email.send(&m).await;
                    let label = out.label();
                    (Attempt::Provider(out), label)
                } else {
                    let m = OutgoingSms {
                        key: row.notification_key.clone(),
                        from: brand.sms_from.clone(),
                        to,
                        text: line.text.clone().unwrap_or_default(),
                    };
                    if row.unknown {
                        let since = self.shared.clock.now() - chrono::Duration::days(2);
                        match self.sms.lookup(&m, since).await {
                            Ok(Some(sid)) => {
                                return (Attempt::Provider(SendOutcome::Sent { provider_id: Some(sid) }), "sent");
                            }
                            Ok(None) => {}
                            Err(e) => {
                                let out = SendOutcome::Unknown(format!("look-up failed: {e}"));
                                return (Attempt::Provider(out), "unknown");
                            }
                        }
                    }
                    let out = self.sms.send(&m).await;
                    let label = out.label();
                    (Attempt::Provider(out), label)
                }
            }
        }
    }
}

impl Dispatcher {
    /// An escalation the engine decided counts the notices it sent; those of which every
    /// message failed since (undelivered, bounced) reached nobody and are taken off its
    /// `messages_sent` as it goes out. Any other event, or a count that cannot be read,
    /// goes as it is.
    async fn with_messages_reached(&self, row: &Claimed) -> String {
        if row.kind != "escalation" {
            return row.line.clone();
        }
        let Ok(mut event) = serde_json::from_str::<serde_json::Value>(&row.line) else {
            return row.line.clone();
        };
        let seq = row.notification_key.rsplit('/').next().and_then(|s| s.parse::<i64>().ok());
        let (Some(seq), Some(sent)) = (seq, event["data"]["messages_sent"].as_i64()) else {
            return row.line.clone();
        };
        if event["data"]["why"] == "unreachable" {
            // Counted from the store when it was raised.
            return row.line.clone();
        }
        match self.store.failed_notices(&row.order_id, seq).await {
            Ok(0) => row.line.clone(),
            Ok(failed) => {
                event["data"]["messages_sent"] = serde_json::Value::from((sent - failed).max(0));
                serde_json::to_string(&event).unwrap_or_else(|_| row.line.clone())
            }
            Err(e) => {
                tracing::warn!(key = %row.notification_key, error = %e, "cannot count failed notices; escalation sent with the engine's count");
                row.line.clone()
            }
        }
    }

    /// The VERP address of a message (its bounces come back naming it), when configured.
    fn envelope_sender(&self, key: &str) -> Option<String> {
        let verp = self.feedback.verp()?;
        match verp.encode(&belofte_feedback::message_ref(key)) {
            Ok(address) => Some(address),
            Err(e) => {
                // Checked at start-up with a real ref, so this cannot happen; the mail still
                // goes, from the brand's address, without bounce tracking.
                tracing::error!(key, error = %e, "cannot make the VERP address");
                None
            }
        }
    }
}

/// The line of a decided row, rendered with `wording` (as `render::line` writes it for
/// `simulate`, with the email's HTML part).
fn words_of(wording: &Wording, row: &Claimed) -> Result<String, String> {
    let line = wording.render_kept(row.decision.as_deref())?;
    serde_json::to_string(&line).map_err(|e| e.to_string())
}

enum Attempt {
    Provider(SendOutcome),
    Done(Settle),
}

/// The lease of each channel's claims: the channel's longest attempt plus the margin.
pub struct Leases {
    email: Lease,
    sms: Lease,
    event: Lease,
}

impl Leases {
    /// `holder` names this instance; `event` is the longest delivery of an action event.
    pub fn new(holder: &str, email: &EmailBackend, sms: &SmsBackend, event: Duration, margin: Duration) -> Leases {
        let lease = |attempt: Duration| Lease { holder: holder.to_string(), length: attempt + margin };
        Leases { email: lease(email.attempt_limit()), sms: lease(sms.attempt_limit()), event: lease(event) }
    }

    fn of(&self, channel: Channel) -> &Lease {
        match channel {
            Channel::Email => &self.email,
            Channel::Sms => &self.sms,
            Channel::Event => &self.event,
        }
    }
}
