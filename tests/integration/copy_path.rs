//! The store's optimistic `COPY` for large batches keeps the statement's
//! invariants: a duplicate makes it fall back and is reported as the
//! statement reports it, a refused row writes nothing, concurrent writers
//! of overlapping batches never deadlock, and nothing outlives the
//! transaction behind PgBouncer in transaction mode.

use std::collections::BTreeSet;

use event_recorder::Recorder;
use event_recorder::database::Store;
use event_recorder::route::Record;
use event_recorder::store::{COPY_FROM, Path};
use serde_json::Value;
use tokio::task::JoinSet;

use crate::batch::refuse_poison;
use crate::support::events::{Batch, audit_event, billing_event, encrypt, key, mixed_event};
use crate::support::pgbouncer::PgBouncer;
use crate::support::{TestDb, connect, server};

/// Large enough for the `COPY` path.
const LARGE: usize = COPY_FROM * 2;

fn records(events: &[Value]) -> Vec<Record> {
    let recorder = Recorder::new(key());
    events
        .iter()
        .map(|e| recorder.prepare(&encrypt(e)).unwrap())
        .collect()
}

fn events(prefix: &str, range: std::ops::Range<usize>) -> Vec<Value> {
    range
        .map(|i| mixed_event(&format!("{prefix}-{i:05}"), i))
        .collect()
}

/// Stores `records`; returns the path taken and how many were new.
async fn insert(store: &mut Store, records: &[Record]) -> (Path, usize) {
    let (path, _, new) = written(store, records).await;
    (path, new)
}

/// Stores `records`; returns the path taken, the clashes before it and how
/// many were new.
async fn written(store: &mut Store, records: &[Record]) -> (Path, u8, usize) {
    let refs: Vec<&Record> = records.iter().collect();
    let mut inserted = store.insert(&refs).await.unwrap();
    let new = refs.iter().filter(|r| inserted.claim(r)).count();
    (inserted.path(), inserted.clashes(), new)
}

/// Stores a new large batch (a `COPY`), then the same again: it clashes and
/// is looked up, and so are `store`'s next large batches.
async fn clash_once(store: &mut Store, prefix: &str) {
    let batch = records(&events(prefix, 0..LARGE));
    assert_eq!(insert(store, &batch).await, (Path::Copy, LARGE));
    assert_eq!(written(store, &batch).await, (Path::Checked, 1, 0));
}

#[tokio::test]
async fn a_large_new_batch_is_copied_and_a_small_one_is_not() {
    let db = TestDb::new().await;
    let mut store = db.store().await;
    let small = records(&events("s", 0..COPY_FROM - 1));
    assert_eq!(
        insert(&mut store, &small).await,
        (Path::Statement, COPY_FROM - 1)
    );
    let large = records(&events("l", 0..LARGE));
    assert_eq!(insert(&mut store, &large).await, (Path::Copy, LARGE));
    let [audit, billing, fraud] = db.row_counts().await;
    assert_eq!(audit as usize, COPY_FROM - 1 + LARGE);
    // mixed_event: 3 in 20 billing, 1 in 20 fraud.
    let kinds = |n: usize| {
        (0..n).fold((0, 0), |(b, f), i| match i % 20 {
            0..=2 => (b + 1, f),
            3 => (b, f + 1),
            _ => (b, f),
        })
    };
    let (b1, f1) = kinds(COPY_FROM - 1);
    let (b2, f2) = kinds(LARGE);
    assert_eq!((billing as usize, fraud as usize), (b1 + b2, f1 + f2));
}

