//! The real binary as several processes (issue 11). `belofte run` three times on one
//! PostgreSQL database and a six-partition broker in another process, while 5,000 orders
//! run: carrier events keyed by tracking number (some before their shipment), a carrier
//! storm and a warehouse outage. Instances are SIGKILLed and restarted under their own
//! names, the group is scaled 1 → 3 → 2, and the customers must still get exactly what
//! `simulate` decides on the same stream: nothing lost, no SMS twice, an email repeated only
//! under its own Message-ID and only for the sends in flight at a kill. The same story on
//! SQLite with one instance, killed twice.
//!
//! The daemons run on the wall clock, so the week is told in minutes: every event carries
//! the moment it is produced, and what it says (promises, ETAs, expected dates) lies days
//! ahead, as in the in-process test. No timer comes due while the test runs; every message
//! is decided by a fact.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use belofte::store::Store;
use belofte_core::domain::Instant;
use serde_json::Value;
use support::week::{assert_delivered_as_simulated, rfc, settled, week, Applied};
use support::{peers, process_config, read_by_customer, route, settings_now, simulated_with};
use testkit::smtp::SmtpScript;

const PARTITIONS: i32 = 6;
const ORDERS: usize = 5000;
/// The two fleets take turns: each is three or four processes on a machine of two cores.
static ONE_FLEET_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long the group may take to hand a killed instance's partitions on: the session
/// timeout (6 s here) and a rebalance, on a busy machine.
const SETTLE: Duration = Duration::from_secs(90);

