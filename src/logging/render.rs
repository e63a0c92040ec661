//! One log line as text: JSON with Lambda's own keys, or `key=value` text.
//! Pure functions, so the exact bytes are unit-tested.

use std::fmt::Write as _;

use tracing::Level;

/// The key of a field that holds a CloudWatch Embedded Metric Format
/// directive, as JSON text: the JSON line embeds it as an object, and a line
/// that has one is written as JSON whatever the format (CloudWatch reads
/// metrics only from JSON lines).
pub const EMF_KEY: &str = "_aws";

/// The keys every JSON line starts with; a field of the same name is
/// written as `field.<name>` so no key appears twice.
const STANDARD_KEYS: [&str; 4] = ["timestamp", "level", "message", "requestId"];

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Written as a JSON string (quoted in text only when it must be).
    Text(String),
    /// A number or a boolean, already rendered; written bare.
    Bare(String),
}

/// What a line says.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    pub level: Level,
    pub message: &'a str,
    pub fields: &'a [(&'static str, Value)],
    /// The Lambda invocation the line belongs to, if any.
    pub request_id: Option<&'a str>,
}

impl Line<'_> {
    fn emf(&self) -> Option<&str> {
        self.fields.iter().find_map(|(k, v)| match v {
            Value::Text(json) if *k == EMF_KEY => Some(json.as_str()),
            _ => None,
        })
    }

    /// `{"timestamp":...,"level":...,"message":...,"requestId":...,<fields>}`
    /// and a newline. `timestamp` is RFC 3339 (Lambda ignores the level of a
    /// line without a valid one).
    pub fn json(&self, timestamp: &str) -> String {
        let mut out = String::with_capacity(160);
        out.push_str("{\"timestamp\":");
        push_json_string(&mut out, timestamp);
        out.push_str(",\"level\":\"");
        out.push_str(self.level.as_str());
        out.push_str("\",\"message\":");
        push_json_string(&mut out, self.message);
        if let Some(id) = self.request_id {
            out.push_str(",\"requestId\":");
            push_json_string(&mut out, id);
        }
        for (key, value) in self.fields {
            out.push(',');
            if STANDARD_KEYS.contains(key) {
                push_json_string(&mut out, &format!("field.{key}"));
            } else {
                push_json_string(&mut out, key);
            }
            out.push(':');
            match value {
                Value::Text(json) if *key == EMF_KEY => push_embedded_json(&mut out, json),
                Value::Text(text) => push_json_string(&mut out, text),
                Value::Bare(bare) => out.push_str(bare),
            }
        }
        out.push_str("}\n");
        out
    }

    /// `LEVEL message key=value ... requestId=...` and a newline; a value is
    /// quoted (with escapes) when it is empty or holds a space, a quote, an
    /// `=` or a control character, so a line stays one line. A line with an
    /// EMF directive is written as JSON instead.
    pub fn text(&self, timestamp: &str) -> String {
        if self.emf().is_some() {
            return self.json(timestamp);
        }
        let mut out = String::with_capacity(120);
        out.push_str(self.level.as_str());
        out.push(' ');
        push_text_value(&mut out, self.message, false);
        for (key, value) in self.fields {
            out.push(' ');
            out.push_str(key);
            out.push('=');
            match value {
                Value::Text(text) => push_text_value(&mut out, text, true),
                Value::Bare(bare) => out.push_str(bare),
            }
        }
        if let Some(id) = self.request_id {
            out.push_str(" requestId=");
            push_text_value(&mut out, id, true);
        }
        out.push('\n');
        out
    }
}

fn push_json_string(out: &mut String, text: &str) {
    // Serializing a str cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

/// A JSON value given as text, re-serialized (so the line stays valid JSON
/// and on one line); a string if it is not JSON.
fn push_embedded_json(out: &mut String, json: &str) {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(value) => {
            let _ = write!(out, "{value}");
        }
        Err(_) => push_json_string(out, json),
    }
}

/// A message is written as it is unless it holds a control character; a
/// field's value is also quoted when it is empty or holds a space, a quote
/// or an `=`.
fn push_text_value(out: &mut String, text: &str, is_field: bool) {
    let quote = text.chars().any(char::is_control)
        || (is_field && (text.is_empty() || text.contains([' ', '"', '='])));
    if quote {
        let _ = write!(out, "{text:?}");
    } else {
        out.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Vec<(&'static str, Value)> {
        vec![
            ("message_id", Value::Text("m-1".into())),
            ("error", Value::Text("invalid event: `x` is \"bad\"".into())),
            ("count", Value::Bare("3".into())),
        ]
    }

    #[test]
    fn json_has_lambdas_keys_then_the_fields_flat() {
        let fields = fields();
        let line = Line {
            level: Level::ERROR,
            message: "failed",
            fields: &fields,
            request_id: Some("r-1"),
        };
        let text = line.json("2026-11-28T12:00:00.000Z");
        assert_eq!(
            text,
            "{\"timestamp\":\"2026-11-28T12:00:00.000Z\",\"level\":\"ERROR\",\
             \"message\":\"failed\",\"requestId\":\"r-1\",\"message_id\":\"m-1\",\
             \"error\":\"invalid event: `x` is \\\"bad\\\"\",\"count\":3}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["count"], 3);
    }

    #[test]
    fn text_quotes_only_what_needs_it() {
        let fields = fields();
        let line = Line {
            level: Level::WARN,
            message: "duplicate: already stored, skipped",
            fields: &fields,
            request_id: Some("r-1"),
        };
        assert_eq!(
            line.text("unused"),
            "WARN duplicate: already stored, skipped message_id=m-1 \
             error=\"invalid event: `x` is \\\"bad\\\"\" count=3 requestId=r-1\n"
        );
    }

    #[test]
    fn a_line_stays_one_line() {
        let fields = vec![("error", Value::Text("first\nsecond".into()))];
        let line = Line {
            level: Level::ERROR,
            message: "two\nlines",
            fields: &fields,
            request_id: None,
        };
        for text in [line.text("t"), line.json("t")] {
            assert_eq!(text.matches('\n').count(), 1, "{text}");
            assert!(text.ends_with('\n'));
        }
    }

    #[test]
    fn a_field_named_like_a_standard_key_is_renamed() {
        let fields = vec![("level", Value::Text("x".into()))];
        let line = Line {
            level: Level::INFO,
            message: "m",
            fields: &fields,
            request_id: None,
        };
        let parsed: serde_json::Value = serde_json::from_str(&line.json("t")).unwrap();
        assert_eq!(
            (&parsed["level"], &parsed["field.level"]),
            (&"INFO".into(), &"x".into())
        );
    }

    #[test]
    fn an_emf_directive_is_embedded_and_makes_the_line_json() {
        let fields = vec![
            (EMF_KEY, Value::Text(r#"{"Timestamp": 1}"#.into())),
            ("Stored", Value::Bare("10".into())),
        ];
        let line = Line {
            level: Level::INFO,
            message: "batch recorded",
            fields: &fields,
            request_id: Some("r"),
        };
        let text = line.text("2026-11-28T12:00:00.000Z");
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["_aws"]["Timestamp"], 1);
        assert_eq!(parsed["Stored"], 10);
        assert_eq!(text, line.json("2026-11-28T12:00:00.000Z"));
    }
}
