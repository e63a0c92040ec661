//! The S3 functions' cores on a local PostgreSQL with default durability:
//! bulk import (JSON lines streamed from a file on disk) in lines per
//! second and its peak memory, and the fraud-report upload in CSV rows per
//! second (parse alone, and parse plus store).
//!
//! Run: `cargo bench --bench import`.

use std::io::Write;
use std::time::Instant;

use event_recorder::functions::fraud_csv::{self, rows, tags::UploadTags};
use event_recorder::functions::s3_import::{self, Rejects};
use event_recorder::{Store, schema};
use event_recorder_test_support::{events, local};
use events::mixed_event;

const LINES: usize = 200_000;
const CSV_ROWS: usize = 100_000;

fn main() {
    let server = local::LocalServer::start(local::Options {
        durable: true,
        ..Default::default()
    })
    .expect("local PostgreSQL");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(server.config()));
}

async fn database(admin: &tokio_postgres::Config, name: &str) -> Store {
    let (client, conn) = admin.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let mut config = admin.clone();
    config.dbname(name);
    let (mut client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    schema::migrate(&mut client).await.unwrap();
    Store::new(client)
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
}

async fn run(admin: tokio_postgres::Config) {
    // The file is written to disk, never held whole: the peak below is the import's.
    let mut file = tempfile::NamedTempFile::new().unwrap();
    {
        let mut out = std::io::BufWriter::new(file.as_file_mut());
        for n in 0..LINES {
            let event = mixed_event(&format!("import-{n}"), n);
            writeln!(out, "{}", serde_json::json!({ "document": event })).unwrap();
        }
    }
    let size_mib = file.as_file().metadata().unwrap().len() / (1024 * 1024);
    let before = peak_rss_mib();

    let mut store = database(&admin, "bench_import").await;
    let reader = tokio::io::BufReader::new(tokio::fs::File::open(file.path()).await.unwrap());
    let mut rejects = Rejects::new().unwrap();
    let started = Instant::now();
    let report = s3_import::import(&mut store, reader, &mut rejects)
        .await
        .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(report.stored as usize, LINES);
    println!(
        "import: {LINES} lines ({size_mib} MiB) in {elapsed:.2} s = {:.0} lines/s; peak RSS {} MiB (before: {before} MiB)",
        LINES as f64 / elapsed,
        peak_rss_mib()
    );

    let mut csv = String::from(
        "timestamp,idp_event_id,fid_code,contra_indicators,contra_score,request_id,client_ip_address,pid\n",
    );
    for n in 0..CSV_ROWS {
        csv.push_str(&format!(
            "2019-08-01T10:00:{:02}.1110000Z,ev{n},F{},\"A0{}, B0{}\",{},req{n},10.0.0.{},pid{n}\n",
            n % 60,
            n % 7,
            n % 5,
            n % 3,
            n % 11,
            n % 250
        ));
    }
    let tags =
        UploadTags::from_tags([("idp", "https://idp.example"), ("username", "bench")]).unwrap();
    let started = Instant::now();
    let parsed = rows::parse(csv.as_bytes(), &tags);
    let parse_only = started.elapsed().as_secs_f64();
    assert_eq!((parsed.rows.len(), parsed.failures.len()), (CSV_ROWS, 0));

    let mut store = database(&admin, "bench_csv").await;
    let started = Instant::now();
    let report = fraud_csv::store_file(&mut store, "bench.csv", csv.as_bytes(), &tags)
        .await
        .unwrap();
    let full = started.elapsed().as_secs_f64();
    assert!(report.passed);
    println!(
        "fraud upload: {CSV_ROWS} rows ({} KiB): parse {:.0} rows/s; parse and store {:.0} rows/s",
        csv.len() / 1024,
        CSV_ROWS as f64 / parse_only,
        CSV_ROWS as f64 / full
    );
}
