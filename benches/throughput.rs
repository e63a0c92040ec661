//! Storage throughput on a local PostgreSQL with default durability:
//! batches of 10, 100, 1,000 and 10,000 valid events (15% billing, 5% fraud),
//! each size with three duplicate mixes: none, 1% (events stored by an
//! earlier batch), and 100% (an earlier batch delivered again).
//!
//! Run: `cargo bench --bench throughput`. For each batch size and mix it
//! prints, per way of writing: events per second, that as a share of binary
//! `COPY`, and what the PostgreSQL server spent per event: the backend's CPU
//! time (of the backend processes serving the bench database, read from
//! /proc before and after each batch: the server runs on this machine) and
//! WAL bytes (`pg_current_wal_insert_lsn()` before and after).
//! The CPU time in the main table is the scheduler's (`/proc/<pid>/schedstat`,
//! nanoseconds); utime + stime count 10 ms ticks, too coarse for batches of a
//! few ms (the same code measured 8 and 12 µs per event in two ways of one
//! run), and follow in a second table.
//!
//! The ways: `Store::insert` directly and through PgBouncer in transaction
//! mode; `Store::insert_statement`, the statement alone (the store before
//! its `COPY` path), the same two ways; and the limit they are measured
//! against: the same number of rows, all new, loaded by binary `COPY` (one
//! transaction per batch, the tables and the key order the store uses, no
//! conflict check, nothing returned).
//! The full path (decrypt, parse, route, store) is measured for the mix
//! without duplicates. The ways take turns batch by batch, so a busy machine
//! slows them alike; each rate is the batch size over the median batch time,
//! so one stall does not swing it. CPU and WAL are totals over all batches
//! divided by all events (a duplicate counts as an event).
//!
//! Every way writes the same tables, each with event IDs of its own
//! (`bench-<way>…`); `COPY`'s sort last, so its new index entries go to the
//! rightmost leaf pages, which PostgreSQL's B-tree fills fastest: if
//! anything, the limit is flattered. The store's column from 500 events is
//! its `COPY` path (`store::COPY_FROM`): with duplicates, after the first
//! batch's clash, the look-up of the batch's keys and a `COPY` of the rest.
//!
//! Knobs: `EVENT_RECORDER_BENCH_SIZES` (comma-separated batch sizes, default
//! `10,100,1000,10000`), `EVENT_RECORDER_BENCH_MIXES` (`0`, `1`, `100`:
//! percent of duplicates, default all three), `EVENT_RECORDER_BENCH_SCALE`
//! (multiplies the number of batches, default 1).
//!
//! Named prepared statements (dropped for pooler safety) measured within the
//! noise of the unnamed ones at every batch size; the comparison is in this
//! file's history.
//!
//! Why the statement stays below `COPY` at 1,000 rows and more (server log
//! timings, audit table alone): `ON CONFLICT DO NOTHING` inserts each row
//! speculatively (a unique probe first, a confirmation record after), where
//! `COPY` inserts in page-sized batches; the insert alone takes longer than
//! the whole `COPY`. The statement's parameters arrive in one message that
//! the server reads whole before it starts, where `COPY` works while rows
//! stream in; and `RETURNING` sends every new key back (about a tenth at
//! 10,000 rows).

use std::fs;
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

/// A way of writing a batch.
#[derive(Clone, Copy, PartialEq)]
enum Way {
    /// `Store::insert` on a direct connection.
    Direct,
    /// `Store::insert` through PgBouncer (transaction mode).
    Bounced,
    /// `Store::insert_statement` (the statement alone, as before the `COPY`
    /// path) on a direct connection.
    StatementDirect,
    /// The same through PgBouncer.
    StatementBounced,
    /// Binary `COPY` of as many new rows, directly: the limit. Last.
    Copy,
}

const WAYS: [(Way, &str); 5] = [
    (Way::Direct, "store direct"),
    (Way::Bounced, "store via PgBouncer"),
    (Way::StatementDirect, "statement direct"),
    (Way::StatementBounced, "statement via PgBouncer"),
    (Way::Copy, "COPY direct"),
];

/// Share of duplicates in a batch.
#[derive(Clone, Copy, PartialEq)]
enum Mix {
    None,
    /// One event in a hundred was stored by an earlier batch.
    OnePercent,
    /// The first batch delivered again, whole.
    All,
}