/// What happens to the fleet after the events of a moment are produced (while they are
/// being consumed and their messages sent).
enum Act {
    Start(&'static str),
    /// SIGKILL, then the same instance started again (a pod restarted under its name).
    KillAndRestart(&'static str),
    /// SIGTERM: a clean stop, the group scaled down.
    Stop(&'static str),
}

/// The instances of one test, each a `belofte run` process logging to its own file.
struct Fleet {
    config: PathBuf,
    logs: PathBuf,
    running: BTreeMap<&'static str, Child>,
    started: usize,
}

impl Fleet {
    fn new(config: PathBuf, logs: PathBuf) -> Fleet {
        std::fs::create_dir_all(&logs).expect("log dir");
        Fleet { config, logs, running: BTreeMap::new(), started: 0 }
    }

    fn start(&mut self, name: &'static str) {
        self.started += 1;
        let log = std::fs::File::create(self.logs.join(format!("{name}-{}.log", self.started))).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_belofte"))
            .args(["run", "--config"])
            .arg(&self.config)
            .args(["--templates", concat!(env!("CARGO_MANIFEST_DIR"), "/templates")])
            .env("BELOFTE__KAFKA__GROUP_INSTANCE_ID", name)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("belofte run starts");
        self.running.insert(name, child);
    }

    fn kill(&mut self, name: &str) {
        let mut child = self.running.remove(name).expect("the instance runs");
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }

    /// SIGTERM and wait: the instance drains, commits and leaves the group, and exits 0.
    fn stop(&mut self, name: &str) {
        let mut child = self.running.remove(name).expect("the instance runs");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill -TERM");
        assert!(status.success(), "SIGTERM sent");
        let exit = wait_bounded(&mut child, Duration::from_secs(40));
        assert!(exit.is_some_and(|s| s.success()), "{name} stops cleanly on SIGTERM: {exit:?}\n{}", self.tail());
    }

    fn act(&mut self, act: &Act) {
        match *act {
            Act::Start(name) => self.start(name),
            Act::KillAndRestart(name) => {
                self.kill(name);
                self.start(name);
            }
            Act::Stop(name) => self.stop(name),
        }
    }

    /// The last lines every instance logged, for a failure's message.
    fn tail(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(&self.logs).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out += &format!("--- {}\n{}\n", entry.file_name().to_string_lossy(), lines[lines.len().saturating_sub(15)..].join("\n"));
        }
        out
    }

    fn assert_alive(&mut self) {
        let mut dead = Vec::new();
        for (name, child) in &mut self.running {
            if let Ok(Some(status)) = child.try_wait() {
                dead.push(format!("{name}: {status}"));
            }
        }
        assert!(dead.is_empty(), "instances exited by themselves: {dead:?}\n{}", self.tail());
    }

    fn stop_all(&mut self) {
        let names: Vec<&'static str> = self.running.keys().copied().collect();
        for name in names {
            self.stop(name);
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in self.running.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_bounded(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    while start.elapsed() < within {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The event as produced at `t`: the daemons compare an event's time with their own clock.
fn stamped(line: &str, t: Instant) -> String {
    let mut v: Value = serde_json::from_str(line).expect("json");
    v["time"] = Value::String(rfc(t));
    v.to_string()
}

/// Play the week of `ORDERS` orders against `fleet`, acting after each moment's events as
/// `plan` says, then check what reached the customers against `simulate`.
async fn run_week(database_url: &str, plan: &[(usize, Act)]) {
    let _turn = ONE_FLEET_AT_A_TIME.lock().await;
    let broker = support::broker(PARTITIONS);
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = process_config(dir.path(), &broker.bootstrap(), database_url, "fleet", peers.smtp_port, &peers.twilio_url);
    let mut fleet = Fleet::new(config, dir.path().join("logs"));
    // The first instance creates the schema; the test reads it only once it exists.
    fleet.start("a");
    let store = {
        let url = database_url.to_string();
        let start = std::time::Instant::now();
        loop {
            // SQLite's single-instance lock is the daemon's: the test opens beside it.
            if let Ok(s) = Store::open_beside_daemon(&url).await {
                break s;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "the database opens");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let applied = Applied::open(database_url).await;

    let moments = week(ORDERS, chrono::Utc::now());
    let mut produced: Vec<String> = Vec::new();
    let mut kills = 0;
    for (step, m) in moments.iter().enumerate() {
        let now = chrono::Utc::now();
        let lines: Vec<String> = m.lines.iter().map(|l| stamped(l, now)).collect();
        for line in &lines {
            let (topic, key) = route(line);
            broker.produce(topic, key.as_deref(), line.as_bytes()).expect("produce");
        }
        produced.extend(lines);
        for (_, act) in plan.iter().filter(|(at, _)| *at == step) {
            if matches!(act, Act::KillAndRestart(_)) {
                kills += 1;
                // Kill while messages are going out, not in a quiet moment.
                let before = peers.smtp.accepted().len();
                let start = std::time::Instant::now();
                while peers.smtp.accepted().len() == before && start.elapsed() < Duration::from_secs(5) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            fleet.act(act);
        }
        fleet.assert_alive();
        settled(&applied, &produced, PARTITIONS, SETTLE).await;
    }
    let until = chrono::Utc::now() + chrono::Duration::seconds(1);
    let expected = simulated_with(&settings_now(), &produced, until);
    let want_email = expected.iter().filter(|l| l.channel == "email").count();
    let want_sms = expected.iter().filter(|l| l.channel == "sms").count();
    let want_events = expected.iter().filter(|l| l.channel == "event").count();
    assert!(want_email >= 1000 && want_sms >= 500 && want_events >= 20, "the week decides enough to compare: {want_email} {want_sms} {want_events}");
    for incident in ["storm-1", "outage-1"] {
        assert!(expected.iter().any(|l| l.cause == incident), "{incident} decides messages");
    }

    let want_rows = expected.len();
    let start = std::time::Instant::now();
    let rows = loop {
        let rows = store.outbox().await.expect("outbox");
        if rows.len() >= want_rows && rows.iter().all(|r| r.status == "sent") {
            break rows;
        }
        if start.elapsed() > SETTLE {
            let mut statuses: BTreeMap<(String, String), usize> = BTreeMap::new();
            for r in &rows {
                *statuses.entry((r.channel.clone(), r.status.clone())).or_default() += 1;
            }
            let mut want: BTreeMap<String, usize> = BTreeMap::new();
            for l in &expected {
                *want.entry(l.channel.clone()).or_default() += 1;
            }
            panic!("every outbox row sent: {} rows {statuses:?}, simulate decides {want:?}\n{}", rows.len(), fleet.tail());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    fleet.assert_alive();
    eprintln!(
        "{} events, {} kills: {} emails accepted for {want_email}, {} SMS posted for {want_sms}, {want_events} actions",
        produced.len(),
        kills,
        peers.smtp.accepted().len(),
        peers.twilio.posts().len()
    );
    // Each kill may cut off at most one send per SMTP connection (a pool of 4).
    assert_delivered_as_simulated(&rows, &expected, &peers, &broker, read_by_customer, 4 * kills);
    fleet.stop_all();
    store.close().await;
    applied.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_postgres_killed_restarted_and_scaled_deliver_what_simulate_decides() {
    let db = testkit::pg::TestDb::create().await;
    run_week(
        &db.url,
        &[
            (1, Act::Start("b")),
            (1, Act::Start("c")),
            (3, Act::KillAndRestart("b")),
            (5, Act::KillAndRestart("a")),
            (6, Act::KillAndRestart("c")),
            (7, Act::Stop("a")),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_on_sqlite_killed_twice_delivers_what_simulate_decides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("belofte.db").display());
    run_week(&url, &[(3, Act::KillAndRestart("a")), (6, Act::KillAndRestart("a"))]).await;
}
