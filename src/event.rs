//! The event JSON: required fields, the timestamp forms, and the values
//! PostgreSQL would refuse, all checked before anything reaches the database.
//!
//! A timestamp is kept as PostgreSQL will hold it: fractions beyond the
//! microsecond are truncated (`.1234567` becomes `.123456`, as the fraud-CSV
//! upload does) and a leap second (`23:59:60.5`) is carried into the next
//! minute. The stored row's key then equals the parsed one, which is how a
//! new row is told from a duplicate.
//!
//! Errors name the field and the rule, never the value: event contents are
//! personal data and must not reach logs through an error message.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Timelike};
use serde_json::{Map, Value};

/// A validated event. `timestamp` is UTC, in whole microseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: String,
    pub event_type: String,
    pub timestamp: NaiveDateTime,
    pub originating_service: String,
    pub session_id: String,
    pub details: Map<String, Value>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("event is not valid JSON: {0}")]
    NotJson(String),
    #[error("event JSON is not an object")]
    NotAnObject,
    #[error("required field `{0}` is missing")]
    MissingField(&'static str),
    #[error("field `{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("`timestamp` is not an ISO 8601 date-time with a UTC offset or `Z`")]
    BadTimestamp,
    #[error("`timestamp` is outside the range PostgreSQL can store")]
    TimestampOutOfRange,
    #[error("`{0}` contains a NUL character, which PostgreSQL cannot store")]
    NulCharacter(String),
}

/// `error_event`s may omit `sessionId`; it is then stored as "".
const SESSIONLESS_EVENT_TYPE: &str = "error_event";

impl Event {
    pub fn parse(text: &str) -> Result<Self, EventError> {
        // Parse to a tree first: serde's typed errors would quote values.
        let value: Value =
            serde_json::from_str(text).map_err(|e| EventError::NotJson(syntax_only(&e)))?;
        Self::from_value(value)
    }

    /// The same checks on JSON already parsed (the S3 import's `document`).
    pub fn from_value(value: Value) -> Result<Self, EventError> {
        let Value::Object(mut root) = value else {
            return Err(EventError::NotAnObject);
        };
        if let Some(path) = find_nul(&root, "") {
            return Err(EventError::NulCharacter(path));
        }
        let event_id = take_string(&mut root, "eventId")?;
        let event_type = take_string(&mut root, "eventType")?;
        let originating_service = take_string(&mut root, "originatingService")?;
        let session_id = match take_string(&mut root, "sessionId") {
            Err(EventError::MissingField(_)) if event_type == SESSIONLESS_EVENT_TYPE => {
                String::new()
            }
            other => other?,
        };
        let timestamp = parse_timestamp(root.remove("timestamp"))?;
        let details = match root.remove("details") {
            Some(Value::Object(map)) => map,
            None | Some(Value::Null) => return Err(EventError::MissingField("details")),
            Some(_) => {
                return Err(EventError::WrongType {
                    field: "details",
                    expected: "a JSON object",
                });
            }
        };
        Ok(Event {
            event_id,
            event_type,
            timestamp,
            originating_service,
            session_id,
            details,
        })
    }
}

/// serde_json's syntax errors carry positions, not content; keep only those.
pub(crate) fn syntax_only(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

fn take_string(root: &mut Map<String, Value>, field: &'static str) -> Result<String, EventError> {
    match root.remove(field) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(EventError::MissingField(field)),
        Some(_) => Err(EventError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

/// Epoch milliseconds (integer) or an RFC 3339 / ISO 8601 string with offset.
fn parse_timestamp(value: Option<Value>) -> Result<NaiveDateTime, EventError> {
    let utc = match value {
        None | Some(Value::Null) => return Err(EventError::MissingField("timestamp")),
        Some(Value::Number(n)) => {
            let millis = n.as_i64().ok_or(if n.is_f64() {
                EventError::WrongType {
                    field: "timestamp",
                    expected: "whole milliseconds since the Unix epoch or an ISO 8601 string",
                }
            } else {
                EventError::TimestampOutOfRange
            })?;
            DateTime::from_timestamp_millis(millis).ok_or(EventError::TimestampOutOfRange)?
        }
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s.trim())
            .map_err(|_| EventError::BadTimestamp)?
            .to_utc(),
        Some(_) => {
            return Err(EventError::WrongType {
                field: "timestamp",
                expected: "whole milliseconds since the Unix epoch or an ISO 8601 string",
            });
        }
    };
    let naive = whole_microseconds(utc.naive_utc()).ok_or(EventError::TimestampOutOfRange)?;
    // PostgreSQL's `timestamp` starts at 4714-11-24 BC (proleptic Gregorian,
    // astronomical year -4713); its upper end is beyond chrono's.
    let earliest = NaiveDate::from_ymd_opt(-4713, 11, 24)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("constant date");
    if naive < earliest {
        return Err(EventError::TimestampOutOfRange);
    }
    Ok(naive)
}

/// `t` as PostgreSQL stores it: the fraction truncated to whole microseconds
/// (never rounded, so a time stays in its second) and chrono's leap second
/// (second 59 with a fraction of 1 s or more) carried into the next minute,
/// as its wire encoding, a count of microseconds, carries it.
fn whole_microseconds(t: NaiveDateTime) -> Option<NaiveDateTime> {
    const SECOND: u32 = 1_000_000_000;
    let (t, nanos) = match t.nanosecond() {
        n if n >= SECOND => (
            t.with_nanosecond(0)?
                .checked_add_signed(TimeDelta::seconds(1))?,
            n - SECOND,
        ),
        n => (t, n),
    };
    t.with_nanosecond(nanos / 1_000 * 1_000)
}

/// Path of the first string or key holding U+0000 (PostgreSQL's text and
/// jsonb both refuse it), or `None`.
fn find_nul(map: &Map<String, Value>, prefix: &str) -> Option<String> {
    map.iter().find_map(|(key, value)| {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if key.contains('\0') {
            return Some(prefix_or_root(prefix));
        }
        nul_in_value(value, &path)
    })
}

fn nul_in_value(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(path.to_owned()),
        Value::Object(map) => find_nul(map, path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_in_value(v, &format!("{path}[{i}]"))),
        _ => None,
    }
}

fn prefix_or_root(prefix: &str) -> String {
    if prefix.is_empty() {
        "a key of the event".to_owned()
    } else {
        format!("a key of {prefix}")
    }
}

#[cfg(test)]
mod tests;
