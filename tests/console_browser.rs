//! The ops console in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! driven over WebDriver by `testkit::webdriver`), as a person at the shop uses it. The
//! daemon runs with the console on, a shared story goes through it, and then in the browser:
//! log in, open the story's order and read why its SMS waited, break a template and see the
//! lint refuse it, fix and publish it and see the next customer's email carry the new words,
//! switch a brand's tone and see the preview change.
//!
//! Each step leaves a screenshot in `target/console-screens/`. With
//! `BELOFTE_CONSOLE_SCREENS_TO_DOCS=1` the two shown in the README are copied to `docs/`.
//! Without chromedriver the test fails in CI (`CI` set) and is skipped elsewhere.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use belofte::daemon::{Clock, Overrides, Running};
use belofte_core::event::parse_time;
use serde_json::Value;
use support::{config_at, eventually, feed, peers, processed, root, settings, stories, templates};
use testkit::smtp::SmtpScript;
use testkit::webdriver::{chromedriver_for, Browser, BrowserOptions};

const TOKEN: &str = "console-test-token-8f2c";

fn screens() -> PathBuf {
    root().join("target/console-screens")
}

async fn shot(browser: &Browser, name: &str) {
    let path = screens().join(format!("{name}.png"));
    browser.screenshot(&path).await.expect("screenshot");
    println!("screenshot: {}", path.display());
}

/// The README's pictures come from this test: copied when asked, never on an ordinary run.
fn copy_to_docs(names: &[(&str, &str)]) {
    if std::env::var_os("BELOFTE_CONSOLE_SCREENS_TO_DOCS").is_none() {
        return;
    }
    for (screen, doc) in names {
        let from = screens().join(format!("{screen}.png"));
        let to = root().join("docs").join(doc);
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{} → {}: {e}", from.display(), to.display()));
    }
}

/// The same order again, `days` later under another id and parcel: each instant in it moves
/// (whole weeks keep the weekdays, so the same promise is broken the same way).
fn again_later(lines: &[String], days: i64, from_id: &str, to_id: &str, from_parcel: &str, to_parcel: &str) -> Vec<String> {
    fn shift(v: &mut Value, by: chrono::Duration) {
        match v {
            Value::String(s) => {
                if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                    *s = (t + by).to_rfc3339();
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| shift(i, by)),
            Value::Object(fields) => fields.values_mut().for_each(|f| shift(f, by)),
            _ => {}
        }
    }
    lines
        .iter()
        .map(|l| {
            let mut v: Value = serde_json::from_str(&l.replace(from_id, to_id).replace(from_parcel, to_parcel)).expect("json");
            shift(&mut v, chrono::Duration::days(days));
            v["id"] = Value::String(format!("{}-again", v["id"].as_str().expect("id")));
            v.to_string()
        })
        .collect()
}

fn time_of(line: &str) -> chrono::DateTime<chrono::Utc> {
    parse_time(serde_json::from_str::<Value>(line).expect("json")["time"].as_str().expect("time")).expect("rfc3339")
}

/// What a person at the console sees and does, one step per page.
struct Console<'b> {
    browser: &'b Browser,
    base: String,
}

