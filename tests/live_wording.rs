//! Live wording (issues 13 and 11): templates and brands published into the database while
//! the daemon runs. A customer message keeps its decision and gets its words when it is
//! sent, so a publish applies to messages already queued; what cannot be rendered is kept
//! and sent once the wording is fixed; a broken template never gets in; a rollback brings
//! the earlier words back; every instance on the database picks a publish up.

mod backends;
mod support;

use std::time::Duration;

use belofte::daemon::{Clock, DaemonConfig, Overrides, Running};
use belofte::kafka::mock::EmbeddedBroker;
use belofte::settings::Settings;
use belofte::store::WordingKind;
use belofte::wording::{self, Baseline, Edit, PublishError};
use belofte_core::domain::Instant;
use chrono::TimeZone;
use serde_json::json;
use support::{config_at, eventually, eventually_async, peers, route, settings, templates, Peers};
use testkit::smtp::SmtpScript;
use testkit::twilio::TwilioAnswer;

const SMS: &str = "delayed/nl/sms.txt.hbs";
const WAIT: Duration = Duration::from_secs(30);

fn shipped(rel: &str) -> String {
    templates().files().get(rel).expect("a shipped template").to_string()
}

/// The shipped delayed SMS with its last words changed: "Vragen:" becomes `instead`.
fn sms_saying(instead: &str) -> String {
    let text = shipped(SMS);
    assert!(text.contains("Vragen: {{brand.support_site}}"), "the shipped SMS ends with its support link");
    text.replace("Vragen: {{brand.support_site}}", &format!("{instead} {{{{brand.support_site}}}}"))
}

/// No coalescing wait and no daily cap: each delay is told at once. Quiet hours stay.
fn settings_now() -> Settings {
    let mut s = settings();
    s.policy.coalesce_seconds = 0;
    s.policy.max_notices_per_day = 100;
    s
}

fn without_quiet_hours(mut s: Settings) -> Settings {
    s.policy.quiet_from = s.policy.quiet_until;
    s
}

fn config(broker: &EmbeddedBroker, db: &backends::Db, peers: &Peers, group: &str) -> DaemonConfig {
    let mut cfg = config_at(broker, &db.url, peers, group);
    cfg.console.poll_secs = 1;
    cfg
}

fn event(id: String, source: &str, kind: &str, t: Instant, data: serde_json::Value) -> String {
    json!({"specversion": "1.0", "id": id, "source": source, "type": kind, "time": t.to_rfc3339(), "data": data}).to_string()
}

fn placed(id: &str, channels: &[&str], t: Instant) -> String {
    event(
        format!("{id}-placed"),
        "/webshop",
        "order.placed",
        t,
        json!({"order_id": id, "brand": "lumen", "placed_at": t.to_rfc3339(),
               "customer": {"name": "Test Klant", "email": format!("{id}@example.nl"), "phone": "+31612345678", "locale": "nl-NL", "channels": channels},
               "shipping": {"method": "standard", "carrier": "postnl", "country": "NL", "postal_code": "1011AA"},
               "warehouse": "tilburg", "items": [{"sku": "S", "name": "Ding", "qty": 1}],
               "promise": {"deliver_by": (t + chrono::Duration::days(2)).to_rfc3339()}}),
    )
}

/// The warehouse ships six days late: the promise breaks, with a new date.
fn delayed(id: &str, t: Instant) -> String {
    event(
        format!("{id}-delayed"),
        "/warehouse/tilburg",
        "warehouse.delayed",
        t,
        json!({"order_id": id, "reason": "capacity", "expected_ship_at": (t + chrono::Duration::days(6)).to_rfc3339()}),
    )
}

/// Out of stock, restocked `restock` days later (None: nobody knows when).
fn backorder(id: &str, n: u32, restock: Option<i64>, t: Instant) -> String {
    event(
        format!("{id}-backorder-{n}"),
        "/warehouse/tilburg",
        "warehouse.backorder",
        t,
        json!({"order_id": id, "sku": "S", "expected_restock_at": restock.map(|d| (t + chrono::Duration::days(d)).to_rfc3339())}),
    )
}

