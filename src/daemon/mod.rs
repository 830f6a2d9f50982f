//! `belofte run`: the engine as a service. Kafka in, state and outbox in SQLite or
//! PostgreSQL, email, SMS and action events out; health and metrics over HTTP; clean
//! shutdown on SIGTERM.
//!
//! Tasks: one processor owns the engine's state (`process`), one dispatcher worker per
//! channel drains the outbox (`dispatch`), and the HTTP server reports (`http`). They meet
//! only in the database and a wake-up signal.

pub mod bounce;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod fallback;
pub mod feedback;
pub mod hooks;
pub mod http;
pub mod live;
pub mod metrics;
mod owned;
pub mod process;
mod retention;
mod route;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use belofte_core::domain::Channel;

use crate::channels::{EmailBackend, FileMailer, FileSms, MemoryMailer, MemorySms, SmsBackend, SmtpMailer, TwilioClient};
use crate::kafka::topology::{self, TopologyError};
use crate::kafka::{Ingest, KafkaError, Producers};
use crate::render::Templates;
use crate::settings::Settings;
use crate::store::{Store, StoreError};
use crate::wording::{Baseline, Wording};
use live::Live;

pub use clock::Clock;
pub use config::DaemonConfig;
use config::{EmailBackendKind, SmsBackendKind};
pub use metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("{0}")]
    Setup(String),
}

/// What every task reads. Only the wording changes while the daemon runs (a publish,
/// picked up by `live::watch`): render with `live.get()`, never with the settings' policy.
pub struct Shared {
    pub settings: Settings,
    /// The shipped templates and the configured policy, which published versions overlay.
    pub base: Baseline,
    pub live: Live,
    pub metrics: Metrics,
    pub clock: Clock,
}

impl Shared {
    /// The shared state over `store`: the wording in use is the published one when it builds
    /// (`live::initial`). `templates` were linted by the caller: they are the baseline's
    /// compiled form.
    pub async fn open(settings: Settings, templates: Templates, store: &Store, clock: Clock) -> Result<Shared, StoreError> {
        let base = Baseline::new(templates.files().clone(), settings.policy.clone());
        let baseline = Wording { version: 0, templates: Arc::new(templates), policy: Arc::new(settings.policy.clone()) };
        let wording = live::initial(store, &base, baseline).await?;
        Ok(Shared { settings, base, live: Live::new(wording), metrics: Metrics::default(), clock })
    }
}

/// Backends chosen by the caller instead of the configuration (tests and the demo keep
/// a handle on memory backends).
#[derive(Default)]
pub struct Overrides {
    pub email: Option<EmailBackend>,
    pub sms: Option<SmsBackend>,
    pub clock: Option<Clock>,
}

/// A started daemon.
pub struct Running {
    pub http_addr: SocketAddr,
    /// The public listener's address (`[http] public_listen`), when it is on.
    pub public_addr: Option<SocketAddr>,
    /// Records provider reports; the same code as the hooks and `belofte bounce`.
    pub feedback: Arc<feedback::Feedback>,
    pub store: Arc<Store>,
    pub shared: Arc<Shared>,
    pub ingest: Arc<Ingest>,
    shutdown: watch::Sender<bool>,
    processor: JoinHandle<Result<(), DaemonError>>,
    workers: Vec<JoinHandle<()>>,
    http: JoinHandle<()>,
    public: Option<JoinHandle<()>>,
    timeout: Duration,
}

fn email_backend(cfg: &DaemonConfig) -> Result<EmailBackend, DaemonError> {
    let setup = |e: crate::channels::ChannelError| DaemonError::Setup(format!("email: {e}"));
    Ok(match cfg.email.backend {
        EmailBackendKind::Smtp => EmailBackend::Smtp(SmtpMailer::new(&cfg.email.smtp).map_err(setup)?),
        EmailBackendKind::File => EmailBackend::File(FileMailer::new(&cfg.email.file_dir).map_err(setup)?),
        EmailBackendKind::Memory => EmailBackend::Memory(MemoryMailer::new()),
    })
}

fn sms_backend(cfg: &DaemonConfig) -> Result<SmsBackend, DaemonError> {
    let setup = |e: crate::channels::ChannelError| DaemonError::Setup(format!("sms: {e}"));
    let mut twilio = cfg.sms.twilio.clone();
    if cfg.http.public_listen.is_some() && twilio.status_callback.is_none() {
        // Twilio calls us back where the public listener is reached; the signature is
        // checked against this same URL.
        twilio.status_callback = cfg.http.twilio_status_url();
    }
    Ok(match cfg.sms.backend {
        SmsBackendKind::Twilio => SmsBackend::Twilio(TwilioClient::new(&twilio).map_err(setup)?),
        SmsBackendKind::File => SmsBackend::File(FileSms::new(&cfg.sms.file_path).map_err(setup)?),
        SmsBackendKind::Memory => SmsBackend::Memory(MemorySms::new()),
    })
}

