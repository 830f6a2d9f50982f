//! Decoding CloudEvents 1.0 (structured JSON) into facts the engine can trust. Every
//! rejection names the field that is wrong.

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::domain::{Channel, Eta, Instant, Item, PickupPoint, Reason};
use super::name::Name;

/// One accepted event: who said it, when it happened, and what. Serialisable so that the
/// daemon can keep parked events.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub id: Name,
    pub source: Name,
    pub time: Instant,
    pub fact: Fact,
}

impl Event {
    pub fn type_name(&self) -> &'static str {
        self.fact.type_name()
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Fact {
    OrderPlaced(Box<OrderPlaced>),
    OrderCancelled { order_id: Name, reason: Option<String> },
    Picked { order_id: Name },
    Packed { order_id: Name },
    Shipped { order_id: Name, carrier: Name, tracking_number: Name, eta: Option<Eta> },
    WarehouseDelayed { order_id: Name, reason: Reason, expected_ship_at: Option<Instant> },
    Backorder { order_id: Name, sku: String, expected_restock_at: Option<Instant> },
    WarehouseIncident { warehouse: Name, reason: Reason, expected_recovery_at: Option<Instant> },
    InTransit { tracking_number: Name, eta: Option<Eta> },
    EtaUpdated { tracking_number: Name, eta: Eta, reason: Option<Reason> },
    Exception { tracking_number: Name, reason: Reason, eta: Option<Eta> },
    OutForDelivery { tracking_number: Name, eta: Option<Eta> },
    DeliveryFailed {
        tracking_number: Name,
        reason: Reason,
        next_attempt_at: Option<Instant>,
        pickup_point: Option<PickupPoint>,
    },
    Delivered { tracking_number: Name },
    CarrierIncident { carrier: Name, reason: Reason, expected_delay_minutes: i64, postal_code_prefixes: Vec<Name> },
}

/// Where an event belongs: one order, one parcel, or every order an incident covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Order(&'a str),
    Tracking(&'a str),
    Broadcast,
}

impl Fact {
    pub fn type_name(&self) -> &'static str {
        match self {
            Fact::OrderPlaced(_) => "order.placed",
            Fact::OrderCancelled { .. } => "order.cancelled",
            Fact::Picked { .. } => "warehouse.picked",
            Fact::Packed { .. } => "warehouse.packed",
            Fact::Shipped { .. } => "warehouse.shipped",
            Fact::WarehouseDelayed { .. } => "warehouse.delayed",
            Fact::Backorder { .. } => "warehouse.backorder",
            Fact::WarehouseIncident { .. } => "warehouse.incident",
            Fact::InTransit { .. } => "carrier.in_transit",
            Fact::EtaUpdated { .. } => "carrier.eta_updated",
            Fact::Exception { .. } => "carrier.exception",
            Fact::OutForDelivery { .. } => "carrier.out_for_delivery",
            Fact::DeliveryFailed { .. } => "carrier.delivery_failed",
            Fact::Delivered { .. } => "carrier.delivered",
            Fact::CarrierIncident { .. } => "carrier.incident",
        }
    }

