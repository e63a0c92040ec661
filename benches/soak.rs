//! Chaos soak: the real `bootstrap` (the SQS recorder), several instances,
//! against two real PostgreSQL servers behind one fault-injecting loopback
//! proxy (the writer endpoint), for a while, under a seeded random schedule
//! of faults; then the stored rows are checked against what was sent and
//! acknowledged.
//!
//! A driver plays SQS: a queue of encrypted events (audit, billing, fraud),
//! each with a unique ID (and one in 200 undecryptable), handed out in batches of 1..=10 (or up
//! to `EVENT_RECORDER_SOAK_MAX_BATCH`, for the store's `COPY` and look-up paths) to the instances,
//! one invocation at a time per instance, each with a deadline. A delivery
//! not acknowledged (listed in `batchItemFailures`, a function error, no
//! answer by the deadline, its instance killed) becomes visible again after
//! the visibility timeout, up to `MAX_RECEIVES` receipts, then goes to the
//! dead-letter list with the reason. Batches are drawn out of order, and
//! some messages are delivered twice (in the same batch, or in another
//! while the first is in flight or after it was acknowledged).
//!
//! Faults, one at a time: flows forgotten (connection resets, idle or
//! during an invocation), latency on every chunk, black holes shorter and
//! longer than the deadline, the writer restarted, its backends terminated,
//! read-only failovers to the other server and back, and instances
//! SIGKILLed mid-invocation (restarted on a fresh sandbox, as Lambda does).
//!
//! The two servers stand for a writer and its standby: a failover turns the
//! old writer read-only, waits for (or ends) the transactions it had open,
//! copies its events to the new writer (the replication a real standby
//! would have had), and only then sends new connections to the new one.
//! So the final writer must hold every event the functions stored, once,
//! and the other server nothing it lacks (a write to a demoted server is a
//! lost write).
//!
//! Checked at the end, on both servers:
//! - every acknowledged event is stored, once, with the values sent (audit
//!   row, and the billing or fraud row for those kinds, and none other);
//! - no stored event was never sent; no event is on the other server only;
//! - every event is stored or dead-lettered with a reason;
//! - no invocation ran past its deadline (plus `DEADLINE_SLACK`).
//!
//! Run: `cargo bench --bench soak` (release) or `cargo test --bench soak`
//! (debug). `EVENT_RECORDER_SOAK_SECONDS` (default 180),
//! `EVENT_RECORDER_SOAK_SEED` (default from the clock; always printed),
//! `EVENT_RECORDER_SOAK_INSTANCES` (default 3), `EVENT_RECORDER_SOAK_MAX_BATCH`
//! (default 10), `EVENT_RECORDER_BOOTSTRAP`
//! (another binary). A seed replays the same fault schedule and the same
//! sequence of events; how many are sent, how they are batched and which
//! invocation a fault hits depend on timing, so two runs of one seed differ
//! in those details. Exits non-zero if an invariant fails.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use event_recorder::schema;
use event_recorder_test_support::events::{self, Batch, KEY_B64};
use event_recorder_test_support::function::Function;
use event_recorder_test_support::local::{LocalServer, Options, PASSWORD};
use event_recorder_test_support::proxy::Proxy;
use event_recorder_test_support::runtime_api::{Outcome, RuntimeApi};
use event_recorder_test_support::{connect, server, set_read_only};
use serde_json::Value;
use tokio_postgres::Config;

/// The deadline each invocation is given.
const DEADLINE: Duration = Duration::from_secs(3);
/// How far past its deadline an answer may come (the hop back to the driver).
const DEADLINE_SLACK: Duration = Duration::from_millis(300);
/// How long the driver waits for an answer before it gives the instance up.
const GIVE_UP: Duration = Duration::from_secs(8);
const VISIBILITY: Duration = Duration::from_secs(5);
const MAX_RECEIVES: u32 = 5;
/// The largest batch by default (SQS's default for a Lambda trigger);
/// `EVENT_RECORDER_SOAK_MAX_BATCH` sets another, up to 10,000.
const MAX_BATCH: usize = 10;

