//! The real binary, killed with SIGKILL in the middle of a stream and started again: every
//! customer hears each message once, and nothing is lost.


use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod support;

use belofte::kafka::mock::EmbeddedBroker;
use belofte::kafka::KafkaConfig;
use support::process_config;
use testkit::smtp::{SmtpScript, SmtpServer};
use testkit::twilio::TwilioDouble;

fn order(id: &str, phone: &str) -> Vec<(&'static str, String, String)> {
    let now = chrono::Utc::now();
    let t = |d: chrono::Duration| (now + d).to_rfc3339();
    vec![
        (
            "orders",
            id.to_string(),
            format!(
                r#"{{"specversion":"1.0","id":"{id}-p","source":"/webshop","type":"order.placed","time":"{}","data":{{"order_id":"{id}","brand":"pip","placed_at":"{}","customer":{{"name":"Klant {id}","email":"{id}@example.nl","phone":"{phone}","locale":"nl-NL","channels":["email","sms"]}},"shipping":{{"method":"standard","carrier":"postnl","country":"NL","postal_code":"1011AA"}},"warehouse":"tilburg","items":[{{"sku":"S","name":"Knikkerbaan","qty":1}}],"promise":{{"deliver_by":"{}"}}}}}}"#,
                t(chrono::Duration::zero()),
                t(chrono::Duration::zero()),
                t(chrono::Duration::days(2))
            ),
        ),
        (
            "warehouse",
            id.to_string(),
            format!(
                r#"{{"specversion":"1.0","id":"{id}-d","source":"/warehouse/tilburg","type":"warehouse.delayed","time":"{}","data":{{"order_id":"{id}","reason":"staff_shortage","expected_ship_at":"{}"}}}}"#,
                t(chrono::Duration::zero()),
                t(chrono::Duration::days(5))
            ),
        ),
    ]
}

fn spawn(config_dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_belofte"))
        .args(["run", "--config"])
        .arg(config_dir)
        .args(["--templates", concat!(env!("CARGO_MANIFEST_DIR"), "/templates")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the daemon starts")
}

async fn until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_delivers_every_message_once() {
    let broker = EmbeddedBroker::start(3).expect("broker");
    broker.create_topics(&KafkaConfig::default().all_topics()).expect("topics");
    let (smtp_addr, smtp) = SmtpServer::start(SmtpScript::accept_all()).await;
    let (twilio_url, twilio) = TwilioDouble::start([]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("belofte.db").display());
    let config = process_config(dir.path(), &broker.bootstrap(), &db, "sigkill", smtp_addr.port(), &twilio_url);

    let orders: Vec<String> = (0..20).map(|i| format!("K-{i:03}")).collect();
    let publish = |ids: &[String]| {
        for (i, id) in ids.iter().enumerate() {
            for (topic, key, payload) in order(id, &format!("+316{:08}", i + 1000 * id.len())) {
                broker.produce(topic, Some(key.as_bytes()), payload.as_bytes()).expect("produce");
            }
        }
    };
    let mut child = spawn(&config);
    publish(&orders[..10]);
    until("some emails before the kill", Duration::from_secs(60), || smtp.accepted().len() >= 4).await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let delivered_before_kill = smtp.accepted().len();
    publish(&orders[10..]);

    let mut child = spawn(&config);
    until("every email after the restart", Duration::from_secs(90), || {
        let mut keys: Vec<String> = smtp.accepted().iter().filter_map(|m| m.header("X-Belofte-Key")).collect();
        keys.sort();
        keys.dedup();
        keys.len() == 20
    })
    .await;
    until("every SMS after the restart", Duration::from_secs(60), || twilio.messages().len() >= 20).await;
    // Give a duplicate the chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = child.kill();
    let _ = child.wait();

    let mails = smtp.accepted();
    let mut ids: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for m in &mails {
        ids.entry(m.header("X-Belofte-Key").expect("key")).or_default().insert(m.header("Message-ID").expect("id"));
    }
    assert_eq!(ids.len(), 20, "every email arrived");
    assert!(ids.values().all(|s| s.len() == 1), "one Message-ID per notification");
    // SMTP has no way to ask whether a message went out: the sends in flight at the kill
    // (at most the connection pool's 4) are repeated, under the same Message-ID, which
    // mailboxes keep once. Everything else arrives exactly once.
    assert!(mails.len() <= 20 + 4, "only sends in flight at the kill are repeated: {}", mails.len());
    let mut sms: Vec<(String, String)> = twilio.messages().into_iter().map(|m| (m.to, m.body)).collect();
    sms.sort();
    let n = sms.len();
    sms.dedup();
    assert_eq!(n, sms.len(), "no SMS twice");
    assert_eq!(sms.len(), 20, "every SMS arrived");
    assert!(delivered_before_kill >= 4);
}
