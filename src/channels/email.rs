//! Email: SMTP through lettre, `.eml` files, or memory.
//!
//! # Why not `lettre::AsyncSmtpTransport`
//!
//! lettre's transport reports every broken connection the same way, whether it broke while
//! connecting, at `MAIL FROM` or after the whole message had been written, and its timeout
//! covers only the TCP connect (a server that stops answering holds a send forever). Both
//! matter here: a message that the server may already have accepted must come back as
//! [`SendOutcome::Unknown`], one that certainly was not as [`SendOutcome::Transient`]. So
//! [`SmtpMailer`] drives lettre's public [`AsyncSmtpConnection`] itself, phase by phase,
//! with a deadline on each phase, and keeps a small pool of idle connections (checked with
//! `NOOP` before reuse, dropped after [`IDLE_TIMEOUT`]) — the same things the transport's
//! pool does.

use std::error::Error as _;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::{redact_email, ChannelError, OutgoingEmail, SendOutcome};

/// Idle pooled connections older than this are closed instead of reused: well below the
/// usual server-side idle limits (Postfix: 300 s), so reuse rarely meets a half-closed socket.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    /// Plain text. Only for a relay on localhost or a test server.
    None,
    /// Plain connect, then `STARTTLS`, which is required: a server that does not offer it is
    /// an error, never a silent downgrade (port 587).
    #[default]
    #[serde(alias = "start_tls")]
    StartTls,
    /// TLS from the first byte (port 465).
    #[serde(alias = "implicit")]
    Tls,
}

/// SMTP settings. `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The deadline of each phase: connect + greeting + TLS + AUTH, each command, and the
    /// server's reply after the message body.
    pub timeout_secs: u64,
    /// At most this many connections (and so concurrent sends) at once.
    pub pool_max: u32,
    /// The EHLO name; the machine's host name when absent.
    pub hello_name: Option<String>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: "localhost".to_string(),
            port: 587,
            tls: Tls::StartTls,
            username: None,
            password: None,
            timeout_secs: 30,
            pool_max: 4,
            hello_name: None,
        }
    }
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeout_secs", &self.timeout_secs)
            .field("pool_max", &self.pool_max)
            .field("hello_name", &self.hello_name)
            .finish()
    }
}

/// Where email goes.
#[derive(Debug, Clone)]
pub enum EmailBackend {
    Smtp(SmtpMailer),
    File(FileMailer),
    Memory(MemoryMailer),
}

impl EmailBackend {
    pub async fn send(&self, m: &OutgoingEmail) -> SendOutcome {
        let outcome = match self {
            EmailBackend::Smtp(s) => s.send(m).await,
            EmailBackend::File(f) => f.send(m).await,
            EmailBackend::Memory(mem) => mem.send(m),
        };
        log_outcome(self.name(), m, &outcome);
        outcome
    }

    /// Closes idle connections politely (`QUIT`); for graceful shutdown.
    pub async fn shutdown(&self) {
        if let EmailBackend::Smtp(s) = self {
            s.shutdown().await;
        }
    }

    /// The longest one send can take from the moment it has a connection of the pool: a
    /// pooled connection's `NOOP`, the session (connect, greeting, TLS, AUTH), `MAIL`/`RCPT`/
    /// `DATA`, and the reply after the body, each with its `timeout_secs`. The dispatcher's
    /// lease on a row outlasts it. File and memory: a moment.
    pub fn attempt_limit(&self) -> Duration {
        match self {
            EmailBackend::Smtp(s) => s.inner.phase_timeout * 4,
            EmailBackend::File(_) | EmailBackend::Memory(_) => Duration::from_secs(1),
        }
    }

    /// How many sends run at once (SMTP: `pool_max`); `None` when there is no limit.
    pub fn concurrency(&self) -> Option<usize> {
        match self {
            EmailBackend::Smtp(s) => Some(s.inner.pool_max),
            EmailBackend::File(_) | EmailBackend::Memory(_) => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            EmailBackend::Smtp(_) => "smtp",
            EmailBackend::File(_) => "file",
            EmailBackend::Memory(_) => "memory",
        }
    }
}

fn log_outcome(backend: &str, m: &OutgoingEmail, outcome: &SendOutcome) {
    let to = redact_email(&m.to);
    match outcome {
        SendOutcome::Sent { .. } => {
            tracing::info!(channel = "email", backend, key = %m.key, %to, "email sent")
        }
        SendOutcome::Transient(r) | SendOutcome::Unknown(r) => {
            tracing::warn!(channel = "email", backend, key = %m.key, %to, outcome = outcome.label(), reason = %r, "email not sent")
        }
        SendOutcome::Permanent { reason: r, .. } | SendOutcome::AuthFailed(r) => {
            tracing::error!(channel = "email", backend, key = %m.key, %to, outcome = outcome.label(), reason = %r, "email not sent")
        }
    }
}

