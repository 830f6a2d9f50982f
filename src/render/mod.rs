//! Rendering notices into words: templates per kind × channel × language, tone from config.
//!
//! Layout of the template folder (see `templates/README.md` for the guide ops and marketing use):
//! - `KIND/LANG/email.subject.hbs`, `KIND/LANG/email.txt.hbs`, `KIND/LANG/sms.txt.hbs`
//! - `_voice/LANG.toml`: phrases per tone (`[formal]`, `[warm]`, `[playful]`) and shared ones
//!   (`[common]`), used as `{{voice "greeting"}}`
//! - `_reasons/LANG.toml`: per reason code what happened and what is being done, used as
//!   `{{reason "what"}}`
//! - `_layout/email.html.hbs`: the one HTML layout around every email's text part
//!
//! Everything is compiled once in [`Templates::from_files`] (`load` reads a folder into
//! [`TemplateFiles`] first; published versions come from the database, `crate::wording`); a
//! render only builds one JSON context.

mod fast;
mod files;
pub mod line;
mod helpers;
mod syntax;
pub(crate) mod words;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use handlebars::{Context, Handlebars};
use serde_json::{json, Map, Value};

use belofte_core::domain::{Channel, Kind, Lang, Reason, Tone};
use belofte_core::notice::Notice;
use belofte_core::policy::Brand;

pub use files::TemplateFiles;
pub use words::{sms_size, sms_units, SmsSize};

#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{file}:{line}: {message}")]
    Syntax { file: String, line: usize, message: String },
    #[error("{0}")]
    Io(String),
}

#[derive(Debug, thiserror::Error)]
#[error("{template}: {message}")]
pub struct RenderError {
    /// The template file (or phrase file) that failed.
    pub template: String,
    pub message: String,
}

/// A render failure with the place it happened, for `belofte check`.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl From<Failure> for RenderError {
    fn from(f: Failure) -> RenderError {
        let message = match f.line {
            Some(line) => format!("line {line}: {}", f.message),
            None => f.message,
        };
        RenderError { template: f.file, message }
    }
}

/// The files one message is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Part {
    EmailSubject,
    EmailText,
    SmsText,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::EmailSubject, Part::EmailText, Part::SmsText];
    pub fn file_name(self) -> &'static str {
        match self {
            Part::EmailSubject => "email.subject.hbs",
            Part::EmailText => "email.txt.hbs",
            Part::SmsText => "sms.txt.hbs",
        }
    }
    pub fn of_channel(channel: Channel) -> &'static [Part] {
        match channel {
            Channel::Email => &[Part::EmailSubject, Part::EmailText],
            Channel::Sms => &[Part::SmsText],
            Channel::Event => &[],
        }
    }
}

pub(crate) const VOICE_SECTIONS: [&str; 4] = ["formal", "warm", "playful", "common"];
pub(crate) const LAYOUT_FILE: &str = "_layout/email.html.hbs";

/// Where a registered template came from, so errors name the file people edit.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub file: String,
    /// The file line of the template's first line (1 for a whole file, the key's line for a
    /// phrase in a TOML file).
    pub first_line: usize,
    pub text: String,
}

/// A phrase from a TOML file: constant text is written as is, anything with `{{` is a template.
#[derive(Debug, Clone)]
pub(crate) enum Phrase {
    Const(String),
    Template(String),
}

/// Phrases by key, then by (language, section) slot.
pub(crate) type PhraseTable = HashMap<String, Vec<Option<Phrase>>>;

pub(crate) fn voice_slot(lang: Lang, section: usize) -> usize {
    lang_index(lang) * VOICE_SECTIONS.len() + section
}

pub(crate) fn reason_slot(lang: Lang, reason: Reason) -> usize {
    lang_index(lang) * Reason::ALL.len() + reason_index(reason)
}

pub(crate) fn lang_index(lang: Lang) -> usize {
    match lang {
        Lang::Nl => 0,
        Lang::En => 1,
    }
}

pub(crate) fn tone_index(tone: Tone) -> usize {
    match tone {
        Tone::Formal => 0,
        Tone::Warm => 1,
        Tone::Playful => 2,
    }
}

fn reason_index(reason: Reason) -> usize {
    Reason::ALL.iter().position(|r| *r == reason).unwrap_or(Reason::ALL.len() - 1)
}

