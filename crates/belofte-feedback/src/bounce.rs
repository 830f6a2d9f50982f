//! One raw bounce message → what it says about our message: a delivery status notification
//! (RFC 3464), an abuse report (RFC 5965 ARF), or nothing we act on.
//!
//! Bounces come from strangers' servers and from anyone who can send mail, so the reader
//! takes any bytes: at most [`MAX_BOUNCE_BYTES`] of them are read, nothing panics, and what
//! cannot be read for certain is ignored rather than guessed. In particular a report whose
//! machine-readable part was cut off (its closing boundary missing) is ignored whole: a cut
//! could have turned `alice@example.com` into `alice@example.co`.
//!
//! Which message a bounce is about comes from its VERP address
//! ([`BounceReport::verp_candidates`], decoded with [`crate::Verp::decode`]), not from the
//! recipient the bounce names. The daemon should fail and suppress the address *it* sent that
//! message to; the recipient here is for logs and cross-checks (it may differ after
//! forwarding, and anyone can write it).

use std::fmt;

use crate::envelope::{self, AddressSource, EnvelopeAddress};
use crate::mime::{strip_comments, Entity, Header, Part};

/// Bytes of a bounce that are read; the rest is ignored. A DSN's report part comes before
/// the returned message, so a long returned message only loses its own tail.
pub const MAX_BOUNCE_BYTES: usize = 1024 * 1024;
/// Multiparts nested deeper than this are not searched for a report.
const MAX_DEPTH: usize = 8;
/// Recipients kept from one report.
const MAX_RECIPIENTS: usize = 100;
/// Characters of a diagnostic kept for logs.
const MAX_DIAGNOSTIC: usize = 500;

/// An RFC 3463 enhanced status code, `class.subject.detail` (`5.1.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DsnStatus {
    /// 2 success, 4 persistent transient failure, 5 permanent failure.
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl DsnStatus {
    /// The code at the start of a `Status:` value (`5.0.0 (permanent failure)`).
    pub fn parse(value: &str) -> Option<DsnStatus> {
        let code = value
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()?;
        let mut numbers = code.split('.');
        let mut number = |max_len: usize| -> Option<u16> {
            let n = numbers.next()?;
            if n.is_empty() || n.len() > max_len || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            n.parse().ok()
        };
        let class = number(1)?;
        let subject = number(3)?;
        let detail = number(3)?;
        if numbers.next().is_some() || !matches!(class, 2 | 4 | 5) {
            return None;
        }
        Some(DsnStatus {
            class: u8::try_from(class).ok()?,
            subject,
            detail,
        })
    }

    /// Whether a permanent failure with this code is about the recipient's address (so that
    /// writing to it again is pointless) rather than about this message or about us.
    ///
    /// Not about the address: X.7.x security and policy (spam filters, reputation, DMARC:
    /// a good address that refused this mail), X.6.x content, X.3.4 and X.2.3 message too big,
    /// X.1.7 and X.1.8 our own sender address. Every other 5.x.x is taken as the address.
    fn is_about_the_address(&self) -> bool {
        !matches!(
            (self.subject, self.detail),
            (7, _) | (6, _) | (3, 4) | (2, 3) | (1, 7) | (1, 8)
        )
    }
}

impl fmt::Display for DsnStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// What a report says about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BounceKind {
    /// `Action: failed` with a 5.x.x status: permanently undeliverable.
    Failed { status: DsnStatus },
    /// `Action: failed` with a 4.x.x status: the reporting MTA gave up retrying a temporary
    /// problem (RFC 3464's first example: "cannot send message for 5 days"). The message did
    /// not arrive, but the address may be fine.
    GaveUp { status: DsnStatus },
    /// `Action: delayed`: still being retried. Recorded only.
    Delayed { status: Option<DsnStatus> },
    /// `Action: delivered`, `relayed` or `expanded` (a success DSN).
    Delivered,
    /// An ARF feedback report; `feedback_type` in lowercase (`abuse`, `fraud`, `virus`,
    /// `other`, `not-spam`, `auth-failure`, …).
    Abuse { feedback_type: String },
}

impl BounceKind {
    /// Whether the message did not reach the customer, so the other channel should be tried.
    pub fn fails_message(&self) -> bool {
        matches!(self, BounceKind::Failed { .. } | BounceKind::GaveUp { .. })
    }

