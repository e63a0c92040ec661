//! Through PgBouncer in transaction mode, where consecutive transactions of
//! one client may run on different server connections, each shared with
//! other clients: nothing a session keeps may carry over. Also what a
//! refused or unreachable connection is reported as.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use event_recorder::Recorder;
use event_recorder::database::{ConnectError, Database, Password, Settings};
use event_recorder::route::Record;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::support::TestDb;
use crate::support::events::{
    Batch, KEY_B64, audit_event, billing_event, encrypt, fraud_event, key,
};
use crate::support::function::Function;
use crate::support::pgbouncer::PgBouncer;
use crate::support::runtime_api::{Outcome, RuntimeApi};
use crate::support::server;

/// PgBouncer in front of the test server, `pool_size` server connections per database.
fn pgbouncer(pool_size: u32) -> PgBouncer {
    PgBouncer::start(&server::shared().admin_config(), pool_size)
        .unwrap_or_else(|e| panic!("PgBouncer did not start: {e}"))
}

fn dbname(db: &TestDb) -> &str {
    db.config.get_dbname().unwrap()
}

/// Event `id`; its kind (audit, billing, fraud) follows `k` so that every
/// copy of one ID is the same event.
fn event(id: &str, k: usize) -> Value {
    match k % 10 {
        0 | 1 => billing_event(id),
        2 => fraud_event(id),
        _ => audit_event(id),
    }
}

const ROUNDS: usize = 4;
const FRESH: usize = 45;

/// One instance's batch in one round: fresh events, some of them twice, five
/// events every instance gets in this round (raced for), and five of another
/// instance's previous batch (redelivered).
fn batch(round: usize, instance: usize, instances: usize) -> Vec<(String, String, usize)> {
    let own = |r: usize, i: usize, k: usize| (format!("r{r}-i{i}-{k}"), k);
    let mut events: Vec<(String, usize)> = (0..FRESH).map(|k| own(round, instance, k)).collect();
    events.extend((0..5).map(|k| own(round, instance, k * 7)));
    events.extend((0..5).map(|k| (format!("r{round}-shared-{k}"), k)));
    if round > 0 {
        events.extend((40..FRESH).map(|k| own(round - 1, (instance + 1) % instances, k)));
    }
    events
        .into_iter()
        .enumerate()
        .map(|(n, (id, k))| (format!("r{round}-i{instance}-m{n}"), id, k))
        .collect()
}

/// Parses the JSON log lines of a function: the event IDs it logged as stored
/// and the number of duplicates.
fn stored_and_duplicates(logs: &str) -> (Vec<String>, usize) {
    let mut stored = Vec::new();
    let mut duplicates = 0;
    for line in logs.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        match entry["message"].as_str() {
            Some("stored") => stored.push(entry["event_id"].as_str().unwrap().to_owned()),
            Some(m) if m.starts_with("duplicate") => duplicates += 1,
            _ => {}
        }
    }
    (stored, duplicates)
}

/// What a concurrent run did.
pub struct Totals {
    pub messages: usize,
    pub events: usize,
    pub duplicates: usize,
    pub elapsed: std::time::Duration,
}

/// `count` real `bootstrap` instances writing overlapping batches at once
/// (shared events, duplicates inside and across batches), `ROUNDS` rounds:
/// every batch answered with no failures, every event stored exactly once
/// and logged as stored by exactly one instance.
pub async fn overlapping_rounds(db: &TestDb, count: usize, connection_string: String) -> Totals {
    let mut instances = Vec::new();
    for _ in 0..count {
        let api = Arc::new(RuntimeApi::start().await);
        let env = [
            ("DB_CONNECTION_STRING", connection_string.clone()),
            ("LOCAL_DATA_KEY", KEY_B64.to_owned()),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned()),
            // Each stored message has its own line at DEBUG only.
            ("AWS_LAMBDA_LOG_LEVEL", "DEBUG".to_owned()),
        ];
        let function = Function::spawn(&api, &env);
        instances.push((api, function));
    }

    let started = Instant::now();
    let mut expected = BTreeSet::new();
    let mut kinds = [0i64; 3];
    let mut messages = 0;
    for round in 0..ROUNDS {
        let mut invocations = JoinSet::new();
        for (instance, (api, _)) in instances.iter().enumerate() {
            let mut sqs = Batch::default();
            for (message_id, event_id, k) in batch(round, instance, count) {
                sqs = sqs.event(&message_id, &event(&event_id, k));
                messages += 1;
                if expected.insert(event_id) {
                    kinds[0] += 1;
                    kinds[1] += i64::from(matches!(k % 10, 0 | 1));
                    kinds[2] += i64::from(k % 10 == 2);
                }
            }
            let api = api.clone();
            invocations.spawn(async move { (instance, api.invoke(&sqs.sqs_event()).await) });
        }
        while let Some(answer) = invocations.join_next().await {
            let (instance, outcome) = answer.unwrap();
            let output = || instances[instance].1.output();
            let Outcome::Response(body) = outcome else {
                panic!(
                    "round {round}, instance {instance}: function error\n{}",
                    output()
                );
            };
            assert_eq!(
                body["batchItemFailures"],
                json!([]),
                "round {round}, instance {instance}\n{}",
                output()
            );
        }
    }
    let elapsed = started.elapsed();

    assert_eq!(db.row_counts().await, kinds);
    assert_eq!(db.audit_event_ids().await, Vec::from_iter(expected.clone()));
    // Every event was logged as stored by exactly one instance, every other
    // copy as a duplicate.
    let mut stored = Vec::new();
    let mut duplicates = 0;
    for (_, function) in &mut instances {
        assert!(function.is_running(), "{}", function.output());
        let (s, d) = stored_and_duplicates(&function.output());
        stored.extend(s);
        duplicates += d;
    }
    stored.sort();
    assert_eq!(stored, Vec::from_iter(expected.clone()));
    assert_eq!(duplicates, messages - expected.len());
    Totals {
        messages,
        events: expected.len(),
        duplicates,
        elapsed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_instances_share_a_pool_of_two() {
    let db = TestDb::new().await;
    let bouncer = pgbouncer(2);
    let totals = overlapping_rounds(&db, 8, bouncer.connection_string(dbname(&db))).await;
    // The eight instances were served by at most two server connections.
    let admin = crate::support::connect(&server::shared().admin_config()).await;
    let sessions: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
            &[&dbname(&db)],
        )
        .await
        .unwrap()
        .get(0);
    assert!((1..=2).contains(&sessions), "{sessions} server sessions");
    println!(
        "8 instances through PgBouncer (transaction mode, pool 2): \
         {} batches, {} messages, {} events stored once, {} duplicates, \
         {sessions} server sessions, {:.2} s",
        8 * ROUNDS,
        totals.messages,
        totals.events,
        totals.duplicates,
        totals.elapsed.as_secs_f64()
    );
}

