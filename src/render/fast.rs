//! The fast path of rendering: the template sources translated once, at load time, into a
//! small program over the notice's facts.
//!
//! The sources are read by our own parser (`super::syntax`), not through Handlebars'
//! internal template tree: it knows the subset translated here and reproduces Handlebars'
//! whitespace rules byte for byte. Handlebars still compiles every template first (it stays
//! the reference renderer and the source of error messages with file and line).
//!
//! What the translation resolves up front, per template: which fact each variable is (no JSON
//! context, no path lookups), the `{{t "je" "u"}}` words of every tone, the `{{voice}}`
//! phrase of every language × tone and the `{{reason}}` phrase of every language × reason.
//! What it does not understand (a helper other than `if`/`unless`/`eq`/`ne`/`t`/`trunc`/
//! `voice`/`reason`, an unknown variable, a partial, anything `syntax` calls unsupported ...)
//! it leaves to Handlebars: the whole template then renders on the slow path, counted by
//! `Templates::fallbacks`. And whenever a render would fail (a variable that is missing at
//! run time, a phrase that does not exist) the fast path gives up and the slow path renders,
//! so errors read, with file and line, exactly as they always did.
//!
//! The two paths must write the same bytes; `tests/render_equivalence.rs` holds them to it,
//! for the shipped templates and for generated ones.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::fmt::Write as _;

use super::syntax::{self, Arg, Call, Element, Literal};
use super::words::{self, DateText};
use super::{lang_index, reason_slot, tone_index, voice_slot, Phrase, PhraseTable, VOICE_SECTIONS};
use belofte_core::domain::{Lang, Reason, Tone};
use belofte_core::notice::Notice;
use belofte_core::policy::Brand;

/// The render gave up: render again on the slow path (which reports the error, if any).
#[derive(Debug)]
pub(crate) struct GiveUp;

type Run<T = ()> = Result<T, GiveUp>;

/// Which context a template is rendered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schema {
    /// The text registry: every fact of `super::context`, no HTML escaping.
    Text,
    /// The HTML layout: `lang`, `subject`, `brand.{name,support_url,support_phone}`, `body`.
    Layout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateOf {
    Original,
    Previous,
    New,
    Promise,
    NextUpdate,
    NextAttempt,
    Delivered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateField {
    DayMonth,
    Date,
    Time,
    At,
}

/// One fact a template may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Kind,
    Lang,
    Tone,
    Formal,
    Warm,
    Playful,
    OrderId,
    Brand,
    BrandId,
    BrandName,
    BrandSupportUrl,
    BrandSupportSite,
    BrandSupportPhone,
    Customer,
    CustomerName,
    CustomerFirstName,
    Items,
    ItemsFirst,
    ItemsFirstQty,
    ItemsFirstMany,
    ItemsCount,
    ItemsMore,
    ItemsMorePlural,
    PromiseLabel,
    Carrier,
    TrackingNumber,
    Reason,
    Again,
    Date(DateOf),
    DateField(DateOf, DateField),
    Voucher,
    VoucherEur,
    VoucherAmount,
    VoucherRaised,
    VoucherPreviousAmount,
    Pickup,
    PickupName,
    PickupAddress,
    FailedAttempts,
    Subject,
    Body,
}

impl Var {
    /// Objects (or null): usable as a condition, never written or compared.
    fn is_object(self) -> bool {
        matches!(self, Var::Brand | Var::Customer | Var::Items | Var::Date(_) | Var::Voucher | Var::Pickup)
    }