    /// Whether the customer's address should get no more mail: a permanent failure about
    /// the address (see [`DsnStatus`]'s rules: not for policy or content rejections), or a
    /// complaint (`abuse`, `fraud`). Other feedback types (`not-spam`, `auth-failure`,
    /// `virus`, `other`) are no request to stop.
    pub fn suppresses_address(&self) -> bool {
        match self {
            BounceKind::Failed { status } => status.is_about_the_address(),
            BounceKind::Abuse { feedback_type } => {
                matches!(feedback_type.as_str(), "abuse" | "fraud")
            }
            BounceKind::GaveUp { .. } | BounceKind::Delayed { .. } | BounceKind::Delivered => false,
        }
    }
}

/// One recipient's part of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    pub kind: BounceKind,
    /// `Final-Recipient` (DSN) or `Original-Rcpt-To` (ARF), bare.
    pub recipient: Option<String>,
    /// `Original-Recipient` (DSN): the address as we gave it, when the MTA kept it.
    pub original_recipient: Option<String>,
    /// `Diagnostic-Code` without its type (`550 5.1.1 … User unknown`), for logs; white space
    /// collapsed and cut to 500 characters.
    pub diagnostic: Option<String>,
}

/// A report that can be acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceReport {
    /// One per recipient in the report, in its order; never empty.
    pub bounces: Vec<Bounce>,
    /// Where the VERP address may be, most trusted first, each address once. Decode them in
    /// this order and take the first that decodes.
    pub verp_candidates: Vec<EnvelopeAddress>,
    /// The `Message-ID` of the returned or reported message, without its angle brackets
    /// (for belofte's own mail `{ref}@belofte.DOMAIN`, see [`crate::message_ref`]), when the
    /// report includes its header. Anyone can write it: a cross-check, not a key.
    pub original_message_id: Option<String>,
    /// `Reporting-MTA`, without its type.
    pub reporting_mta: Option<String>,
}

/// Why a message is not acted on. Log it and drop the message; nothing here is an error of
/// ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// No `multipart/report` in it: an auto-reply, a human, a non-standard bounce.
    NotAReport,
    /// A report of another kind (the `report-type`, e.g. `disposition-notification`).
    UnsupportedReport(String),
    /// The report part is cut off (no boundary after it).
    Truncated,
    /// A delivery status without one recipient group that can be read for certain.
    NoUsableRecipient,
    /// A feedback report without `Feedback-Type`.
    NoFeedbackType,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::NotAReport => f.write_str("not a delivery or feedback report"),
            Ignored::UnsupportedReport(kind) => write!(f, "report of type {kind:?}"),
            Ignored::Truncated => f.write_str("the report part is cut off"),
            Ignored::NoUsableRecipient => {
                f.write_str("delivery status without a readable recipient")
            }
            Ignored::NoFeedbackType => f.write_str("feedback report without Feedback-Type"),
        }
    }
}

/// The result of [`parse_bounce`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BounceOutcome {
    Report(BounceReport),
    Ignored(Ignored),
}

/// Reads one raw message as an MTA delivers it to a pipe (an mbox `From ` line, `Return-Path`,
/// `Delivered-To` may come first). `envelope_recipient` is the recipient address the MTA
/// passed outside the message, if any.
pub fn parse_bounce(raw: &[u8], envelope_recipient: Option<&str>) -> BounceOutcome {
    let input = raw.get(..MAX_BOUNCE_BYTES).unwrap_or(raw);
    // Complete or not, the top-level header is whole once its empty line was seen; a body
    // without one holds no report anyway.
    let top = Entity::parse(input, false);
    let mut candidates = envelope::from_delivery(envelope_recipient, &top.header);
    let Some(report) = find_report(&top, 0) else {
        return BounceOutcome::Ignored(Ignored::NotAReport);
    };
    let parts: Vec<(Entity, bool)> = report
        .parts()
        .into_iter()
        .map(|Part { bytes, complete }| (Entity::parse(bytes, complete), complete))
        .collect();
    let find = |types: &[&str]| {
        parts
            .iter()
            .find(|(e, _)| types.contains(&e.header.content_type().mime.as_str()))
    };
    let original = find(&[
        "message/rfc822",
        "text/rfc822-headers",
        "message/rfc822-headers",
        "message/global",
        "message/global-headers",
    ])
    .map(|(e, complete)| Header::parse(&e.decoded_body(), *complete).0);
    let original_message_id = original
        .as_ref()
        .and_then(|h| h.get("message-id"))
        .and_then(message_id);

    let outcome = if let Some((part, complete)) =
        find(&["message/delivery-status", "message/global-delivery-status"])
    {
        if !complete {
            return BounceOutcome::Ignored(Ignored::Truncated);
        }
        read_delivery_status(&part.decoded_body())
    } else if let Some((part, complete)) = find(&["message/feedback-report"]) {
        if !complete {
            return BounceOutcome::Ignored(Ignored::Truncated);
        }
        read_feedback_report(&part.decoded_body(), &mut candidates)
    } else {
        let kind = report
            .header
            .content_type()
            .param("report-type")
            .unwrap_or("unknown")
            .to_ascii_lowercase();
        return BounceOutcome::Ignored(Ignored::UnsupportedReport(kind));
    };
    let (bounces, reporting_mta) = match outcome {
        Ok(found) => found,
        Err(ignored) => return BounceOutcome::Ignored(ignored),
    };
    if let Some(path) = original.as_ref().and_then(|h| h.get("return-path")) {
        envelope::push(&mut candidates, AddressSource::OriginalReturnPath, path);
    }
    BounceOutcome::Report(BounceReport {
        bounces,
        verp_candidates: candidates,
        original_message_id,
        reporting_mta,
    })
}

