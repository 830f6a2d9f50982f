//! The store's behaviour, on SQLite and on PostgreSQL alike: a batch committed comes back at
//! start-up, enqueueing is idempotent, writers and claimers at once never fail or share a
//! row, and claims are leases — a row whose lease ran out is taken over as `unknown`, and
//! the old claimer's late settle is ignored.

mod backends;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use backends::Db;
use belofte::store::{Batch, Claimed, Lease, NewMessage, Settle, Store};
use belofte_core::event::Event;
use chrono::Utc;

on_both_backends!(
    the_processor_and_two_dispatchers_write_at_once_without_errors,
    a_committed_batch_is_what_the_next_start_loads,
    a_replayed_batch_enqueues_nothing_twice,
    two_instances_claiming_at_once_never_get_the_same_row,
    a_row_whose_lease_ran_out_is_taken_over_as_unknown_and_a_live_one_is_not,
    a_late_settle_by_the_claimer_that_lost_its_lease_changes_nothing,
    a_kept_carrier_event_becomes_due_when_its_parcel_ships,
    a_presumed_dead_owner_cannot_overwrite_the_new_owners_state,
    a_database_from_before_seen_batches_keeps_its_seen_ids,
    the_sweep_drops_whole_batches_of_seen_ids_after_the_horizon,
);

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

fn lease(holder: &str, secs: u64) -> Lease {
    Lease { holder: holder.into(), length: Duration::from_secs(secs) }
}

async fn enqueue(store: &Store, rows: usize, channel: &str) {
    let mut batch = Batch::default();
    batch.messages.extend((0..rows).map(|n| message(n, channel)));
    store.commit(&batch, Utc::now()).await.expect("enqueue");
}