/// The rows `COPY` writes are the statement's, column by column.
#[tokio::test]
async fn copy_stores_what_the_statement_stores() {
    let db = TestDb::new().await;
    let mut store = db.store().await;
    let mut copied = events("c", 0..LARGE);
    // Null columns (billing_event has no preferred level) and nested details.
    copied[0] = billing_event("c-00000");
    copied[0]["details"]["nested"] = serde_json::json!({"a": [1, 2.5, null, "x\u{e9}"]});
    // The same events under other IDs, by the statement.
    let mut stated = copied.clone();
    for (i, e) in stated.iter_mut().enumerate() {
        e["eventId"] = Value::String(format!("s-{i:05}"));
    }
    assert_eq!(insert(&mut store, &records(&copied)).await.0, Path::Copy);
    let refs = records(&stated);
    let refs: Vec<&Record> = refs.iter().collect();
    store.insert_statement(&refs).await.unwrap();
    let client = db.client().await;
    for (table, columns) in [
        (
            "audit.audit_events",
            "event_type, time_stamp, originating_service, session_id, details",
        ),
        (
            "billing.billing_events",
            "time_stamp, session_id, hashed_persistent_id, request_id, idp_entity_id, \
             minimum_level_of_assurance, preferred_level_of_assurance, \
             provided_level_of_assurance, transaction_entity_id",
        ),
        (
            "billing.fraud_events",
            "time_stamp, session_id, hashed_persistent_id, request_id, entity_id, \
             fraud_event_id, fraud_indicator, transaction_entity_id",
        ),
    ] {
        let differ: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM
                       (SELECT substr(event_id, 3) AS k, {columns} FROM {table} WHERE event_id LIKE 'c-%'
                        EXCEPT
                        SELECT substr(event_id, 3), {columns} FROM {table} WHERE event_id LIKE 's-%') d"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(differ, 0, "{table}");
    }
}

#[tokio::test]
async fn a_duplicate_in_a_large_batch_falls_back_and_is_reported_as_before() {
    let db = TestDb::new().await;
    let recorder = Recorder::new(key());
    let mut store = db.store().await;
    // Stored earlier: one event of the coming batch.
    let earlier = Batch::default().event("earlier", &audit_event("l-00007"));
    let r = recorder.record_batch(&mut store, &earlier.messages()).await;
    assert_eq!((r.stored, r.duplicates), (1, 0));

    let mut batch = Batch::default();
    for (i, e) in events("l", 0..LARGE).iter().enumerate() {
        batch = batch.event(&format!("m{i}"), e);
    }
    // One event twice within the batch, too.
    let batch = batch.event("again", &mixed_event("l-00100", 100));
    let r = recorder.record_batch(&mut store, &batch.messages()).await;
    assert_eq!(r.failed, Vec::<String>::new());
    // l-00007 was stored before; l-00100's second copy is the duplicate.
    assert_eq!((r.stored, r.duplicates), (LARGE - 1, 2));
    assert_eq!(r.transactions, 1, "one call to the store");
    assert_eq!(db.row_counts().await[0] as usize, LARGE);
    // The COPY was tried and clashed: the next large batch is looked up.
    let same = records(&events("l", 0..LARGE));
    assert_eq!(written(&mut store, &same).await, (Path::Checked, 0, 0));

    // The same batch again: every message a duplicate.
    let r = recorder.record_batch(&mut store, &batch.messages()).await;
    assert_eq!((r.failed.len(), r.stored, r.duplicates), (0, 0, LARGE + 1));
}

#[tokio::test]
async fn after_a_clash_copy_waits_for_clean_batches() {
    let db = TestDb::new().await;
    let mut store = db.store().await;
    let first = records(&events("r", 0..LARGE));
    let fresh = |n: usize| records(&events(&format!("n{n}"), 0..LARGE));
    use Path::*;
    assert_eq!(written(&mut store, &first).await, (Copy, 0, LARGE));
    // Redelivered: one clash, then look-ups while duplicates come.
    assert_eq!(written(&mut store, &first).await, (Checked, 1, 0));
    for _ in 0..5 {
        assert_eq!(written(&mut store, &first).await, (Checked, 0, 0));
    }
    // One batch without duplicates, then COPY again; it clashes: two clean
    // batches needed now.
    assert_eq!(written(&mut store, &fresh(1)).await, (Checked, 0, LARGE));
    assert_eq!(written(&mut store, &first).await, (Checked, 1, 0));
    assert_eq!(written(&mut store, &fresh(2)).await, (Checked, 0, LARGE));
    assert_eq!(written(&mut store, &fresh(3)).await, (Checked, 0, LARGE));
    assert_eq!(written(&mut store, &fresh(4)).await, (Copy, 0, LARGE));
    // A commit forgets the clashes: one clean batch is enough again.
    assert_eq!(written(&mut store, &first).await, (Checked, 1, 0));
    assert_eq!(written(&mut store, &fresh(5)).await, (Checked, 0, LARGE));
    assert_eq!(written(&mut store, &fresh(6)).await, (Copy, 0, LARGE));
    // Small batches change nothing.
    assert_eq!(written(&mut store, &first).await, (Checked, 1, 0));
    let small = records(&events("s", 0..10));
    assert_eq!(written(&mut store, &small).await, (Statement, 0, 10));
    assert_eq!(written(&mut store, &fresh(7)).await, (Checked, 0, LARGE));
    assert_eq!(written(&mut store, &fresh(8)).await, (Copy, 0, LARGE));
}

