//! The ops console over HTTP, as ops and their scripts use it: switched on by a token, the
//! API behind a bearer token, the pages behind a login, every change protected against
//! CSRF and recorded in the audit, every value escaped; the Outbox page with the messages
//! that need a person and the dead-lettered events. A real daemon on an embedded broker,
//! a loopback SMTP server, and SQLite or PostgreSQL.

mod backends;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use belofte::daemon::{DaemonConfig, Overrides, Running};
use belofte::kafka::mock::EmbeddedBroker;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use support::{config_at, eventually_async, order_now, peers, route, settings_now, templates, Peers};
use testkit::smtp::{DataAnswer, SmtpScript};
use testkit::twilio::TwilioAnswer;

const TOKEN: &str = "console-token-for-tests-0123";

fn config(broker: &EmbeddedBroker, url: &str, peers: &Peers, token: Option<&str>) -> DaemonConfig {
    let mut cfg = config_at(broker, url, peers, "console");
    cfg.console.token = token.map(str::to_string);
    cfg
}

async fn start(broker: &EmbeddedBroker, url: &str, peers: &Peers) -> Running {
    Running::start(settings_now(), templates(), config(broker, url, peers, Some(TOKEN)), Overrides::default()).await.expect("daemon starts")
}

/// An order placed now by `name`, emailed only, and its delay: one email decided at once.
fn delayed_order(id: &str, name: &str) -> Vec<String> {
    order_now(id, name, &["email"], "+31600000001")
}

fn produce(broker: &EmbeddedBroker, lines: &[String]) {
    for l in lines {
        let (topic, key) = route(l);
        broker.produce(topic, key.as_deref(), l.as_bytes()).expect("produce");
    }
}

/// A client that does not follow redirects (the login's answer is looked at) and keeps no
/// cookies (each request says what it carries).
fn client() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

async fn api_get(addr: SocketAddr, path: &str) -> Value {
    let r = client().get(url(addr, path)).bearer_auth(TOKEN).send().await.expect("answers");
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.expect("json")
}

/// The row of `order_id` on `channel` in the outbox API's problems, if it is there.
async fn problem(addr: SocketAddr, order_id: &str) -> Option<Value> {
    let o = api_get(addr, "/api/outbox").await;
    o["problems"].as_array().expect("problems").iter().find(|p| p["order_id"] == order_id).cloned()
}

/// A logged-in person: the session cookie and the CSRF token of the page.
struct Person {
    cookie: String,
    csrf: String,
}

async fn log_in(addr: SocketAddr, name: &str) -> Person {
    let r = client().post(url(addr, "/console/login")).form(&[("name", name), ("token", TOKEN), ("next", "/console/outbox")]).send().await.expect("answers");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/console/outbox");
    let set = r.headers()["set-cookie"].to_str().expect("ascii").to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    let cookie = set.split(';').next().expect("name=value").to_string();
    let page = client().get(url(addr, "/console/outbox")).header("cookie", &cookie).send().await.expect("answers");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    let csrf = html.split("name=\"csrf-token\" content=\"").nth(1).and_then(|s| s.split('"').next()).expect("a CSRF token in the page").to_string();
    Person { cookie, csrf }
}

impl Person {
    async fn page(&self, addr: SocketAddr, path: &str) -> (StatusCode, HeaderMap, String) {
        let r = client().get(url(addr, path)).header("cookie", &self.cookie).send().await.expect("answers");
        let (status, headers) = (r.status(), r.headers().clone());
        (status, headers, r.text().await.expect("text"))
    }

    /// A page's button: the form with (or without) its CSRF field.
    async fn press(&self, addr: SocketAddr, path: &str, csrf: Option<&str>, extra: &[(&'static str, &'static str)]) -> reqwest::Response {
        let form: Vec<(&str, &str)> = csrf.map(|c| vec![("csrf", c)]).unwrap_or_default();
        let mut req = client().post(url(addr, path)).header("cookie", &self.cookie).form(&form);
        for &(k, v) in extra {
            req = req.header(k, HeaderValue::from_static(v));
        }
        req.send().await.expect("answers")
    }
}

