//! The SQLite backend: one file in WAL mode, one instance (an OS lock beside the file), every
//! write transaction `BEGIN IMMEDIATE`. Timestamps are fixed-width UTC text (`ts`); lease
//! times are the database's clock as `strftime('%Y-%m-%dT%H:%M:%fZ')` text.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use belofte_core::domain::Instant;

use super::{
    parse_ts, ts, Batch, Claimed, Claims, Encoded, CLAIM_COLUMNS, Lease, OutboxView, OUTBOX_VIEW_COLUMNS, Settle, StoreError, Words,
};

/// Rows per multi-row statement: 12 parameters × 100 stays far below SQLite's limit of
/// 32,766 bound parameters, and a poll batch still takes only a handful of statements.
pub(super) const ROWS_PER_STATEMENT: usize = 100;

/// The database's clock, in the format of the lease columns.
const DB_NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

pub(super) struct SqliteStore {
    pub(super) pool: SqlitePool,
    _lock: Option<File>,
}

impl SqliteStore {
    /// A write transaction. `BEGIN IMMEDIATE` takes SQLite's write lock at the start: a
    /// deferred transaction that reads first and then writes cannot wait for the lock (the
    /// busy timeout does not cover that upgrade) and fails with "database is locked" when
    /// the dispatcher and the processor write at once.
    pub(super) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// `exclusive`: take the lock beside the file, so that a second instance is refused.
    pub(super) async fn open(url: &str, exclusive: bool) -> Result<SqliteStore, StoreError> {
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
        Ok(SqliteStore { pool, _lock: lock })
    }

