//! What the real `bootstrap` writes to its log (CloudWatch bills each byte):
//! at the default level, one summary line per batch and one line per failed
//! or duplicate message, whatever the batch size; JSON lines in Lambda's own
//! shape.

use serde_json::{Value, json};

use crate::support::TestDb;
use crate::support::events::{Batch, KEY_B64, audit_event, billing_event};
use crate::support::function::Function;
use crate::support::runtime_api::{Outcome, RuntimeApi};

const GOOD: usize = 1_000;

fn failures(outcome: Outcome) -> Vec<String> {
    match outcome {
        Outcome::Response(body) => body["batchItemFailures"]
            .as_array()
            .unwrap_or_else(|| panic!("not a batch response: {body}"))
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
            .collect(),
        Outcome::Error(error) => panic!("function error: {error}"),
    }
}

/// The lines written since the log was `before` bytes long (all on
/// stdout: nothing goes to stderr).
fn new_lines(function: &Function, before: usize) -> Vec<String> {
    let stdout = function.stdout();
    assert_eq!(function.output(), stdout, "nothing on stderr");
    stdout[before..].lines().map(str::to_owned).collect()
}

/// A started function, warmed up with one batch that stores `dup-1` and
/// `dup-2`; the length of its output so far.
async fn warmed_up(db: &TestDb, api: &RuntimeApi, format: &str, prefix: &str) -> (Function, usize) {
    let function = Function::spawn(
        api,
        &[
            ("DB_CONNECTION_STRING", db.connection_string()),
            ("LOCAL_DATA_KEY", KEY_B64.into()),
            ("AWS_LAMBDA_LOG_FORMAT", format.into()),
        ],
    );
    let warm = Batch::default()
        .event("warm-1", &audit_event(&format!("{prefix}dup-1")))
        .event("warm-2", &audit_event(&format!("{prefix}dup-2")));
    assert!(failures(api.invoke(&warm.sqs_event()).await).is_empty());
    let before = function.stdout().len();
    (function, before)
}

/// 1,000 good messages, two that fail (one with an event ID, one that does
/// not decrypt) and two duplicates.
fn big_batch(prefix: &str) -> Batch {
    let mut batch = Batch::default();
    for i in 0..GOOD {
        let id = format!("{prefix}good-{i}");
        let event = match i % 10 {
            0 => billing_event(&id),
            _ => audit_event(&id),
        };
        batch = batch.event(&format!("m-{id}"), &event);
    }
    let mut no_timestamp = audit_event(&format!("{prefix}bad-1"));
    no_timestamp.as_object_mut().unwrap().remove("timestamp");
    batch
        .event("m-bad", &no_timestamp)
        .raw("m-garbage", "bm90IGVuY3J5cHRlZA==")
        .event("m-dup-1", &audit_event(&format!("{prefix}dup-1")))
        .event("m-dup-2", &audit_event(&format!("{prefix}dup-2")))
}

