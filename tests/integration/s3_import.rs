//! The bulk import (`_HANDLER=s3-import`): JSON-lines files in moto's S3,
//! a real PostgreSQL, and the real `bootstrap` behind the Runtime API
//! emulator; plus the import core driven directly where timing matters.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use event_recorder::functions::s3_import::{self, ImportError, Rejects};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, ReadBuf};

use crate::support::TestDb;
use crate::support::events::{audit_event, billing_event, fraud_event};
use crate::support::function::Function;
use crate::support::moto;
use crate::support::runtime_api::{Outcome, RuntimeApi};
use crate::support::s3::Bucket;

fn doc(event: &Value) -> String {
    json!({ "document": event }).to_string()
}

fn env(db: &str) -> Vec<(&'static str, String)> {
    let mut env = moto::aws_env();
    env.push(("_HANDLER", "s3-import".into()));
    env.push(("DB_CONNECTION_STRING", db.to_owned()));
    env
}

#[tokio::test]
async fn good_duplicate_and_bad_lines_then_the_file_is_deleted() {
    let db = TestDb::new().await;
    let bucket = Bucket::new().await;
    let key = "import/batch ü ✓ + 1.jsonl";
    let mut no_type = audit_event("x");
    no_type.as_object_mut().unwrap().remove("eventType");
    let mut no_pid = billing_event("b-no-pid");
    no_pid["details"].as_object_mut().unwrap().remove("pid");
    let lines = [
        doc(&audit_event("i1")),
        doc(&billing_event("i2")),
        doc(&fraud_event("i3")),
        String::new(),
        "not json".into(),
        json!({ "event": audit_event("i4") }).to_string(),
        doc(&no_type),
        doc(&audit_event("i1")),
        doc(&no_pid),
    ];
    bucket.put(key, lines.join("\n") + "\n", &[]).await;

    let api = RuntimeApi::start().await;
    let function = Function::spawn(&api, &env(&db.connection_string()));
    let body = api.invoke(&bucket.created(key)).await.body();
    let object = &body["objects"][0];
    assert_eq!(object["key"], key, "{body}");
    assert_eq!(
        [
            &object["lines"],
            &object["blank"],
            &object["stored"],
            &object["duplicates"],
            &object["rejected"]
        ],
        [&json!(9), &json!(1), &json!(3), &json!(1), &json!(4)],
        "{body}"
    );
    assert_eq!(db.row_counts().await, [3, 1, 1]);

    let rejects_key = format!("error/{key}.rejects.jsonl");
    assert_eq!(
        bucket.keys().await,
        [rejects_key.as_str()],
        "source deleted"
    );
    let rejects: Vec<Value> = String::from_utf8(bucket.get(&rejects_key).await.unwrap())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<(u64, &str)> = rejects
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(summary.len(), 4, "{rejects:?}");
    assert_eq!(summary[0].0, 5);
    assert!(summary[0].1.contains("not valid JSON"), "{summary:?}");
    assert_eq!(summary[1].0, 6);
    assert!(summary[1].1.contains("`document`"), "{summary:?}");
    assert_eq!(summary[2].0, 7);
    assert!(summary[2].1.contains("eventType"), "{summary:?}");
    assert_eq!(summary[3].0, 9);
    assert!(summary[3].1.contains("details.pid"), "{summary:?}");
    assert_eq!(rejects[0]["text"], "not json");
    assert_eq!(rejects[3]["text"].as_str().unwrap(), lines[8]);

    // The same file again: nothing new, the same rejects.
    bucket.put(key, lines.join("\n"), &[]).await;
    let body = api.invoke(&bucket.created(key)).await.body();
    assert_eq!(body["objects"][0]["duplicates"], 4, "{body}");
    assert_eq!(db.row_counts().await, [3, 1, 1]);

    let logs = function.output();
    assert!(
        logs.contains("line rejected") && logs.contains("line=5"),
        "{logs}"
    );
    assert!(
        !logs.contains("session-i1"),
        "event contents stay out of logs: {logs}"
    );
}

#[tokio::test]
async fn a_database_outage_keeps_the_file_and_a_rerun_completes() {
    let db = TestDb::new().await;
    let (proxy, via_proxy) = db.behind_proxy().await;
    let bucket = Bucket::new().await;
    let key = "import/outage.jsonl";
    let lines: Vec<String> = (0..50)
        .map(|i| doc(&audit_event(&format!("o{i}"))))
        .collect();
    bucket.put(key, lines.join("\n"), &[]).await;

    let api = RuntimeApi::start().await;
    let mut function = Function::spawn(&api, &env(&via_proxy));
    proxy.cut();
    match api.invoke(&bucket.created(key)).await {
        Outcome::Error(e) => assert!(e.to_string().contains("database"), "{e}"),
        Outcome::Response(r) => panic!("expected an error, got {r}"),
    }
    assert_eq!(bucket.keys().await, [key], "nothing deleted");
    assert_eq!(db.count("audit.audit_events").await, 0);

    proxy.restore();
    let body = api.invoke(&bucket.created(key)).await.body();
    assert_eq!(body["objects"][0]["stored"], 50, "{body}");
    assert!(bucket.keys().await.is_empty());
    assert!(function.is_running(), "{}", function.output());
}

