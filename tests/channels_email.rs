//! The email channel against a real SMTP peer on loopback.


use std::net::SocketAddr;
use std::time::Duration;

use belofte::channels::email::{
    eml_file_name, message_id, FileMailer, SmtpConfig, SmtpMailer, Tls,
};
use belofte::channels::{EmailBackend, MemoryMailer, OutgoingEmail, SendOutcome};
use testkit::smtp::{DataAnswer, SmtpScript, SmtpServer};
use testkit::{header, parse_message};

const KEY: &str = "B-1101/delayed/2026-11-28/email";

fn email(key: &str, html: bool) -> OutgoingEmail {
    OutgoingEmail {
        key: key.to_string(),
        from: "Lumen klantenservice <service@lumen.example>".to_string(),
        to: "daan@example.nl".to_string(),
        subject: "Je bestelling B-1101 komt later".to_string(),
        text: "Hallo Daan,\n\nJe bestelling komt op 28 november in plaats van 26 november.\n"
            .to_string(),
        html: html.then(|| {
            "<p>Hallo Daan,</p><p>Je bestelling komt op <b>28 november</b>.</p>".to_string()
        }),
        envelope_from: None,
    }
}

fn config(addr: SocketAddr) -> SmtpConfig {
    SmtpConfig {
        host: addr.ip().to_string(),
        port: addr.port(),
        tls: Tls::None,
        username: Some("belofte".into()),
        password: Some("s3cret".into()),
        timeout_secs: 5,
        pool_max: 2,
        hello_name: Some("belofte.test".into()),
    }
}

fn smtp(addr: SocketAddr) -> EmailBackend {
    EmailBackend::Smtp(SmtpMailer::new(&config(addr)).expect("valid config"))
}

fn reason(outcome: &SendOutcome) -> &str {
    outcome.reason().unwrap_or("")
}