/// The first `multipart/report`, depth first, looking into multiparts only (not into
/// attached messages: an abuse report's attachment may itself be a bounce).
fn find_report<'a>(entity: &Entity<'a>, depth: usize) -> Option<Entity<'a>> {
    let ct = entity.header.content_type();
    if ct.mime == "multipart/report" {
        return Some(entity.clone());
    }
    if !ct.is_multipart() || depth >= MAX_DEPTH {
        return None;
    }
    entity
        .parts()
        .into_iter()
        .find_map(|part| find_report(&Entity::parse(part.bytes, part.complete), depth + 1))
}

type Found = Result<(Vec<Bounce>, Option<String>), Ignored>;

/// RFC 3464 §2.1: a per-message field group, then one group per recipient, separated by
/// empty lines. A group is taken as a recipient's when it has `Action` or a recipient field,
/// so a report that leaves out the per-message group (or the line between) still reads.
fn read_delivery_status(body: &[u8]) -> Found {
    let mut reporting_mta = None;
    let mut bounces = Vec::new();
    for group in field_groups(body) {
        if reporting_mta.is_none() {
            reporting_mta = group
                .get("reporting-mta")
                .map(|v| envelope::strip_type(v).to_string())
                .filter(|v| !v.is_empty());
        }
        let recipient = group.get("final-recipient").and_then(first_address);
        let original_recipient = group.get("original-recipient").and_then(first_address);
        let Some(action) = group.get("action") else {
            continue;
        };
        let action = strip_comments(action).trim().to_ascii_lowercase();
        let status = group.get("status").and_then(DsnStatus::parse);
        let kind = match (action.as_str(), status) {
            ("failed", Some(status)) if status.class == 5 => BounceKind::Failed { status },
            ("failed", Some(status)) if status.class == 4 => BounceKind::GaveUp { status },
            // A failure without a failure code cannot be classified safely.
            ("failed", _) => continue,
            ("delayed", status) => BounceKind::Delayed {
                status: status.filter(|s| s.class == 4),
            },
            ("delivered" | "relayed" | "expanded", _) => BounceKind::Delivered,
            _ => continue,
        };
        if bounces.len() < MAX_RECIPIENTS {
            bounces.push(Bounce {
                kind,
                recipient,
                original_recipient,
                diagnostic: group.get("diagnostic-code").and_then(diagnostic),
            });
        }
    }
    if bounces.is_empty() {
        return Err(Ignored::NoUsableRecipient);
    }
    Ok((bounces, reporting_mta))
}

/// RFC 5965 §3.1. One [`Bounce`] per `Original-Rcpt-To`, or one without a recipient when the
/// report leaves it out (it may be redacted). `Original-Mail-From` is our envelope sender, so
/// it joins the VERP candidates.
fn read_feedback_report(body: &[u8], candidates: &mut Vec<EnvelopeAddress>) -> Found {
    let (fields, _) = Header::parse(body, true);
    let feedback_type = fields
        .get("feedback-type")
        .map(|t| strip_comments(t).trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .ok_or(Ignored::NoFeedbackType)?;
    for from in fields.all("original-mail-from") {
        envelope::push(candidates, AddressSource::OriginalMailFrom, from);
    }
    let recipients: Vec<String> = fields
        .all("original-rcpt-to")
        .filter_map(first_address)
        .take(MAX_RECIPIENTS)
        .collect();
    let bounce = |recipient| Bounce {
        kind: BounceKind::Abuse {
            feedback_type: feedback_type.clone(),
        },
        recipient,
        original_recipient: None,
        diagnostic: None,
    };
    let bounces = if recipients.is_empty() {
        vec![bounce(None)]
    } else {
        recipients.into_iter().map(|r| bounce(Some(r))).collect()
    };
    let reporting_mta = fields
        .get("reporting-mta")
        .map(|v| envelope::strip_type(v).to_string());
    Ok((bounces, reporting_mta))
}

/// The field groups of a delivery-status body. The body is whole (its part was closed by a
/// boundary), so every group is too.
fn field_groups(body: &[u8]) -> Vec<Header> {
    let mut groups = Vec::new();
    let mut rest = body;
    while !rest.is_empty() && groups.len() <= MAX_RECIPIENTS {
        let skip = leading_blank_lines(rest);
        rest = rest.get(skip..).unwrap_or_default();
        if rest.is_empty() {
            break;
        }
        let (group, used) = Header::parse(rest, true);
        if !group.fields.is_empty() {
            groups.push(group);
        }
        rest = rest.get(used.max(1)..).unwrap_or_default();
    }
    groups
}

fn leading_blank_lines(bytes: &[u8]) -> usize {
    let mut used = 0;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            used += line.len();
        } else {
            break;
        }
    }
    used
}