/// The largest batch of this run.
fn max_batch() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        env_number("EVENT_RECORDER_SOAK_MAX_BATCH", MAX_BATCH as u64).clamp(1, 10_000) as usize
    })
}

/// New messages are queued while fewer than this many wait.
fn backlog() -> usize {
    6 * max_batch()
}
/// After the chaos, how long the queue may take to empty.
const DRAIN: Duration = Duration::from_secs(120);
const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// splitmix64: small, seedable, enough for a schedule.
#[derive(Default)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// In `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Audit,
    Billing,
    Fraud,
}

#[derive(Clone, PartialEq, Eq)]
enum State {
    Waiting,
    Acked,
    Dead(String),
}

struct Message {
    message_id: String,
    event: Value,
    kind: Kind,
    /// Its body cannot be decrypted: every receipt fails, and it must end
    /// dead-lettered, never stored.
    poison: bool,
    body: String,
    receives: u32,
    visible_at: Instant,
    state: State,
    /// Some delivery of it was acknowledged (even one that came after it
    /// was dead-lettered): the function said it is stored.
    ever_acked: bool,
}

/// The queue and everything counted about deliveries.
#[derive(Default)]
struct Queue {
    /// The events' own stream, so the sequence of kinds and undecryptable
    /// bodies replays whatever the timing.
    contents: Rng,
    messages: Vec<Message>,
    /// Indices of messages still waiting, in the order they were queued.
    waiting: Vec<usize>,
    deliveries: u64,
    duplicate_deliveries: u64,
    invocations: u64,
    /// Invocations whose answer came later than deadline + slack, with the time.
    overruns: Vec<(String, Duration)>,
    longest: Duration,
    unanswered: u64,
    function_errors: u64,
    reported_failed: u64,
}

impl Queue {
    fn push(&mut self) {
        let n = self.messages.len();
        let event_id = format!("soak-{n:07}");
        let kind = match self.contents.below(10) {
            0..=5 => Kind::Audit,
            6..=8 => Kind::Billing,
            _ => Kind::Fraud,
        };
        let mut event = match kind {
            Kind::Audit => events::audit_event(&event_id),
            Kind::Billing => events::billing_event(&event_id),
            Kind::Fraud => events::fraud_event(&event_id),
        };
        // Each event its own timestamp, so the check covers that column.
        event["timestamp"] = (BASE_TIMESTAMP_MS + n as i64 * 1000).into();
        let mut body = events::encrypt(&event);
        let poison = self.contents.below(1000) < 5;
        if poison {
            // Still base64, but no longer whole AES blocks.
            body.truncate(body.len() - 8);
        }
        self.messages.push(Message {
            message_id: format!("msg-{n:07}"),
            poison,
            body,
            event,
            kind,
            receives: 0,
            visible_at: Instant::now(),
            state: State::Waiting,
            ever_acked: false,
        });
        self.waiting.push(n);
    }

    fn visible(&self) -> usize {
        let now = Instant::now();
        self.waiting
            .iter()
            .filter(|&&i| self.messages[i].visible_at <= now)
            .count()
    }

    /// Up to `max_batch()` visible messages, picked at random from the oldest
    /// few dozen (out of order), each receipt counted; sometimes one more
    /// copy of a message, in the batch or from elsewhere.
    fn receive(&mut self, rng: &mut Rng) -> Vec<usize> {
        let now = Instant::now();
        let size = 1 + rng.below(max_batch() as u64) as usize;
        let mut window: Vec<usize> = self
            .waiting
            .iter()
            .copied()
            .filter(|&i| self.messages[i].visible_at <= now)
            .take(4 * max_batch())
            .collect();
        let mut batch = Vec::with_capacity(size + 1);
        while batch.len() < size && !window.is_empty() {
            let pick = rng.below(window.len() as u64) as usize;
            batch.push(window.swap_remove(pick));
        }
        if batch.is_empty() {
            return batch;
        }
        if rng.chance(4) {
            // The same message twice in one batch.
            let again = batch[rng.below(batch.len() as u64) as usize];
            batch.push(again);
            self.duplicate_deliveries += 1;
        } else if rng.chance(5) && self.messages.len() > 1 {
            // A recent message again, in flight elsewhere or already
            // acknowledged: at-least-once delivery.
            let recent = self.messages.len().min(300) as u64;
            let i = self.messages.len() - 1 - rng.below(recent) as usize;
            if !matches!(self.messages[i].state, State::Dead(_)) && !batch.contains(&i) {
                batch.push(i);
                self.duplicate_deliveries += 1;
            }
        }
        for &i in &batch {
            let m = &mut self.messages[i];
            if m.state == State::Waiting {
                m.receives += 1;
                m.visible_at = now + VISIBILITY;
            }
        }
        self.deliveries += batch.len() as u64;
        batch
    }

