//! Recording what providers report after they took a message: Twilio status callbacks and
//! email bounces and complaints. The HTTP hooks (`daemon::hooks`) and `belofte bounce` call
//! the same functions; a report that fails a message hands it to `daemon::fallback`.
//!
//! Nothing here trusts its input beyond what is authenticated: a callback is only recorded
//! after its signature was checked (by the caller), a bounce only for the message its VERP
//! token's MAC names.

use std::sync::Arc;

use belofte_feedback::{
    parse_bounce, BounceKind, BounceOutcome, BounceReport, SmsOutcome, SmsStatus, StatusCallback, Verp, VerpError,
};
use tokio::sync::Notify;

use crate::channels::{redact_email, redact_phone};
use crate::store::{Consequence, FeedbackRow, ProviderEvent, Store, StoreError};

use super::config::FallbackConfig;
use super::fallback;
use super::Shared;

/// Twilio delivery errors that mean the number itself will never receive an SMS: 30005
/// unknown or inactive handset, 30006 landline or unreachable carrier. Others (30003
/// switched off, 30007 carrier filtering, 30008 unknown) may pass another day.
const SUPPRESS_DELIVERY_CODES: [u32; 2] = [30005, 30006];

/// How long a callback waits for the dispatcher to record the send it reports on.
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_millis(100);
const SETTLE_WAITS: usize = 30;

/// A status write that lost a race is re-read and re-decided at most this often.
const MAX_RACES: usize = 8;

/// What became of one report (for the HTTP answer, the exit code and the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded, and it changed the message's status.
    Recorded,
    /// A repeat, or older than what is recorded: nothing changed.
    Unchanged,
    /// About no message of ours (unknown key or token, another channel).
    UnknownMessage,
    /// Not a report we act on (an auto-reply, a read receipt, a forged token): logged.
    Ignored,
}

impl Recorded {
    pub fn label(self) -> &'static str {
        match self {
            Recorded::Recorded => "recorded",
            Recorded::Unchanged => "unchanged",
            Recorded::UnknownMessage => "unknown_message",
            Recorded::Ignored => "ignored",
        }
    }
}

/// The recorder of provider reports; one per daemon (or per `belofte bounce`).
pub struct Feedback {
    pub shared: Arc<Shared>,
    pub store: Arc<Store>,
    pub fallback: FallbackConfig,
    verp: Option<Verp>,
    /// Woken when a fallback or an escalation was enqueued.
    wake: Option<Arc<Notify>>,
}

impl Feedback {
    pub fn new(shared: Arc<Shared>, store: Arc<Store>, fallback: FallbackConfig, verp: Option<Verp>, wake: Option<Arc<Notify>>) -> Feedback {
        Feedback { shared, store, fallback, verp, wake }
    }

    pub fn verp(&self) -> Option<&Verp> {
        self.verp.as_ref()
    }

    pub(super) fn wake_dispatch(&self) {
        if let Some(w) = &self.wake {
            w.notify_waiters();
        }
    }

    /// One signature-checked status callback for the message `key` (from the callback URL).
    pub async fn sms_status(&self, key: &str, cb: &StatusCallback) -> Result<Recorded, StoreError> {
        let Some(mut row) = self.store.row_by_key(key).await?.filter(|r| r.channel == "sms") else {
            tracing::warn!(key, sid = %cb.message_sid, status = cb.status.as_str(), "status callback for no SMS of ours; ignored");
            return Ok(Recorded::UnknownMessage);
        };
        // Twilio may call back before the dispatcher has recorded the send (the settle of a
        // batch is a moment behind the answer); a failure must land on a settled row, or the
        // settle would mark it sent over it. Wait for that moment, a little.
        for _ in 0..SETTLE_WAITS {
            if row.status != "sending" {
                break;
            }
            tokio::time::sleep(SETTLE_WAIT).await;
            match self.store.row_by_key(key).await? {
                Some(again) => row = again,
                None => return Ok(Recorded::UnknownMessage),
            }
        }
        if let Some(sid) = row.provider_id.as_deref().filter(|sid| *sid != cb.message_sid) {
            // The URL is signed, so the key is ours; a different sid is a resend we did not
            // learn the sid of (found by a look-up) or Twilio's own retry. Recorded anyway.
            tracing::info!(key, stored = sid, callback = %cb.message_sid, "status callback names another message sid");
        }
        for _ in 0..MAX_RACES {
            let current = row.provider_status.as_deref().map(SmsStatus::parse);
            let Some(new) = SmsStatus::apply(current.as_ref(), &cb.status) else {
                return Ok(Recorded::Unchanged);
            };
            let failed = new.outcome() == Some(SmsOutcome::Failed);
            let code = cb.error_code;
            let then = Consequence {
                fail: failed.then(|| match code {
                    Some(c) => format!("twilio: {} (error {c})", new.as_str()),
                    None => format!("twilio: {}", new.as_str()),
                }),
                suppress: code
                    .filter(|c| failed && SUPPRESS_DELIVERY_CODES.contains(c))
                    .map(|c| format!("twilio delivery error {c}")),
            };
            let event = ProviderEvent {
                source: "twilio",
                status: new.as_str().to_string(),
                error_code: code.map(|c| c.to_string()),
                detail: Some(cb.message_sid.clone()),
                at: self.shared.clock.now(),
            };
            if self.store.advance_provider_status(row.id, row.provider_status.as_deref(), &event, &then).await? {
                self.shared.metrics.inc("belofte_provider_status_total", &[("channel", "sms"), ("status", new.as_str())]);
                let to = row.recipient.as_deref().map(redact_phone).unwrap_or_default();
                tracing::info!(key, %to, status = new.as_str(), error_code = ?code, "sms status");
                if failed {
                    fallback::after_failure(self, &row.notification_key).await?;
                }
                return Ok(Recorded::Recorded);
            }
            // Another callback for this message was recorded in between: decide again on it.
            match self.store.row_by_key(key).await? {
                Some(again) => row = again,
                None => return Ok(Recorded::UnknownMessage),
            }
        }
        tracing::warn!(key, "status callback kept losing races; Twilio will retry it");
        Err(StoreError::Io("concurrent status updates".into()))
    }

