//! SMS: Twilio's Messages REST API through a small reqwest client, a JSONL file, or memory.
//!
//! # Resolving an unknown outcome
//!
//! A Twilio request that times out may have created the message or not; sending again
//! blindly risks a second SMS. [`SmsBackend::lookup`] asks Twilio for the messages to the same
//! number since the first attempt and returns the sid of one with exactly this text. The
//! dispatcher calls it before any resend after [`SendOutcome::Unknown`]: `Some(sid)` → record
//! as sent, `None` → safe to send again, `Err` → try the lookup again later. Details in
//! [`TwilioClient::lookup`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::{redact_phone, ChannelError, OutgoingSms, SendOutcome};

/// Twilio settings. `Debug` leaves the secrets out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwilioConfig {
    /// `https://api.twilio.com`, a regional edge such as `https://api.dublin.ie1.twilio.com`,
    /// or a test double.
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: Option<String>,
    /// With an API key (`SK…`) the requests authenticate as `api_key_sid:api_key_secret`;
    /// otherwise as `account_sid:auth_token`.
    pub api_key_sid: Option<String>,
    pub api_key_secret: Option<String>,
    /// Exactly one of `from` and `messaging_service_sid`.
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    /// Twilio posts delivery status changes here; `?key=<notification key>` is appended so
    /// each callback names its notification.
    pub status_callback: Option<String>,
    pub timeout_secs: u64,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        TwilioConfig {
            base_url: "https://api.twilio.com".to_string(),
            account_sid: String::new(),
            auth_token: None,
            api_key_sid: None,
            api_key_secret: None,
            from: None,
            messaging_service_sid: None,
            status_callback: None,
            timeout_secs: 15,
        }
    }
}

impl fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("TwilioConfig")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &hidden(&self.auth_token))
            .field("api_key_sid", &self.api_key_sid)
            .field("api_key_secret", &hidden(&self.api_key_secret))
            .field("from", &self.from)
            .field("messaging_service_sid", &self.messaging_service_sid)
            .field("status_callback", &self.status_callback)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// Where SMS go.
#[derive(Debug, Clone)]
pub enum SmsBackend {
    Twilio(TwilioClient),
    File(FileSms),
    Memory(MemorySms),
}

impl SmsBackend {
    pub async fn send(&self, m: &OutgoingSms) -> SendOutcome {
        let outcome = match self {
            SmsBackend::Twilio(t) => t.send(m).await,
            SmsBackend::File(f) => f.send(m).await,
            SmsBackend::Memory(mem) => mem.send(m),
        };
        log_outcome(self.name(), m, &outcome);
        outcome
    }

    /// Whether `m` already went out since `since` (the time of the first attempt): the
    /// provider's id if so. See the module documentation.
    pub async fn lookup(
        &self,
        m: &OutgoingSms,
        since: DateTime<Utc>,
    ) -> Result<Option<String>, String> {
        match self {
            SmsBackend::Twilio(t) => t.lookup(m, since).await,
            SmsBackend::File(f) => f.lookup(m).await,
            SmsBackend::Memory(mem) => Ok(mem.lookup(m)),
        }
    }

    /// The longest one attempt can take: for Twilio the two `GET`s of a look-up and the
    /// `POST`, each with its `timeout_secs`. The dispatcher's lease on a row outlasts it, so
    /// a lease that ran out means Twilio's timeout has passed since the request. File and
    /// memory: a moment.
    pub fn attempt_limit(&self) -> Duration {
        match self {
            SmsBackend::Twilio(t) => t.inner.timeout * 3,
            SmsBackend::File(_) | SmsBackend::Memory(_) => Duration::from_secs(1),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            SmsBackend::Twilio(_) => "twilio",
            SmsBackend::File(_) => "file",
            SmsBackend::Memory(_) => "memory",
        }
    }
}