impl Console<'_> {
    async fn open(&self, path: &str) {
        self.browser.goto(&format!("{}{path}", self.base)).await.unwrap_or_else(|e| panic!("{path}: {e}"));
    }

    async fn click(&self, css: &str) {
        self.browser.find(css).await.unwrap_or_else(|e| panic!("{e}")).click().await.unwrap_or_else(|e| panic!("{e}"));
    }

    /// The text of the first element matching `css` once it contains `needle`.
    async fn sees(&self, css: &str, needle: &str) -> String {
        match self.browser.wait_for(css, needle, Duration::from_secs(20)).await {
            Ok(text) => text,
            Err(e) => {
                // What the person would have seen, for whoever reads the failure.
                self.shot("failed").await;
                let page = self.browser.execute("return document.body ? document.body.innerText : ''", vec![]).await;
                panic!("{e}\nthe page says:\n{}", page.ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default());
            }
        }
    }

    async fn shot(&self, name: &str) {
        shot(self.browser, name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_read_a_trace_fix_a_template_and_set_a_brands_tone_in_the_browser() {
    let Some(driver) = chromedriver_for("console_browser") else { return };
    let _ = std::fs::remove_dir_all(screens());

    // The daemon with the console on, and the 18:00 promise broken by a week (webshop_18h):
    // the email goes at 06:40, the SMS waits for 08:00 (quiet hours).
    let broker = support::broker(3);
    let dir = testkit::tempdir().expect("tempdir");
    let peers = peers(SmtpScript::accept_all(), vec![]).await;
    let lines = stories(&["webshop_18h"]);
    let mut cfg = config_at(&broker, &format!("sqlite://{}", dir.path().join("belofte.db").display()), &peers, "console");
    cfg.console.token = Some(TOKEN.into());
    cfg.console.poll_secs = 1;
    let clock = Clock::manual(time_of(&lines[0]));
    let running = Running::start(settings(), templates(), cfg, Overrides { clock: Some(clock.clone()), ..Default::default() })
        .await
        .expect("daemon starts");
    feed(&broker, &running, &clock, &lines, 0).await;
    clock.set(time_of(lines.last().expect("a story")) + chrono::Duration::days(3));
    peers.smtp.wait_for_accepted(2, Duration::from_secs(30)).await;
    peers.twilio.wait_for_messages(1, Duration::from_secs(30)).await;

    let browser = Browser::start(&driver, BrowserOptions::default()).await.expect("chromium starts");
    let console = Console { browser: &browser, base: format!("http://{}", running.http_addr) };

    // Log in: the console sends a stranger to the login form, and after it to the outbox.
    console.open("/console/").await;
    console.sees("h1", "Log in").await;
    browser.find("#name").await.expect("name field").type_text("Olga from ops").await.expect("typed");
    browser.find("#token").await.expect("token field").type_text(TOKEN).await.expect("typed");
    console.shot("01-login").await;
    console.click("form[action='/console/login'] button[type=submit]").await;
    console.sees("h1", "Outbox").await;
    console.sees("header", "Olga from ops").await;
    console.shot("02-outbox").await;

    // The story's order, found by the beginning of its id: its trace says why the SMS
    // waited, and until when.
    console.open("/console/orders?q=B-14").await;
    console.click("a[href='/console/orders/B-1401']").await;
    console.sees("h1", "B-1401").await;
    let trace = console.sees("body", "quiet_hours").await;
    assert!(trace.contains("quiet_hours (sms) until"), "the held SMS with its channel and release time: {trace}");
    console.sees("body", "order.placed").await;
    console.shot("02b-order-trace").await;

    // A template: the delayed email in Dutch, previewed in every tone.
    let path = "delayed/nl/email.txt.hbs";
    let shipped = std::fs::read_to_string(root().join("templates").join(path)).expect("the shipped template");
    console.open(&format!("/console/templates/{path}")).await;
    console.sees("h1", path).await;
    console.sees("#preview .sample[data-tone=formal] pre.text", "hoort u").await;
    console.sees("#preview .sample[data-tone=warm] pre.text", "hoor je").await;

    // Broken: an {{#if}} never closed. The lint says so, with the line, as the person types.
    let broken = format!("{shipped}{{{{#if new}}}}\nTot ziens\n");
    let editor = browser.find("#edit textarea[name=text]").await.expect("the edit box");
    editor.type_text(&broken).await.expect("typed");
    let problem = console.sees("#problems li.problem", "line ").await;
    assert!(problem.contains("line "), "the lint names the line: {problem}");
    console.shot("03-template-lint").await;
    // Publishing it anyway is refused, and nothing changes.
    browser.find("#note").await.expect("note").type_text("a test of the lint").await.expect("typed");
    console.click("#edit button[type=submit]").await;
    console.sees(".note", "Not published").await;
    assert_eq!(running.shared.live.version(), 0, "a refused template never reaches the daemon");

    // Fixed, with a new line for the customer, and published.
    let words = "PS: Liever een andere bezorgdag? Geef het door via onze klantenservice.";
    let fixed = shipped.replace("{{voice \"signoff\"}}", &format!("{words}\n\n{{{{voice \"signoff\"}}}}"));
    assert_ne!(fixed, shipped, "the template has a sign-off to put the words before");
    let editor = browser.find("#edit textarea[name=text]").await.expect("the edit box");
    editor.type_text(&fixed).await.expect("typed");
    console.sees("#problems", "No problems").await;
    console.sees("#preview .sample[data-tone=formal] pre.text", words).await;
    browser.find("#note").await.expect("note").type_text("offer another delivery day").await.expect("typed");
    console.click("#edit button[type=submit]").await;
    console.sees("p", "Published version").await;
    console.shot("04-template-published").await;
    eventually("the daemon to use the published wording", Duration::from_secs(20), || running.shared.live.version() > 0).await;

    // The next customer whose promise breaks gets the new words: the same story two weeks
    // later for another order, up to the carrier's exception, and the coalescing window.
    let next: Vec<String> = again_later(&lines, 14, "B-1401", "B-1402", "3SHOF12737371", "3SHOF12737372")
        .into_iter()
        .take_while(|l| !l.contains("carrier.in_transit"))
        .collect();
    let before = processed(&running);
    feed(&broker, &running, &clock, &next, before).await;
    clock.set(time_of(next.last().expect("the exception")) + chrono::Duration::minutes(5));
    let mail = {
        let smtp = peers.smtp.clone();
        let mut found = None;
        eventually("the next customer's email", Duration::from_secs(30), || {
            found = smtp.accepted().into_iter().find(|m| m.header("X-Belofte-Key").is_some_and(|k| k.starts_with("B-1402/delayed/")));
            found.is_some()
        })
        .await;
        found.expect("found")
    };
    assert!(mail.data.contains(words), "the email carries the published words:\n{}", mail.data);
    let earlier = peers.smtp.accepted().into_iter().find(|m| m.header("X-Belofte-Key").is_some_and(|k| k.starts_with("B-1401/delayed/"))).expect("B-1401's email");
    assert!(!earlier.data.contains(words), "the email sent before the publish kept its words");

    // A brand: Hofman writes formally; marketing tries the warm tone and compares.
    console.open("/console/brands/hofman").await;
    console.sees("h1", "Hofman").await;
    let now = console.sees("#preview .sample pre.text", "hoort u").await;
    console.click("#tone option[value=warm]").await;
    console.click("form[action$='/draft'] button[type=submit]").await;
    console.sees(".note", "draft").await;
    let draft = console.sees("#preview .sample[data-tone=warm] pre.text", "hoor je").await;
    assert_ne!(now, draft, "the preview changes with the tone");
    let preview = browser.find("#preview").await.expect("the preview");
    browser.execute("arguments[0].scrollIntoView()", vec![preview.as_arg()]).await.expect("scrolled");
    console.shot("05-brand-tone").await;

    copy_to_docs(&[("04-template-published", "console-template.png"), ("05-brand-tone", "console-brand.png")]);
    browser.quit().await.expect("chromium ends");
    running.shutdown().await.expect("clean shutdown");
}
