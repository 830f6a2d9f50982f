//! `belofte check`: lint templates and configuration before a deploy.
//!
//! Every customer kind × channel × language × tone is rendered with sample notices that
//! push the edges (no date, vouchers raised, a second slip, long names and addresses) and
//! the results are held to the rules the acceptance checker and customer service apply.
//! Documented exemptions: `late_delivery_followup` gives the delivery date instead of a new
//! date or next update; `back_on_track` gives the promise that holds; `delivery_failed` may
//! give the next attempt or a pickup point instead.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::Path;

use chrono::{DateTime, Utc};

use belofte_core::domain::{Channel, Instant, Item, Kind, Lang, PickupPoint, Reason, Tone};
use belofte_core::notice::Notice;
use belofte_core::policy::{Brand, CompensationTier, Policy};
use crate::render::words::{day_month, euro, sms_units};
use crate::render::{Part, Rendered, Source, TemplateError, TemplateFiles, Templates, LAYOUT_FILE, VOICE_SECTIONS};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file to open: a template, a phrase file, or the folder.
    pub template: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.template, line, self.message),
            None => write!(f, "{}: {}", self.template, self.message),
        }
    }
}

/// Collects problems once each: the same mistake shows up in many samples.
#[derive(Default)]
struct Report {
    problems: Vec<Problem>,
    seen: HashSet<(String, Option<usize>, String)>,
}

impl Report {
    /// `key` says what makes two reports the same problem (the message may name a sample).
    fn add(&mut self, file: &str, line: Option<usize>, key: &str, message: String) {
        if self.seen.insert((file.to_string(), line, key.to_string())) {
            self.problems.push(Problem { template: file.to_string(), line, message });
        }
    }
}

/// `belofte check` on a templates folder.
pub fn lint(policy: &Policy, templates_dir: &Path) -> Vec<Problem> {
    match TemplateFiles::read(templates_dir) {
        Ok(files) => lint_files(policy, &files).1,
        Err(e) => vec![Problem { template: templates_dir.display().to_string(), line: None, message: e.to_string() }],
    }
}

/// The lint of `belofte check` over template documents (the shipped folder with published
/// versions overlaid, `crate::wording`): the compiled templates when they compile, and every
/// problem found. Problems name each file as `files` names it.
pub fn lint_files(policy: &Policy, files: &TemplateFiles) -> (Option<Templates>, Vec<Problem>) {
    let mut report = Report::default();
    let templates = match Templates::compile(files.clone()) {
        Ok(t) => t,
        Err(e) => {
            syntax_problems(files, &e, &mut report);
            return (None, report.problems);
        }
    };
    lint_compiled(policy, &templates, &mut report);
    (Some(templates), report.problems)
}

