//! A headless Chromium driven over the W3C WebDriver protocol, for end-to-end tests of the
//! pages belofte serves. `chromedriver` (Debian's `chromium-driver`) is started on a free
//! loopback port (`--port=0`, the port it took read from its first lines), one session is
//! opened in it, and both end when the [`Browser`] is dropped or [`Browser::quit`] is called.
//! The protocol is plain JSON over HTTP, so reqwest is the whole client.
//!
//! ```ignore
//! let Some(driver) = testkit::webdriver::chromedriver_for("my_test") else { return };
//! let browser = Browser::start(&driver, BrowserOptions::default()).await?;
//! browser.goto("http://127.0.0.1:8080/console/login").await?;
//! browser.find("input[name=token]").await?.type_text("secret").await?;
//! browser.find("form button").await?.click().await?;
//! browser.screenshot(Path::new("target/console-screens/login.png")).await?;
//! ```

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// The key under which W3C WebDriver names an element in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long chromedriver may take to say which port it listens on, and one command to answer
/// (a navigation waits for the page's load).
const DRIVER_START: Duration = Duration::from_secs(20);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What went wrong, with the command that was sent.
#[derive(Debug)]
pub struct WebDriverError {
    pub command: String,
    /// The protocol's error code (`no such element`, `javascript error`, …) or what failed
    /// locally (`spawn`, `http`, `io`).
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "webdriver {}: {}: {}", self.command, self.error, self.message)
    }
}

impl std::error::Error for WebDriverError {}

pub type Result<T> = std::result::Result<T, WebDriverError>;

fn local(command: &str, error: &str, message: impl ToString) -> WebDriverError {
    WebDriverError { command: command.to_string(), error: error.to_string(), message: message.to_string() }
}

/// The chromedriver to use: `$CHROMEDRIVER`, else `/usr/bin/chromedriver` (Debian's
/// `chromium-driver`), else one on `PATH`. `None` when there is none.
pub fn chromedriver() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMEDRIVER").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    let debian = PathBuf::from("/usr/bin/chromedriver");
    if debian.is_file() {
        return Some(debian);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("chromedriver"))
        .find(|p| p.is_file())
}

/// The chromedriver for a test that needs a browser. Missing in CI (`CI` set) is a failure
/// that says how to install it; missing on a developer's machine prints a note and gives
/// `None`, and the test returns without running.
pub fn chromedriver_for(test: &str) -> Option<PathBuf> {
    let found = chromedriver();
    if found.is_none() {
        let how = "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does) or set CHROMEDRIVER";
        if std::env::var_os("CI").is_some() {
            panic!("{test}: chromedriver is missing in CI: {how}");
        }
        eprintln!("{test}: skipped, no chromedriver on this machine: {how}");
    }
    found
}

/// The window and the browser binary. Chromium always runs with `--headless --no-sandbox
/// --disable-gpu --disable-background-networking` (a CI box as root, no display, no GPU and
/// no network beyond loopback).
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    pub width: u32,
    pub height: u32,
    /// The Chromium binary; by default the one chromedriver finds (Debian's driver knows
    /// `/usr/lib/chromium/chromium`), or `$CHROMIUM`.
    pub binary: Option<PathBuf>,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        BrowserOptions { width: 1200, height: 800, binary: std::env::var_os("CHROMIUM").map(PathBuf::from) }
    }
}

/// One chromedriver process with one browser session in it.
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    driver: Child,
    ended: bool,
}

/// An element of the current page.
pub struct Element<'b> {
    browser: &'b Browser,
    id: String,
}

impl Browser {
    /// Start `driver` on a free loopback port and open a headless session in it.
    pub async fn start(driver: &Path, options: BrowserOptions) -> Result<Browser> {
        let mut child = Command::new(driver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| local("start", "spawn", format!("{}: {e}", driver.display())))?;
        let port = match child.stdout.take().map(read_port) {
            Some(Ok(port)) => port,
            Some(Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(local("start", "spawn", e));
            }
            None => return Err(local("start", "spawn", "chromedriver has no stdout")),
        };
        let http = reqwest::Client::builder()
            .timeout(COMMAND_TIMEOUT)
            .build()
            .map_err(|e| local("start", "http", e))?;
        // From here on a failure still ends chromedriver: the Browser's drop does it.
        let mut browser = Browser { http, session: format!("http://127.0.0.1:{port}"), driver: child, ended: true };
        let mut chrome = json!({
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                format!("--window-size={},{}", options.width, options.height),
            ]
        });
        if let Some(binary) = &options.binary {
            chrome["binary"] = json!(binary.display().to_string());
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": chrome}}});
        let url = format!("{}/session", browser.session);
        let value = browser.send("new session", browser.http.post(url).json(&caps)).await?;
        let id = value["sessionId"]
            .as_str()
            .ok_or_else(|| local("new session", "protocol", format!("no sessionId in {value}")))?;
        browser.session = format!("{}/session/{id}", browser.session);
        browser.ended = false;
        // The window's inner size as asked (--window-size sets the outer one in some builds).
        browser.set_window(options.width, options.height).await?;
        Ok(browser)
    }

