//! The daemon's sections of the configuration (`[database]`, `[kafka]`, `[email]`, `[sms]`,
//! `[http]`, `[dispatch]`, `[fallback]`, `[log]`, `[trace]`, `[console]`), read from the same layered sources as the
//! policy.

use serde::Deserialize;

use crate::channels::{SmtpConfig, TwilioConfig};
use crate::kafka::KafkaConfig;
use crate::settings::{Settings, SettingsError};

/// The policy's sections sit beside these at the top level and are not read here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DaemonConfig {
    pub database: DatabaseConfig,
    pub kafka: KafkaConfig,
    pub email: EmailConfig,
    pub sms: SmsConfig,
    pub http: HttpConfig,
    pub dispatch: DispatchConfig,
    pub fallback: FallbackConfig,
    pub log: LogConfig,
    pub trace: TraceConfig,
    pub console: ConsoleConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://data/belofte.db` (single instance). PostgreSQL comes with several instances.
    pub url: String,
    /// A closed order (cancelled, or delivered and followed up) is deleted this many days
    /// after its last change, with its finished messages. It leaves memory when it closes.
    pub retention_days: u32,
    /// Seen event ids are kept this long: a replay older than this (Kafka's own retention
    /// of the input topics, or a reset offset) would apply its events again.
    pub replay_horizon_hours: u32,
    /// How often the sweep runs.
    pub sweep_seconds: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: "sqlite://data/belofte.db".into(), retention_days: 30, replay_horizon_hours: 7 * 24, sweep_seconds: 600 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailBackendKind {
    Smtp,
    File,
    Memory,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    pub backend: EmailBackendKind,
    /// For `file`: one `.eml` per message in this folder.
    pub file_dir: String,
    pub smtp: SmtpConfig,
    /// VERP: the envelope sender of every email, `{token}` standing for the message's
    /// authenticated reference (e.g. `bounce+{token}@bounce.example`), so that each bounce
    /// names its message. Off when absent: mail goes out from the brand's address.
    pub bounce_address: Option<String>,
    /// The key of the VERP tokens' MAC, at least 16 bytes. Required with `bounce_address`.
    /// Changing it makes bounces of mail sent before unrecognisable (they are ignored).
    pub bounce_secret: Option<String>,
    /// `POST /hooks/bounce` requires `Authorization: Bearer <this>`; the hook is refused
    /// (401) while it is not set.
    pub bounce_hook_token: Option<String>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            backend: EmailBackendKind::Smtp,
            file_dir: "data/outbox/email".into(),
            smtp: SmtpConfig::default(),
            bounce_address: None,
            bounce_secret: None,
            bounce_hook_token: None,
        }
    }
}

