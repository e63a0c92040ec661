//! The real `bootstrap` binary, end to end: Runtime API emulator in front,
//! real PostgreSQL behind.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::events::{Batch, KEY_B64, audit_event, billing_event, fraud_event, key};
use crate::support::function::Function;
use crate::support::runtime_api::{Outcome, RuntimeApi};
use crate::support::{TestDb, server};

fn env(db: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DB_CONNECTION_STRING", db.to_owned()),
        ("LOCAL_DATA_KEY", KEY_B64.to_owned()),
    ]
}

/// The IDs in a partial batch response; panics on a function error.
fn failures(outcome: Outcome) -> Vec<String> {
    outcome.failures()
}

#[tokio::test]
async fn mixed_batch_then_replay() {
    let db = TestDb::new().await;
    let api = RuntimeApi::start().await;
    let mut function = Function::spawn(&api, &env(&db.connection_string()));
    let mut missing_detail = fraud_event("f2");
    missing_detail["details"]
        .as_object_mut()
        .unwrap()
        .remove("idp_fraud_event_id");
    let batch = Batch::default()
        .event("m-audit", &audit_event("a1"))
        .event("m-billing", &billing_event("b1"))
        .event("m-fraud", &fraud_event("f1"))
        .raw("m-garbage", "bm90IGVuY3J5cHRlZA==")
        .event("m-missing-detail", &missing_detail)
        .event("m-dup", &audit_event("a1"));
    let event = batch.sqs_event();

    assert_eq!(
        failures(api.invoke(&event).await),
        ["m-garbage", "m-missing-detail"]
    );
    assert_eq!(db.row_counts().await, [3, 1, 1]);
    // Lambda redelivers the whole batch: nothing new, the same bad messages.
    assert_eq!(
        failures(api.invoke(&event).await),
        ["m-garbage", "m-missing-detail"]
    );
    assert_eq!(db.row_counts().await, [3, 1, 1]);
    assert!(function.is_running(), "{}", function.output());

    // One metrics line per invocation, on stdout.
    let metrics: Vec<Value> = function
        .stdout()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert_eq!(metrics.len(), 2, "{}", function.stdout());
    let spec = &metrics[0]["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(spec["Namespace"], "EventRecorder");
    let counts = |m: &Value| {
        [
            &m["BatchSize"],
            &m["Stored"],
            &m["Duplicates"],
            &m["Failed"],
        ]
        .map(|v| v.as_u64())
    };
    assert_eq!(counts(&metrics[0]), [Some(6), Some(3), Some(1), Some(2)]);
    assert_eq!(counts(&metrics[1]), [Some(6), Some(0), Some(4), Some(2)]);
    assert_eq!(metrics[0]["FunctionName"], "event-recorder");

    let logs = function.output();
    assert!(
        logs.contains("m-garbage") && logs.contains("at least 32 are needed"),
        "{logs}"
    );
    assert!(logs.contains("details.idp_fraud_event_id"), "{logs}");
    assert!(logs.contains("duplicate"), "{logs}");
}

#[tokio::test]
async fn invalid_configuration_is_an_init_error() {
    let db = TestDb::new().await;
    let good = db.connection_string();
    let cases: [(&str, Vec<(&str, String)>); 6] = [
        (
            "_HANDLER",
            vec![
                ("_HANDLER", "main.handler".into()),
                ("DB_CONNECTION_STRING", good.clone()),
                ("LOCAL_DATA_KEY", KEY_B64.into()),
            ],
        ),
        // The S3 functions check their own configuration (no data key).
        (
            "DB_CONNECTION_STRING",
            vec![("_HANDLER", "s3-import".into())],
        ),
        (
            "DB_CONNECTION_STRING",
            vec![("LOCAL_DATA_KEY", KEY_B64.into())],
        ),
        (
            "DB_CONNECTION_STRING",
            vec![
                ("DB_CONNECTION_STRING", "port=x".into()),
                ("LOCAL_DATA_KEY", KEY_B64.into()),
            ],
        ),
        (
            "LOCAL_DATA_KEY",
            vec![
                ("DB_CONNECTION_STRING", good.clone()),
                ("LOCAL_DATA_KEY", "c2hvcnQ=".into()),
            ],
        ),
        (
            "ENCRYPTION_KEY",
            vec![
                ("DB_CONNECTION_STRING", good),
                ("LOCAL_DATA_KEY", KEY_B64.into()),
                ("ENCRYPTION_KEY", "eA==".into()),
            ],
        ),
    ];
    for (variable, vars) in cases {
        let api = RuntimeApi::start().await;
        let mut function = Function::spawn(&api, &vars);
        let status = function
            .exit_status(Duration::from_secs(10))
            .await
            .expect("bootstrap exits");
        assert!(!status.success(), "{variable}: exited {status}");
        let (error_type, body) = api
            .init_error()
            .expect("init error reported to the Runtime API");
        assert_eq!(error_type.as_deref(), Some("Runtime.ConfigError"));
        let message = body["errorMessage"].as_str().unwrap();
        assert!(message.starts_with(variable), "{variable}: {message}");
        assert!(
            function.output().contains(variable),
            "{}",
            function.output()
        );
        assert!(
            api.first_next().is_none(),
            "no invocation may be taken after a failed init"
        );
    }
}

#[tokio::test]
async fn recovers_after_the_database_was_unreachable() {
    let db = TestDb::new().await;
    let (proxy, via_proxy) = db.behind_proxy().await;
    let api = RuntimeApi::start().await;
    let mut function = Function::spawn(&api, &env(&via_proxy));
    let batch = |n: &str| {
        Batch::default()
            .event(&format!("{n}-1"), &audit_event(&format!("{n}-a")))
            .event(&format!("{n}-2"), &billing_event(&format!("{n}-b")))
    };

    assert!(failures(api.invoke(&batch("before").sqs_event()).await).is_empty());
    proxy.cut();
    assert_eq!(
        failures(api.invoke(&batch("during").sqs_event()).await),
        ["during-1", "during-2"]
    );
    assert_eq!(
        failures(api.invoke(&batch("still").sqs_event()).await),
        ["still-1", "still-2"]
    );
    proxy.restore();
    assert!(failures(api.invoke(&batch("after").sqs_event()).await).is_empty());

    assert!(
        function.is_running(),
        "the same process serves on: {}",
        function.output()
    );
    assert_eq!(
        db.audit_event_ids().await,
        ["after-a", "after-b", "before-a", "before-b"]
    );
    assert_eq!(db.row_counts().await, [4, 2, 0]);
}

fn marked_batch(marker: &str, round: &str) -> Batch {
    let mut sensitive = billing_event(&format!("secret-1-{round}"));
    sensitive["details"]["pid"] = json!(marker);
    let mut invalid = audit_event(&format!("secret-2-{round}"));
    invalid["timestamp"] = json!(marker);
    Batch::default()
        .event("m1", &sensitive)
        .event("m2", &invalid)
        .raw(
            "m3",
            key().encrypt(format!("{{\"broken\": \"{marker}\"").as_bytes()),
        )
}

/// At the default level, at DEBUG (where each stored message has a line)
/// and at TRACE, in both formats.
#[tokio::test]
async fn no_secret_reaches_the_logs() {
    let db = TestDb::new().await;
    let (role, password) = db.role_with_password().await;
    let connection_string = format!("{role} password={password}");
    let marker = "PERSONAL-DATA-8c1f";
    let key_hex: String = (0u8..32).map(|b| format!("{b:02x}")).collect();
    for (level, format) in [
        ("INFO", "JSON"),
        ("DEBUG", "JSON"),
        ("DEBUG", "Text"),
        ("TRACE", "Text"),
    ] {
        let api = RuntimeApi::start().await;
        let function = Function::spawn(
            &api,
            &[
                ("DB_CONNECTION_STRING", connection_string.clone()),
                ("LOCAL_DATA_KEY", KEY_B64.into()),
                ("AWS_LAMBDA_LOG_LEVEL", level.into()),
                ("AWS_LAMBDA_LOG_FORMAT", format.into()),
            ],
        );
        let batch = marked_batch(marker, &format!("{level}-{format}"));
        assert_eq!(failures(api.invoke(&batch.sqs_event()).await), ["m2", "m3"]);
        let logs = function.output();
        assert!(
            logs.contains("m2") && logs.contains("batch recorded"),
            "{level} {format}: the logs were captured: {logs}"
        );
        assert_eq!(
            logs.contains("\"stored\"") || logs.contains("DEBUG stored"),
            level != "INFO",
            "{level} {format}: per-message lines at DEBUG only: {logs}"
        );
        for secret in [KEY_B64, key_hex.as_str(), password.as_str(), marker] {
            assert!(
                !logs.contains(secret),
                "{level} {format}: {secret:?} leaked into the logs:\n{logs}"
            );
        }
    }
}

#[tokio::test]
async fn decrypted_events_are_printed_only_when_enabled() {
    let db = TestDb::new().await;
    let marker = "PERSONAL-DATA-77aa";
    let api = RuntimeApi::start().await;
    let mut vars = env(&db.connection_string());
    vars.push(("LOG_DECRYPTED_EVENTS", "true".into()));
    let function = Function::spawn(&api, &vars);
    let mut event = audit_event("printed");
    event["details"]["pid"] = json!(marker);
    let batch = Batch::default().event("m1", &event);
    assert!(failures(api.invoke(&batch.sqs_event()).await).is_empty());
    let line = function
        .stdout()
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("event not printed:\n{}", function.output()))
        .to_owned();
    assert_eq!(
        serde_json::from_str::<Value>(&line).unwrap(),
        event,
        "one JSON line per event"
    );
}

