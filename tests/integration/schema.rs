//! The schema: `migrate` on an empty database gives the original's final
//! schema; on a database the original built it adopts it unchanged; on
//! anything else it refuses and changes nothing.

use event_recorder::schema::{self, MigrateError, Outcome};
use tokio_postgres::Client;

use crate::support::TestDb;

/// Every table of the three schemas as catalog facts, one line each:
/// columns in order (type, nullability, default), constraints, and index
/// column lists. Names of indexes and constraints are left out: the
/// original's are not part of the contract.
async fn snapshot(client: &Client) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for row in client
        .query(
            "SELECT n.nspname || '.' || c.relname || ' ' || a.attnum || ' ' || a.attname || ' '
                    || format_type(a.atttypid, a.atttypmod)
                    || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                    || CASE WHEN a.atthasdef THEN ' default ' || pg_get_expr(d.adbin, d.adrelid) ELSE '' END
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid AND c.relkind = 'r'
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE n.nspname IN ('audit', 'billing', 'idp_data') AND a.attnum > 0
               AND NOT a.attisdropped",
            &[],
        )
        .await
        .unwrap()
    {
        lines.push(row.get(0));
    }
    for row in client
        .query(
            "SELECT conrelid::regclass::text || ' ' || pg_get_constraintdef(oid)
             FROM pg_constraint
             WHERE connamespace::regnamespace::text IN ('audit', 'billing', 'idp_data')",
            &[],
        )
        .await
        .unwrap()
    {
        lines.push(row.get(0));
    }
    for row in client
        .query(
            "SELECT i.indrelid::regclass::text || ' index ('
                    || (SELECT string_agg(a.attname, ',' ORDER BY k.ord)
                        FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
                    || ')' || CASE WHEN i.indisunique THEN ' unique' ELSE '' END
             FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
             WHERE c.relnamespace::regnamespace::text IN ('audit', 'billing', 'idp_data')",
            &[],
        )
        .await
        .unwrap()
    {
        lines.push(row.get(0));
    }
    lines.sort();
    lines
}

#[tokio::test]
async fn an_empty_database_gets_exactly_the_original_schema() {
    let ours = TestDb::new().await;
    let original = TestDb::original().await;
    let ours = snapshot(&ours.client().await).await;
    assert_eq!(ours, snapshot(&original.client().await).await);
    // The facts the reference lists, spot-checked in the snapshot itself.
    for line in [
        "audit.audit_events PRIMARY KEY (event_id, time_stamp)",
        "idp_data.upload_session_validation_failures 3 row bigint not null",
        "idp_data.idp_fraud_event_contraindicators 3 count integer not null default 1",
        "billing.billing_status FOREIGN KEY (event_id) REFERENCES billing.billing_events(event_id) ON UPDATE CASCADE ON DELETE RESTRICT",
        "billing.billing_events index (hashed_persistent_id,time_stamp)",
    ] {
        assert!(ours.iter().any(|l| l == line), "{line} not in {ours:#?}");
    }
    assert!(
        !ours
            .iter()
            .any(|l| l.contains("idp_fraud_events index (idp_entity_id")),
        "no unique key on (idp_entity_id, idp_event_id): {ours:#?}"
    );
}

#[tokio::test]
async fn migrate_adopts_a_database_the_original_built_and_changes_nothing() {
    let db = TestDb::original().await;
    let mut client = db.client().await;
    let before = snapshot(&client).await;
    assert_eq!(
        schema::migrate(&mut client).await.unwrap(),
        Outcome::Adopted { flyway: true }
    );
    assert_eq!(snapshot(&client).await, before);
    assert_eq!(db.count("public.flyway_schema_history").await, 59);
    let how: String = client
        .query_one("SELECT how FROM public.event_recorder_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(how, "adopted");
    assert_eq!(
        schema::migrate(&mut client).await.unwrap(),
        Outcome::UpToDate
    );
}

#[tokio::test]
async fn migrate_refuses_a_different_schema_and_lists_every_difference() {
    let db = TestDb::original().await;
    let mut client = db.client().await;
    client
        .batch_execute(
            "ALTER TABLE idp_data.idp_fraud_events
                 ADD CONSTRAINT one_upload UNIQUE (idp_entity_id, idp_event_id);
             ALTER TABLE idp_data.upload_sessions RENAME COLUMN source_file_name TO source_file_path;
             ALTER TABLE billing.fraud_events ALTER COLUMN request_id SET NOT NULL;
             ALTER TABLE audit.audit_events ADD COLUMN tenant text NOT NULL DEFAULT 'x';
             ALTER TABLE audit.audit_events ADD COLUMN region text NOT NULL;
             ALTER TABLE idp_data.upload_session_validation_failures ALTER COLUMN \"row\" TYPE integer;
             DROP TABLE idp_data.idp_fraud_event_contraindicators;",
        )
        .await
        .unwrap();
    let before = snapshot(&client).await;
    let err = schema::migrate(&mut client).await.unwrap_err();
    let MigrateError::Mismatch(found) = &err else {
        panic!("expected a mismatch, got {err}");
    };
    assert_eq!(
        found,
        &[
            "audit.audit_events.region: extra NOT NULL column without a default (inserts would fail)",
            "billing.fraud_events.request_id: NOT NULL, expected nullable",
            "idp_data.upload_sessions.source_file_name: column missing",
            "idp_data.upload_sessions.source_file_path: extra NOT NULL column without a default (inserts would fail)",
            "idp_data.upload_session_validation_failures.row: type integer, expected bigint",
            "idp_data.idp_fraud_events: unique key (idp_entity_id, idp_event_id) not in the expected schema (it would refuse rows)",
            "idp_data.idp_fraud_event_contraindicators: table missing",
        ]
    );
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    assert_eq!(snapshot(&client).await, before);
    let history: bool = client
        .query_one(
            "SELECT to_regclass('public.event_recorder_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!history, "a refused migrate records nothing");
}

#[tokio::test]
async fn migrate_refuses_a_partial_schema() {
    let db = TestDb::empty().await;
    let mut client = db.client().await;
    client
        .batch_execute(
            "CREATE SCHEMA audit;
             CREATE TABLE audit.audit_events (event_id text NOT NULL, time_stamp timestamp NOT NULL,
                 originating_service text NOT NULL, session_id text, event_type text NOT NULL,
                 details jsonb, PRIMARY KEY (event_id, time_stamp));",
        )
        .await
        .unwrap();
    let MigrateError::Mismatch(found) = schema::migrate(&mut client).await.unwrap_err() else {
        panic!("expected a mismatch");
    };
    assert_eq!(found.len(), 6, "{found:#?}");
    assert!(
        found.iter().all(|d| d.ends_with("table missing")),
        "{found:#?}"
    );
}

#[tokio::test]
async fn migrating_again_applies_nothing() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    assert_eq!(
        schema::migrate(&mut client).await.unwrap(),
        Outcome::UpToDate
    );
}

#[tokio::test]
async fn concurrent_migrations_apply_once() {
    let db = TestDb::empty().await;
    let (mut a, mut b) = (db.client().await, db.client().await);
    let (ra, rb) = tokio::join!(schema::migrate(&mut a), schema::migrate(&mut b));
    let mut outcomes = [ra.unwrap(), rb.unwrap()];
    outcomes.sort_by_key(|o| matches!(o, Outcome::UpToDate));
    assert_eq!(
        outcomes,
        [
            Outcome::Applied(vec!["V1__schema".into()]),
            Outcome::UpToDate
        ]
    );
}
