//! The `bootstrap` binary as Lambda runs it: time from process start to its
//! first `invocation/next` request, in four configurations; then, on a warm
//! instance, the time of a 10,000-message invocation (the artifact's whole
//! path, so builds can be compared on throughput) and peak memory (VmHWM).
//!
//! The configurations:
//! - `prefer`, `disable`: `LOCAL_DATA_KEY`, a local PostgreSQL (no TLS, so
//!   `prefer` ends in clear text as well, after asking);
//! - `db down`: the same, nothing listening on the database's port;
//! - `kms key`: the data key decrypted by KMS, moto behind a TLS proxy, so the
//!   call is HTTPS (verified) as it is in AWS; local PostgreSQL, `prefer`.
//!
//! Every start has a full CA bundle where OpenSSL reads it: `SSL_CERT_FILE`
//! points at the machine's bundle (`EVENT_RECORDER_CA_BUNDLE`, else the
//! first of `/etc/pki/tls/cert.pem`, `/etc/ssl/certs/ca-certificates.crt`,
//! `/etc/ssl/cert.pem`) followed by the proxy's test CA. OpenSSL takes that
//! variable in place of its default file whatever OPENSSLDIR it was built
//! with, so a host build and the zip's build read the same bundle.
//!
//! Run: `cargo bench --bench lambda`. `EVENT_RECORDER_BOOTSTRAP` measures
//! another build (the one in the Lambda zip); `EVENT_RECORDER_BOOTSTRAP_BASELINE`
//! adds a second binary, started and invoked in turn with the first (A B,
//! then B A) so a busy machine slows both alike, and prints the median of the
//! paired ratios.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use event_recorder::schema;
use event_recorder_test_support::{certs, events, function, local, moto, runtime_api, tls_proxy};
use events::{Batch, KEY_B64, mixed_event};
use function::Function;
use runtime_api::{Outcome, RuntimeApi};

const STARTS: usize = 30;
const BATCH: usize = 10_000;
const ROUNDS: usize = 11;

