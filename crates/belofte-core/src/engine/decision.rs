//! What the engine wants done: a message on one channel, or an event for a person or the
//! voucher system. Customer decisions carry the notice to render.

use serde::{Deserialize, Serialize};

use crate::domain::{Channel, EscalationWhy, Instant, Kind, Reason};
use crate::notice::Notice;

/// The `original`, `previous` and `new` promise a message speaks of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromiseChange {
    pub original: Instant,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Instant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Instant>,
}

/// What the engine wants done. Customer decisions carry the notice to render; event
/// decisions carry what the actions topic needs.
///
/// The outbox keeps each customer message's decision as JSON, so absent facts (`None`) are
/// left out of it, here and in the notice, and read back as absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub order_id: String,
    pub kind: Kind,
    pub channel: Channel,
    pub send_at: Instant,
    /// Email address or phone number; `None` for events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub brand: String,
    pub locale: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    pub promise: PromiseChange,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_update_at: Option<Instant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation_eur: Option<u32>,
    pub cause: String,
    /// The order's notice number this decision belongs to (email, SMS and events of one
    /// notice share it).
    pub seq: u32,
    pub payload: Payload,
}

impl Decision {
    /// The idempotency key of the outbox row: order, kind, new promise date (or cause),
    /// channel, and the notice number. A replay decides the same notice with the same key.
    pub fn notification_key(&self) -> String {
        let what = match self.promise.new {
            Some(t) => t.format("%Y-%m-%dT%H:%MZ").to_string(),
            None => self.cause.clone(),
        };
        format!("{}/{}/{}/{}/{}", self.order_id, self.kind, what, self.channel, self.seq)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Payload {
    Customer { notice: Box<Notice> },
    Escalation { why: EscalationWhy, messages_sent: u32 },
    Compensation { amount_eur: u32, delay_days: i64 },
}

impl Decision {
    pub fn notice(&self) -> Option<&Notice> {
        match &self.payload {
            Payload::Customer { notice } => Some(notice),
            _ => None,
        }
    }
}