/// The rows a look-up leaves to write, and the duplicates reported, are the
/// statement's: a batch partly stored (some events whole, some with the
/// audit row but not the billing row, some with the billing row but not the
/// audit row), with an event twice, written by each way into a database of
/// its own holding the same rows, ends with the same tables and the same
/// answer for every record.
#[tokio::test]
async fn a_looked_up_batch_writes_and_reports_what_the_statement_does() {
    let batch = {
        let mut evs = events("p", 0..LARGE);
        evs.push(evs[30].clone());
        records(&evs)
    };
    let refs: Vec<&Record> = batch.iter().collect();
    let mut outcomes = Vec::new();
    for by_statement in [false, true] {
        let db = TestDb::new().await;
        let mut store = db.store().await;
        // Stored before: the first half, whole.
        let earlier: Vec<&Record> = refs[..LARGE / 2].to_vec();
        store.insert_statement(&earlier).await.unwrap();
        let client = db.client().await;
        // Events 0 to 99: billing rows gone (audit rows kept); events
        // 100 to 199: audit rows gone (billing rows kept).
        client
            .batch_execute(
                "DELETE FROM billing.billing_events WHERE event_id < 'p-00100';
                 DELETE FROM audit.audit_events
                     WHERE event_id >= 'p-00100' AND event_id < 'p-00200';",
            )
            .await
            .unwrap();
        if !by_statement {
            // A clash first, so this store looks up its next large batch.
            clash_once(&mut store, "o").await;
        }
        let mut inserted = match by_statement {
            true => store.insert_statement(&refs).await.unwrap(),
            false => store.insert(&refs).await.unwrap(),
        };
        let expected = match by_statement {
            true => Path::Statement,
            false => Path::Checked,
        };
        assert_eq!((inserted.path(), inserted.clashes()), (expected, 0));
        let claims: Vec<bool> = refs.iter().map(|r| inserted.claim(r)).collect();
        let tables = client
            .query_one(
                "SELECT (SELECT string_agg(event_id || time_stamp::text || md5(details::text),
                                           ',' ORDER BY event_id)
                         FROM audit.audit_events WHERE event_id LIKE 'p-%'),
                        (SELECT string_agg(event_id, ',' ORDER BY event_id)
                         FROM billing.billing_events WHERE event_id LIKE 'p-%'),
                        (SELECT string_agg(event_id, ',' ORDER BY event_id)
                         FROM billing.fraud_events WHERE event_id LIKE 'p-%')",
                &[],
            )
            .await
            .unwrap();
        let tables: [String; 3] = [tables.get(0), tables.get(1), tables.get(2)];
        outcomes.push((claims, tables));
    }
    let (claims, _) = &outcomes[0];
    // New: the second half, and of events 100 to 199 those whose one row
    // (audit) was gone: not those with a billing or fraud row left
    // (mixed_event: 3 in 20 billing, 1 in 20 fraud), nor the copy of event 30.
    let new: Vec<usize> = (0..claims.len()).filter(|&i| claims[i]).collect();
    let expected: Vec<usize> = (100..200)
        .filter(|i| i % 20 > 3)
        .chain(LARGE / 2..LARGE)
        .collect();
    assert_eq!(new, expected);
    assert_eq!(outcomes[0], outcomes[1]);
}

/// A batch of SQS's largest size is looked up in several statements (a
/// few thousand keys each): every key is found, wherever its statement.
#[tokio::test]
async fn a_batch_of_ten_thousand_is_looked_up_whole() {
    let db = TestDb::new().await;
    let mut store = db.store().await;
    let stored = records(&events("t", 0..10_000));
    assert_eq!(insert(&mut store, &stored).await, (Path::Copy, 10_000));
    // Every 1,000th event new, the rest stored: a clash, then a look-up.
    let mixed: Vec<Value> = (0..10_000)
        .map(|i| match i % 1_000 {
            999 => mixed_event(&format!("u-{i:05}"), i),
            _ => mixed_event(&format!("t-{i:05}"), i),
        })
        .collect();
    assert_eq!(
        written(&mut store, &records(&mixed)).await,
        (Path::Checked, 1, 10)
    );
    assert_eq!(
        written(&mut store, &records(&mixed)).await,
        (Path::Checked, 0, 0)
    );
    assert_eq!(db.row_counts().await[0], 10_010);
}