#[tokio::test]
async fn a_connection_that_died_since_the_last_invocation_costs_nothing() {
    let db = TestDb::new().await;
    let (proxy, via_proxy) = db.behind_proxy().await;
    let api = RuntimeApi::start().await;
    let function = Function::spawn(&api, &env(&via_proxy));
    let batch = |round: &str| {
        let mut batch = Batch::default();
        for i in 0..30 {
            batch = batch.event(
                &format!("{round}-m{i}"),
                &audit_event(&format!("{round}-{i}")),
            );
        }
        batch
    };
    assert!(failures(api.invoke(&batch("warm").sqs_event()).await).is_empty());
    let sent = std::time::Instant::now();
    assert!(failures(api.invoke(&batch("healthy").sqs_event()).await).is_empty());
    let healthy = sent.elapsed();

    // A NAT or proxy that forgot the flow while the instance was frozen.
    proxy.forget_flows();
    let sent = std::time::Instant::now();
    assert_eq!(
        failures(api.invoke(&batch("reset").sqs_event()).await),
        Vec::<String>::new()
    );
    let recovered = sent.elapsed();
    // What a liveness check before every batch would cost: one round trip.
    let client = db.client().await;
    let mut trips: Vec<Duration> = (0..50).map(|_| Duration::ZERO).collect();
    for trip in &mut trips {
        let sent = std::time::Instant::now();
        client.simple_query("").await.unwrap();
        *trip = sent.elapsed();
    }
    trips.sort();
    println!(
        "30-message batch: {healthy:?} on a live connection, {recovered:?} after a reset \
         (reconnect and retry); a liveness round trip: {:?} (median of 50)",
        trips[25]
    );
    assert!(
        function.output().contains("kept connection was dead"),
        "{}",
        function.output()
    );

    // A backend killed between invocations (failover, idle timeout).
    db.client()
        .await
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .await
        .unwrap();
    assert_eq!(
        failures(api.invoke(&batch("killed").sqs_event()).await),
        Vec::<String>::new()
    );
    assert_eq!(db.count("audit.audit_events").await, 120);
}