fn produce(broker: &EmbeddedBroker, lines: &[String]) {
    for l in lines {
        let (topic, key) = route(l);
        broker.produce(topic, key.as_deref(), l.as_bytes()).expect("produce");
    }
}

async fn publish(running: &Running, kind: WordingKind, name: &str, body: &str, note: &str) -> i64 {
    let edit = Edit { kind, name, body, author: "ops@shop.example", note };
    running.shared.publish(&running.store, &edit).await.expect("the publish is accepted").version
}

/// The SMS texts Twilio got for one phone number, in order.
fn sms_to(peers: &Peers, phone: &str) -> Vec<String> {
    peers.twilio.messages().into_iter().filter(|m| m.to == phone).map(|m| m.body).collect()
}

/// An SMS decided at 23:00 waits for the morning; the words published at 23:30 are the
/// ones its first attempt at 08:00 carries. Twilio is down then: while the message waits for
/// its retry, a second version is published, and the customer reads that one.
async fn a_message_waiting_to_be_sent_goes_with_the_words_published_after_it_was_decided(db: &backends::Db) {
    let broker = support::broker(3);
    let peers = peers(SmtpScript::accept_all(), vec![TwilioAnswer::Unavailable, TwilioAnswer::Created]).await;
    let evening = chrono::FixedOffset::east_opt(3600).expect("CET").with_ymd_and_hms(2026, 11, 23, 23, 0, 0).single().expect("time").to_utc();
    let clock = Clock::manual(evening);
    let running = Running::start(settings_now(), templates(), config(&broker, db, &peers, "night"), Overrides { clock: Some(clock.clone()), ..Default::default() })
        .await
        .expect("daemon starts");
    produce(&broker, &[placed("N-1", &["sms"], evening), delayed("N-1", evening)]);
    eventually("both events applied", WAIT, || running.shared.metrics.counter_total("belofte_events_total") >= 2.0).await;
    // The decision is due at once (no coalescing): the next moment on the hand-set clock.
    clock.set(evening + chrono::Duration::minutes(1));
    let store = running.store.clone();
    let sms_row = || {
        let store = store.clone();
        async move { store.outbox().await.expect("outbox").into_iter().find(|r| r.channel == "sms") }
    };
    eventually_async("the voucher decided with the notice", WAIT, || {
        let store = store.clone();
        async move { store.outbox().await.expect("outbox").iter().any(|r| r.kind == "compensation") }
    })
    .await;
    assert!(sms_row().await.is_none(), "the SMS is held for the quiet hours");

    clock.set(evening + chrono::Duration::minutes(30));
    let first = publish(&running, WordingKind::Template, SMS, &sms_saying("Hulp nodig?"), "friendlier ending").await;
    assert_eq!(running.shared.live.version(), first, "the publishing instance uses it at once");

    let morning = evening + chrono::Duration::hours(9) + chrono::Duration::minutes(1);
    clock.set(morning);
    eventually("the first attempt at 08:00", WAIT, || peers.twilio.posts().len() == 1).await;
    let tried = peers.twilio.posts()[0].field("Body").map(str::to_string).unwrap_or_default();
    assert!(tried.ends_with("Hulp nodig? www.lumen.example/service"), "the words published at 23:30: {tried:?}");
    eventually_async("the retry scheduled", WAIT, || async { sms_row().await.is_some_and(|r| r.status == "pending" && r.attempts == 1) }).await;

    publish(&running, WordingKind::Template, SMS, &sms_saying("Meer weten?"), "shorter").await;
    clock.set(morning + chrono::Duration::minutes(5));
    eventually("the SMS created", WAIT, || !sms_to(&peers, "+31612345678").is_empty()).await;
    let texts = sms_to(&peers, "+31612345678");
    assert_eq!(texts.len(), 1);
    assert!(texts[0].ends_with("Meer weten? www.lumen.example/service") && !texts[0].contains("Vragen"), "the latest words: {:?}", texts[0]);
    eventually_async("the row sent", WAIT, || async { sms_row().await.is_some_and(|r| r.status == "sent") }).await;
    let row = sms_row().await.expect("the SMS row");
    assert!(row.line.contains("Meer weten?"), "the words sent are written on the row: {}", row.line);
    running.shutdown().await.expect("clean shutdown");
}

