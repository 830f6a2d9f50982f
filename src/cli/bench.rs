//! `belofte bench`: one run that measures the whole pipeline against the Kafka client's own
//! limit on this machine (issue 5). Everything runs in-process: an embedded broker
//! (librdkafka's mock cluster), the daemon on a temporary SQLite file (and, for the `_pg`
//! figures, on a fresh PostgreSQL database at 127.0.0.1:5432 or `BELOFTE_TEST_PG`), a
//! loopback SMTP server and a loopback Twilio double. Each figure is the median of `reps` repetitions;
//! the table shows the spread. How each figure is measured: docs/BENCHMARKS.md.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as Wall};

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use serde_json::Value;

use belofte::channels::{EmailBackend, MemoryMailer, MemorySms, SmsBackend, SmtpConfig, Tls, TwilioConfig};
use belofte_core::domain::{Channel, Instant};
use belofte_core::event::{decode, parse_time};
use belofte::render::line::render_line;
use belofte_core::world::World;
use belofte::daemon::config::{EmailBackendKind, SmsBackendKind};
use belofte::daemon::{Clock, DaemonConfig, Overrides, Running, Shared};
use belofte::kafka::mock::EmbeddedBroker;
use belofte::kafka::KafkaConfig;
use belofte::render::Templates;
use belofte::settings::{self, Settings};
use belofte::simulate::Simulation;
use belofte::store::{Batch, NewMessage, Store};
use testkit::pg::TestDb;
use testkit::smtp::{SmtpScript, SmtpServer};
use testkit::twilio::TwilioDouble;
use testkit::TempDir;

const EVENT_TOPICS: [&str; 3] = ["orders", "warehouse", "carrier"];
/// Partitions per topic on the embedded broker: at least the demo's 3, and enough that no
/// partition of a pre-loaded topic passes 2 MB. librdkafka's mock broker keeps only the
/// last 5 MB (or 100,000 records) of a partition and silently drops older records.
fn partitions_for(events: &[Routed]) -> i32 {
    let largest = EVENT_TOPICS
        .iter()
        .map(|t| events.iter().filter(|e| e.topic == *t).map(|e| e.payload.len() + e.key.len()).sum::<usize>())
        .max()
        .unwrap_or(0);
    (largest / (2 << 20) + 1).clamp(3, 64) as i32
}
/// Tuesday 3 November 2026, 10:00 in Amsterdam: daytime, so no SMS waits for quiet hours.
const DAY: &str = "2026-11-03T10:00:00+01:00";
/// Any single wait in the bench gives up after this long (a stuck daemon, not a slow one).
const PATIENCE: Duration = Duration::from_secs(600);

/// The sizes of one run (`belofte bench` flags).
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Repetitions of every measurement; the figure is their median.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Events for raw consume and the pipeline (the same records for both).
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Events for the engine alone (decode + decide + render, as `simulate`).
    #[arg(long, default_value_t = 500_000)]
    pub engine_events: u64,
    /// Offered load of the latency run, events per second ...
    #[arg(long, default_value_t = 5_000)]
    pub rate: u64,
    /// ... for this many seconds.
    #[arg(long, default_value_t = 10)]
    pub latency_secs: u64,
    /// Open orders covered by the warehouse incident of the fan-out run.
    #[arg(long, default_value_t = 100_000)]
    pub fanout_orders: u64,
    /// Messages per channel in the outbox of the dispatch run.
    #[arg(long, default_value_t = 2_000)]
    pub dispatch_messages: u64,
    /// Open orders in state for the memory figure.
    #[arg(long, default_value_t = 1_000_000)]
    pub rss_orders: u64,
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub templates: Option<PathBuf>,
    /// Write the medians as JSON to this file (a figure not measured is `null`).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Measure only these, comma-separated: engine, pipeline (with raw consume), latency,
    /// fanout, dispatch, memory, resume. Default: all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// The daemon keeps every order's trace (`[trace] keep`): `--keep-trace false`
    /// measures what storing it costs.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub keep_trace: bool,
    /// `session.timeout.ms` of the resume run's daemons [the configuration's: librdkafka's
    /// 45000 unless `[kafka.properties]` sets it].
    #[arg(long)]
    pub session_timeout_ms: Option<u64>,
    /// The resume run against this broker (`bootstrap.servers`) instead of the embedded one,
    /// which does not honour static membership; its topics are created if missing.
    #[arg(long)]
    pub brokers: Option<String>,
}

/// One figure: its JSON key, the samples of each repetition, and its target.
struct Figure {
    key: &'static str,
    samples: Vec<f64>,
    target: Target,
}

#[derive(Clone, Copy)]
enum Target {
    None,
    AtLeast(f64),
    Below(f64),
}

impl Figure {
    fn new(key: &'static str, target: Target) -> Figure {
        Figure { key, samples: Vec::new(), target }
    }

