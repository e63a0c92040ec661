//! The outcome table of the reference, message by message and mixed.

use event_recorder::{BatchReport, Recorder};
use serde_json::{Value, json};

use crate::support::TestDb;
use crate::support::events::{
    Batch, audit_event, billing_event, encrypt, fraud_event, key, mixed_event,
};

fn recorder() -> Recorder {
    Recorder::new(key())
}

/// A report to compare with; transactions are checked where they matter.
fn report(failed: &[&str], stored: usize, duplicates: usize) -> BatchReport {
    BatchReport {
        failed: failed.iter().map(|s| s.to_string()).collect(),
        failures: Vec::new(),
        stored,
        duplicates,
        transactions: 0,
    }
}

async fn record(db: &TestDb, batch: &Batch) -> BatchReport {
    let mut store = db.store().await;
    let mut r = recorder().record_batch(&mut store, &batch.messages()).await;
    r.transactions = 0;
    // A reason per failed message; the reasons themselves are checked where
    // they matter.
    assert_eq!(r.failures.len(), r.failed.len(), "{r:?}");
    r.failures.clear();
    r
}

/// A trigger that refuses (RAISE) billing rows whose event id is `poison…`
/// (also used by the store's `COPY` path tests).
pub(crate) async fn refuse_poison(db: &TestDb) {
    db.client()
        .await
        .batch_execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.event_id LIKE 'poison%' THEN RAISE EXCEPTION 'refused'; END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER refuse BEFORE INSERT ON billing.billing_events
                 FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn stored_audit_event_column_by_column() {
    let db = TestDb::new().await;
    let r = record(&db, &Batch::default().event("m1", &audit_event("e1"))).await;
    assert_eq!(r, report(&[], 1, 0));
    let row = db
        .client()
        .await
        .query_one(
            "SELECT event_id, event_type, time_stamp::text, originating_service, session_id, details
             FROM audit.audit_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "e1");
    assert_eq!(row.get::<_, &str>(1), "session_event");
    assert_eq!(row.get::<_, &str>(2), "2018-02-10 12:00:00");
    assert_eq!(row.get::<_, &str>(3), "saml-engine");
    assert_eq!(row.get::<_, &str>(4), "session-e1");
    assert_eq!(row.get::<_, Value>(5), audit_event("e1")["details"]);
    assert_eq!(db.row_counts().await, [1, 0, 0]);
}

#[tokio::test]
async fn both_timestamp_forms_are_stored_as_utc() {
    let db = TestDb::new().await;
    let mut a = audit_event("millis");
    a["timestamp"] = json!(1518264000123i64);
    let mut b = audit_event("iso");
    b["timestamp"] = json!("2018-02-10T13:00:00.5+01:00");
    let r = record(&db, &Batch::default().event("m1", &a).event("m2", &b)).await;
    assert_eq!(r, report(&[], 2, 0));
    let rows = db
        .client()
        .await
        .query(
            "SELECT event_id, time_stamp::text FROM audit.audit_events ORDER BY event_id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        [
            ("iso".into(), "2018-02-10 12:00:00.5".into()),
            ("millis".into(), "2018-02-10 12:00:00.123".into())
        ]
    );
}

#[tokio::test]
async fn error_event_without_session_id_is_stored_with_empty_session() {
    let db = TestDb::new().await;
    let mut e = audit_event("err");
    e["eventType"] = json!("error_event");
    e.as_object_mut().unwrap().remove("sessionId");
    assert_eq!(
        record(&db, &Batch::default().event("m", &e)).await,
        report(&[], 1, 0)
    );
    let row = db
        .client()
        .await
        .query_one("SELECT session_id FROM audit.audit_events", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "");
}

#[tokio::test]
async fn billing_event_column_by_column() {
    let db = TestDb::new().await;
    let mut with_preferred = billing_event("b2");
    with_preferred["details"]["preferred_level_of_assurance"] = json!("LEVEL_2");
    with_preferred["details"]
        .as_object_mut()
        .unwrap()
        .remove("transaction_entity_id");
    let batch = Batch::default()
        .event("m1", &billing_event("b1"))
        .event("m2", &with_preferred);
    assert_eq!(record(&db, &batch).await, report(&[], 2, 0));
    let rows = db
        .client()
        .await
        .query(
            "SELECT event_id, time_stamp::text, session_id, hashed_persistent_id, request_id,
                    idp_entity_id, minimum_level_of_assurance, preferred_level_of_assurance,
                    provided_level_of_assurance, transaction_entity_id
             FROM billing.billing_events ORDER BY event_id",
            &[],
        )
        .await
        .unwrap();
    let cols = |i: usize| -> Vec<Option<String>> { (0..10).map(|c| rows[i].get(c)).collect() };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        cols(0),
        [
            s("b1"),
            s("2018-02-10 12:00:00"),
            s("session-b1"),
            s("pid-b1"),
            s("req-b1"),
            s("https://idp.example"),
            s("LEVEL_1"),
            None,
            s("LEVEL_2"),
            s("https://rp.example"),
        ]
    );
    assert_eq!(cols(1)[7], s("LEVEL_2"));
    assert_eq!(cols(1)[9], None);
    assert_eq!(db.row_counts().await, [2, 2, 0]);
}