/// A reader that stops at `gate` bytes until told to go on.
struct Gated {
    data: Vec<u8>,
    at: usize,
    gate: usize,
    open: tokio::sync::watch::Receiver<bool>,
}

impl AsyncRead for Gated {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.at >= this.gate && !*this.open.borrow() {
            // Poll again shortly: simple, and only tests use it.
            let waker = cx.waker().clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                waker.wake();
            });
            return Poll::Pending;
        }
        let end = if this.at < this.gate {
            this.gate
        } else {
            this.data.len()
        };
        let n = (end - this.at).min(buf.remaining());
        buf.put_slice(&this.data[this.at..this.at + n]);
        this.at += n;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn the_connection_lost_mid_file_fails_the_import_and_a_rerun_stores_the_rest() {
    let db = TestDb::new().await;
    let lines: Vec<String> = (0..2500)
        .map(|i| doc(&audit_event(&format!("m{i:04}"))))
        .collect();
    let data = (lines.join("\n") + "\n").into_bytes();
    // Past the first 1,000-line transaction, inside the second.
    let gate = lines[..1500].iter().map(|l| l.len() + 1).sum();
    let (open, gate_rx) = tokio::sync::watch::channel(false);
    let reader = tokio::io::BufReader::new(Gated {
        data: data.clone(),
        at: 0,
        gate,
        open: gate_rx,
    });
    let mut store = db.store().await;
    let pid: i32 = store
        .run(async |client| client.query_one("SELECT pg_backend_pid()", &[]).await)
        .await
        .unwrap()
        .get(0);
    let import = tokio::spawn(async move {
        let mut rejects = Rejects::new().unwrap();
        s3_import::import(&mut store, reader, &mut rejects).await
    });
    while db.count("audit.audit_events").await < 1000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    db.client()
        .await
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    open.send(true).unwrap();
    let outcome = import.await.unwrap();
    assert!(
        matches!(outcome, Err(ImportError::Database { line, .. }) if line > 1000),
        "{outcome:?}"
    );
    assert_eq!(
        db.count("audit.audit_events").await,
        1000,
        "one whole transaction, no part of the next"
    );

    let mut store = db.store().await;
    let mut rejects = Rejects::new().unwrap();
    let report = s3_import::import(
        &mut store,
        tokio::io::BufReader::new(&data[..]),
        &mut rejects,
    )
    .await
    .unwrap();
    assert_eq!(
        (report.stored, report.duplicates, report.rejected),
        (1500, 1000, 0)
    );
    assert_eq!(db.count("audit.audit_events").await, 2500);
}

/// Peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn memory_stays_bounded_whatever_the_file_size() {
    let db = TestDb::new().await;
    let bucket = Bucket::new().await;
    let key = "import/large.jsonl";
    let padding = "p".repeat(4000);
    let mut file = Vec::new();
    let lines = 24_000;
    for i in 0..lines {
        let mut event = audit_event(&format!("big{i:05}"));
        event["details"]["padding"] = json!(padding);
        file.extend_from_slice(doc(&event).as_bytes());
        file.push(b'\n');
    }
    let size_mib = file.len() as u64 / (1024 * 1024);
    bucket.put(key, file, &[]).await;

    let api = RuntimeApi::start().await;
    let function = Function::spawn(&api, &env(&db.connection_string()));
    let body = api.invoke(&bucket.created(key)).await.body();
    assert_eq!(body["objects"][0]["stored"], lines, "{body}");
    let peak_mib = peak_rss_kib(function.pid()) / 1024;
    println!("import of a {size_mib} MiB file: peak RSS {peak_mib} MiB");
    // Loaded whole, the file alone would exceed the bound.
    assert!(
        size_mib >= 90,
        "the file must dwarf the bound: {size_mib} MiB"
    );
    assert!(
        peak_mib < 64,
        "peak RSS {peak_mib} MiB for a {size_mib} MiB file: memory is not bounded"
    );
}

#[tokio::test]
async fn a_silent_database_fails_the_invocation_before_its_deadline() {
    let db = TestDb::new().await;
    let (proxy, via_proxy) = db.behind_proxy().await;
    let bucket = Bucket::new().await;
    let api = RuntimeApi::start().await;
    let _function = Function::spawn(&api, &env(&via_proxy));
    let put = |name: &'static str| {
        let bucket = &bucket;
        async move {
            let key = format!("import/{name}.jsonl");
            bucket.put(&key, doc(&audit_event(name)), &[]).await;
            key
        }
    };
    let key = put("warm").await;
    assert_eq!(
        api.invoke(&bucket.created(&key)).await.body()["objects"][0]["stored"],
        1
    );

    proxy.black_hole();
    let key = put("silent").await;
    let deadline = Duration::from_secs(3);
    let sent = std::time::Instant::now();
    match api.invoke_within(&bucket.created(&key), deadline).await {
        Outcome::Error(e) => assert!(e.to_string().contains("deadline"), "{e}"),
        Outcome::Response(r) => panic!("expected an error, got {r}"),
    }
    assert!(sent.elapsed() < deadline, "{:?}", sent.elapsed());
    assert!(bucket.keys().await.contains(&key), "the object is kept");

    proxy.heal();
    assert_eq!(
        api.invoke(&bucket.created(&key)).await.body()["objects"][0]["stored"],
        1
    );
    assert_eq!(db.count("audit.audit_events").await, 2);
}