impl Running {
    /// Start every task. Templates are linted first: a broken one stops start-up here, as do
    /// Kafka topics that are not co-partitioned (`kafka::topology`).
    pub async fn start(settings: Settings, templates: Templates, cfg: DaemonConfig, overrides: Overrides) -> Result<Running, DaemonError> {
        cfg.validate().map_err(|(key, problem)| DaemonError::Setup(format!("{key}: {problem}")))?;
        let verp = cfg.email.verp().map_err(|(key, problem)| DaemonError::Setup(format!("{key}: {problem}")))?;
        if let Some(v) = &verp {
            // A real ref, so that a template whose address would be too long stops start-up
            // here rather than every email later.
            v.encode(&belofte_feedback::message_ref("check/at/start/email/0"))
                .map_err(|e| DaemonError::Setup(format!("email.bounce_address: {e}")))?;
        }
        // Before anything is touched: topics that cannot carry ownership by partition stop us.
        // Brokers that do not answer yet do not: the daemon comes up not ready (as with any
        // broker outage), and the processor checks once they answer, before it routes an
        // event (`process::rebalance`).
        let partitions = match topology::check_copartitioned(&cfg.kafka, START_CHECK_TIMEOUT).await {
            Ok(partitions) => {
                tracing::info!(partitions, topics = ?cfg.kafka.order_keyed_topics, by_order = %cfg.kafka.by_order_topic, "kafka topics are co-partitioned");
                partitions
            }
            Err(e) if e.is_unreachable() => {
                tracing::warn!(error = %e, "kafka brokers not reachable yet; the topics are checked when they answer");
                0
            }
            Err(e) => return Err(e.into()),
        };
        let store = Arc::new(Store::open(&cfg.database.url).await?);
        let shared = Arc::new(Shared::open(settings, templates, &store, overrides.clock.unwrap_or(Clock::Wall)).await?);
        let backfilled = store.backfill_message_refs().await?;
        if backfilled > 0 {
            tracing::info!(rows = backfilled, "emails from before delivery feedback got their message ref (their bounces are matched)");
        }
        let email = match overrides.email {
            Some(e) => e,
            None => email_backend(&cfg)?,
        };
        let sms = match overrides.sms {
            Some(s) => s,
            None => sms_backend(&cfg)?,
        };
        // Nothing at start-up touches rows being sent: those of another live instance are
        // its own, and those a crash left behind are claimed again when their leases run out.
        let instance = cfg.instance_id();
        let leases = dispatch::Leases::new(
            &instance,
            &email,
            &sms,
            Producers::delivery_limit(&cfg.kafka),
            Duration::from_secs(cfg.dispatch.lease_margin_secs),
        );
        let ingest = Arc::new(Ingest::new(&cfg.kafka)?);
        let producers = Arc::new(Producers::new(&cfg.kafka)?);
        let (tx, rx) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let pauses = Arc::new(dispatch::Pauses::default());
        let console = crate::console::Console::new(&cfg.console, Arc::clone(&shared), Arc::clone(&store), Arc::clone(&pauses)).map(crate::console::router);
        let (http_addr, http) = http::serve(&cfg.http.listen, Arc::clone(&shared), Arc::clone(&ingest), Arc::clone(&store), console, rx.clone())
            .await
            .map_err(|e| DaemonError::Setup(format!("http listen {}: {e}", cfg.http.listen)))?;
        let feedback = Arc::new(feedback::Feedback::new(
            Arc::clone(&shared),
            Arc::clone(&store),
            cfg.fallback.clone(),
            verp,
            Some(Arc::clone(&wake)),
        ));
        let (public_addr, public) = match (&cfg.http.public_listen, cfg.http.twilio_status_url()) {
            (Some(listen), Some(twilio_status_url)) => {
                let settings = hooks::HookSettings {
                    twilio_auth_token: cfg.sms.twilio.auth_token.clone(),
                    twilio_account_sid: cfg.sms.twilio.account_sid.clone(),
                    twilio_status_url,
                    bounce_token: cfg.email.bounce_hook_token.clone(),
                };
                let (addr, handle) = hooks::serve(listen, Arc::clone(&feedback), settings, rx.clone())
                    .await
                    .map_err(|e| DaemonError::Setup(format!("http public_listen {listen}: {e}")))?;
                (Some(addr), Some(handle))
            }
            _ => (None, None),
        };
        let topology = route::Topology {
            by_order: cfg.kafka.by_order_topic.clone(),
            order_keyed: cfg.kafka.order_keyed_topics.clone(),
            // Known from the check (0: the brokers did not answer it yet): an instance that
            // owns no by-order partition still forwards incidents to all of them.
            partitions: i32::try_from(partitions).unwrap_or(i32::MAX),
            instance: instance_name(&cfg),
            kafka: cfg.kafka.clone(),
        };
        let processor = tokio::spawn(process::run(
            Arc::clone(&shared),
            Arc::clone(&ingest),
            Arc::clone(&producers),
            Arc::clone(&store),
            topology,
            cfg.trace.keep,
            rx.clone(),
            Arc::clone(&wake),
            retention::Sweeper::new(&cfg.database),
        ));
        let dispatcher = Arc::new(dispatch::Dispatcher::new(
            Arc::clone(&shared),
            Arc::clone(&store),
            email,
            sms,
            producers,
            cfg.dispatch.clone(),
            Arc::clone(&feedback),
            leases,
            pauses,
        ));
        let mut workers: Vec<JoinHandle<()>> = [Channel::Email, Channel::Sms, Channel::Event]
            .into_iter()
            .map(|channel| tokio::spawn(Arc::clone(&dispatcher).run(channel, rx.clone(), Arc::clone(&wake))))
            .collect();
        // Wall time whatever the clock: publishes happen in real time.
        let poll = Duration::from_secs(cfg.console.poll_secs);
        workers.push(tokio::spawn(live::watch(Arc::clone(&shared), Arc::clone(&store), poll, rx.clone(), Arc::clone(&wake))));
        // The URL is not logged: it may hold a password.
        tracing::info!(http = %http_addr, public = ?public_addr, console = cfg.console.enabled_token().is_some(), database = store.backend_name(), %instance, brokers = %cfg.kafka.brokers, "belofte is running");
        Ok(Running {
            http_addr,
            public_addr,
            feedback,
            store,
            shared,
            ingest,
            shutdown: tx,
            processor,
            workers,
            http,
            public,
            timeout: Duration::from_secs(cfg.dispatch.shutdown_timeout_secs),
        })
    }

