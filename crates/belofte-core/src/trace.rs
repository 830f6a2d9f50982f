//! The trace: why a message was sent, and why one was not (`shared/spec/trace.md`).
//!
//! The engine records its steps as it takes them: every event's outcome, every decision,
//! every release to a channel and every silence with its reason. Recording is off unless
//! asked for (`World::traced`); then each step costs one branch, since the closure that
//! builds it (and its sentence) runs only when the trace is on.

use chrono::SecondsFormat;
use chrono_tz::Tz;
use serde_json::{json, Value};

use super::domain::{Channel, Instant, Kind};
use super::engine::PromiseChange;
use super::name::Name;

/// What became of an event at one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    Applied,
    /// Seen before (same `source` + `id`).
    Duplicate,
    /// Older than the fact behind the current estimate.
    Stale,
    /// Waiting for its order or tracking number.
    Parked,
    /// After cancellation or delivery, or a fact that does not apply in the order's state.
    Ignored,
}

impl EventOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Applied => "applied",
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Stale => "stale",
            EventOutcome::Parked => "parked",
            EventOutcome::Ignored => "ignored",
        }
    }
}

/// Why something that could have led to a customer message did not (yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    Coalesced,
    EstimateFits,
    EarlierThanPromised,
    SameDate,
    CustomerCaused,
    NoConsent,
    NoAddress,
    QuietHours,
    DailyCap,
    Superseded,
    Cancelled,
    Delivered,
    Suppressed,
    /// Moderation: the next promised update is not due yet (`until`).
    Cadence,
}

impl Silence {
    pub fn as_str(self) -> &'static str {
        match self {
            Silence::Coalesced => "coalesced",
            Silence::EstimateFits => "estimate_fits",
            Silence::EarlierThanPromised => "earlier_than_promised",
            Silence::SameDate => "same_date",
            Silence::CustomerCaused => "customer_caused",
            Silence::NoConsent => "no_consent",
            Silence::NoAddress => "no_address",
            Silence::QuietHours => "quiet_hours",
            Silence::DailyCap => "daily_cap",
            Silence::Superseded => "superseded",
            Silence::Cancelled => "cancelled",
            Silence::Delivered => "delivered",
            Silence::Suppressed => "suppressed",
            Silence::Cadence => "cadence",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// `source` and `time` (the event's own) are not lines of `trace.md`: the daemon keeps
    /// them beside the step, for the order's list of events (`Step::to_stored_json`).
    Event { type_name: &'static str, id: Name, source: Name, time: Instant, outcome: EventOutcome },
    Decision { kind: Kind, channels: Vec<Channel>, promise: PromiseChange },
    Message { kind: Kind, channel: Channel, send_at: Instant },
    Silence { reason: Silence, channel: Option<Channel>, until: Option<Instant> },
}

/// One step the engine took, for one order.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// `None` only for an event that names no known order.
    pub order_id: Option<Name>,
    /// The engine's clock.
    pub at: Instant,
    /// The brand's time zone: times are written with its local offset.
    pub tz: Tz,
    /// The event id, or `timer:<what>`.
    pub cause: String,
    pub what: What,
    /// One sentence a person can read.
    pub detail: String,
}

impl Step {
    pub fn silence(order_id: &Name, at: Instant, tz: Tz, cause: &str, reason: Silence, detail: String) -> Step {
        Step {
            order_id: Some(order_id.clone()),
            at,
            tz,
            cause: cause.to_string(),
            what: What::Silence { reason, channel: None, until: None },
            detail,
        }
    }

    /// The same silence, about one channel and/or lasting until a moment.
    pub fn on(mut self, channel: Option<Channel>, until: Option<Instant>) -> Step {
        if let What::Silence { channel: c, until: u, .. } = &mut self.what {
            *c = channel;
            *u = until;
        }
        self
    }

    /// The JSON object of `trace.md`: one line of `simulate --trace`.
    pub fn to_json(&self) -> Value {
        let fmt = |t: Instant| t.with_timezone(&self.tz).to_rfc3339_opts(SecondsFormat::Secs, false);
        let mut v = json!({
            "order_id": self.order_id.as_deref(),
            "at": fmt(self.at),
        });
        let Some(m) = v.as_object_mut() else { return v };
        match &self.what {
            What::Event { type_name, id, outcome, .. } => {
                m.insert("step".into(), json!("event"));
                m.insert("type".into(), json!(type_name));
                m.insert("id".into(), json!(id.as_str()));
                m.insert("outcome".into(), json!(outcome.as_str()));
            }
            What::Decision { kind, channels, promise } => {
                m.insert("step".into(), json!("decision"));
                m.insert("kind".into(), json!(kind.as_str()));
                m.insert("channels".into(), json!(channels.iter().map(|c| c.as_str()).collect::<Vec<_>>()));
                m.insert(
                    "promise".into(),
                    json!({
                        "original": fmt(promise.original),
                        "previous": promise.previous.map(fmt),
                        "new": promise.new.map(fmt),
                    }),
                );
            }
            What::Message { kind, channel, send_at } => {
                m.insert("step".into(), json!("message"));
                m.insert("kind".into(), json!(kind.as_str()));
                m.insert("channel".into(), json!(channel.as_str()));
                m.insert("send_at".into(), json!(fmt(*send_at)));
            }
            What::Silence { reason, channel, until } => {
                m.insert("step".into(), json!("silence"));
                m.insert("reason".into(), json!(reason.as_str()));
                if let Some(c) = channel {
                    m.insert("channel".into(), json!(c.as_str()));
                }
                if let Some(t) = until {
                    m.insert("until".into(), json!(fmt(*t)));
                }
            }
        }
        m.insert("cause".into(), json!(self.cause));
        m.insert("detail".into(), json!(self.detail));
        v
    }

    /// What the daemon stores per order: `to_json`, and for an event step also the event's
    /// `source` and own `time` (the order's list of events shows them; `simulate --trace`
    /// prints `to_json`, as `trace.md` has it).
    pub fn to_stored_json(&self) -> Value {
        let mut v = self.to_json();
        if let (What::Event { source, time, .. }, Some(m)) = (&self.what, v.as_object_mut()) {
            m.insert("source".into(), json!(source.as_str()));
            m.insert("time".into(), json!(time.with_timezone(&self.tz).to_rfc3339_opts(SecondsFormat::Secs, false)));
        }
        v
    }
}

/// Where the engine writes its steps. Off: nothing is built, nothing is kept.
#[derive(Debug, Default)]
pub struct Trace {
    on: bool,
    steps: Vec<Step>,
}

impl Trace {
    pub fn new(on: bool) -> Trace {
        Trace { on, steps: Vec::new() }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Record a step; `step` runs only when the trace is on.
    #[inline]
    pub fn record(&mut self, step: impl FnOnce() -> Step) {
        if self.on {
            self.steps.push(step());
        }
    }

    /// How many steps are kept: a mark to `insert_at` later.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Record a step before those taken since `mark` (an event's outcome is known only
    /// after the steps it caused, but is read first).
    pub fn insert_at(&mut self, mark: usize, step: impl FnOnce() -> Step) {
        if self.on {
            let at = mark.min(self.steps.len());
            self.steps.insert(at, step());
        }
    }

    pub fn take(&mut self) -> Vec<Step> {
        std::mem::take(&mut self.steps)
    }
}