#[tokio::test]
async fn fraud_event_column_by_column() {
    let db = TestDb::new().await;
    assert_eq!(
        record(&db, &Batch::default().event("m1", &fraud_event("f1"))).await,
        report(&[], 1, 0)
    );
    let row = db
        .client()
        .await
        .query_one(
            "SELECT event_id, time_stamp::text, session_id, hashed_persistent_id, request_id,
                    entity_id, fraud_event_id, fraud_indicator, transaction_entity_id
             FROM billing.fraud_events",
            &[],
        )
        .await
        .unwrap();
    let cols: Vec<String> = (0..9).map(|c| row.get(c)).collect();
    assert_eq!(
        cols,
        [
            "f1",
            "2018-02-10 12:00:00",
            "session-f1",
            "pid-f1",
            "req-f1",
            "https://idp.example",
            "fraud-f1",
            "IT01",
            "https://rp.example",
        ]
    );
    assert_eq!(db.row_counts().await, [1, 0, 1]);
}

#[tokio::test]
async fn duplicate_is_idempotent_and_never_an_error() {
    let db = TestDb::new().await;
    let batch = Batch::default().event("m1", &billing_event("b1"));
    assert_eq!(record(&db, &batch).await, report(&[], 1, 0));
    // The same event, newly encrypted (another IV) and under another message id.
    let again = Batch::default().event("m2", &billing_event("b1"));
    assert_eq!(record(&db, &again).await, report(&[], 0, 1));
    // Twice within one batch: one stored, one duplicate.
    let twice = Batch::default()
        .event("m3", &audit_event("a"))
        .event("m4", &audit_event("a"));
    assert_eq!(record(&db, &twice).await, report(&[], 1, 1));
    assert_eq!(db.row_counts().await, [2, 1, 0]);
}

#[tokio::test]
async fn undecryptable_not_json_and_missing_field_are_reported_failed() {
    let db = TestDb::new().await;
    let mut missing = audit_event("x");
    missing
        .as_object_mut()
        .unwrap()
        .remove("originatingService");
    let batch = Batch::default()
        .raw("not-base64", "%%%")
        .raw(
            "wrong-key",
            event_recorder::DataKey::new(vec![9; 16])
                .unwrap()
                .encrypt(b"{}"),
        )
        .raw("not-json", key().encrypt(b"{\"eventId\": "))
        .event("missing-field", &missing);
    let r = record(&db, &batch).await;
    assert_eq!(
        r,
        report(
            &["not-base64", "wrong-key", "not-json", "missing-field"],
            0,
            0
        )
    );
    assert_eq!(db.row_counts().await, [0, 0, 0]);
}

#[tokio::test]
async fn billing_event_missing_a_detail_stores_nothing_at_all() {
    let db = TestDb::new().await;
    for (kind, mut event, field) in [
        ("billing", billing_event("b"), "request_id"),
        ("fraud", fraud_event("f"), "gpg45_status"),
    ] {
        event["details"].as_object_mut().unwrap().remove(field);
        let r = record(&db, &Batch::default().event(kind, &event)).await;
        assert_eq!(r, report(&[kind], 0, 0));
    }
    // Not even the audit row: one message is one transaction.
    assert_eq!(db.row_counts().await, [0, 0, 0]);
}

#[tokio::test]
async fn mixed_batch_reports_exactly_the_bad_ids_and_replays_cleanly() {
    let db = TestDb::new().await;
    record(&db, &Batch::default().event("earlier", &audit_event("dup"))).await;
    let mut billing_missing = billing_event("bm");
    billing_missing["details"]
        .as_object_mut()
        .unwrap()
        .remove("pid");
    let batch = Batch::default()
        .event("ok-audit", &audit_event("a1"))
        .raw("bad-body", "AAAA")
        .event("ok-billing", &billing_event("b1"))
        .event("duplicate", &audit_event("dup"))
        .event("billing-missing", &billing_missing)
        .event("ok-fraud", &fraud_event("f1"))
        .raw("bad-json", key().encrypt(b"not json"));
    assert_eq!(
        record(&db, &batch).await,
        report(&["bad-body", "billing-missing", "bad-json"], 3, 1)
    );
    assert_eq!(db.row_counts().await, [4, 1, 1]);
    assert_eq!(db.audit_event_ids().await, ["a1", "b1", "dup", "f1"]);

    // Replaying the same batch stores nothing new; the good ones are duplicates.
    let replay = record(&db, &batch).await;
    assert_eq!(
        replay,
        report(&["bad-body", "billing-missing", "bad-json"], 0, 4)
    );
    assert_eq!(db.row_counts().await, [4, 1, 1]);
}

