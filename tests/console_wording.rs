//! The console's Templates and Brands pages and API, against a running daemon (embedded
//! broker, SMTP server and Twilio double, SQLite or PostgreSQL): ops break a template and
//! are refused with file and line, publish one and the next customer reads it, roll back;
//! marketing switches a brand's tone, sees it in the preview, publishes it. Logins, CSRF and
//! escaping are held as a browser would meet them.

mod backends;
mod support;

use std::time::Duration;

use backends::Db;
use belofte::daemon::{Overrides, Running};
use belofte::kafka::mock::EmbeddedBroker;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{config_at, eventually_async, order_now, peers, route, settings_now, templates, Peers};
use testkit::smtp::SmtpScript;

const TOKEN: &str = "console-token-for-tests-0123456789";
const SMS: &str = "delayed/nl/sms.txt.hbs";
const EMAIL: &str = "delayed/nl/email.txt.hbs";

/// A daemon with the console on, and what a test talks to it with.
struct Daemon {
    running: Running,
    broker: EmbeddedBroker,
    /// The SMTP server and Twilio double the daemon sends to, kept running.
    _peers: Peers,
    base: String,
    http: reqwest::Client,
}

async fn start(db: &Db) -> Daemon {
    let broker = support::broker(3);
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let mut cfg = config_at(&broker, &db.url, &peers, "console");
    cfg.console.token = Some(TOKEN.to_string());
    let running = Running::start(settings_now(), templates(), cfg, Overrides::default()).await.expect("daemon starts");
    let base = format!("http://{}", running.http_addr);
    // Redirects are looked at, not followed: a login answers with one and its cookie.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    Daemon { running, broker, _peers: peers, base, http }
}

/// A logged-in browser: its cookie and the CSRF token its pages carry.
struct Browser {
    cookie: String,
    csrf: String,
}

impl Daemon {
    /// A script's call with the bearer token, naming itself `marketing` for the audit.
    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).header(AUTHORIZATION, format!("Bearer {TOKEN}")).header("X-Console-User", "marketing");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.api(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.api(reqwest::Method::POST, path, Some(body)).await
    }

    async fn login(&self, name: &str) -> Browser {
        let r = self
            .http
            .post(format!("{}/console/login", self.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("name={name}&token={TOKEN}&next=/console/templates"))
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "a login goes on to the console");
        let cookie = r.headers().get(SET_COOKIE).and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).expect("a session cookie").to_string();
        let mut b = Browser { cookie, csrf: String::new() };
        let page = self.page(&b, "/console/templates").await.1;
        b.csrf = meta_csrf(&page);
        b
    }

    /// A page as the browser gets it.
    async fn page(&self, b: &Browser, path: &str) -> (StatusCode, String) {
        let r = self.http.get(format!("{}{path}", self.base)).header(COOKIE, &b.cookie).send().await.expect("page");
        (r.status(), r.text().await.expect("body"))
    }

    /// A page's form sent, with the CSRF field unless `csrf` is false.
    async fn submit(&self, b: &Browser, path: &str, fields: &[(&str, &str)], csrf: bool) -> reqwest::Response {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        if csrf {
            form.push(("csrf", &b.csrf));
        }
        let body = form_encoded(&form);
        self.http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &b.cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("submit")
    }

    /// An order of lumen for `name`, delayed at once; waits until its email is sent and
    /// returns its text, as the outbox keeps what was sent.
    async fn email_of_order(&self, id: &str, name: &str) -> String {
        for l in order_now(id, name, &["email"], "+31600000001") {
            let (topic, key) = route(&l);
            self.broker.produce(topic, key.as_deref(), l.as_bytes()).expect("produce");
        }
        let sent = || async {
            let rows = self.running.store.outbox().await.unwrap_or_default();
            rows.into_iter().find(|r| r.order_id == id && r.channel == "email" && r.status == "sent")
        };
        eventually_async("the order's email sent", Duration::from_secs(30), || async { sent().await.is_some() }).await;
        let row = sent().await.expect("the email");
        let line: Value = serde_json::from_str(&row.line).expect("the outbox line is JSON");
        line["text"].as_str().expect("the email's text").to_string()
    }
}

