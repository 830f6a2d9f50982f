//! `belofte bench`'s resume figures: how long the orders of a `belofte run` that was
//! SIGKILLed stay unserved once it is started again, with static membership
//! (`kafka.group_instance_id`, as a pod restarted under its name) and without.
//!
//! The daemon is a real child process on a SQLite file, against the embedded broker in the
//! bench's process. An order placed after the restart counts as served once its event is in
//! the database (its state, seen id and offset are written in one transaction). Until then
//! the group holds the killed member's partitions: a broker that honours static membership
//! (KIP-345) hands them to the restarted member at once; otherwise they wait for the
//! session timeout.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant as Wall};

use anyhow::{bail, Context, Result};
use belofte::kafka::mock::EmbeddedBroker;
use belofte::kafka::KafkaConfig;
use belofte::settings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use super::bench::Options;

/// Partitions of every topic: co-partitioned, as the daemon requires.
const PARTITIONS: i32 = 3;

/// The longest a resume may take before the run is called broken: several session timeouts.
const GIVE_UP: Duration = Duration::from_secs(300);

/// What one run measures, in seconds.
pub(super) struct Resumed {
    /// From the first start, in a group nobody was a member of, until its first order is
    /// committed: the daemon's own start plus one join the broker has no reason to hold.
    pub first_start: f64,
    /// From the restart after the SIGKILL until the next order is committed.
    pub after_kill: f64,
}

/// One run: a fresh database and group (and, unless `--brokers` names a broker, a fresh
/// embedded one); start, serve one order, SIGKILL, start again at once, and time the next
/// order.
pub(super) async fn resume_after_kill(opts: &Options, static_membership: bool) -> Result<Resumed> {
    let broker = Broker::for_run(opts).await?;
    let dir = testkit::tempdir().context("temporary folder")?;
    // Ids of their own: an external broker keeps the orders of earlier runs, which a new
    // group reads too.
    let run = format!("{}-{}", if static_membership { "static" } else { "dynamic" }, chrono::Utc::now().timestamp_micros());
    let config = config(opts, dir.path(), &broker.bootstrap(), &run)?;
    let db = format!("sqlite://{}", dir.path().join("belofte.db").display());
    let templates = settings::templates_dir(opts.templates.as_deref(), &settings::config_dir(opts.config.as_deref()));

    let started = Wall::now();
    let mut child = Daemon::spawn(&config, &templates, static_membership)?;
    let pool = open_when_created(&db, &mut child).await?;
    let first = broker.place(&format!("resume-{run}-0"))?;
    served(&pool, first, &mut child).await?;
    let first_start = started.elapsed().as_secs_f64();
    child.kill();

    let restarted = Wall::now();
    let mut child = Daemon::spawn(&config, &templates, static_membership)?;
    let second = broker.place(&format!("resume-{run}-1"))?;
    served(&pool, second, &mut child).await?;
    let after_kill = restarted.elapsed().as_secs_f64();
    child.kill();
    pool.close().await;
    Ok(Resumed { first_start, after_kill })
}

/// Where the resume run's events go: the embedded broker (the mock cluster, which does not
/// honour static membership), or a real one given with `--brokers`.
enum Broker {
    Embedded(EmbeddedBroker),
    External { bootstrap: String, producer: BaseProducer },
}