/// Every write transaction takes the write lock at its start on SQLite (`BEGIN IMMEDIATE`),
/// so they wait for each other instead of failing with "database is locked" (a deferred
/// transaction that reads, then writes, cannot wait).
async fn the_processor_and_two_dispatchers_write_at_once_without_errors(db: &Db) {
    let store = Arc::new(db.open().await);
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
                claimed += store.claim(channel, Utc::now(), 1, &lease("me", 60)).await.map_err(|e| e.to_string())?.len();
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

fn order_placed(id: &str) -> Event {
    let line = format!(
        r#"{{"specversion":"1.0","id":"{id}-p","source":"/webshop","type":"order.placed","time":"2026-11-23T10:00:00+01:00","data":{{"order_id":"{id}","brand":"lumen","placed_at":"2026-11-23T10:00:00+01:00","customer":{{"name":"K","email":"{id}@example.nl","locale":"nl-NL","channels":["email"]}},"shipping":{{"method":"standard","carrier":"postnl","country":"NL","postal_code":"1011AA"}},"warehouse":"tilburg","items":[{{"sku":"S","name":"Ding","qty":1}}],"promise":{{"deliver_by":"2026-11-25T22:00:00+01:00"}}}}}}"#
    );
    belofte_core::event::decode(line.as_bytes()).expect("a valid event")
}

async fn a_committed_batch_is_what_the_next_start_loads(db: &Db) {
    let store = db.open().await;
    let parked = order_placed("P-1");
    let expires = chrono::DateTime::parse_from_rfc3339("2026-11-26T10:00:00.123456Z").expect("time").with_timezone(&Utc);
    let mut batch = Batch::default();
    batch.seen = vec![(0, 1), (0, u128::MAX), (2, 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)];
    batch.parked_added = vec![(0, 7, parked.clone(), expires), (0, 8, order_placed("P-2"), expires)];
    batch.messages = vec![message(1, "email"), message(1, "sms")];
    batch.notices.insert(message(1, "email").notification_key, (1, r#"{"kind":"delayed"}"#.into()));
    store.commit(&batch, Utc::now()).await.expect("commit");
    let mut second = Batch::default();
    second.parked_removed = vec![8];
    store.commit(&second, Utc::now()).await.expect("commit");
    store.close().await;
    drop(store);

    let store = db.open().await;
    let snapshots = store.load_parts(&[0, 1]).await.expect("load");
    let mut seen = snapshots[&0].seen.clone();
    seen.sort();
    assert_eq!(seen, vec![1, u128::MAX], "partition 0's seen ids, not partition 2's");
    assert_eq!(snapshots[&0].parked, vec![(parked, expires)], "the parked event with its expiry, to the microsecond; the removed one gone");
    assert!(snapshots[&1].seen.is_empty() && snapshots[&1].parked.is_empty(), "an empty partition loads empty");
    assert_eq!(store.load_parts(&[2]).await.expect("load")[&2].seen, vec![0x0123_4567_89ab_cdef_0123_4567_89ab_cdef]);
    let rows = store.outbox().await.expect("outbox");
    assert_eq!(rows.iter().map(|r| (r.channel.as_str(), r.status.as_str())).collect::<Vec<_>>(), [("email", "pending"), ("sms", "pending")]);
    let email = store.row_by_key(&message(1, "email").notification_key).await.expect("row").expect("the email row");
    assert_eq!((email.seq, email.decision.as_deref()), (Some(1), Some(r#"{"kind":"delayed"}"#)));
}

fn carrier_event(id: &str, tracking: &str, hour: u32) -> Event {
    let line = format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"/postnl","type":"carrier.in_transit","time":"2026-11-24T{hour:02}:00:00+01:00","data":{{"tracking_number":"{tracking}"}}}}"#
    );
    belofte_core::event::decode(line.as_bytes()).expect("a valid event")
}

/// A carrier event for a parcel no order has shipped with yet is kept; once an order ships
/// with the number (here, on another instance's partition), the event is due for it, and
/// one that waited too long is due to be dead-lettered.
async fn a_kept_carrier_event_becomes_due_when_its_parcel_ships(db: &Db) {
    let store = db.open().await;
    let now = Utc::now();
    let mut batch = Batch::default();
    batch.unrouted_added = vec![
        (11, "3S-LATE".into(), carrier_event("c-2", "3S-LATE", 9), now + chrono::Duration::hours(72)),
        (12, "3S-LATE".into(), carrier_event("c-1", "3S-LATE", 8), now + chrono::Duration::hours(72)),
        (13, "3S-NEVER".into(), carrier_event("c-3", "3S-NEVER", 8), now - chrono::Duration::seconds(1)),
    ];
    store.commit(&batch, now).await.expect("commit");
    let due = store.unrouted_due(now, 10).await.expect("due");
    assert_eq!(due.iter().map(|u| (u.key, u.part)).collect::<Vec<_>>(), [(13, None)], "only the expired one, with no partition");

    let mut shipped = Batch::default();
    shipped.tracking = vec![("3S-LATE".into(), "B-7".into(), 2)];
    store.commit(&shipped, now).await.expect("commit");
    assert_eq!(store.tracked(&["3S-LATE".into(), "3S-NEVER".into()]).await.expect("tracked"), [("3S-LATE".to_string(), 2)].into());
    let waiting = store.unrouted_for(&["3S-LATE".into()]).await.expect("waiting");
    assert_eq!(waiting.iter().map(|u| (u.event.id.to_string(), u.part)).collect::<Vec<_>>(), [("c-1".into(), Some(2)), ("c-2".into(), Some(2))], "oldest first, with the order's partition");
    let mut routed = Batch::default();
    routed.unrouted_removed = vec![11, 12, 13];
    store.commit(&routed, now).await.expect("commit");
    assert!(store.unrouted_due(now, 10).await.expect("due").is_empty());
}

/// An instance the consumer group presumed dead keeps running for a while; once another
/// has taken its partition over, none of its batches for that partition commits.
async fn a_presumed_dead_owner_cannot_overwrite_the_new_owners_state(db: &Db) {
    let (a, b) = (db.open().await, db.open_beside().await);
    let old = a.take_over(&[0, 1], "pod-a").await.expect("take over");
    let new = b.take_over(&[1], "pod-b").await.expect("take over");
    assert!(new[0].1 > old[1].1, "the epoch goes up with each take-over");
    let mut batch = Batch::default();
    batch.seen = vec![(0, 5), (1, 6)];
    batch.fences = old.clone();
    let refused = a.commit(&batch, Utc::now()).await.expect_err("partition 1 is pod-b's now");
    assert!(refused.to_string().contains("partition 1 was taken over by pod-b"), "{refused}");
    assert!(a.load_parts(&[0]).await.expect("load")[&0].seen.is_empty(), "nothing of the refused batch was written");
    batch.fences = vec![old[0]];
    batch.seen = vec![(0, 5)];
    a.commit(&batch, Utc::now()).await.expect("partition 0 is still pod-a's");
}

async fn a_replayed_batch_enqueues_nothing_twice(db: &Db) {
    let store = db.open().await;
    enqueue(&store, 3, "email").await;
    let first = store.outbox().await.expect("outbox");
    // A crash after the commit replays the batch: the same notification keys.
    enqueue(&store, 5, "email").await;
    let rows = store.outbox().await.expect("outbox");
    assert_eq!(rows.len(), 5, "two new rows, the three known keys not again");
    for old in &first {
        assert_eq!(rows.iter().filter(|r| r.notification_key == old.notification_key).count(), 1);
    }
}

async fn two_instances_claiming_at_once_never_get_the_same_row(db: &Db) {
    let (a, b) = (Arc::new(db.open().await), Arc::new(db.open_beside().await));
    enqueue(&a, 500, "sms").await;
    let claim_all = |store: Arc<Store>, holder: &'static str| {
        tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let rows = store.claim("sms", Utc::now(), 7, &lease(holder, 60)).await.expect("claim");
                if rows.is_empty() {
                    return ids;
                }
                ids.extend(rows.iter().map(|r| r.id));
            }
        })
    };
    let (from_a, from_b) = (claim_all(a, "a"), claim_all(b, "b"));
    let (from_a, from_b) = (from_a.await.expect("task"), from_b.await.expect("task"));
    let all: HashSet<i64> = from_a.iter().chain(&from_b).copied().collect();
    assert_eq!(from_a.len() + from_b.len(), 500, "no row claimed twice");
    assert_eq!(all.len(), 500, "every row claimed");
}