#[tokio::test]
async fn a_thousand_good_messages_write_one_line_json() {
    let db = TestDb::new().await;
    let api = RuntimeApi::start().await;
    let (function, before) = warmed_up(&db, &api, "JSON", "j-").await;
    assert_eq!(
        failures(api.invoke(&big_batch("j-").sqs_event()).await),
        ["m-bad", "m-garbage"]
    );
    let lines = new_lines(&function, before);
    // Two failed, two duplicates, one summary: nothing per stored message.
    assert_eq!(lines.len(), 5, "{lines:#?}");

    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let request_id = parsed[0]["requestId"].as_str().unwrap().to_owned();
    // The emulator's request IDs, as the Runtime API sent it.
    assert!(
        request_id.starts_with("00000000-0000-4000-8000-") && request_id.len() == 36,
        "{request_id}"
    );
    for line in &parsed {
        for key in ["timestamp", "level", "message", "requestId"] {
            assert!(line[key].is_string(), "{key} in {line}");
        }
        assert_eq!(line["requestId"], request_id.as_str(), "{line}");
        for span_key in ["span", "spans", "fields", "target"] {
            assert!(line.get(span_key).is_none(), "{span_key} in {line}");
        }
        assert!(
            chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str().unwrap()).is_ok(),
            "{line}"
        );
    }
    let find = |message_id: &str| {
        parsed
            .iter()
            .find(|l| l["message_id"] == message_id)
            .unwrap_or_else(|| panic!("no line for {message_id}: {lines:#?}"))
    };
    let bad = find("m-bad");
    assert_eq!(
        (&bad["level"], &bad["message"], &bad["event_id"]),
        (&json!("ERROR"), &json!("failed"), &json!("j-bad-1"))
    );
    assert!(
        bad["error"].as_str().unwrap().contains("`timestamp`"),
        "{bad}"
    );
    let garbage = find("m-garbage");
    assert!(garbage.get("event_id").is_none(), "{garbage}");
    assert!(
        garbage["error"]
            .as_str()
            .unwrap()
            .starts_with("decryption failed"),
        "{garbage}"
    );
    for (message_id, event_id) in [("m-dup-1", "j-dup-1"), ("m-dup-2", "j-dup-2")] {
        let dup = find(message_id);
        assert_eq!(
            (&dup["level"], &dup["event_id"]),
            (&json!("WARN"), &json!(event_id))
        );
    }
    let summary = parsed
        .iter()
        .find(|l| l["message"] == "batch recorded")
        .unwrap();
    assert_eq!(
        [
            &summary["BatchSize"],
            &summary["Stored"],
            &summary["Duplicates"],
            &summary["Failed"]
        ],
        [&json!(GOOD + 4), &json!(GOOD), &json!(2), &json!(2)]
    );
    assert!(summary["DatabaseTime"].is_number(), "{summary}");
    assert_eq!(
        summary["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "EventRecorder"
    );
    assert_eq!(db.count("audit.audit_events").await as usize, GOOD + 2);
}

#[tokio::test]
async fn a_thousand_good_messages_write_one_line_text() {
    let db = TestDb::new().await;
    let api = RuntimeApi::start().await;
    let (function, before) = warmed_up(&db, &api, "Text", "t-").await;
    assert_eq!(
        failures(api.invoke(&big_batch("t-").sqs_event()).await),
        ["m-bad", "m-garbage"]
    );
    let lines = new_lines(&function, before);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    let bad = lines
        .iter()
        .find(|l| l.contains("message_id=m-bad"))
        .unwrap();
    assert!(
        bad.starts_with("ERROR failed message_id=m-bad event_id=t-bad-1 error=\"invalid event: ")
            && bad.contains("`timestamp`")
            && bad.contains(" requestId="),
        "{bad}"
    );
    let duplicates = lines
        .iter()
        .filter(|l| l.starts_with("WARN duplicate"))
        .count();
    assert_eq!(duplicates, 2, "{lines:#?}");
    // The summary carries the metrics, so it is JSON in either format.
    let summary: Value = lines
        .iter()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no summary: {lines:#?}"));
    assert_eq!(summary["Stored"], GOOD);
}

#[tokio::test]
async fn at_debug_each_stored_message_has_its_line() {
    let db = TestDb::new().await;
    let api = RuntimeApi::start().await;
    let function = Function::spawn(
        &api,
        &[
            ("DB_CONNECTION_STRING", db.connection_string()),
            ("LOCAL_DATA_KEY", KEY_B64.into()),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
            ("AWS_LAMBDA_LOG_LEVEL", "DEBUG".into()),
            ("METRICS_NAMESPACE", "none".into()),
        ],
    );
    let batch = (0..20).fold(Batch::default(), |b, i| {
        b.event(&format!("m{i}"), &audit_event(&format!("e{i}")))
    });
    assert!(failures(api.invoke(&batch.sqs_event()).await).is_empty());
    let lines: Vec<Value> = function
        .output()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let stored: Vec<&Value> = lines.iter().filter(|l| l["message"] == "stored").collect();
    assert_eq!(stored.len(), 20, "{lines:#?}");
    assert!(
        stored
            .iter()
            .all(|l| l["level"] == "DEBUG" && l["event_id"].is_string())
    );
    // Metrics off: the summary is still there, without the directive.
    let summary = lines
        .iter()
        .find(|l| l["message"] == "batch recorded")
        .unwrap();
    assert!(summary.get("_aws").is_none() && summary["Stored"] == 20);
}
