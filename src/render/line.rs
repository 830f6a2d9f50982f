//! A decision as the world sees it: the JSON line `simulate` prints and the daemon puts in
//! its outbox, with the words rendered. One function for both, so they cannot drift apart.

use chrono::SecondsFormat;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use belofte_core::domain::{Channel, Instant};
use belofte_core::engine::{Decision, Payload};
use belofte_core::policy::Policy;
use super::{RenderError, Templates};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromiseLine {
    pub original: String,
    pub previous: Option<String>,
    pub new: Option<String>,
}

/// One message on one channel, exactly as `simulate.md` specifies the line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub order_id: String,
    pub kind: String,
    pub channel: String,
    pub send_at: String,
    pub to: Option<String>,
    pub brand: String,
    pub locale: String,
    pub tone: String,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub reason: Option<String>,
    pub promise: Option<PromiseLine>,
    pub next_update_at: Option<String>,
    pub compensation_eur: Option<u32>,
    pub cause: String,
    /// Why a person must look (escalation lines only).
    #[serde(default)]
    pub why: Option<String>,
    /// The HTML part of an email (not printed by `simulate`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub html: Option<String>,
}

/// RFC 3339 in the brand's local offset, to the second.
pub fn local_rfc3339(tz: Tz, t: Instant) -> String {
    t.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// The line for a decision; `with_html` adds the email's HTML part (the daemon sends it,
/// `simulate` does not print it).
pub fn render_line(policy: &Policy, templates: &Templates, d: &Decision, with_html: bool) -> Result<Line, RenderError> {
    let mut line = decision_line(policy, d)?;
    if let (Payload::Customer { notice }, Channel::Email | Channel::Sms) = (&d.payload, d.channel) {
        let brand = brand_of(policy, d)?;
        let r = if with_html {
            templates.render(notice, brand, d.channel)?
        } else {
            templates.render_text(notice, brand, d.channel)?
        };
        line.subject = r.subject;
        line.text = Some(r.text);
        line.html = r.html;
    }
    Ok(line)
}

fn brand_of<'p>(policy: &'p Policy, d: &Decision) -> Result<&'p belofte_core::policy::Brand, RenderError> {
    policy.brands.get(&d.brand).ok_or_else(|| RenderError {
        template: "-".into(),
        message: format!("brand {:?} is not configured", d.brand),
    })
}

/// The line of a decision without its words (no subject, text or HTML): what `render_line`
/// fills in.
fn decision_line(policy: &Policy, d: &Decision) -> Result<Line, RenderError> {
    let brand = brand_of(policy, d)?;
    let tz = brand.time_zone;
    let fmt = |t: Instant| local_rfc3339(tz, t);
    Ok(Line {
        order_id: d.order_id.clone(),
        kind: d.kind.as_str().to_string(),
        channel: d.channel.as_str().to_string(),
        send_at: fmt(d.send_at),
        to: d.to.clone(),
        brand: d.brand.clone(),
        locale: d.locale.clone(),
        tone: brand.tone.as_str().to_string(),
        subject: None,
        text: None,
        reason: d.reason.map(|r| r.code().to_string()),
        promise: Some(PromiseLine {
            original: fmt(d.promise.original),
            previous: d.promise.previous.map(fmt),
            new: d.promise.new.map(fmt),
        }),
        next_update_at: d.next_update_at.map(fmt),
        compensation_eur: d.compensation_eur,
        cause: d.cause.clone(),
        why: match &d.payload {
            Payload::Escalation { why, .. } => Some(why.as_str().to_string()),
            _ => None,
        },
        html: None,
    })
}

/// The CloudEvent `data` of an escalation or compensation event (`events.md`).
pub fn action_data(policy: &Policy, d: &Decision) -> Option<serde_json::Value> {
    let tz = policy.brands.get(&d.brand)?.time_zone;
    let fmt = |t: Instant| local_rfc3339(tz, t);
    match &d.payload {
        Payload::Escalation { why, messages_sent } => Some(serde_json::json!({
            "order_id": d.order_id,
            "brand": d.brand,
            "why": why.as_str(),
            "promise": {
                "original": fmt(d.promise.original),
                "previous": d.promise.previous.map(fmt),
                "new": d.promise.new.map(fmt),
            },
            "messages_sent": messages_sent,
        })),
        Payload::Compensation { amount_eur, delay_days } => Some(serde_json::json!({
            "order_id": d.order_id,
            "brand": d.brand,
            "amount_eur": amount_eur,
            "delay_days": delay_days,
            "promise": {
                "original": fmt(d.promise.original),
                "new": d.promise.new.map(fmt),
            },
        })),
        Payload::Customer { .. } => None,
    }
}
