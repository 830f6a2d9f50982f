//! `belofte bounce`: one bounce or complaint on stdin, as a Postfix or Exim pipe transport
//! delivers it, recorded through the same code as `POST /hooks/bounce`.
//!
//! Exit status, as MTAs read it (sysexits.h): 0 when the message was recorded, was a repeat,
//! named no message of ours or was no report at all — the MTA must not bounce a bounce;
//! 75 (`EX_TEMPFAIL`) when the configuration or the database cannot be used, so that the
//! MTA keeps the message and tries again later instead of losing it.

use std::io::Read;
use std::sync::Arc;

use belofte_feedback::MAX_BOUNCE_BYTES;

use crate::render::Templates;
use crate::settings::Settings;
use crate::store::Store;

use super::config::DaemonConfig;
use super::feedback::{Feedback, Recorded};
use super::{Clock, Shared};

/// sysexits.h: a temporary failure; the MTA retries.
pub const EX_TEMPFAIL: u8 = 75;

/// Why a bounce could not be recorded (the caller exits with [`EX_TEMPFAIL`]).
#[derive(Debug, thiserror::Error)]
pub enum BounceError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("reading stdin: {0}")]
    Input(#[from] std::io::Error),
}

/// Reads the message: the first bytes the parser looks at (a little more than it reads, so
/// that it knows when a message was cut), and the rest drained, so that the MTA's write does
/// not fail on a closed pipe.
pub fn read_message(input: &mut impl Read) -> Result<Vec<u8>, std::io::Error> {
    let mut raw = Vec::new();
    input.take(MAX_BOUNCE_BYTES as u64 + 1).read_to_end(&mut raw)?;
    std::io::copy(input, &mut std::io::sink())?;
    Ok(raw)
}

/// Records one raw bounce against the database of the configuration.
pub async fn record(settings: Settings, templates: Templates, cfg: &DaemonConfig, raw: &[u8], recipient: Option<&str>) -> Result<Recorded, BounceError> {
    let verp = cfg.email.verp().map_err(|(key, problem)| BounceError::Config(format!("{key}: {problem}")))?;
    let store = Arc::new(Store::open_beside_daemon(&cfg.database.url).await?);
    let shared = Arc::new(Shared::open(settings, templates, &store, Clock::Wall).await?);
    // No dispatcher to wake here: the daemon's workers find a fallback row within `poll_ms`.
    let feedback = Feedback::new(shared, Arc::clone(&store), cfg.fallback.clone(), verp, None);
    let recorded = feedback.bounce(raw, recipient).await;
    store.close().await;
    Ok(recorded?)
}
