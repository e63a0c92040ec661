//! Where a message becomes a row: decrypt → parse → route → store, for a
//! whole SQS batch, answering which messages failed.
//!
//! Invariants:
//! - every message ends stored (or already stored) or in `failed`; never both,
//!   never neither;
//! - one message is one unit: its audit row and its billing or fraud row are
//!   written in the same transaction;
//! - a bad message never affects the others: every message is validated before
//!   the database is touched, and if the batch write fails, it is split in
//!   halves until only the guilty messages fail.

use tracing::{debug, error, warn};

use crate::crypto::{DataKey, DecryptError};
use crate::database::DbError;
use crate::event::{Event, EventError};
use crate::route::{Record, RouteError, route};
use crate::store::Store;

/// One SQS message as the recorder sees it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub id: &'a str,
    pub body: &'a str,
}

/// Why one message was not stored.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("decryption failed: {0}")]
    Decrypt(#[from] DecryptError),
    #[error("invalid event: {0}")]
    Event(#[from] EventError),
    #[error("invalid event: {0}")]
    Route(#[from] RouteError),
    /// The server's or the network's reason.
    #[error("database write failed: {0}")]
    Store(#[source] DbError),
}

/// The result of one batch. `failed` holds message IDs in input order, and
/// `failures` why each failed, in the same order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchReport {
    pub failed: Vec<String>,
    pub failures: Vec<FailedMessage>,
    pub stored: usize,
    pub duplicates: usize,
    /// Database transactions the batch took (1 when nothing is refused).
    pub transactions: usize,
}

/// Why one message failed, as its log line says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedMessage {
    /// The event's ID, when it decrypted and has one fit for a log line.
    pub event_id: Option<String>,
    pub error: String,
}

impl BatchReport {
    /// One `failed` line per failed message (an operator looks a message up
    /// by its ID). Written by the caller once the batch's outcome is final,
    /// so a batch run again on a new connection logs only what became of it.
    pub fn log_failures(&self) {
        for (id, failure) in self.failed.iter().zip(&self.failures) {
            error!(
                message_id = id.as_str(),
                event_id = failure.event_id.as_deref(),
                error = failure.error.as_str(),
                "failed"
            );
        }
    }
}

pub struct Recorder {
    key: DataKey,
    print_events: bool,
}

impl Recorder {
    pub fn new(key: DataKey) -> Self {
        Self {
            key,
            print_events: false,
        }
    }

    /// Prints each decrypted event as one JSON line on stdout (for a SIEM).
    /// Off by default: events hold personal data.
    pub fn print_decrypted_events(mut self, on: bool) -> Self {
        self.print_events = on;
        self
    }

    /// Everything that can be checked without the database.
    pub fn prepare(&self, body: &str) -> Result<Record, MessageError> {
        self.check(body).map_err(|(_, e)| e)
    }

    /// [`Self::prepare`], with the event ID on failure if the event has a
    /// usable one (for the log line).
    fn check(&self, body: &str) -> Result<Record, (Option<String>, MessageError)> {
        let text = self.key.decrypt(body).map_err(|e| (None, e.into()))?;
        if self.print_events {
            print_one_line(&text);
        }
        let routed = Event::parse(&text)
            .map_err(MessageError::from)
            .and_then(|event| Ok(route(event)?));
        routed.map_err(|e| (event_id_of(&text), e))
    }

    pub async fn record_batch(&self, store: &mut Store, messages: &[Message<'_>]) -> BatchReport {
        let mut report = BatchReport::default();
        let mut valid: Vec<(Message, Record)> = Vec::with_capacity(messages.len());
        for &message in messages {
            match self.check(message.body) {
                Ok(record) => valid.push((message, record)),
                Err((event_id, e)) => fail(&mut report, message, event_id.as_deref(), &e),
            }
        }
        let records: Vec<&Record> = valid.iter().map(|(_, r)| r).collect();
        let writes = write(store, &records).await;
        report.transactions = writes.transactions;
        for ((message, record), written) in valid.iter().zip(writes.results) {
            match written {
                Written::Stored => succeed(&mut report, *message, record, true),
                Written::Duplicate => succeed(&mut report, *message, record, false),
                Written::Refused(e) | Written::Failed(e) => fail(
                    &mut report,
                    *message,
                    Some(&record.event.event_id),
                    &MessageError::Store(e),
                ),
            }
        }
        let position = |id: &String| messages.iter().position(|m| m.id == id);
        let mut failed: Vec<_> = report
            .failed
            .drain(..)
            .zip(report.failures.drain(..))
            .collect();
        failed.sort_by_key(|(id, _)| position(id));
        (report.failed, report.failures) = failed.into_iter().unzip();
        report
    }
}

/// What became of one record of a [`write`].
#[derive(Debug)]
pub enum Written {
    Stored,
    /// Its rows were there already: success, nothing written.
    Duplicate,
    /// The database refused this record alone (a data or constraint error,
    /// or a trigger): retrying it unchanged will not help.
    Refused(DbError),
    /// The database could not take it (connection lost, permissions, a
    /// timeout): it may succeed later.
    Failed(DbError),
}

/// The answer for each record of a [`write`], in input order, and the
/// number of transactions it took.
#[derive(Debug)]
pub struct Writes {
    pub results: Vec<Written>,
    pub transactions: usize,
}

/// Stores validated records, one transaction for all of them. If that fails
/// on a live connection, the batch is split in halves and each half tried
/// again, down to single records, so only the guilty fail and k bad records
/// among n cost about 2·k·log2(n) transactions, not n. If the connection is
/// gone, every record not yet stored fails and nothing more is written.
pub async fn write(store: &mut Store, records: &[&Record]) -> Writes {
    let mut results: Vec<Option<Written>> = records.iter().map(|_| None).collect();
    let mut transactions = 0;
    // Ranges still to write, the next on top.
    let mut pending = Vec::with_capacity(64);
    pending.push(0..records.len());
    while let Some(range) = pending.pop() {
        if range.is_empty() {
            continue;
        }
        let part = &records[range.clone()];
        transactions += 1;
        let error = match store.insert(part).await {
            Ok(mut inserted) => {
                for (slot, record) in results[range].iter_mut().zip(part) {
                    *slot = Some(match inserted.claim(record) {
                        true => Written::Stored,
                        false => Written::Duplicate,
                    });
                }
                continue;
            }
            Err(e) => e,
        };
        if store.is_closed() {
            for slot in results.iter_mut().filter(|s| s.is_none()) {
                *slot = Some(Written::Failed(error.clone()));
            }
            break;
        }
        if part.len() == 1 {
            results[range.start] = Some(match error.blames_the_row() {
                true => Written::Refused(error),
                false => Written::Failed(error),
            });
            continue;
        }
        if range.len() == records.len() {
            warn!(
                error = %error,
                count = records.len(),
                "batch write failed; splitting it to find the records the database refuses"
            );
        }
        let middle = range.start + range.len() / 2;
        pending.push(middle..range.end);
        pending.push(range.start..middle);
    }
    Writes {
        results: results
            .into_iter()
            .map(|r| r.expect("every record is answered"))
            .collect(),
        transactions,
    }
}

/// A stored message's line is DEBUG: at a million events it would be most
/// of the log bill, and the batch's summary line counts them.
fn succeed(report: &mut BatchReport, message: Message, record: &Record, fresh: bool) {
    let event_id = record.event.event_id.as_str();
    if fresh {
        report.stored += 1;
        debug!(message_id = message.id, event_id, "stored");
    } else {
        report.duplicates += 1;
        warn!(
            message_id = message.id,
            event_id, "duplicate: already stored, skipped"
        );
    }
}

fn fail(report: &mut BatchReport, message: Message, event_id: Option<&str>, e: &MessageError) {
    report.failed.push(message.id.to_owned());
    report.failures.push(FailedMessage {
        event_id: event_id.map(str::to_owned),
        error: e.to_string(),
    });
}

/// The `eventId` of an event that failed a check, if it is a string fit for
/// a log line: an identifier, not content.
fn event_id_of(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let id = value.get("eventId")?.as_str()?;
    let fits = !id.is_empty() && id.len() <= MAX_LOGGED_ID && !id.contains(char::is_control);
    fits.then(|| id.to_owned())
}

/// Event IDs are UUIDs in practice; anything much longer is not an ID.
const MAX_LOGGED_ID: usize = 128;

/// One line per event even if the producer pretty-printed it.
fn print_one_line(text: &str) {
    if !text.contains('\n') {
        println!("{text}");
    } else if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        println!("{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_events_id_is_logged_only_if_it_is_an_id() {
        assert_eq!(
            event_id_of(r#"{"eventId": "e-1", "timestamp": "bad"}"#).as_deref(),
            Some("e-1")
        );
        let long = "x".repeat(MAX_LOGGED_ID + 1);
        for text in [
            r#"{"eventId": 7}"#.to_owned(),
            r#"{"eventId": "a\nb"}"#.to_owned(),
            r#"{"eventId": ""}"#.to_owned(),
            format!(r#"{{"eventId": "{long}"}}"#),
            r#"{"eventId": "e-1""#.to_owned(),
            "[]".to_owned(),
        ] {
            assert_eq!(event_id_of(&text), None, "{text}");
        }
    }
}