pub struct Templates {
    text: Handlebars<'static>,
    html: Handlebars<'static>,
    parts: HashMap<(Kind, Lang, Part), String>,
    pub(crate) sources: HashMap<String, Source>,
    pub(crate) voice: Arc<PhraseTable>,
    pub(crate) reasons: Arc<PhraseTable>,
    layout_file: String,
    /// The fast path (see `fast.rs`): the parts, phrases and layout it could translate.
    fast_parts: HashMap<(Kind, Lang, Part), fast::Prog>,
    fast_phrases: Vec<Option<fast::Prog>>,
    /// Phrase template name → index in `fast_phrases`.
    fast_phrase_ids: HashMap<String, usize>,
    fast_layout: Option<fast::Prog>,
    /// Renders the fast path left to Handlebars.
    fallbacks: std::sync::atomic::AtomicU64,
    /// The documents these were compiled from (a publish overlays one of them).
    files: TemplateFiles,
}

fn syntax_error(file: &str, first_line: usize, err: &handlebars::TemplateError) -> TemplateError {
    let (line, col) = err.pos().unwrap_or((1, 0));
    TemplateError::Syntax {
        file: file.to_string(),
        line: first_line + line - 1,
        message: format!("{} (column {col})", err.reason()),
    }
}

impl Templates {
    /// Loads and compiles every template and phrase under `dir` (strict mode: a variable that
    /// does not exist is an error at render time, which `belofte check` turns into a report).
    pub fn load(dir: &Path) -> Result<Templates, TemplateError> {
        Templates::compile(TemplateFiles::read(dir)?)
    }

    /// Compiles templates from documents: relative path (`delayed/nl/email.subject.hbs`,
    /// `_voice/nl.toml`, `_layout/email.html.hbs`) → text. Errors name `{label}/{path}`.
    pub fn from_files(label: &str, files: BTreeMap<String, String>) -> Result<Templates, TemplateError> {
        Templates::compile(TemplateFiles::new(label, files))
    }

    /// The documents these templates were compiled from.
    pub fn files(&self) -> &TemplateFiles {
        &self.files
    }

    /// Compiles every template and phrase of `files`; errors name each file as `files` does.
    pub fn compile(files: TemplateFiles) -> Result<Templates, TemplateError> {
        let mut text = Handlebars::new();
        text.set_strict_mode(true);
        text.register_escape_fn(handlebars::no_escape);
        helpers::register_common(&mut text);

        let mut sources = HashMap::new();
        let mut parts = HashMap::new();
        for kind in Kind::CUSTOMER {
            for lang in Lang::ALL {
                for part in Part::ALL {
                    let rel = format!("{}/{}/{}", kind.as_str(), lang.as_str(), part.file_name());
                    let Some(src) = files.get(&rel) else { continue };
                    let file = files.name(&rel);
                    text.register_template_string(&rel, src).map_err(|e| syntax_error(&file, 1, &e))?;
                    sources.insert(rel.clone(), Source { file, first_line: 1, text: src.to_string() });
                    parts.insert((kind, lang, part), rel);
                }
            }
        }

        let mut voice: PhraseTable = HashMap::new();
        let mut reasons: PhraseTable = HashMap::new();
        let voice_slots = Lang::ALL.len() * VOICE_SECTIONS.len();
        let reason_slots = Lang::ALL.len() * Reason::ALL.len();
        for lang in Lang::ALL {
            let rel = format!("_voice/{}.toml", lang.as_str());
            for (section, key, phrase) in load_phrases(&files, &rel, &mut text, &mut sources)? {
                let Some(s) = VOICE_SECTIONS.iter().position(|x| *x == section) else {
                    return Err(TemplateError::Syntax {
                        file: files.name(&rel),
                        line: 1,
                        message: format!("unknown section [{section}]; use [common], [formal], [warm] or [playful]"),
                    });
                };
                voice.entry(key).or_insert_with(|| vec![None; voice_slots])[voice_slot(lang, s)] = Some(phrase);
            }
            let rel = format!("_reasons/{}.toml", lang.as_str());
            for (section, key, phrase) in load_phrases(&files, &rel, &mut text, &mut sources)? {
                let Some(reason) = Reason::ALL.into_iter().find(|r| r.code() == section) else {
                    let codes: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
                    return Err(TemplateError::Syntax {
                        file: files.name(&rel),
                        line: 1,
                        message: format!("unknown reason [{section}]; the codes are {}", codes.join(", ")),
                    });
                };
                reasons.entry(key).or_insert_with(|| vec![None; reason_slots])[reason_slot(lang, reason)] =
                    Some(phrase);
            }
        }
        let voice = Arc::new(voice);
        let reasons = Arc::new(reasons);
        helpers::register_phrases(&mut text, voice.clone(), reasons.clone());

        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        helpers::register_common(&mut html);
        let layout_file = files.name(LAYOUT_FILE);
        match files.get(LAYOUT_FILE) {
            Some(src) => {
                html.register_template_string(LAYOUT_FILE, src).map_err(|e| syntax_error(&layout_file, 1, &e))?;
                sources.insert(LAYOUT_FILE.to_string(), Source { file: layout_file.clone(), first_line: 1, text: src.to_string() });
            }
            None if !parts.is_empty() => {
                return Err(TemplateError::Io(format!("{layout_file}: missing (every email is wrapped in this layout)")));
            }
            None => {}
        }

        // The fast path: every template and phrase translated once, where it can be.
        let mut phrase_names: Vec<&str> = Vec::new();
        for table in [&voice, &reasons] {
            for slots in table.values() {
                for phrase in slots.iter().flatten() {
                    if let Phrase::Template(name) = phrase {
                        phrase_names.push(name);
                    }
                }
            }
        }
        phrase_names.sort_unstable();
        phrase_names.dedup();
        let phrase_ids: HashMap<String, usize> =
            phrase_names.iter().enumerate().map(|(i, n)| ((*n).to_string(), i)).collect();
        let compiler = fast::Compiler::text(&voice, &reasons, &phrase_ids);
        // From the sources Handlebars compiled above (so they are valid Handlebars).
        let compile = |compiler: &fast::Compiler<'_>, name: &str| {
            sources.get(name).and_then(|src: &Source| compiler.compile(&src.text))
        };
        let fast_phrases: Vec<Option<fast::Prog>> = phrase_names.iter().map(|n| compile(&compiler, n)).collect();
        let fast_parts =
            parts.iter().filter_map(|(key, name)| Some((*key, compile(&compiler, name)?))).collect();
        let layout_compiler = fast::Compiler { schema: fast::Schema::Layout, escape: true, ..compiler };
        let fast_layout = compile(&layout_compiler, LAYOUT_FILE);

