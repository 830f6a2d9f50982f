//! Test doubles of the providers belofte delivers through, as real protocol peers on
//! 127.0.0.1 (an ephemeral port each), scripted per message or request; a PostgreSQL
//! database per test (`pg::TestDb`); and temporary folders. One copy, used by the tests,
//! `belofte bench` and the demo.
//!
//! ```ignore
//! use testkit::smtp::{DataAnswer, SmtpScript, SmtpServer};
//! use testkit::twilio::{TwilioAnswer, TwilioDouble};
//!
//! let (addr, smtp) = SmtpServer::start(SmtpScript::data([DataAnswer::temp_fail()])).await;
//! // … point an SmtpConfig at addr (tls = none) and send …
//! let mails = smtp.wait_for_accepted(1, Duration::from_secs(5)).await;
//! assert_eq!(mails[0].header("X-Belofte-Key").as_deref(), Some("B-1101/delayed/2026-11-28/email"));
//!
//! let (base_url, twilio) = TwilioDouble::start([TwilioAnswer::TooManyRequests]).await;
//! // … TwilioConfig { base_url, … } …
//! let reqs = twilio.requests();
//! ```
//!
//! Both servers run until the last clone of their handle is dropped (or the runtime ends).
//! Answers are consumed in order across all connections/requests; once the script is used
//! up, everything is accepted.

pub mod pg;
pub mod smtp;
pub mod twilio;
pub mod webdriver;

/// Temporary folders, removed when dropped.
pub use tempfile::{tempdir, TempDir};

use std::sync::{Arc, Mutex, MutexGuard};

/// Aborts the server task when the last handle goes.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) fn lock<T>(m: &Arc<Mutex<T>>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Headers of an RFC 5322 message (unfolded, in order) and its body. `None` when there is no
/// empty line separating them or a header line is not `Name: value`.
pub fn parse_message(raw: &str) -> Option<(Vec<(String, String)>, String)> {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .or_else(|| raw.split_once("\n\n"))?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with(' ') || line.starts_with('\t') {
            let last = headers.last_mut()?;
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else {
            let (name, value) = line.split_once(':')?;
            if name.is_empty() || name.contains(' ') {
                return None;
            }
            headers.push((name.to_string(), value.trim().to_string()));
        }
    }
    Some((headers, body.to_string()))
}

/// The first header called `name` (case-insensitive).
pub fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.trim().bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
#[test]
fn base64_round_trip() {
    for s in ["", "a", "ab", "abc", "\0user\0pass", "AC123:token"] {
        assert_eq!(
            base64_decode(&base64_encode(s.as_bytes())).unwrap(),
            s.as_bytes()
        );
    }
    assert_eq!(base64_encode(b"AC123:token"), "QUMxMjM6dG9rZW4=");
}
