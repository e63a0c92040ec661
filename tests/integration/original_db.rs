//! Drop-in: a database the original service's migrations built is adopted
//! by `migrate` unchanged, and all three functions run on it, each through
//! the real `bootstrap` with its `_HANDLER`.

use serde_json::json;

use crate::cli::{run, stdout};
use crate::support::TestDb;
use crate::support::events::{Batch, KEY_B64, audit_event, billing_event, fraud_event};
use crate::support::function::Function;
use crate::support::moto;
use crate::support::runtime_api::RuntimeApi;
use crate::support::s3::Bucket;

#[tokio::test]
async fn migrate_adopts_it_and_every_function_writes_to_it() {
    let db = TestDb::original().await;
    let conn = db.connection_string();
    let out = stdout(&run(
        &["migrate"],
        &[("DB_CONNECTION_STRING", conn.as_str())],
        None,
    ));
    assert!(out.contains("adopted") && out.contains("Flyway"), "{out}");

    let env = |handler: &str| {
        let mut env = moto::aws_env();
        env.push(("_HANDLER", handler.to_owned()));
        env.push(("DB_CONNECTION_STRING", conn.clone()));
        env
    };

    let api = RuntimeApi::start().await;
    let mut sqs_env = env("bootstrap");
    sqs_env.push(("LOCAL_DATA_KEY", KEY_B64.into()));
    let _sqs = Function::spawn(&api, &sqs_env);
    let batch = Batch::default()
        .event("m1", &audit_event("o1"))
        .event("m2", &billing_event("o2"))
        .event("m3", &fraud_event("o3"));
    let body = api.invoke(&batch.sqs_event()).await.body();
    assert_eq!(body["batchItemFailures"], json!([]), "{body}");

    let bucket = Bucket::new().await;
    let api = RuntimeApi::start().await;
    let _import = Function::spawn(&api, &env("s3-import"));
    let line = json!({ "document": audit_event("o4") }).to_string();
    bucket.put("import/one.jsonl", line, &[]).await;
    let body = api.invoke(&bucket.created("import/one.jsonl")).await.body();
    assert_eq!(body["objects"][0]["stored"], 1, "{body}");

    let api = RuntimeApi::start().await;
    let _upload = Function::spawn(&api, &env("idp-fraud-upload"));
    let csv = "timestamp,idp_event_id,fid_code,contra_indicators,contra_score,request_id,client_ip_address,pid\n\
               2019-08-01 10:00,ev1,F01,\"A01,A01\",1,req1,ip,pid1\n";
    bucket
        .put(
            "idp-fraud/r.csv",
            csv,
            &[("idp", "https://idp.example"), ("username", "u")],
        )
        .await;
    let body = api.invoke(&bucket.created("idp-fraud/r.csv")).await.body();
    assert_eq!(body[0]["passed"], true, "{body}");

    assert_eq!(db.row_counts().await, [4, 1, 1]);
    assert_eq!(
        db.count("idp_data.idp_fraud_event_contraindicators").await,
        1
    );
    let count: i32 = db
        .client()
        .await
        .query_one(
            "SELECT count FROM idp_data.idp_fraud_event_contraindicators",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2, "a code repeated in a row counts twice");
    assert_eq!(db.count("public.flyway_schema_history").await, 59);
}