/// A row another writer stores between the look-up and the `COPY` makes the
/// `COPY` clash (after waiting for that writer's commit); the statement
/// then writes the batch and reports the row as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_stored_after_the_look_up_is_a_duplicate() {
    let db = TestDb::new().await;
    let mut store = db.store().await;
    clash_once(&mut store, "o").await;

    let batch = records(&events("q", 0..LARGE));
    let late = batch[LARGE / 3].event.clone();
    let mut writer = db.client().await;
    let tx = writer.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO audit.audit_events (event_id, event_type, time_stamp, originating_service, session_id, details)
         VALUES ($1, 'late', $2, 'other', 'other', '{}')",
        &[&late.event_id, &late.timestamp],
    )
    .await
    .unwrap();
    // Not committed yet: the look-up cannot see the row, the COPY waits on
    // its key.
    let storing = tokio::spawn(async move {
        let outcome = written(&mut store, &batch).await;
        (outcome, store)
    });
    let blocked = async {
        loop {
            let waiting: i64 = db
                .client()
                .await
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE wait_event_type = 'Lock' AND datname = current_database()",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), blocked)
        .await
        .expect("the COPY waits for the other writer");
    tx.commit().await.unwrap();
    let (outcome, _) = storing.await.unwrap();
    assert_eq!(outcome, (Path::Statement, 1, LARGE - 1));
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT event_type FROM audit.audit_events WHERE event_id = $1",
            &[&late.event_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "late");
    assert_eq!(db.audit_event_ids().await.len(), 2 * LARGE);
}

#[tokio::test]
async fn a_refused_row_in_a_copy_writes_nothing_and_fails_alone() {
    let db = TestDb::new().await;
    refuse_poison(&db).await;
    let mut store = db.store().await;
    let mut batch = events("a", 0..LARGE);
    batch[LARGE / 2] = billing_event("poison-1");
    let all = records(&batch);
    let refs: Vec<&Record> = all.iter().collect();
    let e = store.insert(&refs).await.unwrap_err();
    assert_eq!(e.code(), Some("P0001"), "{e}");
    assert!(!store.is_closed());
    // All or nothing: not even the audit rows before it in key order.
    assert_eq!(db.row_counts().await, [0, 0, 0]);

    // Through the recorder, the refused message fails alone.
    let recorder = Recorder::new(key());
    let mut sqs = Batch::default();
    for (i, e) in batch.iter().enumerate() {
        sqs = sqs.event(&format!("m{i}"), e);
    }
    let r = recorder.record_batch(&mut store, &sqs.messages()).await;
    assert_eq!(r.failed, [format!("m{}", LARGE / 2)]);
    assert_eq!(r.stored, LARGE - 1);
    // Neither the poison's billing row nor its audit row.
    let ids = db.audit_event_ids().await;
    assert!(!ids.iter().any(|id| id.starts_with("poison")));
    assert_eq!(ids.len(), LARGE - 1);
}

/// `writers` stores, each writing `rounds` large batches that overlap the
/// other writers' (every event is in the batches of two writers, in another
/// order): all succeed, every event is stored once and claimed as new by
/// exactly one writer. `context` says more when one fails.
async fn overlapping_writers(
    db: &TestDb,
    mut stores: Vec<Store>,
    rounds: usize,
    context: impl Fn() -> String,
) {
    let writers = stores.len();
    let per_batch = LARGE;
    let mut tasks = JoinSet::new();
    for (w, mut store) in stores.drain(..).enumerate() {
        tasks.spawn(async move {
            let mut new_ids = Vec::new();
            for round in 0..rounds {
                // Half of this writer's batch is its own, half the next
                // writer's, in reverse input order for odd writers.
                let own = (w * rounds + round) * per_batch / 2;
                let next = (((w + 1) % writers) * rounds + round) * per_batch / 2;
                let mut ids: Vec<usize> = (own..own + per_batch / 2)
                    .chain(next..next + per_batch / 2)
                    .collect();
                if w % 2 == 1 {
                    ids.reverse();
                }
                let evs: Vec<Value> = ids
                    .iter()
                    .map(|&i| mixed_event(&format!("w-{i:07}"), i))
                    .collect();
                let recs = records(&evs);
                let refs: Vec<&Record> = recs.iter().collect();
                let mut inserted = match store.insert(&refs).await {
                    Ok(inserted) => inserted,
                    Err(e) => return Err(format!("writer {w}, round {round}: {e:?}")),
                };
                for r in &refs {
                    if inserted.claim(r) {
                        new_ids.push(r.event.event_id.clone());
                    }
                }
            }
            Ok(new_ids)
        });
    }
    let mut claimed = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Ok(ids) => claimed.extend(ids),
            Err(e) => panic!("{e}\n{}", context()),
        }
    }
    claimed.sort();
    let expected: BTreeSet<String> = (0..writers * rounds * per_batch / 2)
        .map(|i| format!("w-{i:07}"))
        .collect();
    assert_eq!(
        claimed,
        Vec::from_iter(expected.clone()),
        "each event claimed once"
    );
    assert_eq!(db.audit_event_ids().await, Vec::from_iter(expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_batches_with_overlapping_keys_never_deadlock() {
    let db = TestDb::new().await;
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(db.store().await);
    }
    overlapping_writers(&db, stores, 4, String::new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_through_pgbouncer_leaves_no_session_state() {
    let db = TestDb::new().await;
    let dbname = db.config.get_dbname().unwrap().to_owned();
    // One server connection for all clients: every transaction of every
    // client runs on it in turn.
    let bouncer = PgBouncer::start(&server::shared().admin_config(), 1)
        .unwrap_or_else(|e| panic!("PgBouncer did not start: {e}"));
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(Store::new(connect(&bouncer.config(&dbname)).await));
    }
    // Copies, clashes and fallbacks from four clients on one server
    // connection; a statement left behind would clash by name
    // (tokio-postgres numbers them from s0 in every process) or be found below.
    overlapping_writers(&db, stores, 3, || bouncer.log()).await;

    let mut store = Store::new(connect(&bouncer.config(&dbname)).await);
    clash_once(&mut store, "b").await;
    let session = |sql: &'static str| {
        let config = bouncer.config(&dbname);
        async move {
            let client = connect(&config).await;
            client
                .query_typed_one(sql, &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(
        session("SELECT count(*) FROM pg_prepared_statements").await,
        0,
        "named prepared statements on the server connection"
    );
}

#[tokio::test]
async fn no_statement_outlives_a_copy_on_a_direct_connection() {
    let db = TestDb::new().await;
    let mut store = db.store().await;
    clash_once(&mut store, "d").await;
    let count = store
        .run(async |client| {
            client
                .query_typed_one("SELECT count(*) FROM pg_prepared_statements", &[])
                .await
        })
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(count, 0);
}

/// A refused row through PgBouncer in transaction mode: the recorder's
/// halving runs transaction after transaction on a shared server connection,
/// each failed one rolled back before the next begins, on both paths.
#[tokio::test]
async fn a_refused_row_through_pgbouncer_fails_alone_on_both_paths() {
    let db = TestDb::new().await;
    refuse_poison(&db).await;
    let dbname = db.config.get_dbname().unwrap().to_owned();
    let bouncer = PgBouncer::start(&server::shared().admin_config(), 1)
        .unwrap_or_else(|e| panic!("PgBouncer did not start: {e}"));
    let mut store = Store::new(connect(&bouncer.config(&dbname)).await);
    let recorder = Recorder::new(key());
    for (name, size) in [("small", 20), ("large", LARGE)] {
        let mut batch = events(name, 0..size);
        batch[size / 3] = billing_event(&format!("poison-{name}"));
        let mut sqs = Batch::default();
        for (i, e) in batch.iter().enumerate() {
            sqs = sqs.event(&format!("{name}{i}"), e);
        }
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            recorder.record_batch(&mut store, &sqs.messages()),
        )
        .await
        .unwrap_or_else(|_| panic!("{name}: no answer\n{}", bouncer.log()));
        assert_eq!(r.failed, [format!("{name}{}", size / 3)], "{name}");
        assert_eq!(r.stored, size - 1, "{name}");
    }
    assert_eq!(db.row_counts().await[0] as usize, 20 - 1 + LARGE - 1);
}
