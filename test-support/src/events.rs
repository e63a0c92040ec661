//! Test events and the encrypted message bodies that carry them.

use event_recorder::{DataKey, Message};
use serde_json::{Value, json};

/// The AES-256 key the tests encrypt with (base64 below, for env vars).
pub const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub fn key() -> DataKey {
    DataKey::from_base64(KEY_B64).unwrap()
}

pub fn audit_event(id: &str) -> Value {
    json!({
        "eventId": id,
        "eventType": "session_event",
        "timestamp": 1518264000000i64,
        "originatingService": "saml-engine",
        "sessionId": format!("session-{id}"),
        "details": {"session_event_type": "session_started", "note": "ünïcode ✓"},
    })
}

pub fn billing_event(id: &str) -> Value {
    let mut e = audit_event(id);
    e["details"] = json!({
        "session_event_type": "idp_authn_succeeded",
        "pid": format!("pid-{id}"),
        "request_id": format!("req-{id}"),
        "idp_entity_id": "https://idp.example",
        "minimum_level_of_assurance": "LEVEL_1",
        "provided_level_of_assurance": "LEVEL_2",
        "transaction_entity_id": "https://rp.example",
    });
    e
}

pub fn fraud_event(id: &str) -> Value {
    let mut e = audit_event(id);
    e["details"] = json!({
        "session_event_type": "fraud_detected",
        "pid": format!("pid-{id}"),
        "request_id": format!("req-{id}"),
        "idp_entity_id": "https://idp.example",
        "idp_fraud_event_id": format!("fraud-{id}"),
        "gpg45_status": "IT01",
        "transaction_entity_id": "https://rp.example",
    });
    e
}

/// The `n`th event of a realistic mix: 15% billing, 5% fraud, the rest
/// audit only.
pub fn mixed_event(id: &str, n: usize) -> Value {
    match n % 20 {
        0..=2 => billing_event(id),
        3 => fraud_event(id),
        _ => audit_event(id),
    }
}

pub fn encrypt(event: &Value) -> String {
    key().encrypt(event.to_string().as_bytes())
}

/// Owned (message id, body) pairs; `messages()` borrows them for a batch.
#[derive(Default, Clone)]
pub struct Batch(pub Vec<(String, String)>);

impl Batch {
    pub fn event(mut self, message_id: &str, event: &Value) -> Self {
        self.0.push((message_id.into(), encrypt(event)));
        self
    }

    pub fn raw(mut self, message_id: &str, body: impl Into<String>) -> Self {
        self.0.push((message_id.into(), body.into()));
        self
    }

    pub fn messages(&self) -> Vec<Message<'_>> {
        self.0
            .iter()
            .map(|(id, body)| Message { id, body })
            .collect()
    }
}

impl Batch {
    /// The batch as the SQS event Lambda delivers.
    pub fn sqs_event(&self) -> Value {
        let records: Vec<Value> = self
            .0
            .iter()
            .map(|(id, body)| {
                json!({
                    "messageId": id,
                    "receiptHandle": format!("receipt-{id}"),
                    "body": body,
                    "attributes": {
                        "ApproximateReceiveCount": "1",
                        "SentTimestamp": "1518264000000",
                        "SenderId": "AIDAEXAMPLE",
                        "ApproximateFirstReceiveTimestamp": "1518264000001"
                    },
                    "messageAttributes": {},
                    "md5OfBody": "",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:eu-west-2:123456789012:event-recorder",
                    "awsRegion": "eu-west-2"
                })
            })
            .collect();
        json!({ "Records": records })
    }
}