impl EmailConfig {
    /// The VERP encoder, when `bounce_address` is set; a template without its secret, or a
    /// secret under 16 bytes, is an error naming the key.
    pub fn verp(&self) -> Result<Option<belofte_feedback::Verp>, (&'static str, String)> {
        let Some(template) = &self.bounce_address else {
            return Ok(None);
        };
        let Some(secret) = self.bounce_secret.as_deref().filter(|s| !s.is_empty()) else {
            return Err(("email.bounce_secret", "is required with email.bounce_address (at least 16 bytes, e.g. `openssl rand -hex 32`)".into()));
        };
        belofte_feedback::Verp::new(template, secret.as_bytes()).map(Some).map_err(|e| match e {
            belofte_feedback::VerpError::SecretTooShort { .. } => ("email.bounce_secret", e.to_string()),
            _ => ("email.bounce_address", e.to_string()),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsBackendKind {
    Twilio,
    File,
    Memory,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsConfig {
    pub backend: SmsBackendKind,
    /// For `file`: one JSON line per SMS.
    pub file_path: String,
    pub twilio: TwilioConfig,
}

impl Default for SmsConfig {
    fn default() -> Self {
        SmsConfig { backend: SmsBackendKind::Twilio, file_path: "data/outbox/sms.jsonl".into(), twilio: TwilioConfig::default() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// `/healthz`, `/readyz`, `/metrics`. Port 0 picks a free port (tests).
    pub listen: String,
    /// The listener meant for the internet: `POST /hooks/twilio/status` and
    /// `POST /hooks/bounce`, nothing else. Off when absent.
    pub public_listen: Option<String>,
    /// The URL the world reaches `public_listen` at (`https://hooks.shop.example`, no
    /// trailing slash needed). Twilio signs the exact URL it calls, so the signature is
    /// checked against this; the SMS channel's `StatusCallback` is built from it.
    pub public_base_url: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: "127.0.0.1:9464".into(), public_listen: None, public_base_url: None }
    }
}

/// The path Twilio's status callbacks are posted to.
pub const TWILIO_STATUS_PATH: &str = "/hooks/twilio/status";

impl HttpConfig {
    /// `{public_base_url}/hooks/twilio/status`, the callback URL without its query.
    pub fn twilio_status_url(&self) -> Option<String> {
        self.public_base_url.as_ref().map(|b| format!("{}{TWILIO_STATUS_PATH}", b.trim_end_matches('/')))
    }
}

/// `[fallback]`: per customer kind, whether a message that did not reach the customer on
/// one channel goes out on the other one (consent and an address permitting).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FallbackConfig {
    pub at_risk: bool,
    pub delayed: bool,
    pub backorder: bool,
    pub delivery_failed: bool,
    pub back_on_track: bool,
    pub update: bool,
    pub late_delivery_followup: bool,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            at_risk: true,
            delayed: true,
            backorder: true,
            delivery_failed: true,
            back_on_track: true,
            update: true,
            late_delivery_followup: true,
        }
    }
}

impl FallbackConfig {
    pub fn enabled(&self, kind: belofte_core::domain::Kind) -> bool {
        use belofte_core::domain::Kind;
        match kind {
            Kind::AtRisk => self.at_risk,
            Kind::Delayed => self.delayed,
            Kind::Backorder => self.backorder,
            Kind::DeliveryFailed => self.delivery_failed,
            Kind::BackOnTrack => self.back_on_track,
            Kind::Update => self.update,
            Kind::LateDeliveryFollowup => self.late_delivery_followup,
            Kind::Escalation | Kind::Compensation => false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatchConfig {
    /// Rows claimed per round and channel; also the number of sends in flight per channel.
    pub batch: i64,
    /// Attempts before a message is given up as failed.
    pub max_attempts: i64,
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    /// How often an idle dispatcher looks for due rows (it is also woken on every commit).
    pub poll_ms: u64,
    /// A channel whose credentials were refused pauses this long before trying again.
    pub auth_pause_secs: u64,
    /// An attempt with an unknown end is looked up (SMS) or resent (email, same Message-ID)
    /// after this long.
    pub unknown_recheck_secs: u64,
    /// On SIGTERM: how long in-flight sends may take before the process exits anyway.
    pub shutdown_timeout_secs: u64,
    /// A claimed row is held (leased) for its channel's longest attempt (every provider
    /// request with its timeout) plus this margin, for the time between the claim and the
    /// request and for clock differences. A lease that ran out means the attempt's outcome
    /// is unknown: any instance takes the row over and looks it up before a resend.
    pub lease_margin_secs: u64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            batch: 32,
            max_attempts: 8,
            backoff_base_ms: 2_000,
            backoff_cap_ms: 15 * 60 * 1000,
            poll_ms: 500,
            auth_pause_secs: 300,
            unknown_recheck_secs: 60,
            shutdown_timeout_secs: 20,
            lease_margin_secs: 10,
        }
    }
}

/// `[console]`: the ops console on the admin listener (`src/console`). Off — no route at
/// all — until a token is set.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The console's credential: `Authorization: Bearer <token>` for `/api/…`, and what the
    /// login form asks for. At least 16 characters. Better as `BELOFTE__CONSOLE__TOKEN`.
    pub token: Option<String>,
    /// How long a login lasts.
    pub session_hours: u64,
    /// Wrong tokens (API or login form) one client address may give in a minute before it
    /// is refused with 429 for the rest of that minute; 0 never refuses.
    pub wrong_tokens_per_minute: u32,
    /// How often every instance looks for published wording.
    pub poll_secs: u64,
    /// The country code a national number typed into the order search is read with
    /// (`31`: `06 12345678` finds `+31612345678`).
    pub phone_country_code: String,
}

/// The shortest token the console accepts: a guessable one would open the outbox to anyone
/// who reaches the admin port.
pub const CONSOLE_TOKEN_MIN: usize = 16;

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig { token: None, session_hours: 8, wrong_tokens_per_minute: 10, poll_secs: 2, phone_country_code: "31".into() }
    }
}