fn meta_csrf(page: &str) -> String {
    let at = page.find("name=\"csrf-token\" content=\"").expect("a csrf meta tag") + "name=\"csrf-token\" content=\"".len();
    page[at..].split('"').next().expect("token").to_string()
}

fn form_encoded(pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("url");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or("").to_string()
}

fn shipped(path: &str) -> String {
    std::fs::read_to_string(support::root().join("templates").join(path)).expect("shipped template")
}

async fn a_broken_template_is_refused_with_file_and_line_and_nothing_changes(db: &Db) {
    let d = start(db).await;
    let broken = shipped(SMS).replace("{{/if}}", "");
    // Linted as it is typed: the problem names the file and the line.
    let (status, lint) = d.post("/api/templates/lint", json!({ "path": SMS, "text": broken })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lint["ok"], false);
    let problem = &lint["problems"][0];
    assert!(problem["file"].as_str().unwrap_or("").contains(SMS), "{lint}");
    assert!(problem["line"].as_u64().is_some(), "a line number: {lint}");

    // Publishing it is refused the same way, and nothing is stored.
    let (status, refused) = d.post(&format!("/api/templates/{SMS}/publish"), json!({ "text": broken })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(refused["problems"][0]["file"].as_str().unwrap_or("").contains(SMS));
    assert!(refused["problems"][0]["line"].as_u64().is_some());
    let (_, versions) = d.get(&format!("/api/templates/{SMS}/versions")).await;
    assert_eq!(versions["versions"], json!([]));
    let (_, now) = d.get(&format!("/api/templates/{SMS}")).await;
    assert_eq!(now["text"], shipped(SMS), "the shipped text is still in use");

    // A misspelt variable compiles but cannot render: refused too, with its line.
    let typo = shipped(EMAIL).replace("{{order_id}}", "{{order_nummer}}");
    let (status, refused) = d.post(&format!("/api/templates/{EMAIL}/publish"), json!({ "text": typo })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(refused["problems"].to_string().contains("order_nummer"), "{refused}");
    assert!(d.email_of_order("BRK-1", "Test Klant").await.contains("BRK-1"), "customers still get the shipped words");
    d.running.shutdown().await.expect("clean shutdown");
}

async fn a_published_template_reaches_the_next_customer_and_a_rollback_restores_it(db: &Db) {
    let d = start(db).await;
    let first = shipped(EMAIL).replace("{{reason \"doing\"}}", "{{reason \"doing\"}} Dit zijn de woorden van versie een.");
    let (status, v1) = d.post(&format!("/api/templates/{EMAIL}/publish"), json!({ "text": first, "note": "first words" })).await;
    assert_eq!(status, StatusCode::OK, "{v1}");
    assert!(v1["diff"].as_str().unwrap_or("").contains("+"), "the diff shows the change: {v1}");
    assert!(d.email_of_order("PUB-1", "Test Klant").await.contains("woorden van versie een"));

    let second = shipped(EMAIL).replace("{{reason \"doing\"}}", "{{reason \"doing\"}} Dit zijn de woorden van versie twee.");
    let (status, _) = d.post(&format!("/api/templates/{EMAIL}/publish"), json!({ "text": second })).await;
    assert_eq!(status, StatusCode::OK);
    assert!(d.email_of_order("PUB-2", "Test Klant").await.contains("woorden van versie twee"));

    // Back to the first version: the next customer reads its words again.
    let version = v1["version"].as_i64().expect("a version");
    let (status, back) = d.post(&format!("/api/templates/{EMAIL}/rollback/{version}"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{back}");
    let text = d.email_of_order("PUB-3", "Test Klant").await;
    assert!(text.contains("woorden van versie een") && !text.contains("versie twee"), "{text}");

    // The history: three versions, newest first, each with who; the audit has them all.
    let (_, versions) = d.get(&format!("/api/templates/{EMAIL}/versions")).await;
    let versions = versions["versions"].as_array().expect("versions").clone();
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[0]["note"], format!("rollback to {version}"));
    assert!(versions.iter().all(|v| v["author"] == "api:marketing"));
    let (_, audit) = d.get("/api/audit").await;
    let actions: Vec<&str> = audit["entries"].as_array().expect("entries").iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "publish").count(), 2, "{audit}");
    assert_eq!(actions.iter().filter(|a| **a == "rollback").count(), 1, "{audit}");
    d.running.shutdown().await.expect("clean shutdown");
}

async fn pages_need_a_login_and_every_change_its_csrf_token(db: &Db) {
    let d = start(db).await;
    // No credential: the API says 401, a page sends to the login, a change is refused.
    let r = d.http.get(format!("{}/api/templates", d.base)).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = d.http.get(format!("{}/api/templates", d.base)).header(AUTHORIZATION, "Bearer wrong-token-wrong-token").send().await.expect("get");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = d.http.get(format!("{}/console/templates", d.base)).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("").starts_with("/console/login"));
    let r = d.http.post(format!("{}/console/templates/{SMS}/publish", d.base)).body("text=x").send().await.expect("post");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let b = d.login("Anna").await;
    let (status, list) = d.page(&b, "/console/templates").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains(SMS) && list.contains("shipped"), "every template, shipped");
    let (status, brands) = d.page(&b, "/console/brands").await;
    assert_eq!(status, StatusCode::OK);
    assert!(brands.contains("Lumen") && brands.contains("warm"));

    // A publish without the CSRF token (what another site's form would send): 403, nothing stored.
    let changed = shipped(SMS).replace("Vragen:", "Vragen?");
    let r = d.submit(&b, &format!("/console/templates/{SMS}/publish"), &[("text", &changed)], false).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (_, versions) = d.get(&format!("/api/templates/{SMS}/versions")).await;
    assert_eq!(versions["versions"], json!([]));
    // The page's script without its token header: 403 as well.
    let r = d.http.post(format!("{}/console/api/templates/lint", d.base)).header(COOKIE, &b.cookie).json(&json!({ "path": SMS, "text": changed })).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let mut h = HeaderMap::new();
    h.insert("X-CSRF-Token", HeaderValue::from_str(&b.csrf).expect("header"));
    h.insert(COOKIE, HeaderValue::from_str(&b.cookie).expect("header"));
    let r = d.http.post(format!("{}/console/api/templates/lint", d.base)).headers(h).json(&json!({ "path": SMS, "text": changed })).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::OK);

    // With it: published, in Anna's name, and the page shows the version.
    let r = d.submit(&b, &format!("/console/templates/{SMS}/publish"), &[("text", &changed), ("note", "a question mark")], true).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, versions) = d.get(&format!("/api/templates/{SMS}/versions")).await;
    assert_eq!(versions["versions"][0]["author"], "Anna");
    let (_, page) = d.page(&b, &format!("/console/templates/{SMS}")).await;
    assert!(page.contains("Published version") && page.contains("Anna") && page.contains("a question mark"), "{page}");
    let (_, audit) = d.get("/api/audit").await;
    assert!(audit["entries"].as_array().expect("entries").iter().any(|e| e["who"] == "Anna" && e["action"] == "publish"), "{audit}");
    d.running.shutdown().await.expect("clean shutdown");
}

