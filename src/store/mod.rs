//! Durable state: order states, seen event ids, parked events and the outbox. One interface,
//! two backends chosen by `database.url`: SQLite (WAL, one instance per file, an OS lock
//! beside it) and PostgreSQL (several instances on one database). The interface is narrow —
//! load everything at start, commit one batch per poll batch, claim and settle outbox rows
//! under a lease — so the engine and the daemon never see which one they run on.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use belofte_core::domain::{Channel, Instant};
use belofte_core::engine::{Decision, OrderState, Status};
use belofte_core::event::Event;
use belofte_core::trace::Step;

mod console;
mod feedback;
mod partitions;
mod wording;
mod postgres;
mod retention;
mod seen;
mod sqlite;
mod trace;

pub use console::{AuditEntry, Changed, DeadLetter, NewAudit, NewDeadLetter, RowAction, DEAD_LETTER_PAYLOAD_MAX, PROBLEM_STATUSES};
pub use feedback::{Consequence, FeedbackRow, ProviderEvent, TimelineEntry};
pub use partitions::Unrouted;
pub use wording::{CurrentWording, NewWording, WordingKind, WordingVersion};
pub use trace::{phone_key, OrderSearch, FOUND_AT_MOST};
pub use retention::Swept;

/// The channel of a stored `channel` column (`email`, `sms`, `event`); `None` for anything
/// else (a row of a channel this build does not serve).
pub fn parse_channel(s: &str) -> Option<Channel> {
    match s {
        "email" => Some(Channel::Email),
        "sms" => Some(Channel::Sms),
        "event" => Some(Channel::Event),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored {what} is corrupt: {message}")]
    Corrupt { what: String, message: String },
    #[error(
        "another belofte instance is already using {path} (SQLite is single-instance: stop the other one, or run several instances on PostgreSQL, database.url = \"postgres://…\")"
    )]
    Locked { path: String },
    /// A URL of a database this build cannot use: refused, never taken for a file name.
    #[error("database.url: {scheme}:// is not supported; use sqlite://PATH (one instance) or postgres://USER@HOST/DB (several instances)")]
    Unsupported { scheme: String },
    /// Another instance took a partition over since this one did: this one was presumed
    /// dead by the consumer group and must not write that partition's state any more.
    #[error("partition {part} was taken over by {owner} (epoch {epoch}; ours was {ours}): this instance was presumed dead by the consumer group")]
    Fenced { part: i32, owner: String, epoch: i64, ours: i64 },
    #[error("{0}")]
    Io(String),
}

/// Timestamps as fixed-width UTC text, so that SQL compares them in time order (SQLite's
/// columns; the API's `OutboxView::send_at` and `TimelineEntry::at`).
pub fn ts(t: Instant) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> Result<Instant, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt { what: "timestamp".into(), message: format!("{s:?}: {e}") })
}

/// What is kept of one partition, read back when it is assigned.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The open orders' states (closed ones stay in the database, not in memory).
    pub orders: Vec<OrderState>,
    /// Closed orders: id and tracking number.
    pub closed: Vec<(String, Option<String>)>,
    pub seen: Vec<u128>,
    pub parked: Vec<(Event, Instant)>,
}

/// One message to deliver, as enqueued.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub notification_key: String,
    pub order_id: String,
    pub kind: String,
    pub channel: String,
    pub recipient: Option<String>,
    pub send_at: Instant,
    /// The rendered line (`render::Line` as JSON, with the HTML part); empty for a customer
    /// message, whose words are rendered from its decision when it is claimed.
    pub line: String,
}

impl NewMessage {
    /// The outbox row of a customer decision under `key`: no words yet (they are rendered
    /// when a dispatcher claims it, `Batch::unrendered`), so no line — the decision kept
    /// beside it (`Batch::notices`) holds every fact.
    pub fn unrendered(d: &Decision, key: String) -> NewMessage {
        NewMessage::of(d, key, String::new())
    }

    /// The reference a bounce names the message by (its VERP token): emails only — an SMS
    /// is reported by its provider id, an action by nobody, and the index stays small.
    pub fn message_ref(&self) -> Option<String> {
        (self.channel == "email").then(|| belofte_feedback::message_ref(&self.notification_key))
    }

