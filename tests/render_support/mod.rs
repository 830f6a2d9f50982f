//! Shared fixtures for the render and check tests: the brands of the default configuration
//! and notices as the engine would hand them over.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use belofte_core::domain::{Channel, Instant, Item, Kind, Lang, PickupPoint, Reason, Tone};
use belofte_core::notice::Notice;
use belofte_core::policy::{Brand, CompensationTier, Policy, ShippingMethod};
use chrono::{DateTime, NaiveTime, Weekday};

pub fn templates_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates")
}

pub fn at(s: &str) -> Instant {
    DateTime::parse_from_rfc3339(s).expect("test instant").to_utc()
}

fn tiers() -> Vec<CompensationTier> {
    vec![
        CompensationTier { min_days: 1, eur: 5 },
        CompensationTier { min_days: 3, eur: 10 },
        CompensationTier { min_days: 7, eur: 20 },
    ]
}

pub fn brand(id: &str) -> Brand {
    let (display_name, tone, compensation, url, phone) = match id {
        "hofman" => ("Hofman Kantoor", Tone::Formal, vec![], "https://www.hofmankantoor.nl/klantenservice", Some("020 123 4567")),
        "pip" => ("Pip Speelgoed", Tone::Playful, tiers(), "https://www.pipspeelgoed.nl/hulp", None),
        _ => ("Lumen", Tone::Warm, tiers(), "https://www.lumen.nl/klantenservice", Some("088 555 1234")),
    };
    Brand {
        id: id.to_string(),
        display_name: display_name.to_string(),
        tone,
        time_zone: chrono_tz::Europe::Amsterdam,
        default_locale: "nl-NL".to_string(),
        email_from: format!("service@{id}.example"),
        sms_from: display_name.chars().filter(|c| c.is_ascii_alphanumeric()).take(11).collect(),
        support_url: url.to_string(),
        support_phone: phone.map(str::to_string),
        compensation,
    }
}

pub fn policy() -> Policy {
    let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).expect("time");
    let mut channels = BTreeMap::new();
    for kind in Kind::CUSTOMER {
        let c = match kind {
            Kind::Delayed | Kind::Backorder | Kind::DeliveryFailed => vec![Channel::Email, Channel::Sms],
            _ => vec![Channel::Email],
        };
        channels.insert(kind, c);
    }
    channels.insert(Kind::Escalation, vec![Channel::Event]);
    channels.insert(Kind::Compensation, vec![Channel::Event]);
    let mut shipping = BTreeMap::new();
    shipping.insert(
        "standard".to_string(),
        ShippingMethod { ship_by_time: t(2, 0), ship_by_days_before: 0, transit_days: 1 },
    );
    let brands = ["lumen", "hofman", "pip"].into_iter().map(|id| (id.to_string(), brand(id))).collect();
    Policy {
        cutoff: t(22, 30),
        promise_time: t(22, 0),
        delivery_days: [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat]
            .into_iter()
            .collect(),
        non_delivery_dates: HashSet::new(),
        coalesce_seconds: 120,
        max_notices_per_day: 3,
        cap_release_time: t(8, 0),
        quiet_from: t(21, 0),
        quiet_until: t(8, 0),
        update_cadence_days: vec![1, 2, 4, 7],
        no_news_escalate_after: 4,
        max_future_skew: chrono::Duration::hours(1),
        next_update_time: t(12, 0),
        followup_after_days: 1,
        followup_time: t(10, 0),
        park_hours: 24,
        channels,
        shipping,
        brands,
    }
}

/// A delayed notice for lumen (warm, nl): a laptop slips from Friday 20 to Tuesday 24 November.
pub fn notice(kind: Kind) -> Notice {
    Notice {
        order_id: "B-1201".to_string(),
        kind,
        brand: "lumen".to_string(),
        locale: "nl-NL".to_string(),
        lang: Lang::Nl,
        customer_name: "Daan Verhoeven".to_string(),
        items: vec![Item { sku: "LAP-NOVA14-16".into(), name: "Lumen Nova 14 laptop".to_string(), qty: 1 }],
        promise_label: None,
        carrier: Some("postnl".to_string()),
        tracking_number: Some("3SABCD1234567".to_string()),
        reason: Some(Reason::SortingBacklog),
        again: false,
        original: at("2026-11-20T22:00:00+01:00"),
        previous: Some(at("2026-11-20T22:00:00+01:00")),
        new: Some(at("2026-11-24T22:00:00+01:00")),
        next_update_at: None,
        compensation_eur: Some(5),
        previous_compensation_eur: None,
        next_attempt_at: None,
        pickup_point: None,
        delivered_at: None,
        failed_attempts: 0,
        decided_at: at("2026-11-19T16:05:00+01:00"),
    }
}

pub fn in_lang(mut n: Notice, lang: Lang) -> Notice {
    n.lang = lang;
    n.locale = match lang {
        Lang::Nl => "nl-NL".to_string(),
        Lang::En => "en-GB".to_string(),
    };
    n
}

pub fn for_brand(mut n: Notice, brand: &str) -> Notice {
    n.brand = brand.to_string();
    n
}

pub fn with_pickup(mut n: Notice) -> Notice {
    n.pickup_point = Some(PickupPoint { name: "Primera Centrum".to_string(), address: "Markt 12, Utrecht".to_string() });
    n
}
