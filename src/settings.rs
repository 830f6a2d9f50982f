//! Layered configuration: `DIR/default.toml`, then `DIR/local.toml` (optional), then
//! `BELOFTE__SECTION__KEY` environment variables. A bad value stops start-up with where it
//! came from (file and line, or the variable) and what is wrong with it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveTime, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;

use belofte_core::domain::{Channel, Kind, Tone};
use belofte_core::policy::{Brand, CompensationTier, Policy, ShippingMethod};

pub const ENV_PREFIX: &str = "BELOFTE";
pub const ENV_SEPARATOR: &str = "__";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("{0}")]
    Load(String),
}

/// The loaded configuration: the policy the engine uses and the raw tree for the edges
/// (Kafka, SMTP, Twilio, database settings are read from it by the daemon).
pub struct Settings {
    pub policy: Policy,
    pub raw: config::Config,
    pub dir: PathBuf,
    sources: Vec<(PathBuf, String)>,
}

impl Settings {
    /// Where a key was set, for error messages: "config/local.toml:12", or the variable.
    pub fn origin(&self, key: &str) -> String {
        origin_of(&self.sources, key)
    }
}

#[derive(Deserialize)]
struct RawRoot {
    policy: RawPolicy,
    #[serde(default)]
    channels: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    shipping: BTreeMap<String, RawShipping>,
    #[serde(default)]
    brands: BTreeMap<String, RawBrand>,
}

#[derive(Deserialize)]
struct RawPolicy {
    cutoff: String,
    promise_time: String,
    delivery_days: Vec<String>,
    #[serde(default)]
    non_delivery_dates: Vec<String>,
    coalesce_seconds: i64,
    max_notices_per_day: u32,
    cap_release_time: String,
    quiet_from: String,
    quiet_until: String,
    update_cadence_days: Vec<u32>,
    next_update_time: String,
    #[serde(default)]
    no_news_escalate_after: u32,
    max_future_skew_minutes: i64,
    followup_after_days: u32,
    followup_time: String,
    park_hours: i64,
}

#[derive(Deserialize)]
struct RawShipping {
    ship_by_time: String,
    #[serde(default)]
    ship_by_days_before: u32,
    transit_days: u32,
}

#[derive(Deserialize, serde::Serialize, Debug)]
struct RawTier {
    min_days: i64,
    eur: u32,
}

#[derive(Deserialize)]
struct RawBrand {
    display_name: String,
    tone: String,
    time_zone: String,
    default_locale: String,
    email_from: String,
    sms_from: String,
    support_url: String,
    #[serde(default)]
    support_phone: Option<String>,
    #[serde(default)]
    compensation: Vec<RawTier>,
}

/// Load `dir/default.toml`, `dir/local.toml` and the environment.
pub fn load(dir: &Path) -> Result<Settings, SettingsError> {
    let default = dir.join("default.toml");
    if !default.is_file() {
        return Err(SettingsError::Load(format!("{}: not found (pass --config DIR)", default.display())));
    }
    let local = dir.join("local.toml");
    let mut sources = Vec::new();
    let mut builder = config::Config::builder();
    for (path, required) in [(&default, true), (&local, false)] {
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| SettingsError::Load(format!("{}: {e}", path.display())))?;
        // Parse ourselves first: toml's errors carry the line and column.
        if let Err(e) = text.parse::<toml::Table>() {
            let (line, col) = e.span().map(|s| line_col(&text, s.start)).unwrap_or((0, 0));
            return Err(SettingsError::Invalid {
                origin: format!("{}:{line}:{col}", path.display()),
                message: e.message().to_string(),
            });
        }
        builder = builder.add_source(config::File::from(path.as_path()).format(config::FileFormat::Toml).required(required));
        sources.push((path.clone(), text));
    }
    builder = builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("policy.delivery_days")
            .with_list_parse_key("policy.non_delivery_dates"),
    );
    let raw = builder.build().map_err(|e| SettingsError::Load(e.to_string()))?;
    let root: RawRoot = raw.clone().try_deserialize().map_err(|e| {
        let message = e.to_string();
        let origin = key_in_message(&message).map(|k| origin_of(&sources, &k)).unwrap_or_else(|| dir.display().to_string());
        SettingsError::Invalid { origin, message }
    })?;
    let policy = build_policy(root, &sources)?;
    Ok(Settings { policy, raw, dir: dir.to_path_buf(), sources })
}

