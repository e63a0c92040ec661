//! A decrypted message body, parsed as an event and routed.
//!
//! Beyond not panicking: a parsed timestamp is in whole microseconds with no
//! leap second (PostgreSQL's form, which duplicate detection relies on), text
//! and an already-parsed tree get the same error, and no error repeats a
//! value. The seed corpus puts `PERSONAL` in its values; errors may name keys
//! (paths), so the check is skipped when a key holds it.

#![no_main]

use chrono::Timelike;
use event_recorder::event::Event;
use event_recorder::route::route;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const MARKER: &str = "PERSONAL";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let tree: Option<Value> = serde_json::from_str(text).ok();
    let quiet = |message: String| {
        if !tree.as_ref().is_some_and(key_holds_marker) {
            assert!(!message.contains(MARKER), "an error repeats a value");
        }
    };
    let parsed = Event::parse(text);
    if let Some(tree) = tree.clone() {
        assert_eq!(
            parsed.as_ref().err(),
            Event::from_value(tree).err().as_ref()
        );
    }
    match parsed {
        Err(e) => quiet(format!("{e} {e:?}")),
        Ok(event) => {
            let nanos = event.timestamp.nanosecond();
            assert!(nanos < 1_000_000_000 && nanos % 1_000 == 0);
            match route(event) {
                Ok(record) => {
                    assert!(record.extra.is_none() || record.event.event_type == "session_event")
                }
                Err(e) => quiet(format!("{e} {e:?}")),
            }
        }
    }
});

fn key_holds_marker(value: &Value) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| k.contains(MARKER) || key_holds_marker(v)),
        Value::Array(items) => items.iter().any(key_holds_marker),
        _ => false,
    }
}