    /// The outbox row of a decision, under `key`, with its rendered `line`.
    pub fn of(d: &Decision, key: String, line: String) -> NewMessage {
        NewMessage {
            notification_key: key,
            order_id: d.order_id.clone(),
            kind: d.kind.as_str().to_string(),
            channel: d.channel.as_str().to_string(),
            recipient: d.to.clone(),
            send_at: d.send_at,
            line,
        }
    }
}

/// What one transaction writes. Rows of orders, seen ids and parked events carry the
/// partition they belong to.
#[derive(Debug, Default)]
pub struct Batch {
    pub orders: Vec<(i32, OrderState)>,
    pub seen: Vec<(i32, u128)>,
    pub parked_added: Vec<(i32, u128, Event, Instant)>,
    pub parked_removed: Vec<u128>,
    /// Tracking numbers shipped: number, order id, partition.
    pub tracking: Vec<(String, String, i32)>,
    /// Carrier events kept for a tracking number no order has shipped with yet.
    pub unrouted_added: Vec<(u128, String, Event, Instant)>,
    /// Kept carrier events routed or given up.
    pub unrouted_removed: Vec<u128>,
    /// The partitions this batch writes, with the epoch they were taken over with: the
    /// commit fails with `StoreError::Fenced` if another instance has taken one over since.
    pub fences: Vec<(i32, i64)>,
    pub messages: Vec<NewMessage>,
    /// Per notification key of `messages`: the notice number and the decision as JSON
    /// (customer rows; a fallback is rendered from it). Rows without an entry have neither.
    pub notices: HashMap<String, (u32, String)>,
    /// Keys of `messages` whose words are rendered when a dispatcher claims them, from their
    /// decision in `notices`, with the wording current then (their `line` is empty until then).
    pub unrendered: HashSet<String>,
    /// The steps the batch's events and timers took, of orders only (`trace` table).
    pub trace: Vec<Step>,
    /// Events given up (also produced to the dead-letter topic once this commits).
    pub dead_letters: Vec<NewDeadLetter>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
            && self.seen.is_empty()
            && self.parked_added.is_empty()
            && self.parked_removed.is_empty()
            && self.tracking.is_empty()
            && self.unrouted_added.is_empty()
            && self.unrouted_removed.is_empty()
            && self.messages.is_empty()
            && self.trace.is_empty()
            && self.dead_letters.is_empty()
    }
}

/// An order's row as the backends write it.
struct EncodedOrder {
    id: String,
    /// `OrderState` as JSON.
    state: String,
    open: bool,
    part: i32,
    /// The customer's contact, for `find_orders`: the address lower-cased, the number as
    /// `phone_key` writes it. Written when the row is inserted (no event changes them).
    email: Option<String>,
    phone: Option<String>,
}

/// A batch's documents as the backends write them: states and events as JSON.
struct Encoded {
    orders: Vec<EncodedOrder>,
    /// Per partition, the batch's seen ids (`seen::rows`).
    seen: Vec<(i32, Vec<u8>)>,
    /// (event key, event JSON, expires at, partition)
    parked: Vec<(Vec<u8>, String, Instant, i32)>,
    /// (event key, tracking number, event JSON, expires at)
    unrouted: Vec<(Vec<u8>, String, String, Instant)>,
    /// (order id, at, step JSON) of the batch's trace, in the order the steps were taken.
    trace: Vec<(String, Instant, String)>,
}

impl Encoded {
    fn of(batch: &Batch) -> Result<Encoded, StoreError> {
        let mut orders = Vec::with_capacity(batch.orders.len());
        for (part, o) in &batch.orders {
            let json = serde_json::to_string(o)
                .map_err(|e| StoreError::Corrupt { what: format!("order {}", o.order_id), message: e.to_string() })?;
            let open = matches!(o.status, Status::Open | Status::Shipped) || o.next_wakeup().is_some();
            orders.push(EncodedOrder {
                id: o.order_id.to_string(),
                state: json,
                open,
                part: *part,
                email: o.customer.email.as_ref().map(|e| e.to_lowercase()),
                phone: o.customer.phone.as_deref().and_then(phone_key),
            });
        }
        let event_json = |what: &str, event: &Event| {
            serde_json::to_string(event).map_err(|e| StoreError::Corrupt { what: what.to_string(), message: e.to_string() })
        };
        let mut parked = Vec::with_capacity(batch.parked_added.len());
        for (part, key, event, expires) in &batch.parked_added {
            parked.push((key.to_be_bytes().to_vec(), event_json("parked event", event)?, *expires, *part));
        }
        let mut unrouted = Vec::with_capacity(batch.unrouted_added.len());
        for (key, number, event, expires) in &batch.unrouted_added {
            unrouted.push((key.to_be_bytes().to_vec(), number.clone(), event_json("unrouted event", event)?, *expires));
        }
        let trace = trace::encode(&batch.trace);
        Ok(Encoded { orders, seen: seen::rows(&batch.seen), parked, unrouted, trace })
    }
}