    fn resolve(schema: Schema, path: &[&str]) -> Option<Var> {
        match schema {
            Schema::Layout => Some(match path {
                ["lang"] => Var::Lang,
                ["subject"] => Var::Subject,
                ["body"] => Var::Body,
                ["brand"] => Var::Brand,
                ["brand", "name"] => Var::BrandName,
                ["brand", "support_url"] => Var::BrandSupportUrl,
                ["brand", "support_phone"] => Var::BrandSupportPhone,
                _ => return None,
            }),
            Schema::Text => {
                let date = |s: &str| -> Option<DateOf> {
                    Some(match s {
                        "original" => DateOf::Original,
                        "previous" => DateOf::Previous,
                        "new" => DateOf::New,
                        "promise" => DateOf::Promise,
                        "next_update" => DateOf::NextUpdate,
                        "next_attempt" => DateOf::NextAttempt,
                        "delivered" => DateOf::Delivered,
                        _ => return None,
                    })
                };
                Some(match path {
                    ["kind"] => Var::Kind,
                    ["lang"] => Var::Lang,
                    ["tone"] => Var::Tone,
                    ["formal"] => Var::Formal,
                    ["warm"] => Var::Warm,
                    ["playful"] => Var::Playful,
                    ["order_id"] => Var::OrderId,
                    ["brand"] => Var::Brand,
                    ["brand", "id"] => Var::BrandId,
                    ["brand", "name"] => Var::BrandName,
                    ["brand", "support_url"] => Var::BrandSupportUrl,
                    ["brand", "support_site"] => Var::BrandSupportSite,
                    ["brand", "support_phone"] => Var::BrandSupportPhone,
                    ["customer"] => Var::Customer,
                    ["customer", "name"] => Var::CustomerName,
                    ["customer", "first_name"] => Var::CustomerFirstName,
                    ["items"] => Var::Items,
                    ["items", "first"] => Var::ItemsFirst,
                    ["items", "first_qty"] => Var::ItemsFirstQty,
                    ["items", "first_many"] => Var::ItemsFirstMany,
                    ["items", "count"] => Var::ItemsCount,
                    ["items", "more"] => Var::ItemsMore,
                    ["items", "more_plural"] => Var::ItemsMorePlural,
                    ["promise_label"] => Var::PromiseLabel,
                    ["carrier"] => Var::Carrier,
                    ["tracking_number"] => Var::TrackingNumber,
                    ["reason"] => Var::Reason,
                    ["again"] => Var::Again,
                    ["voucher"] => Var::Voucher,
                    ["voucher", "eur"] => Var::VoucherEur,
                    ["voucher", "amount"] => Var::VoucherAmount,
                    ["voucher", "raised"] => Var::VoucherRaised,
                    ["voucher", "previous_amount"] => Var::VoucherPreviousAmount,
                    ["pickup"] => Var::Pickup,
                    ["pickup", "name"] => Var::PickupName,
                    ["pickup", "address"] => Var::PickupAddress,
                    ["failed_attempts"] => Var::FailedAttempts,
                    [d] => Var::Date(date(d)?),
                    [d, f] => Var::DateField(
                        date(d)?,
                        match *f {
                            "day_month" => DateField::DayMonth,
                            "date" => DateField::Date,
                            "time" => DateField::Time,
                            "at" => DateField::At,
                            _ => return None,
                        },
                    ),
                    _ => return None,
                })
            }
        }
    }
}

/// A value as the JSON context would hold it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum V<'a> {
    /// Not in the context (a field of a null object): strict mode fails on it.
    Missing,
    Null,
    Bool(bool),
    Num(u64),
    Str(&'a str),
    Obj,
}

impl V<'_> {
    /// Handlebars' truthiness (objects here are never empty).
    fn truthy(self) -> Run<bool> {
        Ok(match self {
            V::Missing => return Err(GiveUp),
            V::Null => false,
            V::Bool(b) => b,
            V::Num(n) => n != 0,
            V::Str(s) => !s.is_empty(),
            V::Obj => true,
        })
    }
}

/// The facts of one render, computed when first asked for.
pub(crate) struct Facts<'a> {
    n: &'a Notice,
    brand: &'a Brand,
    subject: &'a str,
    body: &'a str,
    carrier: OnceCell<Option<Cow<'a, str>>>,
    amounts: OnceCell<(String, Option<String>)>,
    dates: [OnceCell<Option<DateText>>; 7],
}

