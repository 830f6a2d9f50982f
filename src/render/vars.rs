//! Every variable a template can use, as one typed, serialisable context: this struct is
//! the list `templates/README.md` documents and `belofte check` renders with. Handlebars
//! reads it through serde; a name not here is an unknown variable (strict mode).

use serde::Serialize;

use belofte_core::domain::{Instant, Lang, Tone};
use belofte_core::notice::Notice;
use belofte_core::policy::Brand;

use super::words;

#[derive(Debug, Clone, Serialize)]
pub struct Vars<'a> {
    /// The message kind (`delayed`, `update`, …).
    pub kind: &'static str,
    /// `nl` or `en`.
    pub lang: &'static str,
    /// The brand's tone (`formal`, `warm`, `playful`), and one flag per tone.
    pub tone: &'static str,
    pub formal: bool,
    pub warm: bool,
    pub playful: bool,
    pub order_id: &'a str,
    pub brand: BrandVars<'a>,
    pub customer: CustomerVars<'a>,
    pub items: ItemVars<'a>,
    /// The shop's own words for the promise ("op de releasedag"), if any.
    pub promise_label: Option<&'a str>,
    /// The carrier as customers know it ("PostNL").
    pub carrier: Option<&'a str>,
    pub tracking_number: Option<&'a str>,
    /// The reason code (`sorting_backlog`, …); the words come from `{{reason "what"}}`.
    pub reason: Option<&'static str>,
    /// The second or later broken promise.
    pub again: bool,
    /// The promise made at checkout, the one held before this message, the new one, and the
    /// one that holds now.
    pub original: DateVars,
    pub previous: Option<DateVars>,
    pub new: Option<DateVars>,
    pub promise: DateVars,
    /// When we report next; the next delivery attempt; when it was delivered.
    pub next_update: Option<DateVars>,
    pub next_attempt: Option<DateVars>,
    pub delivered: Option<DateVars>,
    pub voucher: Option<VoucherVars>,
    pub pickup: Option<PickupVars<'a>>,
    /// Failed deliveries so far.
    pub failed_attempts: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct BrandVars<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub support_url: &'a str,
    /// The support address without "https://", as an SMS shows it.
    pub support_site: &'a str,
    pub support_phone: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CustomerVars<'a> {
    pub name: &'a str,
    pub first_name: &'a str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ItemVars<'a> {
    /// The first item's name, its quantity, and whether that is more than one.
    pub first: &'a str,
    pub first_qty: u32,
    pub first_many: bool,
    pub count: usize,
    /// How many items besides the first, and whether that is more than one.
    pub more: usize,
    pub more_plural: bool,
}

/// One moment as people write it, in the brand's time zone and the customer's language.
#[derive(Debug, Clone, Serialize)]
pub struct DateVars {
    /// "24 november"
    pub day_month: String,
    /// "dinsdag 24 november"
    pub date: String,
    /// "12:00"
    pub time: String,
    /// "dinsdag 24 november om 12:00"
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VoucherVars {
    pub eur: u32,
    /// "€ 5" (nl), "€5" (en).
    pub amount: String,
    /// This message raises an earlier voucher, named in `previous_amount`.
    pub raised: bool,
    pub previous_amount: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PickupVars<'a> {
    pub name: &'a str,
    pub address: &'a str,
}

/// The variables of the HTML layout around an email's text.
#[derive(Debug, Clone, Serialize)]
pub struct LayoutVars<'a> {
    pub lang: &'static str,
    pub subject: &'a str,
    pub brand: LayoutBrandVars<'a>,
    /// The text part as HTML paragraphs (escaped, links made clickable).
    pub body: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayoutBrandVars<'a> {
    pub name: &'a str,
    pub support_url: &'a str,
    pub support_phone: Option<&'a str>,
}

impl DateVars {
    fn new(lang: Lang, brand: &Brand, t: Instant) -> DateVars {
        let d = words::DateText::new(lang, brand.time_zone, t);
        DateVars { day_month: d.day_month().to_string(), date: d.date().to_string(), time: d.time().to_string(), at: d.at().to_string() }
    }
}

impl<'a> Vars<'a> {
    pub fn of(n: &'a Notice, brand: &'a Brand) -> Vars<'a> {
        let lang = n.lang;
        let tone = brand.tone;
        let first = n.items.first();
        let more = n.items.len().saturating_sub(1);
        let date = |t: Option<Instant>| t.map(|t| DateVars::new(lang, brand, t));
        let original = DateVars::new(lang, brand, n.original);
        let previous = match n.previous {
            Some(p) if p == n.original => Some(original.clone()),
            p => date(p),
        };
        let new = date(n.new);
        // The promise that holds is one of the dates above.
        let holds = n.new.or(n.previous).unwrap_or(n.original);
        let promise = if Some(holds) == n.new {
            new.clone()
        } else if Some(holds) == n.previous {
            previous.clone()
        } else {
            None
        }
        .unwrap_or_else(|| original.clone());
        Vars {
            kind: n.kind.as_str(),
            lang: lang.as_str(),
            tone: tone.as_str(),
            formal: tone == Tone::Formal,
            warm: tone == Tone::Warm,
            playful: tone == Tone::Playful,
            order_id: &n.order_id,
            brand: BrandVars {
                id: &brand.id,
                name: &brand.display_name,
                support_url: &brand.support_url,
                support_site: support_site(&brand.support_url),
                support_phone: brand.support_phone.as_deref(),
            },
            customer: CustomerVars { name: n.customer_name.trim(), first_name: words::first_name(&n.customer_name) },
            items: ItemVars {
                first: first.map(|i| i.name.as_str()).unwrap_or(""),
                first_qty: first.map(|i| i.qty).unwrap_or(0),
                first_many: first.is_some_and(|i| i.qty > 1),
                count: n.items.len(),
                more,
                more_plural: more > 1,
            },
            promise_label: n.promise_label.as_deref(),
            carrier: n.carrier.as_deref().map(carrier_name),
            tracking_number: n.tracking_number.as_deref(),
            reason: n.reason.map(|r| r.code()),
            again: n.again,
            original,
            previous,
            new,
            promise,
            next_update: date(n.next_update_at),
            next_attempt: date(n.next_attempt_at),
            delivered: date(n.delivered_at),
            voucher: match n.compensation_eur {
                Some(eur) if eur > 0 => {
                    let previous = n.previous_compensation_eur.filter(|p| *p > 0 && *p < eur);
                    Some(VoucherVars {
                        eur,
                        amount: words::euro(lang, eur),
                        raised: previous.is_some(),
                        previous_amount: previous.map(|p| words::euro(lang, p)),
                    })
                }
                _ => None,
            },
            pickup: n.pickup_point.as_ref().map(|p| PickupVars { name: &p.name, address: &p.address }),
            failed_attempts: n.failed_attempts,
        }
    }
}

/// The support address without "https://", as an SMS shows it (phones still make it a link).
fn support_site(url: &str) -> &str {
    let bare = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).unwrap_or(url);
    bare.strip_suffix('/').unwrap_or(bare)
}

/// Carrier ids as customers know the company.
fn carrier_name(id: &str) -> &str {
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
    KNOWN.iter().find(|(k, _)| id.eq_ignore_ascii_case(k)).map_or(id, |(_, name)| name)
}