#[tokio::test]
async fn a_real_send_arrives_with_headers_and_both_parts() {
    let (addr, server) = SmtpServer::start(SmtpScript::accept_all()).await;
    let backend = smtp(addr);

    let first = backend.send(&email(KEY, true)).await;
    assert!(first.is_sent(), "{first:?}");
    let second = backend.send(&email(KEY, true)).await;
    assert!(second.is_sent(), "{second:?}");

    let mails = server.wait_for_accepted(2, Duration::from_secs(5)).await;
    let mail = &mails[0];
    assert_eq!(
        mail.auth,
        Some(("belofte".to_string(), "s3cret".to_string()))
    );
    assert_eq!(mail.mail_from, "service@lumen.example");
    assert_eq!(mail.rcpt_to, vec!["daan@example.nl".to_string()]);

    let from = mail.header("From").expect("From");
    assert!(
        from.contains("Lumen klantenservice") && from.contains("<service@lumen.example>"),
        "{from}"
    );
    assert_eq!(mail.header("To").as_deref(), Some("daan@example.nl"));
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Je bestelling B-1101 komt later")
    );
    assert_eq!(mail.header("X-Belofte-Key").as_deref(), Some(KEY));
    assert_eq!(
        mail.header("Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    assert!(mail.header("Date").is_some());

    // The same notification sent twice carries the same, key-derived Message-ID.
    let id = mail.header("Message-ID").expect("Message-ID");
    assert_eq!(id, message_id(KEY, "lumen.example"));
    assert_eq!(mails[1].header("Message-ID").as_deref(), Some(id.as_str()));
    assert_ne!(
        id,
        message_id("B-1101/delayed/2026-11-29/email", "lumen.example")
    );

    let content_type = mail.header("Content-Type").expect("Content-Type");
    assert!(
        content_type.starts_with("multipart/alternative"),
        "{content_type}"
    );
    let plain = mail
        .data
        .find("Content-Type: text/plain")
        .expect("a text/plain part");
    let html = mail
        .data
        .find("Content-Type: text/html")
        .expect("a text/html part");
    assert!(
        plain < html,
        "text first, then HTML (the preferred part comes last)"
    );
    assert!(mail
        .data
        .contains("Je bestelling komt op 28 november in plaats van 26 november."));
    assert!(mail.data.contains("<b>28 november</b>"));

    // The pool reused the first connection (checked with NOOP) for the second message.
    assert_eq!(server.connections(), 1);
    assert_eq!(mails[1].connection, 0);
}

#[tokio::test]
async fn text_only_is_a_single_text_part() {
    let (addr, server) = SmtpServer::start(SmtpScript::accept_all()).await;
    let outcome = smtp(addr).send(&email(KEY, false)).await;
    assert!(outcome.is_sent(), "{outcome:?}");
    let mail = &server.accepted()[0];
    let content_type = mail.header("Content-Type").expect("Content-Type");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(!mail.data.contains("text/html"));
}

#[tokio::test]
async fn temporary_failure_451_is_transient_and_the_retry_goes_through() {
    let (addr, server) = SmtpServer::start(SmtpScript::data([DataAnswer::temp_fail()])).await;
    let backend = smtp(addr);

    let outcome = backend.send(&email(KEY, true)).await;
    assert!(matches!(outcome, SendOutcome::Transient(_)), "{outcome:?}");
    assert!(reason(&outcome).contains("451"), "{outcome:?}");
    assert_eq!(outcome.provider_code(), Some(451));

    let retry = backend.send(&email(KEY, true)).await;
    assert!(retry.is_sent(), "{retry:?}");
    assert_eq!(server.accepted().len(), 1);
}

#[tokio::test]
async fn rejection_550_is_permanent_with_the_servers_reply() {
    let (addr, _server) = SmtpServer::start(SmtpScript::data([DataAnswer::reject()])).await;
    let outcome = smtp(addr).send(&email(KEY, true)).await;
    assert!(matches!(outcome, SendOutcome::Permanent { .. }), "{outcome:?}");
    assert!(reason(&outcome).contains("550"), "{outcome:?}");
    assert!(
        reason(&outcome).contains("Mailbox unavailable: no such user"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn connection_dropped_after_data_is_unknown() {
    let (addr, server) = SmtpServer::start(SmtpScript::data([DataAnswer::DropConnection])).await;
    let backend = smtp(addr);

    let outcome = backend.send(&email(KEY, true)).await;
    assert!(matches!(outcome, SendOutcome::Unknown(_)), "{outcome:?}");
    // The server did get the whole message: that is exactly why it is "unknown".
    assert_eq!(server.messages().len(), 1);
    assert_eq!(server.messages()[0].answer, "dropped");

    // The broken connection is not reused; a resend opens a new one and carries the same id.
    let again = backend.send(&email(KEY, true)).await;
    assert!(again.is_sent(), "{again:?}");
    assert_eq!(server.connections(), 2);
    let all = server.messages();
    assert_eq!(all[0].header("Message-ID"), all[1].header("Message-ID"));
}

#[tokio::test]
async fn no_reply_after_data_is_unknown_after_the_timeout() {
    let (addr, _server) = SmtpServer::start(SmtpScript::data([DataAnswer::Stall])).await;
    let cfg = SmtpConfig {
        timeout_secs: 1,
        ..config(addr)
    };
    let backend = EmailBackend::Smtp(SmtpMailer::new(&cfg).expect("valid config"));
    let outcome = backend.send(&email(KEY, true)).await;
    assert!(matches!(outcome, SendOutcome::Unknown(_)), "{outcome:?}");
}

#[tokio::test]
async fn rejected_credentials_535_are_auth_failed() {
    let (addr, server) = SmtpServer::start(SmtpScript::accept_all().reject_auth()).await;
    let outcome = smtp(addr).send(&email(KEY, true)).await;
    assert!(matches!(outcome, SendOutcome::AuthFailed(_)), "{outcome:?}");
    assert!(reason(&outcome).contains("535"), "{outcome:?}");
    assert!(server.messages().is_empty());
    assert_eq!(server.auth_attempts().len(), 1);
}

#[tokio::test]
async fn auth_login_works_too() {
    let (addr, server) = SmtpServer::start(SmtpScript::accept_all().auth_mechanisms("LOGIN")).await;
    let outcome = smtp(addr).send(&email(KEY, true)).await;
    assert!(outcome.is_sent(), "{outcome:?}");
    assert_eq!(
        server.accepted()[0].auth,
        Some(("belofte".to_string(), "s3cret".to_string()))
    );
}

#[tokio::test]
async fn nothing_listening_is_transient() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    }; // closed again: connecting is refused
    let outcome = smtp(addr).send(&email(KEY, true)).await;
    assert!(matches!(outcome, SendOutcome::Transient(_)), "{outcome:?}");
}

#[tokio::test]
async fn an_invalid_recipient_is_permanent_and_never_reaches_the_server() {
    let (addr, server) = SmtpServer::start(SmtpScript::accept_all()).await;
    let mut bad = email(KEY, false);
    bad.to = "daan at example.nl".into();
    let outcome = smtp(addr).send(&bad).await;
    assert!(matches!(outcome, SendOutcome::Permanent { .. }), "{outcome:?}");
    assert!(
        !reason(&outcome).contains("daan"),
        "the reason must not leak the address: {outcome:?}"
    );
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn file_backend_writes_a_parseable_eml_per_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = EmailBackend::File(FileMailer::new(dir.path().join("mail")).expect("dir"));
    let outcome = backend.send(&email(KEY, true)).await;
    assert!(outcome.is_sent(), "{outcome:?}");
    // A resend of the same notification overwrites instead of adding a file.
    assert!(backend.send(&email(KEY, true)).await.is_sent());

    let files: Vec<_> = std::fs::read_dir(dir.path().join("mail"))
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    assert_eq!(files, vec![eml_file_name(KEY)]);

    let raw =
        std::fs::read_to_string(dir.path().join("mail").join(eml_file_name(KEY))).expect("eml");
    let (headers, body) = parse_message(&raw).expect("an RFC 5322 message");
    assert_eq!(
        header(&headers, "Message-ID"),
        Some(message_id(KEY, "lumen.example"))
    );
    assert_eq!(header(&headers, "X-Belofte-Key").as_deref(), Some(KEY));
    assert_eq!(header(&headers, "To").as_deref(), Some("daan@example.nl"));
    assert!(
        header(&headers, "Content-Type").is_some_and(|c| c.starts_with("multipart/alternative"))
    );
    assert!(body.contains("text/plain") && body.contains("text/html"));
}

#[tokio::test]
async fn memory_backend_keeps_what_was_sent() {
    let memory = MemoryMailer::new();
    let backend = EmailBackend::Memory(memory.clone());
    assert!(backend.send(&email(KEY, true)).await.is_sent());
    assert_eq!(memory.messages(), vec![email(KEY, true)]);
}
