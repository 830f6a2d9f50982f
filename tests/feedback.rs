//! Delivery feedback, end to end on real parts: the daemon with an embedded Kafka broker, a
//! loopback SMTP server and the Twilio double; status callbacks signed as Twilio signs them,
//! and bounces as Postfix wrote them (crates/belofte-feedback/tests/fixtures, with the
//! addresses of these stories put in).

mod backends;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use belofte::channels::{SmtpConfig, Tls, TwilioConfig};
use belofte::daemon::config::{EmailBackendKind, SmsBackendKind};
use belofte::daemon::{Clock, DaemonConfig, Overrides, Running};
use belofte::kafka::mock::EmbeddedBroker;
use belofte::kafka::KafkaConfig;
use belofte::render::Templates;
use belofte::settings::{self, Settings};
use backends::Db;
use belofte::store::OutboxView;
use belofte_core::domain::{Channel, Kind};
use belofte_feedback::{expected_twilio_signature, message_ref, Verp};
use serde_json::Value;
use testkit::smtp::{DataAnswer, SmtpHandle, SmtpScript, SmtpServer};
use testkit::twilio::{TwilioDouble, TwilioHandle};

const AUTH_TOKEN: &str = "token-secret";
const ACCOUNT: &str = "ACtest";
/// Where Twilio reaches the public listener (a TLS proxy in front of it, in production).
const PUBLIC_BASE: &str = "https://hooks.lumen.example";
const BOUNCE_TEMPLATE: &str = "bounce+{token}@bounce.example";
const BOUNCE_SECRET: &str = "a-secret-of-at-least-sixteen-bytes";
const HOOK_TOKEN: &str = "hook-token-for-the-mta";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn templates() -> Templates {
    Templates::load(&root().join("templates")).expect("templates load")
}

/// Settings for stories told "now": no coalescing wait, no quiet hours, no cap. `only`: a
/// delay is told on this channel only, so that the other one is what a fallback adds.
fn settings(only: Option<Channel>) -> Settings {
    let mut s = settings_with_quiet_hours(only);
    s.policy.quiet_from = s.policy.quiet_until;
    s
}

/// The same, with the shipped quiet hours (no SMS from 21:00 to 08:00).
fn settings_with_quiet_hours(only: Option<Channel>) -> Settings {
    let mut s = settings::load(&root().join("config")).expect("config loads");
    s.policy.coalesce_seconds = 0;
    s.policy.max_notices_per_day = 100;
    if let Some(channel) = only {
        s.policy.channels.insert(Kind::Delayed, vec![channel]);
    }
    s
}

struct World {
    broker: EmbeddedBroker,
    smtp: SmtpHandle,
    twilio: TwilioHandle,
    running: Running,
    clock: Option<Clock>,
    db_url: String,
    /// The database, when the world made its own (SQLite in a temporary folder).
    _own_db: Option<Db>,
}

async fn world(group: &str, only: Option<Channel>, smtp: SmtpScript) -> World {
    world_with(group, settings(only), smtp, None).await
}

async fn world_with(group: &str, settings: Settings, smtp: SmtpScript, clock: Option<Clock>) -> World {
    let db = Db::sqlite().await;
    let mut w = world_on(&db, group, settings, smtp, clock).await;
    w._own_db = Some(db);
    w
}

