//! The SQS recorder's one line per invocation: what became of the batch
//! (`BatchSize`, `Stored`, `Duplicates`, `Failed` and `DatabaseTime` in ms),
//! the reconnections it needed by cause (`ReconnectsDead`: a kept connection
//! was dead; `ReconnectsReadOnly`: the server took no writes, as after a
//! failover) and, in the same line, a CloudWatch Embedded Metric Format directive
//! (`_aws`) that makes those fields metrics, with no API call and no extra
//! permission. One line rather than a log line and a metrics line: each
//! byte is billed.
//!
//! Namespace from `METRICS_NAMESPACE` (default `EventRecorder`; `none` drops
//! the directive, and the line is still written); one dimension,
//! `FunctionName`, from Lambda's `AWS_LAMBDA_FUNCTION_NAME`. The line is
//! INFO: Lambda drops it, and the metrics with it, at a WARN or ERROR
//! application log level.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tracing::info;

use crate::database::Reconnects;

pub const DEFAULT_NAMESPACE: &str = "EventRecorder";

/// The message of the summary line.
pub const SUMMARY: &str = "batch recorded";

/// What one invocation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Invocation {
    pub batch_size: usize,
    pub stored: usize,
    pub duplicates: usize,
    pub failed: usize,
    pub database_time: Duration,
    pub reconnects: Reconnects,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    namespace: String,
    function_name: String,
}

impl Metrics {
    /// `None` when turned off.
    pub fn new(namespace: Option<&str>, function_name: Option<&str>) -> Option<Self> {
        let namespace = namespace.unwrap_or(DEFAULT_NAMESPACE);
        (namespace != "none").then(|| Self {
            namespace: namespace.to_owned(),
            function_name: function_name.unwrap_or("event-recorder").to_owned(),
        })
    }

    /// The `_aws` object: which of the line's fields are metrics, in what
    /// namespace and unit, and by which dimension.
    pub fn directive(&self, at: SystemTime) -> String {
        let millis = at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let count = |name: &str| json!({ "Name": name, "Unit": "Count" });
        json!({
            "Timestamp": millis,
            "CloudWatchMetrics": [{
                "Namespace": self.namespace,
                "Dimensions": [["FunctionName"]],
                "Metrics": [
                    count("BatchSize"),
                    count("Stored"),
                    count("Duplicates"),
                    count("Failed"),
                    { "Name": "DatabaseTime", "Unit": "Milliseconds" },
                    count("ReconnectsDead"),
                    count("ReconnectsReadOnly"),
                ],
            }],
        })
        .to_string()
    }
}

/// Logs the summary line of one invocation, with the metrics directive
/// when metrics are on.
pub fn log_summary(i: &Invocation, metrics: Option<&Metrics>) {
    // Microseconds are plenty, and shorter to write than a full f64.
    let database_ms = i.database_time.as_micros() as f64 / 1000.0;
    match metrics {
        Some(m) => info!(
            _aws = m.directive(SystemTime::now()),
            FunctionName = m.function_name.as_str(),
            BatchSize = i.batch_size,
            Stored = i.stored,
            Duplicates = i.duplicates,
            Failed = i.failed,
            DatabaseTime = database_ms,
            ReconnectsDead = i.reconnects.dead,
            ReconnectsReadOnly = i.reconnects.read_only,
            "{SUMMARY}"
        ),
        None => info!(
            BatchSize = i.batch_size,
            Stored = i.stored,
            Duplicates = i.duplicates,
            Failed = i.failed,
            DatabaseTime = database_ms,
            ReconnectsDead = i.reconnects.dead,
            ReconnectsReadOnly = i.reconnects.read_only,
            "{SUMMARY}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::{self, Settings};

    fn invocation() -> Invocation {
        Invocation {
            batch_size: 10,
            stored: 7,
            duplicates: 2,
            failed: 1,
            database_time: Duration::from_micros(12_500),
            reconnects: Reconnects {
                dead: 1,
                read_only: 2,
            },
        }
    }

    #[test]
    fn the_directive_names_the_metrics() {
        let m = Metrics::new(Some("Audit"), Some("recorder")).unwrap();
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let directive: serde_json::Value = serde_json::from_str(&m.directive(at)).unwrap();
        assert_eq!(directive["Timestamp"], 1_700_000_000_123u64);
        let spec = &directive["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], "Audit");
        assert_eq!(spec["Dimensions"], json!([["FunctionName"]]));
        let names: Vec<&str> = spec["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "BatchSize",
                "Stored",
                "Duplicates",
                "Failed",
                "DatabaseTime",
                "ReconnectsDead",
                "ReconnectsReadOnly"
            ]
        );
    }

    /// The summary and the metrics are one line, whatever the log format:
    /// a JSON object whose fields are the metrics' values.
    #[test]
    fn one_line_is_the_summary_and_the_metrics() {
        let m = Metrics::new(Some("Audit"), Some("recorder")).unwrap();
        for format in ["JSON", "Text"] {
            let settings = Settings::from_values(Some(format), None);
            let out = logging::capture(settings, || log_summary(&invocation(), Some(&m)));
            assert_eq!(out.lines().count(), 1, "{out}");
            let line: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(line["message"], SUMMARY);
            assert_eq!(line["level"], "INFO");
            assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Audit");
            assert_eq!(line["FunctionName"], "recorder");
            for (name, value) in [
                ("BatchSize", json!(10)),
                ("Stored", json!(7)),
                ("Duplicates", json!(2)),
                ("Failed", json!(1)),
                ("DatabaseTime", json!(12.5)),
                ("ReconnectsDead", json!(1)),
                ("ReconnectsReadOnly", json!(2)),
            ] {
                assert_eq!(line[name], value, "{name} in {out}");
            }
        }
    }

    #[test]
    fn without_metrics_the_summary_is_still_written() {
        let text = logging::capture(Settings::from_values(None, None), || {
            log_summary(&invocation(), None)
        });
        assert_eq!(
            text,
            "INFO batch recorded BatchSize=10 Stored=7 Duplicates=2 Failed=1 DatabaseTime=12.5 ReconnectsDead=1 ReconnectsReadOnly=2\n"
        );
        let json = logging::capture(Settings::from_values(Some("JSON"), None), || {
            log_summary(&invocation(), None)
        });
        let line: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(line.get("_aws").is_none() && line.get("FunctionName").is_none());
        assert_eq!(line["Stored"], 7);
    }

    #[test]
    fn on_by_default_and_off_with_none() {
        assert_eq!(
            Metrics::new(None, None).unwrap().namespace,
            DEFAULT_NAMESPACE
        );
        assert!(Metrics::new(Some("none"), None).is_none());
    }
}