impl Broker {
    async fn for_run(opts: &Options) -> Result<Broker> {
        let Some(bootstrap) = &opts.brokers else {
            let broker = EmbeddedBroker::start(PARTITIONS).context("embedded Kafka broker")?;
            broker.create_topics(&KafkaConfig::default().all_topics()).context("topics")?;
            return Ok(Broker::Embedded(broker));
        };
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", bootstrap).create().context("a Kafka admin client")?;
        let topics: Vec<String> = KafkaConfig::default().all_topics().iter().map(|t| t.to_string()).collect();
        let new: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1))).collect();
        let results = admin.create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))).await.context("creating topics")?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => bail!("creating topic {topic} on {bootstrap}: {code}"),
            }
        }
        let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().context("a Kafka producer")?;
        Ok(Broker::External { bootstrap: bootstrap.clone(), producer })
    }

    fn bootstrap(&self) -> String {
        match self {
            Broker::Embedded(b) => b.bootstrap(),
            Broker::External { bootstrap, .. } => bootstrap.clone(),
        }
    }

    /// An order placed now, keyed by its id; returns the id.
    fn place(&self, id: &str) -> Result<String> {
        let now = chrono::Utc::now().to_rfc3339();
        let deliver_by = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
        let event = format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"/webshop","type":"order.placed","time":"{now}","datacontenttype":"application/json","data":{{"order_id":"{id}","brand":"lumen","placed_at":"{now}","customer":{{"name":"Klant","email":"{id}@example.nl","phone":"+31612345678","locale":"nl-NL","channels":["email"]}},"shipping":{{"method":"standard","carrier":"postnl","country":"NL","postal_code":"1011AB"}},"warehouse":"tilburg","items":[{{"sku":"S","name":"Ding","qty":1}}],"promise":{{"deliver_by":"{deliver_by}"}}}}}}"#
        );
        match self {
            Broker::Embedded(b) => {
                b.produce("orders", Some(id.as_bytes()), event.as_bytes()).context("producing an order")?;
            }
            Broker::External { producer, .. } => {
                producer.send(BaseRecord::to("orders").key(id).payload(&event)).map_err(|(e, _)| e).context("producing an order")?;
                producer.flush(Duration::from_secs(10)).context("the order acknowledged")?;
            }
        }
        Ok(id.to_string())
    }
}

/// `default.toml` of the bench's configuration and a `local.toml` naming this run's broker,
/// database and group.
fn config(opts: &Options, root: &Path, bootstrap: &str, run: &str) -> Result<PathBuf> {
    let source = settings::config_dir(opts.config.as_deref());
    let config = root.join("config");
    std::fs::create_dir_all(&config).context("config folder")?;
    std::fs::copy(source.join("default.toml"), config.join("default.toml")).with_context(|| format!("{}/default.toml", source.display()))?;
    let session = opts.session_timeout_ms.map(|ms| format!("\"session.timeout.ms\" = \"{ms}\"\n")).unwrap_or_default();
    let group = format!("bench-resume-{run}");
    let local = format!(
        "[database]\nurl = \"sqlite://{db}\"\n[kafka]\nbrokers = \"{brokers}\"\ngroup_id = \"{group}\"\n[kafka.properties]\n\"fetch.wait.max.ms\" = \"10\"\n{session}\
         [email]\nbackend = \"memory\"\n[sms]\nbackend = \"memory\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
        db = root.join("belofte.db").display(),
        brokers = bootstrap,
    );
    std::fs::write(config.join("local.toml"), local).context("local.toml")?;
    Ok(config)
}

/// A `belofte run` child, killed with SIGKILL when dropped.
struct Daemon(Child);

impl Daemon {
    fn spawn(config: &Path, templates: &Path, static_membership: bool) -> Result<Daemon> {
        let exe = std::env::current_exe().context("the bench's own executable")?;
        let mut cmd = Command::new(exe);
        cmd.arg("run").arg("--config").arg(config).arg("--templates").arg(templates);
        cmd.env("RUST_LOG", "error").stdout(Stdio::null()).stderr(Stdio::null());
        if static_membership {
            cmd.env("BELOFTE__KAFKA__GROUP_INSTANCE_ID", "bench-resume");
        }
        Ok(Daemon(cmd.spawn().context("starting belofte run")?))
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Ok(Some(status)) = self.0.try_wait() {
            bail!("belofte run exited during the resume run: {status}");
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn open_when_created(url: &str, child: &mut Daemon) -> Result<sqlx::SqlitePool> {
    let start = Wall::now();
    loop {
        child.check_alive()?;
        if let Ok(pool) = sqlx::SqlitePool::connect(url).await {
            if sqlx::query("SELECT count(*) FROM orders").fetch_one(&pool).await.is_ok() {
                return Ok(pool);
            }
            pool.close().await;
        }
        if start.elapsed() > GIVE_UP {
            bail!("the daemon's database was not created within {GIVE_UP:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Until the order is in the database (its state, seen id and offset commit together).
async fn served(pool: &sqlx::SqlitePool, order_id: String, child: &mut Daemon) -> Result<()> {
    let start = Wall::now();
    loop {
        child.check_alive()?;
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE order_id = ?1").bind(&order_id).fetch_one(pool).await.unwrap_or(0);
        if stored > 0 {
            return Ok(());
        }
        if start.elapsed() > GIVE_UP {
            bail!("the order was not served within {GIVE_UP:?} of the restart");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
