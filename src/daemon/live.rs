//! The wording this instance renders with, swapped while it runs: [`Live`] holds the
//! current `Arc<Wording>` (readers take a clone of the `Arc` and render with it, a swap
//! never waits for them), and [`watch`] polls the store every `[console] poll_secs` for a
//! newer published version, builds it, and swaps it in. A version that does not build here
//! (a shipped folder that differs between instances, a brand this configuration lacks) is
//! an ALERT and the wording in use stays.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::store::{Store, StoreError};
use crate::wording::{self, Baseline, Edit, PublishError, Published, Wording};

use super::Shared;

/// The current wording, shared by every task of the daemon.
pub struct Live {
    current: RwLock<Arc<Wording>>,
    /// The last published version that did not build here: not built again until another
    /// is published.
    refused: AtomicI64,
    /// Renders the fast path left to Handlebars with wordings swapped out since start.
    fallbacks_before: AtomicU64,
}

impl Live {
    pub fn new(wording: Wording) -> Live {
        Live { current: RwLock::new(Arc::new(wording)), refused: AtomicI64::new(0), fallbacks_before: AtomicU64::new(0) }
    }

    /// The wording to render with now (a render keeps it to its end, whatever is swapped).
    pub fn get(&self) -> Arc<Wording> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Its version (0: the shipped files and configuration alone).
    pub fn version(&self) -> i64 {
        self.current.read().unwrap_or_else(|e| e.into_inner()).version
    }

    /// Put `wording` in use; returns the one it replaces.
    pub fn swap(&self, wording: Wording) -> Arc<Wording> {
        let old = {
            let mut slot = self.current.write().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *slot, Arc::new(wording))
        };
        // Renders still running on the old one are not counted: a handful at most.
        self.fallbacks_before.fetch_add(old.templates.fallbacks(), Ordering::Relaxed);
        old
    }

    /// Messages the fast path left to Handlebars since start (`belofte_render_fallbacks_total`).
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks_before.load(Ordering::Relaxed) + self.get().templates.fallbacks()
    }
}

/// The wording at start-up: the baseline with the published versions, or the baseline alone
/// (with an ALERT) when they do not build here.
pub async fn initial(store: &Store, base: &Baseline, baseline: Wording) -> Result<Wording, crate::store::StoreError> {
    let current = store.current_wording().await?;
    if current.version == 0 {
        return Ok(baseline);
    }
    match Wording::build(base, &current) {
        Ok(w) => {
            tracing::info!(version = w.version, "published wording in use");
            Ok(w)
        }
        Err(problems) => {
            alert_unbuildable(current.version, &problems);
            Ok(baseline)
        }
    }
}

fn alert_unbuildable(version: i64, problems: &[crate::check::Problem]) {
    let list: Vec<String> = problems.iter().take(5).map(ToString::to_string).collect();
    tracing::error!(version, problems = problems.len(), first = ?list, "ALERT: published wording does not build on this instance; the wording in use stays");
}

/// Until shutdown: every `poll`, [`look`]; rows queued again by a swap wake the dispatchers.
pub async fn watch(shared: Arc<Shared>, store: Arc<Store>, poll: Duration, mut shutdown: watch::Receiver<bool>, wake: Arc<tokio::sync::Notify>) {
    shared.metrics.set("belofte_wording_version", &[], shared.live.version() as f64);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(poll) => {},
        }
        if *shutdown.borrow() {
            return;
        }
        match look(&shared, &store).await {
            Ok(true) => wake.notify_waiters(),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the published wording; the wording in use stays"),
        }
    }
}

/// One look at the store: when its newest version is newer than the one in use, it is
/// built and swapped in, and the rows that could not be rendered are queued again (they may
/// render now). True when rows were queued again.
pub async fn look(shared: &Shared, store: &Store) -> Result<bool, StoreError> {
    let head = store.wording_head().await?;
    let in_use = shared.live.version();
    if head == in_use || head == shared.live.refused.load(Ordering::Relaxed) {
        return Ok(false);
    }
    let current = store.current_wording().await?;
    let built = if current.version == 0 { Wording::baseline(&shared.base) } else { Wording::build(&shared.base, &current) };
    match built {
        Ok(w) => {
            let version = w.version;
            shared.live.swap(w);
            shared.metrics.set("belofte_wording_version", &[], version as f64);
            tracing::info!(version, previous = in_use, "wording swapped in");
            let again = store.retry_render_failed(shared.clock.now()).await?;
            if again > 0 {
                tracing::info!(rows = again, version, "messages that could not be rendered are queued again with the new wording");
            }
            Ok(again > 0)
        }
        Err(problems) => {
            shared.live.refused.store(current.version, Ordering::Relaxed);
            alert_unbuildable(current.version, &problems);
            Ok(false)
        }
    }
}

impl Shared {
    /// Publish through this instance (`wording::publish`), then use it here at once; the
    /// other instances pick it up at their next look.
    pub async fn publish(&self, store: &Store, edit: &Edit<'_>) -> Result<Published, PublishError> {
        let published = wording::publish(store, &self.base, edit, self.clock.now()).await?;
        look(self, store).await?;
        Ok(published)
    }

    /// Roll back through this instance (`wording::rollback`), then use it here at once.
    pub async fn rollback(&self, store: &Store, version: i64, author: &str) -> Result<Published, PublishError> {
        let published = wording::rollback(store, &self.base, version, author, self.clock.now()).await?;
        look(self, store).await?;
        Ok(published)
    }
}
