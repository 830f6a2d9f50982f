//! Live wording: the shipped `templates/` folder and the configured brands, overlaid with
//! the latest published version of each document in the database (`store::wording`).
//!
//! The console (and anything else) edits wording through this module only:
//! - [`Baseline`]: what ships (the template files, the policy of the configuration);
//! - [`Wording::build`]: baseline + published versions → compiled templates and policy, after
//!   the lint of `belofte check` (`check::lint_files`); any problem refuses it;
//! - [`Wording::candidate`]: the same with one document changed, stored nowhere (preview,
//!   lint on every keystroke);
//! - [`publish`]: a candidate that builds becomes a new version (who, when, note, diff);
//!   one that does not is refused with the lint's problems and nothing is stored;
//! - [`rollback`]: an earlier version's body published again ("rollback to N"): history
//!   is never rewritten;
//! - [`document`] and [`documents`]: the current text of each document, published or shipped.
//!
//! Every running daemon polls the store (`daemon::live`) and swaps in the new [`Wording`]
//! within `[console] poll_secs`.

pub mod diff;

use std::collections::BTreeMap;
use std::sync::Arc;

use belofte_core::domain::{Instant, Kind, Lang};
use belofte_core::engine::Decision;
use belofte_core::policy::Policy;

use crate::check::{self, Problem};
use crate::render::line::{render_line, Line};
use crate::render::{TemplateFiles, Templates};
use crate::settings;
use crate::store::{CurrentWording, NewWording, Store, StoreError, WordingKind, WordingVersion};

/// What ships: the template files read at start-up and the configuration's policy.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub files: TemplateFiles,
    pub policy: Policy,
}

impl Baseline {
    pub fn new(files: TemplateFiles, policy: Policy) -> Baseline {
        Baseline { files, policy }
    }
}

/// The words every message is rendered with: compiled templates and the policy with the
/// brands' published fields, as of `version` (the highest published version id; 0: the
/// baseline alone).
pub struct Wording {
    pub version: i64,
    pub templates: Arc<Templates>,
    pub policy: Arc<Policy>,
}

/// Why a publish did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The wording would not pass `belofte check`: nothing was stored.
    #[error("refused: {}", problems_text(.0))]
    Refused(Vec<Problem>),
    /// No such document (a template path outside the folder's layout, a brand that is not
    /// configured), or no such version to roll back to.
    #[error("{0}")]
    Unknown(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn problems_text(problems: &[Problem]) -> String {
    problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("; ")
}

/// A stored publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The new version's id (also the wording's new version number).
    pub version: i64,
    pub diff: String,
}

/// How messages name a published document.
pub fn document_label(kind: WordingKind, name: &str, version: Option<i64>) -> String {
    let base = match kind {
        WordingKind::Template => format!("templates/{name}"),
        WordingKind::Brand => format!("brands/{name}"),
    };
    match version {
        Some(v) => format!("{base} (version {v})"),
        None => format!("{base} (draft)"),
    }
}

impl Wording {
    /// The line of a message kept as its decision (`outbox.decision`), rendered with this
    /// wording as the dispatcher sends it (with the email's HTML part), or why it cannot be.
    pub fn render_kept(&self, decision: Option<&str>) -> Result<Line, String> {
        let json = decision.ok_or("no decision to render the message from")?;
        let d: Decision = serde_json::from_str(json).map_err(|e| format!("unreadable decision: {e}"))?;
        render_line(&self.policy, &self.templates, &d, true).map_err(|e| e.to_string())
    }

    /// The baseline with every document of `current` overlaid, linted as `belofte check`
    /// lints (templates against the resulting policy). Problems name published documents
    /// as `templates/PATH (version N)` / `brands/ID (version N)`.
    pub fn build(base: &Baseline, current: &CurrentWording) -> Result<Wording, Vec<Problem>> {
        let docs: Vec<(WordingKind, &str, Option<i64>, &str)> =
            current.documents.iter().map(|(k, n, v, b)| (*k, n.as_str(), Some(*v), b.as_str())).collect();
        build_from(base, current.version, &docs)
    }