        Ok(Templates {
            text,
            html,
            parts,
            sources,
            voice,
            reasons,
            layout_file,
            fast_parts,
            fast_phrases,
            fast_phrase_ids: phrase_ids,
            fast_layout,
            fallbacks: std::sync::atomic::AtomicU64::new(0),
            files,
        })
    }

    pub fn has(&self, kind: Kind, channel: Channel, lang: Lang) -> bool {
        let needed = Part::of_channel(channel);
        !needed.is_empty() && needed.iter().all(|p| self.parts.contains_key(&(kind, lang, *p)))
    }

    pub fn render(&self, notice: &Notice, brand: &Brand, channel: Channel) -> Result<Rendered, RenderError> {
        self.render_detailed(notice, brand, channel, true).map_err(RenderError::from)
    }

    /// Subject and text only, without the email's HTML part: `simulate` prints no HTML and
    /// the layout is a third of an email's rendering time.
    pub fn render_text(&self, notice: &Notice, brand: &Brand, channel: Channel) -> Result<Rendered, RenderError> {
        self.render_detailed(notice, brand, channel, false).map_err(RenderError::from)
    }

    /// The registered name (`KIND/LANG/FILE`) of one part, if the folder has it.
    pub(crate) fn part_name(&self, kind: Kind, lang: Lang, part: Part) -> Option<&str> {
        self.parts.get(&(kind, lang, part)).map(String::as_str)
    }

    pub(crate) fn render_detailed(
        &self,
        notice: &Notice,
        brand: &Brand,
        channel: Channel,
        with_html: bool,
    ) -> Result<Rendered, Failure> {
        match self.render_fast(notice, brand, channel, with_html) {
            Some(r) => Ok(r),
            None => {
                self.fallbacks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.render_slow(notice, brand, channel, with_html)
            }
        }
    }

    /// Messages the fast path left to Handlebars since load (`belofte_render_fallbacks_total`):
    /// a template using what the fast path does not compile, or a render that failed.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The slow path alone: Handlebars with a JSON context (the reference the fast path is
    /// tested against).
    #[doc(hidden)]
    pub fn render_reference(
        &self,
        notice: &Notice,
        brand: &Brand,
        channel: Channel,
        with_html: bool,
    ) -> Result<Rendered, RenderError> {
        self.render_slow(notice, brand, channel, with_html).map_err(RenderError::from)
    }

    /// The fast path alone: `None` where it leaves the message to the slow path.
    #[doc(hidden)]
    pub fn render_fast(&self, notice: &Notice, brand: &Brand, channel: Channel, with_html: bool) -> Option<Rendered> {
        let lang = notice.lang;
        let facts = fast::Facts::text(notice, brand);
        let runner = fast::Runner { phrases: &self.fast_phrases };
        let part = |part: Part| -> Option<String> {
            let prog = self.fast_parts.get(&(notice.kind, lang, part))?;
            let mut out = String::with_capacity(1024);
            runner.run(prog, &facts, &mut out).ok()?;
            Some(out)
        };
        match channel {
            Channel::Email => {
                let subject = one_line_owned(words::tidy_owned(part(Part::EmailSubject)?));
                let text = words::tidy_owned(part(Part::EmailText)?);
                let html = if with_html {
                    let body = words::paragraphs_joined(&text);
                    let facts = fast::Facts::layout(notice, brand, &subject, &body);
                    let mut out = String::with_capacity(2048 + body.len());
                    runner.run(self.fast_layout.as_ref()?, &facts, &mut out).ok()?;
                    Some(out)
                } else {
                    None
                };
                Some(Rendered { subject: Some(subject), text, html })
            }
            Channel::Sms => {
                let text = words::to_gsm7_owned(words::tidy_owned(part(Part::SmsText)?));
                Some(Rendered { subject: None, text, html: None })
            }
            Channel::Event => None,
        }
    }

    /// One template source as a message part, through both paths and without the tidying
    /// of a message: `(fast, reference)`, `fast` None where the fast path gives up. The
    /// property test of `tests/render_equivalence.rs` holds the two to the same bytes.
    #[doc(hidden)]
    pub fn render_source(
        &self,
        src: &str,
        notice: &Notice,
        brand: &Brand,
    ) -> (Option<String>, Result<String, RenderError>) {
        let reference = self
            .text
            .render_template_with_context(src, &Context::from(context(notice, brand)))
            .map_err(|e| RenderError { template: "the source".to_string(), message: reason_text(&e) });
        let compiler = fast::Compiler::text(&self.voice, &self.reasons, &self.fast_phrase_ids);
        let fast = compiler.compile(src).and_then(|prog| {
            let mut out = String::new();
            let runner = fast::Runner { phrases: &self.fast_phrases };
            runner.run(&prog, &fast::Facts::text(notice, brand), &mut out).ok()?;
            Some(out)
        });
        (fast, reference)
    }

    fn render_slow(&self, notice: &Notice, brand: &Brand, channel: Channel, with_html: bool) -> Result<Rendered, Failure> {
        let lang = notice.lang;
        let ctx = Context::from(context(notice, brand));
        let part = |part: Part| -> Result<String, Failure> {
            let Some(name) = self.parts.get(&(notice.kind, lang, part)) else {
                return Err(Failure {
                    file: format!("{}/{}/{}", notice.kind.as_str(), lang.as_str(), part.file_name()),
                    line: None,
                    message: format!("no {} template for {} in {}", channel, notice.kind, lang.as_str()),
                });
            };
            self.text.render_with_context(name, &ctx).map_err(|e| self.failure(name, &e))
        };
        match channel {
            Channel::Email => {
                let subject = one_line(&words::tidy(&part(Part::EmailSubject)?));
                let text = words::tidy(&part(Part::EmailText)?);
                let html = if with_html { Some(self.html_part(lang, brand, &subject, &text)?) } else { None };
                Ok(Rendered { subject: Some(subject), text, html })
            }
            Channel::Sms => {
                let text = words::to_gsm7(&words::tidy(&part(Part::SmsText)?));
                Ok(Rendered { subject: None, text, html: None })
            }
            Channel::Event => Err(Failure {
                file: notice.kind.as_str().to_string(),
                line: None,
                message: "events are not rendered into words".to_string(),
            }),
        }
    }

    fn html_part(&self, lang: Lang, brand: &Brand, subject: &str, text: &str) -> Result<String, Failure> {
        let data = json!({
            "lang": lang.as_str(),
            "subject": subject,
            "brand": { "name": brand.display_name, "support_url": brand.support_url,
                       "support_phone": brand.support_phone },
            "body": words::paragraphs(text).join("\n"),
        });
        self.html.render(LAYOUT_FILE, &data).map_err(|e| Failure {
            file: self.layout_file.clone(),
            line: e.line_no,
            message: reason_text(&e),
        })
    }

    /// A handlebars error as file and line people can open; phrases live inside TOML files.
    fn failure(&self, top: &str, e: &handlebars::RenderError) -> Failure {
        let name = e.template_name.as_deref().unwrap_or(top);
        let message = reason_text(e);
        match self.sources.get(name) {
            Some(src) => Failure { file: src.file.clone(), line: e.line_no.map(|l| src.first_line + l - 1), message },
            None => Failure { file: name.to_string(), line: e.line_no, message },
        }
    }
}

