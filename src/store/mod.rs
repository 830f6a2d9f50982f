//! Durable state: order states, seen event ids, parked events and the outbox, in SQLite
//! (WAL) through sqlx. The interface is narrow — load everything at start, commit one
//! batch per event (or poll batch), claim and settle outbox rows — so that PostgreSQL can
//! follow behind the same functions without touching the engine.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::core::domain::Instant;
use crate::core::engine::{OrderState, Status};
use crate::core::event::Event;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored {what} is corrupt: {message}")]
    Corrupt { what: String, message: String },
    #[error(
        "another belofte instance is already using {path} (SQLite is single-instance: stop the other one, or use PostgreSQL to run several)"
    )]
    Locked { path: String },
    #[error("{0}")]
    Io(String),
}

/// Timestamps as fixed-width UTC text, so that SQL compares them in time order.
pub fn ts(t: Instant) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> Result<Instant, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt { what: "timestamp".into(), message: format!("{s:?}: {e}") })
}

/// Everything kept, read back at start-up.
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
    /// The rendered line (`core::output::Line` as JSON, with the HTML part).
    pub line: String,
}

/// What one transaction writes.
#[derive(Debug, Default)]
pub struct Batch {
    pub orders: Vec<OrderState>,
    pub seen: Vec<u128>,
    pub parked_added: Vec<(u128, Event, Instant)>,
    pub parked_removed: Vec<u128>,
    pub messages: Vec<NewMessage>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
            && self.seen.is_empty()
            && self.parked_added.is_empty()
            && self.parked_removed.is_empty()
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
    /// Open (creating and migrating) the database at a `sqlite://` URL or a plain path.
    /// Takes an exclusive lock beside the file: a second instance is refused at once.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        let memory = path == ":memory:" || path.is_empty();
        let lock = if memory { None } else { Some(lock_beside(Path::new(path))?) };
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
        .foreign_keys(true);
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

    pub async fn load(&self) -> Result<Snapshot, StoreError> {
        let mut snap = Snapshot::default();
        for row in sqlx::query("SELECT order_id, state FROM orders").fetch_all(&self.pool).await? {
            let id: String = row.get(0);
            let json: String = row.get(1);
            let state = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt { what: format!("order {id}"), message: e.to_string() })?;
            snap.orders.push(state);
        }
        for row in sqlx::query("SELECT event_key FROM seen_events").fetch_all(&self.pool).await? {
            let key: Vec<u8> = row.get(0);
            snap.seen.push(key_from_bytes(&key)?);
        }
        for row in sqlx::query("SELECT event, expires_at FROM parked").fetch_all(&self.pool).await? {
            let json: String = row.get(0);
            let expires: String = row.get(1);
            let event = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt { what: "parked event".into(), message: e.to_string() })?;
            snap.parked.push((event, parse_ts(&expires)?));
        }
        Ok(snap)
    }

    /// Write one batch atomically: states, seen ids, parked changes, outbox rows.
    pub async fn commit(&self, batch: &Batch, now: Instant) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let now_s = ts(now);
        let mut tx = self.pool.begin().await?;
        for o in &batch.orders {
            let json = serde_json::to_string(o)
                .map_err(|e| StoreError::Corrupt { what: format!("order {}", o.order_id), message: e.to_string() })?;
            let open = matches!(o.status, Status::Open | Status::Shipped) || o.next_wakeup().is_some();
            sqlx::query(
                "INSERT INTO orders (order_id, state, open, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (order_id) DO UPDATE SET state = excluded.state, open = excluded.open, updated_at = excluded.updated_at",
            )
            .bind(&o.order_id)
            .bind(json)
            .bind(open)
            .bind(&now_s)
            .execute(&mut *tx)
            .await?;
        }
        for key in &batch.seen {
            sqlx::query("INSERT INTO seen_events (event_key, seen_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING")
                .bind(key.to_be_bytes().to_vec())
                .bind(&now_s)
                .execute(&mut *tx)
                .await?;
        }
        for (key, event, expires) in &batch.parked_added {
            let json = serde_json::to_string(event)
                .map_err(|e| StoreError::Corrupt { what: "parked event".into(), message: e.to_string() })?;
            sqlx::query("INSERT INTO parked (event_key, event, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING")
                .bind(key.to_be_bytes().to_vec())
                .bind(json)
                .bind(ts(*expires))
                .execute(&mut *tx)
                .await?;
        }
        for key in &batch.parked_removed {
            sqlx::query("DELETE FROM parked WHERE event_key = ?1")
                .bind(key.to_be_bytes().to_vec())
                .execute(&mut *tx)
                .await?;
        }
        for m in &batch.messages {
            sqlx::query(
                "INSERT INTO outbox (notification_key, order_id, kind, channel, recipient, send_at, line, next_attempt_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6, ?8) ON CONFLICT (notification_key) DO NOTHING",
            )
            .bind(&m.notification_key)
            .bind(&m.order_id)
            .bind(&m.kind)
            .bind(&m.channel)
            .bind(&m.recipient)
            .bind(ts(m.send_at))
            .bind(&m.line)
            .bind(&now_s)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Claim up to `limit` due rows of one channel (pending, or unknown and due for a look-up).
    /// A claimed row is `sending` until settled; rows left `sending` by a crash are handed
    /// out again by `recover`.
    pub async fn claim(&self, channel: &str, now: Instant, limit: i64) -> Result<Vec<Claimed>, StoreError> {
        let mut tx = self.pool.begin().await?;
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
        let mut claimed = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.get(0);
            let status: String = r.get(8);
            sqlx::query("UPDATE outbox SET status = 'sending' WHERE id = ?1").bind(id).execute(&mut *tx).await?;
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

    pub async fn settle(&self, row: &Claimed, outcome: &Settle, now: Instant) -> Result<(), StoreError> {
        let now_s = ts(now);
        let mut tx = self.pool.begin().await?;
        let (label, detail) = match outcome {
            Settle::Sent { provider_id } => {
                sqlx::query("UPDATE outbox SET status = 'sent', attempts = attempts + 1, provider_id = ?2, finished_at = ?3, last_error = NULL WHERE id = ?1")
                    .bind(row.id)
                    .bind(provider_id)
                    .bind(&now_s)
                    .execute(&mut *tx)
                    .await?;
                ("sent", provider_id.clone())
            }
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
        sqlx::query("INSERT INTO attempts (outbox_id, at, outcome, detail) VALUES (?1, ?2, ?3, ?4)")
            .bind(row.id)
            .bind(&now_s)
            .bind(label)
            .bind(detail)
            .execute(&mut *tx)
            .await?;
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

    /// Outbox rows by status, for /metrics and the demo's summary.
    pub async fn outbox_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT channel, status, COUNT(*) FROM outbox GROUP BY channel, status ORDER BY channel, status")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
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
