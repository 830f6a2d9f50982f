//! The SMS channel against an HTTP double of Twilio on loopback.


use std::time::Duration;

use belofte::channels::sms::SmsLine;
use belofte::channels::{
    FileSms, MemorySms, OutgoingSms, SendOutcome, SmsBackend, TwilioClient, TwilioConfig,
};
use chrono::Utc;
use testkit::twilio::{TwilioAnswer, TwilioDouble};

const KEY: &str = "B-1101/delayed/2026-11-28/sms";

fn sms(text: &str) -> OutgoingSms {
    OutgoingSms {
        key: KEY.to_string(),
        from: String::new(),
        to: "+31612345511".to_string(),
        text: text.to_string(),
    }
}

const TEXT: &str = "Lumen: je bestelling B-1101 komt op vr 28 nov in plaats van wo 26 nov. Sorry!";

fn token_config(base_url: &str) -> TwilioConfig {
    TwilioConfig {
        base_url: base_url.to_string(),
        account_sid: "AC0123456789abcdef0123456789abcdef".into(),
        auth_token: Some("auth-token-1".into()),
        from: Some("Lumen".into()),
        timeout_secs: 5,
        ..TwilioConfig::default()
    }
}

fn twilio(cfg: &TwilioConfig) -> SmsBackend {
    SmsBackend::Twilio(TwilioClient::new(cfg).expect("valid config"))
}

#[tokio::test]
async fn account_token_and_from_number() {
    let (base_url, double) = TwilioDouble::start([]).await;
    let outcome = twilio(&token_config(&base_url)).send(&sms(TEXT)).await;

    let created = double.wait_for_messages(1, Duration::from_secs(5)).await;
    assert_eq!(
        outcome,
        SendOutcome::Sent {
            provider_id: Some(created[0].sid.clone())
        }
    );

    let posts = double.posts();
    assert_eq!(posts.len(), 1);
    let req = &posts[0];
    assert_eq!(
        req.path,
        "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"
    );
    assert_eq!(
        req.basic_auth,
        Some((
            "AC0123456789abcdef0123456789abcdef".to_string(),
            "auth-token-1".to_string()
        ))
    );
    assert!(req
        .authorization
        .as_deref()
        .is_some_and(|a| a.starts_with("Basic ")));
    assert_eq!(req.field("To"), Some("+31612345511"));
    assert_eq!(req.field("Body"), Some(TEXT));
    assert_eq!(req.field("From"), Some("Lumen"));
    assert_eq!(req.field("MessagingServiceSid"), None);
    assert_eq!(req.field("StatusCallback"), None);
}

#[tokio::test]
async fn a_sender_on_the_message_overrides_the_configured_from() {
    let (base_url, double) = TwilioDouble::start([]).await;
    let mut m = sms(TEXT);
    m.from = "+3197010000000".into();
    assert!(twilio(&token_config(&base_url)).send(&m).await.is_sent());
    assert_eq!(double.posts()[0].field("From"), Some("+3197010000000"));
}

#[tokio::test]
async fn api_key_messaging_service_and_status_callback_with_key() {
    let (base_url, double) = TwilioDouble::start([]).await;
    let cfg = TwilioConfig {
        auth_token: None,
        api_key_sid: Some("SK0123456789abcdef0123456789abcdef".into()),
        api_key_secret: Some("key-secret".into()),
        from: None,
        messaging_service_sid: Some("MG0123456789abcdef0123456789abcdef".into()),
        status_callback: Some("https://shop.example/belofte/twilio-status".into()),
        ..token_config(&base_url)
    };
    let outcome = twilio(&cfg).send(&sms(TEXT)).await;
    assert!(outcome.is_sent(), "{outcome:?}");

    let req = &double.posts()[0];
    // The account stays in the path; the key authenticates.
    assert_eq!(req.account_sid, "AC0123456789abcdef0123456789abcdef");
    assert_eq!(
        req.basic_auth,
        Some((
            "SK0123456789abcdef0123456789abcdef".to_string(),
            "key-secret".to_string()
        ))
    );
    assert_eq!(
        req.field("MessagingServiceSid"),
        Some("MG0123456789abcdef0123456789abcdef")
    );
    assert_eq!(req.field("From"), None);
    let callback =
        reqwest::Url::parse(req.field("StatusCallback").expect("StatusCallback")).expect("a URL");
    assert_eq!(callback.path(), "/belofte/twilio-status");
    let key = callback
        .query_pairs()
        .find(|(k, _)| k == "key")
        .map(|(_, v)| v.into_owned());
    assert_eq!(key.as_deref(), Some(KEY));
}

#[tokio::test]
async fn rate_limit_and_outage_are_transient() {
    let (base_url, double) =
        TwilioDouble::start([TwilioAnswer::TooManyRequests, TwilioAnswer::Unavailable]).await;
    let backend = twilio(&token_config(&base_url));

    let limited = backend.send(&sms(TEXT)).await;
    assert!(matches!(limited, SendOutcome::Transient(_)), "{limited:?}");
    assert!(
        limited.reason().unwrap_or("").contains("429"),
        "{limited:?}"
    );

    let outage = backend.send(&sms(TEXT)).await;
    assert!(matches!(outage, SendOutcome::Transient(_)), "{outage:?}");
    assert!(outage.reason().unwrap_or("").contains("503"), "{outage:?}");

    let retry = backend.send(&sms(TEXT)).await;
    assert!(retry.is_sent(), "{retry:?}");
    assert_eq!(
        double.messages().len(),
        1,
        "only the accepted attempt created a message"
    );
}

