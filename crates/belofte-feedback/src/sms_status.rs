//! Twilio's message statuses, the order in which they may replace each other, and the
//! status callback form.
//!
//! Twilio posts a callback for each status change, but callbacks travel independently and
//! may arrive late, twice or out of order: a `sent` can come in after the `delivered` it
//! preceded. [`SmsStatus::apply`] is what makes recording them safe in any order: a status
//! only ever moves forward along
//!
//! ```text
//! scheduled, accepted < queued < sending < sent < partially_delivered < delivered < read
//!                                             \-> undelivered | failed | canceled
//! ```
//!
//! and the first *final* status wins. `delivered` (and `read`) and the failures
//! (`undelivered`, `failed`, `canceled`) are final: after one of them only a refinement of
//! the same outcome is taken (`delivered` → `read`), never a change of outcome. Twilio does not
//! send `undelivered` after `delivered`; if a carrier's receipts ever made it look so, the
//! first outcome is kept, because the fallback channel may already have been chosen on it,
//! and a customer who was told twice is better than a state that flips.

use std::fmt;

/// A Twilio message status. Unknown strings are kept as [`SmsStatus::Other`], never refused:
/// Twilio adds statuses from time to time, and a callback must not fail on one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SmsStatus {
    /// Created through a Messaging Service for sending later.
    Scheduled,
    /// Created through a Messaging Service, before a sender is chosen.
    Accepted,
    Queued,
    Sending,
    /// Handed to the carrier.
    Sent,
    /// Only some parts of the message were confirmed delivered.
    PartiallyDelivered,
    /// The carrier confirmed delivery.
    Delivered,
    /// Read receipt (channels such as WhatsApp and RCS).
    Read,
    /// The carrier could not deliver it (see the error code).
    Undelivered,
    /// Twilio could not send it (see the error code).
    Failed,
    /// A scheduled message that was cancelled.
    Canceled,
    /// Inbound only; never moves an outbound message's status.
    Receiving,
    /// Inbound only; never moves an outbound message's status.
    Received,
    /// A status this code does not know, as Twilio wrote it. Never moves a status either:
    /// without knowing what it means it cannot be ordered.
    Other(String),
}

/// What a status says about whether the customer got the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsOutcome {
    /// Not decided yet.
    Pending,
    /// Final: the customer's phone has it.
    Delivered,
    /// Final: it will not arrive. The other channel is the fallback.
    Failed,
}