    pub fn route(&self) -> Route<'_> {
        match self {
            Fact::OrderPlaced(o) => Route::Order(&o.order_id),
            Fact::OrderCancelled { order_id, .. }
            | Fact::Picked { order_id }
            | Fact::Packed { order_id }
            | Fact::Shipped { order_id, .. }
            | Fact::WarehouseDelayed { order_id, .. }
            | Fact::Backorder { order_id, .. } => Route::Order(order_id),
            Fact::InTransit { tracking_number, .. }
            | Fact::EtaUpdated { tracking_number, .. }
            | Fact::Exception { tracking_number, .. }
            | Fact::OutForDelivery { tracking_number, .. }
            | Fact::DeliveryFailed { tracking_number, .. }
            | Fact::Delivered { tracking_number } => Route::Tracking(tracking_number),
            Fact::WarehouseIncident { .. } | Fact::CarrierIncident { .. } => Route::Broadcast,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OrderPlaced {
    pub order_id: Name,
    pub brand: Name,
    pub placed_at: Instant,
    pub customer: Customer,
    pub shipping: Shipping,
    pub warehouse: Name,
    pub items: Vec<Item>,
    pub deliver_by: Option<Instant>,
    pub promise_label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Customer {
    pub name: String,
    // `Name`: most addresses and numbers fit inline, one allocation less per order each.
    pub email: Option<Name>,
    pub phone: Option<Name>,
    pub locale: Name,
    /// Consent: the channels the customer agreed to, in the order given, without repeats.
    pub channels: Vec<Channel>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Shipping {
    pub method: Name,
    pub carrier: Name,
    pub country: Name,
    pub postal_code: Name,
}

/// Why an event was refused. `Display` is the reason an operator reads in the log, the
/// dead-letter header and simulate's stderr.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("field `{field}`: {message}")]
    Field { field: String, message: String },
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    /// A producer's clock ahead of ours: refused, so it cannot freeze the order.
    #[error("field `time`: {time} is {ahead_minutes} minutes ahead of its arrival at {arrived} (max_future_skew is {max_minutes} minutes)")]
    FromTheFuture { time: String, arrived: String, ahead_minutes: i64, max_minutes: i64 },
}

fn field(field: impl Into<String>, message: impl Into<String>) -> Rejection {
    Rejection::Field { field: field.into(), message: message.into() }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    specversion: Option<&'a str>,
    id: Option<String>,
    source: Option<String>,
    #[serde(rename = "type")]
    kind: Option<&'a str>,
    time: Option<&'a str>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// RFC 3339 with an explicit offset (`Z` or `+01:00`), nothing looser.
pub fn parse_time(s: &str) -> Option<Instant> {
    let bytes = s.as_bytes();
    // chrono also accepts a space or lower-case `t` as separator; the contract says `T`.
    if bytes.len() < 20 || bytes[10] != b'T' {
        return None;
    }
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

pub fn decode(raw: &[u8]) -> Result<Event, Rejection> {
    // One pass for the valid majority; anything odd takes the careful path, which names
    // the field that is wrong.
    if let Ok(event) = decode_fast(raw) {
        return Ok(event);
    }
    decode_careful(raw)
}

fn decode_careful(raw: &[u8]) -> Result<Event, Rejection> {
    let env: Envelope<'_> = serde_json::from_slice(raw).map_err(|e| {
        if e.is_data() {
            field("(envelope)", e.to_string())
        } else {
            Rejection::NotJson(e.to_string())
        }
    })?;
    match env.specversion {
        Some("1.0") => {}
        Some(other) => return Err(field("specversion", format!("must be \"1.0\", got {other:?}"))),
        None => return Err(field("specversion", "missing")),
    }
    let id = non_empty("id", env.id)?;
    let source = non_empty("source", env.source)?;
    let kind = env.kind.filter(|k| !k.is_empty()).ok_or_else(|| field("type", "missing"))?;
    let time = env.time.ok_or_else(|| field("time", "missing"))?;
    let time = parse_time(time).ok_or_else(|| field("time", format!("{time:?} is not RFC 3339 with an offset")))?;
    let data = env.data.ok_or_else(|| field("data", "missing"))?;
    let fact = decode_data(kind, data.get())?;
    Ok(Event { id: id.into(), source: source.into(), time, fact })
}

fn non_empty(name: &str, value: Option<String>) -> Result<String, Rejection> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        Some(_) => Err(field(name, "is empty")),
        None => Err(field(name, "missing")),
    }
}

/// Where typed `data` comes from: a JSON text (parsed with the field path for errors) or a
/// deserializer already positioned on the value (the one-pass path).
trait Source<'de> {
    fn parse<T: Deserialize<'de>>(self) -> Result<T, Rejection>;
}

impl<'de> Source<'de> for &'de str {
    fn parse<T: Deserialize<'de>>(self) -> Result<T, Rejection> {
        data(self)
    }
}

struct Positioned<D>(D);

impl<'de, D: Deserializer<'de>> Source<'de> for Positioned<D> {
    fn parse<T: Deserialize<'de>>(self) -> Result<T, Rejection> {
        T::deserialize(self.0).map_err(|e| field("data", e.to_string()))
    }
}