impl<'a> Facts<'a> {
    pub(crate) fn text(n: &'a Notice, brand: &'a Brand) -> Facts<'a> {
        Facts::layout(n, brand, "", "")
    }

    pub(crate) fn layout(n: &'a Notice, brand: &'a Brand, subject: &'a str, body: &'a str) -> Facts<'a> {
        Facts {
            n,
            brand,
            subject,
            body,
            carrier: OnceCell::new(),
            amounts: OnceCell::new(),
            dates: Default::default(),
        }
    }

    fn tone(&self) -> Tone {
        self.brand.tone
    }

    fn instant(&self, d: DateOf) -> Option<belofte_core::domain::Instant> {
        let n = self.n;
        match d {
            DateOf::Original => Some(n.original),
            DateOf::Previous => n.previous,
            DateOf::New => n.new,
            DateOf::Promise => Some(n.new.or(n.previous).unwrap_or(n.original)),
            DateOf::NextUpdate => n.next_update_at,
            DateOf::NextAttempt => n.next_attempt_at,
            DateOf::Delivered => n.delivered_at,
        }
    }

    fn date(&self, d: DateOf) -> Option<&DateText> {
        self.dates[d as usize]
            .get_or_init(|| self.instant(d).map(|t| DateText::new(self.n.lang, self.brand.time_zone, t)))
            .as_ref()
    }

    fn voucher(&self) -> Option<(u32, Option<u32>)> {
        match self.n.compensation_eur {
            Some(eur) if eur > 0 => {
                Some((eur, self.n.previous_compensation_eur.filter(|p| *p > 0 && *p < eur)))
            }
            _ => None,
        }
    }

    fn amounts(&self) -> &(String, Option<String>) {
        self.amounts.get_or_init(|| {
            let lang = self.n.lang;
            match self.voucher() {
                Some((eur, previous)) => (words::euro(lang, eur), previous.map(|p| words::euro(lang, p))),
                None => (String::new(), None),
            }
        })
    }

    fn get(&self, var: Var) -> V<'_> {
        let n = self.n;
        let b = self.brand;
        let opt = |s: Option<&'a str>| s.map_or(V::Null, V::Str);
        let first = n.items.first();
        let more = n.items.len().saturating_sub(1);
        match var {
            Var::Kind => V::Str(n.kind.as_str()),
            Var::Lang => V::Str(n.lang.as_str()),
            Var::Tone => V::Str(self.tone().as_str()),
            Var::Formal => V::Bool(self.tone() == Tone::Formal),
            Var::Warm => V::Bool(self.tone() == Tone::Warm),
            Var::Playful => V::Bool(self.tone() == Tone::Playful),
            Var::OrderId => V::Str(&n.order_id),
            Var::Brand | Var::Customer | Var::Items => V::Obj,
            Var::BrandId => V::Str(&b.id),
            Var::BrandName => V::Str(&b.display_name),
            Var::BrandSupportUrl => V::Str(&b.support_url),
            Var::BrandSupportSite => V::Str(super::support_site(&b.support_url)),
            Var::BrandSupportPhone => opt(b.support_phone.as_deref()),
            Var::CustomerName => V::Str(n.customer_name.trim()),
            Var::CustomerFirstName => V::Str(words::first_name(&n.customer_name)),
            Var::ItemsFirst => V::Str(first.map(|i| i.name.as_str()).unwrap_or("")),
            Var::ItemsFirstQty => V::Num(first.map(|i| u64::from(i.qty)).unwrap_or(0)),
            Var::ItemsFirstMany => V::Bool(first.map(|i| i.qty > 1).unwrap_or(false)),
            Var::ItemsCount => V::Num(n.items.len() as u64),
            Var::ItemsMore => V::Num(more as u64),
            Var::ItemsMorePlural => V::Bool(more > 1),
            Var::PromiseLabel => opt(n.promise_label.as_deref()),
            Var::Carrier => match self.carrier.get_or_init(|| n.carrier.as_deref().map(super::carrier_name_cow)) {
                Some(c) => V::Str(c),
                None => V::Null,
            },
            Var::TrackingNumber => opt(n.tracking_number.as_deref()),
            Var::Reason => opt(n.reason.map(|r| r.code())),
            Var::Again => V::Bool(n.again),
            Var::Date(d) => match self.instant(d) {
                Some(_) => V::Obj,
                None => V::Null,
            },
            Var::DateField(d, f) => match self.date(d) {
                Some(t) => V::Str(match f {
                    DateField::DayMonth => t.day_month(),
                    DateField::Date => t.date(),
                    DateField::Time => t.time(),
                    DateField::At => t.at(),
                }),
                None => V::Missing,
            },
            Var::Voucher => match self.voucher() {
                Some(_) => V::Obj,
                None => V::Null,
            },
            Var::VoucherEur | Var::VoucherAmount | Var::VoucherRaised | Var::VoucherPreviousAmount => {
                match self.voucher() {
                    None => V::Missing,
                    Some((eur, previous)) => match var {
                        Var::VoucherEur => V::Num(u64::from(eur)),
                        Var::VoucherRaised => V::Bool(previous.is_some()),
                        Var::VoucherAmount => V::Str(&self.amounts().0),
                        _ => self.amounts().1.as_deref().map_or(V::Null, V::Str),
                    },
                }
            }
            Var::Pickup => match n.pickup_point {
                Some(_) => V::Obj,
                None => V::Null,
            },
            Var::PickupName => n.pickup_point.as_ref().map_or(V::Missing, |p| V::Str(&p.name)),
            Var::PickupAddress => n.pickup_point.as_ref().map_or(V::Missing, |p| V::Str(&p.address)),
            Var::FailedAttempts => V::Num(u64::from(n.failed_attempts)),
            Var::Subject => V::Str(self.subject),
            Var::Body => V::Str(self.body),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Null,
    Bool(bool),
    Num(u64),
    Str(Box<str>),
}

