//! Storage throughput on a local PostgreSQL with default durability:
//! batches of 10, 100, 1,000 and 10,000 valid events (15% billing, 5% fraud).
//!
//! Run: `cargo bench --bench throughput`. Prints events per second for the
//! whole path (decrypt, parse, route, store) and for the store alone, the
//! latter on a direct connection and through PgBouncer in transaction mode,
//! and the limit they are measured against: the same rows loaded by binary
//! `COPY` (one transaction per batch, the tables and the key order the store
//! uses, no conflict check, nothing returned). Each figure is then given as
//! a share of that `COPY`. The ways take turns batch by batch, so a busy
//! machine slows them alike, and each rate is the batch size over the median
//! batch time, so one stall does not swing it.
//!
//! Named prepared statements (dropped for pooler safety) measured within the
//! noise of the unnamed ones at every batch size; the comparison is in this
//! file's history.
//!
//! Why the store stays below `COPY` at 1,000 rows and more (server log
//! timings, audit table alone): `ON CONFLICT DO NOTHING` inserts each row
//! speculatively (a unique probe first, a confirmation record after), where
//! `COPY` inserts in page-sized batches; the insert alone takes longer than
//! the whole `COPY`. The statement's parameters arrive in one message that
//! the server reads whole before it starts, where `COPY` works while rows
//! stream in; and `RETURNING` sends every new key back (about a tenth at
//! 10,000 rows). Duplicates reported row by row, under concurrent writers,
//! need the first and the last; `COPY` could only serve as a fast path with
//! a fallback, and tokio-postgres runs `COPY` as a named prepared statement.

use std::pin::pin;
use std::time::{Duration, Instant};

use event_recorder::route::{ExtraRow, Record};
use event_recorder::{Recorder, Store, schema};
use event_recorder_test_support::{events, local, pgbouncer};
use events::{Batch, encrypt, key, mixed_event};
use serde_json::{Map, Value};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, ToSql, Type};
use tokio_postgres::{Client, Config, NoTls, Transaction};

fn event(n: usize) -> serde_json::Value {
    mixed_event(&format!("bench-{n}"), n)
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

/// The ways rows are written besides the full path: the store directly,
/// the store through PgBouncer, and binary `COPY` directly.
const WAYS: [&str; 3] = ["store direct", "store via PgBouncer", "COPY direct"];

async fn run(admin: Config, bouncer: &pgbouncer::PgBouncer) {
    let client = connect(&admin).await;
    println!(
        "batch size | batches | full path | {} | {} | {} (events/s)",
        WAYS[0], WAYS[1], WAYS[2]
    );
    let recorder = Recorder::new(key());
    let mut next = 0usize;
    let mut results = Vec::new();
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
            Store::new(connect(&config).await),
            Store::new(connect(&bouncer.config(&db)).await),
        ];
        let mut copy_client = connect(&config).await;
        let mut full_path_store = Store::new(connect(&config).await);

        let mut full = Vec::with_capacity(batches);
        let mut times: [Vec<Duration>; 3] = Default::default();
        for round in 0..batches {
            let mut batch = Batch::default();
            let mut records: [Vec<Record>; 3] = Default::default();
            for _ in 0..size {
                batch.0.push((format!("m{next}"), encrypt(&event(next))));
                // Distinct events of the same shape for each way.
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

            for turn in 0..WAYS.len() {
                let way = (round + turn) % WAYS.len();
                let refs: Vec<&Record> = records[way].iter().collect();
                let started = Instant::now();
                match way {
                    0 | 1 => {
                        let mut inserted = stores[way].insert(&refs).await.unwrap();
                        assert!(refs.iter().all(|r| inserted.claim(r)));
                    }
                    _ => copy(&mut copy_client, &refs).await.unwrap(),
                }
                times[way].push(started.elapsed());
            }
        }
        let rate = |times: &mut Vec<Duration>| {
            times.sort();
            size as f64 / times[times.len() / 2].as_secs_f64()
        };
        let full = rate(&mut full);
        let [direct, bounced, copied] = times.each_mut().map(rate);
        println!(
            "{size:>10} | {batches:>7} | {full:>9.0} | {direct:>12.0} | {bounced:>19.0} | {copied:>11.0}",
        );
        results.push((size, full, direct, bounced, copied));
    }
    println!();
    println!(
        "share of COPY (same rows, same tables, same batch): full path | store direct | store via PgBouncer"
    );
    for (size, full, direct, bounced, copied) in results {
        let share = |rate: f64| format!("{:.1}%", rate / copied * 100.0);
        println!(
            "{size:>10}: {:>9} | {:>12} | {:>19}",
            share(full),
            share(direct),
            share(bounced)
        );
    }
}

