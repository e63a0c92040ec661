//! A database failover as an operator sees it: two real servers, a loopback
//! proxy standing for the writer endpoint's DNS name. The old writer turns
//! read-only (`default_transaction_read_only`, SQLSTATE 25006 for every
//! write) while the proxy sends new connections to the new writer; the
//! connection an instance kept still reaches the old one.

use std::io::Write as _;
use std::time::Instant;

use event_recorder::database::{Database, Failure, KeptConnection, Password, Settings};
use event_recorder::functions::fraud_csv::{self, tags::UploadTags};
use event_recorder::functions::s3_import::{self, Rejects};
use event_recorder::schema;
use serde_json::{Value, json};
use tokio_postgres::Config;

use crate::support::events::{Batch, KEY_B64, audit_event};
use crate::support::function::Function;
use crate::support::local::{LocalServer, Options};
use crate::support::proxy::Proxy;
use crate::support::runtime_api::{Outcome, RuntimeApi};
use crate::support::{connect, server, set_read_only};

/// The old writer, the new one, and the endpoint (a proxy) in front.
struct Failover {
    old: LocalServer,
    new: LocalServer,
    endpoint: Proxy,
}

impl Failover {
    /// Both servers with the schema; the endpoint on the old one.
    async fn start() -> Self {
        // Started off the runtime: starting a cluster blocks.
        let cluster = || std::thread::spawn(|| server::own_cluster(Options::default()).unwrap());
        let (old, new) = (cluster(), cluster());
        let (old, new) = (old.join().unwrap(), new.join().unwrap());
        for server in [&old, &new] {
            schema::migrate(&mut connect(&server.config()).await)
                .await
                .unwrap();
        }
        let endpoint = Proxy::start(("127.0.0.1".into(), old.port())).await;
        Self { old, new, endpoint }
    }

    /// The connection string through the endpoint, as the function gets it.
    fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres password={} dbname=postgres sslmode=disable",
            self.endpoint.port(),
            crate::support::local::PASSWORD
        )
    }

    fn settings(&self) -> Settings {
        Settings::parse(&self.connection_string()).unwrap()
    }

    /// The old writer takes no more writes, on open sessions too (at their
    /// next statement); new connections go to the new writer.
    async fn fail_over(&self) {
        set_read_only(&self.old.config(), true).await;
        self.endpoint
            .retarget(("127.0.0.1".into(), self.new.port()));
    }
}

async fn count(server: &Config, table: &str) -> i64 {
    connect(server)
        .await
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

fn env(db: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DB_CONNECTION_STRING", db.to_owned()),
        ("LOCAL_DATA_KEY", KEY_B64.to_owned()),
    ]
}

fn batch(round: &str, n: usize) -> Value {
    (0..n)
        .fold(Batch::default(), |batch, i| {
            batch.event(
                &format!("{round}-m{i}"),
                &audit_event(&format!("{round}-{i}")),
            )
        })
        .sqs_event()
}

/// The IDs in a partial batch response; panics on a function error.
fn failures(outcome: Outcome) -> Vec<String> {
    outcome.failures()
}

