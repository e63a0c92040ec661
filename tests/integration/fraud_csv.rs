//! The IdP fraud-report upload (`_HANDLER=idp-fraud-upload`): tagged CSV
//! files in moto's S3, the real `bootstrap`, a real PostgreSQL; the stored
//! values checked column by column.

use chrono::NaiveDateTime;
use event_recorder::functions::fraud_csv::{self, tags::UploadTags};

use crate::cli::{run, stdout};
use crate::support::TestDb;
use crate::support::function::Function;
use crate::support::moto;
use crate::support::runtime_api::{Outcome, RuntimeApi};
use crate::support::s3::Bucket;

fn env(db: &str) -> Vec<(&'static str, String)> {
    let mut env = moto::aws_env();
    env.push(("_HANDLER", "idp-fraud-upload".into()));
    env.push(("DB_CONNECTION_STRING", db.to_owned()));
    env
}

const HEADER: &str = "timestamp,idp_event_id,fid_code,contra_indicators,contra_score,request_id,client_ip_address,pid";

/// (session id, source file, idp, user, passed) of every session.
async fn sessions(db: &TestDb) -> Vec<(i64, String, String, String, bool)> {
    db.client()
        .await
        .query(
            "SELECT id, source_file_name, idp_entity_id, userid, passed_validation
             FROM idp_data.upload_sessions ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

/// Each stored fraud event as one line, with its contra-indicator counts.
async fn fraud_rows(db: &TestDb) -> Vec<String> {
    db.client()
        .await
        .query(
            "SELECT concat_ws(' | ', e.idp_entity_id, e.idp_event_id,
                        to_char(e.time_stamp, 'YYYY-MM-DD HH24:MI:SS.US'), e.fid_code,
                        e.contra_score, e.request_id, e.client_ip_address, e.pid,
                        (SELECT string_agg(c.contraindicator_code || '=' || c.count, ','
                                           ORDER BY c.contraindicator_code)
                         FROM idp_data.idp_fraud_event_contraindicators c
                         WHERE c.idp_fraud_events_id = e.id))
             FROM idp_data.idp_fraud_events e ORDER BY e.idp_event_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn failures(db: &TestDb) -> Vec<(i64, String, String)> {
    db.client()
        .await
        .query(
            "SELECT \"row\", field, message FROM idp_data.upload_session_validation_failures
             ORDER BY \"row\", id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn a_good_file_is_stored_and_moved_to_success_with_its_tags() {
    let db = TestDb::new().await;
    let bucket = Bucket::new().await;
    let key = "idp-fraud/2019 reports/août ✓.csv";
    let csv = format!(
        "{HEADER}\n\
         2019-08-01 10:00,ev1,F01,\"A01, B02\",5,req1,10.0.0.1,pid1\n\
         2019-08-01T10:00:00+02:00,ev2,F02,\"A01\nA01\",,req2,10.0.0.2,pid2\n\
         15/01/2019 09:30,ev3,F03,  ,-3,req3,10.0.0.3,pid3\n"
    );
    let tags = [
        ("idp", "https://idp.example"),
        ("username", "alice"),
        ("batch", "7"),
    ];
    bucket.put(key, csv, &tags).await;

    let api = RuntimeApi::start().await;
    let function = Function::spawn(&api, &env(&db.connection_string()));
    let body = api.invoke(&bucket.created(key)).await.body();
    assert_eq!(body[0]["passed"], true, "{body}");
    assert_eq!(body[0]["rows"], 3, "{body}");

    let sessions = sessions(&db).await;
    assert_eq!(sessions.len(), 1);
    let (_, file, idp, user, passed) = &sessions[0];
    assert_eq!(
        (file.as_str(), idp.as_str(), user.as_str(), *passed),
        (key, "https://idp.example", "alice", true)
    );
    assert_eq!(
        fraud_rows(&db).await,
        [
            "https://idp.example | ev1 | 2019-08-01 10:00:00.000000 | F01 | 5 | req1 | 10.0.0.1 | pid1 | A01=1,B02=1",
            "https://idp.example | ev2 | 2019-08-01 08:00:00.000000 | F02 | 0 | req2 | 10.0.0.2 | pid2 | A01=2",
            "https://idp.example | ev3 | 2019-01-15 09:30:00.000000 | F03 | -3 | req3 | 10.0.0.3 | pid3",
        ]
    );
    let moved = "success/août ✓.csv";
    assert_eq!(bucket.keys().await, [moved]);
    let session = sessions[0].0.to_string();
    let mut want: Vec<(String, String)> = tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("event-recorder-session".to_string(), session)])
        .collect();
    want.sort();
    let kept = bucket.tags(moved).await;
    assert_eq!(kept, want, "tags kept, and the session named");

    // The rows are stored but suppose the move had failed: the retry finds
    // the object where it was, tagged with its finished session, and only
    // moves it.
    let kept: Vec<(&str, &str)> = kept.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    bucket
        .put(key, bucket.get(moved).await.unwrap(), &kept)
        .await;
    let body = api.invoke(&bucket.created(key)).await.body();
    assert_eq!(body[0]["passed"], true, "{body}");
    assert_eq!(body[0]["rows"], 3, "{body}");
    assert_eq!(
        db.count("idp_data.idp_fraud_events").await,
        3,
        "nothing written twice"
    );
    assert_eq!(db.count("idp_data.upload_sessions").await, 1);
    assert_eq!(bucket.keys().await, [moved]);
    let logs = function.output();
    assert!(
        !logs.contains("pid1") && !logs.contains("10.0.0.1"),
        "{logs}"
    );
}

#[tokio::test]
async fn every_bad_row_is_recorded_nothing_stored_and_the_file_moved_to_error() {
    let db = TestDb::new().await;
    let bucket = Bucket::new().await;
    let key = "idp-fraud/bad.csv";
    let csv = format!(
        "{HEADER}\n\
         08/13/2019 10:00,ev1,F01,A01,1,req1,ip,pid1\n\
         2019-08-01 10:00,ev2,F02,A01,1,req2,ip,pid2\n\
         2019-08-01 10:00,ev3,F03,A01,lots,req3,ip,pid3\n\
         2019-08-01 10:00,ev4,F04\n\
         yesterday,ev5,F05,A01,2.5,req5,ip,pid5\n"
    );
    bucket
        .put(
            key,
            csv,
            &[("idp", "https://idp.example"), ("username", "bob")],
        )
        .await;

    let api = RuntimeApi::start().await;
    let _function = Function::spawn(&api, &env(&db.connection_string()));
    let body = api.invoke(&bucket.created(key)).await.body();
    assert_eq!(body[0]["passed"], false, "{body}");
    assert_eq!(body[0]["failed_rows"], 4, "{body}");

    let found = failures(&db).await;
    let summary: Vec<(i64, &str)> = found.iter().map(|(r, f, _)| (*r, f.as_str())).collect();
    assert_eq!(
        summary,
        [
            (2, "timestamp"),
            (4, "contra_score"),
            (5, "**Row Exception**"),
            (6, "timestamp"),
            (6, "contra_score"),
        ]
    );
    assert!(found[0].2.contains("day-first (DD/MM/YYYY)"), "{found:?}");
    assert!(
        found
            .iter()
            .all(|(_, _, m)| !m.contains("lots") && !m.contains("yesterday"))
    );
    assert_eq!(db.count("idp_data.idp_fraud_events").await, 0);
    assert!(!sessions(&db).await[0].4);
    assert_eq!(bucket.keys().await, ["error/bad.csv"]);
}

#[tokio::test]
async fn unusable_tags_fail_the_invocation_and_leave_the_object() {
    let db = TestDb::new().await;
    let bucket = Bucket::new().await;
    let key = "idp-fraud/untagged.csv";
    bucket
        .put(key, format!("{HEADER}\n"), &[("username", "carol")])
        .await;
    let api = RuntimeApi::start().await;
    let mut function = Function::spawn(&api, &env(&db.connection_string()));
    match api.invoke(&bucket.created(key)).await {
        Outcome::Error(e) => assert!(e.to_string().contains("`idp`"), "{e}"),
        Outcome::Response(r) => panic!("expected an error, got {r}"),
    }
    bucket
        .set_tags(
            key,
            &[("idp", "i"), ("username", "carol"), ("dialect", "json")],
        )
        .await;
    match api.invoke(&bucket.created(key)).await {
        Outcome::Error(e) => assert!(e.to_string().contains("`dialect`"), "{e}"),
        Outcome::Response(r) => panic!("expected an error, got {r}"),
    }
    assert_eq!(bucket.keys().await, [key]);
    assert!(sessions(&db).await.is_empty());
    assert!(function.is_running(), "{}", function.output());
}

fn upload_options(tags: &[(&str, &str)]) -> UploadTags {
    let mut all = vec![("idp", "https://idp.example"), ("username", "dave")];
    all.extend_from_slice(tags);
    UploadTags::from_tags(all).unwrap()
}

/// Stored time stamps, by event id.
async fn stored_times(db: &TestDb) -> Vec<(String, NaiveDateTime)> {
    db.client()
        .await
        .query(
            "SELECT idp_event_id, time_stamp FROM idp_data.idp_fraud_events ORDER BY idp_event_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn at(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap()
}

#[tokio::test]
async fn timestamps_are_stored_as_the_original_stores_them_in_every_zone_and_dialect() {
    // Naive times as written (whatever the zone, across clock changes);
    // times with an offset in UTC; .NET's 7 digits to the microsecond.
    let rows = [
        ("t1", "2019-08-01 10:00", "2019-08-01 10:00:00"),
        ("t2", "2019-03-31 00:30:00", "2019-03-31 00:30:00"),
        ("t3", "2019-03-31 01:30:00", "2019-03-31 01:30:00"),
        ("t4", "2019-10-27 01:30+0000", "2019-10-27 01:30:00"),
        ("t5", "2019-08-01 10:00 +0200", "2019-08-01 08:00:00"),
        (
            "t6",
            "2019-03-01T02:40:40.1110000Z",
            "2019-03-01 02:40:40.111",
        ),
        ("t7", "15/01/2019 10:00", "2019-01-15 10:00:00"),
        ("t8", "2019-10-27T01:30:00-04:00", "2019-10-27 05:30:00"),
        ("t9", "05/08/2019 11:54", "2019-08-05 11:54:00"),
    ];
    let want: Vec<(String, NaiveDateTime)> = rows
        .iter()
        .map(|(id, _, s)| (id.to_string(), at(s)))
        .collect();
    for (dialect, delimiter, header, timezone) in [
        ("excel", ",", true, "Europe/London"),
        ("excel-tab", "\t", false, "America/New_York"),
        ("unix", ",", true, "UTC"),
    ] {
        let db = TestDb::new().await;
        let mut csv = String::new();
        if header {
            csv.push_str(&HEADER.replace(',', delimiter));
            csv.push('\n');
        }
        for (id, ts, _) in rows {
            let fields = [ts, id, "F", "A01", "1", "req", "ip", "pid"];
            csv.push_str(&fields.join(delimiter));
            csv.push('\n');
        }
        let header_tag = if header { "yes" } else { "0" };
        let options = upload_options(&[
            ("dialect", dialect),
            ("timezone", timezone),
            ("has_header", header_tag),
        ]);
        let mut store = db.store().await;
        let report = fraud_csv::store_file(&mut store, "f.csv", csv.as_bytes(), &options)
            .await
            .unwrap();
        assert!(
            report.passed,
            "{dialect}: {report:?} {:?}",
            failures(&db).await
        );
        assert_eq!(stored_times(&db).await, want, "{dialect} in {timezone}");
    }
}

#[tokio::test]
async fn the_same_event_uploaded_twice_is_stored_twice_as_in_the_original() {
    let db = TestDb::new().await;
    let csv = format!("{HEADER}\n2019-08-01 10:00,ev1,F01,A01,1,req1,ip,pid1\n");
    let options = upload_options(&[]);
    let mut store = db.store().await;
    for _ in 0..2 {
        let report = fraud_csv::store_file(&mut store, "f.csv", csv.as_bytes(), &options)
            .await
            .unwrap();
        assert!(report.passed);
    }
    assert_eq!(db.count("idp_data.idp_fraud_events").await, 2);
    assert_eq!(sessions(&db).await.len(), 2);
}

#[tokio::test]
async fn the_date_order_tag_mdy_reads_slash_dates_month_first() {
    let db = TestDb::new().await;
    let bucket = Bucket::new().await;
    let key = "idp-fraud/us.csv";
    let csv = format!(
        "{HEADER}\n\
         05/08/2019 11:54,ev1,F01,A01,1,req1,ip,pid1\n\
         12/25/2019 10:00:30,ev2,F02,A01,1,req2,ip,pid2\n\
         2019-08-01 10:00,ev3,F03,A01,1,req3,ip,pid3\n"
    );
    let tags = [
        ("idp", "https://idp.example"),
        ("username", "frank"),
        ("date-order", "mdy"),
    ];
    bucket.put(key, csv, &tags).await;

    let api = RuntimeApi::start().await;
    let _function = Function::spawn(&api, &env(&db.connection_string()));
    let body = api.invoke(&bucket.created(key)).await.body();
    assert_eq!(body[0]["passed"], true, "{body}");
    assert_eq!(
        stored_times(&db).await,
        [
            ("ev1".to_string(), at("2019-05-08 11:54:00")),
            ("ev2".to_string(), at("2019-12-25 10:00:30")),
            ("ev3".to_string(), at("2019-08-01 10:00:00")),
        ]
    );
    assert_eq!(bucket.keys().await, ["success/us.csv"]);
}

#[tokio::test]
async fn the_cli_passes_date_order_as_the_tag() {
    let db = TestDb::new().await;
    let conn = db.connection_string();
    let env = [("DB_CONNECTION_STRING", conn.as_str())];
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("report.csv");
    let upload = |id: &str, order: Option<&str>| {
        let row = format!("05/08/2019 11:54,{id},F,A01,1,req,ip,pid\n");
        std::fs::write(&csv, row).unwrap();
        let mut args = vec![
            "idp-fraud-upload",
            csv.to_str().unwrap(),
            "--idp",
            "https://idp.example",
            "--username",
            "gwen",
            "--no-header",
        ];
        if let Some(order) = order {
            args.extend(["--date-order", order]);
        }
        run(&args, &env, None)
    };

    stdout(&upload("ev1", None));
    stdout(&upload("ev2", Some("mdy")));
    stdout(&upload("ev3", Some("dmy")));
    assert_eq!(
        stored_times(&db).await,
        [
            ("ev1".to_string(), at("2019-08-05 11:54:00")),
            ("ev2".to_string(), at("2019-05-08 11:54:00")),
            ("ev3".to_string(), at("2019-08-05 11:54:00")),
        ],
        "day-first unless --date-order mdy"
    );

    let out = upload("ev4", Some("ymd"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`date-order`") && stderr.contains("dmy, mdy"),
        "{stderr}"
    );
    assert_eq!(sessions(&db).await.len(), 3, "no session for unusable tags");
}