impl SmsStatus {
    /// The status for Twilio's string (`MessageStatus`), ASCII case and surrounding
    /// whitespace ignored.
    pub fn parse(s: &str) -> SmsStatus {
        let s = s.trim();
        let known = [
            ("scheduled", SmsStatus::Scheduled),
            ("accepted", SmsStatus::Accepted),
            ("queued", SmsStatus::Queued),
            ("sending", SmsStatus::Sending),
            ("sent", SmsStatus::Sent),
            ("partially_delivered", SmsStatus::PartiallyDelivered),
            ("delivered", SmsStatus::Delivered),
            ("read", SmsStatus::Read),
            ("undelivered", SmsStatus::Undelivered),
            ("failed", SmsStatus::Failed),
            ("canceled", SmsStatus::Canceled),
            ("receiving", SmsStatus::Receiving),
            ("received", SmsStatus::Received),
        ];
        known
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, status)| status)
            .unwrap_or_else(|| SmsStatus::Other(s.to_string()))
    }

    /// Twilio's spelling (for storage and logs); [`SmsStatus::Other`] as it came.
    pub fn as_str(&self) -> &str {
        match self {
            SmsStatus::Scheduled => "scheduled",
            SmsStatus::Accepted => "accepted",
            SmsStatus::Queued => "queued",
            SmsStatus::Sending => "sending",
            SmsStatus::Sent => "sent",
            SmsStatus::PartiallyDelivered => "partially_delivered",
            SmsStatus::Delivered => "delivered",
            SmsStatus::Read => "read",
            SmsStatus::Undelivered => "undelivered",
            SmsStatus::Failed => "failed",
            SmsStatus::Canceled => "canceled",
            SmsStatus::Receiving => "receiving",
            SmsStatus::Received => "received",
            SmsStatus::Other(s) => s,
        }
    }

    /// The outcome, or `None` for statuses that say nothing about an outbound message
    /// (inbound ones and unknown ones).
    pub fn outcome(&self) -> Option<SmsOutcome> {
        match self.rank()? {
            Rank::Progress(_) => Some(SmsOutcome::Pending),
            Rank::Delivered(_) => Some(SmsOutcome::Delivered),
            Rank::Failed => Some(SmsOutcome::Failed),
        }
    }

    /// Whether no later status may change the outcome.
    pub fn is_final(&self) -> bool {
        matches!(
            self.outcome(),
            Some(SmsOutcome::Delivered | SmsOutcome::Failed)
        )
    }

    /// The status a message has after `incoming` arrives while it has `current` (`None`: no
    /// status recorded yet). `None` means "unchanged, record nothing": a repeat, a late
    /// earlier status, anything after a failure, a change of a final outcome, or a status
    /// that cannot be ordered. See the module documentation for the order.
    pub fn apply(current: Option<&SmsStatus>, incoming: &SmsStatus) -> Option<SmsStatus> {
        let new = incoming.rank()?;
        let moves = match current.and_then(SmsStatus::rank) {
            // An unknown current status (stored by an older build, say) is overwritten by
            // any known one.
            None => true,
            Some(Rank::Progress(old)) => match new {
                Rank::Progress(n) => n > old,
                Rank::Delivered(_) | Rank::Failed => true,
            },
            Some(Rank::Delivered(old)) => matches!(new, Rank::Delivered(n) if n > old),
            Some(Rank::Failed) => false,
        };
        moves.then(|| incoming.clone())
    }

    fn rank(&self) -> Option<Rank> {
        Some(match self {
            SmsStatus::Scheduled | SmsStatus::Accepted => Rank::Progress(0),
            SmsStatus::Queued => Rank::Progress(1),
            SmsStatus::Sending => Rank::Progress(2),
            SmsStatus::Sent => Rank::Progress(3),
            SmsStatus::PartiallyDelivered => Rank::Delivered(0),
            SmsStatus::Delivered => Rank::Delivered(1),
            SmsStatus::Read => Rank::Delivered(2),
            SmsStatus::Undelivered | SmsStatus::Failed | SmsStatus::Canceled => Rank::Failed,
            SmsStatus::Receiving | SmsStatus::Received | SmsStatus::Other(_) => return None,
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Rank {
    Progress(u8),
    Delivered(u8),
    Failed,
}

impl fmt::Display for SmsStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SmsStatus {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SmsStatus::parse(s))
    }
}

/// One status callback, from its (signature-checked) form parameters. The notification key is
/// not in the form: it travels in the callback URL's query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCallback {
    /// `MessageSid` (`SmsSid` in older callbacks).
    pub message_sid: String,
    /// `MessageStatus` (`SmsStatus` in older callbacks).
    pub status: SmsStatus,
    /// `ErrorCode`, when Twilio gives one (with `undelivered` and `failed`). A value that is
    /// not a number is dropped rather than refusing a signed callback.
    pub error_code: Option<u32>,
    /// `To`, the customer's number.
    pub to: Option<String>,
    /// `AccountSid`. The daemon should check it is its own account: a signature made with
    /// one account's token says nothing about messages of another.
    pub account_sid: Option<String>,
}

/// Why a callback form is unusable. Answer 400: it was signed, but says nothing we can record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("status callback without MessageSid")]
    NoMessageSid,
    #[error("status callback without MessageStatus")]
    NoStatus,
}