fn reason_text(e: &handlebars::RenderError) -> String {
    match e.reason() {
        handlebars::RenderErrorReason::MissingVariable(Some(path)) => {
            format!("unknown variable `{path}` (see templates/README.md for the variables there are)")
        }
        other => other.to_string(),
    }
}

/// The line of `key` inside `[section]` of a TOML file (1 when it cannot be found).
pub(crate) fn toml_key_line(src: &str, section: &str, key: &str) -> usize {
    let mut in_section = false;
    for (i, line) in src.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_section = t.trim_start_matches('[').trim_end_matches(']').trim() == section;
            continue;
        }
        if in_section {
            if let Some((k, _)) = t.split_once('=') {
                if k.trim().trim_matches('"') == key {
                    return i + 1;
                }
            }
        }
    }
    1
}

/// Every `[section] key = "text"` of one phrase file, each compiled as a template.
fn load_phrases(
    files: &TemplateFiles,
    rel: &str,
    registry: &mut Handlebars<'static>,
    sources: &mut HashMap<String, Source>,
) -> Result<Vec<(String, String, Phrase)>, TemplateError> {
    let Some(src) = files.get(rel) else {
        return Ok(Vec::new());
    };
    let file = files.name(rel);
    let table: toml::Table = src.parse().map_err(|e: toml::de::Error| TemplateError::Syntax {
        file: file.clone(),
        line: e.span().map(|s| src[..s.start.min(src.len())].lines().count().max(1)).unwrap_or(1),
        message: e.message().to_string(),
    })?;
    let mut out = Vec::new();
    for (section, values) in table {
        let Some(values) = values.as_table() else {
            return Err(TemplateError::Syntax {
                file,
                line: toml_key_line(&src, "", &section),
                message: format!("`{section}` must be a section like [{section}] with phrases in it"),
            });
        };
        for (key, value) in values {
            let line = toml_key_line(&src, &section, key);
            let Some(phrase) = value.as_str() else {
                return Err(TemplateError::Syntax {
                    file,
                    line,
                    message: format!("[{section}] {key} must be text in quotes"),
                });
            };
            let name = format!("{rel}#{section}.{key}");
            let compiled = if phrase.contains("{{") {
                registry.register_template_string(&name, phrase).map_err(|e| syntax_error(&file, line, &e))?;
                Phrase::Template(name.clone())
            } else {
                Phrase::Const(phrase.to_string())
            };
            sources.insert(name, Source { file: file.clone(), first_line: line, text: phrase.to_string() });
            out.push((section.clone(), key.clone(), compiled));
        }
    }
    Ok(out)
}