fn order_from_json(id: &str, json: &str) -> Result<OrderState, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt { what: format!("order {id}"), message: e.to_string() })
}

fn parked_from_json(json: &str) -> Result<Event, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt { what: "parked event".into(), message: e.to_string() })
}

/// Who claims outbox rows and for how long. The lease runs on the database's clock (one
/// clock for every instance, whatever clock the daemon decides on): it must outlast
/// everything an attempt may still do at its provider, so that a lease that ran out means
/// the provider's timeout has passed since the attempt began.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// The claiming instance (`kafka.group_instance_id`, else host name and pid).
    pub holder: String,
    pub length: Duration,
}

/// An outbox row claimed for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub id: i64,
    pub notification_key: String,
    pub order_id: String,
    pub kind: String,
    pub channel: String,
    pub recipient: Option<String>,
    pub line: String,
    pub attempts: i64,
    /// The previous attempt ended without knowing whether the message went out — or its
    /// lease ran out while it was being sent (its instance died or lost the database).
    pub unknown: bool,
    /// The claim this is (holder and the row's claim count): a settle applies only while
    /// the row is still held by it.
    pub claimed_by: String,
    pub claim: i64,
    /// The decision as JSON (customer rows).
    pub decision: Option<String>,
    /// Its words are still to be rendered (from `decision`): the claim does it (`Words`).
    pub unrendered: bool,
}

/// The columns a claim reads, in the order `Claimed::read` takes them.
const CLAIM_COLUMNS: &str = "id, notification_key, order_id, kind, channel, recipient, line, attempts, status, claims, decision, unrendered";

/// How a claim renders the rows whose words are not written yet: with the wording of
/// `version`, `render` gives the row's line (or why it cannot be rendered).
pub struct Words<'a> {
    pub version: i64,
    pub render: &'a (dyn Fn(&Claimed) -> Result<String, String> + Send + Sync),
}

/// What a claim hands out: rows to send (their words written), and rows that could not be
/// rendered, now `render_failed` with the reason (not sent; queued again when the wording
/// changes, `Store::retry_render_failed`).
#[derive(Debug, Default)]
pub struct Claims {
    pub rows: Vec<Claimed>,
    pub render_failed: Vec<(Claimed, String)>,
}

impl Claims {
    /// Words for the unrendered of `rows`: which are rendered (id, line) and which failed.
    fn render(rows: Vec<Claimed>, words: &Words<'_>) -> (Claims, Vec<(i64, String)>) {
        let mut claims = Claims::default();
        let mut worded = Vec::new();
        for mut row in rows {
            if !row.unrendered {
                claims.rows.push(row);
                continue;
            }
            match (words.render)(&row) {
                Ok(line) => {
                    worded.push((row.id, line.clone()));
                    row.line = line;
                    row.unrendered = false;
                    claims.rows.push(row);
                }
                Err(reason) => claims.render_failed.push((row, reason)),
            }
        }
        (claims, worded)
    }
}

impl Claimed {
    /// A row of `CLAIM_COLUMNS` as handed out under `lease` (its claim count was just raised).
    fn read<R: sqlx::Row>(r: &R, lease: &Lease) -> Claimed
    where
        usize: sqlx::ColumnIndex<R>,
        String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        bool: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    {
        let status: String = r.get(8);
        Claimed {
            id: r.get(0),
            notification_key: r.get(1),
            order_id: r.get(2),
            kind: r.get(3),
            channel: r.get(4),
            recipient: r.get(5),
            line: r.get(6),
            attempts: r.get(7),
            // `sending` here means its lease ran out mid-attempt: as unknown as `unknown`.
            unknown: status != "pending",
            claimed_by: lease.holder.clone(),
            claim: r.get::<i64, _>(9) + 1,
            decision: r.get(10),
            unrendered: r.get(11),
        }
    }
}

