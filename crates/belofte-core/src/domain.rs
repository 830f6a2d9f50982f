//! The vocabulary shared by the engine, the renderer and the edges.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

pub type Instant = DateTime<Utc>;

/// Why something went wrong, as warehouse and carrier report it. Unknown codes become
/// `Other` instead of rejecting the event: a new code from a carrier must not lose a delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Weather,
    SortingBacklog,
    Capacity,
    VehicleBreakdown,
    AddressIssue,
    Customs,
    Damaged,
    OutOfStock,
    SystemOutage,
    StaffShortage,
    NotHome,
    #[serde(other)]
    Other,
}

impl Reason {
    pub const ALL: [Reason; 12] = [
        Reason::Weather,
        Reason::SortingBacklog,
        Reason::Capacity,
        Reason::VehicleBreakdown,
        Reason::AddressIssue,
        Reason::Customs,
        Reason::Damaged,
        Reason::OutOfStock,
        Reason::SystemOutage,
        Reason::StaffShortage,
        Reason::NotHome,
        Reason::Other,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::Weather => "weather",
            Reason::SortingBacklog => "sorting_backlog",
            Reason::Capacity => "capacity",
            Reason::VehicleBreakdown => "vehicle_breakdown",
            Reason::AddressIssue => "address_issue",
            Reason::Customs => "customs",
            Reason::Damaged => "damaged",
            Reason::OutOfStock => "out_of_stock",
            Reason::SystemOutage => "system_outage",
            Reason::StaffShortage => "staff_shortage",
            Reason::NotHome => "not_home",
            Reason::Other => "other",
        }
    }

    /// Any code string, unknown ones as `Other`.
    pub fn from_code(code: &str) -> Reason {
        Reason::ALL.into_iter().find(|r| r.code() == code).unwrap_or(Reason::Other)
    }
}

/// What a message is about. The first seven go to the customer; the last two are events
/// for people and systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    AtRisk,
    Delayed,
    Backorder,
    DeliveryFailed,
    BackOnTrack,
    Update,
    LateDeliveryFollowup,
    Escalation,
    Compensation,
}

impl Kind {
    pub const CUSTOMER: [Kind; 7] = [
        Kind::AtRisk,
        Kind::Delayed,
        Kind::Backorder,
        Kind::DeliveryFailed,
        Kind::BackOnTrack,
        Kind::Update,
        Kind::LateDeliveryFollowup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AtRisk => "at_risk",
            Kind::Delayed => "delayed",
            Kind::Backorder => "backorder",
            Kind::DeliveryFailed => "delivery_failed",
            Kind::BackOnTrack => "back_on_track",
            Kind::Update => "update",
            Kind::LateDeliveryFollowup => "late_delivery_followup",
            Kind::Escalation => "escalation",
            Kind::Compensation => "compensation",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::CUSTOMER
            .into_iter()
            .chain([Kind::Escalation, Kind::Compensation])
            .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    Event,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Event => "event",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A brand's tone of voice: one setting, chosen by marketing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    /// "u": business customers.
    Formal,
    /// "je", friendly.
    Warm,
    /// "je", lighter still.
    Playful,
}

impl Tone {
    pub const ALL: [Tone; 3] = [Tone::Formal, Tone::Warm, Tone::Playful];
    pub fn as_str(self) -> &'static str {
        match self {
            Tone::Formal => "formal",
            Tone::Warm => "warm",
            Tone::Playful => "playful",
        }
    }
}

/// The languages the templates are written in. A locale picks one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lang {
    Nl,
    En,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::Nl, Lang::En];
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Nl => "nl",
            Lang::En => "en",
        }
    }
    /// The language of a BCP 47 tag (`nl-BE` → nl), if there are templates for it.
    pub fn of_locale(locale: &str) -> Option<Lang> {
        let primary = locale.split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
        match primary.as_str() {
            "nl" => Some(Lang::Nl),
            "en" => Some(Lang::En),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub sku: super::name::Name,
    pub name: String,
    pub qty: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickupPoint {
    pub name: String,
    pub address: String,
}

/// An estimated delivery window as a carrier gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eta {
    pub from: Instant,
    pub to: Instant,
}

/// Why a person must look at an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationWhy {
    RepeatedSlip,
    NoEstimate,
    PermanentDeliveryFailure,
    /// Several promised updates in a row had no news: a person should take it up.
    NoNews,
    /// Every channel of a notice failed: a person should call.
    Unreachable,
}

impl EscalationWhy {
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationWhy::RepeatedSlip => "repeated_slip",
            EscalationWhy::NoEstimate => "no_estimate",
            EscalationWhy::PermanentDeliveryFailure => "permanent_delivery_failure",
            EscalationWhy::NoNews => "no_news",
            EscalationWhy::Unreachable => "unreachable",
        }
    }
}