impl std::fmt::Debug for ConsoleConfig {
    // The token is a secret: never in a log line or a panic message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("session_hours", &self.session_hours)
            .field("wrong_tokens_per_minute", &self.wrong_tokens_per_minute)
            .field("poll_secs", &self.poll_secs)
            .field("phone_country_code", &self.phone_country_code)
            .finish()
    }
}

impl ConsoleConfig {
    /// The token when the console is on (an empty one, e.g. an empty variable, is off).
    pub fn enabled_token(&self) -> Option<&str> {
        self.token.as_deref().filter(|t| !t.is_empty())
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(token) = self.enabled_token() {
            if token.chars().count() < CONSOLE_TOKEN_MIN {
                return Err((
                    "console.token",
                    format!("is {} characters; at least {CONSOLE_TOKEN_MIN} are required (e.g. `openssl rand -hex 24`)", token.chars().count()),
                ));
            }
        }
        if self.session_hours == 0 {
            return Err(("console.session_hours", "must be at least 1".into()));
        }
        if self.poll_secs == 0 {
            return Err(("console.poll_secs", "must be at least 1 (seconds between looks for published wording)".into()));
        }
        let code = &self.phone_country_code;
        if !(1..=3).contains(&code.len()) || !code.chars().all(|c| c.is_ascii_digit()) {
            return Err(("console.phone_country_code", format!("{code:?} is not a country calling code (1 to 3 digits, e.g. \"31\")")));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `belofte=debug,rdkafka=warn`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, level: "info".into() }
    }
}

/// `[trace]`: every order's trace (`shared/spec/trace.md`), kept for its timeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraceConfig {
    /// The worlds record their steps and each batch writes them to the `trace` table.
    pub keep: bool,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig { keep: true }
    }
}

impl DaemonConfig {
    /// The daemon sections of loaded settings; a bad value names its key and origin.
    pub fn from_settings(settings: &Settings) -> Result<DaemonConfig, SettingsError> {
        let cfg = settings.raw.clone().try_deserialize::<DaemonConfig>().map_err(|e| {
            let message = e.to_string();
            let origin = message
                .find("key `")
                .and_then(|i| message[i + 5..].split('`').next().map(|k| settings.origin(k)))
                .unwrap_or_else(|| settings.dir.display().to_string());
            SettingsError::Invalid { origin, message }
        })?;
        cfg.validate().map_err(|(key, problem)| SettingsError::Invalid {
            origin: format!("{} (key `{key}`)", settings.origin(key)),
            message: problem,
        })?;
        Ok(cfg)
    }

