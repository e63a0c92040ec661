//! Storage throughput on a local PostgreSQL with default durability:
//! batches of 10, 100, 1,000 and 10,000 valid events (15% billing, 5% fraud).
//!
//! Run: `cargo bench --bench throughput`. Prints events per second for the
//! whole path (decrypt, parse, route, store) and for the store alone, the
//! latter on a direct connection and through PgBouncer in transaction mode.
//! The two take turns batch by batch, so a busy machine slows them alike,
//! and each rate is the batch size over the median batch time, so one stall
//! does not swing it.
//!
//! Named prepared statements (dropped for pooler safety) measured within the
//! noise of the unnamed ones at every batch size; the comparison is in this
//! file's history.

// Shared with the integration tests; the bench uses part of each.
#[allow(dead_code)]
#[path = "../tests/integration/support/cleanup.rs"]
mod cleanup;
#[allow(dead_code)]
#[path = "../tests/integration/support/events.rs"]
mod events;
#[allow(dead_code)]
#[path = "../tests/integration/support/local.rs"]
mod local;
#[allow(dead_code)]
#[path = "../tests/integration/support/pgbouncer.rs"]
mod pgbouncer;

use std::time::{Duration, Instant};

use event_recorder::route::Record;
use event_recorder::{Recorder, Store, schema};
use events::{Batch, audit_event, billing_event, encrypt, fraud_event, key};
use tokio_postgres::{Client, Config, NoTls};

fn event(n: usize) -> serde_json::Value {
    let id = format!("bench-{n}");
    match n % 20 {
        0..=2 => billing_event(&id),
        3 => fraud_event(&id),
        _ => audit_event(&id),
    }
}

fn main() {
    let server = local::LocalServer::start(local::Options {
        durable: true,
        ..Default::default()
    })
    .expect("local PostgreSQL");
    let bouncer = pgbouncer::PgBouncer::start(&server.config(), 2).expect("PgBouncer");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(server.config(), &bouncer));
}

async fn connect(config: &Config) -> Client {
    let (client, conn) = config.connect(NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// How the store-only runs reach the database.
const WAYS: [&str; 2] = ["direct", "through PgBouncer"];

async fn run(admin: Config, bouncer: &pgbouncer::PgBouncer) {
    let client = connect(&admin).await;
    println!(
        "batch size | batches | full path | store only: {} | {} (events/s)",
        WAYS[0], WAYS[1]
    );
    let recorder = Recorder::new(key());
    let mut next = 0usize;
    let mut ratios = Vec::new();
    for (size, batches) in [(10, 1_000), (100, 300), (1_000, 100), (10_000, 50)] {
        let db = format!("bench_{size}");
        client
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
        let mut config = admin.clone();
        config.dbname(&db);
        schema::migrate(&mut connect(&config).await).await.unwrap();
        let mut stores = [
            Store::new(connect(&config).await).await.unwrap(),
            Store::new(connect(&bouncer.config(&db)).await)
                .await
                .unwrap(),
        ];
        let mut full_path_store = Store::new(connect(&config).await).await.unwrap();

        let mut full = Vec::with_capacity(batches);
        let mut store_only: [Vec<Duration>; 2] = Default::default();
        for round in 0..batches {
            let mut batch = Batch::default();
            let mut records: [Vec<Record>; 2] = Default::default();
            for _ in 0..size {
                batch.0.push((format!("m{next}"), encrypt(&event(next))));
                // Distinct events of the same shape for each store-only way.
                for (way, records) in records.iter_mut().enumerate() {
                    let text = event(next + (way + 1) * 1_000_000_000).to_string();
                    records.push(recorder.prepare(&key().encrypt(text.as_bytes())).unwrap());
                }
                next += 1;
            }
            let started = Instant::now();
            let report = recorder
                .record_batch(&mut full_path_store, &batch.messages())
                .await;
            full.push(started.elapsed());
            assert_eq!((report.failed.len(), report.stored), (0, size));

            for turn in 0..2 {
                let way = (round + turn) % 2;
                let refs: Vec<&Record> = records[way].iter().collect();
                let started = Instant::now();
                stores[way].insert(&refs).await.unwrap();
                store_only[way].push(started.elapsed());
            }
        }
        let rate = |times: &mut Vec<Duration>| {
            times.sort();
            size as f64 / times[times.len() / 2].as_secs_f64()
        };
        let [direct, bounced] = store_only.each_mut().map(rate);
        println!(
            "{size:>10} | {batches:>7} | {:>9.0} | {direct:>19.0} | {bounced:>17.0}",
            rate(&mut full),
        );
        ratios.push((size, direct, bounced));
    }
    println!();
    for (size, direct, bounced) in ratios {
        println!(
            "{size:>10}: through PgBouncer {:+.1}% vs direct",
            (bounced / direct - 1.0) * 100.0
        );
    }
}