#[derive(Debug, Clone)]
enum Operand {
    Var(Var),
    Lit(Lit),
}

impl Operand {
    fn value<'f>(&'f self, facts: &'f Facts<'_>) -> V<'f> {
        match self {
            Operand::Var(v) => facts.get(*v),
            Operand::Lit(Lit::Null) => V::Null,
            Operand::Lit(Lit::Bool(b)) => V::Bool(*b),
            Operand::Lit(Lit::Num(n)) => V::Num(*n),
            Operand::Lit(Lit::Str(s)) => V::Str(s),
        }
    }
}

#[derive(Debug, Clone)]
enum Cond {
    Truthy(Operand),
    /// `(eq a b)` (`equal`) or `(ne a b)`.
    Eq { a: Operand, b: Operand, equal: bool },
}

/// A phrase a `{{voice}}` or `{{reason}}` resolves to.
#[derive(Debug, Clone)]
enum PhraseRef {
    Const(Box<str>),
    Prog(usize),
}

#[derive(Debug, Clone)]
enum Node {
    Raw(Box<str>),
    Var { var: Var, escape: bool },
    /// `{{t ...}}`: the words per tone index.
    Tone(Box<[Box<str>; 3]>),
    Trunc { value: Operand, max: usize },
    /// `{{voice "key"}}` per `lang_index * 3 + tone_index` (None: no such phrase).
    Voice(Box<[Option<PhraseRef>; 6]>),
    /// `{{reason "key"}}` per `reason_slot(lang, reason)`, `[other]` already filled in.
    Reason(Box<[Option<PhraseRef>]>),
    If { cond: Cond, positive: bool, then: Vec<Node>, otherwise: Vec<Node> },
}

/// One compiled template.
#[derive(Debug, Clone)]
pub(crate) struct Prog(Vec<Node>);

/// The helpers of the registries: a name-only `{{reason}}` calls the helper, not the variable.
const HELPERS: [&str; 21] = [
    "if", "unless", "each", "with", "lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt", "lte", "and", "or", "not",
    "len", "t", "trunc", "voice", "reason",
];

/// Translates template sources (read by `syntax`); `None` for anything it does not know exactly.
pub(crate) struct Compiler<'a> {
    pub schema: Schema,
    /// HTML-escape `{{x}}` (the layout registry does, the text registry does not).
    pub escape: bool,
    pub voice: &'a PhraseTable,
    pub reasons: &'a PhraseTable,
    /// Registered phrase template name → index in the phrase programs.
    pub phrase_ids: &'a HashMap<String, usize>,
}

fn str_lit(a: &Arg) -> Option<&str> {
    match a {
        Arg::Literal(Literal::Str(s)) => Some(s),
        _ => None,
    }
}

