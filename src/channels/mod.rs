//! Delivery to customers and systems: email (SMTP | file | memory), SMS (Twilio | file | memory).
//!
//! The dispatcher hands one rendered message at a time to a backend and gets back a
//! [`SendOutcome`]. The outcome is the whole contract: it says whether the provider took the
//! message, whether trying again later can help, whether trying again would be wrong, and
//! whether we simply cannot know (then the dispatcher has to resolve the doubt before it
//! sends again, or it risks telling the customer the same thing twice).
//!
//! Recipients are personal data: everything here logs them only through [`redact_email`]
//! and [`redact_phone`].

pub mod email;
pub mod sms;

use serde::{Deserialize, Serialize};

pub use email::{EmailBackend, FileMailer, MemoryMailer, SmtpConfig, SmtpMailer, Tls};
pub use sms::{FileSms, MemorySms, SmsBackend, TwilioClient, TwilioConfig};

/// What became of one attempt to hand a message to a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", content = "detail", rename_all = "snake_case")]
pub enum SendOutcome {
    /// Accepted by the provider (SMTP 250 to the end of DATA, Twilio 201). `provider_id` is the
    /// Twilio message sid, the SMTP server's reply text (it usually names its queue id), or
    /// the file written.
    Sent { provider_id: Option<String> },
    /// Not accepted, and trying again later may work: SMTP 4xx, connection refused or dropped
    /// before the message body was sent, Twilio 429/5xx.
    Transient(String),
    /// Not accepted, and trying again will not change that: SMTP 5xx, Twilio 4xx with an error
    /// code. Classified by the channel that knows its provider's codes.
    Permanent {
        reason: String,
        /// Twilio's error code or the SMTP reply code.
        code: Option<u32>,
        /// The recipient will never work on this channel (a number Twilio calls invalid or
        /// opted out; an SMTP 5.1.x "no such mailbox"): remember it, do not try again.
        suppress: bool,
        /// Our own sender is broken (a Twilio sender or Messaging Service problem): every
        /// message would fail the same way, so the channel pauses like on refused
        /// credentials and this message goes back to the queue.
        pause: bool,
    },
    /// We do not know whether the message went out: the SMTP connection broke after the body
    /// was sent, or the Twilio request timed out. Resolve before sending again (for SMS with
    /// [`SmsBackend::lookup`]; for email a resend carries the same `Message-ID`).
    Unknown(String),
    /// The provider rejected our credentials (SMTP 530/534/535, Twilio 401/403 or error
    /// 20003). Every further message would fail the same way: pause the channel and alert.
    AuthFailed(String),
}

impl SendOutcome {
    /// A permanent failure that neither suppresses the recipient nor pauses the channel.
    pub fn permanent(reason: impl Into<String>) -> SendOutcome {
        SendOutcome::Permanent { reason: reason.into(), code: None, suppress: false, pause: false }
    }

    /// A short, stable label for metrics and attempt records.
    pub fn label(&self) -> &'static str {
        match self {
            SendOutcome::Sent { .. } => "sent",
            SendOutcome::Transient(_) => "transient",
            SendOutcome::Permanent { .. } => "permanent",
            SendOutcome::Unknown(_) => "unknown",
            SendOutcome::AuthFailed(_) => "auth_failed",
        }
    }

    pub fn is_sent(&self) -> bool {
        matches!(self, SendOutcome::Sent { .. })
    }

    /// The reason text of a failure; `None` when sent.
    pub fn reason(&self) -> Option<&str> {
        match self {
            SendOutcome::Sent { .. } => None,
            SendOutcome::Permanent { reason, .. } => Some(reason),
            SendOutcome::Transient(r)
            | SendOutcome::Unknown(r)
            | SendOutcome::AuthFailed(r) => Some(r),
        }
    }

    /// The provider's numeric error code: the classified code of a permanent failure, else
    /// the one the reason starts with (`twilio 20429: …`, `smtp 451: …`), for logs and tests.
    pub fn provider_code(&self) -> Option<u32> {
        if let SendOutcome::Permanent { code, .. } = self {
            return *code;
        }
        let reason = self.reason()?;
        let rest = reason
            .strip_prefix("twilio ")
            .or_else(|| reason.strip_prefix("smtp "))?;
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() || !rest[digits.len()..].starts_with(':') {
            return None;
        }
        digits.parse().ok()
    }
}