/// How a delivery attempt ended, as the store records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    Sent { provider_id: Option<String> },
    Retry { error: String, at: Instant },
    /// Not known whether it went out: look it up before sending again.
    Unknown { error: String, at: Instant },
    Failed { error: String, suppress: bool },
    /// The channel is paused (credentials refused): back to the queue without counting.
    Release { at: Instant },
}

impl Settle {
    /// Whether the row's words are rendered again at its next claim: after an attempt that
    /// certainly sent nothing (a retry, a pause), so that a wording fixed meanwhile applies.
    /// Not while the row is in doubt (unknown): its look-up and resend repeat the words tried.
    fn words_again(&self, row: &Claimed) -> bool {
        row.decision.is_some()
            && match self {
                Settle::Retry { .. } => true,
                Settle::Release { .. } => !row.unknown,
                _ => false,
            }
    }

    /// The label of the attempt, as `attempts.outcome` records it.
    fn label(&self) -> &'static str {
        match self {
            Settle::Sent { .. } => "sent",
            Settle::Retry { .. } => "retry",
            Settle::Unknown { .. } => "unknown",
            Settle::Failed { .. } => "failed",
            Settle::Release { .. } => "paused",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OutboxView {
    pub id: i64,
    pub notification_key: String,
    pub order_id: String,
    pub kind: String,
    pub channel: String,
    pub recipient: Option<String>,
    pub send_at: String,
    pub line: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub provider_id: Option<String>,
    /// No words yet (`line` is empty): they are rendered from `decision` when it is sent.
    pub unrendered: bool,
    /// The decision as JSON (customer rows).
    pub decision: Option<String>,
}

/// The columns `OutboxView::read` takes, in its order.
const OUTBOX_VIEW_COLUMNS: &str =
    "id, notification_key, order_id, kind, channel, recipient, send_at, line, status, attempts, last_error, provider_id, unrendered, decision";

impl OutboxView {
    /// A row of `OUTBOX_VIEW_COLUMNS`; `send_at` as the backend reads its column 6.
    fn read<R: sqlx::Row>(r: &R, send_at: String) -> OutboxView
    where
        usize: sqlx::ColumnIndex<R>,
        String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        bool: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    {
        OutboxView {
            id: r.get(0),
            notification_key: r.get(1),
            order_id: r.get(2),
            kind: r.get(3),
            channel: r.get(4),
            recipient: r.get(5),
            send_at,
            line: r.get(7),
            status: r.get(8),
            attempts: r.get(9),
            last_error: r.get(10),
            provider_id: r.get(11),
            unrendered: r.get(12),
            decision: r.get(13),
        }
    }
}

fn key_from_bytes(b: &[u8]) -> Result<u128, StoreError> {
    let arr: [u8; 16] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt { what: "seen event key".into(), message: format!("{} bytes, want 16", b.len()) })?;
    Ok(u128::from_be_bytes(arr))
}

enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// The same call on whichever backend the store has.
macro_rules! on_backend {
    ($store:expr, $b:ident => $call:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite($b) => $call,
            $crate::store::Backend::Postgres($b) => $call,
        }
    };
}
pub(crate) use on_backend;

pub struct Store {
    backend: Backend,
}

