//! Wording as versioned documents: templates (by their path under `templates/`) and brands
//! (by id), each publish a new row with who, when, why and the diff against the version
//! before. Nothing is ever updated or deleted: a rollback publishes an earlier body again.
//! The latest version of each document, over the shipped files and the configuration, is
//! what every instance renders with (`crate::wording`). Queries per backend in `sqlite` and
//! `postgres`.

use belofte_core::domain::Instant;

use super::{on_backend, Store, StoreError};

mod postgres;
mod sqlite;

/// What a wording document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WordingKind {
    /// A file of the template folder, named by its path (`delayed/nl/sms.txt.hbs`,
    /// `_voice/nl.toml`, `_layout/email.html.hbs`).
    Template,
    /// A brand's editable fields as TOML (`settings::brand_document`), named by brand id.
    Brand,
}

impl WordingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WordingKind::Template => "template",
            WordingKind::Brand => "brand",
        }
    }

    pub fn parse(s: &str) -> Option<WordingKind> {
        match s {
            "template" => Some(WordingKind::Template),
            "brand" => Some(WordingKind::Brand),
            _ => None,
        }
    }
}

/// One published version of one document.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WordingVersion {
    /// Increases with every publish, over all documents: the wording's version number.
    pub id: i64,
    pub kind: WordingKind,
    pub name: String,
    pub body: String,
    pub author: String,
    pub at: Instant,
    pub note: String,
    /// Against the version before (or the shipped file / configured brand for the first),
    /// as unified-diff text (`crate::wording::diff`).
    pub diff: String,
}

/// A version to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWording<'a> {
    pub kind: WordingKind,
    pub name: &'a str,
    pub body: &'a str,
    pub author: &'a str,
    pub note: &'a str,
    pub diff: &'a str,
}

/// The latest version of every document that has one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CurrentWording {
    /// The highest version id (0: nothing was ever published).
    pub version: i64,
    /// (kind, name, version id, body) of each document's latest version.
    pub documents: Vec<(WordingKind, String, i64, String)>,
}

const VERSION_COLUMNS: &str = "id, kind, name, body, author, at, note, diff";

fn kind_of(s: &str) -> Result<WordingKind, StoreError> {
    WordingKind::parse(s).ok_or_else(|| StoreError::Corrupt { what: "wording kind".into(), message: format!("{s:?}") })
}

impl Store {
    /// Store one version; returns its id. Callers publish through `crate::wording::publish`,
    /// which lints first and refuses what does not build.
    pub async fn publish_wording(&self, new: &NewWording<'_>, at: Instant) -> Result<i64, StoreError> {
        on_backend!(self, b => b.publish_wording(new, at).await)
    }

    /// Every version of one document, newest first.
    pub async fn wording_versions(&self, kind: WordingKind, name: &str) -> Result<Vec<WordingVersion>, StoreError> {
        on_backend!(self, b => b.wording_versions(kind, name).await)
    }

    /// One version by id.
    pub async fn wording_version(&self, id: i64) -> Result<Option<WordingVersion>, StoreError> {
        on_backend!(self, b => b.wording_version(id).await)
    }

    /// The latest version of each document, and the highest version id.
    pub async fn current_wording(&self) -> Result<CurrentWording, StoreError> {
        on_backend!(self, b => b.current_wording().await)
    }

    /// The highest version id (0: nothing published): the watcher's cheap question.
    pub async fn wording_head(&self) -> Result<i64, StoreError> {
        on_backend!(self, b => b.wording_head().await)
    }

    /// Rows that could not be rendered go back to the queue: the wording changed, they may
    /// render now. Returns how many.
    pub async fn retry_render_failed(&self, now: Instant) -> Result<u64, StoreError> {
        on_backend!(self, b => b.retry_render_failed(now).await)
    }
}
