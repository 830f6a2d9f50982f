//! An HTTP double of Twilio's Messages API (axum):
//! `POST /2010-04-01/Accounts/{sid}/Messages.json` (scripted per request) and
//! `GET` of the same path (the list, filtered by `To`, `DateSent>` and `PageSize`).
//!
//! `TwilioDouble::start(answers)` → `(base_url, handle)`; `handle.requests()` records every
//! request (form fields, query, Authorization header); `handle.messages()` the messages the
//! double created (those a `GET` lists).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::watch;

use crate::{base64_decode, lock, AbortOnDrop};

/// How the double answers one `POST`.
#[derive(Debug, Clone)]
pub enum TwilioAnswer {
    /// 201 with a new `SM…` sid; the message is listed afterwards.
    Created,
    /// 429 with Twilio error 20429 and `Retry-After: 1`.
    TooManyRequests,
    /// 503 with a plain-text body.
    Unavailable,
    /// Creates the message (it is listed at once), then waits this long before the 201:
    /// longer than the client's timeout gives an "unknown" outcome that a lookup resolves.
    Delay(Duration),
    /// Like `Delay`, but the message stays queued: no `date_sent` yet, so Twilio's
    /// `DateSent>` filter does not list it (as with a real queued message).
    DelayQueued(Duration),
    /// Takes the request but creates the message only after this long, as a provider that
    /// processes a request late, then answers 201 if the client still waits. The message is
    /// created even when the client has gone (timed out, or its process was killed): only
    /// a look-up after that moment finds it.
    ProcessedLate(Duration),
    /// 400 `{"code":21211,"message":"The 'To' number is not a valid phone number.","status":400}`
    InvalidNumber,
    /// 400 with error 21610 (the recipient replied STOP).
    OptedOut,
    /// 401 with error 20003.
    Unauthorized,
    /// Any status with any JSON body.
    Status(u16, serde_json::Value),
}

/// One request as the double saw it.
#[derive(Debug, Clone)]
pub struct TwilioRequest {
    pub method: String,
    /// The path, e.g. `/2010-04-01/Accounts/AC123/Messages.json`.
    pub path: String,
    pub account_sid: String,
    pub authorization: Option<String>,
    /// The decoded Basic credentials `(user, password)`.
    pub basic_auth: Option<(String, String)>,
    /// Form fields of a POST, in order.
    pub form: Vec<(String, String)>,
    /// Query parameters, decoded (`DateSent>` keeps its `>`).
    pub query: Vec<(String, String)>,
}

impl TwilioRequest {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A message the double created.
#[derive(Debug, Clone)]
pub struct CreatedSms {
    pub sid: String,
    pub to: String,
    /// `From`, or the `MessagingServiceSid` when no `From` was given.
    pub from: String,
    pub body: String,
    pub created: DateTime<Utc>,
    /// `None` while queued.
    pub sent: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct DoubleState {
    script: VecDeque<TwilioAnswer>,
    requests: Vec<TwilioRequest>,
    messages: Vec<CreatedSms>,
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<DoubleState>>,
    tx: Arc<watch::Sender<usize>>,
}

/// A handle on a running double; clones share it.
#[derive(Clone)]
pub struct TwilioHandle {
    shared: Shared,
    count: watch::Receiver<usize>,
    _task: Arc<AbortOnDrop>,
}

impl TwilioHandle {
    /// Every request (POST and GET), in arrival order.
    pub fn requests(&self) -> Vec<TwilioRequest> {
        lock(&self.shared.state).requests.clone()
    }

    /// The POSTs only.
    pub fn posts(&self) -> Vec<TwilioRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect()
    }

    /// Messages created (answered `Created` or `Delay`).
    pub fn messages(&self) -> Vec<CreatedSms> {
        lock(&self.shared.state).messages.clone()
    }

    /// Waits until at least `n` messages exist; panics after `within`.
    pub async fn wait_for_messages(&self, n: usize, within: Duration) -> Vec<CreatedSms> {
        let mut rx = self.count.clone();
        let reached = tokio::time::timeout(within, rx.wait_for(|c| *c >= n)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "Twilio double: {n} messages expected within {within:?}, got {}",
            self.messages().len()
        );
        self.messages()
    }
}

pub struct TwilioDouble;

impl TwilioDouble {
    /// Starts the double; the base URL is `http://127.0.0.1:<port>`.
    pub async fn start(answers: impl IntoIterator<Item = TwilioAnswer>) -> (String, TwilioHandle) {
        let (tx, rx) = watch::channel(0usize);
        let shared = Shared {
            state: Arc::new(Mutex::new(DoubleState {
                script: answers.into_iter().collect(),
                ..DoubleState::default()
            })),
            tx: Arc::new(tx),
        };
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                post(create).get(list),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind Twilio double");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (
            format!("http://{addr}"),
            TwilioHandle {
                shared,
                count: rx,
                _task: Arc::new(AbortOnDrop(task)),
            },
        )
    }
}