fn key_in_message(message: &str) -> Option<String> {
    let start = message.find("key `")? + 5;
    let end = message[start..].find('`')? + start;
    Some(message[start..end].to_string())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| before.len() - i).unwrap_or(before.len() + 1);
    (line, col)
}

/// The environment variable or the file and line that set `key` last.
fn origin_of(sources: &[(PathBuf, String)], key: &str) -> String {
    let var = format!(
        "{ENV_PREFIX}{ENV_SEPARATOR}{}",
        key.split('.').map(str::to_ascii_uppercase).collect::<Vec<_>>().join(ENV_SEPARATOR)
    );
    if std::env::var_os(&var).is_some() {
        return format!("environment variable {var}");
    }
    for (path, text) in sources.iter().rev() {
        if let Some(line) = find_key_line(text, key) {
            return format!("{}:{line}", path.display());
        }
    }
    sources.first().map(|(p, _)| p.display().to_string()).unwrap_or_default()
}

/// The line of `a.b.c = …` in a TOML text: the leaf key under its `[a.b]` table header.
/// A heuristic for messages, not a parser: inline tables report their parent's line.
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    let parts: Vec<&str> = key.split('.').collect();
    let mut table: Vec<String> = Vec::new();
    let mut best = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            let name = line.trim_matches(|c| c == '[' || c == ']').trim();
            table = name.split('.').map(|s| s.trim().trim_matches('"').to_string()).collect();
            if parts.len() <= table.len() && table[..parts.len()].iter().map(String::as_str).eq(parts.iter().copied()) {
                best = best.or(Some(n + 1));
            }
            continue;
        }
        let Some((lhs, _)) = line.split_once('=') else { continue };
        let mut path = table.clone();
        path.extend(lhs.trim().split('.').map(|s| s.trim().trim_matches('"').to_string()));
        if path.len() <= parts.len() && parts[..path.len()].iter().copied().eq(path.iter().map(String::as_str)) {
            if path.len() == parts.len() {
                return Some(n + 1);
            }
            best = Some(n + 1);
        }
    }
    best
}

struct Checker<'a> {
    sources: &'a [(PathBuf, String)],
}

impl Checker<'_> {
    fn bad(&self, key: &str, message: impl Into<String>) -> SettingsError {
        SettingsError::Invalid { origin: format!("{} (key `{key}`)", origin_of(self.sources, key)), message: message.into() }
    }

    fn time(&self, key: &str, value: &str) -> Result<NaiveTime, SettingsError> {
        NaiveTime::parse_from_str(value, "%H:%M")
            .map_err(|_| self.bad(key, format!("{value:?} is not a time of day as HH:MM (e.g. \"22:30\")")))
    }
}