impl Store {
    /// Open (creating and migrating) the database at `database.url`: `sqlite://PATH` or a
    /// plain path (single instance: an exclusive lock beside the file refuses a second one),
    /// or `postgres://…` / `postgresql://…` (any number of instances).
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, true).await
    }

    /// Open the database beside a running daemon, without SQLite's single-instance lock: for
    /// `belofte bounce`, which an MTA starts once per bounce. It only adds provider events,
    /// suppressions and outbox rows, which the daemon does not keep in memory, in short
    /// transactions that the database serialises with the daemon's.
    pub async fn open_beside_daemon(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, false).await
    }

    async fn open_with(url: &str, exclusive: bool) -> Result<Store, StoreError> {
        let backend = match url.split_once("://").map(|(scheme, _)| scheme) {
            Some("postgres" | "postgresql") => Backend::Postgres(postgres::PgStore::open(url).await?),
            Some("sqlite") | None => Backend::Sqlite(sqlite::SqliteStore::open(url, exclusive).await?),
            // Only the scheme is named: the rest of a URL may hold a password.
            Some(scheme) => return Err(StoreError::Unsupported { scheme: scheme.chars().take(20).collect() }),
        };
        Ok(Store { backend })
    }

    /// `postgres` or `sqlite`, for logs.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    pub async fn ping(&self) -> bool {
        on_backend!(self, b => b.ping().await)
    }

    /// Write one batch atomically, in one transaction, once its partitions' epochs are found
    /// unchanged: states, seen ids, parked changes, tracking numbers, kept carrier events,
    /// outbox rows (`ON CONFLICT (notification_key) DO NOTHING`), as multi-row statements.
    pub async fn commit(&self, batch: &Batch, now: Instant) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let encoded = Encoded::of(batch)?;
        on_backend!(self, b => b.commit(batch, &encoded, now).await)
    }

    /// Claim up to `limit` rows of one channel for `lease`: first those whose lease ran out
    /// while `sending` (they come out `unknown`), then the due `pending` and `unknown` ones.
    /// Each comes out `sending`, held by `lease.holder` until the lease ends. On PostgreSQL
    /// the rows are locked `FOR UPDATE SKIP LOCKED` in the transaction that marks them, so
    /// concurrent claimers never get the same row.
    pub async fn claim(&self, channel: &str, now: Instant, limit: i64, lease: &Lease) -> Result<Vec<Claimed>, StoreError> {
        let none = |_: &Claimed| -> Result<String, String> { Err("no wording to render with".to_string()) };
        Ok(self.claim_rendering(channel, now, limit, lease, &Words { version: 0, render: &none }).await?.rows)
    }

    /// [`Store::claim`], rendering the claimed rows whose words are not written yet with
    /// `words`, in the claim's transaction: a row's words are fixed before its first attempt
    /// (a look-up after a crash searches for the text that was sent, and a resend repeats
    /// it). A row that cannot be rendered becomes `render_failed` with the reason (an
    /// attempt `render_failed` is recorded) instead of `sending`.
    pub async fn claim_rendering(
        &self,
        channel: &str,
        now: Instant,
        limit: i64,
        lease: &Lease,
        words: &Words<'_>,
    ) -> Result<Claims, StoreError> {
        on_backend!(self, b => b.claim(channel, now, limit, lease, words).await)
    }

    /// Record how several attempts ended, in one transaction (the dispatcher settles the
    /// sends that finished together), each only while its row is still held by the claim
    /// that made the attempt. Returns the ids of the rows that were not: their lease ran out
    /// and another claim took them over, whose result stands; nothing is written for them.
    pub async fn settle_many(&self, done: &[(&Claimed, &Settle)], now: Instant) -> Result<Vec<i64>, StoreError> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        on_backend!(self, b => b.settle_many(done, now).await)
    }

    /// Why a recipient must not be tried again, if it must not.
    pub async fn suppressed(&self, channel: &str, recipient: &str) -> Result<Option<String>, StoreError> {
        on_backend!(self, b => b.suppressed(channel, recipient).await)
    }

    /// The suppressed among some recipients of one channel, with why: one query per claim
    /// round instead of one per message.
    pub async fn suppressed_among(&self, channel: &str, recipients: &[&str]) -> Result<HashMap<String, String>, StoreError> {
        on_backend!(self, b => b.suppressed_among(channel, recipients).await)
    }

    /// Outbox rows by status, for /metrics and the demo's summary.
    pub async fn outbox_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        on_backend!(self, b => b.outbox_counts().await)
    }

    /// Per channel, the rows whose send time has passed but that are not sent yet, and the
    /// oldest such send time (for /metrics: a stuck or slow channel). Rows held for later
    /// (quiet hours, the daily cap) are not due yet and are not counted.
    pub async fn outbox_overdue(&self, now: Instant) -> Result<Vec<(String, i64, Instant)>, StoreError> {
        on_backend!(self, b => b.outbox_overdue(now).await)
    }

    /// Every outbox row with its status, oldest first (tests, demo summary).
    pub async fn outbox(&self) -> Result<Vec<OutboxView>, StoreError> {
        on_backend!(self, b => b.outbox(None).await)
    }

    /// One order's outbox rows, oldest first.
    pub async fn order_outbox(&self, order_id: &str) -> Result<Vec<OutboxView>, StoreError> {
        on_backend!(self, b => b.outbox(Some(order_id)).await)
    }

    /// The attempts recorded for one outbox row: (outcome, detail).
    pub async fn attempts(&self, outbox_id: i64) -> Result<Vec<(String, Option<String>)>, StoreError> {
        on_backend!(self, b => b.attempts(outbox_id).await)
    }

    pub async fn close(&self) {
        on_backend!(self, b => b.close().await)
    }
}