fn decode_pairs(encoded: &str) -> Vec<(String, String)> {
    // application/x-www-form-urlencoded, with `+` as space.
    form_urlencoded::parse(encoded.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn record(
    shared: &Shared,
    method: Method,
    uri: &Uri,
    account_sid: String,
    headers: &HeaderMap,
    body: &[u8],
) -> TwilioRequest {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let basic_auth = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(base64_decode)
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    let request = TwilioRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        account_sid,
        authorization,
        basic_auth,
        form: decode_pairs(&String::from_utf8_lossy(body)),
        query: decode_pairs(uri.query().unwrap_or("")),
    };
    lock(&shared.state).requests.push(request.clone());
    request
}

fn json_response(status: u16, body: serde_json::Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_json(status: u16, code: u32, message: &str) -> Response {
    json_response(
        status,
        json!({"code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status}),
    )
}

fn create_message(shared: &Shared, req: &TwilioRequest, queued: bool) -> serde_json::Value {
    let sms = {
        let mut st = lock(&shared.state);
        let sms = CreatedSms {
            sid: format!("SM{:032x}", st.messages.len() + 1),
            to: req.field("To").unwrap_or("").to_string(),
            from: req
                .field("From")
                .or(req.field("MessagingServiceSid"))
                .unwrap_or("")
                .to_string(),
            body: req.field("Body").unwrap_or("").to_string(),
            created: Utc::now(),
            sent: (!queued).then(Utc::now),
        };
        st.messages.push(sms.clone());
        sms
    };
    shared.tx.send_modify(|n| *n += 1);
    message_json(&sms, &req.account_sid)
}

fn message_json(sms: &CreatedSms, account_sid: &str) -> serde_json::Value {
    json!({
        "sid": sms.sid,
        "account_sid": account_sid,
        "to": sms.to,
        "from": sms.from,
        "body": sms.body,
        "status": if sms.sent.is_some() { "sent" } else { "queued" },
        "date_created": sms.created.to_rfc2822(),
        "date_sent": sms.sent.map(|t| t.to_rfc2822()),
        "num_segments": "1",
    })
}

async fn create(
    State(shared): State<Shared>,
    Path(account_sid): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = record(&shared, method, &uri, account_sid, &headers, &body);
    let answer = lock(&shared.state)
        .script
        .pop_front()
        .unwrap_or(TwilioAnswer::Created);
    match answer {
        TwilioAnswer::Created => json_response(201, create_message(&shared, &req, false)),
        TwilioAnswer::Delay(delay) | TwilioAnswer::DelayQueued(delay) => {
            let queued = matches!(answer, TwilioAnswer::DelayQueued(_));
            let created = create_message(&shared, &req, queued);
            tokio::time::sleep(delay).await;
            json_response(201, created)
        }
        TwilioAnswer::ProcessedLate(delay) => {
            // Its own task: axum drops this handler when the client goes, the provider
            // carries on.
            let late = {
                let shared = shared.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    create_message(&shared, &req, false)
                })
            };
            match late.await {
                Ok(created) => json_response(201, created),
                Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the double's task failed").into_response(),
            }
        }
        TwilioAnswer::TooManyRequests => {
            let mut response = error_json(429, 20429, "Too Many Requests");
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            response
        }
        TwilioAnswer::Unavailable => {
            (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response()
        }
        TwilioAnswer::InvalidNumber => {
            error_json(400, 21211, "The 'To' number is not a valid phone number.")
        }
        TwilioAnswer::OptedOut => {
            error_json(400, 21610, "Attempt to send to unsubscribed recipient")
        }
        TwilioAnswer::Unauthorized => error_json(401, 20003, "Authenticate"),
        TwilioAnswer::Status(status, body) => json_response(status, body),
    }
}

async fn list(
    State(shared): State<Shared>,
    Path(account_sid): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let req = record(&shared, method, &uri, account_sid.clone(), &headers, &[]);
    let to = req.query_param("To").map(str::to_string);
    let sent_from = req.query_param("DateSent>").map(str::to_string);
    let page_size: usize = req
        .query_param("PageSize")
        .and_then(|p| p.parse().ok())
        .unwrap_or(50);
    let mut messages: Vec<CreatedSms> = lock(&shared.state)
        .messages
        .iter()
        .filter(|m| to.as_deref().is_none_or(|to| m.to == to))
        .filter(|m| {
            sent_from.as_deref().is_none_or(|day| {
                m.sent
                    .is_some_and(|t| t.format("%Y-%m-%d").to_string().as_str() >= day)
            })
        })
        .cloned()
        .collect();
    messages.reverse(); // newest first, as Twilio lists them
    messages.truncate(page_size);
    let listed: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| message_json(m, &account_sid))
        .collect();
    json_response(
        200,
        json!({"messages": listed, "page": 0, "page_size": page_size, "next_page_uri": null}),
    )
}
