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
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "eventId": "e-1",
            "eventType": "session_event",
            "timestamp": 1518264000000i64,
            "originatingService": "hub",
            "sessionId": "s-1",
            "details": {"session_event_type": "x"}
        })
    }

    fn parse(v: &Value) -> Result<Event, EventError> {
        Event::parse(&v.to_string())
    }

    fn with(field: &str, value: Value) -> Value {
        let mut v = base();
        v[field] = value;
        v
    }

    fn without(field: &str) -> Value {
        let mut v = base();
        v.as_object_mut().unwrap().remove(field);
        v
    }

    fn utc(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap()
    }

    #[test]
    fn parses_every_field() {
        let e = parse(&base()).unwrap();
        assert_eq!(e.event_id, "e-1");
        assert_eq!(e.event_type, "session_event");
        assert_eq!(e.timestamp, utc("2018-02-10 12:00:00"));
        assert_eq!(e.originating_service, "hub");
        assert_eq!(e.session_id, "s-1");
        assert_eq!(e.details["session_event_type"], "x");
    }

    #[test]
    fn timestamp_forms_are_stored_as_utc() {
        for (given, want) in [
            (json!("2018-02-10T12:00:00Z"), "2018-02-10 12:00:00"),
            (
                json!("2018-02-10T13:30:00.250+01:30"),
                "2018-02-10 12:00:00.250",
            ),
            (json!("2018-02-10T07:00:00-05:00"), "2018-02-10 12:00:00"),
            (json!(1518264000123i64), "2018-02-10 12:00:00.123"),
            (json!(-1000), "1969-12-31 23:59:59"),
        ] {
            assert_eq!(
                parse(&with("timestamp", given)).unwrap().timestamp,
                utc(want)
            );
        }
    }

    #[test]
    fn fractions_are_truncated_to_microseconds() {
        for (given, want) in [
            ("2018-02-10T12:00:00.1234567Z", "2018-02-10 12:00:00.123456"),
            (
                "2018-02-10T12:00:00.123456789Z",
                "2018-02-10 12:00:00.123456",
            ),
            (
                "2018-02-10T13:00:00.999999999+01:00",
                "2018-02-10 12:00:00.999999",
            ),
            // Before the epoch too: the fraction is cut, the second is kept.
            ("1969-12-31T23:59:59.0000009Z", "1969-12-31 23:59:59"),
            ("2018-02-10T12:00:00.000000999Z", "2018-02-10 12:00:00"),
        ] {
            let parsed = parse(&with("timestamp", json!(given))).unwrap().timestamp;
            assert_eq!(parsed, utc(want), "{given}");
            assert_eq!(parsed.nanosecond() % 1_000, 0, "{given}");
        }
    }

    #[test]
    fn leap_second_runs_into_the_next_minute() {
        for (given, want) in [
            ("2016-12-31T23:59:60Z", "2017-01-01 00:00:00"),
            ("2016-12-31T23:59:60.5000001Z", "2017-01-01 00:00:00.5"),
            ("2017-01-01T00:59:60.25+01:00", "2017-01-01 00:00:00.25"),
        ] {
            let parsed = parse(&with("timestamp", json!(given))).unwrap().timestamp;
            assert_eq!(parsed, utc(want), "{given}");
            assert!(parsed.nanosecond() < 1_000_000_000, "{given}");
        }
    }

    #[test]
    fn bad_timestamps() {
        let wrong_type = |v| parse(&with("timestamp", v)).unwrap_err();
        assert!(matches!(
            wrong_type(json!(1.5)),
            EventError::WrongType {
                field: "timestamp",
                ..
            }
        ));
        assert!(matches!(
            wrong_type(json!(true)),
            EventError::WrongType {
                field: "timestamp",
                ..
            }
        ));
        assert_eq!(
            wrong_type(json!("2018-02-10T12:00:00")),
            EventError::BadTimestamp
        );
        assert_eq!(wrong_type(json!("yesterday")), EventError::BadTimestamp);
        assert_eq!(wrong_type(json!(u64::MAX)), EventError::TimestampOutOfRange);
        assert_eq!(wrong_type(json!(i64::MIN)), EventError::TimestampOutOfRange);
        // Year 5000 BC: chrono holds it, PostgreSQL does not.
        assert_eq!(
            wrong_type(json!(-219_900_000_000_000i64)),
            EventError::TimestampOutOfRange
        );
        assert_eq!(
            parse(&without("timestamp")).unwrap_err(),
            EventError::MissingField("timestamp")
        );
    }

    #[test]
    fn each_required_field() {
        for field in [
            "eventId",
            "eventType",
            "originatingService",
            "sessionId",
            "details",
        ] {
            assert_eq!(
                parse(&without(field)).unwrap_err(),
                EventError::MissingField(field),
                "{field}"
            );
        }
        assert_eq!(
            parse(&with("eventId", json!(7))).unwrap_err(),
            EventError::WrongType {
                field: "eventId",
                expected: "a string"
            }
        );
        assert!(matches!(
            parse(&with("details", json!("x"))).unwrap_err(),
            EventError::WrongType {
                field: "details",
                ..
            }
        ));
    }

    #[test]
    fn error_event_may_omit_session_id() {
        let mut v = without("sessionId");
        v["eventType"] = json!("error_event");
        assert_eq!(parse(&v).unwrap().session_id, "");
    }

    #[test]
    fn not_json_or_not_object() {
        assert!(matches!(
            Event::parse("{\"eventId\":"),
            Err(EventError::NotJson(_))
        ));
        assert_eq!(Event::parse("[1]").unwrap_err(), EventError::NotAnObject);
    }

    #[test]
    fn nul_characters_are_refused_with_their_path() {
        let nul = |v: Value| parse(&v).unwrap_err();
        assert_eq!(
            nul(with("eventId", json!("a\u{0}b"))),
            EventError::NulCharacter("eventId".into())
        );
        assert_eq!(
            nul(with("details", json!({"list": ["ok", {"deep": "\u{0}"}]}))),
            EventError::NulCharacter("details.list[1].deep".into())
        );
        assert_eq!(
            nul(with("details", json!({"k\u{0}": 1}))),
            EventError::NulCharacter("a key of details".into())
        );
    }

    #[test]
    fn errors_never_quote_values() {
        let secret = "personal-data-123";
        let bad = [
            format!("{{\"eventId\": \"{secret}\", \"timestamp\": \"{secret}\""),
            with("timestamp", json!(secret)).to_string(),
            with("eventId", json!([secret])).to_string(),
        ];
        for text in bad {
            let message = Event::parse(&text).unwrap_err().to_string();
            assert!(!message.contains(secret), "{message}");
        }
    }

    mod properties {
        use super::*;
        use crate::route::{ExtraRow, route};
        use proptest::collection::{btree_map, vec};
        use proptest::prelude::*;

        /// In every generated string value; no error may repeat it.
        const MARKER: &str = "PERSONAL-7f3a";

        const DETAIL_FIELDS: [&str; 9] = [
            "pid",
            "request_id",
            "idp_entity_id",
            "minimum_level_of_assurance",
            "preferred_level_of_assurance",
            "provided_level_of_assurance",
            "transaction_entity_id",
            "idp_fraud_event_id",
            "gpg45_status",
        ];

        fn marked() -> impl Strategy<Value = String> {
            ("\\PC{0,5}", "\\PC{0,5}", prop::bool::weighted(0.005)).prop_map(|(a, b, nul)| {
                let nul = if nul { "\0" } else { "" };
                format!("{a}{MARKER}{nul}{b}")
            })
        }

        /// Keys are field names, which errors may name; values are not.
        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                30 => "[a-z_]{1,8}",
                30 => prop::sample::select(&DETAIL_FIELDS[..]).prop_map(str::to_owned),
                1 => Just("k\0".to_owned()),
            ]
        }

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                marked().prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    vec(inner.clone(), 0..4).prop_map(Value::from),
                    btree_map(key(), inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// Mostly the right shape, sometimes absent, sometimes anything.
        fn field(good: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
            prop_oneof![10 => good.prop_map(Some), 1 => Just(None), 1 => json().prop_map(Some)]
        }

        fn timestamp() -> impl Strategy<Value = Value> {
            prop_oneof![
                1 => any::<i64>().prop_map(Value::from),
                3 => (-62_000_000_000_000i64..300_000_000_000_000).prop_map(Value::from),
                4 => concat!(
                    "[0-9]{4}-[01][0-9]-[0-3][0-9][T ][0-2][0-9]:[0-5][0-9]:[0-6][0-9]",
                    "(\\.[0-9]{1,12})?(Z|z|[+-][01][0-9]:[0-5][0-9])"
                )
                .prop_map(Value::from),
                1 => marked().prop_map(Value::from),
            ]
        }

        fn details() -> impl Strategy<Value = Value> {
            let kind = prop_oneof![
                3 => Just(Value::from("idp_authn_succeeded")),
                3 => Just(Value::from("fraud_detected")),
                1 => marked().prop_map(Value::from),
            ];
            let fields = DETAIL_FIELDS.map(|_| field(marked().prop_map(Value::from)));
            (field(kind), fields, btree_map(key(), json(), 0..3)).prop_map(
                |(kind, fields, extra)| {
                    let mut map: Map<String, Value> = extra.into_iter().collect();
                    map.extend(
                        DETAIL_FIELDS
                            .iter()
                            .zip(fields)
                            .filter_map(|(k, v)| Some((k.to_string(), v?))),
                    );
                    map.extend(kind.map(|v| ("session_event_type".to_owned(), v)));
                    Value::Object(map)
                },
            )
        }

        /// Event-shaped objects, each field right, missing or wrong.
        fn event_json() -> impl Strategy<Value = Value> {
            let string = || field(marked().prop_map(Value::from));
            let event_type = prop_oneof![
                4 => Just(Value::from("session_event")),
                1 => Just(Value::from("error_event")),
                1 => marked().prop_map(Value::from),
            ];
            (
                string(),
                field(event_type),
                field(timestamp()),
                string(),
                string(),
                field(details()),
                btree_map(key(), json(), 0..3),
            )
                .prop_map(|(id, kind, time, service, session, details, extra)| {
                    let mut map: Map<String, Value> = extra.into_iter().collect();
                    let named = [
                        ("eventId", id),
                        ("eventType", kind),
                        ("timestamp", time),
                        ("originatingService", service),
                        ("sessionId", session),
                        ("details", details),
                    ];
                    map.extend(
                        named
                            .into_iter()
                            .filter_map(|(k, v)| Some((k.to_owned(), v?))),
                    );
                    Value::Object(map)
                })
        }

        fn assert_quiet<E: std::fmt::Display + std::fmt::Debug>(
            e: &E,
        ) -> Result<(), TestCaseError> {
            for text in [e.to_string(), format!("{e:?}")] {
                prop_assert!(!text.contains(MARKER), "{}", text);
            }
            Ok(())
        }

        /// Parses and routes `text`: it must end in a record (whole
        /// microseconds, the extra row its kind calls for) or in an error
        /// that quotes no value.
        fn parse_and_route(text: &str) -> Result<(), TestCaseError> {
            let event = match Event::parse(text) {
                Ok(event) => event,
                Err(e) => {
                    return assert_quiet(&e);
                }
            };
            let t = event.timestamp;
            prop_assert!(t.nanosecond() < 1_000_000_000 && t.nanosecond() % 1_000 == 0);
            match route(event.clone()) {
                Ok(record) => {
                    prop_assert_eq!(&record.event, &event);
                    if event.event_type != "session_event" {
                        prop_assert_eq!(&record.extra, &None);
                    }
                    let kind = event
                        .details
                        .get("session_event_type")
                        .and_then(Value::as_str);
                    match (&record.extra, kind) {
                        (None, _)
                        | (Some(ExtraRow::Billing(_)), Some("idp_authn_succeeded"))
                        | (Some(ExtraRow::Fraud(_)), Some("fraud_detected")) => {}
                        (extra, kind) => prop_assert!(false, "{:?} routed as {:?}", kind, extra),
                    }
                }
                Err(e) => assert_quiet(&e)?,
            }
            Ok(())
        }

        proptest! {
            #[test]
            fn event_shaped_json_gets_a_record_or_a_quiet_error(value in event_json()) {
                let text = value.to_string();
                parse_and_route(&text)?;
                // Text and a tree already parsed get the same error. (Not the
                // same event: a float in `details` may change in its last
                // digit on the way through text.)
                prop_assert_eq!(Event::parse(&text).err(), Event::from_value(value).err());
            }

            #[test]
            fn any_json_gets_a_record_or_a_quiet_error(value in json()) {
                parse_and_route(&value.to_string())?;
            }

            #[test]
            fn any_text_gets_a_record_or_an_error(text in any::<String>()) {
                parse_and_route(&text)?;
            }

            #[test]
            fn damaged_event_text_gets_a_record_or_a_quiet_error(
                value in event_json(),
                cut in any::<prop::sample::Index>(),
                insert in "\\PC{0,3}",
            ) {
                let text = value.to_string();
                let mut at = cut.index(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                parse_and_route(&format!("{}{insert}", &text[..at]))?;
            }

            #[test]
            fn rfc3339_times_lose_at_most_the_sub_microsecond_part(time in timestamp()) {
                let mut event = base();
                event["timestamp"] = time.clone();
                let (Ok(event), Some(text)) = (parse(&event), time.as_str()) else {
                    return Ok(());
                };
                let exact = DateTime::parse_from_rfc3339(text).unwrap().naive_utc();
                if exact.nanosecond() < 1_000_000_000 {
                    let lost = exact - event.timestamp;
                    prop_assert!(
                        lost >= TimeDelta::zero() && lost < TimeDelta::microseconds(1),
                        "{}",
                        text
                    );
                }
            }
        }
    }
}