const KNOWN_TYPES: [&str; 15] = [
    "order.placed",
    "order.cancelled",
    "warehouse.picked",
    "warehouse.packed",
    "warehouse.shipped",
    "warehouse.delayed",
    "warehouse.backorder",
    "warehouse.incident",
    "carrier.in_transit",
    "carrier.out_for_delivery",
    "carrier.eta_updated",
    "carrier.exception",
    "carrier.delivery_failed",
    "carrier.delivered",
    "carrier.incident",
];

/// Decodes `data` straight into a fact once `type` is known.
struct FactSeed<'k>(&'k str);

impl<'de> de::DeserializeSeed<'de> for FactSeed<'_> {
    type Value = Fact;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Fact, D::Error> {
        decode_data(self.0, Positioned(d)).map_err(|r| de::Error::custom(r.to_string()))
    }
}

#[derive(Default)]
struct FastEnvelope {
    specversion_ok: bool,
    id: Option<Name>,
    source: Option<Name>,
    kind: Option<&'static str>,
    time: Option<Instant>,
    fact: Option<Fact>,
}

struct FastVisitor;

impl<'de> de::Visitor<'de> for FastVisitor {
    type Value = FastEnvelope;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a CloudEvent object")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<FastEnvelope, A::Error> {
        let mut env = FastEnvelope::default();
        #[derive(Clone, Copy)]
        enum Key {
            Specversion,
            Id,
            Source,
            Type,
            Time,
            Data,
            Other,
        }
        let key_of = |k: &str| {
            Ok(match k {
                "specversion" => Key::Specversion,
                "id" => Key::Id,
                "source" => Key::Source,
                "type" => Key::Type,
                "time" => Key::Time,
                "data" => Key::Data,
                _ => Key::Other,
            })
        };
        while let Some(key) = map.next_key_seed(with_str(key_of))? {
            match key {
                Key::Specversion => env.specversion_ok = map.next_value_seed(with_str(|v| Ok(v == "1.0")))?,
                Key::Id => env.id = Some(map.next_value()?),
                Key::Source => env.source = Some(map.next_value()?),
                // An unknown type fails here; the careful path says why.
                Key::Type => env.kind = Some(map.next_value_seed(with_str(known_type))?),
                Key::Time => env.time = Some(map.next_value::<Time>()?.0),
                Key::Data => match env.kind {
                    Some(kind) => env.fact = Some(map.next_value_seed(FactSeed(kind))?),
                    // `data` before `type`: the careful path handles that order.
                    None => return Err(de::Error::custom("data before type")),
                },
                Key::Other => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(env)
    }
}

fn decode_fast(raw: &[u8]) -> Result<Event, ()> {
    // One UTF-8 check of the whole line (ASCII fast path) instead of one per string.
    let text = std::str::from_utf8(raw).map_err(|_| ())?;
    let mut de = serde_json::Deserializer::from_str(text);
    let env = de::Deserializer::deserialize_map(&mut de, FastVisitor).map_err(|_| ())?;
    de.end().map_err(|_| ())?;
    match env {
        FastEnvelope { specversion_ok: true, id: Some(id), source: Some(source), kind: Some(_), time: Some(time), fact: Some(fact) }
            if !id.trim().is_empty() && !source.trim().is_empty() =>
        {
            Ok(Event { id, source, time, fact })
        }
        _ => Err(()),
    }
}

fn data<'de, T: Deserialize<'de>>(json: &'de str) -> Result<T, Rejection> {
    // The fast path for the valid majority; the path-tracking parse only runs to explain
    // a failure.
    if let Ok(value) = serde_json::from_str(json) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde_json appends "at line 1 column N": the position inside `data` helps nobody.
        let message = inner.split(" at line ").next().unwrap_or(&inner).to_string();
        let name = if path == "." { "data".to_string() } else { format!("data.{path}") };
        field(name, message)
    })
}

