//! The processor and the dispatchers write the same SQLite file at once: a commit of a
//! batch while two channels claim their rows. Every write transaction takes the write lock
//! at its start (`BEGIN IMMEDIATE`), so they wait for each other instead of failing with
//! "database is locked" (a deferred transaction that reads, then writes, cannot wait).

use std::sync::Arc;

use belofte::store::{Batch, NewMessage, Store};
use chrono::Utc;

fn message(n: usize, channel: &str) -> NewMessage {
    NewMessage {
        notification_key: format!("B-{n}/delayed/x/{channel}/1"),
        order_id: format!("B-{n}"),
        kind: "delayed".into(),
        channel: channel.into(),
        recipient: Some(format!("k{n}@example.nl")),
        send_at: Utc::now() - chrono::Duration::seconds(1),
        line: "{}".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_processor_and_two_dispatchers_write_at_once_without_database_is_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&format!("sqlite://{}", dir.path().join("b.db").display())).await.expect("store"));
    let mut first = Batch::default();
    for n in 0..400 {
        first.messages.push(message(n, "email"));
        first.messages.push(message(n, "sms"));
    }
    store.commit(&first, Utc::now()).await.expect("prefill");

    let claimer = |channel: &'static str| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut claimed = 0;
            for _ in 0..400 {
                claimed += store.claim(channel, Utc::now(), 1).await.map_err(|e| e.to_string())?.len();
            }
            Ok::<usize, String>(claimed)
        })
    };
    let (email, sms) = (claimer("email"), claimer("sms"));
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for round in 0..100 {
                let mut b = Batch::default();
                b.messages.push(message(1000 + round, "event"));
                store.commit(&b, Utc::now()).await.map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        })
    };
    let email = email.await.expect("task").expect("email claims never fail");
    let sms = sms.await.expect("task").expect("sms claims never fail");
    writer.await.expect("task").expect("commits never fail");
    assert_eq!((email, sms), (400, 400), "every row claimed exactly once");
}