    /// What deserialising cannot check: settings that only work together. The error is the
    /// key to fix and what is wrong with it. `Running::start` checks the same.
    /// Who this instance is in the outbox's leases: the static member name
    /// (`kafka.group_instance_id`) when there is one, else the host name and the process id.
    pub fn instance_id(&self) -> String {
        let name = self.kafka.group_instance_id.trim();
        if !name.is_empty() {
            return name.to_string();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "belofte".into());
        format!("{host}:{}", std::process::id())
    }

    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.email.verp()?;
        if self.kafka.max_batch_events == 0 {
            return Err(("kafka.max_batch_events", "must be at least 1 (records per transaction)".into()));
        }
        self.console.validate()?;
        if let Some(topic) = self.kafka.order_keyed_topics.iter().find(|t| !self.kafka.topics.contains(t)) {
            return Err((
                "kafka.order_keyed_topics",
                format!("{topic:?} is not one of kafka.topics {:?}: only a consumed topic can be keyed by order", self.kafka.topics),
            ));
        }
        if self.http.public_listen.is_some() {
            let Some(base) = &self.http.public_base_url else {
                return Err(("http.public_base_url", "is required with http.public_listen: Twilio signs the URL it calls".into()));
            };
            if !(base.starts_with("https://") || base.starts_with("http://")) || base.contains('?') {
                return Err(("http.public_base_url", format!("{base:?} is not an http(s) URL without a query")));
            }
            if let (Some(callback), Some(ours)) = (&self.sms.twilio.status_callback, self.http.twilio_status_url()) {
                if callback != &ours {
                    return Err((
                        "sms.twilio.status_callback",
                        format!("{callback:?} is not {ours:?}: with http.public_listen leave it out (it is built from http.public_base_url), or make it that URL"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_no_records_is_refused_at_start_up() {
        let mut cfg = DaemonConfig::default();
        assert_eq!(cfg.kafka.max_batch_events, 8192);
        cfg.kafka.max_batch_events = 0;
        let (key, why) = cfg.validate().expect_err("zero records per transaction");
        assert_eq!(key, "kafka.max_batch_events");
        assert!(why.contains("at least 1"), "{why}");
    }

    #[test]
    fn verp_needs_a_secret_of_sixteen_bytes() {
        let mut cfg = DaemonConfig::default();
        assert!(cfg.validate().is_ok(), "VERP and the public listener are off by default");
        cfg.email.bounce_address = Some("bounce+{token}@bounce.example".into());
        assert_eq!(cfg.validate().map_err(|e| e.0), Err("email.bounce_secret"));
        cfg.email.bounce_secret = Some("short".into());
        assert_eq!(cfg.validate().map_err(|e| e.0), Err("email.bounce_secret"));
        cfg.email.bounce_secret = Some("sixteen-bytes-at-least".into());
        assert!(cfg.validate().is_ok());
        cfg.email.bounce_address = Some("bounce@bounce.example".into());
        assert_eq!(cfg.validate().map_err(|e| e.0), Err("email.bounce_address"), "no {{token}}");
    }

    #[test]
    fn the_public_listener_needs_the_url_twilio_calls() {
        let mut cfg = DaemonConfig::default();
        cfg.http.public_listen = Some("127.0.0.1:9465".into());
        assert_eq!(cfg.validate().map_err(|e| e.0), Err("http.public_base_url"));
        cfg.http.public_base_url = Some("hooks.example".into());
        assert_eq!(cfg.validate().map_err(|e| e.0), Err("http.public_base_url"), "not a URL");
        cfg.http.public_base_url = Some("https://hooks.example/".into());
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.http.twilio_status_url().as_deref(), Some("https://hooks.example/hooks/twilio/status"));
        cfg.sms.twilio.status_callback = Some("https://elsewhere.example/cb".into());
        assert_eq!(cfg.validate().map_err(|e| e.0), Err("sms.twilio.status_callback"));
    }

    #[test]
    fn the_console_is_off_without_a_token_and_refuses_a_short_one() {
        let mut cfg = DaemonConfig::default();
        assert!(cfg.console.enabled_token().is_none());
        cfg.console.token = Some(String::new());
        assert!(cfg.validate().is_ok() && cfg.console.enabled_token().is_none(), "an empty variable leaves it off");
        cfg.console.token = Some("too-short".into());
        assert_eq!(cfg.validate().map_err(|e| e.0), Err("console.token"));
        cfg.console.token = Some("sixteen-chars-ok".into());
        assert!(cfg.validate().is_ok());
        assert!(!format!("{:?}", cfg.console).contains("sixteen"), "the token stays out of Debug");
    }

    #[test]
    fn an_order_keyed_topic_must_be_consumed() {
        let mut cfg = DaemonConfig::default();
        cfg.kafka.topics = vec!["orders".into(), "carrier".into()];
        assert_eq!(cfg.validate().map_err(|e| e.0), Err("kafka.order_keyed_topics"), "warehouse is not consumed");
        cfg.kafka.order_keyed_topics = vec!["orders".into()];
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn fallback_is_on_for_every_customer_kind_by_default() {
        let f = FallbackConfig::default();
        assert!(belofte_core::domain::Kind::CUSTOMER.iter().all(|k| f.enabled(*k)));
        assert!(!f.enabled(belofte_core::domain::Kind::Escalation));
    }
}