fn decode_data<'de, S: Source<'de>>(kind: &str, src: S) -> Result<Fact, Rejection> {
    let fact = match kind {
        "order.placed" => {
            let d: PlacedData = src.parse()?;
            Fact::OrderPlaced(Box::new(d.into_domain()?))
        }
        "order.cancelled" => {
            let d: CancelledData = src.parse()?;
            Fact::OrderCancelled { order_id: id_field("data.order_id", d.order_id)?, reason: d.reason }
        }
        "warehouse.picked" => Fact::Picked { order_id: { let d: OrderOnly = src.parse()?; id_field("data.order_id", d.order_id)? } },
        "warehouse.packed" => Fact::Packed { order_id: { let d: OrderOnly = src.parse()?; id_field("data.order_id", d.order_id)? } },
        "warehouse.shipped" => {
            let d: ShippedData = src.parse()?;
            Fact::Shipped {
                order_id: id_field("data.order_id", d.order_id)?,
                carrier: id_field("data.carrier", d.carrier)?,
                tracking_number: id_field("data.tracking_number", d.tracking_number)?,
                eta: eta_opt(d.eta)?,
            }
        }
        "warehouse.delayed" => {
            let d: DelayedData = src.parse()?;
            Fact::WarehouseDelayed {
                order_id: id_field("data.order_id", d.order_id)?,
                reason: d.reason,
                expected_ship_at: d.expected_ship_at.map(|t| t.0),
            }
        }
        "warehouse.backorder" => {
            let d: BackorderData = src.parse()?;
            Fact::Backorder {
                order_id: id_field("data.order_id", d.order_id)?,
                sku: d.sku,
                expected_restock_at: d.expected_restock_at.map(|t| t.0),
            }
        }
        "warehouse.incident" => {
            let d: WarehouseIncidentData = src.parse()?;
            Fact::WarehouseIncident {
                warehouse: id_field("data.warehouse", d.warehouse)?,
                reason: d.reason,
                expected_recovery_at: d.expected_recovery_at.map(|t| t.0),
            }
        }
        "carrier.in_transit" => {
            let d: TrackingEtaData = src.parse()?;
            Fact::InTransit { tracking_number: id_field("data.tracking_number", d.tracking_number)?, eta: eta_opt(d.eta)? }
        }
        "carrier.out_for_delivery" => {
            let d: TrackingEtaData = src.parse()?;
            Fact::OutForDelivery {
                tracking_number: id_field("data.tracking_number", d.tracking_number)?,
                eta: eta_opt(d.eta)?,
            }
        }
        "carrier.eta_updated" => {
            let d: EtaUpdatedData = src.parse()?;
            Fact::EtaUpdated {
                tracking_number: id_field("data.tracking_number", d.tracking_number)?,
                eta: eta_checked(d.eta)?,
                reason: d.reason,
            }
        }
        "carrier.exception" => {
            let d: ExceptionData = src.parse()?;
            Fact::Exception {
                tracking_number: id_field("data.tracking_number", d.tracking_number)?,
                reason: d.reason,
                eta: eta_opt(d.eta)?,
            }
        }
        "carrier.delivery_failed" => {
            let d: FailedData = src.parse()?;
            Fact::DeliveryFailed {
                tracking_number: id_field("data.tracking_number", d.tracking_number)?,
                reason: d.reason,
                next_attempt_at: d.next_attempt_at.map(|t| t.0),
                pickup_point: d.pickup_point,
            }
        }
        "carrier.delivered" => {
            let d: TrackingData = src.parse()?;
            Fact::Delivered { tracking_number: id_field("data.tracking_number", d.tracking_number)? }
        }
        "carrier.incident" => {
            let d: CarrierIncidentData = src.parse()?;
            if !d.expected_delay_hours.is_finite() || d.expected_delay_hours < 0.0 || d.expected_delay_hours > 24.0 * 365.0 {
                return Err(field("data.expected_delay_hours", "must be a number of hours between 0 and 8760"));
            }
            Fact::CarrierIncident {
                carrier: id_field("data.carrier", d.carrier)?,
                reason: d.reason,
                expected_delay_minutes: (d.expected_delay_hours * 60.0).round() as i64,
                postal_code_prefixes: d
                    .postal_code_prefixes
                    .unwrap_or_default()
                    .iter()
                    .map(|p| Name::from(normalise_postal_code(p)))
                    .filter(|p| !p.is_empty())
                    .collect(),
            }
        }
        other => return Err(Rejection::UnknownType(other.to_string())),
    };
    Ok(fact)
}

