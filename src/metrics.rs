//! One CloudWatch Embedded Metric Format line per SQS invocation, on stdout:
//! CloudWatch turns it into metrics operators can alarm on, with no API
//! call and no extra permission. Namespace from `METRICS_NAMESPACE`
//! (default `EventRecorder`, `none` turns the line off); one dimension,
//! `FunctionName`, from Lambda's `AWS_LAMBDA_FUNCTION_NAME`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

pub const DEFAULT_NAMESPACE: &str = "EventRecorder";

/// What one invocation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Invocation {
    pub batch_size: usize,
    pub stored: usize,
    pub duplicates: usize,
    pub failed: usize,
    pub database_time: Duration,
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

    /// The EMF line for one invocation.
    pub fn line(&self, at: SystemTime, i: &Invocation) -> String {
        let millis = at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let count = |name: &str| json!({ "Name": name, "Unit": "Count" });
        json!({
            "_aws": {
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
                    ],
                }],
            },
            "FunctionName": self.function_name,
            "BatchSize": i.batch_size,
            "Stored": i.stored,
            "Duplicates": i.duplicates,
            "Failed": i.failed,
            "DatabaseTime": i.database_time.as_secs_f64() * 1000.0,
        })
        .to_string()
    }

    pub fn emit(&self, i: &Invocation) {
        println!("{}", self.line(SystemTime::now(), i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_names_its_metrics_and_values() {
        let m = Metrics::new(Some("Audit"), Some("recorder")).unwrap();
        let i = Invocation {
            batch_size: 10,
            stored: 7,
            duplicates: 2,
            failed: 1,
            database_time: Duration::from_micros(12_500),
        };
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let line: serde_json::Value = serde_json::from_str(&m.line(at, &i)).unwrap();
        assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_123u64);
        let spec = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], "Audit");
        assert_eq!(spec["Dimensions"], json!([["FunctionName"]]));
        for name in [
            "BatchSize",
            "Stored",
            "Duplicates",
            "Failed",
            "DatabaseTime",
        ] {
            assert!(
                spec["Metrics"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["Name"] == name),
                "{name}"
            );
            assert!(line.get(name).is_some(), "{name} has a value");
        }
        assert_eq!(
            (&line["FunctionName"], &line["Stored"], &line["Failed"]),
            (&json!("recorder"), &json!(7), &json!(1))
        );
        assert_eq!(line["DatabaseTime"], 12.5);
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