    /// [`Wording::build`] with one document replaced by `body` (a draft: named
    /// `… (draft)` in problems), stored nowhere: what a publish of it would give.
    pub fn candidate(base: &Baseline, current: &CurrentWording, kind: WordingKind, name: &str, body: &str) -> Result<Wording, Vec<Problem>> {
        known(base, kind, name).map_err(|m| vec![Problem { template: document_label(kind, name, None), line: None, message: m }])?;
        let mut docs: Vec<(WordingKind, &str, Option<i64>, &str)> = current
            .documents
            .iter()
            .filter(|(k, n, _, _)| !(*k == kind && n == name))
            .map(|(k, n, v, b)| (*k, n.as_str(), Some(*v), b.as_str()))
            .collect();
        docs.push((kind, name, None, body));
        build_from(base, current.version, &docs)
    }

    /// The baseline alone (nothing published, or a store not read yet).
    pub fn baseline(base: &Baseline) -> Result<Wording, Vec<Problem>> {
        build_from(base, 0, &[])
    }
}

fn build_from(base: &Baseline, version: i64, docs: &[(WordingKind, &str, Option<i64>, &str)]) -> Result<Wording, Vec<Problem>> {
    let mut files = base.files.clone();
    let mut policy = base.policy.clone();
    let mut problems = Vec::new();
    for &(kind, name, v, body) in docs {
        let label = document_label(kind, name, v);
        match kind {
            WordingKind::Template => files.put(name, body.to_string(), label),
            WordingKind::Brand => match base.policy.brands.get(name) {
                Some(configured) => match settings::parse_brand_document(&label, configured, body) {
                    Ok(brand) => {
                        policy.brands.insert(name.to_string(), brand);
                    }
                    Err(e) => problems.push(settings_problem(&label, e)),
                },
                None => problems.push(Problem {
                    template: label,
                    line: None,
                    message: format!("brand {name:?} is not configured (add [brands.{name}] to the configuration first)"),
                }),
            },
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let (templates, problems) = check::lint_files(&policy, &files);
    match templates {
        Some(t) if problems.is_empty() => Ok(Wording { version, templates: Arc::new(t), policy: Arc::new(policy) }),
        _ => Err(problems),
    }
}

/// A brand document's problem as the lint reports them: `origin` holds the document, its
/// line and the key (`brands/lumen (draft):3 (key `tone`)`).
fn settings_problem(label: &str, e: settings::SettingsError) -> Problem {
    match e {
        settings::SettingsError::Invalid { origin, message } => {
            let rest = origin.strip_prefix(label).unwrap_or(&origin);
            let line = rest.strip_prefix(':').and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()).and_then(|n| n.parse().ok());
            let key = rest.find("(key").map(|i| format!("{} ", &rest[i..])).unwrap_or_default();
            Problem { template: label.to_string(), line, message: format!("{key}{message}") }
        }
        settings::SettingsError::Load(message) => Problem { template: label.to_string(), line: None, message },
    }
}

/// Whether `name` is a document of `kind` that the wording has.
fn known(base: &Baseline, kind: WordingKind, name: &str) -> Result<(), String> {
    match kind {
        WordingKind::Brand if base.policy.brands.contains_key(name) => Ok(()),
        WordingKind::Brand => {
            let ids: Vec<&str> = base.policy.brands.keys().map(String::as_str).collect();
            Err(format!("no brand {name:?}; the configured brands are {}", ids.join(", ")))
        }
        WordingKind::Template if base.files.get(name).is_some() || template_paths().iter().any(|p| p == name) => Ok(()),
        WordingKind::Template => Err(format!(
            "{name:?} is not a template: they are KIND/LANG/{{email.subject,email.txt,sms.txt}}.hbs, _voice/LANG.toml, _reasons/LANG.toml or _layout/email.html.hbs"
        )),
    }
}

/// Every path a template document may have.
fn template_paths() -> Vec<String> {
    let mut out = vec![crate::render::LAYOUT_FILE.to_string()];
    for lang in Lang::ALL {
        out.push(format!("_voice/{}.toml", lang.as_str()));
        out.push(format!("_reasons/{}.toml", lang.as_str()));
        for kind in Kind::CUSTOMER {
            for part in ["email.subject.hbs", "email.txt.hbs", "sms.txt.hbs"] {
                out.push(format!("{}/{}/{part}", kind.as_str(), lang.as_str()));
            }
        }
    }
    out
}

/// The text of a document as it is now: its latest published version, else the shipped
/// file or the configured brand (as a brand document). `None`: no such document.
pub fn document(base: &Baseline, current: &CurrentWording, kind: WordingKind, name: &str) -> Option<String> {
    if let Some((_, _, _, body)) = current.documents.iter().find(|(k, n, _, _)| *k == kind && n == name) {
        return Some(body.clone());
    }
    shipped(base, kind, name)
}

/// The shipped text of a document (before any publish).
pub fn shipped(base: &Baseline, kind: WordingKind, name: &str) -> Option<String> {
    match kind {
        WordingKind::Template => base.files.get(name).map(str::to_string),
        WordingKind::Brand => base.policy.brands.get(name).map(settings::brand_document),
    }
}

/// Every document there is, by kind and name, with the version it is at (None: shipped).
pub fn documents(base: &Baseline, current: &CurrentWording) -> BTreeMap<(WordingKind, String), Option<i64>> {
    let mut out = BTreeMap::new();
    for rel in base.files.texts().keys() {
        out.insert((WordingKind::Template, rel.clone()), None);
    }
    for id in base.policy.brands.keys() {
        out.insert((WordingKind::Brand, id.clone()), None);
    }
    for (kind, name, v, _) in &current.documents {
        out.insert((*kind, name.clone()), Some(*v));
    }
    out
}

/// A change to one document, by someone, with a note (why).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Edit<'a> {
    pub kind: WordingKind,
    pub name: &'a str,
    pub body: &'a str,
    pub author: &'a str,
    pub note: &'a str,
}