    async fn send(&self, command: &str, request: reqwest::RequestBuilder) -> Result<Value> {
        let response = request.send().await.map_err(|e| local(command, "http", e))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| local(command, "http", e))?;
        let value = body.get("value").cloned().unwrap_or(Value::Null);
        if !status.is_success() || value.get("error").is_some() {
            return Err(WebDriverError {
                command: command.to_string(),
                error: value["error"].as_str().unwrap_or("unknown error").to_string(),
                message: value["message"].as_str().unwrap_or("").lines().next().unwrap_or("").to_string(),
            });
        }
        Ok(value)
    }

    async fn get(&self, command: &str, path: &str) -> Result<Value> {
        self.send(command, self.http.get(format!("{}{path}", self.session))).await
    }

    async fn post(&self, command: &str, path: &str, body: Value) -> Result<Value> {
        self.send(command, self.http.post(format!("{}{path}", self.session)).json(&body)).await
    }

    async fn set_window(&self, width: u32, height: u32) -> Result<()> {
        self.post("set window rect", "/window/rect", json!({"width": width, "height": height})).await?;
        Ok(())
    }

    /// Open `url` and wait for its load.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.post(&format!("navigate to {url}"), "/url", json!({"url": url})).await?;
        Ok(())
    }

    /// The address of the current page.
    pub async fn url(&self) -> Result<String> {
        Ok(self.get("get url", "/url").await?.as_str().unwrap_or("").to_string())
    }

    pub async fn title(&self) -> Result<String> {
        Ok(self.get("get title", "/title").await?.as_str().unwrap_or("").to_string())
    }

    /// The first element matching the CSS selector, now (see [`Browser::wait_for`]).
    pub async fn find(&self, css: &str) -> Result<Element<'_>> {
        let value = self.post(&format!("find {css}"), "/element", json!({"using": "css selector", "value": css})).await?;
        self.element(&format!("find {css}"), &value)
    }

    /// Every element matching the CSS selector, in document order.
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element<'_>>> {
        let value = self.post(&format!("find all {css}"), "/elements", json!({"using": "css selector", "value": css})).await?;
        let items = value.as_array().cloned().unwrap_or_default();
        items.iter().map(|v| self.element(&format!("find all {css}"), v)).collect()
    }

    fn element(&self, command: &str, value: &Value) -> Result<Element<'_>> {
        let id = value[ELEMENT_KEY]
            .as_str()
            .ok_or_else(|| local(command, "protocol", format!("not an element: {value}")))?;
        Ok(Element { browser: self, id: id.to_string() })
    }

    /// Wait until an element matching `css` shows text containing `needle` (a page that is
    /// still loading after a click, one that updates itself, a send still on its way); that
    /// text. An element gone with the page it was on counts as not yet; the error says what
    /// the page showed.
    pub async fn wait_for(&self, css: &str, needle: &str, within: Duration) -> Result<String> {
        let start = std::time::Instant::now();
        loop {
            let mut seen = String::new();
            match self.texts(css).await {
                Ok(texts) => {
                    if let Some(found) = texts.iter().find(|t| t.contains(needle)) {
                        return Ok(found.clone());
                    }
                    seen = texts.join("\n");
                }
                Err(e) if e.error == "stale element reference" => {}
                Err(e) => return Err(e),
            }
            if start.elapsed() >= within {
                return Err(local(
                    &format!("wait for {css} containing {needle:?}"),
                    "timeout",
                    format!("after {within:?} the page at {} shows: {}", self.url().await.unwrap_or_default(), seen.trim()),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of every element matching `css`, in document order.
    pub async fn texts(&self, css: &str) -> Result<Vec<String>> {
        let mut texts = Vec::new();
        for element in self.find_all(css).await? {
            texts.push(element.text().await?);
        }
        Ok(texts)
    }

    /// Run `script` (a function body: `return …`) in the page with `args`; its result.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.post("execute script", "/execute/sync", json!({"script": script, "args": args})).await
    }

    /// The whole visible page as PNG, written to `path` (its folder is made).
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let value = self.get("take screenshot", "/screenshot").await?;
        let png = value
            .as_str()
            .and_then(crate::base64_decode)
            .ok_or_else(|| local("take screenshot", "protocol", "the screenshot is not base64"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| local("take screenshot", "io", format!("{}: {e}", dir.display())))?;
        }
        std::fs::write(path, png).map_err(|e| local("take screenshot", "io", format!("{}: {e}", path.display())))
    }

    /// Work inside the `<iframe>` `frame` until [`Browser::leave_frame`].
    pub async fn enter_frame(&self, frame: &Element<'_>) -> Result<()> {
        self.post("switch to frame", "/frame", json!({"id": {ELEMENT_KEY: frame.id}})).await?;
        Ok(())
    }

    pub async fn leave_frame(&self) -> Result<()> {
        self.post("switch to parent frame", "/frame/parent", json!({})).await?;
        Ok(())
    }

    /// End the session and chromedriver.
    pub async fn quit(mut self) -> Result<()> {
        self.ended = true;
        let ended = self.send("delete session", self.http.delete(&self.session)).await;
        self.stop_driver();
        ended.map(|_| ())
    }

    fn stop_driver(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    /// A test that failed half-way still closes Chromium: the session is deleted from a
    /// thread of its own (drop cannot await, and may run inside a runtime), then
    /// chromedriver is ended.
    fn drop(&mut self) {
        if !self.ended {
            let url = self.session.clone();
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                if let Ok(runtime) = runtime {
                    runtime.block_on(async move {
                        let client = reqwest::Client::new();
                        let _ = client.delete(url).timeout(Duration::from_secs(10)).send().await;
                    });
                }
            })
            .join();
        }
        self.stop_driver();
    }
}

impl Element<'_> {
    fn path(&self, rest: &str) -> String {
        format!("/element/{}{rest}", self.id)
    }

    pub async fn click(&self) -> Result<()> {
        self.browser.post("element click", &self.path("/click"), json!({})).await?;
        Ok(())
    }

    /// Clear the field, then type `text` into it as keystrokes.
    pub async fn type_text(&self, text: &str) -> Result<()> {
        self.browser.post("element clear", &self.path("/clear"), json!({})).await?;
        self.send_keys(text).await
    }

    /// Type `text` where the caret is (a field keeps what it held).
    pub async fn send_keys(&self, text: &str) -> Result<()> {
        self.browser.post("element send keys", &self.path("/value"), json!({"text": text})).await?;
        Ok(())
    }

    /// The text as rendered (what a person reads, hidden parts left out).
    pub async fn text(&self) -> Result<String> {
        Ok(self.browser.get("element text", &self.path("/text")).await?.as_str().unwrap_or("").to_string())
    }

    /// A DOM property (`value` of a field, `checked`, …); `null` when it has none.
    pub async fn property(&self, name: &str) -> Result<Value> {
        self.browser.get(&format!("element property {name}"), &self.path(&format!("/property/{name}"))).await
    }

    /// The element itself as an argument of [`Browser::execute`].
    pub fn as_arg(&self) -> Value {
        json!({ELEMENT_KEY: self.id})
    }
}

/// The port from chromedriver's "ChromeDriver was started successfully on port N." line;
/// the rest of its output is drained by a thread so that it never blocks on a full pipe.
fn read_port(stdout: std::process::ChildStdout) -> std::result::Result<u16, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let mut told = false;
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if !told {
                // The first line says "on port 0" (the asked one); this one the port taken.
                let port = line
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|rest| rest.trim().trim_end_matches('.').parse::<u16>().ok());
                if let Some(port) = port {
                    let _ = tx.send(port);
                    told = true;
                }
            }
            line.clear();
        }
    });
    rx.recv_timeout(DRIVER_START)
        .map_err(|_| format!("chromedriver did not say its port within {DRIVER_START:?}"))
}
