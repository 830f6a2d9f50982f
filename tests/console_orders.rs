//! Customer service at the console's Orders pages: shared stories run through the daemon
//! (embedded broker, SMTP server and Twilio double on loopback, a hand-set clock); then an
//! order is found by id, email or phone, and its timeline tells why each message went, or
//! why none did, with the words the customer got.

mod backends;
mod support;

use std::time::Duration;

use belofte::daemon::{Clock, Overrides, Running};
use belofte_core::event::parse_time;
use serde_json::Value;
use support::{config_at, eventually_async, feed, peers, settings, simulated, stories, templates};
use testkit::smtp::SmtpScript;
use testkit::twilio::TwilioAnswer;

const TOKEN: &str = "console-token-for-tests";

/// A story's stream with one more order, placed by a customer whose name is markup.
fn with_a_customer_named_markup(mut lines: Vec<String>) -> Vec<String> {
    let first: Value = serde_json::from_str(&lines[0]).expect("json");
    let placed = first["time"].as_str().expect("time");
    lines.insert(
        1,
        serde_json::json!({
            "specversion": "1.0", "id": "ord-markup", "source": "/webshop", "type": "order.placed", "time": placed,
            "subject": "B-6666", "datacontenttype": "application/json",
            "data": {
                "order_id": "B-6666", "brand": "lumen", "placed_at": placed,
                "customer": { "name": "<script>alert(1)</script>", "email": "markup@example.nl", "phone": "+31611111111", "locale": "nl-NL", "channels": ["email"] },
                "shipping": { "method": "standard", "carrier": "postnl", "country": "NL", "postal_code": "1011AB" },
                "warehouse": "tilburg", "items": [{ "sku": "SKU-1", "name": "Lamp", "qty": 1 }],
                "promise": { "deliver_by": "2026-12-31T22:00:00+01:00" }
            }
        })
        .to_string(),
    );
    lines
}

/// The console as ops use it: scripts with the bearer token, people logged in to the pages.
struct Console {
    base: String,
    http: reqwest::Client,
}

impl Console {
    fn of(running: &Running) -> Console {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Console { base: format!("http://{}", running.http_addr), http }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }

    async fn api(&self, path: &str) -> Value {
        let (status, body) = self.get(path, Some(TOKEN)).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("json")
    }

    /// A page, as someone logged in through the form sees it.
    async fn page(&self, path: &str) -> (u16, String) {
        let login = self.http.post(format!("{}/console/login", self.base)).form(&[("name", "Sanne (service desk)"), ("token", TOKEN), ("next", path)]);
        let answer = login.send().await.expect("login");
        assert_eq!(answer.status().as_u16(), 303, "logged in");
        let cookie = answer.headers()["set-cookie"].to_str().expect("ascii").split(';').next().expect("cookie").to_string();
        let resp = self.http.get(format!("{}{path}", self.base)).header("cookie", cookie).send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }
}

fn steps<'a>(timeline: &'a Value, step: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    timeline["trace"].as_array().into_iter().flatten().filter(move |s| s["step"] == step)
}

