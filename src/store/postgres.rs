//! The PostgreSQL backend: one database shared by every instance. Multi-row writes bind one
//! array per column and `UNNEST` them (one statement per table, whatever the batch size);
//! claims lock their rows `FOR UPDATE SKIP LOCKED` in the transaction that marks them, so
//! concurrent claimers pass each other instead of waiting or sharing rows. Native types:
//! `timestamptz`, `bytea`, `bigint` identities; lease times are the server's `now()`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;

use belofte_core::domain::Instant;

use super::{ts, Batch, Claimed, Claims, Encoded, Lease, NewMessage, OutboxView, Settle, StoreError, Words, CLAIM_COLUMNS, OUTBOX_VIEW_COLUMNS};

pub(super) struct PgStore {
    pub(super) pool: PgPool,
}

impl PgStore {
    pub(super) async fn open(url: &str) -> Result<PgStore, StoreError> {
        let pool = PgPoolOptions::new()
            // The processor, three dispatcher workers, feedback and the admin port.
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        // sqlx takes an advisory lock around the migrations: instances starting together
        // migrate once.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore { pool })
    }

    pub(super) async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub(super) async fn commit(&self, batch: &Batch, encoded: &Encoded, now: Instant) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if !batch.fences.is_empty() {
            // Locks the partitions' rows until the commit: a take-over waits for this batch,
            // and a batch after a take-over sees the new epoch.
            let parts: Vec<i32> = batch.fences.iter().map(|(p, _)| *p).collect();
            let rows = sqlx::query("SELECT part, owner, epoch FROM partition_owners WHERE part = ANY($1) FOR UPDATE")
                .bind(&parts)
                .fetch_all(&mut *tx)
                .await?;
            for row in rows {
                let (part, epoch): (i32, i64) = (row.get(0), row.get(2));
                if let Some(&(_, ours)) = batch.fences.iter().find(|(p, _)| *p == part) {
                    if epoch != ours {
                        return Err(StoreError::Fenced { part, owner: row.get(1), epoch, ours });
                    }
                }
            }
        }
        if !encoded.orders.is_empty() {
            let os = &encoded.orders;
            sqlx::query(
                "INSERT INTO orders (order_id, state, open, updated_at, part, email, phone)
                 SELECT id, state, open, $4, part, email, phone
                 FROM UNNEST($1::text[], $2::text[], $3::boolean[], $5::int[], $6::text[], $7::text[]) AS t(id, state, open, part, email, phone)
                 ON CONFLICT (order_id) DO UPDATE SET state = excluded.state, open = excluded.open, updated_at = excluded.updated_at, part = excluded.part",
            )
            .bind(os.iter().map(|o| o.id.as_str()).collect::<Vec<_>>())
            .bind(os.iter().map(|o| o.state.as_str()).collect::<Vec<_>>())
            .bind(os.iter().map(|o| o.open).collect::<Vec<_>>())
            .bind(now)
            .bind(os.iter().map(|o| o.part).collect::<Vec<_>>())
            .bind(os.iter().map(|o| o.email.as_deref()).collect::<Vec<_>>())
            .bind(os.iter().map(|o| o.phone.as_deref()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        if !encoded.seen.is_empty() {
            let parts: Vec<i32> = encoded.seen.iter().map(|(p, _)| *p).collect();
            let keys: Vec<&[u8]> = encoded.seen.iter().map(|(_, k)| k.as_slice()).collect();
            sqlx::query("INSERT INTO seen_batches (part, seen_at, keys) SELECT p, $2, k FROM UNNEST($1::int[], $3::bytea[]) AS t(p, k)")
                .bind(parts)
                .bind(now)
                .bind(keys)
                .execute(&mut *tx)
                .await?;
        }
        if !encoded.parked.is_empty() {
            let (keys, events, expires): (Vec<&[u8]>, Vec<&str>, Vec<Instant>) =
                multiunzip(encoded.parked.iter().map(|(key, json, at, _)| (key.as_slice(), json.as_str(), *at)));
            let parts: Vec<i32> = encoded.parked.iter().map(|p| p.3).collect();
            sqlx::query(
                "INSERT INTO parked (event_key, event, expires_at, part)
                 SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::timestamptz[], $4::int[]) ON CONFLICT DO NOTHING",
            )
            .bind(keys)
            .bind(events)
            .bind(expires)
            .bind(parts)
            .execute(&mut *tx)
            .await?;
        }
        if !batch.parked_removed.is_empty() {
            let keys: Vec<Vec<u8>> = batch.parked_removed.iter().map(|k| k.to_be_bytes().to_vec()).collect();
            sqlx::query("DELETE FROM parked WHERE event_key = ANY($1::bytea[])").bind(keys).execute(&mut *tx).await?;
        }
        if !batch.tracking.is_empty() {
            // One row per number: the latest order wins within the batch too, as in the engine.
            let mut latest: HashMap<&str, (&str, i32)> = HashMap::new();
            for (number, order, part) in &batch.tracking {
                latest.insert(number.as_str(), (order.as_str(), *part));
            }
            let (numbers, orders, parts): (Vec<&str>, Vec<&str>, Vec<i32>) = multiunzip(latest.into_iter().map(|(n, (o, p))| (n, o, p)));
            sqlx::query(
                "INSERT INTO tracking (tracking_number, order_id, part) SELECT * FROM UNNEST($1::text[], $2::text[], $3::int[])
                 ON CONFLICT (tracking_number) DO UPDATE SET order_id = excluded.order_id, part = excluded.part",
            )
            .bind(numbers)
            .bind(orders)
            .bind(parts)
            .execute(&mut *tx)
            .await?;
        }
        if !encoded.unrouted.is_empty() {
            let keys: Vec<&[u8]> = encoded.unrouted.iter().map(|u| u.0.as_slice()).collect();
            let numbers: Vec<&str> = encoded.unrouted.iter().map(|u| u.1.as_str()).collect();
            let events: Vec<&str> = encoded.unrouted.iter().map(|u| u.2.as_str()).collect();
            let expires: Vec<Instant> = encoded.unrouted.iter().map(|u| u.3).collect();
            sqlx::query(
                "INSERT INTO unrouted (event_key, tracking_number, event, expires_at)
                 SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::text[], $4::timestamptz[]) ON CONFLICT DO NOTHING",
            )
            .bind(keys)
            .bind(numbers)
            .bind(events)
            .bind(expires)
            .execute(&mut *tx)
            .await?;
        }
        if !batch.unrouted_removed.is_empty() {
            let keys: Vec<Vec<u8>> = batch.unrouted_removed.iter().map(|k| k.to_be_bytes().to_vec()).collect();
            sqlx::query("DELETE FROM unrouted WHERE event_key = ANY($1::bytea[])").bind(keys).execute(&mut *tx).await?;
        }
        if !batch.messages.is_empty() {
            let ms = &batch.messages;
            let notice = |key: &str| batch.notices.get(key);
            sqlx::query(
                "INSERT INTO outbox (notification_key, order_id, kind, channel, recipient, send_at, line, next_attempt_at, created_at, message_ref, seq, decision, unrendered)
                 SELECT k, o, kd, c, r, s, l, s, $11, m, q, d, u
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::text[], $9::bigint[], $10::text[], $12::boolean[])
                   AS t(k, o, kd, c, r, s, l, m, q, d, u)
                 ON CONFLICT (notification_key) DO NOTHING",
            )
            .bind(ms.iter().map(|m| m.notification_key.as_str()).collect::<Vec<_>>())
            .bind(ms.iter().map(|m| m.order_id.as_str()).collect::<Vec<_>>())
            .bind(ms.iter().map(|m| m.kind.as_str()).collect::<Vec<_>>())
            .bind(ms.iter().map(|m| m.channel.as_str()).collect::<Vec<_>>())
            .bind(ms.iter().map(|m| m.recipient.as_deref()).collect::<Vec<_>>())
            .bind(ms.iter().map(|m| m.send_at).collect::<Vec<_>>())
            .bind(ms.iter().map(|m| m.line.as_str()).collect::<Vec<_>>())
            .bind(ms.iter().map(NewMessage::message_ref).collect::<Vec<_>>())
            .bind(ms.iter().map(|m| notice(&m.notification_key).map(|(seq, _)| i64::from(*seq))).collect::<Vec<_>>())
            .bind(ms.iter().map(|m| notice(&m.notification_key).map(|(_, json)| json.as_str())).collect::<Vec<_>>())
            .bind(now)
            .bind(ms.iter().map(|m| batch.unrendered.contains(&m.notification_key)).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        super::trace::postgres::insert(&mut tx, &encoded.trace).await?;
        super::console::postgres::insert_dead_letters(&mut tx, &batch.dead_letters, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The zero-to-production shape: select the rows `FOR UPDATE SKIP LOCKED`, mark them,
    /// commit. A row another claimer has locked is skipped, not waited for; once that one
    /// commits, the row is `sending` under a live lease and no longer matches.
    pub(super) async fn claim(&self, channel: &str, now: Instant, limit: i64, lease: &Lease, words: &Words<'_>) -> Result<Claims, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut rows = sqlx::query(&format!(
            "SELECT {CLAIM_COLUMNS} FROM outbox WHERE channel = $1 AND status = 'sending' AND lease_until <= now()
             ORDER BY lease_until, id LIMIT $2 FOR UPDATE SKIP LOCKED"
        ))
        .bind(channel)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let room = limit - rows.len() as i64;
        if room > 0 {
            rows.extend(
                sqlx::query(&format!(
                    "SELECT {CLAIM_COLUMNS} FROM outbox WHERE channel = $1 AND status IN ('pending', 'unknown') AND next_attempt_at <= $2
                     ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED"
                ))
                .bind(channel)
                .bind(now)
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
            let ids: Vec<i64> = claims.rows.iter().map(|r| r.id).collect();
            sqlx::query(
                "UPDATE outbox SET status = 'sending', claims = claims + 1, claimed_by = $2, claimed_at = now(),
                   lease_until = now() + make_interval(secs => $3) WHERE id = ANY($1)",
            )
            .bind(ids)
            .bind(&lease.holder)
            .bind(lease.length.as_secs_f64())
            .execute(&mut *tx)
            .await?;
        }
        if !worded.is_empty() {
            let (ids, lines): (Vec<i64>, Vec<&str>) = worded.iter().map(|(id, line)| (*id, line.as_str())).unzip();
            sqlx::query(
                "UPDATE outbox o SET line = v.line, unrendered = false, wording = $3
                 FROM UNNEST($1::bigint[], $2::text[]) AS v(id, line) WHERE o.id = v.id",
            )
            .bind(ids)
            .bind(lines)
            .bind(words.version)
            .execute(&mut *tx)
            .await?;
        }
        if !claims.render_failed.is_empty() {
            let (ids, reasons): (Vec<i64>, Vec<&str>) = claims.render_failed.iter().map(|(r, why)| (r.id, why.as_str())).unzip();
            sqlx::query(
                "UPDATE outbox o SET status = 'render_failed', last_error = v.why, wording = $3
                 FROM UNNEST($1::bigint[], $2::text[]) AS v(id, why) WHERE o.id = v.id",
            )
            .bind(&ids)
            .bind(&reasons)
            .bind(words.version)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO attempts (outbox_id, at, outcome, detail) SELECT id, $3, 'render_failed', why FROM UNNEST($1::bigint[], $2::text[]) AS v(id, why)",
            )
            .bind(&ids)
            .bind(&reasons)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(claims)
    }

    pub(super) async fn settle_many(&self, done: &[(&Claimed, &Settle)], now: Instant) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut written: Vec<(i64, &'static str, Option<String>)> = Vec::with_capacity(done.len());
        let mut stale = Vec::new();
        // Deliveries, the common case, in one statement.
        let sent: Vec<(&Claimed, Option<&str>)> = done
            .iter()
            .filter_map(|(row, outcome)| match outcome {
                Settle::Sent { provider_id } => Some((*row, provider_id.as_deref())),
                _ => None,
            })
            .collect();
        if !sent.is_empty() {
            let ours: Vec<i64> = sqlx::query(
                "UPDATE outbox o SET status = 'sent', attempts = o.attempts + 1, provider_id = v.provider_id, last_error = NULL, finished_at = $5
                 FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[]) AS v(id, provider_id, claimed_by, claim)
                 WHERE o.id = v.id AND o.claimed_by = v.claimed_by AND o.claims = v.claim AND o.status = 'sending'
                 RETURNING o.id",
            )
            .bind(sent.iter().map(|(row, _)| row.id).collect::<Vec<_>>())
            .bind(sent.iter().map(|(_, provider_id)| *provider_id).collect::<Vec<_>>())
            .bind(sent.iter().map(|(row, _)| row.claimed_by.as_str()).collect::<Vec<_>>())
            .bind(sent.iter().map(|(row, _)| row.claim).collect::<Vec<_>>())
            .bind(now)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
            for (row, provider_id) in &sent {
                if ours.contains(&row.id) {
                    written.push((row.id, "sent", provider_id.map(str::to_string)));
                } else {
                    stale.push(row.id);
                }
            }
        }
        for (row, outcome) in done {
            const OURS: &str = "id = $1 AND claimed_by = $2 AND claims = $3 AND status = 'sending'";
            let (changed, detail) = match outcome {
                Settle::Sent { .. } => continue,
                // Both wait for a later attempt; they differ only in the status it resumes from.
                Settle::Retry { error, at } | Settle::Unknown { error, at } => {
                    let status = if matches!(outcome, Settle::Retry { .. }) { "pending" } else { "unknown" };
                    let done = sqlx::query(&format!(
                        "UPDATE outbox SET status = $4, attempts = attempts + 1, next_attempt_at = $5, last_error = $6, unrendered = $7 WHERE {OURS}"
                    ))
                    .bind(row.id)
                    .bind(&row.claimed_by)
                    .bind(row.claim)
                    .bind(status)
                    .bind(*at)
                    .bind(error)
                    .bind(outcome.words_again(row))
                    .execute(&mut *tx)
                    .await?;
                    (done.rows_affected() == 1, Some(error.clone()))
                }
                Settle::Failed { error, suppress } => {
                    let done = sqlx::query(&format!(
                        "UPDATE outbox SET status = 'failed', attempts = attempts + 1, finished_at = $4, last_error = $5 WHERE {OURS}"
                    ))
                    .bind(row.id)
                    .bind(&row.claimed_by)
                    .bind(row.claim)
                    .bind(now)
                    .bind(error)
                    .execute(&mut *tx)
                    .await?;
                    let ours = done.rows_affected() == 1;
                    if let (true, true, Some(recipient)) = (ours, *suppress, &row.recipient) {
                        sqlx::query("INSERT INTO suppressions (channel, recipient, reason, at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                            .bind(&row.channel)
                            .bind(recipient)
                            .bind(error)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                    (ours, Some(error.clone()))
                }
                Settle::Release { at } => {
                    let back = if row.unknown { "unknown" } else { "pending" };
                    let done = sqlx::query(&format!("UPDATE outbox SET status = $4, next_attempt_at = $5, unrendered = $6 WHERE {OURS}"))
                        .bind(row.id)
                        .bind(&row.claimed_by)
                        .bind(row.claim)
                        .bind(back)
                        .bind(*at)
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
        if !written.is_empty() {
            let (ids, labels, details): (Vec<i64>, Vec<&str>, Vec<Option<&str>>) =
                multiunzip(written.iter().map(|(id, label, detail)| (*id, *label, detail.as_deref())));
            sqlx::query(
                "INSERT INTO attempts (outbox_id, at, outcome, detail)
                 SELECT id, $4, outcome, detail FROM UNNEST($1::bigint[], $2::text[], $3::text[]) AS t(id, outcome, detail)",
            )
            .bind(ids)
            .bind(labels)
            .bind(details)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(stale)
    }

    pub(super) async fn suppressed(&self, channel: &str, recipient: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT reason FROM suppressions WHERE channel = $1 AND recipient = $2")
            .bind(channel)
            .bind(recipient)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub(super) async fn suppressed_among(&self, channel: &str, recipients: &[&str]) -> Result<HashMap<String, String>, StoreError> {
        let rows = sqlx::query("SELECT recipient, reason FROM suppressions WHERE channel = $1 AND recipient = ANY($2::text[])")
            .bind(channel)
            .bind(recipients)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
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
             WHERE status IN ('pending', 'unknown', 'sending') AND send_at <= $1 GROUP BY channel ORDER BY channel",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    /// Every row, or one order's (through `outbox_notice`).
    pub(super) async fn outbox(&self, order_id: Option<&str>) -> Result<Vec<OutboxView>, StoreError> {
        let filter = if order_id.is_some() { "WHERE order_id = $1" } else { "" };
        let q = format!("SELECT {OUTBOX_VIEW_COLUMNS} FROM outbox {filter} ORDER BY send_at, id");
        let mut query = sqlx::query(&q);
        if let Some(id) = order_id {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| OutboxView::read(r, ts(r.get::<DateTime<Utc>, _>(6)))).collect())
    }

    pub(super) async fn attempts(&self, outbox_id: i64) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let rows = sqlx::query("SELECT outcome, detail FROM attempts WHERE outbox_id = $1 ORDER BY id")
            .bind(outbox_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}


/// Three columns out of rows, for binding one array per column.
pub(super) fn multiunzip<A, B, C>(rows: impl Iterator<Item = (A, B, C)>) -> (Vec<A>, Vec<B>, Vec<C>) {
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for (x, y, z) in rows {
        a.push(x);
        b.push(y);
        c.push(z);
    }
    (a, b, c)
}