fn first_address(value: &str) -> Option<String> {
    envelope::addresses(value).into_iter().next()
}

fn diagnostic(value: &str) -> Option<String> {
    let text = envelope::strip_type(value);
    let collapsed: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_DIAGNOSTIC)
        .collect();
    (!collapsed.is_empty()).then_some(collapsed)
}

/// `<id@host>` → `id@host`; an id written without brackets is taken as it is.
fn message_id(value: &str) -> Option<String> {
    let value = strip_comments(value);
    let value = value.trim();
    let id = match (value.find('<'), value.find('>')) {
        (Some(open), Some(close)) if open < close => value.get(open + 1..close)?,
        (None, None) => value.split_whitespace().next()?,
        _ => return None,
    };
    let id = id.trim();
    (!id.is_empty() && id.len() <= 998).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes() {
        assert_eq!(
            DsnStatus::parse("5.0.0 (permanent failure)"),
            Some(DsnStatus {
                class: 5,
                subject: 0,
                detail: 0
            })
        );
        assert_eq!(
            DsnStatus::parse("5.1.10").map(|s| s.to_string()).as_deref(),
            Some("5.1.10")
        );
        assert_eq!(DsnStatus::parse("4.4.1(x)").map(|s| s.class), Some(4));
        for bad in [
            "", "5", "5.1", "5.1.1.1", "3.1.1", "55.1.1", "5.1234.1", "5.a.1", "5..1",
        ] {
            assert_eq!(DsnStatus::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn what_suppresses() {
        let failed = |s: &str| BounceKind::Failed {
            status: DsnStatus::parse(s).unwrap(),
        };
        assert!(failed("5.1.1").suppresses_address());
        assert!(failed("5.0.0").suppresses_address());
        assert!(failed("5.2.1").suppresses_address());
        assert!(!failed("5.7.1").suppresses_address(), "a spam rejection");
        assert!(!failed("5.3.4").suppresses_address(), "message too big");
        assert!(failed("5.7.1").fails_message());
        let gave_up = BounceKind::GaveUp {
            status: DsnStatus::parse("4.0.0").unwrap(),
        };
        assert!(gave_up.fails_message() && !gave_up.suppresses_address());
        let delayed = BounceKind::Delayed { status: None };
        assert!(!delayed.fails_message() && !delayed.suppresses_address());
        let abuse = |t: &str| BounceKind::Abuse {
            feedback_type: t.into(),
        };
        assert!(abuse("abuse").suppresses_address());
        assert!(!abuse("not-spam").suppresses_address());
        assert!(!abuse("abuse").fails_message());
    }

    #[test]
    fn message_ids() {
        assert_eq!(message_id(" <a@b> (c)").as_deref(), Some("a@b"));
        assert_eq!(
            message_id("8787KJ.mail@example.net").as_deref(),
            Some("8787KJ.mail@example.net")
        );
        assert_eq!(message_id("<a@b"), None);
        assert_eq!(message_id(""), None);
    }

    #[test]
    fn groups_without_blank_line_discipline() {
        let body = b"\r\n\r\nReporting-MTA: dns; a.example\r\n\r\n\r\nFinal-Recipient: rfc822; x@y.example\r\nAction: failed\r\nStatus: 5.1.1\r\n";
        let (bounces, mta) = read_delivery_status(body).unwrap();
        assert_eq!(mta.as_deref(), Some("a.example"));
        assert_eq!(bounces.len(), 1);
        assert_eq!(bounces[0].recipient.as_deref(), Some("x@y.example"));
        assert_eq!(
            read_delivery_status(b"Reporting-MTA: dns; a\n"),
            Err(Ignored::NoUsableRecipient)
        );
        assert_eq!(
            read_delivery_status(b"Final-Recipient: rfc822; x@y\nAction: failed\n"),
            Err(Ignored::NoUsableRecipient),
            "failed without a status"
        );
    }
}