impl<'a> Compiler<'a> {
    /// The compiler of the text registry (the layout's sets `schema` and `escape`).
    pub(crate) fn text(
        voice: &'a PhraseTable,
        reasons: &'a PhraseTable,
        phrase_ids: &'a HashMap<String, usize>,
    ) -> Compiler<'a> {
        Compiler { schema: Schema::Text, escape: false, voice, reasons, phrase_ids }
    }

    /// Translates one template source: None where it uses what the fast path does not know.
    pub(crate) fn compile(&self, src: &str) -> Option<Prog> {
        let tree = syntax::parse(src).ok()?;
        self.elements(&tree).map(Prog)
    }

    fn elements(&self, elements: &[Element]) -> Option<Vec<Node>> {
        let mut out: Vec<Node> = Vec::with_capacity(elements.len());
        for e in elements {
            let node = match e {
                Element::Text(s) => Node::Raw(s.as_str().into()),
                Element::Comment => continue,
                Element::Value { path, triple } => self.value(path, self.escape && !triple)?,
                Element::Call(call) => self.call(call)?,
                Element::Block { call, then, otherwise } => self.block(call, then, otherwise)?,
            };
            // Adjacent text (a constant phrase, a tone word) is written in one go.
            match (out.last_mut(), node) {
                (_, Node::Raw(s)) if s.is_empty() => {}
                (Some(Node::Raw(prev)), Node::Raw(s)) => *prev = format!("{prev}{s}").into(),
                (_, node) => out.push(node),
            }
        }
        Some(out)
    }

    fn var(&self, path: &[String]) -> Option<Var> {
        let names: Vec<&str> = path.iter().map(String::as_str).collect();
        Var::resolve(self.schema, &names)
    }

    fn operand(&self, a: &Arg) -> Option<Operand> {
        Some(match a {
            Arg::Path(path) => Operand::Var(self.var(path)?),
            Arg::Literal(l) => Operand::Lit(match l {
                Literal::Null => Lit::Null,
                Literal::Bool(b) => Lit::Bool(*b),
                Literal::Int(n) => Lit::Num(*n),
                Literal::Str(s) => Lit::Str(s.as_str().into()),
            }),
            Arg::Sub(_) => return None,
        })
    }

    /// `{{path}}`: a fact written out (a name-only helper call is left to Handlebars).
    fn value(&self, path: &[String], escape: bool) -> Option<Node> {
        if let [name] = path {
            if HELPERS.contains(&name.as_str()) {
                return None;
            }
        }
        let var = self.var(path)?;
        (!var.is_object()).then_some(Node::Var { var, escape })
    }

    /// `{{helper args}}`: the helpers of the text registry.
    fn call(&self, call: &Call) -> Option<Node> {
        if self.schema != Schema::Text {
            return None;
        }
        match (call.helper.as_str(), call.args.as_slice()) {
            ("t", [informal, formal, rest @ ..]) if rest.len() <= 1 => {
                let informal = str_lit(informal)?;
                let formal = str_lit(formal)?;
                let playful = match rest.first() {
                    Some(p) => str_lit(p)?,
                    None => informal,
                };
                let mut words: [Box<str>; 3] = Default::default();
                words[tone_index(Tone::Formal)] = formal.into();
                words[tone_index(Tone::Warm)] = informal.into();
                words[tone_index(Tone::Playful)] = playful.into();
                Some(Node::Tone(Box::new(words)))
            }
            ("trunc", [value, max]) => {
                let value = self.operand(value)?;
                if matches!(value, Operand::Var(v) if v.is_object()) {
                    return None;
                }
                let Arg::Literal(Literal::Int(max)) = max else { return None };
                Some(Node::Trunc { value, max: usize::try_from(*max).ok()? })
            }
            ("voice", [key]) => {
                let slots = self.voice.get(str_lit(key)?);
                let common = VOICE_SECTIONS.len() - 1;
                let mut out: [Option<PhraseRef>; 6] = Default::default();
                for lang in Lang::ALL {
                    for tone in Tone::ALL {
                        let phrase = slots.and_then(|s| {
                            s[voice_slot(lang, tone_index(tone))].as_ref().or(s[voice_slot(lang, common)].as_ref())
                        });
                        out[lang_index(lang) * 3 + tone_index(tone)] = phrase.and_then(|p| self.phrase(p));
                    }
                }
                Some(Node::Voice(Box::new(out)))
            }
            ("reason", [key]) => {
                let slots = self.reasons.get(str_lit(key)?);
                let mut out: Vec<Option<PhraseRef>> = vec![None; Lang::ALL.len() * Reason::ALL.len()];
                for lang in Lang::ALL {
                    for reason in Reason::ALL {
                        let phrase = slots.and_then(|s| {
                            s[reason_slot(lang, reason)].as_ref().or(s[reason_slot(lang, Reason::Other)].as_ref())
                        });
                        out[reason_slot(lang, reason)] = phrase.and_then(|p| self.phrase(p));
                    }
                }
                Some(Node::Reason(out.into_boxed_slice()))
            }
            _ => None,
        }
    }

    fn phrase(&self, p: &Phrase) -> Option<PhraseRef> {
        match p {
            Phrase::Const(s) => Some(PhraseRef::Const(s.as_str().into())),
            Phrase::Template(name) => self.phrase_ids.get(name).map(|i| PhraseRef::Prog(*i)),
        }
    }

    /// `{{#if}}` / `{{#unless}}` on one fact, `(eq a b)` or `(ne a b)`.
    fn block(&self, call: &Call, then: &[Element], otherwise: &[Element]) -> Option<Node> {
        let positive = match call.helper.as_str() {
            "if" => true,
            "unless" => false,
            _ => return None,
        };
        let [arg] = call.args.as_slice() else { return None };
        let cond = match arg {
            Arg::Sub(sub) => {
                let equal = match sub.helper.as_str() {
                    "eq" => true,
                    "ne" => false,
                    _ => return None,
                };
                let [a, b] = sub.args.as_slice() else { return None };
                let (a, b) = (self.operand(a)?, self.operand(b)?);
                if [&a, &b].iter().any(|o| matches!(o, Operand::Var(v) if v.is_object())) {
                    return None;
                }
                Cond::Eq { a, b, equal }
            }
            a => Cond::Truthy(self.operand(a)?),
        };
        Some(Node::If { cond, positive, then: self.elements(then)?, otherwise: self.elements(otherwise)? })
    }
}

