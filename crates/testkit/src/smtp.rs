//! A small SMTP server: greeting, EHLO, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
//!
//! `SmtpServer::start(script)` → `(addr, handle)`; `handle.messages()` is every completed
//! DATA transfer with the answer it got, `handle.accepted()` those answered 250.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::{base64_decode, lock, AbortOnDrop};

/// How the server answers the end of one message's DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataAnswer {
    /// `250 2.0.0 Ok: queued as …`
    Accept,
    /// Any reply, e.g. `Reply(451, "4.3.0 Try again later".into())`.
    Reply(u16, String),
    /// Close the connection right after the final `.`, before replying.
    DropConnection,
    /// Never reply (the connection stays open until the client gives up).
    Stall,
}

impl DataAnswer {
    pub fn temp_fail() -> DataAnswer {
        DataAnswer::Reply(451, "4.3.0 Temporary local problem, try again later".into())
    }

    pub fn reject() -> DataAnswer {
        DataAnswer::Reply(550, "5.1.1 Mailbox unavailable: no such user".into())
    }
}

/// What the server does. `SmtpScript::default()` accepts everything.
#[derive(Debug, Clone, Default)]
pub struct SmtpScript {
    /// Answers to DATA, in order over all connections; `Accept` once used up.
    pub data_answers: Vec<DataAnswer>,
    /// Answer every AUTH with `535 5.7.8 Authentication credentials invalid`.
    pub reject_auth: bool,
    /// The mechanisms advertised in EHLO; `"PLAIN LOGIN"` when `None`.
    pub auth_mechanisms: Option<String>,
}

impl SmtpScript {
    pub fn accept_all() -> SmtpScript {
        SmtpScript::default()
    }

    pub fn data(answers: impl IntoIterator<Item = DataAnswer>) -> SmtpScript {
        SmtpScript {
            data_answers: answers.into_iter().collect(),
            ..SmtpScript::default()
        }
    }

    pub fn reject_auth(mut self) -> SmtpScript {
        self.reject_auth = true;
        self
    }

    pub fn auth_mechanisms(mut self, mechanisms: &str) -> SmtpScript {
        self.auth_mechanisms = Some(mechanisms.to_string());
        self
    }
}

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// Which connection (0, 1, …) carried it.
    pub connection: usize,
    /// `(user, password)` of the connection's successful AUTH, if any.
    pub auth: Option<(String, String)>,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as transmitted, dot-unstuffed, CRLF line ends, without the final `.`.
    pub data: String,
    /// `"250"`, `"451"`, `"550"`, … or `"dropped"` / `"stalled"`.
    pub answer: String,
}

impl ReceivedMail {
    pub fn accepted(&self) -> bool {
        self.answer == "250"
    }

    /// A top-level header, unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let (headers, _) = super::parse_message(&self.data)?;
        super::header(&headers, name)
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<DataAnswer>,
    reject_auth: bool,
    mechanisms: String,
    connections: usize,
    auth_attempts: Vec<(String, String)>,
    messages: Vec<ReceivedMail>,
}

/// A handle on a running server; clones share it.
#[derive(Clone)]
pub struct SmtpHandle {
    state: Arc<Mutex<State>>,
    count: watch::Receiver<usize>,
    _task: Arc<AbortOnDrop>,
}

impl SmtpHandle {
    /// Every completed DATA transfer, whatever the answer.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        lock(&self.state).messages.clone()
    }

    /// The messages answered with 250.
    pub fn accepted(&self) -> Vec<ReceivedMail> {
        self.messages()
            .into_iter()
            .filter(|m| m.accepted())
            .collect()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        lock(&self.state).connections
    }

    /// Every AUTH tried, as `(user, password)`.
    pub fn auth_attempts(&self) -> Vec<(String, String)> {
        lock(&self.state).auth_attempts.clone()
    }

    /// Waits until at least `n` messages were accepted; panics after `within`.
    pub async fn wait_for_accepted(&self, n: usize, within: Duration) -> Vec<ReceivedMail> {
        let mut rx = self.count.clone();
        let state = self.state.clone();
        let reached = tokio::time::timeout(
            within,
            rx.wait_for(|_| {
                lock(&state)
                    .messages
                    .iter()
                    .filter(|m| m.accepted())
                    .count()
                    >= n
            }),
        )
        .await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "SMTP double: {n} accepted messages expected within {within:?}, got {}",
            self.accepted().len()
        );
        self.accepted()
    }
}

pub struct SmtpServer;

impl SmtpServer {
    pub async fn start(script: SmtpScript) -> (SocketAddr, SmtpHandle) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind SMTP double");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State {
            script: script.data_answers.into_iter().collect(),
            reject_auth: script.reject_auth,
            mechanisms: script
                .auth_mechanisms
                .unwrap_or_else(|| "PLAIN LOGIN".into()),
            ..State::default()
        }));
        let (tx, rx) = watch::channel(0usize);
        let tx = Arc::new(tx);
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                // As mail servers do: replies go out at once, not after the peer's delayed
                // ACK (the benchmark's email figure measured 40 ms waits without this).
                let _ = stream.set_nodelay(true);
                let id = {
                    let mut st = lock(&accept_state);
                    st.connections += 1;
                    st.connections - 1
                };
                let state = accept_state.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = session(stream, id, state, tx).await;
                });
            }
        });
        (
            addr,
            SmtpHandle {
                state,
                count: rx,
                _task: Arc::new(AbortOnDrop(task)),
            },
        )
    }
}