/// The `Message-ID` of a notification: `<32 hex digits of SHA-256(key)@belofte.DOMAIN>`,
/// where DOMAIN is the sender's domain. Every attempt of one notification carries the same id,
/// so a resend after an unknown outcome can be recognised as a duplicate by the receiving
/// provider or the customer's mail client.
pub fn message_id(key: &str, sender_domain: &str) -> String {
    // The same reference a bounce's VERP token carries back (belofte-feedback).
    let reference = belofte_feedback::message_ref(key);
    let domain = if sender_domain.is_empty() {
        "invalid"
    } else {
        sender_domain
    };
    format!("<{reference}@belofte.{domain}>")
}

/// `X-Belofte-Key: <notification key>`: lets a bounce or a support question be traced back
/// to the notification without parsing the Message-ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BelofteKey(pub String);

impl Header for BelofteKey {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Belofte-Key")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(BelofteKey(s.to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// RFC 3834: keeps vacation responders from answering a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}

/// The complete RFC 5322 message as it goes over SMTP or into an `.eml` file. An error here
/// (an unparseable address) is the message's own fault, so it is permanent.
pub fn build_message(m: &OutgoingEmail) -> Result<Message, String> {
    let from: Mailbox = m
        .from
        .parse()
        .map_err(|e| format!("sender address {:?}: {e}", m.from))?;
    let to: Mailbox =
        m.to.parse()
            .map_err(|e| format!("recipient address {}: {e}", redact_email(&m.to)))?;
    let builder = Message::builder()
        .message_id(Some(message_id(&m.key, from.email.domain())))
        .from(from)
        .to(to)
        .subject(m.subject.clone())
        .header(BelofteKey(m.key.clone()))
        .header(AutoSubmitted);
    let built = match &m.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(
            m.text.clone(),
            html.clone(),
        )),
        None => builder.singlepart(SinglePart::plain(m.text.clone())),
    };
    built.map_err(|e| format!("cannot build the message: {e}"))
}

/// The SMTP envelope: the message's own (`From` → `RCPT TO`), with `MAIL FROM` replaced by
/// the VERP address when the message has one, so that its bounces come back to it.
fn envelope_for(m: &OutgoingEmail, message: &Message) -> Result<Envelope, String> {
    let Some(sender) = &m.envelope_from else {
        return Ok(message.envelope().clone());
    };
    let from = sender
        .parse()
        .map_err(|e| format!("envelope sender {sender:?}: {e}"))?;
    Envelope::new(Some(from), message.envelope().to().to_vec())
        .map_err(|e| format!("envelope: {e}"))
}

// ---------------------------------------------------------------------------------------------
// SMTP

/// An SMTP client with a pool of connections. Cheap to clone (shares the pool).
#[derive(Clone)]
pub struct SmtpMailer {
    inner: Arc<SmtpInner>,
}

struct SmtpInner {
    host: String,
    port: u16,
    tls: Tls,
    tls_parameters: Option<TlsParameters>,
    hello: ClientId,
    credentials: Option<Credentials>,
    phase_timeout: Duration,
    pool_max: usize,
    permits: Semaphore,
    idle: Mutex<Vec<IdleConnection>>,
}