/// Everything a render runs with.
pub(crate) struct Runner<'a> {
    pub phrases: &'a [Option<Prog>],
}

impl Runner<'_> {
    pub(crate) fn run(&self, prog: &Prog, facts: &Facts<'_>, out: &mut String) -> Run {
        self.nodes(&prog.0, facts, out, 0)
    }

    fn nodes(&self, nodes: &[Node], facts: &Facts<'_>, out: &mut String, depth: usize) -> Run {
        for node in nodes {
            match node {
                Node::Raw(s) => out.push_str(s),
                Node::Var { var, escape } => match facts.get(*var) {
                    V::Missing | V::Obj => return Err(GiveUp),
                    V::Null => {}
                    V::Bool(b) => out.push_str(if b { "true" } else { "false" }),
                    V::Num(n) => {
                        let _ = write!(out, "{n}");
                    }
                    V::Str(s) if *escape => escape_html(s, out),
                    V::Str(s) => out.push_str(s),
                },
                Node::Tone(words) => out.push_str(&words[tone_index(facts.tone())]),
                Node::Trunc { value, max } => match value.value(facts) {
                    V::Str(s) => out.push_str(&words::truncate(s, *max)),
                    _ => return Err(GiveUp),
                },
                Node::Voice(slots) => {
                    let i = lang_index(facts.n.lang) * 3 + tone_index(facts.tone());
                    self.phrase(slots[i].as_ref(), facts, out, depth)?;
                }
                Node::Reason(slots) => {
                    let reason = facts.n.reason.map(|r| Reason::from_code(r.code())).unwrap_or(Reason::Other);
                    let slot = slots.get(reason_slot(facts.n.lang, reason)).and_then(Option::as_ref);
                    self.phrase(slot, facts, out, depth)?;
                }
                Node::If { cond, positive, then, otherwise } => {
                    let holds = match cond {
                        Cond::Truthy(o) => o.value(facts).truthy()?,
                        Cond::Eq { a, b, equal } => {
                            let (a, b) = (a.value(facts), b.value(facts));
                            if matches!(a, V::Missing | V::Obj) || matches!(b, V::Missing | V::Obj) {
                                return Err(GiveUp);
                            }
                            (a == b) == *equal
                        }
                    };
                    let branch = if holds == *positive { then } else { otherwise };
                    self.nodes(branch, facts, out, depth)?;
                }
            }
        }
        Ok(())
    }

    fn phrase(&self, p: Option<&PhraseRef>, facts: &Facts<'_>, out: &mut String, depth: usize) -> Run {
        match p {
            Some(PhraseRef::Const(s)) => out.push_str(s),
            Some(PhraseRef::Prog(i)) if depth < 16 => match self.phrases.get(*i) {
                Some(Some(prog)) => self.nodes(&prog.0, facts, out, depth + 1)?,
                _ => return Err(GiveUp),
            },
            _ => return Err(GiveUp),
        }
        Ok(())
    }
}

/// Handlebars' default HTML escape (the layout registry uses it).
fn escape_html(s: &str, out: &mut String) {
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        let entity = match b {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'&' => "&amp;",
            b'\'' => "&#x27;",
            b'`' => "&#x60;",
            b'=' => "&#x3D;",
            _ => continue,
        };
        out.push_str(&s[from..i]);
        out.push_str(entity);
        from = i + 1;
    }
    out.push_str(&s[from..]);
}