async fn world_on(db: &Db, group: &str, settings: Settings, smtp: SmtpScript, clock: Option<Clock>) -> World {
    let broker = EmbeddedBroker::start(1).expect("embedded broker");
    broker.create_topics(&KafkaConfig::default().all_topics()).expect("topics");
    let (smtp_addr, smtp) = SmtpServer::start(smtp).await;
    let (twilio_url, twilio) = TwilioDouble::start(vec![]).await;
    let mut cfg = DaemonConfig::default();
    cfg.kafka.brokers = broker.bootstrap();
    cfg.kafka.group_id = group.into();
    cfg.kafka.properties.insert("fetch.wait.max.ms".into(), "10".into());
    cfg.database.url = db.url.clone();
    cfg.email.backend = EmailBackendKind::Smtp;
    cfg.email.smtp = SmtpConfig { host: "127.0.0.1".into(), port: smtp_addr.port(), tls: Tls::None, timeout_secs: 5, ..SmtpConfig::default() };
    cfg.email.bounce_address = Some(BOUNCE_TEMPLATE.into());
    cfg.email.bounce_secret = Some(BOUNCE_SECRET.into());
    cfg.email.bounce_hook_token = Some(HOOK_TOKEN.into());
    cfg.sms.backend = SmsBackendKind::Twilio;
    cfg.sms.twilio = TwilioConfig {
        base_url: twilio_url,
        account_sid: ACCOUNT.into(),
        auth_token: Some(AUTH_TOKEN.into()),
        from: Some("Lumen".into()),
        timeout_secs: 2,
        ..TwilioConfig::default()
    };
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.http.public_listen = Some("127.0.0.1:0".into());
    cfg.http.public_base_url = Some(PUBLIC_BASE.into());
    cfg.dispatch.poll_ms = 20;
    cfg.dispatch.backoff_base_ms = 20;
    cfg.dispatch.backoff_cap_ms = 200;
    let running = Running::start(settings, templates(), cfg, Overrides { clock: clock.clone(), ..Overrides::default() }).await.expect("daemon starts");
    World { broker, smtp, twilio, running, clock, db_url: db.url.clone(), _own_db: None }
}

impl World {
    fn public(&self) -> SocketAddr {
        self.running.public_addr.expect("the public listener is on")
    }

