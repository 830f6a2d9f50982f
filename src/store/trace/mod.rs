//! Every order's trace (`shared/spec/trace.md`) as the daemon took the steps, and finding
//! orders by what customer service is told: an order id (or its beginning), an email
//! address, a phone number. The queries of each backend are in `sqlite` and `postgres`.
//!
//! The `trace` table is written in the batch's transaction, one row per order per batch
//! (order id, the engine's clock at its first step, its steps as a JSON array of
//! `Step::to_stored_json`; rows stored before hold one step, as an object), read and
//! deleted by order (`trace_order`). A row per step was 4.7 rows per order in a fan-out,
//! each an insert into the order's index.

use std::collections::HashMap;

use serde_json::Value;

use belofte_core::domain::Instant;
use belofte_core::engine::OrderState;
use belofte_core::trace::Step;

use super::{on_backend, Store, StoreError};

pub(super) mod postgres;
pub(super) mod sqlite;

/// Orders `find_orders` returns at most.
pub const FOUND_AT_MOST: i64 = 50;

/// What `find_orders` looks for, read from what a person typed.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderSearch {
    /// The text as typed (trimmed): an order id, whole or its beginning.
    pub id: String,
    /// Lower-cased, when the text has an `@`.
    pub email: Option<String>,
    /// The numbers it may be: as typed (`phone_key`), and a national number (`06 …`) in
    /// E.164 with the country code.
    pub phones: Vec<String>,
}

impl OrderSearch {
    /// `country_code`: the digits national numbers are dialled from (`31`: `06 12345678` is
    /// `+31612345678`).
    pub fn new(q: &str, country_code: &str) -> OrderSearch {
        let q = q.trim();
        let email = q.contains('@').then(|| q.to_lowercase());
        let mut phones = Vec::new();
        if let Some(key) = phone_key(q) {
            if let Some(national) = key.strip_prefix('0') {
                phones.push(format!("+{}{national}", country_code.trim_start_matches('+')));
            }
            phones.push(key);
        }
        OrderSearch { id: q.to_string(), email, phones }
    }

    pub fn is_empty(&self) -> bool {
        self.id.is_empty()
    }

    /// The address and numbers, as an outbox row's recipient (lower-cased) may be.
    fn recipients(&self) -> Vec<String> {
        self.email.iter().chain(self.phones.iter()).cloned().collect()
    }
}

/// A phone number as written to compare: without spaces, dashes, dots, slashes or
/// parentheses, `00` as `+` (E.164, as the SMS channel sends to, when the number had its
/// country code). `None` when it is not a number of at least 6 digits.
pub fn phone_key(raw: &str) -> Option<String> {
    let kept: String = raw.trim().chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '/' | '(' | ')')).collect();
    let key = match kept.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None => kept,
    };
    let digits = key.strip_prefix('+').unwrap_or(&key);
    (digits.len() >= 6 && digits.chars().all(|c| c.is_ascii_digit())).then_some(key)
}

/// The rows of a batch's steps: one per order, its steps in the order they were taken.
pub(super) fn encode(steps: &[Step]) -> Vec<(String, Instant, String)> {
    let mut rows: Vec<(String, Instant, Vec<Value>)> = Vec::new();
    let mut row_of: HashMap<&str, usize> = HashMap::new();
    for s in steps {
        let Some(id) = s.order_id.as_deref() else { continue };
        match row_of.get(id) {
            Some(&i) => rows[i].2.push(s.to_stored_json()),
            None => {
                row_of.insert(id, rows.len());
                rows.push((id.to_string(), s.at, vec![s.to_stored_json()]));
            }
        }
    }
    rows.into_iter().map(|(id, at, steps)| (id, at, Value::Array(steps).to_string())).collect()
}

/// The steps of one stored row: an array of a batch's, or one step (rows stored before).
fn steps_from_json(order_id: &str, json: &str) -> Result<Vec<Value>, StoreError> {
    match serde_json::from_str(json) {
        Ok(Value::Array(steps)) => Ok(steps),
        Ok(step) => Ok(vec![step]),
        Err(e) => Err(StoreError::Corrupt { what: format!("trace of order {order_id}"), message: e.to_string() }),
    }
}

impl Store {
    /// The steps stored for one order, in the order they were taken (`to_stored_json`).
    pub async fn order_trace(&self, order_id: &str) -> Result<Vec<Value>, StoreError> {
        let rows = on_backend!(self, b => b.order_trace(order_id).await)?;
        let mut steps = Vec::new();
        for json in &rows {
            steps.extend(steps_from_json(order_id, json)?);
        }
        Ok(steps)
    }

    /// Orders whose id is or begins with the text, or whose customer's address or number
    /// it is (in the stored state, or as the recipient of one of its messages); by order
    /// id, `FOUND_AT_MOST` at most. Nothing for an empty text.
    pub async fn find_orders(&self, q: &OrderSearch) -> Result<Vec<OrderState>, StoreError> {
        if q.is_empty() {
            return Ok(Vec::new());
        }
        let rows = on_backend!(self, b => b.find_orders(q).await)?;
        rows.iter().map(|(id, json)| super::order_from_json(id, json)).collect()
    }
}

/// The smallest text above every id that begins with `prefix` (by code point, as SQLite
/// and PostgreSQL's "C" collation compare).
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_number_as_people_write_it() {
        assert_eq!(phone_key("+31 6 1234 5678").as_deref(), Some("+31612345678"));
        assert_eq!(phone_key("0031-6-12345678").as_deref(), Some("+31612345678"));
        assert_eq!(phone_key("(06) 12.34.56.78").as_deref(), Some("0612345678"));
        assert_eq!(phone_key("B-1101"), None);
        assert_eq!(phone_key("12345"), None, "too short to be a number");
    }

    #[test]
    fn a_national_number_is_also_looked_for_with_the_country_code() {
        let q = OrderSearch::new(" 06 12345678 ", "31");
        assert_eq!(q.phones, vec!["+31612345678".to_string(), "0612345678".to_string()]);
        assert_eq!(q.email, None);
        let q = OrderSearch::new("Ingrid.Hoekstra@Example.NL", "31");
        assert_eq!(q.email.as_deref(), Some("ingrid.hoekstra@example.nl"));
        assert!(q.phones.is_empty());
    }
}