#[tokio::test]
async fn no_session_state_outlives_an_insert() {
    let db = TestDb::new().await;
    let mut store = db.store().await;
    let recorder = Recorder::new(key());
    let records: Vec<Record> = [audit_event("a1"), billing_event("b1"), fraud_event("f1")]
        .iter()
        .map(|e| recorder.prepare(&encrypt(e)).unwrap())
        .collect();
    let refs: Vec<&Record> = records.iter().collect();
    store.insert(&refs).await.unwrap();
    // A second call, all duplicates, and a single-record call as the retry
    // path makes.
    store.insert(&refs).await.unwrap();
    store.insert(&refs[..1]).await.unwrap();
    assert_eq!(db.row_counts().await, [3, 1, 1]);

    // Asked unnamed, so the question leaves no statement behind itself.
    let mut session = async |sql: &'static str| {
        store
            .run(async |client| client.query_typed_one(sql, &[]).await)
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(
        session("SELECT count(*) FROM pg_prepared_statements").await,
        0,
        "named prepared statements"
    );
    assert_eq!(
        session("SELECT count(*) FROM pg_settings WHERE source = 'session'").await,
        0,
        "settings changed with SET"
    );
    assert_eq!(
        session(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        .await,
        0,
        "advisory locks"
    );
    assert_eq!(
        session("SELECT count(*) FROM pg_class WHERE relpersistence = 't'").await,
        0,
        "temporary tables"
    );
}

/// Runs `event-recorder invoke`; returns the batch response and the logs.
fn invoke(events: &std::path::Path, connection_string: &str) -> (Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_event-recorder"))
        .arg("invoke")
        .arg(events)
        .env_clear()
        .env("DB_CONNECTION_STRING", connection_string)
        .env("LOCAL_DATA_KEY", KEY_B64)
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "invoke failed: {logs}");
    let response = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {logs}"));
    (response, logs)
}

#[tokio::test]
async fn cli_invoke_twice_through_pgbouncer() {
    let db = TestDb::new().await;
    let bouncer = pgbouncer(2);
    let conn = bouncer.connection_string(dbname(&db));
    let dir = tempfile::tempdir().unwrap();
    let batch = |name: &str, ids: &[&str]| {
        let sqs = ids
            .iter()
            .enumerate()
            .fold(Batch::default(), |b, (k, id)| {
                b.event(&format!("m{k}"), &event(id, k))
            })
            .sqs_event();
        let path = dir.path().join(name);
        std::fs::write(&path, sqs.to_string()).unwrap();
        path
    };
    let first = batch("first.json", &["a", "b", "c"]);
    let second = batch("second.json", &["a", "d", "e", "f"]);

    for events in [first, second] {
        let (response, logs) = invoke(&events, &conn);
        assert_eq!(response, json!({"batchItemFailures": []}), "{logs}");
        // Not even a first attempt failed (a retry on a new connection
        // could otherwise hide a clash).
        assert!(!logs.contains("cannot connect"), "{logs}");
    }
    assert_eq!(db.audit_event_ids().await, ["a", "b", "c", "d", "e", "f"]);
}

/// Connects as the functions do; the attempt must fail.
async fn connect_error(connection_string: &str) -> ConnectError {
    let settings = Settings::parse(connection_string).unwrap();
    let database = Database::new(settings, Password::Fixed).unwrap();
    match database.store().await {
        Ok(_) => panic!("connected"),
        Err(e) => e,
    }
}