    /// The answer to one delivery: the acknowledged messages are done; the
    /// others wait out their visibility timeout, or go to the dead-letter
    /// list once received `MAX_RECEIVES` times.
    fn settle(&mut self, batch: &[usize], acked: impl Fn(&str) -> bool, reason: &str) {
        for &i in batch {
            let m = &mut self.messages[i];
            if acked(&m.message_id) {
                m.ever_acked = true;
                if m.state == State::Waiting {
                    m.state = State::Acked;
                }
            } else if m.state == State::Waiting && m.receives >= MAX_RECEIVES {
                m.state = State::Dead(format!("{reason} ({} receipts)", m.receives));
            }
        }
        let messages = &self.messages;
        self.waiting
            .retain(|&i| messages[i].state == State::Waiting);
    }
}

#[derive(Default)]
struct Faults {
    counts: BTreeMap<&'static str, u64>,
    backends_terminated: u64,
}

/// What the instances, the fault schedule and the driver share.
struct Shared {
    queue: Mutex<Queue>,
    rng: Mutex<Rng>,
    faults: Mutex<Faults>,
    /// Per instance: kill it this long into its next invocation.
    kills: Vec<Mutex<Option<Duration>>>,
    in_flight: AtomicUsize,
    stop: AtomicBool,
    restarts: AtomicU64,
    env: Vec<(&'static str, String)>,
}

impl Shared {
    fn count(&self, kind: &'static str) {
        *self.faults.lock().unwrap().counts.entry(kind).or_default() += 1;
    }
}

/// A server and how to reach it directly (the soak's own connections skip
/// the proxy).
struct Db {
    server: Arc<Mutex<LocalServer>>,
    config: Config,
    port: u16,
}

fn main() {
    let seconds: u64 = env_number("EVENT_RECORDER_SOAK_SECONDS", 180);
    let instances: usize = env_number("EVENT_RECORDER_SOAK_INSTANCES", 3).max(2) as usize;
    let seed = match std::env::var("EVENT_RECORDER_SOAK_SEED") {
        Ok(s) => s.parse().expect("EVENT_RECORDER_SOAK_SEED is a u64"),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    println!(
        "chaos soak: seed {seed} (replay: EVENT_RECORDER_SOAK_SEED={seed}), {seconds} s, \
         {instances} instances, batches of 1 to {}, bootstrap {}",
        max_batch(),
        event_recorder_test_support::function::bootstrap_path().display()
    );
    let cluster = || std::thread::spawn(|| server::own_cluster(Options::default()).unwrap());
    let (a, b) = (cluster(), cluster());
    let servers = [a.join().unwrap(), b.join().unwrap()].map(|s| Db {
        config: s.config(),
        port: s.port(),
        server: Arc::new(Mutex::new(s)),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let passed = runtime.block_on(run(seed, Duration::from_secs(seconds), instances, &servers));
    drop(runtime);
    drop(servers);
    std::process::exit(if passed { 0 } else { 1 });
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} is a number")))
        .unwrap_or(default)
}

async fn run(seed: u64, duration: Duration, instances: usize, servers: &[Db; 2]) -> bool {
    for db in servers {
        schema::migrate(&mut connect(&db.config).await)
            .await
            .unwrap();
    }
    let proxy = Arc::new(Proxy::start(("127.0.0.1".into(), servers[0].port)).await);
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            contents: Rng(seed ^ 0xc0de_e7e7_0000_0000),
            ..Queue::default()
        }),
        // Separate streams: the schedule's draws do not depend on how many
        // batches the driver happened to draw.
        rng: Mutex::new(Rng(seed ^ 0x5eed_f00d_d41e_0000_u64)),
        faults: Mutex::new(Faults::default()),
        kills: (0..instances).map(|_| Mutex::new(None)).collect(),
        in_flight: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        restarts: AtomicU64::new(0),
        env: vec![
            (
                "DB_CONNECTION_STRING",
                format!(
                    "host=127.0.0.1 port={} user=postgres password={PASSWORD} dbname=postgres sslmode=disable",
                    proxy.port()
                ),
            ),
            ("LOCAL_DATA_KEY", KEY_B64.to_owned()),
            ("AWS_LAMBDA_LOG_LEVEL", "warn".to_owned()),
        ],
    });
    let started = Instant::now();
    let tasks: Vec<_> = (0..instances)
        .map(|n| tokio::spawn(instance(n, shared.clone())))
        .collect();
    let writer = Arc::new(AtomicUsize::new(0));
    let schedule = tokio::spawn(faults(
        Rng(seed),
        started + duration,
        shared.clone(),
        proxy.clone(),
        servers
            .iter()
            .map(|d| (d.server.clone(), d.config.clone(), d.port))
            .collect(),
        writer.clone(),
    ));

    // Keep a backlog queued until the time is up.
    let mut next_progress = Duration::from_secs(15);
    while started.elapsed() < duration {
        {
            let mut queue = shared.queue.lock().unwrap();
            while queue.visible() < backlog() {
                for _ in 0..backlog() / 2 {
                    queue.push();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() >= next_progress {
            next_progress += Duration::from_secs(15);
            progress(&shared, started);
        }
    }
    schedule.await.unwrap();
    let chaos = started.elapsed();
    // Everything healed; the queue empties (or what is left is reported).
    proxy.heal();
    proxy.restore();
    proxy.delay(Duration::ZERO);
    for kill in &shared.kills {
        *kill.lock().unwrap() = None;
    }
    println!("chaos over after {} s; draining the queue", chaos.as_secs());
    let drain_start = Instant::now();
    while drain_start.elapsed() < DRAIN && !shared.queue.lock().unwrap().waiting.is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shared.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let total = started.elapsed();
    report(
        seed,
        &shared,
        servers,
        writer.load(Ordering::Relaxed),
        chaos,
        total,
    )
    .await
}

fn progress(shared: &Shared, started: Instant) {
    let queue = shared.queue.lock().unwrap();
    let acked = queue
        .messages
        .iter()
        .filter(|m| m.state == State::Acked)
        .count();
    let faults: u64 = shared.faults.lock().unwrap().counts.values().sum();
    println!(
        "  {:>4} s: {} sent, {acked} acknowledged, {} invocations, {faults} faults",
        started.elapsed().as_secs(),
        queue.messages.len(),
        queue.invocations
    );
}

/// One instance: a sandbox (its own Runtime API) and the `bootstrap` in it,
/// invoked one batch at a time; replaced when killed or unresponsive.
async fn instance(n: usize, shared: Arc<Shared>) {
    'sandbox: while !shared.stop.load(Ordering::Relaxed) {
        let api = RuntimeApi::start().await;
        let mut function = Function::spawn(&api, &shared.env);
        // Invocations start once init is done, as Lambda's do.
        let init = Instant::now();
        while api.first_next().is_none() {
            if !function.is_running() || init.elapsed() > Duration::from_secs(30) {
                panic!("instance {n} did not start:\n{}", function.output());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        while !shared.stop.load(Ordering::Relaxed) {
            let batch = {
                let mut rng = shared.rng.lock().unwrap();
                shared.queue.lock().unwrap().receive(&mut rng)
            };
            if batch.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let payload = {
                let queue = shared.queue.lock().unwrap();
                Batch(
                    batch
                        .iter()
                        .map(|&i| {
                            let m = &queue.messages[i];
                            (m.message_id.clone(), m.body.clone())
                        })
                        .collect(),
                )
                .sqs_event()
            };
            let kill_after = shared.kills[n].lock().unwrap().take();
            shared.in_flight.fetch_add(1, Ordering::Relaxed);
            let sent = Instant::now();
            let answer = tokio::select! {
                answer = tokio::time::timeout(GIVE_UP, api.invoke_within(&payload, DEADLINE)) => Some(answer),
                _ = tokio::time::sleep(kill_after.unwrap_or(Duration::MAX)) => None,
            };
            let took = sent.elapsed();
            shared.in_flight.fetch_sub(1, Ordering::Relaxed);
            // Settled under the lock, nothing awaited while it is held.
            let replace = {
                let mut queue = shared.queue.lock().unwrap();
                queue.invocations += 1;
                let request = format!("instance {n}, invocation {}", queue.invocations);
                match answer {
                    None => {
                        // Its process is SIGKILLed when the sandbox is replaced.
                        shared.count("instance SIGKILL (mid-invocation)");
                        queue.settle(&batch, |_| false, "instance killed");
                        true
                    }
                    Some(Err(_)) => {
                        queue.unanswered += 1;
                        queue.overruns.push((format!("{request}: no answer"), took));
                        queue.settle(&batch, |_| false, "no answer by the deadline");
                        true
                    }
                    Some(Ok(answer)) => {
                        if kill_after.is_some() {
                            // It finished first: the next one is killed instead.
                            *shared.kills[n].lock().unwrap() = kill_after;
                        }
                        queue.longest = queue.longest.max(took);
                        if took > DEADLINE + DEADLINE_SLACK {
                            queue.overruns.push((request, took));
                        }
                        match answer {
                            Outcome::Response(body) => {
                                let failed: Vec<&str> = body["batchItemFailures"]
                                    .as_array()
                                    .map(|a| {
                                        a.iter()
                                            .filter_map(|f| f["itemIdentifier"].as_str())
                                            .collect()
                                    })
                                    .unwrap_or_default();
                                queue.reported_failed += failed.len() as u64;
                                let acked = body["batchItemFailures"].is_array();
                                queue.settle(
                                    &batch,
                                    |id| acked && !failed.contains(&id),
                                    "reported failed",
                                );
                            }
                            Outcome::Error(_) => {
                                queue.function_errors += 1;
                                queue.settle(&batch, |_| false, "function error");
                            }
                        }
                        false
                    }
                }
            };
            if replace {
                shared.restarts.fetch_add(1, Ordering::Relaxed);
                continue 'sandbox;
            }
        }
    }
}

/// The fault schedule: one fault at a time, kinds and timings drawn from
/// the seed alone.
async fn faults(
    mut rng: Rng,
    until: Instant,
    shared: Arc<Shared>,
    proxy: Arc<Proxy>,
    servers: Vec<(Arc<Mutex<LocalServer>>, Config, u16)>,
    writer: Arc<AtomicUsize>,
) {
    // Let every instance start first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while Instant::now() < until {
        tokio::time::sleep(rng.millis(300, 2500)).await;
        let w = writer.load(Ordering::Relaxed);
        match rng.below(100) {
            0..=14 => {
                proxy.forget_flows();
                shared.count(match shared.in_flight.load(Ordering::Relaxed) {
                    0 => "connection reset (idle)",
                    _ => "connection reset (during an invocation)",
                });
            }
            15..=26 => {
                let (delay, length) = (rng.millis(200, 1500), rng.millis(1000, 4000));
                proxy.delay(delay);
                tokio::time::sleep(length).await;
                proxy.delay(Duration::ZERO);
                shared.count("latency spike");
            }
            27..=36 => {
                let length = rng.millis(200, DEADLINE.as_millis() as u64 - 600);
                black_hole(&proxy, length).await;
                shared.count("black hole (shorter than the deadline)");
            }
            37..=42 => {
                let length = DEADLINE + rng.millis(500, 3000);
                black_hole(&proxy, length).await;
                shared.count("black hole (longer than the deadline)");
            }
            43..=48 => {
                let down = rng.millis(300, 2000);
                let server = servers[w].0.clone();
                let paused = server.clone();
                tokio::task::spawn_blocking(move || paused.lock().unwrap().pause())
                    .await
                    .unwrap();
                tokio::time::sleep(down).await;
                tokio::task::spawn_blocking(move || server.lock().unwrap().resume())
                    .await
                    .unwrap()
                    .expect("the writer restarts");
                shared.count("server restart");
            }
            49..=62 => {
                let admin = connect(&servers[w].1).await;
                let row = admin
                    .query_one(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
                         FROM pg_stat_activity
                         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                        &[],
                    )
                    .await
                    .unwrap();
                shared.faults.lock().unwrap().backends_terminated += row.get::<_, i64>(0) as u64;
                shared.count("backend kill");
            }
            63..=69 => {
                let to = 1 - w;
                fail_over(&servers[w].1, &servers[to].1, &proxy, servers[to].2).await;
                writer.store(to, Ordering::Relaxed);
                shared.count("read-only failover");
            }
            _ => {
                let n = rng.below(shared.kills.len() as u64) as usize;
                let after = rng.millis(0, DEADLINE.as_millis() as u64 - 700);
                // Counted when it happens: a later one may take its place.
                *shared.kills[n].lock().unwrap() = Some(after);
            }
        }
    }
}

async fn black_hole(proxy: &Proxy, length: Duration) {
    proxy.black_hole();
    tokio::time::sleep(length).await;
    proxy.heal();
}

/// The writer turns read-only; once the transactions it had open are over
/// (ended after a few seconds if need be), its events are copied to the
/// other server, which takes new connections from then on.
async fn fail_over(old: &Config, new: &Config, proxy: &Proxy, new_port: u16) {
    set_read_only(new, false).await;
    set_read_only(old, true).await;
    let admin = connect(old).await;
    let flipped: SystemTime = admin
        .query_one("SELECT clock_timestamp()::timestamptz", &[])
        .await
        .map(|r| r.get::<_, SystemTime>(0))
        .unwrap_or_else(|_| SystemTime::now());
    let open = "SELECT pid FROM pg_stat_activity
                WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
                  AND xact_start < $1";
    let waited = Instant::now();
    loop {
        let rows = admin.query(open, &[&flipped]).await.unwrap();
        if rows.is_empty() {
            break;
        }
        if waited.elapsed() > Duration::from_secs(3) {
            for row in rows {
                let pid: i32 = row.get(0);
                admin
                    .execute("SELECT pg_terminate_backend($1)", &[&pid])
                    .await
                    .unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let target = connect(new).await;
    for table in TABLES {
        let rows: String = admin
            .query_one(
                &format!("SELECT coalesce(json_agg(t), '[]')::text FROM {table} t"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        target
            .execute(
                &format!(
                    "INSERT INTO {table} SELECT * FROM json_populate_recordset(NULL::{table}, $1::text::json)
                     ON CONFLICT DO NOTHING"
                ),
                &[&rows],
            )
            .await
            .unwrap();
    }
    proxy.retarget(("127.0.0.1".into(), new_port));
}

const TABLES: [&str; 3] = [
    "audit.audit_events",
    "billing.billing_events",
    "billing.fraud_events",
];

/// One server's rows for an event, as the checks compare them.
#[derive(Default, Clone)]
struct Stored {
    audit: Vec<Value>,
    billing: Vec<Value>,
    fraud: Vec<Value>,
}

async fn stored(config: &Config) -> HashMap<String, Stored> {
    let client = connect(config).await;
    let mut by_event: HashMap<String, Stored> = HashMap::new();
    for (i, table) in TABLES.iter().enumerate() {
        let rows = client
            .query(
                &format!("SELECT event_id, row_to_json(t)::text FROM {table} t"),
                &[],
            )
            .await
            .unwrap();
        for row in rows {
            let entry = by_event.entry(row.get(0)).or_default();
            let value: Value = serde_json::from_str(row.get(1)).unwrap();
            [&mut entry.audit, &mut entry.billing, &mut entry.fraud][i].push(value);
        }
    }
    by_event
}

/// What differs between the stored rows and the event sent, if anything.
fn mismatch(m: &Message, rows: &Stored) -> Option<String> {
    let e = &m.event;
    let d = &e["details"];
    let want = |kind: Kind| usize::from(m.kind == kind);
    if rows.audit.len() != 1
        || rows.billing.len() != want(Kind::Billing)
        || rows.fraud.len() != want(Kind::Fraud)
    {
        return Some(format!(
            "{:?} event with {} audit, {} billing, {} fraud rows",
            m.kind,
            rows.audit.len(),
            rows.billing.len(),
            rows.fraud.len()
        ));
    }
    let timestamp = chrono_like(e["timestamp"].as_i64().unwrap());
    let a = &rows.audit[0];
    let audit_ok = a["time_stamp"] == timestamp
        && a["originating_service"] == e["originatingService"]
        && a["session_id"] == e["sessionId"]
        && a["event_type"] == e["eventType"]
        && a["details"] == *d;
    if !audit_ok {
        return Some(format!("audit row {a} for {e}"));
    }
    if let Some(b) = rows.billing.first() {
        let ok = b["time_stamp"] == timestamp
            && b["session_id"] == e["sessionId"]
            && b["hashed_persistent_id"] == d["pid"]
            && b["request_id"] == d["request_id"]
            && b["idp_entity_id"] == d["idp_entity_id"]
            && b["minimum_level_of_assurance"] == d["minimum_level_of_assurance"]
            && b["provided_level_of_assurance"] == d["provided_level_of_assurance"]
            && b["transaction_entity_id"] == d["transaction_entity_id"];
        if !ok {
            return Some(format!("billing row {b} for {e}"));
        }
    }
    if let Some(f) = rows.fraud.first() {
        let ok = f["time_stamp"] == timestamp
            && f["session_id"] == e["sessionId"]
            && f["hashed_persistent_id"] == d["pid"]
            && f["entity_id"] == d["idp_entity_id"]
            && f["fraud_event_id"] == d["idp_fraud_event_id"]
            && f["fraud_indicator"] == d["gpg45_status"]
            && f["transaction_entity_id"] == d["transaction_entity_id"]
            && f["request_id"] == d["request_id"];
        if !ok {
            return Some(format!("fraud row {f} for {e}"));
        }
    }
    None
}

/// A `timestamp` column as `row_to_json` renders it, from epoch milliseconds
/// (whole seconds here).
fn chrono_like(ms: i64) -> Value {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Value::String(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    ))
}

async fn report(
    seed: u64,
    shared: &Shared,
    servers: &[Db; 2],
    writer: usize,
    chaos: Duration,
    total: Duration,
) -> bool {
    let final_rows = stored(&servers[writer].config).await;
    let other_rows = stored(&servers[1 - writer].config).await;
    let queue = shared.queue.lock().unwrap();
    let faults = shared.faults.lock().unwrap();
    let sent: HashMap<&str, &Message> = queue
        .messages
        .iter()
        .map(|m| (m.event["eventId"].as_str().unwrap(), m))
        .collect();

    println!("\nseed {seed}");
    println!("faults:");
    for (kind, n) in &faults.counts {
        println!("  {kind:<42} {n}");
    }
    println!(
        "  {:<42} {}",
        "(backends terminated by the kills)", faults.backends_terminated
    );
    println!(
        "  {:<42} {}",
        "(instances replaced)",
        shared.restarts.load(Ordering::Relaxed)
    );
    let acked = queue
        .messages
        .iter()
        .filter(|m| m.state == State::Acked)
        .count();
    let mut dead: BTreeMap<String, usize> = BTreeMap::new();
    for m in &queue.messages {
        if let State::Dead(reason) = &m.state {
            let reason = reason.split(" (").next().unwrap_or_default().to_owned();
            *dead.entry(reason).or_default() += 1;
        }
    }
    let dead_total: usize = dead.values().sum();
    let pending = queue.waiting.len();
    let poison = queue.messages.iter().filter(|m| m.poison).count();
    println!(
        "events: {} sent ({poison} undecryptable), {acked} acknowledged, {dead_total} dead-lettered {dead:?}, {pending} still queued",
        queue.messages.len()
    );
    println!(
        "deliveries: {} in {} invocations ({} duplicate deliveries, {} reported failed, {} function errors, {} unanswered)",
        queue.deliveries,
        queue.invocations,
        queue.duplicate_deliveries,
        queue.reported_failed,
        queue.function_errors,
        queue.unanswered
    );
    println!(
        "throughput: {:.1} events/s acknowledged over {:.0} s ({:.0} s of chaos, then the drain); longest answered invocation {} ms (deadline {} ms)",
        acked as f64 / total.as_secs_f64(),
        total.as_secs_f64(),
        chaos.as_secs_f64(),
        queue.longest.as_millis(),
        DEADLINE.as_millis()
    );
    println!(
        "rows: final writer (server {writer}) {} events, other server {}",
        final_rows.len(),
        other_rows.len()
    );

    let mut results: Vec<(&str, Vec<String>)> = Vec::new();
    // Every acknowledged event stored once, as sent, on the final writer.
    let mut lost = Vec::new();
    // Events first: an undecryptable message acknowledged is listed too, last.
    let mut acked: Vec<&Message> = queue.messages.iter().filter(|m| m.ever_acked).collect();
    acked.sort_by_key(|m| m.poison);
    for m in acked {
        let id = m.event["eventId"].as_str().unwrap();
        match final_rows.get(id) {
            None => lost.push(format!(
                "{id} ({}{}) acknowledged, not stored",
                m.message_id,
                if m.poison { ", undecryptable" } else { "" }
            )),
            Some(rows) => {
                if let Some(why) = mismatch(m, rows) {
                    lost.push(format!("{id}: {why}"));
                }
            }
        }
    }
    results.push((
        "every acknowledged event stored exactly once, as sent",
        lost,
    ));
    // Everything stored (acknowledged or not) is once and as sent.
    let mut wrong = Vec::new();
    for (server, rows) in [("final writer", &final_rows), ("other server", &other_rows)] {
        for (id, stored) in rows.iter() {
            match sent.get(id.as_str()) {
                None => wrong.push(format!("{id} on the {server}: never sent")),
                Some(m) => {
                    if let Some(why) = mismatch(m, stored) {
                        wrong.push(format!("{id} on the {server}: {why}"));
                    }
                }
            }
        }
    }
    results.push((
        "no event stored that was never sent, none twice or altered",
        wrong,
    ));
    let stranded: Vec<String> = other_rows
        .keys()
        .filter(|id| !final_rows.contains_key(*id))
        .map(|id| format!("{id} only on the demoted server (a lost write)"))
        .collect();
    results.push((
        "exactly once across both servers (none on the demoted one only)",
        stranded,
    ));
    let neither: Vec<String> = queue
        .messages
        .iter()
        .filter(|m| {
            let id = m.event["eventId"].as_str().unwrap();
            !final_rows.contains_key(id) && !matches!(&m.state, State::Dead(r) if !r.is_empty())
        })
        .map(|m| {
            format!(
                "{} ({:?}, {} receipts): neither stored nor dead-lettered",
                m.event["eventId"], m.message_id, m.receives
            )
        })
        .collect();
    results.push(("every event stored or dead-lettered with a reason", neither));
    let poisoned: Vec<String> = queue
        .messages
        .iter()
        .filter(|m| m.poison)
        .filter(|m| {
            let id = m.event["eventId"].as_str().unwrap();
            m.ever_acked
                || !matches!(m.state, State::Dead(_))
                || final_rows.contains_key(id)
                || other_rows.contains_key(id)
        })
        .map(|m| {
            format!(
                "{}: undecryptable, yet acknowledged, stored or not dead-lettered",
                m.message_id
            )
        })
        .collect();
    results.push((
        "undecryptable messages dead-lettered, never acknowledged",
        poisoned,
    ));
    let late: Vec<String> = queue
        .overruns
        .iter()
        .map(|(what, took)| format!("{what}: {} ms", took.as_millis()))
        .collect();
    results.push(("no invocation ran past its deadline", late));

    let mut passed = true;
    for (name, failures) in &results {
        let verdict = if failures.is_empty() { "PASS" } else { "FAIL" };
        passed &= failures.is_empty();
        println!(
            "{verdict} {name}{}",
            match failures.len() {
                0 => String::new(),
                n => format!(" ({n})"),
            }
        );
        for failure in failures.iter().take(5) {
            println!("       {failure}");
        }
    }
    if !passed {
        println!("FAILED with seed {seed}: replay with EVENT_RECORDER_SOAK_SEED={seed}");
    }
    passed
}
