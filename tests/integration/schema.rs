//! The migrations produce exactly the reference schema.

use event_recorder::schema;

use crate::support::TestDb;

/// (column, type, nullable) in table order.
async fn columns(db: &TestDb, schema: &str, table: &str) -> Vec<(String, String, bool)> {
    db.client()
        .await
        .query(
            "SELECT column_name::text, data_type::text, is_nullable = 'YES'
             FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2
             ORDER BY ordinal_position",
            &[&schema, &table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Column lists of each index on a table; the primary key's marked "pk".
async fn indexes(db: &TestDb, schema: &str, table: &str) -> Vec<String> {
    let mut got: Vec<String> = db
        .client()
        .await
        .query(
            "SELECT CASE WHEN i.indisprimary THEN 'pk ' ELSE '' END
                    || string_agg(a.attname, ',' ORDER BY k.ord)
             FROM pg_index i
             JOIN pg_class t ON t.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
             WHERE n.nspname = $1 AND t.relname = $2
             GROUP BY i.indexrelid, i.indisprimary",
            &[&schema, &table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    got.sort();
    got
}

fn cols(spec: &[(&str, &str, bool)]) -> Vec<(String, String, bool)> {
    spec.iter()
        .map(|(c, t, n)| (c.to_string(), t.to_string(), *n))
        .collect()
}

const TEXT: &str = "text";
const TS: &str = "timestamp without time zone";

#[tokio::test]
async fn audit_events_matches_the_reference() {
    let db = TestDb::new().await;
    assert_eq!(
        columns(&db, "audit", "audit_events").await,
        cols(&[
            ("event_id", TEXT, false),
            ("event_type", TEXT, false),
            ("time_stamp", TS, false),
            ("originating_service", TEXT, false),
            ("session_id", TEXT, true),
            ("details", "jsonb", true),
        ])
    );
    assert_eq!(
        indexes(&db, "audit", "audit_events").await,
        [
            "event_id",
            "pk event_id,time_stamp",
            "session_id",
            "time_stamp"
        ]
    );
}

#[tokio::test]
async fn billing_tables_match_the_reference() {
    let db = TestDb::new().await;
    assert_eq!(
        columns(&db, "billing", "billing_events").await,
        cols(&[
            ("event_id", TEXT, false),
            ("time_stamp", TS, false),
            ("session_id", TEXT, false),
            ("hashed_persistent_id", TEXT, false),
            ("request_id", TEXT, false),
            ("idp_entity_id", TEXT, false),
            ("minimum_level_of_assurance", TEXT, false),
            ("preferred_level_of_assurance", TEXT, true),
            ("provided_level_of_assurance", TEXT, false),
            ("transaction_entity_id", TEXT, true),
        ])
    );
    assert_eq!(
        indexes(&db, "billing", "billing_events").await,
        [
            "hashed_persistent_id",
            "pk event_id",
            "provided_level_of_assurance",
            "session_id",
            "time_stamp"
        ]
    );
    assert_eq!(
        columns(&db, "billing", "fraud_events").await,
        cols(&[
            ("event_id", TEXT, false),
            ("time_stamp", TS, false),
            ("session_id", TEXT, false),
            ("hashed_persistent_id", TEXT, false),
            ("request_id", TEXT, true),
            ("entity_id", TEXT, false),
            ("fraud_event_id", TEXT, false),
            ("fraud_indicator", TEXT, false),
            ("transaction_entity_id", TEXT, false),
        ])
    );
    assert_eq!(
        indexes(&db, "billing", "fraud_events").await,
        ["pk event_id"]
    );
    assert_eq!(
        columns(&db, "billing", "billing_status").await,
        cols(&[("event_id", TEXT, false), ("billing_status", TEXT, false)])
    );
    let fk: String = db
        .client()
        .await
        .query_one(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conrelid = 'billing.billing_status'::regclass AND contype = 'f'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        fk,
        "FOREIGN KEY (event_id) REFERENCES billing.billing_events(event_id)"
    );
}

#[tokio::test]
async fn idp_data_tables_exist() {
    let db = TestDb::new().await;
    for table in [
        "upload_sessions",
        "upload_session_validation_failures",
        "idp_fraud_events",
        "idp_fraud_event_contraindicators",
    ] {
        assert!(
            !columns(&db, "idp_data", table).await.is_empty(),
            "idp_data.{table}"
        );
    }
    let count = columns(&db, "idp_data", "idp_fraud_event_contraindicators").await;
    assert!(count.contains(&("count".into(), "integer".into(), false)));
}

#[tokio::test]
async fn migrating_again_applies_nothing() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    assert_eq!(
        schema::migrate(&mut client).await.unwrap(),
        Vec::<String>::new()
    );
}