impl Mix {
    fn name(self) -> &'static str {
        match self {
            Mix::None => "0%",
            Mix::OnePercent => "1%",
            Mix::All => "100%",
        }
    }

    /// The event numbers of a batch of `size` in `round`: position `g`
    /// overall holds event `g` unless it is a duplicate.
    fn numbers(self, size: usize, round: usize) -> Vec<usize> {
        (0..size)
            .map(|j| {
                let g = round * size + j;
                match self {
                    Mix::None => g,
                    // An event of an earlier batch, itself not a duplicate
                    // (its position is 98 modulo 100).
                    Mix::OnePercent if g % 100 == 99 => g.checked_sub(size + 1).unwrap_or(g),
                    Mix::OnePercent => g,
                    Mix::All if round > 0 => j,
                    Mix::All => g,
                }
            })
            .collect()
    }

    /// Events of a batch that are duplicates, as the store must report them.
    fn duplicates(self, numbers: &[usize], round: usize, size: usize) -> usize {
        numbers
            .iter()
            .enumerate()
            .filter(|(j, n)| **n != round * size + j)
            .count()
    }
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|s| s.trim().parse().unwrap_or_else(|_| panic!("{name}: {v}")))
            .collect(),
        _ => default.to_vec(),
    }
}

/// What one way spent over all batches of a case.
#[derive(Default)]
struct Spent {
    times: Vec<Duration>,
    cpu_ticks: u64,
    cpu_ns: u64,
    wal_bytes: i64,
    events: usize,
}

impl Spent {
    fn rate(&mut self, size: usize) -> f64 {
        self.times.sort();
        size as f64 / self.times[self.times.len() / 2].as_secs_f64()
    }

    /// From utime + stime (clock ticks of 10 ms: a batch's share is
    /// sampled, so short batches come out uneven).
    fn ticks_us_per_event(&self) -> f64 {
        self.cpu_ticks as f64 / clock_ticks() * 1e6 / self.events as f64
    }

    /// From the scheduler's run time (nanoseconds, /proc/<pid>/schedstat).
    fn cpu_us_per_event(&self) -> f64 {
        self.cpu_ns as f64 / 1e3 / self.events as f64
    }

