//! What the console keeps and changes: the audit (who did what, when), the dead-lettered
//! events with their reasons, the outbox rows that need a person, and an operator's retry
//! or cancel of one row — each in one transaction with its audit entry. The queries of each
//! backend are in `sqlite` and `postgres`.

use serde::Serialize;

use belofte_core::domain::Instant;

use super::{on_backend, OutboxView, Store, StoreError};

pub(super) mod postgres;
pub(super) mod sqlite;

/// Payloads of dead letters are kept up to this many bytes.
pub const DEAD_LETTER_PAYLOAD_MAX: usize = 64 * 1024;

/// The outbox statuses a person has to look at: given up (`failed`), the words could not
/// be made (`render_failed`), or not known whether the provider took it (`unknown`).
pub const PROBLEM_STATUSES: [&str; 3] = ["failed", "render_failed", "unknown"];

/// One line of the audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub who: String,
    /// `retry`, `cancel`, `publish`, `rollback`, …
    pub action: String,
    /// What it was done to: `outbox/17`, `template/delayed/email/nl`, …
    pub subject: String,
    pub detail: Option<String>,
}

/// An audit entry to write.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAudit {
    pub at: Instant,
    pub who: String,
    pub action: String,
    pub subject: String,
    pub detail: Option<String>,
}

/// An event given up, as a batch writes it (beside its copy on the dead-letter topic).
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeadLetter {
    pub topic: String,
    /// -1 for an event that waited too long (it has no record of its own).
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
    pub payload: Option<Vec<u8>>,
}

impl NewDeadLetter {
    /// The payload as text (not UTF-8 → replacement characters; NUL, which PostgreSQL's
    /// text refuses, too), cut to `DEAD_LETTER_PAYLOAD_MAX` bytes on a character boundary;
    /// and whether it was cut.
    fn payload_text(&self) -> (Option<String>, bool) {
        let Some(bytes) = &self.payload else {
            return (None, false);
        };
        let cut = bytes.len() > DEAD_LETTER_PAYLOAD_MAX;
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(DEAD_LETTER_PAYLOAD_MAX)]).replace('\0', "\u{fffd}");
        // Replacement characters may have made it longer than the bytes it came from.
        let mut end = text.len().min(DEAD_LETTER_PAYLOAD_MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        (Some(text[..end].to_string()), cut || end < text.len())
    }
}

/// A dead-lettered event as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub at: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
    pub payload: Option<String>,
    pub truncated: bool,
}

/// The columns `AuditEntry::read` and `DeadLetter::read` take, in their order (`at`, column
/// 1, is read by the backend).
const AUDIT_COLUMNS: &str = "id, at, who, action, subject, detail";
const DEAD_LETTER_COLUMNS: &str = "id, at, topic, part, record_offset, reason, payload, truncated";

impl AuditEntry {
    fn read<R: sqlx::Row>(r: &R, at: String) -> AuditEntry
    where
        usize: sqlx::ColumnIndex<R>,
        String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    {
        AuditEntry { id: r.get(0), at, who: r.get(2), action: r.get(3), subject: r.get(4), detail: r.get(5) }
    }
}

impl DeadLetter {
    fn read<R: sqlx::Row>(r: &R, at: String) -> DeadLetter
    where
        usize: sqlx::ColumnIndex<R>,
        String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        i32: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        bool: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    {
        DeadLetter {
            id: r.get(0),
            at,
            topic: r.get(2),
            partition: r.get(3),
            offset: r.get(4),
            reason: r.get(5),
            payload: r.get(6),
            truncated: r.get(7),
        }
    }
}

/// What an operator's retry or cancel did to one outbox row.
#[derive(Debug, Clone, PartialEq)]
pub enum Changed {
    /// Done: the row went from one status to the other (and the audit says who did it).
    Done { from: String, to: String },
    NotFound,
    /// Not in a status this action applies to; nothing changed.
    Refused { status: String },
}

/// An operator's action on one outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowAction {
    Retry,
    Cancel,
}

/// The audit entry of an operator's action on an outbox row, once the row was found.
fn row_audit(id: i64, action: RowAction, from: &str, to: &str, what: &str, who: &str, at: Instant) -> NewAudit {
    NewAudit {
        at,
        who: who.to_string(),
        action: action.as_str().to_string(),
        subject: format!("outbox/{id}"),
        detail: Some(format!("{from} → {to} ({what})")),
    }
}