    /// One raw bounce or complaint, as an MTA delivers it. `recipient` is the envelope
    /// recipient the MTA passed outside the message, when it did.
    pub async fn bounce(&self, raw: &[u8], recipient: Option<&str>) -> Result<Recorded, StoreError> {
        let report = match parse_bounce(raw, recipient) {
            BounceOutcome::Report(r) => r,
            BounceOutcome::Ignored(why) => {
                tracing::info!(bytes = raw.len(), %why, "mail to the bounce address is no report; ignored");
                return Ok(Recorded::Ignored);
            }
        };
        let Some(verp) = &self.verp else {
            tracing::warn!("a bounce arrived but email.bounce_address is not configured: it cannot be matched; ignored");
            return Ok(Recorded::Ignored);
        };
        let Some(message_ref) = find_ref(verp, &report) else {
            return Ok(Recorded::Ignored);
        };
        let Some(row) = self.store.row_by_ref(&message_ref).await?.filter(|r| r.channel == "email") else {
            tracing::warn!(%message_ref, "bounce for no email of ours (an old message, or another database); ignored");
            return Ok(Recorded::UnknownMessage);
        };
        let Some(bounce) = pick(&report, &row) else {
            return Ok(Recorded::Ignored);
        };
        let (status, code) = match &bounce.kind {
            BounceKind::Failed { status } | BounceKind::GaveUp { status } => ("bounced", Some(status.to_string())),
            BounceKind::Delayed { status } => ("delayed", status.map(|s| s.to_string())),
            BounceKind::Delivered => ("delivered", None),
            BounceKind::Abuse { feedback_type } => ("complained", Some(feedback_type.clone())),
        };
        let diagnostic = bounce.diagnostic.clone();
        let then = Consequence {
            fail: bounce.kind.fails_message().then(|| match (&code, &diagnostic) {
                (Some(c), Some(d)) => format!("bounced {c}: {d}"),
                (Some(c), None) => format!("bounced {c}"),
                _ => "bounced".to_string(),
            }),
            suppress: bounce.kind.suppresses_address().then(|| match &bounce.kind {
                BounceKind::Abuse { feedback_type } => format!("complaint ({feedback_type})"),
                _ => format!("bounced {}", code.as_deref().unwrap_or("")),
            }),
        };
        let event = ProviderEvent {
            source: "bounce",
            status: status.to_string(),
            error_code: code,
            detail: diagnostic.or_else(|| report.reporting_mta.clone()),
            at: self.shared.clock.now(),
        };
        if !self.store.record_report(row.id, &event, &then).await? {
            return Ok(Recorded::Unchanged);
        }
        self.shared.metrics.inc("belofte_provider_status_total", &[("channel", "email"), ("status", status)]);
        let to = row.recipient.as_deref().map(redact_email).unwrap_or_default();
        tracing::info!(key = %row.notification_key, %to, status, code = ?event.error_code, suppressed = then.suppress.is_some(), "email feedback");
        if then.fail.is_some() {
            fallback::after_failure(self, &row.notification_key).await?;
        }
        Ok(Recorded::Recorded)
    }
}

/// The message ref of the first candidate address that is a valid VERP address of ours.
/// A wrong MAC is a forgery (or a secret that changed): logged, never acted on.
fn find_ref(verp: &Verp, report: &BounceReport) -> Option<String> {
    let mut forged = false;
    for candidate in &report.verp_candidates {
        match verp.decode(&candidate.address) {
            Ok(r) => return Some(r),
            Err(VerpError::BadMac | VerpError::Malformed) => forged = true,
            Err(_) => {}
        }
    }
    if forged {
        tracing::warn!(reporting_mta = ?report.reporting_mta, "bounce with a forged or outdated VERP token; ignored");
    } else {
        tracing::info!(reporting_mta = ?report.reporting_mta, "bounce without a VERP address of ours; ignored");
    }
    None
}

/// The part of a report about this row's recipient; a report about one recipient only is
/// taken as is (a forwarding mailbox reports its own final address).
fn pick<'a>(report: &'a BounceReport, row: &FeedbackRow) -> Option<&'a belofte_feedback::Bounce> {
    let ours = row.recipient.as_deref().unwrap_or("");
    let same = |a: &Option<String>| a.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(ours));
    report
        .bounces
        .iter()
        .find(|b| same(&b.recipient) || same(&b.original_recipient))
        .or_else(|| (report.bounces.len() == 1).then(|| &report.bounces[0]))
}
