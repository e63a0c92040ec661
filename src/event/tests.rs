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
                btree_map(key(), inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
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
        (field(kind), fields, btree_map(key(), json(), 0..3)).prop_map(|(kind, fields, extra)| {
            let mut map: Map<String, Value> = extra.into_iter().collect();
            map.extend(
                DETAIL_FIELDS
                    .iter()
                    .zip(fields)
                    .filter_map(|(k, v)| Some((k.to_string(), v?))),
            );
            map.extend(kind.map(|v| ("session_event_type".to_owned(), v)));
            Value::Object(map)
        })
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

    fn assert_quiet<E: std::fmt::Display + std::fmt::Debug>(e: &E) -> Result<(), TestCaseError> {
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