/// Postal codes compare without spaces and case: "1012 ab" and "1012AB" are one code.
pub fn normalise_postal_code(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_uppercase).collect()
}

fn id_field(name: &str, value: Name) -> Result<Name, Rejection> {
    if value.trim().is_empty() {
        Err(field(name, "is empty"))
    } else {
        Ok(value)
    }
}

fn eta_checked(eta: EtaData) -> Result<Eta, Rejection> {
    if eta.from.0 > eta.to.0 {
        return Err(field("data.eta", "`from` is after `to`"));
    }
    Ok(Eta { from: eta.from.0, to: eta.to.0 })
}

fn eta_opt(eta: Option<EtaData>) -> Result<Option<Eta>, Rejection> {
    eta.map(eta_checked).transpose()
}

/// An RFC 3339 timestamp field with the strict parser above.
#[derive(Debug, Clone, Copy)]
struct Time(Instant);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(with_str(|s| parse_time(s).map(Time).ok_or_else(|| format!("{s:?} is not RFC 3339 with an offset"))))
    }
}

/// A reason code, read without allocating.
struct ReasonCode(Reason);

impl<'de> Deserialize<'de> for ReasonCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(with_str(|s| Ok(ReasonCode(Reason::from_code(s)))))
    }
}

fn reason_code<'de, D: Deserializer<'de>>(d: D) -> Result<Reason, D::Error> {
    Ok(ReasonCode::deserialize(d)?.0)
}

fn reason_code_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Reason>, D::Error> {
    Ok(Option::<ReasonCode>::deserialize(d)?.map(|r| r.0))
}

/// Hands a string to a function without allocating it: serde's `Cow<str>` always makes an
/// owned copy, which was a tenth of decoding (keys, times, codes of every event).
struct WithStr<F>(F);

fn with_str<T, F: FnOnce(&str) -> Result<T, String>>(f: F) -> WithStr<F> {
    WithStr(f)
}

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> de::Visitor<'de> for WithStr<F> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }
}

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> de::DeserializeSeed<'de> for WithStr<F> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_str(self)
    }
}

fn known_type(kind: &str) -> Result<&'static str, String> {
    KNOWN_TYPES.iter().copied().find(|k| *k == kind).ok_or_else(|| format!("unknown type {kind:?}"))
}

#[derive(Deserialize)]
struct OrderOnly {
    order_id: Name,
}

