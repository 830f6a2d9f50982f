//! What comes back after belofte sent a notification, read without any I/O: Twilio's status
//! callbacks and the bounces and complaints that email produces.
//!
//! - [`verify_twilio_signature`] / [`expected_twilio_signature`]: the `X-Twilio-Signature`
//!   of a webhook request, exactly as Twilio's libraries check it.
//! - [`StatusCallback`], [`SmsStatus`]: the callback form, and the order in which statuses
//!   may replace each other so that callbacks can be recorded in any order
//!   ([`SmsStatus::apply`]).
//! - [`Verp`], [`message_ref`]: an authenticated envelope sender per message, so that a bounce
//!   names its message and a forged one cannot name somebody else's.
//! - [`parse_bounce`]: one raw bounce (any bytes) → [`BounceOutcome`]: a DSN or an abuse
//!   report per recipient, or the reason it is ignored.
//!
//! Everything is a pure function of its arguments: no clock, no files, no network, no async.
//! The daemon does the listening, the storing and the deciding what to send next.

mod bounce;
mod envelope;
mod mime;
mod sms_status;
mod twilio_signature;
mod verp;

pub use bounce::{
    parse_bounce, Bounce, BounceKind, BounceOutcome, BounceReport, DsnStatus, Ignored,
    MAX_BOUNCE_BYTES,
};
pub use envelope::{AddressSource, EnvelopeAddress};
pub use sms_status::{CallbackError, SmsOutcome, SmsStatus, StatusCallback};
pub use twilio_signature::{
    expected as expected_twilio_signature, verify as verify_twilio_signature, SignatureError,
};
pub use verp::{message_ref, Verp, VerpError};
