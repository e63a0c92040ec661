//! The kept-connection policy all three functions run their database work
//! under, shown on the fraud upload's statements: an error that says the
//! connection is gone (SQLSTATE class 08 or 57) marks the `Store` lost at
//! once, even while the socket stays open, and work that failed on a
//! connection kept from an earlier invocation runs once more on a new one.

use event_recorder::Store;
use event_recorder::database::{Database, Failure, KeptConnection, Password, Settings, SslMode};
use event_recorder::functions::fraud_csv::{self, tags::UploadTags};

use crate::support::TestDb;

const CSV: &str = "timestamp,idp_event_id,fid_code,contra_indicators,contra_score,request_id,client_ip_address,pid\n\
    05/08/2019 11:54,ev1,F01,A01,1,req1,ip,pid1\n\
    2019-08-01 10:00,ev2,F02,A02,2,req2,ip,pid2\n";

fn tags() -> UploadTags {
    UploadTags::from_tags([("idp", "https://idp.example"), ("username", "dave")]).unwrap()
}

/// The next `times` new upload sessions fail with `sqlstate` from a
/// trigger: the server says the connection is gone, but it stays open.
async fn fail_next_sessions(db: &TestDb, sqlstate: &str, times: u32) {
    db.client()
        .await
        .batch_execute(&format!(
            "CREATE SEQUENCE IF NOT EXISTS fail_once;
             ALTER SEQUENCE fail_once RESTART;
             CREATE OR REPLACE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF nextval('fail_once') <= {times} THEN
                     RAISE EXCEPTION 'the connection is going away' USING ERRCODE = '{sqlstate}';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE OR REPLACE TRIGGER fail_once BEFORE INSERT ON idp_data.upload_sessions
                 FOR EACH ROW EXECUTE FUNCTION fail_once();"
        ))
        .await
        .unwrap();
}

async fn backend_pid(store: &mut Store) -> i32 {
    store
        .run(async |client| client.query_one("SELECT pg_backend_pid()", &[]).await)
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_connection_error_on_the_fraud_path_marks_the_store_lost() {
    for sqlstate in ["57P01", "08006"] {
        let db = TestDb::new().await;
        fail_next_sessions(&db, sqlstate, 1).await;
        let mut store = db.store().await;
        let e = fraud_csv::store_file(&mut store, "f.csv", CSV.as_bytes(), &tags())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(sqlstate), "{e}");
        assert!(e.connection_lost(), "{e}");
        assert!(store.is_closed(), "{sqlstate} did not mark the store lost");
        assert_eq!(db.count("idp_data.upload_sessions").await, 0);
    }
}

#[tokio::test]
async fn fraud_work_that_fails_on_a_dead_kept_connection_runs_again_on_a_new_one() {
    let db = TestDb::new().await;
    fail_next_sessions(&db, "57P01", 1).await;
    let settings = Settings {
        config: db.config.clone(),
        ssl_mode: SslMode::Disable,
        root_cert: None,
    };
    // Opened "at start": kept, not made by the invocation.
    let kept = KeptConnection::open(Database::new(settings, Password::Fixed).unwrap())
        .await
        .unwrap();
    let mut backends = Vec::new();
    let report = kept
        .run(async |store| {
            backends.push(backend_pid(store).await);
            fraud_csv::store_file(store, "f.csv", CSV.as_bytes(), &tags()).await
        })
        .await
        .unwrap_or_else(|e| panic!("not retried: {e:?}"));
    assert!(report.passed, "{report:?}");
    assert_eq!(backends.len(), 2, "attempts");
    assert_ne!(
        backends[0], backends[1],
        "the retry reused the lost connection"
    );
    assert_eq!(db.count("idp_data.upload_sessions").await, 1);
    assert_eq!(db.count("idp_data.idp_fraud_events").await, 2);

    // Once more, only: when the new connection fails too, that is the
    // database's answer, not a stale connection's.
    fail_next_sessions(&db, "57P01", 2).await;
    let mut attempts = 0;
    let outcome = kept
        .run(async |store| {
            attempts += 1;
            fraud_csv::store_file(store, "g.csv", CSV.as_bytes(), &tags()).await
        })
        .await;
    assert!(matches!(outcome, Err(Failure::Work(_))), "{outcome:?}");
    assert_eq!(attempts, 2);
    assert_eq!(db.count("idp_data.upload_sessions").await, 1);
}
