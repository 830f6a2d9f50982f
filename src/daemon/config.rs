//! The daemon's sections of the configuration (`[database]`, `[kafka]`, `[email]`, `[sms]`,
//! `[http]`, `[dispatch]`, `[log]`), read from the same layered sources as the policy.

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
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://data/belofte.db` (single instance). PostgreSQL comes with several instances.
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: "sqlite://data/belofte.db".into() }
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
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig { backend: EmailBackendKind::Smtp, file_dir: "data/outbox/email".into(), smtp: SmtpConfig::default() }
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
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: "127.0.0.1:9464".into() }
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
        }
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

impl DaemonConfig {
    /// The daemon sections of loaded settings; a bad value names its key and origin.
    pub fn from_settings(settings: &Settings) -> Result<DaemonConfig, SettingsError> {
        settings.raw.clone().try_deserialize::<DaemonConfig>().map_err(|e| {
            let message = e.to_string();
            let origin = message
                .find("key `")
                .and_then(|i| message[i + 5..].split('`').next().map(|k| settings.origin(k)))
                .unwrap_or_else(|| settings.dir.display().to_string());
            SettingsError::Invalid { origin, message }
        })
    }
}
