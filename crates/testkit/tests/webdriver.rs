//! The WebDriver client against a real headless Chromium and a page served on loopback:
//! what a person does on a page (type, click, read) and what a test keeps (a screenshot).

use std::time::Duration;

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use testkit::webdriver::{chromedriver_for, Browser, BrowserOptions};

const PAGE: &str = r#"<!doctype html>
<html><head><title>Greeter</title></head><body>
<h1>Greeter</h1>
<input name="who" value="placeholder">
<button id="greet" onclick="setTimeout(() => { document.getElementById('out').textContent = 'Hello, ' + document.querySelector('input[name=who]').value + '!' }, 200)">Greet</button>
<p id="out"></p>
<ul><li>one</li><li>two</li><li>three</li></ul>
</body></html>"#;

async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route("/", get(|| async { Html(PAGE) }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_types_a_name_clicks_and_reads_the_greeting() {
    let Some(driver) = chromedriver_for("webdriver") else { return };
    let url = serve().await;
    let browser = Browser::start(&driver, BrowserOptions { width: 640, height: 480, ..BrowserOptions::default() })
        .await
        .expect("chromium starts");
    browser.goto(&url).await.expect("page opens");
    assert_eq!(browser.title().await.expect("title"), "Greeter");

    // Typing replaces what the field held.
    let field = browser.find("input[name=who]").await.expect("the field");
    field.type_text("Ingrid").await.expect("typed");
    assert_eq!(field.property("value").await.expect("value"), "Ingrid");

    // The greeting comes a moment after the click: waited for, not slept for.
    browser.find("#greet").await.expect("the button").click().await.expect("clicked");
    let out = browser.wait_for("#out", "Hello", Duration::from_secs(10)).await.expect("the greeting");
    assert_eq!(out, "Hello, Ingrid!");

    let items = browser.find_all("li").await.expect("list");
    assert_eq!(items.len(), 3);
    assert_eq!(items[2].text().await.expect("text"), "three");
    let joined = browser
        .execute("return Array.from(arguments[0].parentNode.children).map(li => li.textContent).join(',')", vec![items[0].as_arg()])
        .await
        .expect("script");
    assert_eq!(joined, "one,two,three");

    // A missing element and a wait that never comes true say what happened.
    let missing = browser.find("#nothing-here").await.err().expect("no such element");
    assert_eq!(missing.error, "no such element", "{missing}");
    let waited = browser.wait_for("#out", "Goodbye", Duration::from_millis(300)).await.err().expect("times out");
    assert!(waited.to_string().contains("Hello, Ingrid!"), "the error shows what the page said: {waited}");

    let dir = testkit::tempdir().expect("tempdir");
    let png = dir.path().join("shots/greeter.png");
    browser.screenshot(&png).await.expect("screenshot");
    let bytes = std::fs::read(&png).expect("written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");

    browser.quit().await.expect("the session ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_driver_is_a_clear_error() {
    let gone = std::path::Path::new("/nonexistent/chromedriver");
    let err = Browser::start(gone, BrowserOptions::default()).await.err().expect("no driver, no browser");
    assert_eq!(err.error, "spawn");
    assert!(err.to_string().contains("/nonexistent/chromedriver"), "{err}");
}