/// A template with a syntax error, a brand with a tone that does not exist: each publish is
/// refused with what `belofte check` says, file and line, and nothing is stored.
async fn a_broken_template_or_brand_is_refused_with_the_lint_messages_and_changes_nothing(db: &backends::Db) {
    let store = db.open().await;
    let s = settings();
    let base = Baseline::new(templates().files().clone(), s.policy.clone());
    let now = chrono::Utc::now();

    let broken = "{{voice \"sms_greeting\"}}\nJe bestelling {{order_id}} komt later.\n{{#if new}}Nieuwe datum: {{new.date}}.\n";
    let edit = Edit { kind: WordingKind::Template, name: SMS, body: broken, author: "ops", note: "oops" };
    let Err(PublishError::Refused(problems)) = wording::publish(&store, &base, &edit, now).await else {
        panic!("a template that does not compile must be refused");
    };
    let p = &problems[0];
    assert_eq!(p.template, "templates/delayed/nl/sms.txt.hbs (draft)", "{problems:?}");
    assert!(p.line.is_some() && p.message.contains("syntax"), "{p}");

    let lumen = belofte::settings::brand_document(&s.policy.brands["lumen"]);
    let cheerful = lumen.replace("tone = \"warm\"", "tone = \"cheerful\"");
    assert_ne!(cheerful, lumen);
    let edit = Edit { kind: WordingKind::Brand, name: "lumen", body: &cheerful, author: "marketing", note: "" };
    let Err(PublishError::Refused(problems)) = wording::publish(&store, &base, &edit, now).await else {
        panic!("a brand with an unknown tone must be refused");
    };
    let line = cheerful.lines().position(|l| l.starts_with("tone")).map(|i| i + 1);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!((problems[0].template.as_str(), problems[0].line), ("brands/lumen (draft)", line));
    assert!(problems[0].message.contains("\"cheerful\" is not a tone (formal, warm, playful)"), "the configuration's message: {}", problems[0]);

    // A warm brand that says "u": the lint of the templates in the brand's new tone.
    let formal_words = shipped(SMS).replace("{{t \"je\" \"uw\"}} bestelling", "uw bestelling");
    let edit = Edit { kind: WordingKind::Template, name: SMS, body: &formal_words, author: "ops", note: "" };
    let Err(PublishError::Refused(problems)) = wording::publish(&store, &base, &edit, now).await else {
        panic!("words against the register of a tone must be refused");
    };
    assert!(problems.iter().any(|p| p.template == "templates/delayed/nl/sms.txt.hbs (draft)" && p.message.contains("must not say \"uw\"")), "{problems:?}");

    assert_eq!(store.wording_head().await.expect("head"), 0, "nothing was stored");
    assert!(store.wording_versions(WordingKind::Template, SMS).await.expect("versions").is_empty());
}