async fn a_row_whose_lease_ran_out_is_taken_over_as_unknown_and_a_live_one_is_not(db: &Db) {
    let store = db.open().await;
    enqueue(&store, 1, "sms").await;
    enqueue_one(&store, message(2, "email")).await;

    // The email's claimer holds it for a minute: nobody else gets it meanwhile.
    let held = store.claim("email", Utc::now(), 10, &lease("a", 60)).await.expect("claim");
    assert_eq!(held.len(), 1);
    assert!(store.claim("email", Utc::now(), 10, &lease("b", 60)).await.expect("claim").is_empty(), "a live lease is left alone");

    // The SMS's claimer dies mid-send; its lease ends at once.
    let first = store.claim("sms", Utc::now(), 10, &lease("a", 0)).await.expect("claim");
    assert_eq!(first.len(), 1);
    assert!(!first[0].unknown, "a pending row is sent straight away");
    let taken = store.claim("sms", Utc::now(), 10, &lease("b", 60)).await.expect("claim");
    assert_eq!(taken.len(), 1, "the row of the dead claimer is claimed again");
    assert_eq!(taken[0].id, first[0].id);
    assert!(taken[0].unknown, "whether the first attempt went out is not known: look it up first");
    assert_eq!(taken[0].claimed_by, "b");
}

async fn enqueue_one(store: &Store, m: NewMessage) {
    let mut batch = Batch::default();
    batch.messages.push(m);
    store.commit(&batch, Utc::now()).await.expect("enqueue");
}

async fn a_late_settle_by_the_claimer_that_lost_its_lease_changes_nothing(db: &Db) {
    let store = db.open().await;
    enqueue(&store, 1, "sms").await;
    let old: Claimed = store.claim("sms", Utc::now(), 1, &lease("a", 0)).await.expect("claim").remove(0);
    let new: Claimed = store.claim("sms", Utc::now(), 1, &lease("b", 60)).await.expect("claim").remove(0);

    // The old claimer wakes up and reports a failure: the row is b's now.
    let late = Settle::Retry { error: "twilio: no answer".into(), at: Utc::now() };
    assert_eq!(store.settle_many(&[(&old, &late)], Utc::now()).await.expect("settle"), vec![old.id], "reported as not ours");
    let row = store.outbox().await.expect("outbox").remove(0);
    assert_eq!((row.status.as_str(), row.attempts), ("sending", 0), "b's attempt is untouched");

    // b found the message at the provider.
    let found = Settle::Sent { provider_id: Some("SM1".into()) };
    assert!(store.settle_many(&[(&new, &found)], Utc::now()).await.expect("settle").is_empty());
    // Even the same instance's older claim (a restart under the same static name) is not b's.
    let same_name_older = Claimed { claimed_by: "b".into(), ..old.clone() };
    let stale = Settle::Failed { error: "late".into(), suppress: true };
    assert_eq!(store.settle_many(&[(&same_name_older, &stale)], Utc::now()).await.expect("settle"), vec![old.id]);

    let row = store.outbox().await.expect("outbox").remove(0);
    assert_eq!((row.status.as_str(), row.provider_id.as_deref(), row.attempts), ("sent", Some("SM1"), 1));
    let attempts = store.attempts(row.id).await.expect("attempts");
    assert_eq!(attempts, vec![("sent".to_string(), Some("SM1".to_string()))], "only the owner's attempt is recorded");
    assert_eq!(store.suppressed("sms", "k0@example.nl").await.expect("suppressions"), None, "the stale failure suppressed nobody");
}