#[tokio::test]
async fn a_message_the_database_refuses_fails_alone() {
    let db = TestDb::new().await;
    // A real database-side refusal, not a mock: a trigger rejecting one event.
    refuse_poison(&db).await;
    let batch = Batch::default()
        .event("m1", &audit_event("a1"))
        .event("m2", &billing_event("poison"))
        .event("m3", &billing_event("b3"));
    assert_eq!(record(&db, &batch).await, report(&["m2"], 2, 0));
    // The poison message's audit row went with it.
    assert_eq!(db.row_counts().await, [2, 1, 0]);
}

#[tokio::test]
async fn database_unreachable_fails_the_whole_batch_and_writes_nothing() {
    let db = TestDb::new().await;
    let mut store = db.store().await;
    // Kill the store's session from outside, as a failover or network cut would.
    let pid: i32 = store
        .run(async |client| client.query_one("SELECT pg_backend_pid()", &[]).await)
        .await
        .unwrap()
        .get(0);
    db.client()
        .await
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let batch = Batch::default()
        .event("m1", &audit_event("a1"))
        .event("m2", &billing_event("b1"))
        .raw("m3", "bad");
    let r = recorder().record_batch(&mut store, &batch.messages()).await;
    assert_eq!(r.transactions, 1, "no retry on a dead connection");
    assert_eq!(
        (r.failed, r.stored, r.duplicates),
        (report(&["m1", "m2", "m3"], 0, 0).failed, 0, 0)
    );
    assert!(store.is_closed());
    assert_eq!(db.row_counts().await, [0, 0, 0]);
}

#[tokio::test]
async fn large_batch_is_stored_whole() {
    let db = TestDb::new().await;
    let mut batch = Batch::default();
    for i in 0..2_000 {
        let event = mixed_event(&format!("e{i}"), i);
        batch.0.push((format!("m{i}"), encrypt(&event)));
    }
    assert_eq!(record(&db, &batch).await, report(&[], 2_000, 0));
    assert_eq!(db.row_counts().await, [2_000, 300, 100]);
}

#[tokio::test]
async fn refused_messages_are_isolated_in_few_transactions() {
    let db = TestDb::new().await;
    refuse_poison(&db).await;
    let n = 10_000;
    for poisoned in [vec![4_321], vec![17, 5_000, 9_998]] {
        let mut batch = Batch::default();
        for i in 0..n {
            let id = format!("e{i}-{}", poisoned.len());
            let event = match poisoned.contains(&i) {
                true => billing_event(&format!("poison-{id}")),
                false => audit_event(&id),
            };
            batch.0.push((format!("m{i}"), encrypt(&event)));
        }
        let mut store = db.store().await;
        let r = recorder().record_batch(&mut store, &batch.messages()).await;
        let want: Vec<String> = poisoned.iter().map(|i| format!("m{i}")).collect();
        assert_eq!(r.failed, want);
        assert_eq!(r.stored, n - poisoned.len());
        // Halving: about 2·log2(n) per refused message, against n + 1 one by one.
        let bound = 1 + poisoned.len() * 2 * (n as f64).log2().ceil() as usize;
        println!(
            "{} refused among {n}: {} transactions (one by one: {})",
            poisoned.len(),
            r.transactions,
            n + 1
        );
        assert!(r.transactions <= bound, "{} > {bound}", r.transactions);
    }
    assert_eq!(db.count("audit.audit_events").await, 2 * 10_000 - 4);
}

#[tokio::test]
async fn sub_microsecond_and_leap_second_timestamps_are_stored_then_duplicate() {
    let db = TestDb::new().await;
    let mut fine = audit_event("fine");
    fine["timestamp"] = json!("2018-02-10T12:00:00.1234567Z");
    let mut nanos = billing_event("nanos");
    nanos["timestamp"] = json!("2018-02-10T13:00:00.999999999+01:00");
    let mut leap = audit_event("leap");
    leap["timestamp"] = json!("2016-12-31T23:59:60.5Z");
    let batch = Batch::default()
        .event("m1", &fine)
        .event("m2", &nanos)
        .event("m3", &leap);
    assert_eq!(record(&db, &batch).await, report(&[], 3, 0));
    assert_eq!(record(&db, &batch).await, report(&[], 0, 3));
    let rows = db
        .client()
        .await
        .query(
            "SELECT event_id, time_stamp::text FROM audit.audit_events ORDER BY event_id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        [
            ("fine".into(), "2018-02-10 12:00:00.123456".into()),
            ("leap".into(), "2017-01-01 00:00:00.5".into()),
            ("nanos".into(), "2018-02-10 12:00:00.999999".into()),
        ]
    );
    assert_eq!(db.row_counts().await, [3, 1, 0]);
}