struct IdleConnection {
    conn: AsyncSmtpConnection,
    since: Instant,
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("host", &self.inner.host)
            .field("port", &self.inner.port)
            .field("tls", &self.inner.tls)
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// Validates the configuration and prepares TLS; connects lazily on the first send.
    pub fn new(cfg: &SmtpConfig) -> Result<SmtpMailer, ChannelError> {
        if cfg.host.trim().is_empty() {
            return Err(ChannelError::Config("smtp.host is empty".into()));
        }
        if cfg.pool_max == 0 {
            return Err(ChannelError::Config(
                "smtp.pool_max must be at least 1".into(),
            ));
        }
        if cfg.timeout_secs == 0 {
            return Err(ChannelError::Config(
                "smtp.timeout_secs must be at least 1".into(),
            ));
        }
        let credentials = match (&cfg.username, &cfg.password) {
            (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.clone())),
            (None, None) => None,
            _ => {
                return Err(ChannelError::Config(
                    "smtp.username and smtp.password go together".into(),
                ))
            }
        };
        let tls_parameters = match cfg.tls {
            Tls::None => None,
            Tls::StartTls | Tls::Tls => Some(
                TlsParameters::new_rustls(cfg.host.clone())
                    .map_err(|e| ChannelError::Config(format!("smtp TLS for {}: {e}", cfg.host)))?,
            ),
        };
        let hello = match &cfg.hello_name {
            Some(name) => ClientId::Domain(name.clone()),
            None => ClientId::default(),
        };
        Ok(SmtpMailer {
            inner: Arc::new(SmtpInner {
                host: cfg.host.clone(),
                port: cfg.port,
                tls: cfg.tls,
                tls_parameters,
                hello,
                credentials,
                phase_timeout: Duration::from_secs(cfg.timeout_secs),
                pool_max: cfg.pool_max as usize,
                permits: Semaphore::new(cfg.pool_max as usize),
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    pub async fn send(&self, m: &OutgoingEmail) -> SendOutcome {
        let message = match build_message(m) {
            Ok(message) => message,
            Err(reason) => return SendOutcome::permanent(reason),
        };
        let inner = &self.inner;
        let Ok(_permit) = inner.permits.acquire().await else {
            return SendOutcome::Transient("smtp: the mailer is shut down".into());
        };
        let mut conn = match inner.checkout().await {
            Ok(conn) => conn,
            Err(outcome) => return outcome,
        };
        let envelope = match envelope_for(m, &message) {
            Ok(envelope) => envelope,
            Err(reason) => return SendOutcome::permanent(reason),
        };
        let outcome = inner
            .transmit(&mut conn, &envelope, &message.formatted())
            .await;
        // After any failure the connection's state is unknown (lettre has already sent QUIT
        // where it could); dropping it closes the socket.
        if outcome.is_sent() && !conn.has_broken() {
            inner.checkin(conn);
        }
        outcome
    }

    /// Sends `QUIT` on every idle connection.
    pub async fn shutdown(&self) {
        self.inner.permits.close();
        let idle = std::mem::take(&mut *lock(&self.inner.idle));
        for mut c in idle {
            let _ = timeout(self.inner.phase_timeout, c.conn.quit()).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves only a Vec of connections behind;
    // still usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SmtpInner {
    fn secs(&self) -> u64 {
        self.phase_timeout.as_secs()
    }

    async fn checkout(&self) -> Result<AsyncSmtpConnection, SendOutcome> {
        loop {
            let idle = lock(&self.idle).pop();
            let Some(IdleConnection { mut conn, since }) = idle else {
                break;
            };
            if since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            if let Ok(true) = timeout(self.phase_timeout, conn.test_connected()).await {
                return Ok(conn);
            }
        }
        self.connect().await
    }

    fn checkin(&self, conn: AsyncSmtpConnection) {
        lock(&self.idle).push(IdleConnection {
            conn,
            since: Instant::now(),
        });
    }

    /// Connect, greeting, EHLO, TLS, AUTH. Nothing of the message has been sent, so any
    /// failure here is transient — except rejected credentials.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendOutcome> {
        let server = format!("{}:{}", self.host, self.port);
        let setup = async {
            let wrapper = match self.tls {
                Tls::Tls => self.tls_parameters.clone(),
                Tls::None | Tls::StartTls => None,
            };
            let mut conn = if self.tls != Tls::Tls {
                // Our own socket, with Nagle off: SMTP is a dialogue of small writes, and
                // Nagle meeting delayed ACKs costs ~40 ms per command. STARTTLS upgrades
                // this same socket below. Implicit TLS (port 465) still goes through
                // lettre's own connect, which does not expose its socket.
                let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                    .await
                    .map_err(|e| SendOutcome::Transient(format!("smtp connect to {server}: {e}")))?;
                let _ = stream.set_nodelay(true);
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello).await
            } else {
                AsyncSmtpConnection::connect_tokio1(
                    (self.host.as_str(), self.port),
                    Some(self.phase_timeout),
                    &self.hello,
                    wrapper,
                    None,
                )
                .await
            }
            .map_err(|e| SendOutcome::Transient(format!("smtp connect to {server}: {e}")))?;
            if let (Tls::StartTls, Some(params)) = (self.tls, &self.tls_parameters) {
                conn.starttls(params.clone(), &self.hello)
                    .await
                    .map_err(|e| {
                        SendOutcome::Transient(format!("smtp STARTTLS with {server}: {e}"))
                    })?;
            }
            if let Some(credentials) = &self.credentials {
                conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                    .await
                    .map_err(|e| classify_auth_error(&e))?;
            }
            Ok(conn)
        };
        match timeout(self.phase_timeout, setup).await {
            Ok(result) => result,
            Err(_) => Err(SendOutcome::Transient(format!(
                "smtp: no session with {server} within {} s",
                self.secs()
            ))),
        }
    }

    async fn transmit(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        body: &[u8],
    ) -> SendOutcome {
        let mut options = Vec::new();
        let non_ascii_address = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii_address {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return SendOutcome::permanent(
                    "smtp: the address needs SMTPUTF8, which the server does not offer",
                );
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !body.is_ascii() {
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                return SendOutcome::permanent(
                    "smtp: the message needs 8BITMIME, which the server does not offer",
                );
            }
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }

        // Before the body: the server cannot have accepted anything yet.
        let before = self.before_body(conn, envelope, options).await;
        if let Err(outcome) = before {
            return outcome;
        }

        // The body and its final ".": from the first byte on, a broken connection or a
        // missing reply means the server may have queued the message.
        match timeout(self.phase_timeout, conn.message(body)).await {
            Err(_) => SendOutcome::Unknown(format!(
                "smtp: no reply within {} s after the message was sent",
                self.secs()
            )),
            Ok(Ok(response)) => SendOutcome::Sent {
                provider_id: Some(response.message().collect::<Vec<_>>().join(" ")),
            },
            Ok(Err(e)) => match e.status() {
                Some(_) => classify_reply_error(&e),
                None => SendOutcome::Unknown(format!(
                    "smtp: connection lost after the message was sent: {e}"
                )),
            },
        }
    }

    async fn before_body(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        options: Vec<MailParameter>,
    ) -> Result<(), SendOutcome> {
        let phase = async {
            conn.command(Mail::new(envelope.from().cloned(), options))
                .await?;
            for to in envelope.to() {
                conn.command(Rcpt::new(to.clone(), vec![])).await?;
            }
            conn.command(Data).await?;
            Ok::<(), lettre::transport::smtp::Error>(())
        };
        match timeout(self.phase_timeout, phase).await {
            Err(_) => Err(SendOutcome::Transient(format!(
                "smtp: no reply within {} s before the message was sent",
                self.secs()
            ))),
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(match e.status() {
                Some(_) => classify_reply_error(&e),
                None => SendOutcome::Transient(format!(
                    "smtp: connection lost before the message was sent: {e}"
                )),
            }),
        }
    }
}

/// The server's own words of a negative reply ("5.1.1 <x@y>: Recipient address rejected").
fn reply_text(e: &lettre::transport::smtp::Error) -> String {
    e.source().map(|s| s.to_string()).unwrap_or_default()
}

/// A negative reply to MAIL, RCPT, DATA or the message: 4xx transient, 5xx permanent, and
/// 530 ("authentication required") means our session is not authenticated as it should be.
fn classify_reply_error(e: &lettre::transport::smtp::Error) -> SendOutcome {
    let Some(code) = e.status() else {
        return SendOutcome::Transient(format!("smtp: {e}"));
    };
    let code = u16::from(code);
    let text = reply_text(e);
    let reason = format!("smtp {code}: {text}");
    match code {
        530 | 534 | 535 => SendOutcome::AuthFailed(reason),
        400..=499 => SendOutcome::Transient(reason),
        _ => SendOutcome::Permanent {
            suppress: rejects_the_address(&text),
            reason,
            code: Some(u32::from(code)),
            pause: false,
        },
    }
}

/// Whether a 5xx reply's enhanced status code (RFC 3463, `5.1.1 …`) says the address itself
/// is bad, by the same rule as a bounce (belofte-feedback): not for policy, content or
/// size refusals of a good address. Without an enhanced code, nothing is suppressed.
fn rejects_the_address(reply: &str) -> bool {
    belofte_feedback::DsnStatus::parse(reply.trim())
        .filter(|s| s.class == 5)
        .is_some_and(|status| belofte_feedback::BounceKind::Failed { status }.suppresses_address())
}

/// AUTH failures: 5xx (535 bad credentials, 534 mechanism too weak, …) and "no mechanism we
/// can use" need a person; 454 ("temporary authentication failure") and a broken connection
/// heal by themselves.
fn classify_auth_error(e: &lettre::transport::smtp::Error) -> SendOutcome {
    match e.status().map(u16::from) {
        Some(code @ 400..=499) => {
            SendOutcome::Transient(format!("smtp {code} on AUTH: {}", reply_text(e)))
        }
        Some(code) => SendOutcome::AuthFailed(format!("smtp {code} on AUTH: {}", reply_text(e))),
        None if e.is_client() => SendOutcome::AuthFailed(format!("smtp AUTH: {e}")),
        None => SendOutcome::Transient(format!("smtp: connection lost during AUTH: {e}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Files

/// Writes each message as `<dir>/<key with unsafe characters as _>.eml`: one file per
/// notification, so a resend overwrites instead of duplicating. For the demo and local runs.
#[derive(Debug, Clone)]
pub struct FileMailer {
    dir: PathBuf,
}

/// The file name of a notification's `.eml`: `B-1101/delayed/2026-11-28/email` →
/// `B-1101_delayed_2026-11-28_email.eml`.
pub fn eml_file_name(key: &str) -> String {
    let stem: String = key
        .chars()
        .enumerate()
        .map(|(i, c)| match c {
            '.' if i == 0 => '_',
            c if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+') => c,
            _ => '_',
        })
        .collect();
    format!("{stem}.eml")
}

impl FileMailer {
    /// Creates `dir` if needed.
    pub fn new(dir: impl Into<PathBuf>) -> Result<FileMailer, ChannelError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| ChannelError::Io {
            what: format!("creating the mail folder {}", dir.display()),
            source,
        })?;
        Ok(FileMailer { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub async fn send(&self, m: &OutgoingEmail) -> SendOutcome {
        let message = match build_message(m) {
            Ok(message) => message,
            Err(reason) => return SendOutcome::permanent(reason),
        };
        let path = self.dir.join(eml_file_name(&m.key));
        // Write aside, then rename: a reader (or a crash) never sees half a message.
        let tmp = self.dir.join(format!(".{}.tmp", eml_file_name(&m.key)));
        let written = async {
            tokio::fs::write(&tmp, message.formatted()).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        match written.await {
            Ok(()) => SendOutcome::Sent {
                provider_id: Some(path.display().to_string()),
            },
            Err(e) => SendOutcome::Transient(format!("writing {}: {e}", path.display())),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Memory

/// Keeps every accepted message in memory; clones share the list.
#[derive(Debug, Clone, Default)]
pub struct MemoryMailer {
    pub sent: Arc<Mutex<Vec<OutgoingEmail>>>,
}

impl MemoryMailer {
    pub fn new() -> MemoryMailer {
        MemoryMailer::default()
    }

    /// A copy of everything sent so far, in order.
    pub fn messages(&self) -> Vec<OutgoingEmail> {
        lock(&self.sent).clone()
    }

    /// Same validation as the real backends, so a bad address fails the same way.
    pub fn send(&self, m: &OutgoingEmail) -> SendOutcome {
        if let Err(reason) = build_message(m) {
            return SendOutcome::permanent(reason);
        }
        let mut sent = lock(&self.sent);
        sent.push(m.clone());
        SendOutcome::Sent {
            provider_id: Some(format!("memory-{}", sent.len())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_is_stable_and_per_key() {
        let a = message_id("B-1101/delayed/2026-11-28/email", "lumen.example");
        assert_eq!(
            a,
            message_id("B-1101/delayed/2026-11-28/email", "lumen.example")
        );
        assert_ne!(
            a,
            message_id("B-1101/delayed/2026-11-29/email", "lumen.example")
        );
        assert!(
            a.starts_with('<') && a.ends_with("@belofte.lumen.example>"),
            "{a}"
        );
        assert_eq!(a.len(), "<@belofte.lumen.example>".len() + 32);
        // The first 16 bytes of SHA-256 of the key: ids stored or sent before stay the same.
        assert_eq!(a, "<dac705e0b9799ad0da356cce87653662@belofte.lumen.example>");
    }

    #[test]
    fn file_names() {
        assert_eq!(
            eml_file_name("B-1101/delayed/2026-11-28/email"),
            "B-1101_delayed_2026-11-28_email.eml"
        );
        assert_eq!(eml_file_name("../x"), "_._x.eml");
    }

    #[test]
    fn config_defaults_and_debug() {
        let cfg: SmtpConfig = serde_json::from_str(
            r#"{"host":"smtp.example","tls":"starttls","password":"geheim","username":"u"}"#,
        )
        .expect("parses");
        assert_eq!(cfg.port, 587);
        assert_eq!(cfg.tls, Tls::StartTls);
        assert!(!format!("{cfg:?}").contains("geheim"));
        let tls: SmtpConfig = serde_json::from_str(r#"{"tls":"tls"}"#).expect("parses");
        assert_eq!(tls.tls, Tls::Tls);
        let none: SmtpConfig = serde_json::from_str(r#"{"tls":"none"}"#).expect("parses");
        assert_eq!(none.tls, Tls::None);
    }
}