/// The migrations of `db`'s backend up to (not including) the one that made `seen_batches`,
/// as a database written by an earlier release has them.
async fn migrate_as_before_seen_batches(db: &Db) {
    let dir = if db.url.starts_with("postgres") { "migrations/postgres" } else { "migrations/sqlite" };
    let mut migrator = sqlx::migrate::Migrator::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)).await.expect("migrations");
    let first_new = migrator.migrations.iter().find(|m| m.description == "seen batches").expect("the seen_batches migration").version;
    migrator.migrations = migrator.migrations.iter().filter(|m| m.version < first_new).cloned().collect::<Vec<_>>().into();
    let one = |key: u128| key.to_be_bytes().to_vec();
    if db.url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
        migrator.run(&pool).await.expect("the earlier migrations");
        for (part, key, at) in [(0, 5u128, "2026-11-20T10:00:00Z"), (0, u128::MAX, "2026-11-30T10:00:00Z"), (3, 9, "2026-11-30T10:00:00Z")] {
            sqlx::query("INSERT INTO seen_events (event_key, seen_at, part) VALUES ($1, $2::timestamptz, $3)").bind(one(key)).bind(at).bind(part).execute(&pool).await.expect("an old row");
        }
        pool.close().await;
    } else {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db.url.trim_start_matches("sqlite://")).create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.expect("connect");
        migrator.run(&pool).await.expect("the earlier migrations");
        for (part, key, at) in [(0, 5u128, "2026-11-20T10:00:00.000000Z"), (0, u128::MAX, "2026-11-30T10:00:00.000000Z"), (3, 9, "2026-11-30T10:00:00.000000Z")] {
            sqlx::query("INSERT INTO seen_events (event_key, seen_at, part) VALUES (?1, ?2, ?3)").bind(one(key)).bind(at).bind(part).execute(&pool).await.expect("an old row");
        }
        pool.close().await;
    }
}

/// An upgrade keeps every id an earlier release stored one row each: a replay after it is
/// still dropped, and each old id leaves at its own time.
async fn a_database_from_before_seen_batches_keeps_its_seen_ids(db: &Db) {
    migrate_as_before_seen_batches(db).await;
    let store = db.open().await;
    let mut batch = Batch::default();
    batch.seen = vec![(0, 6), (3, 10)];
    store.commit(&batch, Utc::now()).await.expect("a batch after the upgrade");
    let snapshots = store.load_parts(&[0, 3]).await.expect("load");
    let sorted = |mut v: Vec<u128>| {
        v.sort();
        v
    };
    assert_eq!(sorted(snapshots[&0].seen.clone()), vec![5, 6, u128::MAX], "the old ids of partition 0 and the new one");
    assert_eq!(sorted(snapshots[&3].seen.clone()), vec![9, 10]);
    let horizon = chrono::DateTime::parse_from_rfc3339("2026-11-25T00:00:00Z").expect("time").with_timezone(&Utc);
    let swept = store.sweep(&[0, 3], horizon - chrono::Duration::days(365), horizon).await.expect("sweep");
    assert_eq!(swept.seen, 1, "only the id seen before the horizon");
    assert_eq!(sorted(store.load_parts(&[0]).await.expect("load")[&0].seen.clone()), vec![6, u128::MAX]);
}

/// A batch's ids of one partition are one row; the sweep counts the ids it deleted, and
/// leaves other partitions' and newer batches alone.
async fn the_sweep_drops_whole_batches_of_seen_ids_after_the_horizon(db: &Db) {
    let store = db.open().await;
    let then = Utc::now() - chrono::Duration::days(10);
    let mut old = Batch::default();
    old.seen = (0..300u128).map(|k| (1, k)).chain((1000..1005u128).map(|k| (2, k))).collect();
    store.commit(&old, then).await.expect("an old batch");
    let mut new = Batch::default();
    new.seen = vec![(1, 5000), (1, 5001)];
    store.commit(&new, Utc::now()).await.expect("a new batch");
    let swept = store.sweep(&[1], then - chrono::Duration::days(365), Utc::now() - chrono::Duration::days(1)).await.expect("sweep");
    assert_eq!(swept.seen, 300, "partition 1's old batch, id by id");
    let loaded = store.load_parts(&[1, 2]).await.expect("load");
    assert_eq!(loaded[&1].seen, vec![5000, 5001]);
    assert_eq!(loaded[&2].seen.len(), 5, "partition 2 is not ours to sweep here");
}