/// The latest audit entries, as the API lists them.
async fn audit(addr: SocketAddr) -> Vec<Value> {
    api_get(addr, "/api/audit").await["entries"].as_array().expect("entries").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_there_is_no_console_and_a_short_token_stops_start_up() {
    let broker = support::broker(1);
    let db = backends::Db::sqlite().await;
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let short = Running::start(settings_now(), templates(), config(&broker, &db.url, &peers, Some("short-token")), Overrides::default()).await;
    let err = short.err().expect("a short token is refused").to_string();
    assert!(err.contains("console.token") && err.contains("16"), "{err}");

    let running = Running::start(settings_now(), templates(), config(&broker, &db.url, &peers, None), Overrides::default()).await.expect("daemon starts");
    let addr = running.http_addr;
    for path in ["/console/", "/console/outbox", "/console/login", "/api/outbox", "/api/audit"] {
        let r = client().get(url(addr, path)).bearer_auth(TOKEN).send().await.expect("answers");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let r = client().post(url(addr, "/console/login")).form(&[("name", "x"), ("token", TOKEN)]).send().await.expect("answers");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(client().get(url(addr, "/healthz")).send().await.expect("answers").status(), StatusCode::OK, "the admin port is there");
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_need_the_token_and_people_a_login() {
    let broker = support::broker(1);
    let db = backends::Db::sqlite().await;
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let running = start(&broker, &db.url, &peers).await;
    let addr = running.http_addr;

    // The API: no token, a wrong one → 401 JSON, and the right one answers.
    let none = client().get(url(addr, "/api/outbox")).send().await.expect("answers");
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert!(none.text().await.expect("body").contains("\"error\""));
    let wrong = client().get(url(addr, "/api/outbox")).bearer_auth("console-token-for-tests-0124").send().await.expect("answers");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let retry = client().post(url(addr, "/api/outbox/1/retry")).send().await.expect("answers");
    assert_eq!(retry.status(), StatusCode::UNAUTHORIZED);
    let o = api_get(addr, "/api/outbox").await;
    assert!(o["depth"].is_array() && o["problems"].is_array() && o["dead_letters"].is_array() && o["paused"].is_array(), "{o}");
    // A session cookie does not open the bearer API, and the token alone no page.
    let page = client().get(url(addr, "/console/outbox")).bearer_auth(TOKEN).send().await.expect("answers");
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(page.headers()["location"], "/console/login?next=/console/outbox");

    // The login form: a wrong token is refused and sets no cookie.
    let form = client().get(url(addr, "/console/login")).send().await.expect("answers");
    assert_eq!(form.status(), StatusCode::OK);
    assert!(form.text().await.expect("html").contains("name=\"token\""));
    let refused = client()
        .post(url(addr, "/console/login"))
        .form(&[("name", "Anna"), ("token", "console-token-for-tests-0124")])
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().get("set-cookie").is_none());
    // A login posted from another site is refused, token or not.
    let forced = client()
        .post(url(addr, "/console/login"))
        .header("origin", "https://evil.example")
        .form(&[("name", "Anna"), ("token", TOKEN)])
        .send()
        .await
        .expect("answers");
    assert_eq!(forced.status(), StatusCode::FORBIDDEN);
    assert!(forced.headers().get("set-cookie").is_none());

    // Logged in, the page answers with a policy that runs no inline script and no frame.
    let anna = log_in(addr, "Anna").await;
    let (status, headers, html) = anna.page(addr, "/console/outbox").await;
    assert_eq!(status, StatusCode::OK);
    let csp = headers["content-security-policy"].to_str().expect("ascii");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-eval") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(html.contains("Anna") && html.contains("Outbox") && !html.contains("http://") && !html.contains("https://"), "nothing from another host");
    let js = client().get(url(addr, "/console/static/console.js")).send().await.expect("answers");
    assert_eq!(js.status(), StatusCode::OK);
    // The pages' scripts reach the API with the cookie — and the CSRF token for a change.
    let api = client().get(url(addr, "/console/api/outbox")).header("cookie", &anna.cookie).send().await.expect("answers");
    assert_eq!(api.status(), StatusCode::OK);
    let change = client().post(url(addr, "/console/api/outbox/1/cancel")).header("cookie", &anna.cookie).send().await.expect("answers");
    assert_eq!(change.status(), StatusCode::FORBIDDEN);
    let change = client()
        .post(url(addr, "/console/api/outbox/1/cancel"))
        .header("cookie", &anna.cookie)
        .header("x-csrf-token", &anna.csrf)
        .send()
        .await
        .expect("answers");
    assert_eq!(change.status(), StatusCode::NOT_FOUND, "past the CSRF check: there is no row 1");
    // A forged cookie is no session.
    let forged = anna.cookie.replacen('.', ".9", 1);
    let r = client().get(url(addr, "/console/outbox")).header("cookie", forged).send().await.expect("answers");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // Logging out needs the CSRF token too, and drops the cookie.
    assert_eq!(anna.press(addr, "/console/logout", None, &[]).await.status(), StatusCode::FORBIDDEN);
    let out = anna.press(addr, "/console/logout", Some(&anna.csrf), &[]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(out.headers()["set-cookie"].to_str().expect("ascii").contains("Max-Age=0"));
    running.shutdown().await.expect("clean shutdown");
}

/// Someone at 127.0.0.2 guesses the token: after three wrong ones that address is refused
/// for the rest of the minute — the right token too, by the API and by the login form —
/// while ops at 127.0.0.1 go on working; the moment is counted for an alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_keeps_guessing_the_token_is_refused_for_a_minute() {
    let broker = support::broker(1);
    let db = backends::Db::sqlite().await;
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let mut cfg = config(&broker, &db.url, &peers, Some(TOKEN));
    cfg.console.wrong_tokens_per_minute = 3;
    let running = Running::start(settings_now(), templates(), cfg, Overrides::default()).await.expect("daemon starts");
    let addr = running.http_addr;
    let guesser = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    for guess in ["console-token-for-tests-0001", "console-token-for-tests-0002", "console-token-for-tests-0003"] {
        let r = guesser.get(url(addr, "/api/outbox")).bearer_auth(guess).send().await.expect("answers");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "a wrong token is a 401 while tries are left");
    }
    let right = guesser.get(url(addr, "/api/outbox")).bearer_auth(TOKEN).send().await.expect("answers");
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS, "refused, right token or not: guessing gains nothing");
    let wait: u64 = right.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    let form = guesser.post(url(addr, "/console/login")).form(&[("name", "Mallory"), ("token", TOKEN)]).send().await.expect("answers");
    assert_eq!(form.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(form.headers().get("set-cookie").is_none(), "no session");
    assert!(form.text().await.expect("html").contains("Too many wrong tokens"), "the form says why");

    // Ops elsewhere are not affected.
    assert!(api_get(addr, "/api/outbox").await["depth"].is_array());
    let anna = log_in(addr, "Anna").await;
    assert_eq!(anna.page(addr, "/console/outbox").await.0, StatusCode::OK);
    let metrics = client().get(url(addr, "/metrics")).send().await.expect("answers").text().await.expect("text");
    assert!(metrics.lines().any(|l| l.starts_with("belofte_console_throttled_total") && l.ends_with(" 1")), "{metrics}");
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_paused_by_refused_credentials_is_shown_with_why() {
    let broker = support::broker(1);
    let db = backends::Db::sqlite().await;
    let peers = peers(SmtpScript::accept_all(), vec![TwilioAnswer::Unauthorized]).await;
    let running = start(&broker, &db.url, &peers).await;
    let addr = running.http_addr;
    produce(&broker, &order_now("P-1", "Pien", &["sms"], "+31612345678"));
    eventually_async("the SMS channel is paused", Duration::from_secs(30), move || async move {
        !api_get(addr, "/api/outbox").await["paused"].as_array().expect("list").is_empty()
    })
    .await;
    let o = api_get(addr, "/api/outbox").await;
    let paused = o["paused"].as_array().expect("list");
    assert_eq!(paused.len(), 1, "{o}");
    assert_eq!(paused[0]["channel"], "sms");
    assert!(paused[0]["reason"].as_str().is_some_and(|r| !r.is_empty()) && paused[0]["until"].is_string(), "{o}");
    assert!(o["depth"].as_array().expect("depth").iter().any(|d| d["channel"] == "sms" && d["status"] == "pending"), "the SMS waits: {o}");
    let (_, _, html) = log_in(addr, "Anna").await.page(addr, "/console/outbox").await;
    let section = html.split("<h2>Paused channels</h2>").nth(1).and_then(|s| s.split("<h2>").next()).expect("the section");
    assert!(section.contains("<td>sms</td>"), "{section}");
    running.shutdown().await.expect("clean shutdown");
}

/// A customer whose email was refused for good: the Outbox page shows the message with its
/// reason (the name escaped); a POST without the CSRF token changes nothing; the retry from
/// the page sends it and the audit names who pressed the button. Cancel and its refusals
/// through the API.
async fn a_failed_message_is_retried_from_the_page_and_the_audit_names_who(db: &backends::Db) {
    let broker = support::broker(1);
    // Refused for its content, not its address: a retry may go out (an address refused for
    // good would be suppressed, and the retry refused again).
    let refuse = || DataAnswer::Reply(554, "5.6.0 Message content rejected".into());
    let peers = peers(SmtpScript::data([refuse(), DataAnswer::Accept, refuse()]), vec![]).await;
    let running = start(&broker, &db.url, &peers).await;
    let addr = running.http_addr;
    produce(&broker, &delayed_order("X-1", "<script>alert(1)</script>"));
    eventually_async("the refused email is failed", Duration::from_secs(30), move || async move { problem(addr, "X-1").await.is_some_and(|p| p["status"] == "failed") }).await;
    let failed = problem(addr, "X-1").await.expect("listed");
    assert!(failed["reason"].as_str().expect("a reason").contains("554"), "{failed}");
    assert_eq!(failed["recipient"], "X-1@example.nl");
    let id = failed["id"].as_i64().expect("id");

    let anna = log_in(addr, "Anna de Vries").await;
    let (_, _, html) = anna.page(addr, "/console/outbox").await;
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the name shows, as text");
    assert!(!html.contains("<script>alert"), "and never as markup");
    assert!(html.contains("554") && html.contains("X-1@example.nl"));

    // Without the CSRF token, with a wrong one, or from another site: 403, still failed.
    let retry = format!("/console/outbox/{id}/retry");
    assert_eq!(anna.press(addr, &retry, None, &[]).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(anna.press(addr, &retry, Some("0000"), &[]).await.status(), StatusCode::FORBIDDEN);
    let cross = anna.press(addr, &retry, Some(&anna.csrf), &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert_eq!(problem(addr, "X-1").await.expect("still listed")["status"], "failed");
    assert!(audit(addr).await.is_empty(), "nothing done, nothing recorded");

    // The button: back to the page with what happened; the email goes out this time.
    let pressed = anna.press(addr, &retry, Some(&anna.csrf), &[]).await;
    assert_eq!(pressed.status(), StatusCode::SEE_OTHER);
    let back = pressed.headers()["location"].to_str().expect("ascii").to_string();
    let (_, _, note) = anna.page(addr, &back).await;
    assert!(note.contains("failed → pending"), "the page says what the button did");
    peers.smtp.wait_for_accepted(1, Duration::from_secs(30)).await;
    let store = running.store.clone();
    eventually_async("the retried email is sent", Duration::from_secs(30), move || {
        let store = store.clone();
        async move { store.outbox().await.expect("outbox").iter().any(|r| r.id == id && r.status == "sent") }
    })
    .await;
    let entries = audit(addr).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!((entries[0]["who"].as_str(), entries[0]["action"].as_str()), (Some("Anna de Vries"), Some("retry")));
    assert_eq!(entries[0]["subject"], format!("outbox/{id}"));
    assert!(entries[0]["detail"].as_str().expect("detail").contains("failed → pending"));

    // A second customer's refused email is cancelled by a script; what went out is not.
    produce(&broker, &delayed_order("X-2", "Bram"));
    eventually_async("the second refused email is failed", Duration::from_secs(30), move || async move { problem(addr, "X-2").await.is_some_and(|p| p["status"] == "failed") }).await;
    let second = problem(addr, "X-2").await.expect("listed")["id"].as_i64().expect("id");
    let api = |path: String| client().post(url(addr, &path)).bearer_auth(TOKEN).header("x-console-user", "cleanup-script").send();
    let cancelled = api(format!("/api/outbox/{second}/cancel")).await.expect("answers");
    assert_eq!(cancelled.status(), StatusCode::OK);
    assert_eq!(cancelled.json::<Value>().await.expect("json")["status"], "cancelled");
    assert!(problem(addr, "X-2").await.is_none(), "no longer a problem");
    assert_eq!(api(format!("/api/outbox/{second}/retry")).await.expect("answers").status(), StatusCode::CONFLICT, "a cancelled message stays cancelled");
    assert_eq!(api(format!("/api/outbox/{id}/cancel")).await.expect("answers").status(), StatusCode::CONFLICT, "a sent one cannot be cancelled");
    assert_eq!(api("/api/outbox/999999/retry".into()).await.expect("answers").status(), StatusCode::NOT_FOUND);
    let statuses: Vec<(i64, String)> = running.store.outbox().await.expect("outbox").into_iter().map(|r| (r.id, r.status)).collect();
    assert!(statuses.contains(&(id, "sent".into())) && statuses.contains(&(second, "cancelled".into())), "{statuses:?}");
    let entries = audit(addr).await;
    assert_eq!(entries.len(), 2, "the refusals are not recorded: {entries:?}");
    assert_eq!((entries[0]["who"].as_str(), entries[0]["action"].as_str()), (Some("api:cleanup-script"), Some("cancel")));
    let (_, _, html) = anna.page(addr, "/console/outbox").await;
    assert!(html.contains("api:cleanup-script") && html.contains("Anna de Vries"), "the page lists the audit");
    assert_eq!(peers.smtp.accepted().len(), 1, "the cancelled email never went out");
    running.shutdown().await.expect("clean shutdown");
}

/// An event that cannot be read goes to the dead-letter topic and into the console's list,
/// with its reason, where it came from and what it said.
async fn a_dead_lettered_event_is_listed_with_its_reason(db: &backends::Db) {
    let broker = support::broker(1);
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let running = start(&broker, &db.url, &peers).await;
    let addr = running.http_addr;
    broker.produce("warehouse", None, b"this is not json <b>at all</b>").expect("produce");
    eventually_async("the dead letter is listed", Duration::from_secs(30), move || async move {
        !api_get(addr, "/api/outbox").await["dead_letters"].as_array().expect("list").is_empty()
    })
    .await;
    let o = api_get(addr, "/api/outbox").await;
    let letter = &o["dead_letters"][0];
    assert!(letter["reason"].as_str().expect("reason").contains("not JSON"), "{letter}");
    assert_eq!((letter["topic"].as_str(), letter["partition"].as_i64(), letter["offset"].as_i64()), (Some("warehouse"), Some(0), Some(0)));
    assert_eq!(letter["payload"], "this is not json <b>at all</b>");
    let anna = log_in(addr, "Anna").await;
    let (_, _, html) = anna.page(addr, "/console/outbox").await;
    assert!(html.contains("not JSON") && html.contains("this is not json &lt;b&gt;at all&lt;/b&gt;"), "listed, escaped");
    running.shutdown().await.expect("clean shutdown");
}

on_both_backends!(a_failed_message_is_retried_from_the_page_and_the_audit_names_who, a_dead_lettered_event_is_listed_with_its_reason);
