//! What the SQS recorder costs per event, in the units AWS bills, measured on
//! the `bootstrap` binary behind the Runtime API emulator with a local
//! PostgreSQL (default durability), in batches of 10 (the template's
//! `BatchSize`):
//!
//! - log bytes and lines it writes per event, for each log format (Text,
//!   JSON) at the default level (INFO) and at DEBUG; and per batch whose
//!   messages all fail, or are all duplicates;
//! - per invocation: the function's CPU time (user + system, from /proc) and
//!   the wall time of the round trip through the emulator; and the process's
//!   peak memory (VmHWM) at the end.
//!
//! Message IDs, event IDs and request IDs have the length of real ones
//! (UUIDs), since they are most of a log line.
//!
//! Run: `cargo bench --bench cost`. Byte and line counts do not depend on
//! the build profile (`cargo test --bench cost` gives the same ones quickly);
//! CPU and wall times do. EVENT_RECORDER_BOOTSTRAP measures another binary.

use std::time::Instant;

use event_recorder::schema;
use event_recorder_test_support::{events, function, local, runtime_api};
use events::{Batch, KEY_B64, mixed_event};
use function::Function;
use runtime_api::{Outcome, RuntimeApi};
use serde_json::Value;

/// Messages per invocation (the template's default `BatchSize`).
const BATCH: usize = 10;
/// Invocations measured per configuration.
const INVOCATIONS: usize = 200;

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

/// A UUID-shaped identifier, unique per (kind, n).
fn uuid(kind: u32, n: usize) -> String {
    format!("{kind:08x}-5e1f-4c2a-9b7d-{n:012x}")
}

fn event(n: usize) -> Value {
    mixed_event(&uuid(0xe0e0, n), n)
}

/// Messages `first..first + BATCH`, each with its own event.
fn batch(first: usize) -> Batch {
    (first..first + BATCH).fold(Batch::default(), |b, n| {
        b.event(&uuid(0x3e55, n), &event(n))
    })
}

/// The same messages with an event that fails validation (no `timestamp`),
/// so each failure line carries a message ID, an event ID and the check.
fn failing_batch(first: usize) -> Batch {
    (first..first + BATCH).fold(Batch::default(), |b, n| {
        let mut bad = event(n);
        bad.as_object_mut().unwrap().remove("timestamp");
        b.event(&uuid(0xbad0, n), &bad)
    })
}

/// Clock ticks of CPU (user + system) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// Bytes and lines the function has written so far (stdout and stderr).
fn written(function: &Function) -> (usize, usize) {
    let all = function.output();
    (all.len(), all.lines().count())
}

async fn invoke_ok(api: &RuntimeApi, batch: &Batch, failed: usize) {
    let Outcome::Response(response) = api.invoke(&batch.sqs_event()).await else {
        panic!("function error")
    };
    assert_eq!(
        response["batchItemFailures"].as_array().map(Vec::len),
        Some(failed),
        "{response}"
    );
}

struct Measured {
    stored: (usize, usize),
    failed: (usize, usize),
    duplicate: (usize, usize),
    cpu_ms: f64,
    wall_ms: f64,
    peak_memory: String,
}

async fn measure(env: &[(&'static str, String)], first: usize) -> Measured {
    let api = RuntimeApi::start().await;
    let function = Function::spawn(&api, env);
    // Start-up lines and the first connection are not per event.
    invoke_ok(&api, &batch(first), 0).await;
    let next = first + BATCH;

    let (bytes, lines) = written(&function);
    let ticks = cpu_ticks(function.pid());
    let mut walls = Vec::with_capacity(INVOCATIONS);
    for i in 0..INVOCATIONS {
        let batch = batch(next + i * BATCH);
        let started = Instant::now();
        invoke_ok(&api, &batch, 0).await;
        walls.push(started.elapsed());
    }
    let cpu = (cpu_ticks(function.pid()) - ticks) as f64 / ticks_per_second();
    let (after_bytes, after_lines) = written(&function);
    let stored = (after_bytes - bytes, after_lines - lines);

    let failing = failing_batch(next);
    invoke_ok(&api, &failing, BATCH).await;
    let (failed_bytes, failed_lines) = written(&function);
    let failed = (failed_bytes - after_bytes, failed_lines - after_lines);

    invoke_ok(&api, &batch(next), 0).await;
    let (dup_bytes, dup_lines) = written(&function);
    let duplicate = (dup_bytes - failed_bytes, dup_lines - failed_lines);

    walls.sort();
    let status = std::fs::read_to_string(format!("/proc/{}/status", function.pid())).unwrap();
    let peak_memory = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    Measured {
        stored,
        failed,
        duplicate,
        cpu_ms: cpu * 1000.0 / INVOCATIONS as f64,
        wall_ms: walls[INVOCATIONS / 2].as_secs_f64() * 1000.0,
        peak_memory,
    }
}

async fn run(mut config: tokio_postgres::Config) {
    let (mut client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    schema::migrate(&mut client).await.unwrap();
    config.dbname("postgres");
    let database = format!(
        "host=127.0.0.1 port={} user=postgres password={} dbname=postgres",
        config.get_ports()[0],
        local::PASSWORD
    );
    println!("binary: {}", function::bootstrap_path().display());
    println!(
        "{INVOCATIONS} invocations of {BATCH} messages per configuration; \
         bytes and lines written per event stored, then per batch of {BATCH} \
         failed and of {BATCH} duplicate messages"
    );
    println!(
        "{:<5} {:<5} {:>9} {:>10} {:>13} {:>13} {:>11} {:>10}",
        "LOG", "LEVEL", "B/event", "lines/ev", "failed B", "duplicate B", "CPU ms/inv", "peak mem"
    );
    let configurations = [
        ("Text", "INFO"),
        ("Text", "DEBUG"),
        ("JSON", "INFO"),
        ("JSON", "DEBUG"),
    ];
    let per_configuration = (INVOCATIONS + 2) * BATCH;
    let mut walls = Vec::new();
    for (n, (format, level)) in configurations.into_iter().enumerate() {
        let env = [
            ("DB_CONNECTION_STRING", database.clone()),
            ("LOCAL_DATA_KEY", KEY_B64.to_owned()),
            ("AWS_LAMBDA_LOG_FORMAT", format.to_owned()),
            ("AWS_LAMBDA_LOG_LEVEL", level.to_owned()),
        ];
        let m = measure(&env, n * per_configuration).await;
        let events = (INVOCATIONS * BATCH) as f64;
        let per_event = m.stored.0 as f64 / events;
        println!(
            "{format:<5} {level:<5} {per_event:>9.1} {:>10.3} {:>13} {:>13} {:>11.2} {:>10}",
            m.stored.1 as f64 / events,
            format!("{} ({}L)", m.failed.0, m.failed.1),
            format!("{} ({}L)", m.duplicate.0, m.duplicate.1),
            m.cpu_ms,
            m.peak_memory,
        );
        walls.push(m.wall_ms);
    }
    walls.sort_by(f64::total_cmp);
    println!(
        "median wall time per invocation (emulator round trip): {:.2} ms to {:.2} ms",
        walls[0],
        walls[walls.len() - 1]
    );
}
