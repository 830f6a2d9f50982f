//! Durable state: order states, seen event ids, parked events and the outbox, in SQLite
//! (WAL) through sqlx. The interface is narrow — load everything at start, commit one
//! batch per event (or poll batch), claim and settle outbox rows — so that PostgreSQL can
//! follow behind the same functions without touching the engine.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use belofte_core::domain::{Channel, Instant};
use belofte_core::engine::{Decision, OrderState, Status};
use belofte_core::event::Event;

mod feedback;
mod partitions;

pub use feedback::{Consequence, FeedbackRow, ProviderEvent, TimelineEntry};
pub use partitions::Unrouted;

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
        "another belofte instance is already using {path} (SQLite is single-instance: stop the other one; several instances need PostgreSQL, which this version does not support yet)"
    )]
    Locked { path: String },
    /// A URL of a database this build cannot use: refused, never taken for a file name.
    #[error("database.url: {scheme}:// is not supported; this version stores its state in SQLite (database.url = \"sqlite://PATH\"). PostgreSQL, for several instances, is not built yet")]
    Unsupported { scheme: String },
    /// Another instance took a partition over since this one did: this one was presumed
    /// dead by the consumer group and must not write that partition's state any more.
    #[error("partition {part} was taken over by {owner} (epoch {epoch}; ours was {ours}): this instance was presumed dead by the consumer group")]
    Fenced { part: i32, owner: String, epoch: i64, ours: i64 },
    #[error("{0}")]
    Io(String),
}

/// Rows per multi-row statement: 12 parameters × 100 stays far below SQLite's limit of
/// 32,766 bound parameters, and a poll batch still takes only a handful of statements.
const ROWS_PER_STATEMENT: usize = 100;

/// Timestamps as fixed-width UTC text, so that SQL compares them in time order.
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
    pub orders: Vec<OrderState>,
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
    /// The rendered line (`render::Line` as JSON, with the HTML part).
    pub line: String,
}

impl NewMessage {
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
    }
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
    /// The previous attempt ended without knowing whether the message went out.
    pub unknown: bool,
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

pub struct Store {
    pool: SqlitePool,
    _lock: Option<File>,
    pub path: Option<PathBuf>,
}

