//! Wording versions on SQLite (timestamps as `ts` text; ids from AUTOINCREMENT, never reused).

use sqlx::Row;

use belofte_core::domain::Instant;

use super::{kind_of, CurrentWording, NewWording, WordingKind, WordingVersion, VERSION_COLUMNS};
use crate::store::sqlite::SqliteStore;
use crate::store::{parse_ts, ts, StoreError};

fn read(r: &sqlx::sqlite::SqliteRow) -> Result<WordingVersion, StoreError> {
    Ok(WordingVersion {
        id: r.get(0),
        kind: kind_of(r.get(1))?,
        name: r.get(2),
        body: r.get(3),
        author: r.get(4),
        at: parse_ts(r.get(5))?,
        note: r.get(6),
        diff: r.get(7),
    })
}

impl SqliteStore {
    pub(in crate::store) async fn publish_wording(&self, new: &NewWording<'_>, at: Instant) -> Result<i64, StoreError> {
        let mut tx = self.write_tx().await?;
        let r = sqlx::query(
            "INSERT INTO wording_versions (kind, name, body, author, at, note, diff) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
        )
        .bind(new.kind.as_str())
        .bind(new.name)
        .bind(new.body)
        .bind(new.author)
        .bind(ts(at))
        .bind(new.note)
        .bind(new.diff)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.get(0))
    }

    pub(in crate::store) async fn wording_versions(&self, kind: WordingKind, name: &str) -> Result<Vec<WordingVersion>, StoreError> {
        let q = format!("SELECT {VERSION_COLUMNS} FROM wording_versions WHERE kind = ?1 AND name = ?2 ORDER BY id DESC");
        sqlx::query(&q).bind(kind.as_str()).bind(name).fetch_all(&self.pool).await?.iter().map(read).collect()
    }

    pub(in crate::store) async fn wording_version(&self, id: i64) -> Result<Option<WordingVersion>, StoreError> {
        let q = format!("SELECT {VERSION_COLUMNS} FROM wording_versions WHERE id = ?1");
        sqlx::query(&q).bind(id).fetch_optional(&self.pool).await?.as_ref().map(read).transpose()
    }

    pub(in crate::store) async fn current_wording(&self) -> Result<CurrentWording, StoreError> {
        // One read transaction: the head and the documents agree.
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT w.kind, w.name, w.id, w.body FROM wording_versions w
             JOIN (SELECT kind, name, MAX(id) AS id FROM wording_versions GROUP BY kind, name) latest ON latest.id = w.id
             ORDER BY w.id",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut current = CurrentWording::default();
        for r in rows {
            let id: i64 = r.get(2);
            current.version = current.version.max(id);
            current.documents.push((kind_of(r.get(0))?, r.get(1), id, r.get(3)));
        }
        Ok(current)
    }

    pub(in crate::store) async fn wording_head(&self) -> Result<i64, StoreError> {
        let r = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM wording_versions").fetch_one(&self.pool).await?;
        Ok(r.get(0))
    }

    pub(in crate::store) async fn retry_render_failed(&self, now: Instant) -> Result<u64, StoreError> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("UPDATE outbox SET status = 'pending', next_attempt_at = ?1 WHERE status = 'render_failed'")
            .bind(ts(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
