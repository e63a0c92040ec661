//! The `bootstrap` binary as Lambda runs it: time from process start to its
//! first `invocation/next` request, and peak memory (VmHWM) over one
//! 10,000-message invocation. Local PostgreSQL, `LOCAL_DATA_KEY`.
//!
//! Run: `cargo bench --bench lambda` (set EVENT_RECORDER_BOOTSTRAP to measure
//! another build, such as the one in the Lambda zip).

// Shared with the integration tests; the bench uses part of each.
#[allow(dead_code)]
#[path = "../tests/integration/support/cleanup.rs"]
mod cleanup;
#[allow(dead_code)]
#[path = "../tests/integration/support/events.rs"]
mod events;
#[allow(dead_code)]
#[path = "../tests/integration/support/function.rs"]
mod function;
#[allow(dead_code)]
#[path = "../tests/integration/support/local.rs"]
mod local;
#[allow(dead_code)]
#[path = "../tests/integration/support/runtime_api.rs"]
mod runtime_api;

use std::time::Duration;

use event_recorder::schema;
use events::{Batch, KEY_B64, audit_event, billing_event, fraud_event};
use function::Function;
use runtime_api::{Outcome, RuntimeApi};

const STARTS: usize = 30;
const BATCH: usize = 10_000;

fn main() {
    let server = local::LocalServer::start(local::Options::default()).expect("local PostgreSQL");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(server.config()));
}

async fn run(mut config: tokio_postgres::Config) {
    let (mut client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    schema::migrate(&mut client).await.unwrap();
    config.dbname("postgres");
    let env = [
        (
            "DB_CONNECTION_STRING",
            format!(
                "host=127.0.0.1 port={} user=postgres password={} dbname=postgres",
                config.get_ports()[0],
                local::PASSWORD
            ),
        ),
        ("LOCAL_DATA_KEY", KEY_B64.to_owned()),
        ("AWS_LAMBDA_LOG_LEVEL", "warn".to_owned()),
    ];
    println!("binary: {}", function::bootstrap_path().display());

    let mut starts = Vec::with_capacity(STARTS);
    for _ in 0..STARTS {
        let api = RuntimeApi::start().await;
        let function = Function::spawn(&api, &env);
        let first = loop {
            if let Some(at) = api.first_next() {
                break at;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        starts.push(first.duration_since(function.spawned));
    }
    starts.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "start to first /next over {STARTS} starts: median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        ms(starts[STARTS / 2]),
        ms(starts[STARTS * 9 / 10]),
        ms(starts[STARTS - 1])
    );

    let api = RuntimeApi::start().await;
    let function = Function::spawn(&api, &env);
    let mut batch = Batch::default();
    for i in 0..BATCH {
        let id = format!("mem-{i}");
        let event = match i % 20 {
            0..=2 => billing_event(&id),
            3 => fraud_event(&id),
            _ => audit_event(&id),
        };
        batch = batch.event(&format!("m{i}"), &event);
    }
    let event = batch.sqs_event();
    let started = std::time::Instant::now();
    let Outcome::Response(response) = api.invoke(&event).await else {
        panic!("function error")
    };
    let took = started.elapsed();
    assert_eq!(
        response["batchItemFailures"].as_array().map(Vec::len),
        Some(0)
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", function.pid())).unwrap();
    let peak = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or("VmHWM: unknown");
    println!(
        "one {BATCH}-message invocation ({:.1} MB payload): {:.0} ms, peak memory {}",
        event.to_string().len() as f64 / 1e6,
        ms(took),
        peak.trim_start_matches("VmHWM:").trim()
    );
}