/// One email as the dispatcher hands it over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingEmail {
    /// The unique notification key, e.g. `B-1101/delayed/2026-11-28/email`. It fixes the
    /// `Message-ID`, so every attempt of one notification carries the same id.
    pub key: String,
    /// `Lumen klantenservice <service@lumen.example>` or a bare address.
    pub from: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    /// When present the mail is multipart/alternative (text first, HTML second).
    pub html: Option<String>,
    /// `MAIL FROM` when it is not the `From` address: the message's VERP address
    /// (`bounce+{token}@bounce.example`), so that a bounce names the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope_from: Option<String>,
}

/// One SMS as the dispatcher hands it over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingSms {
    pub key: String,
    /// Sender id or number; empty means "the backend's configured sender".
    pub from: String,
    /// E.164, e.g. `+31612345511`.
    pub to: String,
    pub text: String,
}

/// Configuration or start-up problems of a backend (sending itself never errors: it
/// returns a [`SendOutcome`]).
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("{0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// `daan@example.nl` → `d***@example.nl`. The domain stays (it tells which provider
/// bounces), the person does not. Anything unparseable becomes `***`.
pub fn redact_email(address: &str) -> String {
    // "Name <addr>" would leak the name; only the address part is kept.
    let addr = match (address.rfind('<'), address.rfind('>')) {
        (Some(open), Some(close)) if open < close => &address[open + 1..close],
        _ => address,
    }
    .trim();
    match addr.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        _ => "***".to_string(),
    }
}

/// `+31612345511` → `+316*****511`: the country and mobile prefix and the last three digits
/// stay (enough to tell numbers apart in a log), the rest is masked.
pub fn redact_phone(number: &str) -> String {
    let chars: Vec<char> = number.trim().chars().collect();
    const HEAD: usize = 4;
    const TAIL: usize = 3;
    if chars.len() <= HEAD + TAIL {
        return "*".repeat(chars.len().max(3));
    }
    let head: String = chars[..HEAD].iter().collect();
    let tail: String = chars[chars.len() - TAIL..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - HEAD - TAIL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_email() {
        assert_eq!(redact_email("daan@example.nl"), "d***@example.nl");
        assert_eq!(
            redact_email("Daan de Vries <daan@example.nl>"),
            "d***@example.nl"
        );
        assert_eq!(redact_email("not an address"), "***");
        assert_eq!(redact_email("@example.nl"), "***");
        assert_eq!(redact_email("élodie@example.fr"), "é***@example.fr");
    }

    #[test]
    fn redacts_phone() {
        assert_eq!(redact_phone("+31612345511"), "+316*****511");
        assert_eq!(redact_phone("+3161"), "*****");
        assert_eq!(redact_phone(""), "***");
    }

    #[test]
    fn provider_codes() {
        let opted_out = SendOutcome::Permanent { reason: "twilio 21610: opted out".into(), code: Some(21610), suppress: true, pause: false };
        assert_eq!(opted_out.provider_code(), Some(21610));
        assert_eq!(opted_out.reason(), Some("twilio 21610: opted out"));
        assert_eq!(SendOutcome::permanent("not an address").provider_code(), None);
        assert_eq!(SendOutcome::Transient("smtp 451: 4.3.0 later".into()).provider_code(), Some(451));
        assert_eq!(SendOutcome::Transient("twilio rate limited".into()).provider_code(), None);
        assert_eq!(SendOutcome::Sent { provider_id: None }.provider_code(), None);
    }
}