fn date_or_null(lang: Lang, brand: &Brand, t: Option<belofte_core::domain::Instant>) -> Value {
    t.map(|t| words::date_words(lang, brand.time_zone, t)).unwrap_or(Value::Null)
}

/// Every fact a template may use. Keys are always present (null when absent), so strict mode
/// only fails on real typos.
pub(crate) fn context(n: &Notice, brand: &Brand) -> Value {
    let lang = n.lang;
    let tone = brand.tone;
    let first = n.items.first();
    let more = n.items.len().saturating_sub(1);
    let voucher = match n.compensation_eur {
        Some(eur) if eur > 0 => {
            let previous = n.previous_compensation_eur.filter(|p| *p > 0 && *p < eur);
            json!({
                "eur": eur,
                "amount": words::euro(lang, eur),
                "raised": previous.is_some(),
                "previous_amount": previous.map(|p| words::euro(lang, p)),
            })
        }
        _ => Value::Null,
    };
    let promise = n.new.or(n.previous).unwrap_or(n.original);
    let mut m = Map::with_capacity(32);
    m.insert("kind".into(), n.kind.as_str().into());
    m.insert("lang".into(), lang.as_str().into());
    m.insert("tone".into(), tone.as_str().into());
    m.insert("formal".into(), (tone == Tone::Formal).into());
    m.insert("warm".into(), (tone == Tone::Warm).into());
    m.insert("playful".into(), (tone == Tone::Playful).into());
    m.insert("order_id".into(), n.order_id.as_str().into());
    m.insert(
        "brand".into(),
        json!({ "id": brand.id, "name": brand.display_name, "support_url": brand.support_url,
                "support_site": support_site(&brand.support_url), "support_phone": brand.support_phone }),
    );
    m.insert(
        "customer".into(),
        json!({ "name": n.customer_name.trim(), "first_name": words::first_name(&n.customer_name) }),
    );
    m.insert(
        "items".into(),
        json!({
            "first": first.map(|i| i.name.as_str()).unwrap_or(""),
            "first_qty": first.map(|i| i.qty).unwrap_or(0),
            "first_many": first.map(|i| i.qty > 1).unwrap_or(false),
            "count": n.items.len(),
            "more": more,
            "more_plural": more > 1,
        }),
    );
    m.insert("promise_label".into(), n.promise_label.clone().into());
    m.insert("carrier".into(), n.carrier.as_deref().map(carrier_name).into());
    m.insert("tracking_number".into(), n.tracking_number.clone().into());
    m.insert("reason".into(), n.reason.map(|r| r.code()).into());
    m.insert("again".into(), n.again.into());
    let original = words::date_words(lang, brand.time_zone, n.original);
    let previous = match n.previous {
        Some(p) if p == n.original => original.clone(),
        p => date_or_null(lang, brand, p),
    };
    let new = date_or_null(lang, brand, n.new);
    // The promise that holds is one of the dates above: reuse it rather than format it again.
    let promise = if Some(promise) == n.new {
        new.clone()
    } else if Some(promise) == n.previous {
        previous.clone()
    } else {
        original.clone()
    };
    m.insert("original".into(), original);
    m.insert("previous".into(), previous);
    m.insert("new".into(), new);
    m.insert("promise".into(), promise);
    m.insert("next_update".into(), date_or_null(lang, brand, n.next_update_at));
    m.insert("next_attempt".into(), date_or_null(lang, brand, n.next_attempt_at));
    m.insert("delivered".into(), date_or_null(lang, brand, n.delivered_at));
    m.insert("voucher".into(), voucher);
    m.insert(
        "pickup".into(),
        n.pickup_point.as_ref().map(|p| json!({ "name": p.name, "address": p.address })).unwrap_or(Value::Null),
    );
    m.insert("failed_attempts".into(), n.failed_attempts.into());
    Value::Object(m)
}

