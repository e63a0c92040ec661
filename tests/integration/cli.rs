//! The `event-recorder` command-line tool.

use std::process::{Command, Output};

use serde_json::Value;

use crate::support::TestDb;
use crate::support::events::{KEY_B64, audit_event, billing_event};

pub fn run(args: &[&str], env: &[(&str, &str)], stdin_file: Option<&std::path::Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_event-recorder"));
    cmd.args(args).env_clear().envs(env.iter().copied());
    if let Some(path) = stdin_file {
        cmd.stdin(std::fs::File::open(path).unwrap());
    }
    cmd.output().unwrap()
}

pub fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["migrate", "encrypt", "invoke", "import", "idp-fraud-upload"] {
        let text = stdout(&run(&[sub, "--help"], &[], None));
        assert!(text.contains("Usage: event-recorder"), "{sub}: {text}");
    }
}

#[tokio::test]
async fn migrate_applies_the_schema_once() {
    let db = TestDb::empty().await;
    let conn = db.connection_string();
    let env = [("DB_CONNECTION_STRING", conn.as_str())];
    let first = stdout(&run(&["migrate"], &env, None));
    assert_eq!(first.lines().collect::<Vec<_>>(), ["applied V1__schema"]);
    assert_eq!(
        stdout(&run(&["migrate"], &env, None)).trim(),
        "schema up to date"
    );
    assert_eq!(db.count("audit.audit_events").await, 0);
}

#[test]
fn migrate_without_a_connection_string_names_the_variable() {
    let out = run(&["migrate"], &[], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DB_CONNECTION_STRING"));
}

#[tokio::test]
async fn encrypt_then_invoke_stores_the_events() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut invalid = audit_event("bad");
    invalid.as_object_mut().unwrap().remove("eventType");
    let lines = [audit_event("a1"), billing_event("b1"), invalid]
        .map(|e| e.to_string())
        .join("\n");
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, lines).unwrap();

    // Bare bodies: one per line, each decrypting back to its event.
    let bodies = stdout(&run(
        &["encrypt"],
        &[("LOCAL_DATA_KEY", KEY_B64)],
        Some(&events),
    ));
    assert_eq!(bodies.lines().count(), 3);
    let first = crate::support::events::key()
        .decrypt(bodies.lines().next().unwrap())
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&first).unwrap(),
        audit_event("a1")
    );

    let sqs = stdout(&run(
        &["encrypt", "--sqs-event", events.to_str().unwrap()],
        &[("LOCAL_DATA_KEY", KEY_B64)],
        None,
    ));
    let sqs_file = dir.path().join("sqs.json");
    std::fs::write(&sqs_file, sqs).unwrap();
    let conn = db.connection_string();
    let env = [
        ("DB_CONNECTION_STRING", conn.as_str()),
        ("LOCAL_DATA_KEY", KEY_B64),
    ];
    let response: Value = serde_json::from_str(&stdout(&run(
        &["invoke", sqs_file.to_str().unwrap()],
        &env,
        None,
    )))
    .unwrap();
    assert_eq!(
        response,
        serde_json::json!({"batchItemFailures": [{"itemIdentifier": "message-3"}]})
    );
    assert_eq!(db.count("audit.audit_events").await, 2);
    assert_eq!(db.count("billing.billing_events").await, 1);
}

#[tokio::test]
async fn import_and_fraud_upload_run_on_local_files() {
    let db = TestDb::new().await;
    let conn = db.connection_string();
    let env = [("DB_CONNECTION_STRING", conn.as_str())];
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("events.jsonl");
    std::fs::write(
        &lines,
        format!(
            "{}\n{{\"nope\": 1}}\n",
            serde_json::json!({ "document": audit_event("cli-1") })
        ),
    )
    .unwrap();
    let report: Value = serde_json::from_str(&stdout(&run(
        &["import", lines.to_str().unwrap()],
        &env,
        None,
    )))
    .unwrap();
    assert_eq!(
        (report["stored"].as_u64(), report["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    let rejects = std::fs::read_to_string(dir.path().join("events.jsonl.rejects.jsonl")).unwrap();
    assert!(rejects.contains("\"line\":2"), "{rejects}");

    let csv = dir.path().join("report.csv");
    std::fs::write(&csv, "2019-08-01 10:00\tev1\tF\tA01\t1\treq\tip\tpid\n").unwrap();
    let args = [
        "idp-fraud-upload",
        csv.to_str().unwrap(),
        "--idp",
        "https://idp.example",
        "--username",
        "erin",
        "--dialect",
        "excel-tab",
        "--no-header",
    ];
    let report: Value = serde_json::from_str(&stdout(&run(&args, &env, None))).unwrap();
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(db.count("idp_data.idp_fraud_events").await, 1);

    std::fs::write(&csv, "not a date\tev1\tF\tA01\t1\treq\tip\tpid\n").unwrap();
    let out = run(&args, &env, None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed validation"));
}
