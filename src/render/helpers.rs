//! The handful of helpers templates use. They read the tone, language and reason from the
//! render context, so one template serves every tone.

use std::sync::Arc;

use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, JsonTruthy, Output, RenderContext, RenderError,
    RenderErrorReason, Renderable,
};

use super::{lang_index, words, Phrase, PhraseTable, VOICE_SECTIONS};
use belofte_core::domain::{Lang, Reason, Tone};

fn other(msg: String) -> RenderError {
    RenderErrorReason::Other(msg).into()
}

fn tone_of(ctx: &Context) -> Tone {
    match ctx.data().get("tone").and_then(|v| v.as_str()) {
        Some("formal") => Tone::Formal,
        Some("playful") => Tone::Playful,
        _ => Tone::Warm,
    }
}

fn lang_of(ctx: &Context) -> Lang {
    match ctx.data().get("lang").and_then(|v| v.as_str()) {
        Some("en") => Lang::En,
        _ => Lang::Nl,
    }
}

/// `{{#if}}` / `{{#unless}}` that refuse a variable that does not exist: the built-in ones
/// treat a typo (`{{#if vouchr}}`) as false, which strict mode is meant to catch.
struct StrictIf {
    positive: bool,
}

impl HelperDef for StrictIf {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let name = if self.positive { "if" } else { "unless" };
        let param = h.param(0).ok_or(RenderErrorReason::ParamNotFoundForIndex(name, 0))?;
        if param.is_value_missing() {
            return Err(RenderErrorReason::MissingVariable(param.relative_path().cloned()).into());
        }
        let include_zero = h.hash_get("includeZero").and_then(|v| v.value().as_bool()).unwrap_or(false);
        let value = param.value().is_truthy(include_zero) == self.positive;
        match if value { h.template() } else { h.inverse() } {
            Some(t) => t.render(r, ctx, rc, out),
            None => Ok(()),
        }
    }
}

fn str_param<'a>(h: &'a Helper<'_>, idx: usize, helper: &'static str) -> Result<&'a str, RenderError> {
    let p = h.param(idx).ok_or(RenderErrorReason::ParamNotFoundForIndex(helper, idx))?;
    if p.is_value_missing() {
        return Err(RenderErrorReason::MissingVariable(p.relative_path().cloned()).into());
    }
    p.value().as_str().ok_or_else(|| other(format!("{helper}: parameter {} must be text", idx + 1)))
}

/// `{{t "je" "u"}}`: the informal words for warm and playful, the formal ones for formal;
/// an optional third argument is what playful says instead.
fn tone_words(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    ctx: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let informal = str_param(h, 0, "t")?;
    let formal = str_param(h, 1, "t")?;
    let chosen = match tone_of(ctx) {
        Tone::Formal => formal,
        Tone::Warm => informal,
        Tone::Playful => match h.param(2) {
            Some(_) => str_param(h, 2, "t")?,
            None => informal,
        },
    };
    out.write(chosen)?;
    Ok(())
}

/// `{{trunc items.first 28}}`: at most that many characters, "..." when cut.
fn trunc(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let value = str_param(h, 0, "trunc")?;
    let max = h
        .param(1)
        .and_then(|p| p.value().as_u64())
        .ok_or_else(|| other("trunc: the second parameter must be a number of characters".to_string()))?;
    out.write(&words::truncate(value, max as usize))?;
    Ok(())
}

pub(super) fn register_common(hb: &mut Handlebars<'static>) {
    hb.register_helper("if", Box::new(StrictIf { positive: true }));
    hb.register_helper("unless", Box::new(StrictIf { positive: false }));
    hb.register_helper("t", Box::new(tone_words));
    hb.register_helper("trunc", Box::new(trunc));
}

fn write_phrase<'reg: 'rc, 'rc>(
    phrase: &Phrase,
    r: &'reg Handlebars<'reg>,
    ctx: &'rc Context,
    rc: &mut RenderContext<'reg, 'rc>,
    out: &mut dyn Output,
) -> HelperResult {
    match phrase {
        Phrase::Const(s) => out.write(s)?,
        // Rendered in the caller's render context: a fresh one per phrase costs more than
        // the phrase itself. Errors still carry the phrase's own name and line.
        Phrase::Template(name) => match r.get_template(name) {
            Some(t) => t.render(r, ctx, rc, out)?,
            None => return Err(RenderErrorReason::TemplateNotFound(name.clone()).into()),
        },
    }
    Ok(())
}

/// `{{voice "greeting"}}`: the phrase of the brand's tone, else the `[common]` one.
struct Voice(Arc<PhraseTable>);

impl HelperDef for Voice {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let key = str_param(h, 0, "voice")?;
        let (lang, tone) = (lang_of(ctx), tone_of(ctx));
        let common = VOICE_SECTIONS.len() - 1;
        let phrase = self.0.get(key).and_then(|slots| {
            let base = lang_index(lang) * VOICE_SECTIONS.len();
            slots[base + super::tone_index(tone)].as_ref().or(slots[base + common].as_ref())
        });
        match phrase {
            Some(p) => write_phrase(p, r, ctx, rc, out),
            None => Err(other(format!(
                "no voice phrase \"{key}\" for {} in _voice/{}.toml ([{}] or [common])",
                tone.as_str(),
                lang.as_str(),
                tone.as_str()
            ))),
        }
    }
}

/// `{{reason "what"}}`: the phrase for the notice's reason code; an unknown or missing
/// reason, or one without that phrase, reads as `[other]` so a message is never lost.
struct ReasonWords(Arc<PhraseTable>);

impl HelperDef for ReasonWords {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let key = str_param(h, 0, "reason")?;
        let lang = lang_of(ctx);
        let reason = ctx.data().get("reason").and_then(|v| v.as_str()).map(Reason::from_code).unwrap_or(Reason::Other);
        let phrase = self.0.get(key).and_then(|slots| {
            slots[super::reason_slot(lang, reason)].as_ref().or(slots[super::reason_slot(lang, Reason::Other)].as_ref())
        });
        match phrase {
            Some(p) => write_phrase(p, r, ctx, rc, out),
            None => Err(other(format!(
                "no reason phrase \"{key}\" for {} (nor [other]) in _reasons/{}.toml",
                reason.code(),
                lang.as_str()
            ))),
        }
    }
}

pub(super) fn register_phrases(hb: &mut Handlebars<'static>, voice: Arc<PhraseTable>, reasons: Arc<PhraseTable>) {
    hb.register_helper("voice", Box::new(Voice(voice)));
    hb.register_helper("reason", Box::new(ReasonWords(reasons)));
}