impl Store {
    /// A write transaction. `BEGIN IMMEDIATE` takes SQLite's write lock at the start: a
    /// deferred transaction that reads first and then writes cannot wait for the lock (the
    /// busy timeout does not cover that upgrade) and fails with "database is locked" when
    /// the dispatcher and the processor write at once.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Open (creating and migrating) the database at a `sqlite://` URL or a plain path.
    /// Takes an exclusive lock beside the file: a second instance is refused at once.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, true).await
    }

    /// Open the database beside a running daemon, without its single-instance lock: for
    /// `belofte bounce`, which an MTA starts once per bounce. It only adds provider events,
    /// suppressions and outbox rows, which the daemon does not keep in memory, in short
    /// transactions that SQLite's WAL and busy timeout serialise with the daemon's.
    pub async fn open_beside_daemon(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, false).await
    }

    async fn open_with(url: &str, exclusive: bool) -> Result<Store, StoreError> {
        // Only the scheme is named: the rest of a URL may hold a password.
        if let Some((scheme, _)) = url.split_once("://") {
            if scheme != "sqlite" {
                return Err(StoreError::Unsupported { scheme: scheme.chars().take(20).collect() });
            }
        }
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        let memory = path == ":memory:" || path.is_empty();
        let lock = if memory || !exclusive { None } else { Some(lock_beside(Path::new(path))?) };
        let options = if memory {
            SqliteConnectOptions::from_str("sqlite::memory:")?
        } else {
            SqliteConnectOptions::new().filename(path).create_if_missing(true)
        }
        .journal_mode(SqliteJournalMode::Wal)
        // WAL + NORMAL survives a process crash (what the restart tests kill); FULL would
        // also survive power loss at the cost of an fsync per commit.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        // The default page cache is 2 MiB: with a few hundred thousand order states most
        // reads of an upsert went to the OS (pread) instead. (Not mmap: the file grows
        // all the time, and every growth remapped it.)
        .pragma("cache_size", "-65536");
        let pool = SqlitePoolOptions::new()
            // One writer is all SQLite has; a few readers for the dispatcher and metrics.
            .max_connections(if memory { 1 } else { 4 })
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Store { pool, _lock: lock, path: (!memory).then(|| PathBuf::from(path)) })
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Write one batch atomically: states, seen ids, parked changes, outbox rows.
    ///
    /// Rows go in as multi-row statements: each statement is a round trip to sqlx's SQLite
    /// thread, and one per row (a thousand per poll batch) was what limited the pipeline.
    /// It is still one transaction, so the batch is all or nothing, as before.
    pub async fn commit(&self, batch: &Batch, now: Instant) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let now_s = ts(now);
        let mut orders = Vec::with_capacity(batch.orders.len());
        for (part, o) in &batch.orders {
            let json = serde_json::to_string(o)
                .map_err(|e| StoreError::Corrupt { what: format!("order {}", o.order_id), message: e.to_string() })?;
            let open = matches!(o.status, Status::Open | Status::Shipped) || o.next_wakeup().is_some();
            orders.push((o.order_id.to_string(), json, open, *part));
        }
        let mut parked = Vec::with_capacity(batch.parked_added.len());
        for (part, key, event, expires) in &batch.parked_added {
            let json = serde_json::to_string(event)
                .map_err(|e| StoreError::Corrupt { what: "parked event".into(), message: e.to_string() })?;
            parked.push((key.to_be_bytes().to_vec(), json, ts(*expires), *part));
        }
        let mut unrouted = Vec::with_capacity(batch.unrouted_added.len());
        for (key, number, event, expires) in &batch.unrouted_added {
            let json = serde_json::to_string(event)
                .map_err(|e| StoreError::Corrupt { what: "unrouted event".into(), message: e.to_string() })?;
            unrouted.push((key.to_be_bytes().to_vec(), number.clone(), json, ts(*expires)));
        }
        let mut tx = self.write_tx().await?;
        for &(part, ours) in &batch.fences {
            let row = sqlx::query("SELECT owner, epoch FROM partition_owners WHERE part = ?1").bind(part).fetch_optional(&mut *tx).await?;
            if let Some(row) = row {
                let epoch: i64 = row.get(1);
                if epoch != ours {
                    return Err(StoreError::Fenced { part, owner: row.get(0), epoch, ours });
                }
            }
        }
        for chunk in orders.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO orders (order_id, state, open, updated_at, part) ");
            q.push_values(chunk, |mut row, (id, json, open, part)| {
                row.push_bind(id.clone()).push_bind(json.clone()).push_bind(*open).push_bind(now_s.clone()).push_bind(*part);
            });
            q.push(
                " ON CONFLICT (order_id) DO UPDATE SET state = excluded.state, open = excluded.open, updated_at = excluded.updated_at, part = excluded.part",
            );
            q.build().execute(&mut *tx).await?;
        }
        for chunk in batch.seen.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO seen_events (event_key, seen_at, part) ");
            q.push_values(chunk, |mut row, (part, key)| {
                row.push_bind(key.to_be_bytes().to_vec()).push_bind(now_s.clone()).push_bind(*part);
            });
            q.push(" ON CONFLICT DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }
        for chunk in parked.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO parked (event_key, event, expires_at, part) ");
            q.push_values(chunk, |mut row, (key, json, expires, part)| {
                row.push_bind(key.clone()).push_bind(json.clone()).push_bind(expires.clone()).push_bind(*part);
            });
            q.push(" ON CONFLICT DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }
        delete_keys(&mut tx, "parked", &batch.parked_removed).await?;
        for chunk in batch.tracking.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO tracking (tracking_number, order_id, part) ");
            q.push_values(chunk, |mut row, (number, order, part)| {
                row.push_bind(number.clone()).push_bind(order.clone()).push_bind(*part);
            });
            // A number shipped again belongs to the latest order, as in the engine.
            q.push(" ON CONFLICT (tracking_number) DO UPDATE SET order_id = excluded.order_id, part = excluded.part");
            q.build().execute(&mut *tx).await?;
        }
        for chunk in unrouted.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO unrouted (event_key, tracking_number, event, expires_at) ");
            q.push_values(chunk, |mut row, (key, number, json, expires)| {
                row.push_bind(key.clone()).push_bind(number.clone()).push_bind(json.clone()).push_bind(expires.clone());
            });
            q.push(" ON CONFLICT DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }
        delete_keys(&mut tx, "unrouted", &batch.unrouted_removed).await?;
        for chunk in batch.messages.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO outbox (notification_key, order_id, kind, channel, recipient, send_at, line, next_attempt_at, created_at, message_ref, seq, decision) ",
            );
            q.push_values(chunk, |mut row, m| {
                let send_at = ts(m.send_at);
                let notice = batch.notices.get(&m.notification_key);
                row.push_bind(m.notification_key.clone())
                    .push_bind(m.order_id.clone())
                    .push_bind(m.kind.clone())
                    .push_bind(m.channel.clone())
                    .push_bind(m.recipient.clone())
                    .push_bind(send_at.clone())
                    .push_bind(m.line.clone())
                    .push_bind(send_at)
                    .push_bind(now_s.clone())
                    .push_bind(belofte_feedback::message_ref(&m.notification_key))
                    .push_bind(notice.map(|(seq, _)| i64::from(*seq)))
                    .push_bind(notice.map(|(_, json)| json.clone()));
            });
            q.push(" ON CONFLICT (notification_key) DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Claim up to `limit` due rows of one channel (pending, or unknown and due for a look-up).
    /// A claimed row is `sending` until settled; rows left `sending` by a crash are handed
    /// out again by `recover`.
    pub async fn claim(&self, channel: &str, now: Instant, limit: i64) -> Result<Vec<Claimed>, StoreError> {
        let mut tx = self.write_tx().await?;
        let rows = sqlx::query(
            "SELECT id, notification_key, order_id, kind, channel, recipient, line, attempts, status FROM outbox
             WHERE channel = ?1 AND status IN ('pending', 'unknown') AND next_attempt_at <= ?2
             ORDER BY next_attempt_at, id LIMIT ?3",
        )
        .bind(channel)
        .bind(ts(now))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut mark = QueryBuilder::<Sqlite>::new("UPDATE outbox SET status = 'sending' WHERE id IN (");
        let mut ids = mark.separated(", ");
        for r in &rows {
            ids.push_bind(r.get::<i64, _>(0));
        }
        mark.push(")");
        mark.build().execute(&mut *tx).await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.get(0);
            let status: String = r.get(8);
            claimed.push(Claimed {
                id,
                notification_key: r.get(1),
                order_id: r.get(2),
                kind: r.get(3),
                channel: r.get(4),
                recipient: r.get(5),
                line: r.get(6),
                attempts: r.get(7),
                unknown: status == "unknown",
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Rows a crash left in `sending`: we cannot know whether they went out.
    pub async fn recover(&self, now: Instant) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE outbox SET status = 'unknown', next_attempt_at = ?1 WHERE status = 'sending'")
            .bind(ts(now))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Record how several attempts ended, in one transaction (the dispatcher settles the
    /// sends that finished together). Deliveries are the common case and take two
    /// statements however many there are; the rarer outcomes take one each.
    pub async fn settle_many(&self, done: &[(&Claimed, &Settle)], now: Instant) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let now_s = ts(now);
        let mut tx = self.write_tx().await?;
        let mut attempts: Vec<(i64, &'static str, Option<String>)> = Vec::with_capacity(done.len());
        let sent: Vec<(i64, Option<&String>)> = done
            .iter()
            .filter_map(|(row, outcome)| match outcome {
                Settle::Sent { provider_id } => Some((row.id, provider_id.as_ref())),
                _ => None,
            })
            .collect();
        for chunk in sent.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("UPDATE outbox SET status = 'sent', attempts = attempts + 1, provider_id = v.column2, finished_at = ");
            q.push_bind(now_s.clone());
            q.push(", last_error = NULL FROM (");
            q.push_values(chunk, |mut row, (id, provider_id)| {
                row.push_bind(*id).push_bind(provider_id.cloned());
            });
            q.push(") AS v WHERE outbox.id = v.column1");
            q.build().execute(&mut *tx).await?;
            attempts.extend(chunk.iter().map(|(id, provider_id)| (*id, "sent", provider_id.cloned())));
        }
        for (row, outcome) in done {
            let (label, detail) = match outcome {
                Settle::Sent { .. } => continue,
                // Both wait for a later attempt; they differ only in the status it resumes from.
                Settle::Retry { error, at } | Settle::Unknown { error, at } => {
                    let (status, label) =
                        if matches!(outcome, Settle::Retry { .. }) { ("pending", "retry") } else { ("unknown", "unknown") };
                    sqlx::query("UPDATE outbox SET status = ?4, attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE id = ?1")
                        .bind(row.id)
                        .bind(ts(*at))
                        .bind(error)
                        .bind(status)
                        .execute(&mut *tx)
                        .await?;
                    (label, Some(error.clone()))
                }
                Settle::Failed { error, suppress } => {
                    sqlx::query("UPDATE outbox SET status = 'failed', attempts = attempts + 1, finished_at = ?2, last_error = ?3 WHERE id = ?1")
                        .bind(row.id)
                        .bind(&now_s)
                        .bind(error)
                        .execute(&mut *tx)
                        .await?;
                    if let (true, Some(recipient)) = (*suppress, &row.recipient) {
                        sqlx::query("INSERT INTO suppressions (channel, recipient, reason, at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING")
                            .bind(&row.channel)
                            .bind(recipient)
                            .bind(error)
                            .bind(&now_s)
                            .execute(&mut *tx)
                            .await?;
                    }
                    ("failed", Some(error.clone()))
                }
                Settle::Release { at } => {
                    let back = if row.unknown { "unknown" } else { "pending" };
                    sqlx::query("UPDATE outbox SET status = ?3, next_attempt_at = ?2 WHERE id = ?1")
                        .bind(row.id)
                        .bind(ts(*at))
                        .bind(back)
                        .execute(&mut *tx)
                        .await?;
                    ("paused", None)
                }
            };
            attempts.push((row.id, label, detail));
        }
        for chunk in attempts.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO attempts (outbox_id, at, outcome, detail) ");
            q.push_values(chunk, |mut row, (id, label, detail)| {
                row.push_bind(*id).push_bind(now_s.clone()).push_bind(*label).push_bind(detail.clone());
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Why a recipient must not be tried again, if it must not.
    pub async fn suppressed(&self, channel: &str, recipient: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT reason FROM suppressions WHERE channel = ?1 AND recipient = ?2")
            .bind(channel)
            .bind(recipient)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The suppressed among some recipients of one channel, with why: one query per claim
    /// round instead of one per message.
    pub async fn suppressed_among(&self, channel: &str, recipients: &[&str]) -> Result<HashMap<String, String>, StoreError> {
        let mut found = HashMap::new();
        for chunk in recipients.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("SELECT recipient, reason FROM suppressions WHERE channel = ");
            q.push_bind(channel.to_string());
            q.push(" AND recipient IN (");
            let mut list = q.separated(", ");
            for r in chunk {
                list.push_bind(r.to_string());
            }
            q.push(")");
            for row in q.build().fetch_all(&self.pool).await? {
                found.insert(row.get(0), row.get(1));
            }
        }
        Ok(found)
    }

    /// Outbox rows by status, for /metrics and the demo's summary.
    pub async fn outbox_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT channel, status, COUNT(*) FROM outbox GROUP BY channel, status ORDER BY channel, status")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    /// Per channel, the rows whose send time has passed but that are not sent yet, and the
    /// oldest such send time (for /metrics: a stuck or slow channel). Rows held for later
    /// (quiet hours, the daily cap) are not due yet and are not counted.
    pub async fn outbox_overdue(&self, now: Instant) -> Result<Vec<(String, i64, Instant)>, StoreError> {
        let rows = sqlx::query(
            "SELECT channel, COUNT(*), MIN(send_at) FROM outbox
             WHERE status IN ('pending', 'unknown', 'sending') AND send_at <= ?1 GROUP BY channel ORDER BY channel",
        )
        .bind(ts(now))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let oldest: String = r.get(2);
                Ok((r.get(0), r.get(1), parse_ts(&oldest)?))
            })
            .collect()
    }

    /// Every outbox row with its status, oldest first (tests, demo summary).
    pub async fn outbox(&self) -> Result<Vec<OutboxView>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, notification_key, order_id, kind, channel, recipient, send_at, line, status, attempts, last_error, provider_id
             FROM outbox ORDER BY send_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| OutboxView {
                id: r.get(0),
                notification_key: r.get(1),
                order_id: r.get(2),
                kind: r.get(3),
                channel: r.get(4),
                recipient: r.get(5),
                send_at: r.get(6),
                line: r.get(7),
                status: r.get(8),
                attempts: r.get(9),
                last_error: r.get(10),
                provider_id: r.get(11),
            })
            .collect())
    }

    /// The attempts recorded for one outbox row: (outcome, detail).
    pub async fn attempts(&self, outbox_id: i64) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let rows = sqlx::query("SELECT outcome, detail FROM attempts WHERE outbox_id = ?1 ORDER BY rowid")
            .bind(outbox_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn close(&self) {
        self.pool.close().await;
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
}

/// Delete rows of `table` (one of ours, keyed by `event_key`) by key.
async fn delete_keys(tx: &mut sqlx::Transaction<'static, Sqlite>, table: &'static str, keys: &[u128]) -> Result<(), StoreError> {
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(format!("DELETE FROM {table} WHERE event_key IN ("));
        let mut list = q.separated(", ");
        for key in chunk {
            list.push_bind(key.to_be_bytes().to_vec());
        }
        q.push(")");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

fn key_from_bytes(b: &[u8]) -> Result<u128, StoreError> {
    let arr: [u8; 16] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt { what: "seen event key".into(), message: format!("{} bytes, want 16", b.len()) })?;
    Ok(u128::from_be_bytes(arr))
}

/// An exclusive lock on `<db>.lock`, held for the life of the process. The OS drops it when
/// the process dies, even by SIGKILL, so a crashed instance never blocks a restart.
fn lock_beside(db: &Path) -> Result<File, StoreError> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(format!("{}: {e}", dir.display())))?;
    }
    let lock_path = PathBuf::from(format!("{}.lock", db.display()));
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Io(format!("{}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked { path: db.display().to_string() }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Io(format!("{}: {e}", lock_path.display()))),
    }
}