    /// Stop every task at once, as a crash would: nothing is committed or flushed.
    pub async fn abort(self) {
        self.processor.abort();
        for w in &self.workers {
            w.abort();
        }
        self.http.abort();
        if let Some(p) = &self.public {
            p.abort();
        }
        let _ = self.processor.await;
        for w in self.workers {
            let _ = w.await;
        }
        let _ = self.http.await;
        if let Some(p) = self.public {
            let _ = p.await;
        }
        drop_off_runtime(self.ingest).await;
    }

    /// Whether the processor stopped on its own (a fatal error).
    pub fn is_finished(&self) -> bool {
        self.processor.is_finished()
    }

    /// Stop consuming, let in-flight sends finish (bounded), commit offsets, return.
    pub async fn shutdown(self) -> Result<(), DaemonError> {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        let processor = self.processor;
        let ingest = self.ingest;
        let all = async {
            let result = processor.await.map_err(|e| DaemonError::Setup(format!("processor task: {e}")))?;
            for w in self.workers {
                let _ = w.await;
            }
            let _ = self.http.await;
            if let Some(p) = self.public {
                let _ = p.await;
            }
            drop_off_runtime(ingest).await;
            result
        };
        tokio::select! {
            r = all => r,
            _ = &mut deadline => {
                tracing::warn!("shutdown took longer than dispatch.shutdown_timeout_secs; exiting with sends in flight (they are resolved at the next start)");
                Ok(())
            }
        }
    }

    /// Run until SIGTERM/SIGINT or a fatal error.
    pub async fn until_signal(mut self) -> Result<(), DaemonError> {
        tokio::select! {
            _ = stop_signal() => {
                tracing::info!("signal received: stopping");
                self.shutdown().await
            }
            r = &mut self.processor => {
                let r = r.map_err(|e| DaemonError::Setup(format!("processor task: {e}")))?;
                let _ = self.shutdown.send(true);
                r
            }
        }
    }
}

/// How long start-up waits for the brokers' answer about each topic before it leaves the
/// co-partitioning check to the processor.
const START_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How this instance is named where instances meet (the store's partition owners): its
/// static group member name when it has one, else host and process id.
fn instance_name(cfg: &DaemonConfig) -> String {
    if !cfg.kafka.group_instance_id.is_empty() {
        return cfg.kafka.group_instance_id.clone();
    }
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".to_string());
    format!("{host}/{}", std::process::id())
}

/// Returns at the first SIGTERM or SIGINT (Ctrl-C): how `belofte run` and `belofte broker`
/// are asked to stop.
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// How long stopping waits for the Kafka consumer to leave its group.
const CONSUMER_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Closing a Kafka consumer blocks (it leaves the group, commits); not on a runtime thread,
/// and not on one of the runtime's blocking threads either: a close that never returns (a
/// broker gone mid-rebalance) would then hold the runtime's shutdown forever. On a thread of
/// its own it is waited for `CONSUMER_CLOSE_TIMEOUT`, then left; the group's session timeout
/// ends the membership, and the offsets stored since the last commit are replayed (and
/// deduplicated) by the next owner.
async fn drop_off_runtime(ingest: Arc<Ingest>) {
    let (closed, done) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("belofte-kafka-close".to_string()).spawn(move || {
        drop(ingest);
        let _ = closed.send(());
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the thread that closes the Kafka consumer");
        return;
    }
    if tokio::time::timeout(CONSUMER_CLOSE_TIMEOUT, done).await.is_err() {
        tracing::warn!("the Kafka consumer did not close within 10 s; stopping without it (the group's session timeout ends its membership)");
    }
}

/// Logging: text or JSON, filter from the config (`RUST_LOG` wins when set).
pub fn init_logging(cfg: &config::LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match cfg.format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Text => builder.try_init(),
    };
}