/// A published backorder email names the previous promise. The lint's samples always have
/// one, but a backorder that follows "no date yet" has none: that message cannot be
/// rendered. It is kept as `render_failed` with the reason, and sent once a fix is published.
async fn a_message_that_cannot_be_rendered_is_kept_and_sent_when_the_wording_is_fixed(db: &backends::Db) {
    let broker = support::broker(3);
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let running = Running::start(without_quiet_hours(settings_now()), templates(), config(&broker, db, &peers, "fix"), Overrides::default())
        .await
        .expect("daemon starts");
    let email = "backorder/nl/email.txt.hbs";
    let risky = format!("{}\nEerder beloofd: {{{{previous.date}}}}.\n", shipped(email).trim_end());
    publish(&running, WordingKind::Template, email, &risky, "name the earlier promise").await;

    let now = chrono::Utc::now();
    produce(&broker, &[placed("F-1", &["email"], now), backorder("F-1", 1, None, now)]);
    peers.smtp.wait_for_accepted(1, WAIT).await;
    assert!(peers.smtp.accepted()[0].data.contains("Eerder beloofd: "), "the first backorder names its promise with the published words");
    // Restocked in five days: a new date after "no date yet", so no previous promise.
    produce(&broker, &[backorder("F-1", 2, Some(5), now + chrono::Duration::seconds(1))]);
    let store = running.store.clone();
    let failed = || {
        let store = store.clone();
        async move { store.outbox().await.expect("outbox").into_iter().find(|r| r.order_id == "F-1" && r.status == "render_failed") }
    };
    eventually_async("the second backorder kept as render_failed", WAIT, || async { failed().await.is_some() }).await;
    let row = failed().await.expect("the render_failed row");
    let reason = row.last_error.clone().unwrap_or_default();
    assert!(reason.contains("templates/backorder/nl/email.txt.hbs (version") && reason.contains("previous.date"), "the reason names the document: {reason}");
    assert_eq!(running.shared.metrics.counter_total("belofte_render_failed_total"), 1.0);
    assert_eq!(peers.smtp.accepted().len(), 1, "only the first backorder email went");

    let fixed = format!("{}\n{{{{#if previous}}}}Eerder beloofd: {{{{previous.date}}}}.{{{{/if}}}}\n", shipped(email).trim_end());
    publish(&running, WordingKind::Template, email, &fixed, "only when there was a date").await;
    peers.smtp.wait_for_accepted(2, WAIT).await;
    let mails = peers.smtp.accepted();
    assert!(!mails[1].data.contains("Eerder beloofd") && mails[1].data.contains("F-1"), "the fixed words, nothing to name");
    eventually_async("the fixed message settled", WAIT, || {
        let store = store.clone();
        async move { store.outbox().await.expect("outbox").iter().any(|r| r.id == row.id && r.status == "sent") }
    })
    .await;
    let attempts = running.store.attempts(row.id).await.expect("attempts");
    assert_eq!(attempts.iter().map(|(o, _)| o.as_str()).collect::<Vec<_>>(), ["render_failed", "sent"]);
    running.shutdown().await.expect("clean shutdown");
}

/// Two publishes, then a rollback to the first: the next message has the first words
/// again, and the history keeps all three versions.
async fn a_rollback_restores_the_earlier_words_and_keeps_the_history(db: &backends::Db) {
    let broker = support::broker(3);
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let running = Running::start(without_quiet_hours(settings_now()), templates(), config(&broker, db, &peers, "rollback"), Overrides::default())
        .await
        .expect("daemon starts");
    let first = publish(&running, WordingKind::Template, SMS, &sms_saying("Hulp nodig?"), "first").await;
    publish(&running, WordingKind::Template, SMS, &sms_saying("Meer weten?"), "second").await;
    let now = chrono::Utc::now();
    produce(&broker, &[placed("R-1", &["sms"], now), delayed("R-1", now)]);
    eventually("the first SMS", WAIT, || peers.twilio.messages().len() == 1).await;
    assert!(peers.twilio.messages()[0].body.contains("Meer weten?"));

    let back = running.shared.rollback(&running.store, first, "ops@shop.example").await.expect("rollback");
    produce(&broker, &[placed("R-2", &["sms"], now), delayed("R-2", now)]);
    eventually("the second SMS", WAIT, || peers.twilio.messages().len() == 2).await;
    let body = peers.twilio.messages()[1].body.clone();
    assert!(body.contains("Hulp nodig?") && !body.contains("Meer weten?"), "{body}");

    let versions = running.store.wording_versions(WordingKind::Template, SMS).await.expect("versions");
    assert_eq!(versions.iter().map(|v| v.note.as_str()).collect::<Vec<_>>(), [format!("rollback to {first}").as_str(), "second", "first"]);
    assert_eq!(versions[0].id, back.version);
    assert!(versions[0].diff.starts_with("--- before") && versions[0].diff.contains("Meer weten?") && versions[0].diff.contains("Hulp nodig?"), "{}", versions[0].diff);
    assert_eq!(versions[0].author, "ops@shop.example");
    running.shutdown().await.expect("clean shutdown");
}