    fn wal_per_event(&self) -> f64 {
        self.wal_bytes as f64 / self.events as f64
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// utime + stime of a process, in clock ticks (0 once it is gone).
fn cpu_ticks(pid: i32) -> u64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name, which ends with the last ')': state is
    // field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Time a process has run on a CPU, in nanoseconds (0 once it is gone).
fn run_ns(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The server's counters for the backends of `db`: WAL insert position and
/// each backend's CPU ticks. Asked on the admin connection (another database).
struct Counters {
    wal: i64,
    cpu: Vec<(i32, u64, u64)>,
}

async fn counters(admin: &Client, db: &str) -> Counters {
    let row = admin
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint,
                    coalesce(array_agg(pid), '{}')
             FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'",
            &[&db],
        )
        .await
        .unwrap();
    let pids: Vec<i32> = row.get(1);
    Counters {
        wal: row.get(0),
        cpu: pids
            .into_iter()
            .map(|p| (p, cpu_ticks(p), run_ns(p)))
            .collect(),
    }
}

impl Counters {
    /// CPU ticks, CPU nanoseconds and WAL bytes since `self`, for the
    /// backends seen then.
    fn since(&self, admin_after: &Counters) -> (u64, u64, i64) {
        let ticks = self
            .cpu
            .iter()
            .map(|(pid, before, _)| cpu_ticks(*pid).saturating_sub(*before))
            .sum();
        let ns = self
            .cpu
            .iter()
            .map(|(pid, _, before)| run_ns(*pid).saturating_sub(*before))
            .sum();
        (ticks, ns, admin_after.wal - self.wal)
    }
}

struct Case {
    size: usize,
    mix: Mix,
    full: Option<f64>,
    rates: Vec<f64>,
    cpu: Vec<f64>,
    ticks: Vec<f64>,
    wal: Vec<f64>,
}

async fn run(admin: Config, bouncer: &pgbouncer::PgBouncer) {
    let client = connect(&admin).await;
    let sizes = env_list("EVENT_RECORDER_BENCH_SIZES", &[10, 100, 1_000, 10_000]);
    let mixes: Vec<Mix> = env_list("EVENT_RECORDER_BENCH_MIXES", &[0, 1, 100])
        .into_iter()
        .map(|m| match m {
            0 => Mix::None,
            1 => Mix::OnePercent,
            100 => Mix::All,
            _ => panic!("EVENT_RECORDER_BENCH_MIXES: 0, 1 or 100"),
        })
        .collect();
    let scale: f64 = std::env::var("EVENT_RECORDER_BENCH_SCALE")
        .ok()
        .map(|s| s.parse().expect("EVENT_RECORDER_BENCH_SCALE"))
        .unwrap_or(1.0);
    let recorder = Recorder::new(key());
    let mut cases = Vec::new();
    for &size in &sizes {
        let batches = match size {
            0..=10 => 1_000,
            11..=100 => 300,
            101..=1_000 => 100,
            _ => 50,
        };
        let batches = ((batches as f64 * scale) as usize).max(3);
        for &mix in &mixes {
            cases.push(case(&client, &admin, bouncer, &recorder, size, batches, mix).await);
        }
    }

    println!();
    println!("events/s (share of COPY) | backend CPU µs/event | WAL bytes/event");
    print!("{:>6} | {:>4}", "batch", "dups");
    for (_, name) in WAYS {
        print!(" | {name:^34}");
    }
    println!(" | full path");
    for c in &cases {
        let copy = c.rates[WAYS.len() - 1];
        print!("{:>6} | {:>4}", c.size, c.mix.name());
        for w in 0..WAYS.len() {
            print!(
                " | {:>7.0} ({:>5.1}%) {:>6.1} µs {:>6.0} B",
                c.rates[w],
                c.rates[w] / copy * 100.0,
                c.cpu[w],
                c.wal[w]
            );
        }
        match c.full {
            Some(f) => println!(" | {f:.0} ({:.1}%)", f / copy * 100.0),
            None => println!(" | -"),
        }
    }
    println!();
    println!("backend CPU µs/event from utime + stime (10 ms ticks), same order of ways");
    for c in &cases {
        print!("{:>6} | {:>4}", c.size, c.mix.name());
        for t in &c.ticks {
            print!(" | {t:>6.1}");
        }
        println!();
    }
}

async fn case(
    client: &Client,
    admin: &Config,
    bouncer: &pgbouncer::PgBouncer,
    recorder: &Recorder,
    size: usize,
    batches: usize,
    mix: Mix,
) -> Case {
    let db = format!("bench_{size}_{}", mix.name().trim_end_matches('%'));
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
        Store::new(connect(&config).await),
        Store::new(connect(&bouncer.config(&db)).await),
    ];
    let mut copy_client = connect(&config).await;
    let mut full_path_store = Store::new(connect(&config).await);

    let mut full = Vec::with_capacity(batches);
    let mut spent: Vec<Spent> = WAYS.iter().map(|_| Spent::default()).collect();
    // Records of every event number a way has used, kept for replays.
    let event_of = |way: usize, n: usize| {
        let text = mixed_event(&format!("bench-{}", n + (way + 1) * 1_000_000_000), n).to_string();
        recorder.prepare(&key().encrypt(text.as_bytes())).unwrap()
    };
    let mut next_full = 0usize;
    for round in 0..batches {
        if mix == Mix::None {
            let mut batch = Batch::default();
            for _ in 0..size {
                let n = next_full;
                let event = mixed_event(&format!("bench-full-{n}"), n);
                batch.0.push((format!("m{n}"), encrypt(&event)));
                next_full += 1;
            }
            let started = Instant::now();
            let report = recorder
                .record_batch(&mut full_path_store, &batch.messages())
                .await;
            full.push(started.elapsed());
            assert_eq!((report.failed.len(), report.stored), (0, size));
        }
        let numbers = mix.numbers(size, round);
        let duplicates = mix.duplicates(&numbers, round, size);
        for turn in 0..WAYS.len() {
            let w = (round + turn) % WAYS.len();
            let (way, _) = WAYS[w];
            // COPY always loads new rows: its event numbers are the
            // positions themselves.
            let records: Vec<Record> = match way {
                Way::Copy => (0..size).map(|j| event_of(w, round * size + j)).collect(),
                _ => numbers.iter().map(|&n| event_of(w, n)).collect(),
            };
            let refs: Vec<&Record> = records.iter().collect();
            let before = counters(client, &db).await;
            let started = Instant::now();
            match way {
                Way::Copy => copy(&mut copy_client, &refs).await.unwrap(),
                _ => {
                    let store = &mut stores[w];
                    let mut inserted = match way {
                        Way::Direct | Way::Bounced => store.insert(&refs).await,
                        _ => store.insert_statement(&refs).await,
                    }
                    .unwrap();
                    let new = refs.iter().filter(|r| inserted.claim(r)).count();
                    assert_eq!(size - new, duplicates);
                }
            }
            let elapsed = started.elapsed();
            let after = counters(client, &db).await;
            let (ticks, ns, wal) = before.since(&after);
            let s = &mut spent[w];
            s.times.push(elapsed);
            s.cpu_ticks += ticks;
            s.cpu_ns += ns;
            s.wal_bytes += wal;
            s.events += size;
        }
    }
    let full = (!full.is_empty()).then(|| {
        full.sort();
        size as f64 / full[full.len() / 2].as_secs_f64()
    });
    let rates: Vec<f64> = spent.iter_mut().map(|s| s.rate(size)).collect();
    let c = Case {
        size,
        mix,
        full,
        cpu: spent.iter().map(Spent::cpu_us_per_event).collect(),
        ticks: spent.iter().map(Spent::ticks_us_per_event).collect(),
        wal: spent.iter().map(Spent::wal_per_event).collect(),
        rates,
    };
    print!("{size:>6} × {batches:>4}, {:>4} duplicates:", mix.name());
    for (w, (_, name)) in WAYS.iter().enumerate() {
        print!(" {name} {:.0}/s;", c.rates[w]);
    }
    println!();
    c
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