#[tokio::test]
async fn a_black_holed_database_never_outlasts_the_deadline() {
    let db = TestDb::new().await;
    let (proxy, via_proxy) = db.behind_proxy().await;
    let batch = |round: &str| {
        Batch::default()
            .event(&format!("{round}-1"), &audit_event(&format!("{round}-a")))
            .event(&format!("{round}-2"), &billing_event(&format!("{round}-b")))
    };
    let ids = |round: &str| vec![format!("{round}-1"), format!("{round}-2")];

    // Silent at start: start-up still finishes, within its bound.
    proxy.black_hole();
    let api = RuntimeApi::start().await;
    let started = std::time::Instant::now();
    let mut function = Function::spawn(&api, &env(&via_proxy));
    let deadline = Duration::from_secs(3);
    let answered = api
        .invoke_within(&batch("cold").sqs_event(), deadline)
        .await;
    let cold = started.elapsed();
    assert_eq!(failures(answered), ids("cold"));
    let init = api.first_next().unwrap() - started;
    println!(
        "black hole at start: first /next after {init:?}; first batch answered {cold:?} after spawn"
    );
    assert!(init < Duration::from_secs(6), "start-up took {init:?}");

    // Silent mid-life, on a connection that was working.
    proxy.heal();
    assert!(failures(api.invoke(&batch("warm").sqs_event()).await).is_empty());
    proxy.black_hole();
    let sent = std::time::Instant::now();
    let answered = api
        .invoke_within(&batch("hole").sqs_event(), deadline)
        .await;
    let took = sent.elapsed();
    println!("black hole: a batch with a {deadline:?} deadline answered in {took:?}");
    assert_eq!(failures(answered), ids("hole"));
    assert!(took < deadline, "answered after its deadline: {took:?}");

    proxy.heal();
    assert!(failures(api.invoke(&batch("healed").sqs_event()).await).is_empty());
    assert_eq!(db.count("audit.audit_events").await, 4);
    assert!(function.is_running(), "{}", function.output());
}