    fn median(&self) -> f64 {
        let mut s = self.samples.clone();
        s.sort_by(f64::total_cmp);
        match s.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => s[n / 2],
            n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        }
    }

    fn met(&self) -> &'static str {
        let m = self.median();
        match self.target {
            Target::None => "",
            Target::AtLeast(t) if m >= t => "yes",
            Target::Below(t) if m < t => "yes",
            _ => "NO",
        }
    }
}

fn load(opts: &Options) -> Result<(Settings, Templates)> {
    let dir = settings::config_dir(opts.config.as_deref());
    let settings = settings::load(&dir).context("configuration")?;
    let tdir = settings::templates_dir(opts.templates.as_deref(), &dir);
    let templates = Templates::load(&tdir).with_context(|| format!("templates in {}", tdir.display()))?;
    Ok((settings, templates))
}

/// The daemon's SQLite file in a temporary folder.
fn db_url(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.path().join("belofte.db").display())
}

/// Which store a phase measures.
#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database of one backend, for one repetition: a SQLite file in a temporary
/// folder, or a PostgreSQL database created for it and dropped with it.
enum Db {
    Sqlite(TempDir),
    Postgres(TestDb),
}

impl Db {
    async fn fresh(backend: Backend) -> Result<Db> {
        Ok(match backend {
            Backend::Sqlite => Db::Sqlite(testkit::tempdir()?),
            Backend::Postgres => Db::Postgres(TestDb::try_create().await.map_err(anyhow::Error::msg)?),
        })
    }

    fn url(&self) -> String {
        match self {
            Db::Sqlite(dir) => db_url(dir),
            Db::Postgres(db) => db.url.clone(),
        }
    }

    /// The consumer group of the daemon on it: the PostgreSQL run reads the same broker
    /// after the SQLite run, from the start, so it must not share that run's offsets.
    fn group(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "belofte-bench",
            Db::Postgres(_) => "belofte-bench-pg",
        }
    }
}

/// Whether the PostgreSQL figures can be measured: `Err` says why not (printed; the
/// figures are then `null`, the run goes on).
async fn postgres_reachable() -> Result<(), String> {
    let db = TestDb::try_create().await?;
    drop(db);
    Ok(())
}

/// One event ready to publish: where, with which key, and its event time.
struct Routed {
    topic: &'static str,
    key: String,
    payload: Vec<u8>,
    time: Instant,
}

fn route(line: &[u8]) -> Result<Routed> {
    let v: Value = serde_json::from_slice(line).context("a generated event is not JSON")?;
    let time = v.get("time").and_then(Value::as_str).and_then(parse_time).context("a generated event has no time")?;
    let (topic, key) = super::demo::topic_and_key(&v);
    Ok(Routed { topic, key, payload: line.to_vec(), time })
}

/// A realistic stream (`belofte generate`) of about `events` events, as lines.
fn stream(events: u64, seed: u64) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(events as usize * 400);
    super::generate::write_stream(&mut buf, events, 10, seed)?;
    Ok(buf)
}

fn routed(stream: &[u8]) -> Result<Vec<Routed>> {
    stream.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(route).collect()
}

/// An open order placed at `DAY` − 1 h in warehouse `tilburg`, promised a week later: no
/// timer of it comes due while the bench runs.
fn placed_line(n: u64) -> String {
    let brand = ["lumen", "hofman", "pip"][(n % 3) as usize];
    format!(
        r#"{{"specversion":"1.0","id":"bench-placed-{n}","source":"/webshop","type":"order.placed","time":"2026-11-03T09:00:00+01:00","subject":"B-{n:07}","datacontenttype":"application/json","data":{{"order_id":"B-{n:07}","brand":"{brand}","placed_at":"2026-11-03T09:00:00+01:00","customer":{{"name":"Klant {n}","email":"klant{n}@example.nl","phone":"+316{:08}","locale":"nl-NL","channels":["email","sms"]}},"shipping":{{"method":"standard","carrier":"postnl","country":"NL","postal_code":"{}AB"}},"warehouse":"tilburg","items":[{{"sku":"SKU-{}","name":"Artikel {}","qty":1}}],"promise":{{"deliver_by":"2026-11-10T22:00:00+01:00"}}}}}}"#,
        n % 100_000_000,
        1000 + n % 9000,
        n % 500,
        n % 500
    )
}

fn day() -> Result<Instant> {
    parse_time(DAY).context("the bench's start time")
}

/// Publish records fast: librdkafka batches them; `flush` waits for every acknowledgement.
fn publish(bootstrap: &str, events: &[Routed]) -> Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .context("bulk producer")?;
    for e in events {
        let mut record = BaseRecord::to(e.topic).payload(&e.payload).key(&e.key);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e).context("producing"),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).context("flushing the bulk producer")?;
    let kept = retained(bootstrap)?;
    if kept != events.len() as i64 {
        bail!("the embedded broker holds {kept} of {} records published", events.len());
    }
    Ok(())
}