async fn the_preview_shows_three_tones_and_escapes_what_a_customer_wrote(db: &Db) {
    let d = start(db).await;
    let (_, t) = d.get(&format!("/api/templates/{EMAIL}")).await;
    let preview = t["preview"].as_array().expect("a preview").clone();
    let tones: Vec<&str> = preview.iter().filter_map(|s| s["tone"].as_str()).collect();
    assert_eq!(tones, ["formal", "warm", "playful"]);
    let text = |i: usize| preview[i]["text"].as_str().unwrap_or("").to_string();
    assert!(text(0).contains("Uw bestelling") && text(1).contains("Je bestelling"), "formal says u, warm je:\n{}\n{}", text(0), text(1));
    assert!(preview.iter().all(|s| s["html"].as_str().unwrap_or("").contains("<p>")), "the HTML part of each");
    let (_, sms) = d.get(&format!("/api/templates/{SMS}")).await;
    for s in sms["preview"].as_array().expect("preview") {
        assert!(s["sms"]["segments"].as_u64().unwrap_or(0) >= 1, "{s}");
        assert_eq!(s["sms"]["encoding"], "GSM-7");
    }

    // A preview of a draft: what the edit box shows as it is typed.
    let draft = shipped(SMS).replace("Vragen:", "Nog vragen? Kijk op");
    let (_, p) = d.post("/api/templates/preview", json!({ "path": SMS, "text": draft })).await;
    assert!(p["preview"][1]["text"].as_str().unwrap_or("").contains("Nog vragen? Kijk op"), "{p}");
    assert!(p["html"].as_str().unwrap_or("").contains("segment"));

    // A real order of a customer whose name is markup: shown as text, never run.
    let evil = "<script>alert(1)</script>";
    d.email_of_order("XSS-1", evil).await;
    let b = d.login("Anna").await;
    let (status, page) = d.page(&b, &format!("/console/templates/{EMAIL}?order=XSS-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the name as text");
    assert!(page.contains("<iframe sandbox"), "the email as the customer sees it, sandboxed");
    assert!(!page.contains(evil), "the name is never markup on the page");
    d.running.shutdown().await.expect("clean shutdown");
}

async fn a_brand_tone_switch_shows_in_the_preview_and_once_published_in_the_next_message(db: &Db) {
    let d = start(db).await;
    let (_, lumen) = d.get("/api/brands/lumen").await;
    let doc = lumen["text"].as_str().expect("the brand document").to_string();
    assert!(doc.contains("tone = \"warm\""), "{doc}");
    let formal = doc.replace("tone = \"warm\"", "tone = \"formal\"");

    // Previewed beside the brand as it is: the same message, now warm, then formal.
    let (_, p) = d.post("/api/brands/preview", json!({ "id": "lumen", "text": formal })).await;
    let now = p["now"][0]["text"].as_str().unwrap_or("").to_string();
    let draft = p["draft"][0]["text"].as_str().unwrap_or("").to_string();
    assert!(now.contains("Je bestelling") && draft.contains("Uw bestelling"), "now:\n{now}\ndraft:\n{draft}");
    assert!(d.email_of_order("TONE-1", "Test Klant").await.contains("Je bestelling"), "nothing published yet");

    // A tone that does not exist is refused with its line.
    let bad = doc.replace("tone = \"warm\"", "tone = \"cheerful\"");
    let (status, refused) = d.post("/api/brands/lumen/publish", json!({ "text": bad })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(refused["problems"][0]["message"].as_str().unwrap_or("").contains("cheerful"), "{refused}");
    assert!(refused["problems"][0]["line"].as_u64().is_some(), "{refused}");

    // Published from the brand page's form: the next message is formal.
    let b = d.login("Marketing").await;
    let (_, page) = d.page(&b, "/console/brands/lumen").await;
    assert!(page.contains("<select id=\"tone\""));
    let r = d.submit(&b, "/console/brands/lumen/publish", &[("text", &formal), ("note", "zakelijker")], true).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(d.email_of_order("TONE-2", "Test Klant").await.contains("Uw bestelling"), "the next message speaks formally");
    let (_, brands) = d.get("/api/brands").await;
    let lumen = brands["brands"].as_array().expect("brands").iter().find(|b| b["id"] == "lumen").expect("lumen").clone();
    assert_eq!(lumen["tone"], "formal");
    d.running.shutdown().await.expect("clean shutdown");
}

on_both_backends!(
    a_broken_template_is_refused_with_file_and_line_and_nothing_changes,
    a_published_template_reaches_the_next_customer_and_a_rollback_restores_it,
    pages_need_a_login_and_every_change_its_csrf_token,
    the_preview_shows_three_tones_and_escapes_what_a_customer_wrote,
    a_brand_tone_switch_shows_in_the_preview_and_once_published_in_the_next_message,
);