/// The support address without "https://", as an SMS shows it (phones still make it a link).
fn support_site(url: &str) -> &str {
    let bare = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).unwrap_or(url);
    bare.strip_suffix('/').unwrap_or(bare)
}

/// The subject is one line: line breaks become spaces.
fn one_line(s: &str) -> String {
    s.lines().collect::<Vec<_>>().join(" ")
}

/// [`one_line`] without a copy when there is nothing to join.
fn one_line_owned(s: String) -> String {
    if s.contains('\n') {
        one_line(&s)
    } else {
        s
    }
}

/// Carrier ids as customers know the company.
fn carrier_name(id: &str) -> String {
    carrier_name_cow(id).into_owned()
}

fn carrier_name_cow(id: &str) -> Cow<'_, str> {
    const KNOWN: [(&str, &str); 9] = [
        ("postnl", "PostNL"),
        ("dhl", "DHL"),
        ("dpd", "DPD"),
        ("ups", "UPS"),
        ("gls", "GLS"),
        ("bpost", "bpost"),
        ("fedex", "FedEx"),
        ("budbee", "Budbee"),
        ("trunkrs", "Trunkrs"),
    ];
    match KNOWN.iter().find(|(k, _)| id.eq_ignore_ascii_case(k)) {
        Some((_, name)) => Cow::Borrowed(name),
        None => Cow::Borrowed(id),
    }
}