/// A refusal names the server's message and SQLSTATE, and is not a reason to
/// stop start-up.
fn assert_refused(e: &ConnectError, sqlstate: &str, secret: &str) {
    let message = e.to_string();
    assert!(
        message.starts_with("the database refused the connection: FATAL: ")
            && message.ends_with(&format!("({sqlstate})")),
        "{message}"
    );
    assert!(!message.contains(secret), "{message}");
    assert!(!e.is_configuration(), "{message}");
}

#[tokio::test]
async fn refusals_say_what_the_server_said() {
    let db = TestDb::new().await;
    let (role, password) = db.role_with_password().await;
    let wrong = format!("{password}-wrong");
    assert_refused(
        &connect_error(&format!("{role} password={wrong}")).await,
        "28P01",
        &wrong,
    );
    let good = format!("{role} password={password}");
    let unknown_db = good.replace(&format!("dbname={}", dbname(&db)), "dbname=no_such_db");
    assert_refused(&connect_error(&unknown_db).await, "3D000", &password);

    let role_name = role.rsplit("user=").next().unwrap();
    db.client()
        .await
        .batch_execute(&format!("ALTER ROLE {role_name} CONNECTION LIMIT 0"))
        .await
        .unwrap();
    assert_refused(&connect_error(&good).await, "53300", &password);
}

#[tokio::test]
async fn refusals_through_pgbouncer_say_what_it_said() {
    let db = TestDb::new().await;
    let bouncer = pgbouncer(2);
    let good = bouncer.connection_string(dbname(&db));
    let password = bouncer
        .config("x")
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap();
    let wrong = format!("{password}-wrong");
    // PgBouncer 1.18 reports a failed SCRAM exchange as a protocol violation.
    let e = connect_error(&good.replace(
        &format!("password={password}"),
        &format!("password={wrong}"),
    ))
    .await;
    assert_refused(&e, "08P01", &wrong);
}

#[tokio::test]
async fn no_answer_is_unreachable() {
    let port = crate::support::local::free_port().unwrap();
    let e = connect_error(&format!(
        "host=127.0.0.1 port={port} user=u password=secret-pw dbname=d connect_timeout=2"
    ))
    .await;
    let message = e.to_string();
    assert!(
        message.starts_with("cannot reach the database: "),
        "{message}"
    );
    assert!(!message.contains("secret-pw"), "{message}");
    assert!(!e.is_configuration(), "{message}");
}

#[tokio::test]
async fn migrate_and_the_s3_functions_work_through_pgbouncer() {
    let db = TestDb::empty().await;
    let bouncer = pgbouncer(1);
    let conn = bouncer.connection_string(dbname(&db));
    let env = [("DB_CONNECTION_STRING", conn.as_str())];
    use crate::cli::{run, stdout};
    assert_eq!(
        stdout(&run(&["migrate"], &env, None)).trim(),
        "applied V1__schema"
    );
    assert_eq!(
        stdout(&run(&["migrate"], &env, None)).trim(),
        "schema up to date"
    );

    let bucket = crate::support::s3::Bucket::new().await;
    let mut vars = crate::support::moto::aws_env();
    vars.push(("DB_CONNECTION_STRING", conn.clone()));
    let api = RuntimeApi::start().await;
    let mut import_vars = vars.clone();
    import_vars.push(("_HANDLER", "s3-import".into()));
    let import = Function::spawn(&api, &import_vars);
    let upload_api = RuntimeApi::start().await;
    let mut upload_vars = vars.clone();
    upload_vars.push(("_HANDLER", "idp-fraud-upload".into()));
    let upload = Function::spawn(&upload_api, &upload_vars);
    // Twice each, and interleaved: the one pooled server connection goes
    // from one client to the other between transactions.
    for round in 0..2 {
        let key = format!("import/{round}.jsonl");
        let line = json!({ "document": audit_event(&format!("p{round}")) }).to_string();
        bucket.put(&key, line, &[]).await;
        match api.invoke(&bucket.created(&key)).await {
            Outcome::Response(body) => assert_eq!(body["objects"][0]["stored"], 1, "{body}"),
            Outcome::Error(e) => panic!("{e}\n{}", import.output()),
        }
        let key = format!("idp-fraud/{round}.csv");
        let csv = "2019-08-01 10:00,ev1,F01,\"A01,B02\",1,req1,ip,pid1\n";
        bucket
            .put(
                &key,
                csv,
                &[("idp", "i"), ("username", "u"), ("has_header", "no")],
            )
            .await;
        match upload_api.invoke(&bucket.created(&key)).await {
            Outcome::Response(body) => assert_eq!(body[0]["passed"], true, "{body}"),
            Outcome::Error(e) => panic!("{e}\n{}", upload.output()),
        }
    }
    assert_eq!(db.count("audit.audit_events").await, 2);
    assert_eq!(
        db.count("idp_data.idp_fraud_event_contraindicators").await,
        4
    );
}