/// Two instances on one PostgreSQL database: a publish through the first is used by the
/// second, which has not been told anything but what is in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publish_through_one_instance_is_used_by_the_other() {
    let db = backends::Db::postgres().await;
    let broker = support::broker(3);
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let start = |name: &str| {
        let mut cfg = config(&broker, &db, &peers, "pair");
        cfg.kafka.group_instance_id = name.to_string();
        Running::start(without_quiet_hours(settings_now()), templates(), cfg, Overrides::default())
    };
    let a = start("a").await.expect("a starts");
    let b = start("b").await.expect("b starts");
    let version = publish(&a, WordingKind::Template, SMS, &sms_saying("Hulp nodig?"), "from a").await;
    a.shutdown().await.expect("a stops");
    eventually("b picks the publish up", WAIT, || b.shared.live.version() == version).await;
    assert_eq!(b.shared.metrics.gauge("belofte_wording_version", &[]), version as f64);

    let now = chrono::Utc::now();
    produce(&broker, &[placed("P-1", &["sms"], now), delayed("P-1", now)]);
    eventually("the SMS sent by b", WAIT, || !sms_to(&peers, "+31612345678").is_empty()).await;
    assert!(sms_to(&peers, "+31612345678")[0].contains("Hulp nodig?"));
    b.shutdown().await.expect("b stops");
}

on_both_backends!(
    a_message_waiting_to_be_sent_goes_with_the_words_published_after_it_was_decided,
    a_broken_template_or_brand_is_refused_with_the_lint_messages_and_changes_nothing,
    a_message_that_cannot_be_rendered_is_kept_and_sent_when_the_wording_is_fixed,
    a_rollback_restores_the_earlier_words_and_keeps_the_history,
    published_voucher_tiers_decide_the_next_delay_without_a_restart,
);

/// Marketing raises a brand's vouchers while belofte runs: the next delay is compensated
/// by the new tiers, without a restart (the engine's worlds are rebuilt on the new policy).
async fn published_voucher_tiers_decide_the_next_delay_without_a_restart(db: &backends::Db) {
    let broker = support::broker(3);
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let s = without_quiet_hours(settings_now());
    let lumen = belofte::settings::brand_document(&s.policy.brands["lumen"]);
    let running = Running::start(s, templates(), config(&broker, db, &peers, "vouchers"), Overrides::default())
        .await
        .expect("daemon starts");
    let voucher_of = |order: &'static str| {
        let store = running.store.clone();
        async move {
            let rows = store.outbox().await.expect("outbox");
            let row = rows.into_iter().find(|r| r.order_id == order && r.kind == "compensation")?;
            let event: serde_json::Value = serde_json::from_str(&row.line).expect("a CloudEvent");
            event["data"]["amount_eur"].as_u64()
        }
    };
    let now = chrono::Utc::now();
    produce(&broker, &[placed("V-1", &["email"], now), delayed("V-1", now)]);
    eventually_async("the first voucher", WAIT, || async { voucher_of("V-1").await.is_some() }).await;
    let before = voucher_of("V-1").await.expect("a voucher");

    let mut doc: toml::Table = toml::from_str(&lumen).expect("the brand document is TOML");
    doc.insert("compensation".into(), toml::Value::try_from(json!([{"min_days": 1, "eur": 25}])).expect("tiers"));
    let generous = toml::to_string(&doc).expect("TOML");
    publish(&running, WordingKind::Brand, "lumen", &generous, "Black Friday: €25 for any delay").await;
    // The next order's delay comes once the processor has taken the new policy.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = chrono::Utc::now();
    produce(&broker, &[placed("V-2", &["email"], now), delayed("V-2", now)]);
    eventually_async("the second voucher", WAIT, || async { voucher_of("V-2").await.is_some() }).await;
    let after = voucher_of("V-2").await.expect("a voucher");
    assert!(before < 25, "the shipped tiers give less for this delay: €{before}");
    assert_eq!(after, 25, "the published tiers decide the next delay");
    running.shutdown().await.expect("clean shutdown");
}