async fn customer_service_reads_why_each_message_went_or_did_not(db: &backends::Db) {
    let broker = support::broker(3);
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let lines = with_a_customer_named_markup(stories(&["webshop_18h", "delivery_failed"]));
    let time = |l: &String| parse_time(serde_json::from_str::<Value>(l).expect("json")["time"].as_str().expect("t")).expect("t");
    let first = time(&lines[0]);
    let until = lines.iter().map(time).max().expect("lines") + chrono::Duration::days(3);
    let expected = simulated(&lines, until);

    let clock = Clock::manual(first);
    let mut cfg = config_at(&broker, &db.url, &peers, "console-orders");
    cfg.console.token = Some(TOKEN.into());
    let running = Running::start(settings(), templates(), cfg, Overrides { clock: Some(clock.clone()), ..Default::default() })
        .await
        .expect("daemon starts");
    feed(&broker, &running, &clock, &lines, 0).await;
    clock.set(until);
    let store = running.store.clone();
    let want = expected.len();
    eventually_async("every message sent", Duration::from_secs(30), || {
        let store = store.clone();
        async move { store.outbox().await.map(|rows| rows.len() == want && rows.iter().all(|r| r.status == "sent")).unwrap_or(false) }
    })
    .await;
    let console = Console::of(&running);

    // "Why did the text come at eight, and the email at 06:40?" The SMS was held by the
    // quiet hours, then sent, with the words the customer read.
    let t = console.api("/api/orders/B-1401/timeline").await;
    assert_eq!(t["order_id"], "B-1401");
    let held = steps(&t, "silence").find(|s| s["reason"] == "quiet_hours").expect("the SMS held by the quiet hours");
    assert_eq!(held["channel"], "sms");
    assert_eq!(held["until"], "2026-11-17T08:00:00+01:00");
    let sms_words = expected.iter().find(|l| l.order_id == "B-1401" && l.channel == "sms").and_then(|l| l.text.clone()).expect("simulated SMS");
    let messages = t["messages"].as_array().expect("messages");
    let sms = messages.iter().find(|m| m["channel"] == "sms" && m["kind"] == "delayed").expect("the delayed SMS");
    assert_eq!(sms["status"], "sent");
    assert_eq!(sms["text"], sms_words.as_str());
    assert!(sms["send_at"].as_str().expect("send_at").starts_with("2026-11-17T07:00:00"), "08:00 in Amsterdam: {}", sms["send_at"]);
    assert!(sms["provider_id"].as_str().is_some_and(|id| id.starts_with("SM")), "Twilio's id: {}", sms["provider_id"]);
    assert!(sms["attempts"].as_array().expect("attempts").iter().any(|a| a["status"] == "sent"));
    let email = messages.iter().find(|m| m["channel"] == "email" && m["kind"] == "delayed").expect("the delayed email");
    let subject = expected.iter().find(|l| l.order_id == "B-1401" && l.channel == "email" && l.kind == "delayed").and_then(|l| l.subject.clone()).expect("subject");
    assert!(email["text"].as_str().expect("words").starts_with(&format!("{subject}\n\n")), "subject, then the text");
    // Every event that reached the order, with where it came from.
    let events = t["events"].as_array().expect("events");
    assert_eq!(events.len(), 8, "the story's eight events: {events:?}");
    assert_eq!(events[0]["type"], "order.placed");
    assert_eq!(events[0]["source"], "/webshop");
    assert_eq!(events[0]["outcome"], "applied");
    assert!(steps(&t, "decision").any(|d| d["kind"] == "delayed"));

    // "Nobody told me it would be late": the missed delivery was the customer's doing.
    let t = console.api("/api/orders/B-1801/timeline").await;
    assert!(steps(&t, "silence").any(|s| s["reason"] == "customer_caused"), "{}", t["trace"]);
    assert!(t["messages"].as_array().expect("messages").iter().all(|m| m["kind"] != "delayed"));

    // Found by the address, and by the number as the customer says it.
    let found = console.api("/api/orders?q=Ingrid.Hoekstra%40example.nl").await;
    let ids = |v: &Value| v["orders"].as_array().expect("orders").iter().map(|o| o["order_id"].as_str().unwrap_or("").to_string()).collect::<Vec<_>>();
    assert_eq!(ids(&found), vec!["B-1401"]);
    let found = console.api("/api/orders?q=06%2038931396").await;
    assert_eq!(ids(&found), vec!["B-1801"]);
    let found = console.api("/api/orders?q=B-1").await;
    assert_eq!(ids(&found), vec!["B-1401", "B-1801"], "by the beginning of the id");

    // A customer named `<script>…` is shown as text on the order's page.
    let (status, page) = console.page("/console/orders/B-6666").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");
    assert!(!page.contains("<script>alert(1)"));
    let (status, page) = console.page("/console/orders?q=markup%40example.nl").await;
    assert_eq!(status, 200);
    assert!(page.contains("href=\"/console/orders/B-6666\"") && page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");
    assert_eq!(console.get("/console/orders/B-6666", None).await.0 / 100, 3, "the pages want a login first");

    // An order nobody placed; a caller without the token.
    let (status, body) = console.get("/api/orders/B-0000/timeline", Some(TOKEN)).await;
    assert_eq!(status, 404);
    assert!(serde_json::from_str::<Value>(&body).expect("json")["error"].is_string());
    assert_eq!(console.get("/api/orders/B-1401/timeline", None).await.0, 401);
    assert_eq!(console.get("/api/orders/B-1401/timeline", Some("wrong")).await.0, 401);
    assert_eq!(console.get("/api/orders?q=B-1", None).await.0, 401);
    running.shutdown().await.expect("clean shutdown");
}


/// An order placed at `t` (RFC 3339) by a customer told by email and SMS, and the
/// warehouse's delay at the same moment.
fn placed_and_delayed_at(id: &str, phone: &str, t: &str) -> Vec<String> {
    vec![
        format!(
            r#"{{"specversion":"1.0","id":"{id}-p","source":"/webshop","type":"order.placed","time":"{t}","data":{{"order_id":"{id}","brand":"lumen","placed_at":"{t}","customer":{{"name":"Noor Visser","email":"{id}@example.nl","phone":"{phone}","locale":"nl-NL","channels":["email","sms"]}},"shipping":{{"method":"standard","carrier":"postnl","country":"NL","postal_code":"1011AA"}},"warehouse":"tilburg","items":[{{"sku":"S","name":"Koptelefoon","qty":1}}],"promise":{{"deliver_by":"2026-11-18T22:00:00+01:00"}}}}}}"#
        ),
        format!(
            r#"{{"specversion":"1.0","id":"{id}-d","source":"/warehouse/tilburg","type":"warehouse.delayed","time":"{t}","data":{{"order_id":"{id}","reason":"capacity","expected_ship_at":"2026-11-20T10:00:00+01:00"}}}}"#
        ),
    ]
}

/// "What will the text say?" Twilio refuses our credentials, so the SMS channel pauses and
/// a second customer's SMS waits in the queue. Its order's page already shows the words it
/// will go out with — marked as not sent yet — and when the pause is over exactly those
/// words go out.
async fn a_message_still_queued_shows_the_words_it_will_go_out_with(db: &backends::Db) {
    let broker = support::broker(1);
    let peers = peers(SmtpScript::accept_all(), vec![TwilioAnswer::Unauthorized]).await;
    let mut lines = placed_and_delayed_at("B-1030", "+31612345670", "2026-11-16T10:30:00+01:00");
    lines.extend(placed_and_delayed_at("B-1040", "+31612345671", "2026-11-16T10:36:00+01:00"));
    let at = |s: &str| parse_time(s).expect("time");
    let expected = simulated(&lines, at("2026-11-16T12:00:00+01:00"));
    let words = expected.iter().find(|l| l.order_id == "B-1040" && l.channel == "sms").and_then(|l| l.text.clone()).expect("simulate sends the SMS");

    let clock = Clock::manual(at("2026-11-16T10:30:00+01:00"));
    let mut cfg = config_at(&broker, &db.url, &peers, "console-queued");
    cfg.console.token = Some(TOKEN.into());
    let running = Running::start(settings(), templates(), cfg, Overrides { clock: Some(clock.clone()), ..Default::default() })
        .await
        .expect("daemon starts");
    let console = Console::of(&running);
    let sms_of = |t: Value| t["messages"].as_array().expect("messages").iter().find(|m| m["channel"] == "sms").cloned();
    feed(&broker, &running, &clock, &lines[..2], 0).await;
    clock.set(at("2026-11-16T10:35:00+01:00"));
    eventually_async("the SMS channel is paused", Duration::from_secs(30), || async {
        !console.api("/api/outbox").await["paused"].as_array().expect("paused").is_empty()
    })
    .await;
    // Within the pause (auth_pause_secs, 5 minutes from 10:35).
    feed(&broker, &running, &clock, &lines[2..], 2).await;
    clock.set(at("2026-11-16T10:39:00+01:00"));
    eventually_async("the second SMS is queued", Duration::from_secs(30), || async {
        sms_of(console.api("/api/orders/B-1040/timeline").await).is_some()
    })
    .await;

    let sms = sms_of(console.api("/api/orders/B-1040/timeline").await).expect("the SMS");
    assert_eq!((sms["status"].as_str(), sms["preview"].as_bool()), (Some("pending"), Some(true)), "queued behind the pause: {sms}");
    assert_eq!(sms["text"], words.as_str(), "the words it will go out with");
    let email = console.api("/api/orders/B-1040/timeline").await["messages"].as_array().expect("messages").iter().find(|m| m["channel"] == "email").cloned().expect("email");
    assert_eq!(email["preview"], false, "the email went: its words are the ones sent");
    let (status, page) = console.page("/console/orders/B-1040").await;
    assert_eq!(status, 200);
    assert!(page.contains("Not sent yet") && page.contains("Hoi Noor, je bestelling B-1040"), "{page}");

    clock.set(at("2026-11-16T10:41:00+01:00"));
    eventually_async("the SMS is sent after the pause", Duration::from_secs(30), || async {
        sms_of(console.api("/api/orders/B-1040/timeline").await).is_some_and(|m| m["status"] == "sent")
    })
    .await;
    let sms = sms_of(console.api("/api/orders/B-1040/timeline").await).expect("the SMS");
    assert_eq!((sms["preview"].clone(), sms["text"].clone()), (Value::Bool(false), Value::String(words)), "the same words, now sent");
    running.shutdown().await.expect("clean shutdown");
}

on_both_backends!(customer_service_reads_why_each_message_went_or_did_not, a_message_still_queued_shows_the_words_it_will_go_out_with);

