//! What a wording change does to the words, before anyone publishes it: a message rendered
//! in every tone side by side, its SMS size as the SMS channel bills it, its HTML part; and
//! for a brand, one sample message as it reads now beside how it would read.
//!
//! Pure: templates, a brand and a notice in, words out. The pages and the API show the
//! same [`Sample`]s.

use serde::Serialize;

use belofte_core::domain::{Channel, Kind, Lang, Tone};
use belofte_core::notice::Notice;
use belofte_core::policy::{Brand, Policy};

use super::html::escape;
use crate::check;
use crate::render::{sms_size, Rendered, SmsSize, Templates};

/// One message as the customer would get it, or why it cannot be rendered.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub tone: Tone,
    pub channel: &'static str,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
    /// SMS only: encoding, units and segments.
    pub sms: Option<SmsSize>,
    /// The render failure, with file and line, when there is no message.
    pub error: Option<String>,
}

/// What one template file is previewed as. Message parts preview their own message; the
/// shared files (phrases, reasons, the HTML layout) preview the `delayed` email of their
/// language, which uses all of them.
pub fn target(path: &str) -> Option<(Kind, Lang, Channel)> {
    let parts: Vec<&str> = path.split('/').collect();
    let lang_of = |file: &str| Lang::ALL.into_iter().find(|l| file == format!("{}.toml", l.as_str()));
    match parts.as_slice() {
        [kind, lang, file] => {
            let kind = Kind::parse(kind).filter(|k| Kind::CUSTOMER.contains(k))?;
            let lang = Lang::ALL.into_iter().find(|l| l.as_str() == *lang)?;
            let channel = match *file {
                "email.subject.hbs" | "email.txt.hbs" => Channel::Email,
                "sms.txt.hbs" => Channel::Sms,
                _ => return None,
            };
            Some((kind, lang, channel))
        }
        ["_voice" | "_reasons", file] => Some((Kind::Delayed, lang_of(file)?, Channel::Email)),
        ["_layout", "email.html.hbs"] => Some((Kind::Delayed, Lang::Nl, Channel::Email)),
        _ => None,
    }
}

/// The message of `kind` × `lang` × `channel` in each of the three tones: a real order's
/// notice as its brand would say it in each tone, or else the sample `belofte check` starts
/// from, as `belofte check` renders it per tone.
pub fn tones(templates: &Templates, policy: &Policy, kind: Kind, lang: Lang, channel: Channel, order: Option<(&Notice, &Brand)>) -> Vec<Sample> {
    Tone::ALL
        .into_iter()
        .map(|tone| match order {
            Some((notice, brand)) => one(templates, &Brand { tone, ..brand.clone() }, notice, channel),
            None => {
                let brand = check::brand_with_tone(policy, tone);
                one(templates, &brand, &check::sample(kind, lang, &brand), channel)
            }
        })
        .collect()
}

/// One notice through `templates` as `brand` speaks, with the HTML part.
pub fn one(templates: &Templates, brand: &Brand, notice: &Notice, channel: Channel) -> Sample {
    let rendered = templates.render(notice, brand, channel);
    let (subject, text, html, error) = match rendered {
        Ok(Rendered { subject, text, html }) => (subject, text, html, None),
        Err(e) => (None, String::new(), None, Some(e.to_string())),
    };
    let sms = (channel == Channel::Sms && error.is_none()).then(|| sms_size(&text));
    Sample { tone: brand.tone, channel: channel.as_str(), subject, text, html, sms, error }
}

/// How long the sample delay of a brand preview is: a slip long enough to reach a second
/// voucher tier of the shipped brands, so a change of tiers shows.
const SAMPLE_SLIP_DAYS: i64 = 4;

/// A brand's effect on a customer: the `delayed` message of a sample order slipping
/// [`SAMPLE_SLIP_DAYS`] days, with the voucher its tiers give, by email and by SMS.
pub fn brand(templates: &Templates, brand: &Brand) -> Vec<Sample> {
    let lang = Lang::of_locale(&brand.default_locale).unwrap_or(Lang::Nl);
    let mut notice = check::sample(Kind::Delayed, lang, brand);
    let new = notice.original + chrono::Duration::days(SAMPLE_SLIP_DAYS);
    notice.new = Some(new);
    let days = belofte_core::calendar::days_between(brand.time_zone, notice.original, new);
    notice.compensation_eur = Some(brand.compensation_for(days)).filter(|eur| *eur > 0);
    [Channel::Email, Channel::Sms].into_iter().map(|channel| one(templates, brand, &notice, channel)).collect()
}

/// The voucher a delay of 1 to 10 days gets, for the tiers' table: (days, euros).
pub fn tiers(brand: &Brand) -> Vec<(i64, u32)> {
    (1..=10).map(|days| (days, brand.compensation_for(days))).collect()
}

/// Samples side by side, each under its heading (already HTML): subject, text, the SMS size,
/// and the HTML email as the customer sees it, in a sandboxed frame (no script, no
/// same-origin: the email cannot reach the console) whose document is the `srcdoc`
/// attribute, escaped.
pub fn html(columns: &[(String, &Sample)]) -> String {
    let cells: String = columns
        .iter()
        .map(|(heading, s)| {
            let mut out = format!("<div class=\"sample\" data-tone=\"{}\"><h3>{heading}</h3>", s.tone.as_str());
            if let Some(e) = &s.error {
                out.push_str(&format!("<div class=\"error\">{}</div>", escape(e)));
            }
            if let Some(subject) = &s.subject {
                out.push_str(&format!("<p><b>Subject:</b> <span class=\"subject\">{}</span></p>", escape(subject)));
            }
            if s.error.is_none() {
                out.push_str(&format!("<pre class=\"text\">{}</pre>", escape(&s.text)));
            }
            if let Some(size) = &s.sms {
                let class = if size.units > size.limit { "error" } else { "muted" };
                out.push_str(&format!(
                    "<p class=\"{class} sms-size\">{} segment{} · {} · {} of {} units</p>",
                    size.segments,
                    if size.segments == 1 { "" } else { "s" },
                    size.encoding,
                    size.units,
                    size.limit
                ));
            }
            if let Some(page) = &s.html {
                out.push_str(&format!(
                    "<iframe sandbox title=\"the email as the customer sees it\" srcdoc=\"{}\" style=\"width:100%;height:420px;border:1px solid #dde1e8;background:#fff\"></iframe>",
                    escape(page)
                ));
            }
            out.push_str("</div>");
            out
        })
        .collect();
    format!("<div class=\"samples\" style=\"display:grid;grid-template-columns:repeat({},1fr);gap:1em\">{cells}</div>", columns.len().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_path_names_the_message_it_writes() {
        assert_eq!(target("delayed/nl/sms.txt.hbs"), Some((Kind::Delayed, Lang::Nl, Channel::Sms)));
        assert_eq!(target("update/en/email.subject.hbs"), Some((Kind::Update, Lang::En, Channel::Email)));
        assert_eq!(target("_voice/en.toml"), Some((Kind::Delayed, Lang::En, Channel::Email)));
        assert_eq!(target("delayed/de/sms.txt.hbs"), None);
        assert_eq!(target("../etc/passwd"), None);
    }
}
