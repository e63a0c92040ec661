//! Storage throughput on a local PostgreSQL with default durability:
//! batches of 10, 100, 1,000 and 10,000 valid events (15% billing, 5% fraud).
//!
//! Run: `cargo bench --bench throughput`. Prints events per second for the
//! whole path (decrypt, parse, route, store) and for the store alone.

// Shared with the integration tests; the bench uses part of each.
#[allow(dead_code)]
#[path = "../tests/integration/support/events.rs"]
mod events;
#[allow(dead_code)]
#[path = "../tests/integration/support/local.rs"]
mod local;

use std::time::{Duration, Instant};

use event_recorder::route::Record;
use event_recorder::{Recorder, Store, schema};
use events::{Batch, audit_event, billing_event, encrypt, fraud_event, key};

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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(server.config()));
}

async fn run(admin: tokio_postgres::Config) {
    let (client, conn) = admin.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    println!("batch size | batches | full path events/s | store only events/s");
    let recorder = Recorder::new(key());
    let mut next = 0usize;
    for (size, batches) in [(10, 400), (100, 100), (1_000, 20), (10_000, 3)] {
        let db = format!("bench_{size}");
        client
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
        let mut config = admin.clone();
        config.dbname(&db);
        let mut migrate_client = config
            .connect(tokio_postgres::NoTls)
            .await
            .map(|(c, conn)| {
                tokio::spawn(conn);
                c
            })
            .unwrap();
        schema::migrate(&mut migrate_client).await.unwrap();
        let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let mut store = Store::new(client).await.unwrap();

        let mut full = Duration::ZERO;
        let mut store_only = Duration::ZERO;
        for _ in 0..batches {
            let mut batch = Batch::default();
            let mut records: Vec<Record> = Vec::with_capacity(size);
            for _ in 0..size {
                batch.0.push((format!("m{next}"), encrypt(&event(next))));
                // A second, distinct event of the same shape for the store-only run.
                let text = event(next + 1_000_000_000).to_string();
                records.push(recorder.prepare(&key().encrypt(text.as_bytes())).unwrap());
                next += 1;
            }
            let started = Instant::now();
            let report = recorder.record_batch(&mut store, &batch.messages()).await;
            full += started.elapsed();
            assert_eq!((report.failed.len(), report.stored), (0, size));

            let refs: Vec<&Record> = records.iter().collect();
            let started = Instant::now();
            store.insert(&refs).await.unwrap();
            store_only += started.elapsed();
        }
        let total = (size * batches) as f64;
        println!(
            "{size:>10} | {batches:>7} | {:>18.0} | {:>19.0}",
            total / full.as_secs_f64(),
            total / store_only.as_secs_f64()
        );
    }
}