#[tokio::test]
async fn a_message_at_the_sqs_size_limit_and_a_ten_thousand_message_batch() {
    let db = TestDb::new().await;
    let api = RuntimeApi::start().await;
    let _function = Function::spawn(&api, &env(&db.connection_string()));

    // SQS's limit is 256 KiB per message body: pad the event to just under it.
    let mut big = audit_event("big");
    let empty = crate::support::events::encrypt(&big).len();
    let room = (256 * 1024 - empty) / 4 * 3 - 64;
    big["details"]["padding"] = json!("x".repeat(room));
    let body = crate::support::events::encrypt(&big);
    assert!(
        body.len() <= 256 * 1024 && body.len() > 255 * 1024,
        "{}",
        body.len()
    );

    let mut batch = Batch::default().raw("m-big", body);
    for i in 0..10_000 {
        batch = batch.event(&format!("m{i}"), &audit_event(&format!("e{i}")));
    }
    assert!(failures(api.invoke(&batch.sqs_event()).await).is_empty());
    assert_eq!(db.count("audit.audit_events").await, 10_001);
    let stored: i64 = db
        .client()
        .await
        .query_one(
            "SELECT length(details->>'padding') FROM audit.audit_events WHERE event_id = 'big'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i32>(0)
        .into();
    assert_eq!(stored as usize, room);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_write_overlapping_batches_at_once() {
    let db = TestDb::new().await;
    let totals = crate::pooler::overlapping_rounds(&db, 4, db.connection_string()).await;
    println!(
        "4 instances, direct: {} messages, {} events stored once, {} duplicates, {:.2} s",
        totals.messages,
        totals.events,
        totals.duplicates,
        totals.elapsed.as_secs_f64()
    );
    assert!(totals.duplicates > 0 && totals.events > 0);
}

/// The ledger: every message answered as stored is in the database; the
/// failed ones are stored by a replay of the batch, with nothing twice.
async fn replay_completes(
    api: &RuntimeApi,
    db: &TestDb,
    batch: &Batch,
    failed: &[String],
    ids: &[String],
) {
    let stored = db.audit_event_ids().await;
    for ((message, _), id) in batch.0.iter().zip(ids) {
        if !failed.contains(message) {
            assert!(
                stored.contains(id),
                "{message} answered stored, {id} not in the database"
            );
        }
    }
    assert!(failures(api.invoke(&batch.sqs_event()).await).is_empty());
    let mut all = db.audit_event_ids().await;
    let before = all.len();
    all.dedup();
    assert_eq!(all.len(), before);
    for id in ids {
        assert!(all.contains(id), "{id} missing after the replay");
    }
}

#[tokio::test]
async fn database_down_at_start_then_up_and_a_backend_killed_mid_write() {
    let db = TestDb::new().await;
    let (proxy, via_proxy) = db.behind_proxy().await;
    proxy.cut();
    let api = RuntimeApi::start().await;
    let mut function = Function::spawn(&api, &env(&via_proxy));
    let make = |round: &str, n: usize| {
        let ids: Vec<String> = (0..n).map(|i| format!("{round}-{i}")).collect();
        let batch = ids.iter().enumerate().fold(Batch::default(), |b, (i, id)| {
            b.event(&format!("{round}-m{i}"), &audit_event(id))
        });
        (batch, ids)
    };
    // Down at start: the instance starts, and fails its batches...
    let (batch, ids) = make("down", 5);
    let failed = failures(api.invoke(&batch.sqs_event()).await);
    assert_eq!(failed.len(), 5);
    assert!(api.init_error().is_none());
    // ...until the database is back, without a restart.
    proxy.restore();
    replay_completes(&api, &db, &batch, &failed, &ids).await;

    // A backend killed while it writes: a trigger holds the write open.
    db.client()
        .await
        .batch_execute(
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.event_id = 'kill-3' THEN PERFORM pg_sleep(2); END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER slow BEFORE INSERT ON audit.audit_events
                 FOR EACH ROW EXECUTE FUNCTION slow();",
        )
        .await
        .unwrap();
    let (batch, ids) = make("kill", 20);
    let event = batch.sqs_event();
    let invocation = {
        let api = &api;
        async move { failures(api.invoke(&event).await) }
    };
    let killer = async {
        let admin = db.client().await;
        loop {
            let killed: i64 = admin
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_backend_pid()
                       AND wait_event = 'PgSleep'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if killed > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (failed, ()) = tokio::join!(invocation, killer);
    println!(
        "backend killed mid-write: {} of 20 reported failed (the retry on a new connection may store them all)",
        failed.len()
    );
    replay_completes(&api, &db, &batch, &failed, &ids).await;
    assert!(function.is_running(), "{}", function.output());
}

#[tokio::test]
async fn a_server_restarted_between_invocations_costs_nothing() {
    use crate::support::local::PASSWORD;
    // A cluster of its own, to stop and start (whatever source the rest use).
    let server = std::thread::spawn(|| server::own_cluster(Default::default()))
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("this test needs PostgreSQL's server binaries: {e}"));
    let mut client = crate::support::connect(&server.socket_config()).await;
    event_recorder::schema::migrate(&mut client).await.unwrap();
    drop(client);
    let conn = format!(
        "host=127.0.0.1 port={} user=postgres password={PASSWORD} dbname=postgres",
        server.port()
    );
    let api = RuntimeApi::start().await;
    let function = Function::spawn(&api, &env(&conn));
    let batch = |round: &str| {
        (0..10).fold(Batch::default(), |b, i| {
            b.event(
                &format!("{round}-m{i}"),
                &audit_event(&format!("{round}-{i}")),
            )
        })
    };
    assert!(failures(api.invoke(&batch("before").sqs_event()).await).is_empty());

    let server = std::thread::spawn(move || {
        let mut server = server;
        server.pause();
        server.resume().map(|()| server)
    })
    .join()
    .unwrap()
    .unwrap();
    assert_eq!(
        failures(api.invoke(&batch("after").sqs_event()).await),
        Vec::<String>::new()
    );
    let client = crate::support::connect(&server.socket_config()).await;
    let count: i64 = client
        .query_one("SELECT count(*) FROM audit.audit_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 20, "{}", function.output());
}