/// Publish `edit.body` as the new version of a document, if the wording with it passes the
/// lint of `belofte check`; otherwise nothing is stored and the problems are returned. The
/// diff is against the document's current text (its latest version, else what ships).
pub async fn publish(store: &Store, base: &Baseline, edit: &Edit<'_>, now: Instant) -> Result<Published, PublishError> {
    let Edit { kind, name, body, author, note } = *edit;
    known(base, kind, name).map_err(PublishError::Unknown)?;
    let current = store.current_wording().await?;
    Wording::candidate(base, &current, kind, name, body).map_err(PublishError::Refused)?;
    let before = document(base, &current, kind, name).unwrap_or_default();
    let diff = diff::unified(&before, body);
    let version = store.publish_wording(&NewWording { kind, name, body, author, note, diff: &diff }, now).await?;
    tracing::info!(kind = kind.as_str(), name, version, author, "wording published");
    Ok(Published { version, diff })
}

/// Publish an earlier version's body again, noted "rollback to N" (and checked like any
/// publish: an old version that no longer builds with today's other documents is refused).
pub async fn rollback(store: &Store, base: &Baseline, version: i64, author: &str, now: Instant) -> Result<Published, PublishError> {
    let old: WordingVersion =
        store.wording_version(version).await?.ok_or_else(|| PublishError::Unknown(format!("no wording version {version}")))?;
    let note = format!("rollback to {version}");
    let edit = Edit { kind: old.kind, name: &old.name, body: &old.body, author, note: &note };
    publish(store, base, &edit, now).await
}

/// Back to what ships (which has no version to roll back to): the shipped text published
/// again, noted "back to the shipped version".
pub async fn restore_shipped(
    store: &Store,
    base: &Baseline,
    kind: WordingKind,
    name: &str,
    author: &str,
    now: Instant,
) -> Result<Published, PublishError> {
    let body = shipped(base, kind, name).ok_or_else(|| PublishError::Unknown(format!("nothing ships as {name:?}")))?;
    publish(store, base, &Edit { kind, name, body: &body, author, note: "back to the shipped version" }, now).await
}