#[tokio::test]
async fn a_timeout_is_unknown_and_lookup_finds_the_message() {
    let (base_url, double) =
        TwilioDouble::start([TwilioAnswer::Delay(Duration::from_secs(4))]).await;
    let cfg = TwilioConfig {
        timeout_secs: 1,
        ..token_config(&base_url)
    };
    let backend = twilio(&cfg);
    let since = Utc::now();

    let outcome = backend.send(&sms(TEXT)).await;
    assert!(matches!(outcome, SendOutcome::Unknown(_)), "{outcome:?}");

    let created = double.messages();
    assert_eq!(created.len(), 1, "the double did create it");
    let found = backend.lookup(&sms(TEXT), since).await;
    assert_eq!(found, Ok(Some(created[0].sid.clone())));

    let gets: Vec<_> = double
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(gets[0].query_param("To"), Some("+31612345511"));
    assert_eq!(
        gets[0].query_param("DateSent>"),
        Some(since.format("%Y-%m-%d").to_string().as_str())
    );
    assert_eq!(gets[0].query_param("PageSize"), Some("50"));
    assert!(gets[0].basic_auth.is_some());

    // Another text to the same number is not mistaken for it.
    let other = backend.lookup(&sms("Lumen: iets anders"), since).await;
    assert_eq!(other, Ok(None));
}

#[tokio::test]
async fn lookup_also_finds_a_message_still_queued_at_twilio() {
    let (base_url, double) =
        TwilioDouble::start([TwilioAnswer::DelayQueued(Duration::from_secs(4))]).await;
    let cfg = TwilioConfig {
        timeout_secs: 1,
        ..token_config(&base_url)
    };
    let backend = twilio(&cfg);
    let since = Utc::now();
    let outcome = backend.send(&sms(TEXT)).await;
    assert!(matches!(outcome, SendOutcome::Unknown(_)), "{outcome:?}");

    // Not in the DateSent>= list (no date_sent while queued), but in the recent list.
    let found = backend.lookup(&sms(TEXT), since).await;
    assert_eq!(found, Ok(Some(double.messages()[0].sid.clone())));
    let gets: Vec<_> = double
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[1].query_param("DateSent>"), None);
}

#[tokio::test]
async fn invalid_number_21211_is_permanent_naming_the_code() {
    let (base_url, _double) = TwilioDouble::start([TwilioAnswer::InvalidNumber]).await;
    let outcome = twilio(&token_config(&base_url)).send(&sms(TEXT)).await;
    assert!(matches!(outcome, SendOutcome::Permanent { .. }), "{outcome:?}");
    assert_eq!(outcome.provider_code(), Some(21211));
    let reason = outcome.reason().unwrap_or("");
    assert!(
        reason.starts_with("twilio 21211: The 'To' number is not a valid phone number."),
        "{reason}"
    );
}

#[tokio::test]
async fn opted_out_21610_is_permanent() {
    let (base_url, _double) = TwilioDouble::start([TwilioAnswer::OptedOut]).await;
    let outcome = twilio(&token_config(&base_url)).send(&sms(TEXT)).await;
    assert!(matches!(outcome, SendOutcome::Permanent { .. }), "{outcome:?}");
    assert_eq!(outcome.provider_code(), Some(21610));
}

#[tokio::test]
async fn unauthorized_is_auth_failed() {
    let (base_url, _double) = TwilioDouble::start([TwilioAnswer::Unauthorized]).await;
    let outcome = twilio(&token_config(&base_url)).send(&sms(TEXT)).await;
    assert!(matches!(outcome, SendOutcome::AuthFailed(_)), "{outcome:?}");
    assert!(
        outcome.reason().unwrap_or("").contains("20003"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn nothing_listening_is_transient() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let backend = twilio(&token_config(&format!("http://127.0.0.1:{port}")));
    let outcome = backend.send(&sms(TEXT)).await;
    assert!(matches!(outcome, SendOutcome::Transient(_)), "{outcome:?}");
}

#[tokio::test]
async fn file_backend_appends_json_lines_and_finds_them_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out").join("sms.jsonl");
    let backend = SmsBackend::File(FileSms::new(&path).expect("file"));
    let since = Utc::now();
    assert_eq!(backend.lookup(&sms(TEXT), since).await, Ok(None));
    assert!(backend.send(&sms(TEXT)).await.is_sent());
    let mut second = sms("Lumen: tweede bericht");
    second.key = "B-1102/delayed/2026-11-29/sms".into();
    assert!(backend.send(&second).await.is_sent());

    let lines: Vec<SmsLine> = std::fs::read_to_string(&path)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (
            lines[0].key.as_str(),
            lines[0].to.as_str(),
            lines[0].text.as_str()
        ),
        (KEY, "+31612345511", TEXT)
    );
    assert!(backend
        .lookup(&sms(TEXT), since)
        .await
        .expect("lookup")
        .is_some());
}

#[tokio::test]
async fn memory_backend_keeps_what_was_sent() {
    let memory = MemorySms::new();
    let backend = SmsBackend::Memory(memory.clone());
    assert!(backend.send(&sms(TEXT)).await.is_sent());
    assert_eq!(memory.messages(), vec![sms(TEXT)]);
    assert_eq!(
        backend.lookup(&sms(TEXT), Utc::now()).await,
        Ok(Some("memory-1".into()))
    );
    let mut bad = sms(TEXT);
    bad.to = "0612345511".into();
    assert!(matches!(
        backend.send(&bad).await,
        SendOutcome::Permanent { .. }
    ));
}