fn build_policy(root: RawRoot, sources: &[(PathBuf, String)]) -> Result<Policy, SettingsError> {
    let c = Checker { sources };
    let p = &root.policy;
    let mut delivery_days = HashSet::new();
    for d in &p.delivery_days {
        let day: Weekday = d
            .parse()
            .map_err(|_| c.bad("policy.delivery_days", format!("{d:?} is not a weekday (mon, tue, …)")))?;
        delivery_days.insert(day);
    }
    if delivery_days.is_empty() {
        return Err(c.bad("policy.delivery_days", "needs at least one delivery day"));
    }
    let mut non_delivery_dates = HashSet::new();
    for d in &p.non_delivery_dates {
        let date = NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| c.bad("policy.non_delivery_dates", format!("{d:?} is not a date as YYYY-MM-DD")))?;
        non_delivery_dates.insert(date);
    }
    if p.coalesce_seconds < 0 || p.coalesce_seconds > 3600 {
        return Err(c.bad("policy.coalesce_seconds", "must be between 0 and 3600"));
    }
    if p.max_notices_per_day == 0 {
        return Err(c.bad("policy.max_notices_per_day", "must be at least 1"));
    }
    if p.park_hours <= 0 {
        return Err(c.bad("policy.park_hours", "must be more than 0"));
    }
    if p.update_cadence_days.is_empty() || p.update_cadence_days.contains(&0) {
        return Err(c.bad("policy.update_cadence_days", "needs at least one step, each at least 1 day"));
    }
    if p.max_future_skew_minutes < 0 {
        return Err(c.bad("policy.max_future_skew_minutes", "must be 0 or more"));
    }

    let mut channels = BTreeMap::new();
    for (kind_name, list) in &root.channels {
        let key = format!("channels.{kind_name}");
        let kind = Kind::parse(kind_name)
            .filter(|k| Kind::CUSTOMER.contains(k))
            .ok_or_else(|| c.bad(&key, format!("{kind_name:?} is not a customer message kind")))?;
        let mut chosen = Vec::new();
        for ch in list {
            chosen.push(match ch.as_str() {
                "email" => Channel::Email,
                "sms" => Channel::Sms,
                other => return Err(c.bad(&key, format!("{other:?} is not a channel (email, sms)"))),
            });
        }
        channels.insert(kind, chosen);
    }
    for kind in Kind::CUSTOMER {
        if !channels.contains_key(&kind) {
            return Err(c.bad("channels", format!("no channels set for `{kind}`")));
        }
    }

    let mut shipping = BTreeMap::new();
    for (name, m) in &root.shipping {
        let key = format!("shipping.{name}");
        if m.transit_days == 0 || m.transit_days > 30 {
            return Err(c.bad(&format!("{key}.transit_days"), "must be between 1 and 30"));
        }
        shipping.insert(
            name.clone(),
            ShippingMethod {
                ship_by_time: c.time(&format!("{key}.ship_by_time"), &m.ship_by_time)?,
                ship_by_days_before: m.ship_by_days_before,
                transit_days: m.transit_days,
            },
        );
    }
    if !shipping.contains_key(Policy::DEFAULT_METHOD) {
        return Err(c.bad("shipping", "needs a [shipping.standard] section (used for unknown methods)"));
    }

    let mut brands = BTreeMap::new();
    for (id, b) in root.brands {
        let brand = build_brand(&c, &format!("brands.{id}."), id.clone(), b)?;
        brands.insert(id, brand);
    }
    if brands.is_empty() {
        return Err(c.bad("brands", "no brand configured"));
    }

    Ok(Policy {
        cutoff: c.time("policy.cutoff", &p.cutoff)?,
        promise_time: c.time("policy.promise_time", &p.promise_time)?,
        delivery_days,
        non_delivery_dates,
        coalesce_seconds: p.coalesce_seconds,
        max_notices_per_day: p.max_notices_per_day,
        cap_release_time: c.time("policy.cap_release_time", &p.cap_release_time)?,
        quiet_from: c.time("policy.quiet_from", &p.quiet_from)?,
        quiet_until: c.time("policy.quiet_until", &p.quiet_until)?,
        update_cadence_days: p.update_cadence_days.clone(),
        no_news_escalate_after: p.no_news_escalate_after,
        max_future_skew: chrono::Duration::minutes(p.max_future_skew_minutes),
        next_update_time: c.time("policy.next_update_time", &p.next_update_time)?,
        followup_after_days: p.followup_after_days,
        followup_time: c.time("policy.followup_time", &p.followup_time)?,
        park_hours: p.park_hours,
        channels,
        shipping,
        brands,
    })
}

/// One brand, validated; `prefix` is where its keys live (`brands.lumen.` in the config, the
/// empty prefix in a brand document).
fn build_brand(c: &Checker<'_>, prefix: &str, id: String, b: RawBrand) -> Result<Brand, SettingsError> {
    let tone = match b.tone.as_str() {
        "formal" => Tone::Formal,
        "warm" => Tone::Warm,
        "playful" => Tone::Playful,
        other => return Err(c.bad(&format!("{prefix}tone"), format!("{other:?} is not a tone (formal, warm, playful)"))),
    };
    let time_zone: Tz = b
        .time_zone
        .parse()
        .map_err(|_| c.bad(&format!("{prefix}time_zone"), format!("{:?} is not an IANA time zone", b.time_zone)))?;
    if belofte_core::domain::Lang::of_locale(&b.default_locale).is_none() {
        return Err(c.bad(
            &format!("{prefix}default_locale"),
            format!("{:?}: there are no templates for this language (nl, en)", b.default_locale),
        ));
    }
    if !b.email_from.contains('@') {
        return Err(c.bad(&format!("{prefix}email_from"), "must contain an email address"));
    }
    let mut tiers: Vec<CompensationTier> =
        b.compensation.iter().map(|t| CompensationTier { min_days: t.min_days, eur: t.eur }).collect();
    tiers.sort_by_key(|t| t.min_days);
    if tiers.iter().any(|t| t.min_days < 1 || t.eur == 0) {
        return Err(c.bad(&format!("{prefix}compensation"), "every tier needs min_days ≥ 1 and eur ≥ 1"));
    }
    if tiers.windows(2).any(|w| w[1].eur < w[0].eur) {
        return Err(c.bad(&format!("{prefix}compensation"), "a longer delay cannot get a smaller voucher"));
    }
    Ok(Brand {
        id,
        display_name: b.display_name,
        tone,
        time_zone,
        default_locale: b.default_locale,
        email_from: b.email_from,
        sms_from: b.sms_from,
        support_url: b.support_url,
        support_phone: b.support_phone.filter(|s| !s.trim().is_empty()),
        compensation: tiers,
    })
}

