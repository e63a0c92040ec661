//! Which tables an event goes to, and the columns of its billing or fraud row.

use serde_json::{Map, Value};

use crate::event::Event;

/// A validated event with the extra row it routes to, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub event: Event,
    pub extra: Option<ExtraRow>,
}

/// The row beside the audit row, from `details`. `event_id`, `time_stamp`
/// and `session_id` come from the event itself.
#[derive(Debug, Clone, PartialEq)]
pub enum ExtraRow {
    Billing(BillingRow),
    Fraud(FraudRow),
}

/// `billing.billing_events`
#[derive(Debug, Clone, PartialEq)]
pub struct BillingRow {
    pub hashed_persistent_id: String,
    pub request_id: String,
    pub idp_entity_id: String,
    pub minimum_level_of_assurance: String,
    pub preferred_level_of_assurance: Option<String>,
    pub provided_level_of_assurance: String,
    pub transaction_entity_id: Option<String>,
}

/// `billing.fraud_events`
#[derive(Debug, Clone, PartialEq)]
pub struct FraudRow {
    pub hashed_persistent_id: String,
    pub request_id: Option<String>,
    pub entity_id: String,
    pub fraud_event_id: String,
    pub fraud_indicator: String,
    pub transaction_entity_id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("{kind} event is missing `details.{field}`")]
    MissingDetail {
        kind: &'static str,
        field: &'static str,
    },
    #[error("{kind} event has a non-string `details.{field}`")]
    DetailNotString {
        kind: &'static str,
        field: &'static str,
    },
}

const SESSION_EVENT: &str = "session_event";
const BILLABLE: &str = "idp_authn_succeeded";
const FRAUD: &str = "fraud_detected";

/// Routes an event: every event gets an audit row; session events of the
/// billable or fraud kind also get a row built from `details`.
pub fn route(event: Event) -> Result<Record, RouteError> {
    let extra = if event.event_type != SESSION_EVENT {
        None
    } else {
        match event
            .details
            .get("session_event_type")
            .and_then(Value::as_str)
        {
            Some(BILLABLE) => Some(ExtraRow::Billing(billing(&Details::new(
                "billing",
                &event.details,
            ))?)),
            Some(FRAUD) => Some(ExtraRow::Fraud(fraud(&Details::new(
                "fraud",
                &event.details,
            ))?)),
            _ => None,
        }
    };
    Ok(Record { event, extra })
}

fn billing(d: &Details) -> Result<BillingRow, RouteError> {
    Ok(BillingRow {
        hashed_persistent_id: d.required("pid")?,
        request_id: d.required("request_id")?,
        idp_entity_id: d.required("idp_entity_id")?,
        minimum_level_of_assurance: d.required("minimum_level_of_assurance")?,
        preferred_level_of_assurance: d.optional("preferred_level_of_assurance")?,
        provided_level_of_assurance: d.required("provided_level_of_assurance")?,
        transaction_entity_id: d.optional("transaction_entity_id")?,
    })
}

fn fraud(d: &Details) -> Result<FraudRow, RouteError> {
    Ok(FraudRow {
        hashed_persistent_id: d.required("pid")?,
        request_id: d.optional("request_id")?,
        entity_id: d.required("idp_entity_id")?,
        fraud_event_id: d.required("idp_fraud_event_id")?,
        fraud_indicator: d.required("gpg45_status")?,
        transaction_entity_id: d.required("transaction_entity_id")?,
    })
}

/// `details` of one kind of event; `null` counts as absent.
struct Details<'a> {
    kind: &'static str,
    map: &'a Map<String, Value>,
}

impl<'a> Details<'a> {
    fn new(kind: &'static str, map: &'a Map<String, Value>) -> Self {
        Self { kind, map }
    }

    fn optional(&self, field: &'static str) -> Result<Option<String>, RouteError> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(RouteError::DetailNotString {
                kind: self.kind,
                field,
            }),
        }
    }

    fn required(&self, field: &'static str) -> Result<String, RouteError> {
        self.optional(field)?.ok_or(RouteError::MissingDetail {
            kind: self.kind,
            field,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(event_type: &str, details: Value) -> Event {
        let text = json!({
            "eventId": "e", "eventType": event_type, "timestamp": 0,
            "originatingService": "hub", "sessionId": "s", "details": details,
        });
        Event::parse(&text.to_string()).unwrap()
    }

    fn billing_details() -> Value {
        json!({
            "session_event_type": "idp_authn_succeeded", "pid": "p", "request_id": "r",
            "idp_entity_id": "i", "minimum_level_of_assurance": "LEVEL_1",
            "provided_level_of_assurance": "LEVEL_2", "transaction_entity_id": "t",
        })
    }

    fn fraud_details() -> Value {
        json!({
            "session_event_type": "fraud_detected", "pid": "p", "request_id": "r",
            "idp_entity_id": "i", "idp_fraud_event_id": "f", "gpg45_status": "IT01",
            "transaction_entity_id": "t",
        })
    }

    #[test]
    fn plain_events_get_only_an_audit_row() {
        assert_eq!(
            route(event("session_event", json!({}))).unwrap().extra,
            None
        );
        // Billing-shaped details on another event type do not bill.
        assert_eq!(
            route(event("other", billing_details())).unwrap().extra,
            None
        );
    }

    #[test]
    fn billing_row_maps_details() {
        let Some(ExtraRow::Billing(row)) = route(event("session_event", billing_details()))
            .unwrap()
            .extra
        else {
            panic!("expected a billing row");
        };
        assert_eq!(row.hashed_persistent_id, "p");
        assert_eq!(row.preferred_level_of_assurance, None);
        assert_eq!(row.transaction_entity_id.as_deref(), Some("t"));
    }

    #[test]
    fn fraud_row_maps_details() {
        let Some(ExtraRow::Fraud(row)) = route(event("session_event", fraud_details()))
            .unwrap()
            .extra
        else {
            panic!("expected a fraud row");
        };
        assert_eq!(
            (row.entity_id.as_str(), row.fraud_event_id.as_str()),
            ("i", "f")
        );
        assert_eq!(row.fraud_indicator, "IT01");
    }

    #[test]
    fn missing_or_mistyped_details_name_the_field() {
        let mut d = billing_details();
        d.as_object_mut()
            .unwrap()
            .remove("provided_level_of_assurance");
        assert_eq!(
            route(event("session_event", d)).unwrap_err(),
            RouteError::MissingDetail {
                kind: "billing",
                field: "provided_level_of_assurance"
            }
        );
        let mut d = fraud_details();
        d["gpg45_status"] = json!(3);
        assert_eq!(
            route(event("session_event", d)).unwrap_err(),
            RouteError::DetailNotString {
                kind: "fraud",
                field: "gpg45_status"
            }
        );
        let mut d = fraud_details();
        d["transaction_entity_id"] = Value::Null;
        assert_eq!(
            route(event("session_event", d)).unwrap_err(),
            RouteError::MissingDetail {
                kind: "fraud",
                field: "transaction_entity_id"
            }
        );
    }
}