async fn session(
    stream: TcpStream,
    id: usize,
    state: Arc<Mutex<State>>,
    tx: Arc<watch::Sender<usize>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut auth: Option<(String, String)> = None;
    let mut mail_from = String::new();
    let mut rcpt_to: Vec<String> = Vec::new();

    write
        .write_all(b"220 localhost belofte test ESMTP\r\n")
        .await?;
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        let upper = line.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("").to_string();
        match verb.as_str() {
            "EHLO" => {
                let mechanisms = lock(&state).mechanisms.clone();
                let reply = format!(
                    "250-localhost greets you\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-AUTH {mechanisms}\r\n250 ENHANCEDSTATUSCODES\r\n"
                );
                write.write_all(reply.as_bytes()).await?;
            }
            "HELO" => write.write_all(b"250 localhost\r\n").await?,
            "AUTH" => {
                let parts: Vec<&str> = line.split_whitespace().collect();
                let mechanism = parts
                    .get(1)
                    .map(|m| m.to_ascii_uppercase())
                    .unwrap_or_default();
                let creds = match mechanism.as_str() {
                    "PLAIN" => {
                        let initial = match parts.get(2) {
                            Some(initial) => initial.to_string(),
                            None => {
                                write.write_all(b"334 \r\n").await?;
                                read_line(&mut read).await?
                            }
                        };
                        let raw = base64_decode(&initial).unwrap_or_default();
                        let fields: Vec<String> = raw
                            .split(|&b| b == 0)
                            .map(|f| String::from_utf8_lossy(f).into_owned())
                            .collect();
                        (
                            fields.get(1).cloned().unwrap_or_default(),
                            fields.get(2).cloned().unwrap_or_default(),
                        )
                    }
                    "LOGIN" => {
                        write.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
                        let user = read_line(&mut read).await?;
                        write.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
                        let pass = read_line(&mut read).await?;
                        let text = |s: &str| {
                            String::from_utf8_lossy(&base64_decode(s).unwrap_or_default())
                                .into_owned()
                        };
                        (text(&user), text(&pass))
                    }
                    _ => {
                        write
                            .write_all(b"504 5.5.4 Unrecognized authentication type\r\n")
                            .await?;
                        continue;
                    }
                };
                let reject = {
                    let mut st = lock(&state);
                    st.auth_attempts.push(creds.clone());
                    st.reject_auth
                };
                if reject {
                    write
                        .write_all(b"535 5.7.8 Authentication credentials invalid\r\n")
                        .await?;
                } else {
                    auth = Some(creds);
                    write
                        .write_all(b"235 2.7.0 Authentication successful\r\n")
                        .await?;
                }
            }
            "MAIL" => {
                mail_from = address_of(&line);
                rcpt_to.clear();
                write.write_all(b"250 2.1.0 Ok\r\n").await?;
            }
            "RCPT" => {
                rcpt_to.push(address_of(&line));
                write.write_all(b"250 2.1.5 Ok\r\n").await?;
            }
            "DATA" => {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    if read.read_line(&mut l).await? == 0 {
                        return Ok(());
                    }
                    if l == ".\r\n" || l == ".\n" {
                        break;
                    }
                    let l = l
                        .strip_prefix('.')
                        .filter(|_| l.starts_with(".."))
                        .unwrap_or(&l);
                    data.push_str(l);
                }
                let answer = lock(&state)
                    .script
                    .pop_front()
                    .unwrap_or(DataAnswer::Accept);
                let (label, reply) = match &answer {
                    DataAnswer::Accept => {
                        let n = lock(&state).messages.len();
                        (
                            "250".to_string(),
                            Some(format!("250 2.0.0 Ok: queued as Q{n:05}\r\n")),
                        )
                    }
                    DataAnswer::Reply(code, text) => {
                        (code.to_string(), Some(format!("{code} {text}\r\n")))
                    }
                    DataAnswer::DropConnection => ("dropped".to_string(), None),
                    DataAnswer::Stall => ("stalled".to_string(), None),
                };
                {
                    let mut st = lock(&state);
                    st.messages.push(ReceivedMail {
                        connection: id,
                        auth: auth.clone(),
                        mail_from: mail_from.clone(),
                        rcpt_to: rcpt_to.clone(),
                        data,
                        answer: label,
                    });
                }
                tx.send_modify(|n| *n += 1);
                match (answer, reply) {
                    (DataAnswer::DropConnection, _) => return Ok(()),
                    (DataAnswer::Stall, _) => {
                        // Hold the connection open, reading (and ignoring) until the client
                        // closes it.
                        let mut sink = String::new();
                        while read.read_line(&mut sink).await? > 0 {
                            sink.clear();
                        }
                        return Ok(());
                    }
                    (_, Some(reply)) => write.write_all(reply.as_bytes()).await?,
                    (_, None) => {}
                }
            }
            "RSET" => {
                mail_from.clear();
                rcpt_to.clear();
                write.write_all(b"250 2.0.0 Ok\r\n").await?;
            }
            "NOOP" => write.write_all(b"250 2.0.0 Ok\r\n").await?,
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => {
                write
                    .write_all(b"502 5.5.2 Command not recognized\r\n")
                    .await?
            }
        }
    }
}

async fn read_line(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<String> {
    let mut line = String::new();
    read.read_line(&mut line).await?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// `MAIL FROM:<a@b> BODY=8BITMIME` → `a@b`.
fn address_of(line: &str) -> String {
    match (line.find('<'), line.find('>')) {
        (Some(open), Some(close)) if open < close => line[open + 1..close].to_string(),
        _ => line.split(':').nth(1).unwrap_or("").trim().to_string(),
    }
}