fn lint_compiled(policy: &Policy, templates: &Templates, report: &mut Report) {
    let files = templates.files();
    unknown_files(files, report);
    required_templates(policy, templates, files, report);
    phrase_gaps(templates, files, report);
    for tone in Tone::ALL {
        let brand = brand_with_tone(policy, tone);
        for kind in Kind::CUSTOMER {
            for lang in Lang::ALL {
                for channel in [Channel::Email, Channel::Sms] {
                    if !templates.has(kind, channel, lang) {
                        continue;
                    }
                    for (label, notice) in samples(kind, lang, &brand) {
                        match templates.render_detailed(&notice, &brand, channel, true) {
                            Ok(r) => {
                                let ctx = Ctx { templates, notice: &notice, brand: &brand, channel, label };
                                check_message(&ctx, &r, report);
                                same_on_both_paths(&ctx, report);
                            }
                            Err(f) => {
                                let key = format!("render {}", f.message);
                                report.add(&f.file, f.line, &key, f.message.clone());
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- loading

/// Handlebars stops at the first syntax error; compile each file alone to report them all.
fn syntax_problems(files: &TemplateFiles, first: &TemplateError, report: &mut Report) {
    let mut found = false;
    for rel in hbs_files(files) {
        let Some(src) = files.get(&rel) else { continue };
        if let Err(e) = handlebars::Template::compile(src) {
            let line = e.pos().map(|(l, _)| l).unwrap_or(1);
            let file = files.name(&rel);
            report.add(&file, Some(line), "syntax", format!("template syntax error: {}", e.reason()));
            found = true;
        }
    }
    if !found {
        match first {
            TemplateError::Syntax { file, line, message } => report.add(file, Some(*line), "syntax", message.clone()),
            TemplateError::Io(m) => report.add(files.label(), None, "io", m.clone()),
        }
    }
}

fn hbs_files(files: &TemplateFiles) -> Vec<String> {
    files.texts().keys().filter(|rel| rel.ends_with(".hbs")).cloned().collect()
}

/// A misspelt file name would silently never be used.
fn unknown_files(files: &TemplateFiles, report: &mut Report) {
    let mut known: HashSet<String> = HashSet::new();
    for kind in Kind::CUSTOMER {
        for lang in Lang::ALL {
            for part in Part::ALL {
                known.insert(format!("{}/{}/{}", kind.as_str(), lang.as_str(), part.file_name()));
            }
        }
    }
    known.insert(LAYOUT_FILE.to_string());
    for rel in hbs_files(files) {
        if !known.contains(&rel) {
            let file = files.name(&rel);
            report.add(
                &file,
                None,
                "unknown",
                "this file is never used: templates are KIND/LANG/{email.subject,email.txt,sms.txt}.hbs \
                 with a customer kind and nl or en"
                    .to_string(),
            );
        }
    }
}

fn required_templates(policy: &Policy, templates: &Templates, files: &TemplateFiles, report: &mut Report) {
    for kind in Kind::CUSTOMER {
        for &channel in policy.channels_for(kind) {
            for lang in Lang::ALL {
                for &part in Part::of_channel(channel) {
                    if templates.part_name(kind, lang, part).is_none() {
                        let rel = format!("{}/{}/{}", kind.as_str(), lang.as_str(), part.file_name());
                        report.add(
                            &files.name(&rel),
                            None,
                            "missing",
                            format!("missing: the policy sends {kind} by {channel}, so this template must exist"),
                        );
                    }
                }
            }
        }
    }
}

/// Every phrase a template asks for must exist in every tone, every reason in every language.
fn phrase_gaps(templates: &Templates, files: &TemplateFiles, report: &mut Report) {
    let mut voice_used: BTreeSet<String> = templates.voice.keys().cloned().collect();
    let mut reason_used: BTreeSet<String> = templates.reasons.keys().cloned().collect();
    for src in templates.sources.values() {
        voice_used.extend(helper_keys(&src.text, "voice"));
        reason_used.extend(helper_keys(&src.text, "reason"));
    }
    for lang in Lang::ALL {
        let voice_file = files.name(&format!("_voice/{}.toml", lang.as_str()));
        for key in &voice_used {
            for tone in Tone::ALL {
                let slots = templates.voice.get(key);
                let has = |section: usize| {
                    slots.and_then(|s| s.get(crate::render::voice_slot(lang, section))).is_some_and(Option::is_some)
                };
                if !has(crate::render::tone_index(tone)) && !has(VOICE_SECTIONS.len() - 1) {
                    report.add(
                        &voice_file,
                        None,
                        &format!("voice {key} {}", tone.as_str()),
                        format!("no phrase `{key}` for tone {} (add it to [{}] or [common])", tone.as_str(), tone.as_str()),
                    );
                }
            }
        }
        let reason_file = files.name(&format!("_reasons/{}.toml", lang.as_str()));
        for key in &reason_used {
            for reason in Reason::ALL {
                let has = templates
                    .reasons
                    .get(key)
                    .and_then(|s| s.get(crate::render::reason_slot(lang, reason)))
                    .is_some_and(Option::is_some);
                if !has {
                    report.add(
                        &reason_file,
                        None,
                        &format!("reason {key} {}", reason.code()),
                        format!("no `{key}` for reason [{}]; it would read as the [other] text", reason.code()),
                    );
                }
            }
        }
    }
}

/// The keys of `{{helper "key"}}` in a template's text.
fn helper_keys(text: &str, helper: &str) -> Vec<String> {
    let needle = format!("{helper} \"");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&needle) {
        let after = &rest[i + needle.len()..];
        let preceded_ok = i == 0 || rest[..i].ends_with(['{', '(']);
        if let Some(end) = after.find('"') {
            if preceded_ok {
                out.push(after[..end].to_string());
            }
            rest = &after[end..];
        } else {
            break;
        }
    }
    out
}

// ---------------------------------------------------------------- samples

/// The brand samples of `tone` are rendered as: a configured brand of that tone, else the
/// first brand speaking in it.
pub fn brand_with_tone(policy: &Policy, tone: Tone) -> Brand {
    if let Some(b) = policy.brands.values().find(|b| b.tone == tone) {
        return b.clone();
    }
    let mut b = policy.brands.values().next().cloned().unwrap_or_else(sample_brand);
    b.tone = tone;
    b.id = format!("{}-as-{}", b.id, tone.as_str());
    b
}

fn sample_brand() -> Brand {
    Brand {
        id: "sample".to_string(),
        display_name: "Voorbeeldwinkel".to_string(),
        tone: Tone::Warm,
        time_zone: chrono_tz::Europe::Amsterdam,
        default_locale: "nl-NL".to_string(),
        email_from: "service@example.nl".to_string(),
        sms_from: "Voorbeeld".to_string(),
        support_url: "https://www.example.nl/klantenservice".to_string(),
        support_phone: Some("088 123 4567".to_string()),
        compensation: vec![CompensationTier { min_days: 1, eur: 5 }],
    }
}

fn at(s: &str) -> Instant {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// The sample notice of one kind every variant of [`samples`] starts from; the console's
/// previews show it.
pub fn sample(kind: Kind, lang: Lang, brand: &Brand) -> Notice {
    Notice {
        order_id: "B-1201".to_string(),
        kind,
        brand: brand.id.clone(),
        locale: if lang == Lang::Nl { "nl-NL" } else { "en-GB" }.to_string(),
        lang,
        customer_name: "Daan Verhoeven".to_string(),
        items: vec![Item { sku: "LAP-1".into(), name: "Lumen Nova 14 laptop".to_string(), qty: 1 }],
        promise_label: None,
        carrier: Some("postnl".to_string()),
        tracking_number: Some("3SABCD1234567".to_string()),
        reason: match kind {
            Kind::AtRisk | Kind::BackOnTrack | Kind::LateDeliveryFollowup => None,
            Kind::Backorder => Some(Reason::OutOfStock),
            Kind::DeliveryFailed => Some(Reason::NotHome),
            _ => Some(Reason::SortingBacklog),
        },
        again: false,
        original: at("2026-11-20T22:00:00+01:00"),
        previous: Some(at("2026-11-20T22:00:00+01:00")),
        new: match kind {
            Kind::AtRisk | Kind::Update | Kind::DeliveryFailed | Kind::LateDeliveryFollowup => None,
            _ => Some(at("2026-11-24T22:00:00+01:00")),
        },
        next_update_at: match kind {
            Kind::AtRisk | Kind::Update => Some(at("2026-11-21T12:00:00+01:00")),
            _ => None,
        },
        compensation_eur: match kind {
            Kind::Delayed | Kind::Backorder | Kind::LateDeliveryFollowup => Some(5),
            _ => None,
        },
        previous_compensation_eur: None,
        next_attempt_at: (kind == Kind::DeliveryFailed).then(|| at("2026-11-25T09:00:00+01:00")),
        pickup_point: (kind == Kind::DeliveryFailed)
            .then(|| PickupPoint { name: "Primera Centrum".to_string(), address: "Markt 12, Utrecht".to_string() }),
        delivered_at: (kind == Kind::LateDeliveryFollowup).then(|| at("2026-11-24T14:12:00+01:00")),
        failed_attempts: u32::from(kind == Kind::DeliveryFailed),
        decided_at: at("2026-11-19T16:05:00+01:00"),
    }
}

/// Notices that push every branch and every length limit of a template.
fn samples(kind: Kind, lang: Lang, brand: &Brand) -> Vec<(String, Notice)> {
    let b = sample(kind, lang, brand);
    let mut out = vec![("base".to_string(), b.clone())];
    let mut v = |label: &str, f: &dyn Fn(&mut Notice)| {
        let mut n = b.clone();
        f(&mut n);
        out.push((label.to_string(), n));
    };
    v("no date, next update", &|n| {
        n.new = None;
        n.next_update_at = Some(at("2026-11-25T12:00:00+01:00"));
    });
    v("no voucher", &|n| n.compensation_eur = None);
    v("again, voucher raised", &|n| {
        n.again = true;
        n.compensation_eur = Some(10);
        n.previous_compensation_eur = Some(5);
    });
    v("no tracking, no carrier, several items", &|n| {
        n.tracking_number = None;
        n.carrier = None;
        n.items.push(Item { sku: "X".into(), name: "USB-C lader".to_string(), qty: 2 });
    });
    if kind == Kind::DeliveryFailed {
        v("pickup only", &|n| n.next_attempt_at = None);
        v("next attempt only", &|n| n.pickup_point = None);
        v("address issue, nothing planned", &|n| {
            n.reason = Some(Reason::AddressIssue);
            n.next_attempt_at = None;
            n.pickup_point = None;
            n.next_update_at = Some(at("2026-11-25T12:00:00+01:00"));
        });
    }
    if kind == Kind::LateDeliveryFollowup {
        v("delivery time unknown", &|n| n.delivered_at = None);
    }
    if kind == Kind::Update {
        v("update with a date", &|n| n.new = Some(at("2026-11-24T22:00:00+01:00")));
    }
    // The longest message a real order can produce: every variable at its longest.
    v("longest", &|n| {
        n.customer_name = "Maximiliaan Alexander Zoë van den Heuvel-Oudshoorn".to_string();
        n.order_id = "B-2026-1120-004711".to_string();
        n.items = vec![
            Item { sku: "A".into(), name: "Ergonomische bureaustoel Ergo Plus Deluxe met hoofdsteun (antraciet)".to_string(), qty: 12 },
            Item { sku: "B".into(), name: "Printpapier".to_string(), qty: 1 },
            Item { sku: "C".into(), name: "Nietmachine".to_string(), qty: 1 },
        ];
        n.again = true;
        n.tracking_number = Some("3SABCD1234567890123456".to_string());
        if n.new.is_some() {
            n.new = Some(at("2026-09-30T22:00:00+02:00"));
        }
        if n.next_update_at.is_some() {
            n.next_update_at = Some(at("2026-09-30T12:00:00+02:00"));
        }
        if n.next_attempt_at.is_some() {
            n.next_attempt_at = Some(at("2026-09-30T09:00:00+02:00"));
        }
        if n.delivered_at.is_some() {
            n.delivered_at = Some(at("2026-09-30T14:00:00+02:00"));
        }
        if n.compensation_eur.is_some() {
            n.compensation_eur = Some(20);
            n.previous_compensation_eur = Some(10);
        }
        if n.pickup_point.is_some() {
            n.pickup_point = Some(PickupPoint {
                name: "Primera Centrum Hoog Catharijne".to_string(),
                address: "Godebaldkwartier 1045, 3511 DB Utrecht".to_string(),
            });
        }
    });
    for reason in Reason::ALL {
        if kind != Kind::AtRisk && kind != Kind::BackOnTrack {
            v(&format!("reason {}", reason.code()), &|n| n.reason = Some(reason));
        }
    }
    out
}

// ---------------------------------------------------------------- rules

struct Ctx<'a> {
    templates: &'a Templates,
    notice: &'a Notice,
    brand: &'a Brand,
    channel: Channel,
    label: String,
}

impl Ctx<'_> {
    fn part(&self) -> Part {
        if self.channel == Channel::Sms {
            Part::SmsText
        } else {
            Part::EmailText
        }
    }
    fn file(&self, part: Part) -> String {
        self.templates
            .part_name(self.notice.kind, self.notice.lang, part)
            .and_then(|n| self.templates.sources.get(n))
            .map(|s| s.file.clone())
            .unwrap_or_else(|| format!("{}/{}/{}", self.notice.kind, self.notice.lang.as_str(), part.file_name()))
    }
    fn what(&self) -> String {
        format!(
            "{} {} {} (tone {}, sample \"{}\")",
            self.notice.kind,
            self.channel,
            self.notice.lang.as_str(),
            self.brand.tone.as_str(),
            self.label
        )
    }
    fn key(&self, rule: &str) -> String {
        format!("{rule} {} {}", self.notice.lang.as_str(), self.brand.tone.as_str())
    }
}

/// The compiled fast path must write exactly the bytes Handlebars writes, for every sample:
/// ops edit the templates, and a difference of one byte is a bug to catch before a deploy.
fn same_on_both_paths(ctx: &Ctx<'_>, report: &mut Report) {
    let (t, n, b, c) = (ctx.templates, ctx.notice, ctx.brand, ctx.channel);
    let (Some(fast), Ok(reference)) = (t.render_fast(n, b, c, true), t.render_reference(n, b, c, true)) else {
        // Not compiled (the slow path renders it, counted as a fallback), or it fails on
        // both paths alike (reported above).
        return;
    };
    for (part, a, z) in [
        ("subject", fast.subject.as_deref(), reference.subject.as_deref()),
        ("text", Some(fast.text.as_str()), Some(reference.text.as_str())),
        ("html", fast.html.as_deref(), reference.html.as_deref()),
    ] {
        if a != z {
            let (a, z) = (a.unwrap_or(""), z.unwrap_or(""));
            let at = a.bytes().zip(z.bytes()).position(|(x, y)| x != y).unwrap_or(a.len().min(z.len()));
            report.add(
                &ctx.file(ctx.part()),
                None,
                &ctx.key(&format!("fast path {part}")),
                format!(
                    "{}: the compiled fast path and Handlebars write different {part} from byte {at} ({:?} against {:?}); this is a bug in belofte's renderer, please report it",
                    ctx.what(),
                    a.get(at..).unwrap_or("").chars().take(30).collect::<String>(),
                    z.get(at..).unwrap_or("").chars().take(30).collect::<String>()
                ),
            );
        }
    }
}

fn check_message(ctx: &Ctx<'_>, r: &Rendered, report: &mut Report) {
    let n = ctx.notice;
    let lang = n.lang;
    let file = ctx.file(ctx.part());
    if ctx.channel == Channel::Email {
        if r.subject.as_deref().map(str::trim).unwrap_or("").is_empty() {
            report.add(&ctx.file(Part::EmailSubject), None, "subject", format!("{}: the email has no subject", ctx.what()));
        }
        if r.text.trim().is_empty() {
            report.add(&file, None, "empty", format!("{}: the email has no text", ctx.what()));
        }
    }
    if ctx.channel == Channel::Sms {
        let (used, limit) = sms_units(&r.text);
        if used > limit {
            report.add(
                &file,
                None,
                &ctx.key("sms size"),
                format!("{}: SMS longer than 2 segments: {used} units, limit {limit}: {:?}", ctx.what(), r.text),
            );
        }
        if has_html(&r.text) {
            report.add(&file, None, "sms html", format!("{}: an SMS is plain text, this one has HTML", ctx.what()));
        }
    }

    // Register: formal Dutch never says je/jij/jouw/jou; warm and playful never u/uw.
    if lang == Lang::Nl {
        let banned: &[&str] = match ctx.brand.tone {
            Tone::Formal => &["je", "jij", "jouw", "jou"],
            Tone::Warm | Tone::Playful => &["u", "uw"],
        };
        let full = format!("{}\n{}", r.subject.as_deref().unwrap_or(""), r.text);
        if let Some((word, sentence)) = find_word(&full, banned) {
            let (src_file, line) = locate(ctx, word, &sentence).unwrap_or((file.clone(), None));
            report.add(
                &src_file,
                line,
                &ctx.key(&format!("register {word}")),
                format!(
                    "{}: tone {} must not say \"{word}\": \"{}\"",
                    ctx.what(),
                    ctx.brand.tone.as_str(),
                    sentence.trim()
                ),
            );
        }
    }

    // When it is fixed: the new date, or when the next update comes.
    let text_lower = r.text.to_lowercase();
    let mentions = |t: Instant| text_lower.contains(&day_month(lang, ctx.brand.time_zone, t).to_lowercase());
    let dm = |t: Instant| day_month(lang, ctx.brand.time_zone, t);
    let date_problem = match n.kind {
        Kind::LateDeliveryFollowup => n.delivered_at.filter(|t| !mentions(*t)).map(|t| format!("the delivery date ({})", dm(t))),
        Kind::BackOnTrack => {
            let holds = n.new.or(n.previous).unwrap_or(n.original);
            (!mentions(holds)).then(|| format!("the date that holds ({})", dm(holds)))
        }
        _ => {
            let fallback = if n.kind == Kind::DeliveryFailed { n.next_attempt_at } else { None };
            match (n.new, n.next_update_at.or(fallback)) {
                (Some(new), _) if !mentions(new) => Some(format!("the new date ({})", dm(new))),
                (None, Some(next)) if !mentions(next) => Some(format!("the next-update time ({})", dm(next))),
                (None, None) if n.kind == Kind::DeliveryFailed && n.pickup_point.is_some() => None,
                (None, None) => None,
                _ => None,
            }
        }
    };
    if let Some(wanted) = date_problem {
        report.add(
            &file,
            None,
            &ctx.key("date"),
            format!("{}: gives neither a new date nor a next-update time: the text must name {wanted}", ctx.what()),
        );
    }

    // Moderation: the next update may be days or a week away; the words must not promise
    // "tomorrow" then.
    if let Some(next) = n.next_update_at {
        let tz = ctx.brand.time_zone;
        let tomorrow = belofte_core::calendar::local_date(tz, n.decided_at).succ_opt();
        if Some(belofte_core::calendar::local_date(tz, next)) != tomorrow {
            let said = match lang {
                Lang::Nl => find_word_in(&r.text, &["morgen"]),
                Lang::En => find_word_in(&r.text, &["tomorrow"]),
            };
            if let Some(word) = said {
                report.add(
                    &file,
                    None,
                    &ctx.key("cadence"),
                    format!("{}: says {word:?}, but the next update is {}: name its day", ctx.what(), dm(next)),
                );
            }
        }
    }

    if n.again && matches!(n.kind, Kind::Delayed | Kind::Backorder) {
        let said = match lang {
            Lang::Nl => has_any_word(&r.text, &["opnieuw", "weer"]),
            Lang::En => has_any_word(&r.text, &["again"]),
        };
        if !said {
            let words = if lang == Lang::Nl { "\"opnieuw\" or \"weer\"" } else { "\"again\"" };
            report.add(&file, None, &ctx.key("again"), format!("{}: a repeated slip must say so ({words})", ctx.what()));
        }
    }

    match n.compensation_eur {
        None => {
            let l = format!("{}\n{}", r.subject.as_deref().unwrap_or(""), r.text).to_lowercase();
            if let Some(w) = ["€", "voucher", "tegoed", "cadeaubon"].into_iter().find(|w| l.contains(w)) {
                report.add(
                    &file,
                    None,
                    &ctx.key("phantom voucher"),
                    format!("{}: mentions \"{w}\" but the notice has no voucher", ctx.what()),
                );
            }
        }
        Some(eur) if eur > 0 && !matches!(n.kind, Kind::AtRisk | Kind::BackOnTrack | Kind::DeliveryFailed | Kind::Update) => {
            let amount = euro(lang, eur);
            let compact = format!("€{eur}");
            if !r.text.contains(&amount) && !r.text.contains(&compact) {
                report.add(&file, None, &ctx.key("voucher"), format!("{}: does not name the voucher ({amount})", ctx.what()));
            }
        }
        Some(_) => {}
    }

    if n.kind == Kind::DeliveryFailed {
        if let Some(p) = &n.pickup_point {
            if !r.text.contains(&p.name) {
                report.add(
                    &file,
                    None,
                    &ctx.key("pickup"),
                    format!("{}: does not name the pickup point \"{}\"", ctx.what(), p.name),
                );
            }
        }
    }
}

fn has_html(text: &str) -> bool {
    text.char_indices().any(|(i, c)| {
        c == '<' && text[i + 1..].chars().next().is_some_and(|d| d.is_ascii_alphabetic() || d == '/')
    })
}

/// Words as Python's `\b` sees them: letters, digits and underscore.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty())
}

/// The first of `wanted` that stands in `text` as a word.
fn find_word_in<'w>(text: &str, wanted: &[&'w str]) -> Option<&'w str> {
    wanted.iter().copied().find(|w| has_any_word(text, &[*w]))
}

fn has_any_word(text: &str, wanted: &[&str]) -> bool {
    words(text).any(|w| wanted.iter().any(|x| w.eq_ignore_ascii_case(x)))
}

/// The first banned word and the line it stands in.
fn find_word(text: &str, banned: &[&str]) -> Option<(&'static str, String)> {
    for line in text.lines() {
        for w in words(line) {
            if let Some(b) = banned.iter().find(|b| w.eq_ignore_ascii_case(b)) {
                let word: &'static str = match *b {
                    "je" => "je",
                    "jij" => "jij",
                    "jouw" => "jouw",
                    "jou" => "jou",
                    "u" => "u",
                    _ => "uw",
                };
                return Some((word, line.to_string()));
            }
        }
    }
    None
}

/// The template or phrase line that most likely wrote `word` into `sentence`: a line whose
/// literal text (outside `{{…}}`) has the word and shares the most words with the sentence.
fn locate(ctx: &Ctx<'_>, word: &str, sentence: &str) -> Option<(String, Option<usize>)> {
    let lang = ctx.notice.lang.as_str();
    let tone = ctx.brand.tone.as_str();
    let part_names: Vec<&str> = Part::ALL
        .iter()
        .filter_map(|p| ctx.templates.part_name(ctx.notice.kind, ctx.notice.lang, *p))
        .collect();
    let voice_prefixes = [format!("_voice/{lang}.toml#{tone}."), format!("_voice/{lang}.toml#common.")];
    let reason_prefix = format!("_reasons/{lang}.toml#");
    let relevant = |name: &str| {
        part_names.contains(&name) || voice_prefixes.iter().any(|p| name.starts_with(p.as_str())) || name.starts_with(&reason_prefix)
    };
    let sentence_words: HashSet<String> = words(sentence).map(str::to_lowercase).collect();
    let mut best: Option<(usize, String, usize)> = None;
    let mut names: Vec<(&String, &Source)> = ctx.templates.sources.iter().filter(|(n, _)| relevant(n)).collect();
    names.sort_by(|a, b| a.0.cmp(b.0));
    for (_, src) in names {
        for (i, line) in src.text.lines().enumerate() {
            let literal = strip_mustaches(line);
            if !words(&literal).any(|w| w.eq_ignore_ascii_case(word)) {
                continue;
            }
            let score = words(&literal).filter(|w| sentence_words.contains(&w.to_lowercase())).count();
            if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                best = Some((score, src.file.clone(), src.first_line + i));
            }
        }
    }
    best.map(|(_, file, line)| (file, Some(line)))
}

fn strip_mustaches(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        out.push(' ');
        match rest[start..].find("}}") {
            Some(end) => rest = &rest[start + end + 2..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}