fn log_outcome(backend: &str, m: &OutgoingSms, outcome: &SendOutcome) {
    let to = redact_phone(&m.to);
    match outcome {
        SendOutcome::Sent { provider_id } => {
            tracing::info!(channel = "sms", backend, key = %m.key, %to, provider_id = provider_id.as_deref().unwrap_or(""), "sms sent")
        }
        SendOutcome::Transient(r) | SendOutcome::Unknown(r) => {
            tracing::warn!(channel = "sms", backend, key = %m.key, %to, outcome = outcome.label(), reason = %r, "sms not sent")
        }
        SendOutcome::Permanent { reason: r, .. } | SendOutcome::AuthFailed(r) => {
            tracing::error!(channel = "sms", backend, key = %m.key, %to, outcome = outcome.label(), reason = %r, "sms not sent")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Twilio

/// Twilio error codes that are about load, not about the message: retry later.
/// 20429 too many requests, 21611 the sender's queue is full.
const TRANSIENT_CODES: &[u32] = &[20429, 21611];
/// 20003: authentication failed (Twilio sends it with 401).
const AUTH_CODES: &[u32] = &[20003];
/// "This number will never work": 21211 invalid number, 21610 opted out (STOP), 21612 not
/// reachable from our sender, 21614 not a mobile number. Remembered for the customer.
const SUPPRESS_CODES: &[u32] = &[21211, 21610, 21612, 21614];
/// About our own sender or Messaging Service: every message would fail the same way, so the
/// channel pauses like on refused credentials.
const SENDER_BROKEN_CODES: &[u32] = &[21212, 21606, 21703, 21704, 21705];

#[derive(Clone)]
enum Sender {
    From(String),
    Service(String),
}

/// A Twilio Messages API client; the HTTP client (and its connection pool) is built once.
/// Cheap to clone.
#[derive(Clone)]
pub struct TwilioClient {
    inner: Arc<TwilioInner>,
}

struct TwilioInner {
    http: reqwest::Client,
    messages_url: Url,
    user: String,
    secret: String,
    sender: Sender,
    status_callback: Option<Url>,
    timeout: Duration,
}

impl fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioClient")
            .field("messages_url", &self.inner.messages_url.as_str())
            .field("user", &self.inner.user)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TwilioError {
    code: Option<u32>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct CreatedMessage {
    sid: Option<String>,
}

#[derive(Deserialize)]
struct MessageList {
    #[serde(default)]
    messages: Vec<ListedMessage>,
}

#[derive(Deserialize)]
struct ListedMessage {
    sid: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    date_created: Option<String>,
}

impl TwilioClient {
    pub fn new(cfg: &TwilioConfig) -> Result<TwilioClient, ChannelError> {
        let bad = |s: &str| ChannelError::Config(format!("twilio: {s}"));
        if cfg.account_sid.trim().is_empty() {
            return Err(bad("account_sid is empty"));
        }
        if cfg.timeout_secs == 0 {
            return Err(bad("timeout_secs must be at least 1"));
        }
        let (user, secret) = match (&cfg.api_key_sid, &cfg.api_key_secret, &cfg.auth_token) {
            (Some(key), Some(secret), _) => (key.clone(), secret.clone()),
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(bad("api_key_sid and api_key_secret go together"))
            }
            (None, None, Some(token)) => (cfg.account_sid.clone(), token.clone()),
            (None, None, None) => {
                return Err(bad("set auth_token, or api_key_sid and api_key_secret"))
            }
        };
        let sender = match (&cfg.from, &cfg.messaging_service_sid) {
            (Some(from), None) => Sender::From(from.clone()),
            (None, Some(service)) => Sender::Service(service.clone()),
            _ => return Err(bad("set exactly one of from and messaging_service_sid")),
        };
        let base = cfg.base_url.trim_end_matches('/');
        let messages_url = Url::parse(&format!(
            "{base}/2010-04-01/Accounts/{}/Messages.json",
            cfg.account_sid
        ))
        .map_err(|e| bad(&format!("base_url {:?}: {e}", cfg.base_url)))?;
        let status_callback = cfg
            .status_callback
            .as_deref()
            .map(Url::parse)
            .transpose()
            .map_err(|e| bad(&format!("status_callback: {e}")))?;
        let timeout = Duration::from_secs(cfg.timeout_secs);
        // A separate, shorter connect deadline: a connect that times out certainly sent
        // nothing (transient), while the overall deadline may fire after Twilio took the
        // request (unknown).
        let connect_timeout =
            (timeout / 2).clamp(Duration::from_millis(500), Duration::from_secs(10));
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .user_agent(concat!("belofte/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| bad(&format!("http client: {e}")))?;
        Ok(TwilioClient {
            inner: Arc::new(TwilioInner {
                http,
                messages_url,
                user,
                secret,
                sender,
                status_callback,
                timeout,
            }),
        })
    }

    /// POST `Messages.json`; see [`SendOutcome`] for what each answer means.
    pub async fn send(&self, m: &OutgoingSms) -> SendOutcome {
        let mut form: Vec<(&str, String)> = vec![("To", m.to.clone()), ("Body", m.text.clone())];
        match &self.inner.sender {
            Sender::Service(sid) => form.push(("MessagingServiceSid", sid.clone())),
            Sender::From(default) if m.from.is_empty() => form.push(("From", default.clone())),
            Sender::From(_) => form.push(("From", m.from.clone())),
        }
        if let Some(callback) = &self.inner.status_callback {
            let mut url = callback.clone();
            url.query_pairs_mut().append_pair("key", &m.key);
            form.push(("StatusCallback", url.to_string()));
        }
        let response = self
            .inner
            .http
            .post(self.inner.messages_url.clone())
            .basic_auth(&self.inner.user, Some(&self.inner.secret))
            .form(&form)
            .send()
            .await;
        match response {
            Err(e) => self.classify_request_error(&e),
            Ok(response) => classify_response(response).await,
        }
    }

    fn classify_request_error(&self, e: &reqwest::Error) -> SendOutcome {
        if e.is_connect() {
            SendOutcome::Transient(format!("twilio: cannot connect: {}", error_chain(e)))
        } else if e.is_timeout() {
            SendOutcome::Unknown(format!(
                "twilio: no answer within {} s; the message may have been created",
                self.inner.timeout.as_secs()
            ))
        } else if e.is_builder() {
            SendOutcome::permanent(format!(
                "twilio: cannot build the request: {}",
                error_chain(e)
            ))
        } else {
            // The connection broke after (part of) the request went out.
            SendOutcome::Unknown(format!("twilio: request broken off: {}", error_chain(e)))
        }
    }

    /// Finds a message to `m.to` with exactly `m.text` created since `since`.
    ///
    /// First `GET Messages.json?To=…&DateSent>=<day of since>&PageSize=50`. A message still
    /// queued at Twilio has no `date_sent` yet and is missed by that filter, so when nothing
    /// matches a second `GET Messages.json?To=…&PageSize=50` (newest first) is checked,
    /// keeping only messages whose `date_created` is not before `since` minus 10 minutes
    /// (clock skew). Only the first page of each is read: 50 messages to one customer's number
    /// within the retry window is far beyond what belofte sends.
    ///
    /// Limits: a body that Twilio rewrote (smart encoding of "curly" quotes, if enabled on
    /// the account or service) no longer matches; and two notifications with identical text
    /// to one number inside the window cannot be told apart (the first match is taken).
    pub async fn lookup(
        &self,
        m: &OutgoingSms,
        since: DateTime<Utc>,
    ) -> Result<Option<String>, String> {
        let day = since.format("%Y-%m-%d").to_string();
        let by_day = self
            .list(&[
                ("To", m.to.as_str()),
                ("DateSent>", day.as_str()),
                ("PageSize", "50"),
            ])
            .await?;
        if let Some(sid) = find_match(&by_day, m, None) {
            return Ok(Some(sid));
        }
        let recent = self
            .list(&[("To", m.to.as_str()), ("PageSize", "50")])
            .await?;
        Ok(find_match(
            &recent,
            m,
            Some(since - chrono::Duration::minutes(10)),
        ))
    }

    async fn list(&self, query: &[(&str, &str)]) -> Result<Vec<ListedMessage>, String> {
        let response = self
            .inner
            .http
            .get(self.inner.messages_url.clone())
            .basic_auth(&self.inner.user, Some(&self.inner.secret))
            .query(query)
            .send()
            .await
            .map_err(|e| format!("twilio lookup: {}", error_chain(&e)))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| format!("twilio lookup: reading the answer: {}", error_chain(&e)))?;
        if !status.is_success() {
            return Err(format!(
                "twilio lookup: http {}: {}",
                status.as_u16(),
                describe_error(&body)
            ));
        }
        serde_json::from_str::<MessageList>(&body)
            .map(|list| list.messages)
            .map_err(|e| format!("twilio lookup: unexpected answer: {e}"))
    }
}

fn normalise(text: &str) -> String {
    text.replace("\r\n", "\n").trim().to_string()
}

fn find_match(
    messages: &[ListedMessage],
    m: &OutgoingSms,
    created_after: Option<DateTime<Utc>>,
) -> Option<String> {
    let wanted = normalise(&m.text);
    messages
        .iter()
        .filter(|msg| msg.to.as_deref().is_none_or(|to| to == m.to))
        .filter(|msg| msg.body.as_deref().map(normalise).as_deref() == Some(wanted.as_str()))
        .find(|msg| match (created_after, msg.date_created.as_deref()) {
            (Some(after), Some(created)) => DateTime::parse_from_rfc2822(created)
                .map(|t| t.with_timezone(&Utc) >= after)
                .unwrap_or(true),
            _ => true,
        })
        .map(|msg| msg.sid.clone())
}

/// `twilio <code>: <message>` from Twilio's JSON error, else the start of the body.
fn describe_error(body: &str) -> String {
    match serde_json::from_str::<TwilioError>(body) {
        Ok(TwilioError {
            code: Some(code),
            message,
        }) => format!("twilio {code}: {}", message.unwrap_or_default()),
        Ok(TwilioError {
            code: None,
            message: Some(message),
        }) => message,
        _ => body.chars().take(200).collect(),
    }
}

async fn classify_response(response: reqwest::Response) -> SendOutcome {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(|v| format!(" (Retry-After: {v})"))
        .unwrap_or_default();
    // For a 2xx the message exists whatever happens to the body; for errors the body only
    // adds detail.
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        let sid = serde_json::from_str::<CreatedMessage>(&body)
            .ok()
            .and_then(|c| c.sid);
        return SendOutcome::Sent { provider_id: sid };
    }
    let error = serde_json::from_str::<TwilioError>(&body).ok();
    let code = error.as_ref().and_then(|e| e.code);
    let message = error
        .and_then(|e| e.message)
        .unwrap_or_else(|| body.chars().take(200).collect());
    let http = status.as_u16();
    let reason = match code {
        Some(code) => format!("twilio {code}: {message} (http {http})"),
        None => format!("twilio http {http}: {message}"),
    };
    let auth = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
        || code.is_some_and(|c| AUTH_CODES.contains(&c));
    if auth {
        SendOutcome::AuthFailed(reason)
    } else if status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || code.is_some_and(|c| TRANSIENT_CODES.contains(&c))
    {
        SendOutcome::Transient(format!("{reason}{retry_after}"))
    } else if status.is_client_error() {
        SendOutcome::Permanent {
            reason,
            code,
            suppress: code.is_some_and(|c| SUPPRESS_CODES.contains(&c)),
            pause: code.is_some_and(|c| SENDER_BROKEN_CODES.contains(&c)),
        }
    } else {
        // 1xx/3xx: not an answer the Messages API gives; nothing was created.
        SendOutcome::Transient(reason)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

// ---------------------------------------------------------------------------------------------
// File and memory

/// `+` and 8 to 15 digits. Twilio checks numbers itself; the local backends check this much
/// so the demo fails on what Twilio would certainly refuse.
fn is_e164(number: &str) -> bool {
    number
        .strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()))
}

fn not_e164(m: &OutgoingSms) -> SendOutcome {
    SendOutcome::permanent(format!("not an E.164 number: {}", redact_phone(&m.to)))
}

/// One line of a [`FileSms`] file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsLine {
    pub key: String,
    pub from: String,
    pub to: String,
    pub text: String,
    pub at: DateTime<Utc>,
}

/// Appends one JSON line ([`SmsLine`]) per SMS to a file. For the demo and local runs.
#[derive(Debug, Clone)]
pub struct FileSms {
    path: PathBuf,
    // Serialises appends so concurrent sends never interleave within a line.
    write: Arc<tokio::sync::Mutex<()>>,
}

impl FileSms {
    /// Creates the parent folder if needed.
    pub fn new(path: impl Into<PathBuf>) -> Result<FileSms, ChannelError> {
        let path = path.into();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| ChannelError::Io {
                what: format!("creating the folder of {}", path.display()),
                source,
            })?;
        }
        Ok(FileSms {
            path,
            write: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn send(&self, m: &OutgoingSms) -> SendOutcome {
        if !is_e164(&m.to) {
            return not_e164(m);
        }
        let line = SmsLine {
            key: m.key.clone(),
            from: m.from.clone(),
            to: m.to.clone(),
            text: m.text.clone(),
            at: Utc::now(),
        };
        let mut bytes = match serde_json::to_vec(&line) {
            Ok(bytes) => bytes,
            Err(e) => return SendOutcome::permanent(format!("encoding the sms: {e}")),
        };
        bytes.push(b'\n');
        let _guard = self.write.lock().await;
        let appended = async {
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await?;
            file.write_all(&bytes).await?;
            file.flush().await
        };
        match appended.await {
            Ok(()) => SendOutcome::Sent {
                provider_id: Some(format!("file:{}", m.key)),
            },
            Err(e) => SendOutcome::Transient(format!("appending to {}: {e}", self.path.display())),
        }
    }

    async fn lookup(&self, m: &OutgoingSms) -> Result<Option<String>, String> {
        let content = match tokio::fs::read_to_string(&self.path).await {
            Ok(content) => content,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("reading {}: {e}", self.path.display())),
        };
        Ok(content
            .lines()
            .filter_map(|l| serde_json::from_str::<SmsLine>(l).ok())
            .find(|l| l.key == m.key && l.to == m.to && l.text == m.text)
            .map(|l| format!("file:{}", l.key)))
    }
}

/// Keeps every accepted SMS in memory; clones share the list.
#[derive(Debug, Clone, Default)]
pub struct MemorySms {
    pub sent: Arc<Mutex<Vec<OutgoingSms>>>,
}

impl MemorySms {
    pub fn new() -> MemorySms {
        MemorySms::default()
    }

    /// A copy of everything sent so far, in order.
    pub fn messages(&self) -> Vec<OutgoingSms> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<OutgoingSms>> {
        self.sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn send(&self, m: &OutgoingSms) -> SendOutcome {
        if !is_e164(&m.to) {
            return not_e164(m);
        }
        let mut sent = self.lock();
        sent.push(m.clone());
        SendOutcome::Sent {
            provider_id: Some(format!("memory-{}", sent.len())),
        }
    }

    fn lookup(&self, m: &OutgoingSms) -> Option<String> {
        self.lock()
            .iter()
            .position(|s| s.key == m.key && s.to == m.to && s.text == m.text)
            .map(|i| format!("memory-{}", i + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TwilioConfig {
        TwilioConfig {
            account_sid: "AC123".into(),
            auth_token: Some("token".into()),
            from: Some("Lumen".into()),
            ..TwilioConfig::default()
        }
    }

    #[test]
    fn config_validation() {
        assert!(TwilioClient::new(&cfg()).is_ok());
        let both = TwilioConfig {
            messaging_service_sid: Some("MG1".into()),
            ..cfg()
        };
        assert!(TwilioClient::new(&both).is_err());
        let half_key = TwilioConfig {
            api_key_sid: Some("SK1".into()),
            ..cfg()
        };
        assert!(TwilioClient::new(&half_key).is_err());
        let no_secret = TwilioConfig {
            auth_token: None,
            ..cfg()
        };
        assert!(TwilioClient::new(&no_secret).is_err());
        assert!(!format!("{:?}", cfg()).contains("token\""));
    }

    #[test]
    fn e164() {
        assert!(is_e164("+31612345511"));
        assert!(!is_e164("0612345511"));
        assert!(!is_e164("+31 6 1234"));
    }

    #[test]
    fn error_descriptions() {
        assert_eq!(
            describe_error(r#"{"code":21211,"message":"bad number","status":400}"#),
            "twilio 21211: bad number"
        );
        assert_eq!(describe_error("oops"), "oops");
    }
}