/// The rows `Store::insert` would write, by binary `COPY` in one
/// transaction and in the same key order.
async fn copy(client: &mut Client, records: &[&Record]) -> Result<(), tokio_postgres::Error> {
    let mut records = records.to_vec();
    records.sort_by(|a, b| {
        (&a.event.event_id, a.event.timestamp).cmp(&(&b.event.event_id, b.event.timestamp))
    });
    let details: Vec<Json<&Map<String, Value>>> =
        records.iter().map(|r| Json(&r.event.details)).collect();
    let tx = client.transaction().await?;
    let rows = records.iter().zip(&details).map(|(r, details)| {
        let e = &r.event;
        let row: Vec<&(dyn ToSql + Sync)> = vec![
            &e.event_id,
            &e.event_type,
            &e.timestamp,
            &e.originating_service,
            &e.session_id,
            details,
        ];
        row
    });
    copy_table(
        &tx,
        "audit.audit_events (event_id, event_type, time_stamp, originating_service, session_id, details)",
        &[Type::TEXT, Type::TEXT, Type::TIMESTAMP, Type::TEXT, Type::TEXT, Type::JSONB],
        rows,
    )
    .await?;
    let billing = records.iter().filter_map(|r| match &r.extra {
        Some(ExtraRow::Billing(b)) => {
            let e = &r.event;
            let row: Vec<&(dyn ToSql + Sync)> = vec![
                &e.event_id,
                &e.timestamp,
                &e.session_id,
                &b.hashed_persistent_id,
                &b.request_id,
                &b.idp_entity_id,
                &b.minimum_level_of_assurance,
                &b.preferred_level_of_assurance,
                &b.provided_level_of_assurance,
                &b.transaction_entity_id,
            ];
            Some(row)
        }
        _ => None,
    });
    copy_table(
        &tx,
        "billing.billing_events (event_id, time_stamp, session_id, hashed_persistent_id, request_id, \
         idp_entity_id, minimum_level_of_assurance, preferred_level_of_assurance, \
         provided_level_of_assurance, transaction_entity_id)",
        &[Type::TEXT, Type::TIMESTAMP, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT],
        billing,
    )
    .await?;
    let fraud = records.iter().filter_map(|r| match &r.extra {
        Some(ExtraRow::Fraud(f)) => {
            let e = &r.event;
            let row: Vec<&(dyn ToSql + Sync)> = vec![
                &e.event_id,
                &e.timestamp,
                &e.session_id,
                &f.hashed_persistent_id,
                &f.request_id,
                &f.entity_id,
                &f.fraud_event_id,
                &f.fraud_indicator,
                &f.transaction_entity_id,
            ];
            Some(row)
        }
        _ => None,
    });
    copy_table(
        &tx,
        "billing.fraud_events (event_id, time_stamp, session_id, hashed_persistent_id, request_id, \
         entity_id, fraud_event_id, fraud_indicator, transaction_entity_id)",
        &[
            Type::TEXT,
            Type::TIMESTAMP,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
        ],
        fraud,
    )
    .await?;
    tx.commit().await
}

/// One `COPY ... FROM STDIN (FORMAT binary)`; none for a table with no
/// rows, as the store sends no statement for one.
async fn copy_table<'a>(
    tx: &Transaction<'_>,
    table: &str,
    types: &[Type],
    rows: impl Iterator<Item = Vec<&'a (dyn ToSql + Sync)>>,
) -> Result<(), tokio_postgres::Error> {
    let mut rows = rows.peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let sink = tx
        .copy_in(&format!("COPY {table} FROM STDIN (FORMAT binary)"))
        .await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, types));
    for row in rows {
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    Ok(())
}