#[derive(Deserialize)]
struct CancelledData {
    order_id: Name,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct EtaData {
    from: Time,
    to: Time,
}

#[derive(Deserialize)]
struct ShippedData {
    order_id: Name,
    carrier: Name,
    tracking_number: Name,
    #[serde(default)]
    eta: Option<EtaData>,
}

#[derive(Deserialize)]
struct DelayedData {
    order_id: Name,
    #[serde(deserialize_with = "reason_code")]
    reason: Reason,
    #[serde(default)]
    expected_ship_at: Option<Time>,
}

#[derive(Deserialize)]
struct BackorderData {
    order_id: Name,
    sku: String,
    #[serde(default)]
    expected_restock_at: Option<Time>,
}

#[derive(Deserialize)]
struct WarehouseIncidentData {
    warehouse: Name,
    #[serde(deserialize_with = "reason_code")]
    reason: Reason,
    #[serde(default)]
    expected_recovery_at: Option<Time>,
}

#[derive(Deserialize)]
struct TrackingData {
    tracking_number: Name,
}

#[derive(Deserialize)]
struct TrackingEtaData {
    tracking_number: Name,
    #[serde(default)]
    eta: Option<EtaData>,
}

#[derive(Deserialize)]
struct EtaUpdatedData {
    tracking_number: Name,
    eta: EtaData,
    #[serde(default, deserialize_with = "reason_code_opt")]
    reason: Option<Reason>,
}

#[derive(Deserialize)]
struct ExceptionData {
    tracking_number: Name,
    #[serde(deserialize_with = "reason_code")]
    reason: Reason,
    #[serde(default)]
    eta: Option<EtaData>,
}

#[derive(Deserialize)]
struct FailedData {
    tracking_number: Name,
    #[serde(deserialize_with = "reason_code")]
    reason: Reason,
    #[serde(default)]
    next_attempt_at: Option<Time>,
    #[serde(default)]
    pickup_point: Option<PickupPoint>,
}

#[derive(Deserialize)]
struct CarrierIncidentData {
    carrier: Name,
    #[serde(deserialize_with = "reason_code")]
    reason: Reason,
    expected_delay_hours: f64,
    #[serde(default)]
    postal_code_prefixes: Option<Vec<Name>>,
}

#[derive(Deserialize)]
struct CustomerData {
    name: String,
    #[serde(default)]
    email: Option<Name>,
    #[serde(default)]
    phone: Option<Name>,
    locale: Name,
    channels: Vec<Name>,
}

#[derive(Deserialize)]
struct PromiseData {
    deliver_by: Time,
    #[serde(default)]
    label: Option<String>,
}

#[derive(Deserialize)]
struct PlacedData {
    order_id: Name,
    brand: Name,
    placed_at: Time,
    customer: CustomerData,
    shipping: Shipping,
    warehouse: Name,
    items: Vec<Item>,
    #[serde(default)]
    promise: Option<PromiseData>,
}

impl PlacedData {
    fn into_domain(self) -> Result<OrderPlaced, Rejection> {
        let mut channels = Vec::with_capacity(2);
        for (i, c) in self.customer.channels.iter().enumerate() {
            let channel = match c.as_str() {
                "email" => Channel::Email,
                "sms" => Channel::Sms,
                other => {
                    return Err(field(
                        format!("data.customer.channels[{i}]"),
                        format!("unknown channel {other:?} (expected \"email\" or \"sms\")"),
                    ))
                }
            };
            if !channels.contains(&channel) {
                channels.push(channel);
            }
        }
        if self.customer.locale.trim().is_empty() {
            return Err(field("data.customer.locale", "is empty"));
        }
        let blank = |s: Option<Name>| s.filter(|v| !v.trim().is_empty());
        Ok(OrderPlaced {
            order_id: id_field("data.order_id", self.order_id)?,
            brand: id_field("data.brand", self.brand)?,
            placed_at: self.placed_at.0,
            customer: Customer {
                name: self.customer.name,
                email: blank(self.customer.email),
                phone: blank(self.customer.phone),
                locale: self.customer.locale,
                channels,
            },
            shipping: self.shipping,
            warehouse: self.warehouse,
            items: self.items,
            deliver_by: self.promise.as_ref().map(|p| p.deliver_by.0),
            promise_label: self.promise.and_then(|p| p.label),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: &str, data: &str) -> String {
        format!(
            r#"{{"specversion":"1.0","id":"x-1","source":"/t","type":"{kind}","time":"2026-11-02T21:04:00+01:00","data":{data}}}"#
        )
    }

    #[test]
    fn rejections_name_the_field() {
        let cases = [
            ("not json at all".to_string(), "not JSON"),
            (line("warehouse.picked", "{}"), "order_id"),
            (line("warehouse.shipped", r#"{"order_id":"B-1","carrier":"postnl","tracking_number":null}"#), "tracking_number"),
            (line("carrier.eta_updated", r#"{"tracking_number":"T","eta":{"from":"2026-11-02","to":"x"}}"#), "data.eta.from"),
            (line("carrier.teleported", r#"{"tracking_number":"T"}"#), "unknown event type"),
            (
                r#"{"specversion":"1.0","id":"x","source":"/t","type":"warehouse.picked","time":"yesterday","data":{"order_id":"B"}}"#.to_string(),
                "time",
            ),
        ];
        for (raw, needle) in cases {
            let err = decode(raw.as_bytes()).expect_err(&raw).to_string();
            assert!(err.contains(needle), "{raw}\n→ {err}\n(wanted {needle})");
        }
    }

    #[test]
    fn unknown_reason_codes_become_other_and_null_optionals_are_absent() {
        let e = decode(
            line("warehouse.delayed", r#"{"order_id":"B-1","reason":"alien_invasion","expected_ship_at":null}"#).as_bytes(),
        )
        .expect("valid");
        assert_eq!(e.fact, Fact::WarehouseDelayed { order_id: "B-1".into(), reason: Reason::Other, expected_ship_at: None });
    }
}