type Env = Vec<(&'static str, String)>;

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
    let up = config.get_ports()[0];
    let down = local::free_port().unwrap();
    let db = |port: u16, tls: &str| {
        format!(
            "host=127.0.0.1 port={port} user=postgres password={} dbname=postgres {tls}",
            local::PASSWORD
        )
    };

    let pki = certs::make(&["localhost"]);
    let (bundle, system) = ca_bundle(&pki.ca);
    let common: Env = vec![
        ("AWS_LAMBDA_LOG_LEVEL", "warn".into()),
        ("SSL_CERT_FILE", bundle.display().to_string()),
    ];
    let local_key = |conn: String| -> Env {
        let mut env = common.clone();
        env.extend([
            ("DB_CONNECTION_STRING", conn),
            ("LOCAL_DATA_KEY", KEY_B64.to_owned()),
        ]);
        env
    };
    let mut kms = common.clone();
    kms.extend(moto::aws_env());
    kms.push(("DB_CONNECTION_STRING", db(up, "sslmode=prefer")));
    kms.push(("ENCRYPTION_KEY", wrapped_data_key().await));
    let moto_port = tls_proxy::port_of(&moto::shared().endpoint);
    let proxy = tls_proxy::start(moto_port, &pki.server_cert, &pki.server_key).await;
    for (name, value) in &mut kms {
        if *name == "AWS_ENDPOINT_URL" {
            *value = format!("https://localhost:{proxy}");
        }
    }
    let configurations: [(&str, Env); 4] = [
        ("prefer", local_key(db(up, "sslmode=prefer"))),
        ("disable", local_key(db(up, "sslmode=disable"))),
        ("db down", local_key(db(down, "sslmode=prefer"))),
        ("kms key", kms),
    ];

    let binaries: Vec<PathBuf> = [
        Some(function::bootstrap_path()),
        std::env::var_os("EVENT_RECORDER_BOOTSTRAP_BASELINE").map(PathBuf::from),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (label, path) in ["A", "B"].iter().zip(&binaries) {
        println!("binary {label}: {}", path.display());
    }
    println!(
        "CA bundle: SSL_CERT_FILE={} ({system} and the proxy's test CA)",
        bundle.display()
    );

    // times[configuration][binary]
    let mut times = vec![vec![Vec::with_capacity(STARTS); binaries.len()]; 4];
    for round in 0..STARTS {
        for (c, (_, env)) in configurations.iter().enumerate() {
            for turn in 0..binaries.len() {
                let b = (round + turn) % binaries.len();
                times[c][b].push(start_time(&binaries[b], env).await);
            }
        }
    }

    println!("start to first /next over {STARTS} starts per binary (ms):");
    for ((name, _), per_binary) in configurations.iter().zip(&times) {
        let mut line = format!("{name:>8}:");
        for (label, starts) in ["A", "B"].iter().zip(per_binary) {
            let (median, p90) = median_p90(starts);
            line.push_str(&format!(
                " {label} median {:5.1}, p90 {:5.1};",
                ms(median),
                ms(p90)
            ));
        }
        if let [a, b] = &per_binary[..] {
            line.push_str(&format!(" A/B median {:.2}", paired_ratio(a, b)));
        }
        println!("{}", line.trim_end_matches(';'));
    }

    invocations(&binaries, &configurations[0].1).await;
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The median of a[i] / b[i]: runs taken in turn, so a busy moment slows
/// both sides of a pair.
fn paired_ratio(a: &[Duration], b: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

fn median_p90(times: &[Duration]) -> (Duration, Duration) {
    let mut sorted = times.to_vec();
    sorted.sort();
    (sorted[sorted.len() / 2], sorted[sorted.len() * 9 / 10])
}

/// From spawning `binary` to its first `/next`.
async fn start_time(binary: &Path, env: &Env) -> Duration {
    let api = RuntimeApi::start().await;
    let function = Function::spawn_binary(binary, &api, env);
    loop {
        if let Some(at) = api.first_next() {
            return at.duration_since(function.spawned);
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// The machine's CA bundle with `extra` appended, and where it came from.
fn ca_bundle(extra: &Path) -> (PathBuf, String) {
    let system = std::env::var_os("EVENT_RECORDER_CA_BUNDLE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/pki/tls/cert.pem",
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/ssl/cert.pem",
            ]
            .map(PathBuf::from),
        )
        .find(|p| p.is_file())
        .expect("a system CA bundle (set EVENT_RECORDER_CA_BUNDLE)");
    let mut pem = std::fs::read(&system).unwrap();
    pem.push(b'\n');
    pem.extend(std::fs::read(extra).unwrap());
    let certificates = String::from_utf8_lossy(&pem)
        .matches("BEGIN CERTIFICATE")
        .count();
    let path = std::env::temp_dir().join(format!(
        "event-recorder-bench-ca-{}.pem",
        std::process::id()
    ));
    std::fs::write(&path, pem).unwrap();
    (
        path,
        format!("{certificates} certificates: {}", system.display()),
    )
}

/// The test data key wrapped by a new KMS key in moto.
async fn wrapped_data_key() -> String {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .http_client(event_recorder::aws::http_client())
        .endpoint_url(&moto::shared().endpoint)
        .region(Region::new("eu-west-2"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "bench"))
        .load()
        .await;
    let kms = aws_sdk_kms::Client::new(&sdk);
    let key = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    let wrapped = kms
        .encrypt()
        .key_id(key.key_id)
        .plaintext(aws_smithy_types::Blob::new(BASE64.decode(KEY_B64).unwrap()))
        .send()
        .await
        .unwrap();
    BASE64.encode(wrapped.ciphertext_blob.unwrap().into_inner())
}

/// Each binary as a warm instance: `ROUNDS` invocations of `BATCH` new
/// messages, the binaries taking turns (A B, then B A), then peak memory.
/// The time of an invocation is the function's whole path for a batch:
/// decrypt, parse, route, store, answer.
async fn invocations(binaries: &[PathBuf], env: &Env) {
    let mut apis = Vec::with_capacity(binaries.len());
    for _ in binaries {
        apis.push(RuntimeApi::start().await);
    }
    let functions: Vec<Function> = binaries
        .iter()
        .zip(&apis)
        .map(|(binary, api)| Function::spawn_binary(binary, api, env))
        .collect();
    let mut times = vec![Vec::with_capacity(ROUNDS); binaries.len()];
    let mut payload_mb = 0.0;
    for round in 0..ROUNDS {
        for turn in 0..binaries.len() {
            let b = (round + turn) % binaries.len();
            let mut batch = Batch::default();
            for i in 0..BATCH {
                // Scattered keys, as UUIDs are: keys that sort together
                // would give one binary the cheap right-hand index inserts.
                let id = format!("{:016x}-{b}-{round}-{i}", scatter(b, round, i));
                let event = mixed_event(&id, i);
                batch = batch.event(&format!("m{i}"), &event);
            }
            let event = batch.sqs_event();
            payload_mb = event.to_string().len() as f64 / 1e6;
            let started = std::time::Instant::now();
            let Outcome::Response(response) = apis[b].invoke(&event).await else {
                panic!("function error")
            };
            times[b].push(started.elapsed());
            assert_eq!(
                response["batchItemFailures"].as_array().map(Vec::len),
                Some(0)
            );
        }
    }
    println!("{ROUNDS} invocations of {BATCH} messages ({payload_mb:.1} MB) per binary:");
    for ((label, per_binary), function) in ["A", "B"].iter().zip(&times).zip(&functions) {
        let (median, _) = median_p90(per_binary);
        let status = std::fs::read_to_string(format!("/proc/{}/status", function.pid())).unwrap();
        let peak = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .unwrap_or("VmHWM: unknown");
        println!(
            "  {label}: median {:.0} ms ({:.0} events/s), peak memory {}",
            ms(median),
            BATCH as f64 / median.as_secs_f64(),
            peak.trim_start_matches("VmHWM:").trim()
        );
    }
    if let [a, b] = &times[..] {
        println!("  A/B time median {:.3}", paired_ratio(a, b));
    }
}

/// A well-mixed 64-bit value (splitmix64) of the message's position.
fn scatter(binary: usize, round: usize, index: usize) -> u64 {
    let mut z = ((binary as u64) << 48 | (round as u64) << 32 | index as u64)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