/// Records the event topics hold (high minus low watermark, over every partition).
fn retained(bootstrap: &str) -> Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().context("watermark reader")?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).context("broker metadata")?;
    let mut kept = 0;
    for topic in metadata.topics().iter().filter(|t| EVENT_TOPICS.contains(&t.name())) {
        for p in topic.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic.name(), p.id(), Duration::from_secs(10)).context("watermarks")?;
            kept += high - low;
        }
    }
    Ok(kept)
}

fn broker(partitions: i32) -> Result<EmbeddedBroker> {
    let broker = EmbeddedBroker::start(partitions).context("embedded Kafka broker")?;
    broker.create_topics(&KafkaConfig::default().all_topics()).context("topics")?;
    Ok(broker)
}

/// A plain consumer that does nothing with what it reads: events/s from its first record to
/// its `n`th (group join and the first fetch are outside, as for the pipeline).
fn raw_consume(bootstrap: &str, n: usize) -> Result<f64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-raw")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .context("raw consumer")?;
    consumer.subscribe(&EVENT_TOPICS).context("subscribing")?;
    let started = Wall::now();
    let mut first = None;
    let mut got = 0;
    while got < n {
        if started.elapsed() > PATIENCE {
            bail!("raw consumer: {got} of {n} records after {PATIENCE:?}");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                first.get_or_insert_with(Wall::now);
                got += 1;
            }
            Some(Err(e)) => tracing::debug!(error = %e, "raw consumer"),
            None => {}
        }
    }
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    Ok(n as f64 / secs.max(1e-9))
}

/// Watches a running daemon from a thread of its own: every 0.5 ms it reads how many events
/// were consumed (`belofte_events_total`, counted before the commit) and how many were
/// committed (`belofte_event_seconds`, observed after the commit and the offset store), and
/// keeps every change with its instant.
struct Watch {
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<Vec<Sample>>,
}

#[derive(Clone, Copy)]
struct Sample {
    at: Wall,
    consumed: u64,
    committed: u64,
}