    pub(super) async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Rows go in as multi-row statements: each statement is a round trip to sqlx's SQLite
    /// thread, and one per row (a thousand per poll batch) was what limited the pipeline.
    pub(super) async fn commit(&self, batch: &Batch, encoded: &Encoded, now: Instant) -> Result<(), StoreError> {
        let now_s = ts(now);
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
        for chunk in encoded.orders.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO orders (order_id, state, open, updated_at, part, email, phone) ");
            q.push_values(chunk, |mut row, o| {
                row.push_bind(o.id.clone())
                    .push_bind(o.state.clone())
                    .push_bind(o.open)
                    .push_bind(now_s.clone())
                    .push_bind(o.part)
                    .push_bind(o.email.clone())
                    .push_bind(o.phone.clone());
            });
            q.push(
                " ON CONFLICT (order_id) DO UPDATE SET state = excluded.state, open = excluded.open, updated_at = excluded.updated_at, part = excluded.part",
            );
            q.build().execute(&mut *tx).await?;
        }
        for chunk in encoded.seen.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO seen_batches (part, seen_at, keys) ");
            q.push_values(chunk, |mut row, (part, keys)| {
                row.push_bind(*part).push_bind(now_s.clone()).push_bind(keys.as_slice());
            });
            q.build().execute(&mut *tx).await?;
        }
        for chunk in encoded.parked.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO parked (event_key, event, expires_at, part) ");
            q.push_values(chunk, |mut row, (key, json, expires, part)| {
                row.push_bind(key.clone()).push_bind(json.clone()).push_bind(ts(*expires)).push_bind(*part);
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
        for chunk in encoded.unrouted.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO unrouted (event_key, tracking_number, event, expires_at) ");
            q.push_values(chunk, |mut row, (key, number, json, expires)| {
                row.push_bind(key.clone()).push_bind(number.clone()).push_bind(json.clone()).push_bind(ts(*expires));
            });
            q.push(" ON CONFLICT DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }
        delete_keys(&mut tx, "unrouted", &batch.unrouted_removed).await?;
        for chunk in batch.messages.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO outbox (notification_key, order_id, kind, channel, recipient, send_at, line, next_attempt_at, created_at, message_ref, seq, decision, unrendered) ",
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
                    .push_bind(m.message_ref())
                    .push_bind(notice.map(|(seq, _)| i64::from(*seq)))
                    .push_bind(notice.map(|(_, json)| json.clone()))
                    .push_bind(batch.unrendered.contains(&m.notification_key));
            });
            q.push(" ON CONFLICT (notification_key) DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }
        super::trace::sqlite::insert(&mut tx, &encoded.trace).await?;
        super::console::sqlite::insert_dead_letters(&mut tx, &batch.dead_letters, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// In one `BEGIN IMMEDIATE` transaction: the rows whose lease ran out, then the due ones
    /// (each read through its partial index), marked `sending` under the new lease.
    pub(super) async fn claim(&self, channel: &str, now: Instant, limit: i64, lease: &Lease, words: &Words<'_>) -> Result<Claims, StoreError> {
        let mut tx = self.write_tx().await?;
        let mut rows = sqlx::query(&format!(
            "SELECT {CLAIM_COLUMNS} FROM outbox WHERE channel = ?1 AND status = 'sending' AND lease_until <= {DB_NOW}
             ORDER BY lease_until, id LIMIT ?2"
        ))
        .bind(channel)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let room = limit - rows.len() as i64;
        if room > 0 {
            rows.extend(
                sqlx::query(&format!(
                    "SELECT {CLAIM_COLUMNS} FROM outbox WHERE channel = ?1 AND status IN ('pending', 'unknown') AND next_attempt_at <= ?2
                     ORDER BY next_attempt_at, id LIMIT ?3"
                ))
                .bind(channel)
                .bind(ts(now))
                .bind(room)
                .fetch_all(&mut *tx)
                .await?,
            );
        }
        if rows.is_empty() {
            return Ok(Claims::default());
        }
        let (claims, worded) = Claims::render(rows.iter().map(|r| Claimed::read(r, lease)).collect(), words);
        if !claims.rows.is_empty() {
            let mut mark = QueryBuilder::<Sqlite>::new("UPDATE outbox SET status = 'sending', claims = claims + 1, claimed_by = ");
            mark.push_bind(lease.holder.clone());
            mark.push(format!(", claimed_at = {DB_NOW}, lease_until = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', "));
            mark.push_bind(format!("+{:.3} seconds", lease.length.as_secs_f64()));
            mark.push(") WHERE id IN (");
            let mut ids = mark.separated(", ");
            for r in &claims.rows {
                ids.push_bind(r.id);
            }
            mark.push(")");
            mark.build().execute(&mut *tx).await?;
        }
        for chunk in worded.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("UPDATE outbox SET line = v.column2, unrendered = 0, wording = ");
            q.push_bind(words.version);
            q.push(" FROM (");
            q.push_values(chunk, |mut b, (id, line)| {
                b.push_bind(*id).push_bind(line.clone());
            });
            q.push(") AS v WHERE outbox.id = v.column1");
            q.build().execute(&mut *tx).await?;
        }
        for (row, reason) in &claims.render_failed {
            sqlx::query("UPDATE outbox SET status = 'render_failed', last_error = ?2, wording = ?3 WHERE id = ?1")
                .bind(row.id)
                .bind(reason)
                .bind(words.version)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO attempts (outbox_id, at, outcome, detail) VALUES (?1, ?2, 'render_failed', ?3)")
                .bind(row.id)
                .bind(ts(now))
                .bind(reason)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(claims)
    }

    pub(super) async fn settle_many(&self, done: &[(&Claimed, &Settle)], now: Instant) -> Result<Vec<i64>, StoreError> {
        let now_s = ts(now);
        let mut tx = self.write_tx().await?;
        let mut written: Vec<(i64, &'static str, Option<String>)> = Vec::with_capacity(done.len());
        let mut stale = Vec::new();
        // Deliveries are the common case and take one statement per 100 however many there
        // are; the rarer outcomes take one each.
        let sent: Vec<(&Claimed, Option<&String>)> = done
            .iter()
            .filter_map(|(row, outcome)| match outcome {
                Settle::Sent { provider_id } => Some((*row, provider_id.as_ref())),
                _ => None,
            })
            .collect();
        for chunk in sent.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "UPDATE outbox SET status = 'sent', attempts = attempts + 1, provider_id = v.column2, last_error = NULL, finished_at = ",
            );
            q.push_bind(now_s.clone());
            q.push(" FROM (");
            q.push_values(chunk, |mut b, (row, provider_id)| {
                b.push_bind(row.id).push_bind(provider_id.cloned()).push_bind(row.claimed_by.clone()).push_bind(row.claim);
            });
            q.push(
                ") AS v WHERE outbox.id = v.column1 AND outbox.claimed_by = v.column3 AND outbox.claims = v.column4 AND outbox.status = 'sending'
                 RETURNING id",
            );
            let ours: Vec<i64> = q.build().fetch_all(&mut *tx).await?.iter().map(|r| r.get(0)).collect();
            for (row, provider_id) in chunk {
                if ours.contains(&row.id) {
                    written.push((row.id, "sent", provider_id.cloned()));
                } else {
                    stale.push(row.id);
                }
            }
        }
        for (row, outcome) in done {
            const OURS: &str = "id = ?1 AND claimed_by = ?2 AND claims = ?3 AND status = 'sending'";
            let (changed, detail) = match outcome {
                Settle::Sent { .. } => continue,
                // Both wait for a later attempt; they differ only in the status it resumes from.
                Settle::Retry { error, at } | Settle::Unknown { error, at } => {
                    let status = if matches!(outcome, Settle::Retry { .. }) { "pending" } else { "unknown" };
                    let done = sqlx::query(&format!(
                        "UPDATE outbox SET status = ?4, attempts = attempts + 1, next_attempt_at = ?5, last_error = ?6, unrendered = ?7 WHERE {OURS}"
                    ))
                    .bind(row.id)
                    .bind(&row.claimed_by)
                    .bind(row.claim)
                    .bind(status)
                    .bind(ts(*at))
                    .bind(error)
                    .bind(outcome.words_again(row))
                    .execute(&mut *tx)
                    .await?;
                    (done.rows_affected() == 1, Some(error.clone()))
                }
                Settle::Failed { error, suppress } => {
                    let done = sqlx::query(&format!(
                        "UPDATE outbox SET status = 'failed', attempts = attempts + 1, finished_at = ?4, last_error = ?5 WHERE {OURS}"
                    ))
                    .bind(row.id)
                    .bind(&row.claimed_by)
                    .bind(row.claim)
                    .bind(&now_s)
                    .bind(error)
                    .execute(&mut *tx)
                    .await?;
                    let ours = done.rows_affected() == 1;
                    if let (true, true, Some(recipient)) = (ours, *suppress, &row.recipient) {
                        sqlx::query("INSERT INTO suppressions (channel, recipient, reason, at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING")
                            .bind(&row.channel)
                            .bind(recipient)
                            .bind(error)
                            .bind(&now_s)
                            .execute(&mut *tx)
                            .await?;
                    }
                    (ours, Some(error.clone()))
                }
                Settle::Release { at } => {
                    let back = if row.unknown { "unknown" } else { "pending" };
                    let done = sqlx::query(&format!("UPDATE outbox SET status = ?4, next_attempt_at = ?5, unrendered = ?6 WHERE {OURS}"))
                        .bind(row.id)
                        .bind(&row.claimed_by)
                        .bind(row.claim)
                        .bind(back)
                        .bind(ts(*at))
                        .bind(outcome.words_again(row))
                        .execute(&mut *tx)
                        .await?;
                    (done.rows_affected() == 1, None)
                }
            };
            if changed {
                written.push((row.id, outcome.label(), detail));
            } else {
                stale.push(row.id);
            }
        }
        for chunk in written.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO attempts (outbox_id, at, outcome, detail) ");
            q.push_values(chunk, |mut row, (id, label, detail)| {
                row.push_bind(*id).push_bind(now_s.clone()).push_bind(*label).push_bind(detail.clone());
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(stale)
    }

    pub(super) async fn suppressed(&self, channel: &str, recipient: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT reason FROM suppressions WHERE channel = ?1 AND recipient = ?2")
            .bind(channel)
            .bind(recipient)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub(super) async fn suppressed_among(&self, channel: &str, recipients: &[&str]) -> Result<HashMap<String, String>, StoreError> {
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

    pub(super) async fn outbox_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT channel, status, COUNT(*) FROM outbox GROUP BY channel, status ORDER BY channel, status")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    pub(super) async fn outbox_overdue(&self, now: Instant) -> Result<Vec<(String, i64, Instant)>, StoreError> {
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

    /// Every row, or one order's (through `outbox_notice`).
    pub(super) async fn outbox(&self, order_id: Option<&str>) -> Result<Vec<OutboxView>, StoreError> {
        let filter = if order_id.is_some() { "WHERE order_id = ?1" } else { "" };
        let q = format!("SELECT {OUTBOX_VIEW_COLUMNS} FROM outbox {filter} ORDER BY send_at, id");
        let mut query = sqlx::query(&q);
        if let Some(id) = order_id {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| OutboxView::read(r, r.get(6))).collect())
    }

    pub(super) async fn attempts(&self, outbox_id: i64) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let rows = sqlx::query("SELECT outcome, detail FROM attempts WHERE outbox_id = ?1 ORDER BY rowid")
            .bind(outbox_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}


/// An exclusive lock on `<db>.lock`, held for the life of the process. The OS drops it when
/// the process dies, even by SIGKILL, so a crashed instance never blocks a restart.
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