impl StatusCallback {
    /// Reads the fields this daemon records; every other parameter is ignored (they still
    /// count for the signature). With a repeated field the first value is taken.
    pub fn from_form(params: &[(String, String)]) -> Result<StatusCallback, CallbackError> {
        let field = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let message_sid = field("MessageSid")
            .or_else(|| field("SmsSid"))
            .ok_or(CallbackError::NoMessageSid)?
            .to_string();
        let status = field("MessageStatus")
            .or_else(|| field("SmsStatus"))
            .map(SmsStatus::parse)
            .ok_or(CallbackError::NoStatus)?;
        Ok(StatusCallback {
            message_sid,
            status,
            error_code: field("ErrorCode").and_then(|c| c.parse().ok()),
            to: field("To").map(str::to_string),
            account_sid: field("AccountSid").map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[&str] = &[
        "scheduled",
        "accepted",
        "queued",
        "sending",
        "sent",
        "partially_delivered",
        "delivered",
        "read",
        "undelivered",
        "failed",
        "canceled",
        "receiving",
        "received",
    ];

    #[test]
    fn names_round_trip() {
        for name in ALL {
            let status = SmsStatus::parse(name);
            assert!(!matches!(status, SmsStatus::Other(_)), "{name}");
            assert_eq!(status.as_str(), *name);
        }
        assert_eq!(SmsStatus::parse(" Delivered "), SmsStatus::Delivered);
        assert_eq!(
            SmsStatus::parse("teleported"),
            SmsStatus::Other("teleported".into())
        );
    }

    fn apply(current: Option<&str>, incoming: &str) -> Option<String> {
        let current = current.map(SmsStatus::parse);
        SmsStatus::apply(current.as_ref(), &SmsStatus::parse(incoming)).map(|s| s.to_string())
    }

    #[test]
    fn forward_only() {
        assert_eq!(apply(None, "queued").as_deref(), Some("queued"));
        assert_eq!(apply(Some("queued"), "sent").as_deref(), Some("sent"));
        assert_eq!(
            apply(Some("sent"), "delivered").as_deref(),
            Some("delivered")
        );
        assert_eq!(
            apply(Some("delivered"), "sent"),
            None,
            "a late sent changes nothing"
        );
        assert_eq!(apply(Some("sent"), "queued"), None);
        assert_eq!(
            apply(Some("sent"), "sent"),
            None,
            "a repeat records nothing"
        );
        assert_eq!(apply(Some("queued"), "failed").as_deref(), Some("failed"));
        assert_eq!(
            apply(Some("sent"), "undelivered").as_deref(),
            Some("undelivered")
        );
        assert_eq!(apply(None, "undelivered").as_deref(), Some("undelivered"));
    }

    #[test]
    fn first_final_outcome_wins() {
        assert_eq!(apply(Some("delivered"), "undelivered"), None);
        assert_eq!(apply(Some("delivered"), "failed"), None);
        assert_eq!(apply(Some("undelivered"), "delivered"), None);
        assert_eq!(apply(Some("failed"), "read"), None);
        assert_eq!(apply(Some("failed"), "undelivered"), None);
        // A refinement of the same outcome is taken.
        assert_eq!(apply(Some("delivered"), "read").as_deref(), Some("read"));
        assert_eq!(apply(Some("read"), "delivered"), None);
        assert_eq!(
            apply(Some("partially_delivered"), "delivered").as_deref(),
            Some("delivered")
        );
    }

    #[test]
    fn unknown_and_inbound_never_move() {
        assert_eq!(apply(None, "teleported"), None);
        assert_eq!(apply(Some("sent"), "teleported"), None);
        assert_eq!(apply(Some("sent"), "received"), None);
        assert_eq!(apply(Some("teleported"), "sent").as_deref(), Some("sent"));
        assert!(SmsStatus::parse("teleported").outcome().is_none());
    }

    #[test]
    fn outcomes() {
        assert_eq!(SmsStatus::Sent.outcome(), Some(SmsOutcome::Pending));
        assert_eq!(SmsStatus::Read.outcome(), Some(SmsOutcome::Delivered));
        assert_eq!(SmsStatus::Canceled.outcome(), Some(SmsOutcome::Failed));
        assert!(SmsStatus::Undelivered.is_final());
        assert!(!SmsStatus::Sending.is_final());
    }

    #[test]
    fn callback_form() {
        let form: Vec<(String, String)> = [
            ("SmsSid", "SM1"),
            ("SmsStatus", "undelivered"),
            ("MessageStatus", "undelivered"),
            ("To", "+31612345511"),
            ("MessageSid", "SM1"),
            ("AccountSid", "AC1"),
            ("From", "Lumen"),
            ("ApiVersion", "2010-04-01"),
            ("ErrorCode", "30003"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let cb = StatusCallback::from_form(&form).unwrap();
        assert_eq!(
            cb,
            StatusCallback {
                message_sid: "SM1".into(),
                status: SmsStatus::Undelivered,
                error_code: Some(30003),
                to: Some("+31612345511".into()),
                account_sid: Some("AC1".into()),
            }
        );
        let no_sid = &form[1..2];
        assert_eq!(
            StatusCallback::from_form(no_sid),
            Err(CallbackError::NoMessageSid)
        );
        let no_status = &form[0..1];
        assert_eq!(
            StatusCallback::from_form(no_status),
            Err(CallbackError::NoStatus)
        );
        let odd: Vec<(String, String)> = vec![
            ("MessageSid".into(), "SM2".into()),
            ("MessageStatus".into(), "sent".into()),
            ("ErrorCode".into(), "".into()),
        ];
        let cb = StatusCallback::from_form(&odd).unwrap();
        assert_eq!(cb.error_code, None);
        assert_eq!(cb.to, None);
    }
}