/// The fields of a brand that marketing and ops edit live (a brand document, versioned in
/// the database). Time zone and locale stay in the configuration: they move every date.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct BrandDocument {
    display_name: String,
    tone: String,
    email_from: String,
    sms_from: String,
    support_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    support_phone: Option<String>,
    #[serde(default)]
    compensation: Vec<RawTier>,
}

/// A brand as an editable document (TOML): `display_name`, `tone`, `email_from`, `sms_from`,
/// `support_url`, `support_phone`, and `[[compensation]]` tiers (`min_days`, `eur`). What
/// the console shows to edit before any version was published.
pub fn brand_document(brand: &Brand) -> String {
    let doc = BrandDocument {
        display_name: brand.display_name.clone(),
        tone: brand.tone.as_str().to_string(),
        email_from: brand.email_from.clone(),
        sms_from: brand.sms_from.clone(),
        support_url: brand.support_url.clone(),
        support_phone: brand.support_phone.clone(),
        compensation: brand.compensation.iter().map(|t| RawTier { min_days: t.min_days, eur: t.eur }).collect(),
    };
    toml::to_string(&doc).unwrap_or_default()
}

/// A brand document (see [`brand_document`]) over the configured brand `base`: parsed and
/// validated as `config/default.toml`'s brands are, with the same messages. `name` is how
/// messages call the document (`brands/lumen (version 7)`); a problem reads
/// `brands/lumen (version 7):3 (key `tone`): "cheerful" is not a tone (formal, warm, playful)`.
pub fn parse_brand_document(name: &str, base: &Brand, text: &str) -> Result<Brand, SettingsError> {
    let doc: BrandDocument = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        SettingsError::Invalid { origin: format!("{name}:{line}:{col}"), message: e.message().to_string() }
    })?;
    let sources = [(PathBuf::from(name), text.to_string())];
    let c = Checker { sources: &sources };
    let raw = RawBrand {
        display_name: doc.display_name,
        tone: doc.tone,
        time_zone: base.time_zone.name().to_string(),
        default_locale: base.default_locale.clone(),
        email_from: doc.email_from,
        sms_from: doc.sms_from,
        support_url: doc.support_url,
        support_phone: doc.support_phone,
        compensation: doc.compensation,
    };
    build_brand(&c, "", base.id.clone(), raw)
}

/// The configuration folder: `--config`, else `BELOFTE_CONFIG_DIR`, else `./config`, else
/// the one beside the binary's source tree (so `cargo run` works from anywhere).
pub fn config_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("BELOFTE_CONFIG_DIR") {
        return PathBuf::from(p);
    }
    let here = PathBuf::from("config");
    if here.join("default.toml").is_file() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// The templates folder: `--templates`, else `BELOFTE_TEMPLATES_DIR`, else `templates/`
/// beside the config folder, else the source tree's.
pub fn templates_dir(flag: Option<&Path>, config_dir: &Path) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("BELOFTE_TEMPLATES_DIR") {
        return PathBuf::from(p);
    }
    if let Some(parent) = config_dir.parent() {
        let beside = parent.join("templates");
        if beside.is_dir() {
            return beside;
        }
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_line_of_a_nested_key() {
        let text = "[policy]\ncutoff = \"22:30\"\n\n[brands.lumen]\ntone = \"warm\"\n[brands.pip]\ntone = \"x\"\n";
        assert_eq!(find_key_line(text, "policy.cutoff"), Some(2));
        assert_eq!(find_key_line(text, "brands.pip.tone"), Some(7));
        assert_eq!(find_key_line(text, "brands.lumen.tone"), Some(5));
    }
}
