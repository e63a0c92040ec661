//! Log lines as Lambda's logging configuration asks for them, and no more.
//!
//! - `AWS_LAMBDA_LOG_FORMAT=JSON`: one JSON object per line with Lambda's
//!   own keys (`timestamp`, `level`, `message`, `requestId`) and the event's
//!   fields flat beside them; otherwise `LEVEL message key=value ...`.
//! - `AWS_LAMBDA_LOG_LEVEL` (else `RUST_LOG`, a level name; default INFO)
//!   sets the level of this program's lines; other crates' lines stop at
//!   INFO whatever it is.
//! - Spans are not written: the one thing a line takes from them is the
//!   request ID of lambda_runtime's invocation span.
//!
//! Every line is a cost (CloudWatch bills each byte), so the functions log
//! one summary per invocation and a line per failure; per-record detail is
//! DEBUG.

mod layer;
pub mod render;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;

pub use layer::Sink;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub format: Format,
    pub level: LevelFilter,
}

impl Settings {
    pub fn from_env() -> Self {
        let var = |name| std::env::var(name).ok();
        Self::from_values(
            var("AWS_LAMBDA_LOG_FORMAT").as_deref(),
            var("AWS_LAMBDA_LOG_LEVEL")
                .or_else(|| var("RUST_LOG"))
                .as_deref(),
        )
    }

    /// An unknown format is text and an unknown level INFO: logging never
    /// stops start-up.
    pub fn from_values(format: Option<&str>, level: Option<&str>) -> Self {
        Self {
            format: match format {
                Some(f) if f.trim().eq_ignore_ascii_case("json") => Format::Json,
                _ => Format::Text,
            },
            level: level.and_then(parse_level).unwrap_or(LevelFilter::INFO),
        }
    }
}

/// Levels as Lambda names them; FATAL is ERROR here (tracing has no FATAL).
fn parse_level(name: &str) -> Option<LevelFilter> {
    Some(match name.trim().to_ascii_uppercase().as_str() {
        "TRACE" => LevelFilter::TRACE,
        "DEBUG" => LevelFilter::DEBUG,
        "INFO" => LevelFilter::INFO,
        "WARN" | "WARNING" => LevelFilter::WARN,
        "ERROR" | "FATAL" => LevelFilter::ERROR,
        "OFF" => LevelFilter::OFF,
        _ => return None,
    })
}

/// The subscriber: the span registry and the line writer.
pub fn subscriber(settings: Settings, sink: Sink) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::registry().with(layer::Lines::new(settings, sink))
}

/// Sets the process's subscriber, with settings from the environment.
/// Lines go to stdout (Lambda's log) or, for the CLI, to stderr.
pub fn init(to_stderr: bool) {
    let sink: Sink = match to_stderr {
        false => Box::new(|line| write_all(&mut std::io::stdout().lock(), line)),
        true => Box::new(|line| write_all(&mut std::io::stderr().lock(), line)),
    };
    // Fails only if a subscriber is already set, which then stays.
    let _ = tracing::subscriber::set_global_default(subscriber(Settings::from_env(), sink));
}

fn write_all(out: &mut impl std::io::Write, line: &[u8]) {
    // A log line that cannot be written is dropped: there is nowhere to say so.
    let _ = out.write_all(line).and_then(|()| out.flush());
}

/// Runs `f` under a subscriber with these settings; what it wrote.
#[cfg(test)]
pub(crate) fn capture(settings: Settings, f: impl FnOnce()) -> String {
    use std::sync::{Arc, Mutex};
    let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink_buffer = buffer.clone();
    let sink: Sink = Box::new(move |line| sink_buffer.lock().unwrap().extend_from_slice(line));
    tracing::subscriber::with_default(subscriber(settings, sink), f);
    let text = buffer.lock().unwrap().clone();
    String::from_utf8(text).unwrap()
}

#[cfg(test)]
mod tests {
    use tracing::{debug, error, info, info_span, warn};

    use super::*;

    fn lines(format: &str, level: &str, f: impl FnOnce()) -> Vec<String> {
        let settings = Settings::from_values(Some(format), Some(level));
        capture(settings, f).lines().map(str::to_owned).collect()
    }

    fn in_an_invocation(f: impl FnOnce()) {
        // As lambda_runtime opens it for each invocation.
        let span = info_span!(
            "Lambda runtime invoke",
            requestId = "8476a536-e9f4-11e8-9739-2dfe598c3fcd",
            xrayTraceId = "Root=1-5759e988-bd862e3fe1be46a994272793"
        );
        span.in_scope(f);
    }

    #[test]
    fn json_lines_have_lambdas_keys_the_request_id_and_no_span() {
        let lines = lines("JSON", "INFO", || {
            info!("outside any invocation");
            in_an_invocation(
                || error!(message_id = "m-1", event_id = "e-1", error = %"invalid event: x", "failed"),
            );
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert!(first.get("requestId").is_none(), "{first}");
        let line: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "timestamp",
            "level",
            "message",
            "requestId",
            "message_id",
            "event_id",
            "error",
        ];
        expected.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, expected, "{line}");
        assert_eq!(line["level"], "ERROR");
        assert_eq!(line["message"], "failed");
        assert_eq!(line["requestId"], "8476a536-e9f4-11e8-9739-2dfe598c3fcd");
        assert_eq!(line["error"], "invalid event: x");
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "{timestamp}"
        );
        assert!(!lines[1].contains("xrayTraceId") && !lines[1].contains("span"));
    }

    #[test]
    fn text_lines_name_the_request() {
        let lines = lines("Text", "INFO", || {
            in_an_invocation(|| warn!(message_id = "m-1", "duplicate: already stored, skipped"))
        });
        assert_eq!(
            lines,
            ["WARN duplicate: already stored, skipped message_id=m-1 \
              requestId=8476a536-e9f4-11e8-9739-2dfe598c3fcd"]
        );
    }

    #[test]
    fn debug_is_written_only_at_debug() {
        let write = || in_an_invocation(|| debug!(message_id = "m-1", "stored"));
        assert!(lines("JSON", "INFO", write).is_empty());
        let at_debug = lines("JSON", "DEBUG", write);
        assert_eq!(at_debug.len(), 1);
        assert!(at_debug[0].contains("\"requestId\""), "{}", at_debug[0]);
    }

    #[test]
    fn the_request_id_is_kept_at_warn_too() {
        let lines = lines("Text", "WARN", || {
            in_an_invocation(|| {
                info!("not written");
                error!("written")
            })
        });
        assert_eq!(
            lines,
            ["ERROR written requestId=8476a536-e9f4-11e8-9739-2dfe598c3fcd"]
        );
    }

    #[test]
    fn other_crates_stop_at_info() {
        let lines = lines("Text", "TRACE", || {
            debug!(target: "hyper_util::client", "connection details");
            info!(target: "aws_config", "kept");
            debug!("ours");
        });
        assert_eq!(lines, ["INFO kept", "DEBUG ours"]);
    }

    #[test]
    fn settings_from_lambdas_values() {
        let s = |format, level| Settings::from_values(format, level);
        assert_eq!(s(Some("JSON"), Some("DEBUG")).format, Format::Json);
        assert_eq!(s(Some("json"), None).level, LevelFilter::INFO);
        assert_eq!(s(Some("Text"), Some("FATAL")).level, LevelFilter::ERROR);
        assert_eq!(s(None, Some("warn")).format, Format::Text);
        assert_eq!(
            s(None, Some("event_recorder=debug")).level,
            LevelFilter::INFO
        );
    }
}