/// The summary line's reconnect counts of every invocation so far.
fn reconnects(function: &Function) -> Vec<(u64, u64)> {
    function
        .stdout()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "batch recorded")
        .map(|l| {
            (
                l["ReconnectsDead"].as_u64().unwrap(),
                l["ReconnectsReadOnly"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn after_a_failover_the_next_batch_is_stored_on_the_new_writer() {
    let failover = Failover::start().await;
    let api = RuntimeApi::start().await;
    let mut env = env(&failover.connection_string());
    env.push(("AWS_LAMBDA_LOG_FORMAT", "JSON".into()));
    let function = Function::spawn(&api, &env);
    assert!(failures(api.invoke(&batch("before", 20)).await).is_empty());

    failover.fail_over().await;
    let after = batch("after", 40);
    let sent = Instant::now();
    assert_eq!(
        failures(api.invoke(&after).await),
        Vec::<String>::new(),
        "{}",
        function.output()
    );
    println!("40-message batch across a failover: {:?}", sent.elapsed());
    // Redelivered: already there, stored once.
    assert!(failures(api.invoke(&after).await).is_empty());
    assert_eq!(
        count(&failover.old.config(), "audit.audit_events").await,
        20
    );
    assert_eq!(
        count(&failover.new.config(), "audit.audit_events").await,
        40
    );
    assert_eq!(reconnects(&function), [(0, 0), (0, 1), (0, 0)]);
    let output = function.output();
    assert!(output.contains("the server takes no writes"), "{output}");
    assert!(
        !output.contains("\"message\":\"failed\""),
        "a message stored on the retry was logged failed:\n{output}"
    );
    assert!(
        !output.contains("splitting"),
        "bisected on a read-only server:\n{output}"
    );
}

#[tokio::test]
async fn a_read_only_server_fails_every_message_at_once_naming_it() {
    let failover = Failover::start().await;
    set_read_only(&failover.old.config(), true).await;
    let api = RuntimeApi::start().await;
    let mut env = env(&failover.connection_string());
    env.push(("AWS_LAMBDA_LOG_FORMAT", "JSON".into()));
    let function = Function::spawn(&api, &env);
    let event = batch("ro", 40);
    let sent = Instant::now();
    let failed = failures(api.invoke(&event).await);
    println!(
        "40-message batch on a read-only server: {:?}",
        sent.elapsed()
    );
    assert_eq!(failed.len(), 40);
    assert_eq!(count(&failover.old.config(), "audit.audit_events").await, 0);
    // Tried twice, once per connection, never record by record.
    assert_eq!(reconnects(&function), [(0, 1)]);
    let output = function.output();
    assert!(!output.contains("splitting"), "{output}");
    let reasons: Vec<Value> = output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "failed")
        .collect();
    // One line per message: the first attempt's failures are not logged,
    // only the outcome.
    let mut ids: Vec<&str> = reasons
        .iter()
        .map(|l| l["message_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!((reasons.len(), ids.len()), (40, 40), "{output}");
    for line in &reasons {
        let error = line["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("(25006)") && error.contains("takes no writes"),
            "{line}"
        );
    }
}

/// The S3 import's and the fraud upload's work, run as their functions run
/// it: on a connection kept from before the failover.
#[tokio::test]
async fn the_s3_import_and_the_fraud_upload_reconnect_on_a_read_only_server() {
    let failover = Failover::start().await;
    let kept = KeptConnection::open(Database::new(failover.settings(), Password::Fixed).unwrap())
        .await
        .unwrap();
    failover.fail_over().await;

    let lines: String = (0..30)
        .map(|i| format!("{}\n", json!({ "document": audit_event(&format!("i{i}")) })))
        .collect();
    let imported = kept
        .run(async |store| {
            let mut rejects = Rejects::new().unwrap();
            s3_import::import(store, lines.as_bytes(), &mut rejects).await
        })
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(imported.stored, 30);
    assert_eq!(kept.take_reconnects().read_only, 1);
    assert_eq!(
        count(&failover.new.config(), "audit.audit_events").await,
        30
    );

    // The fraud upload, on another connection kept from before a failover
    // (back to the first server, which then turns read-only in turn).
    let back = Failover {
        old: failover.new,
        new: failover.old,
        endpoint: failover.endpoint,
    };
    set_read_only(&back.new.config(), false).await;
    let kept = KeptConnection::open(Database::new(back.settings(), Password::Fixed).unwrap())
        .await
        .unwrap();
    back.fail_over().await;
    let tags =
        UploadTags::from_tags([("idp", "https://idp.example"), ("username", "dave")]).unwrap();
    let mut csv = Vec::new();
    writeln!(
        csv,
        "timestamp,idp_event_id,fid_code,contra_indicators,contra_score,request_id,client_ip_address,pid\n\
         05/08/2019 11:54,ev1,F01,A01,1,req1,ip,pid1"
    )
    .unwrap();
    let outcome = kept
        .run(async |store| fraud_csv::store_file(store, "f.csv", &csv, &tags).await)
        .await;
    let report = match outcome {
        Ok(report) => report,
        Err(Failure::Work(e)) => panic!("{e}"),
        Err(Failure::Connect(e)) => panic!("{e}"),
    };
    assert!(report.passed, "{report:?}");
    assert_eq!(kept.take_reconnects().read_only, 1);
    assert_eq!(
        count(&back.new.config(), "idp_data.upload_sessions").await,
        1
    );
    assert_eq!(
        count(&back.old.config(), "idp_data.upload_sessions").await,
        0
    );
}
