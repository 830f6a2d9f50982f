//! Wording versions on PostgreSQL.

use sqlx::Row;

use belofte_core::domain::Instant;

use super::{kind_of, CurrentWording, NewWording, WordingKind, WordingVersion, VERSION_COLUMNS};
use crate::store::postgres::PgStore;
use crate::store::StoreError;

fn read(r: &sqlx::postgres::PgRow) -> Result<WordingVersion, StoreError> {
    Ok(WordingVersion {
        id: r.get(0),
        kind: kind_of(r.get(1))?,
        name: r.get(2),
        body: r.get(3),
        author: r.get(4),
        at: r.get(5),
        note: r.get(6),
        diff: r.get(7),
    })
}

impl PgStore {
    pub(in crate::store) async fn publish_wording(&self, new: &NewWording<'_>, at: Instant) -> Result<i64, StoreError> {
        let r = sqlx::query(
            "INSERT INTO wording_versions (kind, name, body, author, at, note, diff) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(new.kind.as_str())
        .bind(new.name)
        .bind(new.body)
        .bind(new.author)
        .bind(at)
        .bind(new.note)
        .bind(new.diff)
        .fetch_one(&self.pool)
        .await?;
        Ok(r.get(0))
    }

    pub(in crate::store) async fn wording_versions(&self, kind: WordingKind, name: &str) -> Result<Vec<WordingVersion>, StoreError> {
        let q = format!("SELECT {VERSION_COLUMNS} FROM wording_versions WHERE kind = $1 AND name = $2 ORDER BY id DESC");
        sqlx::query(&q).bind(kind.as_str()).bind(name).fetch_all(&self.pool).await?.iter().map(read).collect()
    }

    pub(in crate::store) async fn wording_version(&self, id: i64) -> Result<Option<WordingVersion>, StoreError> {
        let q = format!("SELECT {VERSION_COLUMNS} FROM wording_versions WHERE id = $1");
        sqlx::query(&q).bind(id).fetch_optional(&self.pool).await?.as_ref().map(read).transpose()
    }

    pub(in crate::store) async fn current_wording(&self) -> Result<CurrentWording, StoreError> {
        // One statement: one snapshot, so the head and the documents agree.
        let rows = sqlx::query(
            "SELECT DISTINCT ON (kind, name) kind, name, id, body FROM wording_versions ORDER BY kind, name, id DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut current = CurrentWording::default();
        for r in rows {
            let id: i64 = r.get(2);
            current.version = current.version.max(id);
            current.documents.push((kind_of(r.get(0))?, r.get(1), id, r.get(3)));
        }
        current.documents.sort_by_key(|d| d.2);
        Ok(current)
    }

    pub(in crate::store) async fn wording_head(&self) -> Result<i64, StoreError> {
        let r = sqlx::query("SELECT COALESCE(MAX(id), 0)::bigint FROM wording_versions").fetch_one(&self.pool).await?;
        Ok(r.get(0))
    }

    pub(in crate::store) async fn retry_render_failed(&self, now: Instant) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE outbox SET status = 'pending', next_attempt_at = $1 WHERE status = 'render_failed'")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