/// The statement that makes the change of `action` to a row going to `to`; `$1`/`?1` is the
/// id, `$2`/`?2` the time (placeholders of both backends are written `$n` here).
fn row_update(action: RowAction, to: &str) -> &'static str {
    match (action, to) {
        (RowAction::Retry, "unknown") => "UPDATE outbox SET next_attempt_at = $2 WHERE id = $1",
        (RowAction::Retry, _) => "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $2, finished_at = NULL WHERE id = $1",
        (RowAction::Cancel, _) => "UPDATE outbox SET status = 'cancelled', finished_at = $2 WHERE id = $1",
    }
}

impl RowAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RowAction::Retry => "retry",
            RowAction::Cancel => "cancel",
        }
    }

    /// The status a row in `status` goes to, if this action applies to it. A retry makes a
    /// given-up row due now with a fresh count of attempts; an `unknown` one stays unknown
    /// but due now, so it is still looked up at the provider before it is sent again (a
    /// plain resend could send an SMS twice). Cancel takes anything that has not gone out
    /// and is not going out this moment.
    pub fn target(self, status: &str) -> Option<&'static str> {
        match (self, status) {
            (RowAction::Retry, "failed" | "render_failed") => Some("pending"),
            (RowAction::Retry, "unknown") => Some("unknown"),
            (RowAction::Retry, _) => None,
            (RowAction::Cancel, "sent" | "sending" | "cancelled") => None,
            (RowAction::Cancel, _) => Some("cancelled"),
        }
    }
}

impl Store {
    /// Record who did what (a publish, a rollback, …) on its own.
    pub async fn audit_add(&self, entry: &NewAudit) -> Result<(), StoreError> {
        on_backend!(self, b => b.audit_add(entry).await)
    }

    /// The latest audit entries, newest first.
    pub async fn audit_list(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        on_backend!(self, b => b.audit_list(limit).await)
    }

    /// The latest dead-lettered events, newest first.
    pub async fn dead_letters(&self, limit: i64) -> Result<Vec<DeadLetter>, StoreError> {
        on_backend!(self, b => b.dead_letters(limit).await)
    }

    /// Outbox rows in one of `PROBLEM_STATUSES`, newest first.
    pub async fn outbox_problems(&self, limit: i64) -> Result<Vec<OutboxView>, StoreError> {
        on_backend!(self, b => b.outbox_problems(limit).await)
    }

    /// Retry or cancel one outbox row (`RowAction::target` says which statuses allow it)
    /// and write the audit entry of `who` at `at` in the same transaction: a change is never
    /// without its entry. A retried row is due at `due` (the daemon's clock, the
    /// dispatcher's).
    pub async fn outbox_act(&self, id: i64, action: RowAction, due: Instant, who: &str, at: Instant) -> Result<Changed, StoreError> {
        on_backend!(self, b => b.outbox_act(id, action, due, who, at).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(payload: &[u8]) -> NewDeadLetter {
        NewDeadLetter { topic: "orders".into(), partition: 0, offset: 1, reason: "r".into(), payload: Some(payload.to_vec()) }
    }

    #[test]
    fn payloads_are_kept_as_text_up_to_64_kib() {
        assert_eq!(letter(b"{\"a\":1}").payload_text(), (Some("{\"a\":1}".into()), false));
        let (text, cut) = letter(&vec![b'x'; DEAD_LETTER_PAYLOAD_MAX + 10]).payload_text();
        assert_eq!((text.map(|t| t.len()), cut), (Some(DEAD_LETTER_PAYLOAD_MAX), true));
        let (text, cut) = letter(b"a\0\xffb").payload_text();
        assert_eq!((text.as_deref(), cut), (Some("a\u{fffd}\u{fffd}b"), false), "NUL and broken UTF-8 become replacement characters");
        // Replacement characters (3 bytes each for 1 byte) may not push it past the limit.
        let (text, cut) = letter(&vec![0xff; DEAD_LETTER_PAYLOAD_MAX]).payload_text();
        assert!(text.is_some_and(|t| t.len() <= DEAD_LETTER_PAYLOAD_MAX) && cut);
    }

    #[test]
    fn a_retry_never_skips_the_look_up_and_a_cancel_never_takes_back_what_went_out() {
        assert_eq!(RowAction::Retry.target("failed"), Some("pending"));
        assert_eq!(RowAction::Retry.target("render_failed"), Some("pending"));
        assert_eq!(RowAction::Retry.target("unknown"), Some("unknown"));
        assert_eq!(RowAction::Retry.target("sent"), None);
        assert_eq!(RowAction::Retry.target("pending"), None);
        assert_eq!(RowAction::Cancel.target("pending"), Some("cancelled"));
        assert_eq!(RowAction::Cancel.target("failed"), Some("cancelled"));
        assert_eq!(RowAction::Cancel.target("sent"), None);
        assert_eq!(RowAction::Cancel.target("sending"), None);
    }
}