impl Watch {
    fn spawn(shared: Arc<Shared>) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicU64::new(0));
        let (stop2, committed2) = (Arc::clone(&stop), Arc::clone(&committed));
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            let mut last = (0, 0);
            while !stop2.load(Ordering::Relaxed) {
                let consumed = shared.metrics.counter_total("belofte_events_total") as u64;
                let done = shared.metrics.histogram_count("belofte_event_seconds");
                if (consumed, done) != last {
                    last = (consumed, done);
                    samples.push(Sample { at: Wall::now(), consumed, committed: done });
                    committed2.store(done, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            samples
        });
        Watch { stop, committed, thread }
    }

    async fn until_committed(&self, n: u64, running: &Running) -> Result<()> {
        let started = Wall::now();
        while self.committed.load(Ordering::Relaxed) < n {
            if running.is_finished() {
                bail!("the daemon stopped (see its log)");
            }
            if started.elapsed() > PATIENCE {
                bail!("{} of {n} events committed after {PATIENCE:?}", self.committed.load(Ordering::Relaxed));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<Sample>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().map_err(|_| anyhow::anyhow!("the watch thread panicked"))
    }
}

/// The daemon on the fresh database `db` against `bootstrap`, with the bench's settings.
async fn start(
    opts: &Options,
    bootstrap: String,
    db: &Db,
    clock: Clock,
    policy: impl FnOnce(&mut Settings),
    cfg: impl FnOnce(&mut DaemonConfig),
    backends: Option<(EmailBackend, SmsBackend)>,
) -> Result<Running> {
    let (mut settings, templates) = load(opts)?;
    policy(&mut settings);
    let mut c = DaemonConfig::default();
    c.kafka.brokers = bootstrap;
    c.kafka.group_id = db.group().into();
    c.kafka.properties.insert("fetch.wait.max.ms".into(), "10".into());
    c.database.url = db.url();
    c.http.listen = "127.0.0.1:0".into();
    c.trace.keep = opts.keep_trace;
    cfg(&mut c);
    let (email, sms) = match backends {
        Some((e, s)) => (Some(e), Some(s)),
        None => (None, None),
    };
    Running::start(settings, templates, c, Overrides { email, sms, clock: Some(clock) }).await.context("starting the daemon")
}

/// The daemon for a generated stream (pipeline, latency). Its manual clock stands still at
/// the first event's time and the coalescing window is 0. So every fact-driven message
/// (delay, new ETA, backorder, failed delivery) is decided, rendered and committed in the
/// transaction of its event, while no silence timer fires and no parked event expires:
/// librdkafka hands a pre-loaded backlog over partition by partition, days of event time
/// apart across the three topics, and a clock following the events would dead-letter
/// carrier events that merely arrived before their parcel's `warehouse.shipped`. With the
/// clock at the first event, weeks of later events are "from the future": the guard against
/// a producer's broken clock (`max_future_skew`) is off here, or the pipeline would measure
/// dead-lettering (it did, from the guard's arrival until 2026-12-01: 55k/s that were
/// rejections).
async fn start_for_stream(opts: &Options, bootstrap: String, db: &Db, events: &[Routed]) -> Result<Running> {
    let first = events.first().map(|e| e.time).context("an empty stream")?;
    let last = events.iter().map(|e| e.time).max().unwrap_or(first);
    let replay = |s: &mut Settings| {
        s.policy.coalesce_seconds = 0;
        s.policy.max_future_skew = (last - first) + chrono::Duration::days(1);
    };
    start(opts, bootstrap, db, Clock::manual(first), replay, |_| {}, memory()).await
}

fn memory() -> Option<(EmailBackend, SmsBackend)> {
    Some((EmailBackend::Memory(MemoryMailer::new()), SmsBackend::Memory(MemorySms::new())))
}

/// Raw consume and the pipeline on the same records of one broker: raw events/s, the
/// pipeline's on SQLite and, when `pg`, on PostgreSQL (each daemon reads every record from
/// the start, in a consumer group of its own).
async fn consume_and_pipeline(opts: &Options, events: &[Routed], pg: bool) -> Result<(f64, f64, Option<f64>)> {
    let broker = broker(partitions_for(events))?;
    publish(&broker.bootstrap(), events)?;
    let n = events.len();
    let raw = {
        let bootstrap = broker.bootstrap();
        tokio::task::spawn_blocking(move || raw_consume(&bootstrap, n)).await??
    };
    let sqlite = pipeline(opts, &broker, events, Backend::Sqlite).await?;
    let postgres = if pg { Some(pipeline(opts, &broker, events, Backend::Postgres).await?) } else { None };
    Ok((raw, sqlite, postgres))
}

/// The pipeline's events/s on a fresh database of `backend`: from the first record consumed
/// until the last is committed.
async fn pipeline(opts: &Options, broker: &EmbeddedBroker, events: &[Routed], backend: Backend) -> Result<f64> {
    let n = events.len();
    let db = Db::fresh(backend).await?;
    let running = start_for_stream(opts, broker.bootstrap(), &db, events).await?;
    let watch = Watch::spawn(Arc::clone(&running.shared));
    let waited = watch.until_committed(n as u64, &running).await;
    let samples = watch.finish()?;
    let rejected = running.shared.metrics.counter_total("belofte_dead_letters_total");
    running.shutdown().await?;
    waited?;
    // The generated stream is valid: a figure made of rejections would measure the
    // dead-letter topic, not the pipeline.
    if rejected > 0.0 {
        bail!("pipeline: {rejected} of {n} events were dead-lettered; the figure would not measure the pipeline");
    }
    let first = samples.iter().find(|s| s.consumed > 0).map(|s| s.at);
    let last = samples.iter().find(|s| s.committed >= n as u64).map(|s| s.at);
    let (Some(first), Some(last)) = (first, last) else { bail!("pipeline: no progress seen") };
    Ok(n as f64 / (last - first).as_secs_f64().max(1e-9))
}

/// Produce → committed at a steady offered load: (p50, p99) in ms.
async fn latency(opts: &Options, events: Vec<Routed>) -> Result<(f64, f64)> {
    let partitions = partitions_for(&events);
    let broker = broker(partitions)?;
    let db = Db::fresh(Backend::Sqlite).await?;
    let running = start_for_stream(opts, broker.bootstrap(), &db, &events).await?;
    let waited = Wall::now();
    while running.ingest.assigned_partitions() < EVENT_TOPICS.len() * partitions as usize {
        if waited.elapsed() > Duration::from_secs(60) {
            bail!("the daemon did not get its partitions within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let watch = Watch::spawn(Arc::clone(&running.shared));
    let n = events.len();
    let (bootstrap, rate) = (broker.bootstrap(), opts.rate);
    let sent = tokio::task::spawn_blocking(move || paced(&bootstrap, &events, rate)).await?;
    let waited = match &sent {
        Ok(_) => watch.until_committed(n as u64, &running).await,
        Err(_) => Ok(()),
    };
    let samples = watch.finish()?;
    running.shutdown().await?;
    waited?;
    let sent = sent?;
    // Events are committed in the order they were produced (per partition exactly, across
    // partitions nearly): the k-th committed event is taken to be the k-th produced.
    let mut latencies = Vec::with_capacity(n);
    let mut done = 0usize;
    for s in &samples {
        let upto = (s.committed as usize).min(n);
        for at in &sent[done.min(upto)..upto] {
            latencies.push(s.at.saturating_duration_since(*at).as_secs_f64() * 1000.0);
        }
        done = done.max(upto);
    }
    if std::env::var_os("BELOFTE_BENCH_DEBUG").is_some() {
        let t0 = sent[0];
        let mut next = 0.0;
        for s in &samples {
            let t = s.at.saturating_duration_since(t0).as_secs_f64();
            if t >= next {
                let produced = sent.iter().filter(|w| **w <= s.at).count();
                eprintln!("t={t:.2}s produced={produced} consumed={} committed={}", s.consumed, s.committed);
                next += 0.5;
            }
        }
    }
    // The first second warms the fetch sessions up; it is not the steady state.
    let warm = (opts.rate as usize).min(latencies.len() / 2);
    let mut steady = latencies.split_off(warm);
    if steady.is_empty() {
        bail!("latency: no events measured");
    }
    steady.sort_by(f64::total_cmp);
    let pct = |p: f64| steady[((steady.len() as f64 * p).ceil() as usize).clamp(1, steady.len()) - 1];
    Ok((pct(0.50), pct(0.99)))
}

/// Produce `events` at `rate`/s, each as soon as it is due; the instant of each send.
fn paced(bootstrap: &str, events: &[Routed], rate: u64) -> Result<Vec<Wall>> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // At most 5 ms of producer batching (it is inside the measured latency). Not 0: the
        // mock broker keeps each produce request as a message set in a list it searches
        // linearly on every fetch, so 50,000 one-record sets made its fetches, not belofte,
        // the bottleneck (64 % of the profile in `rd_kafka_mock_msgset_find`), and the
        // latency grew with the run. A real broker indexes offsets.
        .set("linger.ms", "5")
        .create()
        .context("paced producer")?;
    let mut sent = Vec::with_capacity(events.len());
    let start = Wall::now();
    for (i, e) in events.iter().enumerate() {
        let due = start + Duration::from_secs_f64(i as f64 / rate.max(1) as f64);
        let now = Wall::now();
        if due > now {
            producer.poll(Duration::ZERO);
            std::thread::sleep(due - now);
        }
        sent.push(Wall::now());
        producer.send(BaseRecord::to(e.topic).payload(&e.payload).key(&e.key)).map_err(|(e, _)| e).context("producing")?;
    }
    producer.flush(Duration::from_secs(60)).context("flushing the paced producer")?;
    Ok(sent)
}

/// A warehouse incident covering `orders` open orders on a fresh database of `backend`:
/// seconds from producing it until the transaction holding every covered order's messages
/// has committed.
async fn fanout(opts: &Options, orders: u64, backend: Backend) -> Result<f64> {
    let placed: Vec<Routed> = (0..orders).map(|n| route(placed_line(n).as_bytes())).collect::<Result<_>>()?;
    let broker = Arc::new(broker(partitions_for(&placed))?);
    publish(&broker.bootstrap(), &placed)?;
    drop(placed);
    let db = Db::fresh(backend).await?;
    // No coalescing window: the 2 minutes are policy, not work, and with them the messages
    // would wait for the clock instead of the machine.
    let running = start(opts, broker.bootstrap(), &db, Clock::manual(day()?), |s| s.policy.coalesce_seconds = 0, |_| {}, memory()).await?;
    let watch = Watch::spawn(Arc::clone(&running.shared));
    let result = async {
        watch.until_committed(orders, &running).await?;
        let enqueued = running.shared.metrics.counter_total("belofte_messages_enqueued_total");
        let incident = format!(
            r#"{{"specversion":"1.0","id":"bench-incident","source":"/warehouse/tilburg","type":"warehouse.incident","time":"{DAY}","subject":"tilburg","datacontenttype":"application/json","data":{{"warehouse":"tilburg","reason":"system_outage","expected_recovery_at":"2026-11-13T10:00:00+01:00"}}}}"#
        );
        let t0 = Wall::now();
        let b = Arc::clone(&broker);
        tokio::task::spawn_blocking(move || b.produce("warehouse", Some(b"tilburg"), incident.as_bytes())).await??;
        watch.until_committed(orders + 1, &running).await?;
        let secs = t0.elapsed().as_secs_f64();
        let added = running.shared.metrics.counter_total("belofte_messages_enqueued_total") - enqueued;
        // Email and SMS per covered order at least (plus vouchers and escalations).
        if added < 2.0 * orders as f64 {
            bail!("fan-out: only {added} messages for {orders} orders");
        }
        Ok(secs)
    }
    .await;
    watch.finish()?;
    running.shutdown().await?;
    result
}

/// An outbox of `m` due messages of one channel: `m` orders each told of a warehouse delay,
/// decided by the engine and rendered exactly as the processor does.
async fn prefill(opts: &Options, db: &Db, channel: Channel, m: u64) -> Result<Instant> {
    let (mut settings, templates) = load(opts)?;
    settings.policy.coalesce_seconds = 0;
    let policy = &settings.policy;
    let now = day()?;
    let mut world = World::new(policy);
    let mut batch = Batch::default();
    let mut latest = now;
    for n in 0..m {
        let delayed = format!(
            r#"{{"specversion":"1.0","id":"bench-delayed-{n}","source":"/warehouse/tilburg","type":"warehouse.delayed","time":"{DAY}","subject":"B-{n:07}","datacontenttype":"application/json","data":{{"order_id":"B-{n:07}","reason":"staff_shortage","expected_ship_at":"2026-11-12T10:00:00+01:00"}}}}"#
        );
        for line in [placed_line(n), delayed] {
            let event = decode(line.as_bytes()).map_err(|e| anyhow::anyhow!("bench event: {e}"))?;
            let (_, decisions) = world.ingest(event, now).map_err(|e| anyhow::anyhow!("bench event: {e}"))?;
            for d in decisions.decisions.into_iter().filter(|d| d.channel == channel) {
                let line = render_line(policy, &templates, &d, true).map_err(|e| anyhow::anyhow!("rendering: {e}"))?;
                latest = latest.max(d.send_at);
                batch.messages.push(NewMessage::of(&d, d.notification_key(), serde_json::to_string(&line)?));
            }
        }
    }
    if batch.messages.len() as u64 != m {
        bail!("dispatch: {} {} messages decided for {m} orders", batch.messages.len(), channel.as_str());
    }
    // Closed before the daemon opens it: the store is single-instance.
    let store = Store::open(&db.url()).await?;
    store.commit(&batch, now).await?;
    Ok(latest)
}

/// Messages of one channel settled `sent` per second, from the daemon's start until the
/// last of `m` prefilled messages went to the loopback provider.
async fn dispatch(opts: &Options, broker: &EmbeddedBroker, channel: Channel, m: u64, smtp_port: u16, twilio_url: &str) -> Result<f64> {
    let db = Db::fresh(Backend::Sqlite).await?;
    let due = prefill(opts, &db, channel, m).await?;
    let started = Wall::now();
    let running = start(
        opts,
        broker.bootstrap(),
        &db,
        Clock::manual(due),
        |_| {},
        |c| {
            c.email.backend = EmailBackendKind::Smtp;
            c.email.smtp = SmtpConfig { host: "127.0.0.1".into(), port: smtp_port, tls: Tls::None, timeout_secs: 5, ..SmtpConfig::default() };
            c.sms.backend = SmsBackendKind::Twilio;
            c.sms.twilio = TwilioConfig {
                base_url: twilio_url.to_string(),
                account_sid: "ACbench".into(),
                auth_token: Some("bench".into()),
                from: Some("Belofte".into()),
                timeout_secs: 5,
                ..TwilioConfig::default()
            };
        },
        None,
    )
    .await?;
    let labels = [("channel", channel.as_str()), ("result", "sent")];
    let result = async {
        while (running.shared.metrics.counter("belofte_sends_total", &labels) as u64) < m {
            let tried = running.shared.metrics.counter_total("belofte_sends_total") as u64;
            if tried >= m + 100 || started.elapsed() > PATIENCE || running.is_finished() {
                bail!("dispatch {}: {} of {m} sent ({tried} attempts)", channel.as_str(), running.shared.metrics.counter("belofte_sends_total", &labels));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(m as f64 / started.elapsed().as_secs_f64())
    }
    .await;
    running.shutdown().await?;
    result
}

/// Resident memory of this process in bytes (`VmRSS` of /proc/self/status).
fn rss_bytes() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status (Linux only)")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kb * 1024)
}

/// The child of `rss_mib_1m_orders`: a `World` with `orders` open orders, fed through
/// `World::ingest`; prints the growth of resident memory in MiB.
pub fn rss_child(opts: &Options, orders: u64) -> Result<()> {
    let (settings, _templates) = load(opts)?;
    let now = day()?;
    let before = rss_bytes()?;
    let mut world = World::new(&settings.policy);
    for n in 0..orders {
        let event = decode(placed_line(n).as_bytes()).map_err(|e| anyhow::anyhow!("bench event: {e}"))?;
        world.ingest(event, now).map_err(|e| anyhow::anyhow!("bench event: {e}"))?;
    }
    let after = rss_bytes()?;
    if world.order_count() as u64 != orders {
        bail!("rss: {} orders held of {orders}", world.order_count());
    }
    println!("{}", after.saturating_sub(before) as f64 / (1024.0 * 1024.0));
    Ok(())
}

fn rss_in_child(opts: &Options) -> Result<f64> {
    let exe = std::env::current_exe().context("the bench's own executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["bench", "--rss-child", &opts.rss_orders.to_string()]);
    if let Some(c) = &opts.config {
        cmd.arg("--config").arg(c);
    }
    if let Some(t) = &opts.templates {
        cmd.arg("--templates").arg(t);
    }
    let out = cmd.output().context("starting the memory child")?;
    if !out.status.success() {
        bail!("memory child failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().context("memory child's answer")
}

fn engine(opts: &Options, stream: &[u8], lines: usize) -> Result<f64> {
    let (settings, templates) = load(opts)?;
    let started = Wall::now();
    let summary = Simulation::new(&settings.policy, &templates).run(stream, None, &mut std::io::sink(), &mut std::io::sink(), "bench")?;
    let secs = started.elapsed().as_secs_f64();
    if summary.lines != lines as u64 || summary.render_errors > 0 {
        bail!("engine: {} of {lines} lines, {} render errors", summary.lines, summary.render_errors);
    }
    Ok(lines as f64 / secs)
}

fn step(what: &str) {
    eprint!("  {what} …");
    let _ = std::io::stderr().flush();
}

fn done(f: &Figure) {
    eprintln!(" {}", samples(f));
}

fn samples(f: &Figure) -> String {
    f.samples.iter().map(|v| fmt(*v)).collect::<Vec<_>>().join(", ")
}

fn fmt(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The whole run: measure, print the table, write the JSON.
pub fn run(opts: &Options) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run_all(opts))
}

async fn run_all(opts: &Options) -> Result<()> {
    let reps = opts.reps.max(1);
    let mut raw = Figure::new("raw_consume_eps", Target::None);
    let mut engine_f = Figure::new("engine_eps", Target::AtLeast(500_000.0));
    let mut pipeline = Figure::new("pipeline_eps", Target::AtLeast(100_000.0));
    let mut ratio = Figure::new("pipeline_ratio", Target::AtLeast(0.10));
    let mut p50 = Figure::new("latency_p50_ms", Target::None);
    let mut p99 = Figure::new("latency_p99_ms", Target::Below(50.0));
    let mut pipeline_pg = Figure::new("pipeline_pg_eps", Target::AtLeast(50_000.0));
    let mut fan = Figure::new("fanout_100k_s", Target::Below(5.0));
    let mut fan_pg = Figure::new("fanout_100k_pg_s", Target::Below(5.0));
    let mut email = Figure::new("dispatch_email_ps", Target::AtLeast(2_000.0));
    let mut sms = Figure::new("dispatch_sms_ps", Target::AtLeast(5_000.0));
    let mut rss = Figure::new("rss_mib_1m_orders", Target::Below(1024.0));
    let mut resume_static = Figure::new("resume_after_kill_s", Target::Below(5.0));
    let mut resume_dynamic = Figure::new("resume_after_kill_dynamic_s", Target::None);
    let mut first_start = Figure::new("start_to_served_s", Target::None);
    let started = Wall::now();
    eprintln!("belofte bench: {reps} repetitions on {} cores", std::thread::available_parallelism().map_or(1, |n| n.get()));

    let wanted = |phase: &str| opts.only.is_empty() || opts.only.iter().any(|p| p == phase);
    // The `_pg` figures need a server; without one they are not measured, and say why.
    let pg = if wanted("pipeline") || wanted("fanout") {
        match postgres_reachable().await {
            Ok(()) => true,
            Err(why) => {
                eprintln!("  PostgreSQL figures not measured: {why}");
                false
            }
        }
    } else {
        false
    };
    if wanted("engine") {
        let text = stream(opts.engine_events, 7)?;
        let lines = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
        step(&format!("engine ({lines} events)"));
        for _ in 0..reps {
            engine_f.samples.push(engine(opts, &text, lines)?);
        }
        done(&engine_f);
        drop(text);
    }

    if wanted("pipeline") {
        let events = routed(&stream(opts.events, 7)?)?;
        step(&format!("raw consume and pipeline ({} events)", events.len()));
        for _ in 0..reps {
            let (r, p, on_pg) = consume_and_pipeline(opts, &events, pg).await?;
            raw.samples.push(r);
            pipeline.samples.push(p);
            ratio.samples.push(p / r);
            pipeline_pg.samples.extend(on_pg);
        }
        eprintln!(
            " raw {}; pipeline {}; on PostgreSQL {}",
            samples(&raw),
            samples(&pipeline),
            if pg { samples(&pipeline_pg) } else { "not measured".into() }
        );
        drop(events);
    }

    if wanted("latency") {
        step(&format!("latency ({} events/s for {} s)", opts.rate, opts.latency_secs));
        for rep in 0..reps {
            let events = routed(&stream(opts.rate * opts.latency_secs, 11 + rep as u64)?)?;
            let (a, b) = latency(opts, events).await?;
            p50.samples.push(a);
            p99.samples.push(b);
        }
        eprintln!(" p99 {}", p99.samples.iter().map(|v| fmt(*v)).collect::<Vec<_>>().join(", "));
    }

    if wanted("fanout") {
        step(&format!("fan-out ({} orders)", opts.fanout_orders));
        for _ in 0..reps {
            fan.samples.push(fanout(opts, opts.fanout_orders, Backend::Sqlite).await?);
            if pg {
                fan_pg.samples.push(fanout(opts, opts.fanout_orders, Backend::Postgres).await?);
            }
        }
        eprintln!(" {}; on PostgreSQL {}", samples(&fan), if pg { samples(&fan_pg) } else { "not measured".into() });
    }

    if wanted("dispatch") {
        step(&format!("dispatch ({} messages per channel)", opts.dispatch_messages));
        // The same loopback peers the tests use; everything is accepted.
        let (smtp_addr, smtp) = SmtpServer::start(SmtpScript::accept_all()).await;
        let smtp_port = smtp_addr.port();
        let (twilio_url, twilio) = TwilioDouble::start([]).await;
        let b = broker(3)?;
        for _ in 0..reps {
            email.samples.push(dispatch(opts, &b, Channel::Email, opts.dispatch_messages, smtp_port, &twilio_url).await?);
            sms.samples.push(dispatch(opts, &b, Channel::Sms, opts.dispatch_messages, smtp_port, &twilio_url).await?);
        }
        drop((smtp, twilio));
        drop(b);
        eprintln!(" email {}; sms {}", email.samples.iter().map(|v| fmt(*v)).collect::<Vec<_>>().join(", "), sms.samples.iter().map(|v| fmt(*v)).collect::<Vec<_>>().join(", "));
    }

    if wanted("memory") {
        step(&format!("memory ({} orders, in a child process)", opts.rss_orders));
        for _ in 0..reps {
            rss.samples.push(rss_in_child(opts)?);
        }
        done(&rss);
    }

    if wanted("resume") {
        step("resume after a SIGKILL (belofte run as a child process), with static membership and without");
        for _ in 0..reps {
            resume_static.samples.push(super::resume::resume_after_kill(opts, true).await?.after_kill);
            // The dynamic run's first start is in a group nobody was a member of: no broker
            // holds that join (a static member's may be held, as tansu holds each of its
            // joins and syncs 3 s), so it is what the daemon itself takes to serve.
            let dynamic = super::resume::resume_after_kill(opts, false).await?;
            resume_dynamic.samples.push(dynamic.after_kill);
            first_start.samples.push(dynamic.first_start);
        }
        eprintln!(
            " static {}; dynamic {}; first start {}",
            samples(&resume_static),
            samples(&resume_dynamic),
            samples(&first_start)
        );
    }

    let figures = [raw, engine_f, pipeline, ratio, pipeline_pg, p50, p99, fan, fan_pg, email, sms, rss, resume_static, resume_dynamic, first_start];
    print_table(opts, &figures, started.elapsed());
    if let Some(path) = &opts.json {
        let map: serde_json::Map<String, Value> = figures.iter().map(|f| (f.key.to_string(), serde_json::json!(f.median()))).collect();
        std::fs::write(path, serde_json::to_string_pretty(&Value::Object(map))? + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn print_table(opts: &Options, figures: &[Figure], took: Duration) {
    println!();
    println!(
        "belofte bench — {} repetitions; {} events (raw, pipeline), {} (engine), {}/s for {} s (latency), {} orders (fan-out), {} per channel (dispatch), {} orders (memory); {:.0} s",
        opts.reps.max(1),
        opts.events,
        opts.engine_events,
        opts.rate,
        opts.latency_secs,
        opts.fanout_orders,
        opts.dispatch_messages,
        opts.rss_orders,
        took.as_secs_f64()
    );
    println!();
    println!("{:<20} {:>12} {:>25} {:>12} {:>5}", "figure", "median", "spread (min–max)", "target", "met");
    for f in figures {
        if f.samples.is_empty() {
            println!("{:<20} {:>12}", f.key, "not measured");
            continue;
        }
        let (min, max) = f.samples.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
        let target = match f.target {
            Target::None => "—".to_string(),
            Target::AtLeast(t) => format!("≥ {}", fmt(t)),
            Target::Below(t) => format!("< {}", fmt(t)),
        };
        println!("{:<20} {:>12} {:>25} {:>12} {:>5}", f.key, fmt(f.median()), format!("{} – {}", fmt(min), fmt(max)), target, f.met());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_lines_decode() {
        assert!(decode(placed_line(42).as_bytes()).is_ok());
    }

    #[test]
    fn median_of_even_and_odd() {
        let mut f = Figure::new("x", Target::AtLeast(2.0));
        f.samples = vec![3.0, 1.0, 2.0];
        assert_eq!(f.median(), 2.0);
        assert_eq!(f.met(), "yes");
        f.samples.push(10.0);
        assert_eq!(f.median(), 2.5);
    }

    #[test]
    fn rss_is_read() {
        assert!(rss_bytes().is_ok_and(|b| b > 0));
    }
}