    /// An order placed now and delayed at once, by a customer who agreed to email and SMS.
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.as_ref().map_or_else(chrono::Utc::now, Clock::now)
    }

    fn delayed_order(&self, id: &str, channels: &[&str]) {
        let now = self.now();
        let t = |d: chrono::Duration| (now + d).to_rfc3339();
        let channels = serde_json::to_string(channels).expect("json");
        let placed = format!(
            r#"{{"specversion":"1.0","id":"{id}-p","source":"/webshop","type":"order.placed","time":"{}","data":{{"order_id":"{id}","brand":"lumen","placed_at":"{}","customer":{{"name":"Daan","email":"{}","phone":"+31612345511","locale":"nl-NL","channels":{channels}}},"shipping":{{"method":"standard","carrier":"postnl","country":"NL","postal_code":"1011AA"}},"warehouse":"tilburg","items":[{{"sku":"S","name":"Lamp","qty":1}}],"promise":{{"deliver_by":"{}"}}}}}}"#,
            t(chrono::Duration::zero()),
            t(chrono::Duration::zero()),
            email_of(id),
            t(chrono::Duration::days(2))
        );
        let delayed = format!(
            r#"{{"specversion":"1.0","id":"{id}-d","source":"/warehouse/tilburg","type":"warehouse.delayed","time":"{}","data":{{"order_id":"{id}","reason":"capacity","expected_ship_at":"{}"}}}}"#,
            t(chrono::Duration::zero()),
            t(chrono::Duration::days(6))
        );
        self.broker.produce("orders", Some(id.as_bytes()), placed.as_bytes()).expect("produce");
        self.broker.produce("warehouse", Some(id.as_bytes()), delayed.as_bytes()).expect("produce");
    }

    /// The warehouse expects to ship even later: the promise slips again.
    fn slips_again(&self, id: &str, n: u32, ship_in_days: i64) {
        let now = chrono::Utc::now();
        let event = format!(
            r#"{{"specversion":"1.0","id":"{id}-d{n}","source":"/warehouse/tilburg","type":"warehouse.delayed","time":"{}","data":{{"order_id":"{id}","reason":"capacity","expected_ship_at":"{}"}}}}"#,
            now.to_rfc3339(),
            (now + chrono::Duration::days(ship_in_days)).to_rfc3339()
        );
        self.broker.produce("warehouse", Some(id.as_bytes()), event.as_bytes()).expect("produce");
    }

    async fn rows(&self, order: &str) -> Vec<OutboxView> {
        self.running.store.outbox().await.expect("outbox").into_iter().filter(|r| r.order_id == order).collect()
    }

    async fn row(&self, order: &str, channel: &str) -> OutboxView {
        self.rows(order).await.into_iter().find(|r| r.channel == channel).expect("the row")
    }

    async fn until(&self, what: &str, f: impl Fn(&[OutboxView]) -> bool, order: &str) -> Vec<OutboxView> {
        let start = std::time::Instant::now();
        loop {
            let rows = self.rows(order).await;
            if f(&rows) {
                return rows;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}: {rows:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The SMS as Twilio got it, with the callback URL Twilio will call.
    async fn sms_sent(&self, order: &str) -> (String, String) {
        let rows = self.until("the SMS to go out", |r| r.iter().any(|r| r.channel == "sms" && r.status == "sent"), order).await;
        let row = rows.into_iter().find(|r| r.channel == "sms").expect("sms row");
        let post = self
            .twilio
            .posts()
            .into_iter()
            .find(|p| p.field("StatusCallback").is_some_and(|u| u.contains(&urlencode(&row.notification_key))))
            .expect("the SMS was posted to Twilio with its status callback");
        (row.provider_id.expect("sid"), post.field("StatusCallback").expect("callback").to_string())
    }
}

fn email_of(order: &str) -> String {
    format!("{}@example.nl", order.to_ascii_lowercase())
}

fn urlencode(s: &str) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("url");
    url.query_pairs_mut().append_pair("k", s);
    url.query().unwrap_or("").trim_start_matches("k=").to_string()
}

/// The form of a status callback, as Twilio posts it.
fn callback_form(sid: &str, status: &str, error: Option<u32>) -> Vec<(String, String)> {
    let mut form = vec![
        ("AccountSid", ACCOUNT.to_string()),
        ("ApiVersion", "2010-04-01".to_string()),
        ("From", "Lumen".to_string()),
        ("MessageSid", sid.to_string()),
        ("MessageStatus", status.to_string()),
        ("SmsSid", sid.to_string()),
        ("SmsStatus", status.to_string()),
        ("To", "+31612345511".to_string()),
    ];
    if let Some(code) = error {
        form.push(("ErrorCode", code.to_string()));
    }
    form.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Posts a callback to the public listener as Twilio would call `url` (the path and query of
/// the public URL, at the local address), with `signature` as `X-Twilio-Signature`.
async fn post_callback(public: SocketAddr, url: &str, form: &[(String, String)], signature: Option<String>) -> u16 {
    let path_and_query = url.strip_prefix(PUBLIC_BASE).expect("a URL of the public base");
    let mut req = reqwest::Client::new().post(format!("http://{public}{path_and_query}")).form(form);
    if let Some(s) = signature {
        req = req.header("X-Twilio-Signature", s);
    }
    req.send().await.expect("the public listener answers").status().as_u16()
}

/// Signed exactly as Twilio signs: HMAC-SHA1 of the full URL and the sorted parameters.
async fn signed_callback(public: SocketAddr, url: &str, form: &[(String, String)]) -> u16 {
    post_callback(public, url, form, Some(expected_twilio_signature(AUTH_TOKEN, url, form))).await
}

/// A fixture (Postfix, Exim, ARF) with the VERP address of `key` and the customer's address put in.
fn bounce_fixture(name: &str, key: &str, fixture_recipient: &str, recipient: &str) -> String {
    let text = std::fs::read_to_string(root().join("crates/belofte-feedback/tests/fixtures").join(name)).expect("fixture");
    let verp = Verp::new(BOUNCE_TEMPLATE, BOUNCE_SECRET.as_bytes()).expect("verp").encode(&message_ref(key)).expect("address");
    replace_verp(&text, &verp).replace(fixture_recipient, recipient)
}

/// Every `bounce+…@bounce.example` of the fixture becomes `ours`.
fn replace_verp(text: &str, ours: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("bounce+") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail.find("@bounce.example").map(|e| e + "@bounce.example".len()).unwrap_or(0);
        if end == 0 {
            out.push_str(tail);
            return out;
        }
        out.push_str(ours);
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

async fn post_bounce(public: SocketAddr, body: impl AsRef<[u8]>, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().post(format!("http://{public}/hooks/bounce")).body(body.as_ref().to_vec());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("the public listener answers");
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}

fn forbidden(w: &World, source: &str) -> f64 {
    w.running.shared.metrics.counter("belofte_callbacks_total", &[("source", source), ("result", "forbidden")])
}

// What feedback stores (provider events, compare-and-set of the status, the timeline,
// bounces by message ref, suppressions) on both backends.
on_both_backends!(a_signed_status_callback_is_recorded_and_forged_ones_are_refused, a_postfix_bounce_fails_the_email_and_suppresses_the_address_and_a_forged_one_is_ignored);

async fn a_signed_status_callback_is_recorded_and_forged_ones_are_refused(db: &Db) {
    let w = world_on(db, "callbacks", settings(Some(Channel::Sms)), SmtpScript::accept_all(), None).await;
    w.delayed_order("T-1", &["sms"]);
    let (sid, url) = w.sms_sent("T-1").await;
    // Twilio is told to call the public URL, with the message's key in the query.
    assert!(url.starts_with(&format!("{PUBLIC_BASE}/hooks/twilio/status?key=T-1%2Fdelayed%2F")), "{url}");
    let row = w.row("T-1", "sms").await;

    // A forged callback says "undelivered": refused, and nothing changes.
    let undelivered = callback_form(&sid, "undelivered", Some(30003));
    assert_eq!(post_callback(w.public(), &url, &undelivered, None).await, 403, "no signature");
    let mut tampered = callback_form(&sid, "delivered", None);
    let signature = expected_twilio_signature(AUTH_TOKEN, &url, &tampered);
    tampered[4].1 = "undelivered".into();
    assert_eq!(post_callback(w.public(), &url, &tampered, Some(signature)).await, 403, "signed, then changed");
    // A real signature, replayed against another message's URL.
    let other_url = url.replace("T-1%2F", "T-2%2F");
    let for_t1 = expected_twilio_signature(AUTH_TOKEN, &url, &undelivered);
    assert_eq!(post_callback(w.public(), &other_url, &undelivered, Some(for_t1)).await, 403, "another URL");
    let wrong_token = expected_twilio_signature("somebody-elses-token", &url, &undelivered);
    assert_eq!(post_callback(w.public(), &url, &undelivered, Some(wrong_token)).await, 403, "another token");
    let mut other_account = undelivered.clone();
    other_account[0].1 = "ACsomebodyelse".into();
    assert_eq!(signed_callback(w.public(), &url, &other_account).await, 403, "signed by us, about another account");
    assert_eq!(forbidden(&w, "twilio"), 5.0);
    assert!(w.running.store.provider_events(row.id).await.expect("events").is_empty(), "nothing recorded");
    assert_eq!(w.row("T-1", "sms").await.status, "sent");

    // The real ones: delivered, and then a late `sent` that changes nothing.
    assert_eq!(signed_callback(w.public(), &url, &callback_form(&sid, "delivered", None)).await, 200);
    assert_eq!(signed_callback(w.public(), &url, &callback_form(&sid, "delivered", None)).await, 200, "a repeat");
    assert_eq!(signed_callback(w.public(), &url, &callback_form(&sid, "sent", None)).await, 200, "late");
    let events = w.running.store.provider_events(row.id).await.expect("events");
    assert_eq!(events.iter().map(|e| e.status.as_str()).collect::<Vec<_>>(), ["delivered"]);
    let feedback = w.running.store.row_by_key(&row.notification_key).await.expect("row").expect("row");
    assert_eq!(feedback.provider_status.as_deref(), Some("delivered"));
    assert_eq!(feedback.status, "sent");
    assert_eq!(w.running.shared.metrics.counter("belofte_provider_status_total", &[("channel", "sms"), ("status", "delivered")]), 1.0);
    // The order's timeline shows it, with its time, after the send.
    let timeline = w.running.store.timeline("T-1").await.expect("timeline");
    let steps: Vec<(&str, &str)> = timeline.iter().filter(|e| e.channel == "sms").map(|e| (e.source.as_str(), e.status.as_str())).collect();
    assert_eq!(steps, [("belofte", "sent"), ("twilio", "delivered")]);
    // A callback for a message we do not know is answered 200, so Twilio stops retrying.
    let unknown = format!("{PUBLIC_BASE}/hooks/twilio/status?key=NOPE%2Fdelayed%2Fx%2Fsms%2F1");
    assert_eq!(signed_callback(w.public(), &unknown, &callback_form("SMunknown", "delivered", None)).await, 200);
    // The public listener serves the hooks only.
    let metrics = reqwest::get(format!("http://{}/metrics", w.public())).await.expect("answers").status().as_u16();
    assert_eq!(metrics, 404, "the admin endpoints stay on the admin port");
    w.running.shutdown().await.expect("clean shutdown");
}

async fn a_postfix_bounce_fails_the_email_and_suppresses_the_address_and_a_forged_one_is_ignored(db: &Db) {
    let w = world_on(db, "bounces", settings(None), SmtpScript::accept_all(), None).await;
    w.delayed_order("B-1", &["email"]);
    w.delayed_order("B-2", &["email"]);
    let rows = w.until("both emails sent", |r| r.iter().filter(|r| r.channel == "email" && r.status == "sent").count() == 1, "B-1").await;
    let b1 = rows.into_iter().find(|r| r.channel == "email").expect("row");
    w.until("B-2's email sent", |r| r.iter().any(|r| r.channel == "email" && r.status == "sent"), "B-2").await;
    let b2 = w.row("B-2", "email").await;

    // Each email went out from its own VERP address.
    let mails = w.smtp.wait_for_accepted(2, Duration::from_secs(10)).await;
    let verp = Verp::new(BOUNCE_TEMPLATE, BOUNCE_SECRET.as_bytes()).expect("verp");
    let b1_mail = mails.iter().find(|m| m.rcpt_to.iter().any(|r| r.contains("b-1@"))).expect("B-1's mail");
    assert_eq!(verp.decode(&b1_mail.mail_from), Ok(message_ref(&b1.notification_key)), "{}", b1_mail.mail_from);

    // The hook wants the MTA's token.
    let bounce = bounce_fixture("postfix-unknown-user.eml", &b1.notification_key, "nosuchuser@shop.example", &email_of("B-1"));
    assert_eq!(post_bounce(w.public(), &bounce, None).await.0, 401);
    assert_eq!(post_bounce(w.public(), &bounce, Some("guess")).await.0, 403);

    // A forged token: the address of B-1's bounce with another MAC. Ignored.
    let good = verp.encode(&message_ref(&b1.notification_key)).expect("address");
    let forged_addr = format!("{}{}", &good[..good.find('@').expect("@") - 4], "aaaa@bounce.example");
    let forged = replace_verp(&bounce, &forged_addr);
    assert_eq!(post_bounce(w.public(), &forged, Some(HOOK_TOKEN)).await, (200, "ignored\n".into()));
    assert_eq!(w.row("B-1", "email").await.status, "sent", "a forged bounce changes nothing");
    assert_eq!(w.running.store.suppressed("email", &email_of("B-1")).await.expect("read"), None);
    // Garbage, a huge body and a cut-off report: answered, ignored, no crash.
    assert_eq!(post_bounce(w.public(), "not a mail at all", Some(HOOK_TOKEN)).await, (200, "ignored\n".into()));
    let cut = &bounce[..bounce.find("Status: 5.1.1").expect("the report's status")];
    assert_eq!(post_bounce(w.public(), cut, Some(HOOK_TOKEN)).await, (200, "ignored\n".into()));
    let huge = "x".repeat(3 * 1024 * 1024);
    assert_eq!(post_bounce(w.public(), &huge, Some(HOOK_TOKEN)).await, (200, "ignored\n".into()));
    assert_eq!(w.row("B-1", "email").await.status, "sent", "none of them was taken for a bounce");

    // The real bounce: 5.1.1 unknown user. The email failed, the address is suppressed.
    assert_eq!(post_bounce(w.public(), &bounce, Some(HOOK_TOKEN)).await, (200, "recorded\n".into()));
    assert_eq!(post_bounce(w.public(), &bounce, Some(HOOK_TOKEN)).await, (200, "unchanged\n".into()), "once");
    let row = w.row("B-1", "email").await;
    assert_eq!(row.status, "failed");
    assert!(row.last_error.as_deref().unwrap_or("").contains("5.1.1"), "{:?}", row.last_error);
    let suppressed = w.running.store.suppressed("email", &email_of("B-1")).await.expect("read");
    assert!(suppressed.is_some_and(|r| r.contains("5.1.1")));

    // A delay warning is recorded, nothing more.
    let delayed = bounce_fixture("postfix-delayed.eml", &b2.notification_key, "ada@slow.example", &email_of("B-2"));
    assert_eq!(post_bounce(w.public(), &delayed, Some(HOOK_TOKEN)).await, (200, "recorded\n".into()));
    let b2_now = w.running.store.row_by_key(&b2.notification_key).await.expect("read").expect("row");
    assert_eq!((b2_now.status.as_str(), b2_now.provider_status.as_deref()), ("sent", Some("delayed")));
    assert_eq!(w.running.store.suppressed("email", &email_of("B-2")).await.expect("read"), None);

    // An abuse report (ARF) suppresses the address; the message itself did arrive.
    w.delayed_order("B-3", &["email"]);
    w.until("B-3's email sent", |r| r.iter().any(|r| r.channel == "email" && r.status == "sent"), "B-3").await;
    let b3 = w.row("B-3", "email").await;
    let complaint = bounce_fixture("arf-abuse.eml", &b3.notification_key, "erin@mailhost.example", &email_of("B-3"));
    assert_eq!(post_bounce(w.public(), &complaint, Some(HOOK_TOKEN)).await, (200, "recorded\n".into()));
    let b3_now = w.running.store.row_by_key(&b3.notification_key).await.expect("read").expect("row");
    assert_eq!((b3_now.status.as_str(), b3_now.provider_status.as_deref()), ("sent", Some("complained")));
    assert!(w.running.store.suppressed("email", &email_of("B-3")).await.expect("read").is_some_and(|r| r.contains("abuse")));

    // `belofte bounce`, as Exim's pipe transport runs it, beside the running daemon.
    let config = bounce_config(&w.db_url);
    let gave_up = bounce_fixture("exim-unknown-user.eml", &b2.notification_key, "nosuchuser@shop.example", &email_of("B-2"));
    let recipient = verp.encode(&message_ref(&b2.notification_key)).expect("address");
    let (code, stderr) = belofte_bounce(config.path(), &gave_up, Some(&recipient));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("recorded"), "{stderr}");
    assert_eq!(w.row("B-2", "email").await.status, "failed");
    // No report at all: exit 0, so the MTA does not bounce the bounce.
    let (code, stderr) = belofte_bounce(config.path(), "Subject: out of office\n\nI am away.\n", None);
    assert_eq!(code, Some(0), "{stderr}");
    // No database: 75, the MTA keeps the bounce and tries again.
    let broken = bounce_config("sqlite:///proc/no/such/dir/belofte.db");
    let (code, stderr) = belofte_bounce(broken.path(), &gave_up, None);
    assert_eq!(code, Some(75), "{stderr}");
    w.running.shutdown().await.expect("clean shutdown");
}

/// A configuration folder for `belofte bounce`: the shipped defaults, and a `local.toml`
/// with this daemon's database and bounce settings.
fn bounce_config(database_url: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(root().join("config/default.toml"), dir.path().join("default.toml")).expect("copy");
    let local = format!(
        "[database]\nurl = \"{database_url}\"\n[email]\nbounce_address = \"{BOUNCE_TEMPLATE}\"\nbounce_secret = \"{BOUNCE_SECRET}\"\n[log]\nlevel = \"warn\"\n"
    );
    std::fs::write(dir.path().join("local.toml"), local).expect("local.toml");
    dir
}

fn belofte_bounce(config: &Path, message: &str, recipient: Option<&str>) -> (Option<i32>, String) {
    use std::io::Write;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_belofte"));
    cmd.arg("bounce").arg("--config").arg(config).arg("--templates").arg(root().join("templates"));
    if let Some(r) = recipient {
        cmd.arg("--recipient").arg(r);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("belofte runs");
    child.stdin.take().expect("stdin").write_all(message.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("belofte ends");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn actions(broker: &EmbeddedBroker) -> Vec<Value> {
    broker
        .consume_all("belofte.actions", Duration::from_secs(5))
        .into_iter()
        .filter_map(|(_, payload, _)| serde_json::from_slice(&payload).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_that_comes_back_undelivered_is_followed_by_the_email() {
    let w = world("fallback", Some(Channel::Sms), SmtpScript::accept_all()).await;
    // The delay is told by SMS only; the customer also agreed to email.
    w.delayed_order("F-1", &["sms", "email"]);
    let (sid, url) = w.sms_sent("F-1").await;
    assert!(w.rows("F-1").await.iter().all(|r| r.channel != "email"), "no email yet");

    // The carrier could not deliver it.
    assert_eq!(signed_callback(w.public(), &url, &callback_form(&sid, "undelivered", Some(30003))).await, 200);
    let mails = w.smtp.wait_for_accepted(1, Duration::from_secs(30)).await;
    let mail = &mails[0];
    assert!(mail.rcpt_to.iter().any(|r| r.contains("f-1@example.nl")), "{:?}", mail.rcpt_to);
    let key = mail.header("X-Belofte-Key").expect("key");
    assert!(key.starts_with("F-1/delayed/") && key.contains("/email/") && key.ends_with("/fallback"), "{key}");
    assert!(mail.data.contains("F-1"), "the email tells the same notice");
    let sms = w.row("F-1", "sms").await;
    assert_eq!(sms.status, "failed");
    assert!(sms.last_error.as_deref().unwrap_or("").contains("30003"), "{:?}", sms.last_error);
    w.until("the fallback sent", |r| r.iter().any(|r| r.channel == "email" && r.status == "sent"), "F-1").await;
    assert_eq!(w.running.shared.metrics.counter("belofte_fallbacks_total", &[("from", "sms"), ("to", "email")]), 1.0);

    // The same callback again, and a late `delivered`: no second email, the failure stays.
    assert_eq!(signed_callback(w.public(), &url, &callback_form(&sid, "undelivered", Some(30003))).await, 200);
    assert_eq!(signed_callback(w.public(), &url, &callback_form(&sid, "delivered", None)).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.rows("F-1").await.iter().filter(|r| r.channel == "email").count(), 1);
    assert_eq!(w.smtp.accepted().len(), 1);
    // Somebody was reached: no escalation `unreachable`.
    assert!(!actions(&w.broker).iter().any(|a| a["data"]["why"] == "unreachable"));
    w.running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_sms_and_its_fallback_email_both_fail_a_person_is_asked_to_call() {
    let w = world("unreachable", Some(Channel::Sms), SmtpScript::data([DataAnswer::reject()])).await;
    w.delayed_order("U-1", &["sms", "email"]);
    let (sid, url) = w.sms_sent("U-1").await;
    assert_eq!(signed_callback(w.public(), &url, &callback_form(&sid, "failed", Some(30005))).await, 200);
    // The fallback email is refused by the server for good (550 5.1.1).
    let rows = w
        .until("an escalation after both failed", |r| r.iter().any(|r| r.channel == "event" && r.notification_key.contains("/unreachable/")), "U-1")
        .await;
    assert!(rows.iter().filter(|r| r.channel != "event").all(|r| r.status == "failed"), "{rows:#?}");
    w.until("the escalation produced", |r| r.iter().filter(|r| r.channel == "event").all(|r| r.status == "sent"), "U-1").await;
    let escalation = actions(&w.broker)
        .into_iter()
        .find(|a| a["type"] == "belofte.escalation" && a["data"]["why"] == "unreachable")
        .expect("an unreachable escalation on the actions topic");
    assert_eq!(escalation["subject"], "U-1");
    assert_eq!(escalation["data"]["order_id"], "U-1");
    assert_eq!(escalation["data"]["messages_sent"], 0, "nothing reached the customer");
    assert_eq!(w.running.shared.metrics.counter("belofte_unreachable_total", &[]), 1.0);
    // Both addresses are remembered: the number (30005, unknown handset) and the mailbox.
    assert!(w.running.store.suppressed("sms", "+31612345511").await.expect("read").is_some());
    assert!(w.running.store.suppressed("email", &email_of("U-1")).await.expect("read").is_some());
    w.running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_does_not_count_a_notice_that_reached_nobody() {
    let w = world("messages-sent", Some(Channel::Sms), SmtpScript::accept_all()).await;
    // SMS only: no fallback for this customer.
    w.delayed_order("R-1", &["sms"]);
    let (sid, url) = w.sms_sent("R-1").await;
    assert_eq!(signed_callback(w.public(), &url, &callback_form(&sid, "undelivered", Some(30003))).await, 200);
    let rows = w.until("the unreachable escalation", |r| r.iter().any(|r| r.notification_key.contains("/unreachable/")), "R-1").await;
    assert!(!rows.iter().any(|r| r.channel == "email"), "no consent, no fallback");

    // The promise slips again: the engine raises `repeated_slip`, counting the notices it sent.
    w.slips_again("R-1", 2, 12);
    let rows = w
        .until(
            "the repeated slip escalated and sent",
            |r| r.iter().any(|r| r.kind == "escalation" && r.line.contains("repeated_slip") && r.status == "sent"),
            "R-1",
        )
        .await;
    let decided: Value = serde_json::from_str(&rows.iter().find(|r| r.line.contains("repeated_slip")).expect("row").line).expect("json");
    let engine_count = decided["data"]["messages_sent"].as_i64().expect("count");
    let produced = actions(&w.broker);
    let slip = produced.iter().find(|a| a["data"]["why"] == "repeated_slip").expect("the escalation on the actions topic");
    assert_eq!(slip["data"]["messages_sent"].as_i64(), Some(engine_count - 1), "the undelivered first notice is not counted");
    let unreachable = produced.iter().find(|a| a["data"]["why"] == "unreachable").expect("unreachable");
    assert_eq!(unreachable["data"]["messages_sent"], 0);
    w.running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounced_email_is_followed_by_the_sms() {
    let w = world("fallback-sms", Some(Channel::Email), SmtpScript::accept_all()).await;
    // The delay is told by email only; the customer also agreed to SMS.
    w.delayed_order("E-1", &["email", "sms"]);
    w.until("the email sent", |r| r.iter().any(|r| r.channel == "email" && r.status == "sent"), "E-1").await;
    let email = w.row("E-1", "email").await;
    assert!(w.twilio.posts().is_empty(), "no SMS yet");

    let bounce = bounce_fixture("postfix-unknown-user.eml", &email.notification_key, "nosuchuser@shop.example", &email_of("E-1"));
    assert_eq!(post_bounce(w.public(), &bounce, Some(HOOK_TOKEN)).await, (200, "recorded\n".into()));
    let sms = w.twilio.wait_for_messages(1, Duration::from_secs(30)).await;
    assert_eq!(sms[0].to, "+31612345511");
    let rows = w.until("the fallback SMS sent", |r| r.iter().any(|r| r.channel == "sms" && r.status == "sent"), "E-1").await;
    let fallback = rows.iter().find(|r| r.channel == "sms").expect("row");
    assert!(fallback.notification_key.ends_with("/fallback") && fallback.notification_key.contains("/sms/"), "{}", fallback.notification_key);
    assert_eq!(w.running.shared.metrics.counter("belofte_fallbacks_total", &[("from", "email"), ("to", "sms")]), 1.0);
    w.running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_sms_waits_for_the_end_of_the_quiet_hours() {
    // Tuesday 22:00 in Amsterdam: email goes at once, an SMS not before 08:00.
    let evening = chrono::DateTime::parse_from_rfc3339("2026-12-01T22:00:00+01:00").expect("time").to_utc();
    let clock = Clock::manual(evening);
    let w = world_with("fallback-quiet", settings_with_quiet_hours(Some(Channel::Email)), SmtpScript::accept_all(), Some(clock.clone())).await;
    w.delayed_order("Q-1", &["email", "sms"]);
    w.until("the email sent", |r| r.iter().any(|r| r.channel == "email" && r.status == "sent"), "Q-1").await;
    let email = w.row("Q-1", "email").await;
    let bounce = bounce_fixture("postfix-unknown-user.eml", &email.notification_key, "nosuchuser@shop.example", &email_of("Q-1"));
    assert_eq!(post_bounce(w.public(), &bounce, Some(HOOK_TOKEN)).await, (200, "recorded\n".into()));

    let rows = w.until("the fallback SMS enqueued", |r| r.iter().any(|r| r.channel == "sms"), "Q-1").await;
    let sms = rows.iter().find(|r| r.channel == "sms").expect("row");
    assert_eq!(sms.send_at, "2026-12-02T07:00:00.000000Z", "held to 08:00 local");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(w.twilio.posts().is_empty(), "no SMS in the night");
    assert_eq!(w.row("Q-1", "sms").await.status, "pending");

    clock.set(chrono::DateTime::parse_from_rfc3339("2026-12-02T08:00:01+01:00").expect("time").to_utc());
    w.twilio.wait_for_messages(1, Duration::from_secs(30)).await;
    w.running.shutdown().await.expect("clean shutdown");
}
