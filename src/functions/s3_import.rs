//! Bulk import: JSON-lines files of events in S3, each line
//! `{"document": <event>}`. Every document takes the SQS events' path
//! (parse → route → store), a batch of lines per transaction.
//!
//! Invariants:
//! - a bad line never stops the file: it goes, with its line number and the
//!   check that failed, to a rejects object `error/<key>.rejects.jsonl`;
//! - the source object is deleted only when every line is stored, already
//!   stored or rejected; if the database fails, nothing is deleted and the
//!   invocation fails (Lambda retries, then the on-failure destination), and
//!   a re-run stores nothing twice;
//! - memory is bounded by one batch of lines, whatever the file's size.

use std::io::Write as _;
use std::path::Path;

use aws_lambda_events::event::s3::S3Event;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tracing::{debug, error, info, warn};

use super::s3_trigger::S3Trigger;
use crate::aws::s3::S3Error;
use crate::config::{DB_CONNECTION_STRING, ENCRYPTED_DATABASE_PASSWORD};
use crate::database::{ConnectError, DbError, Failure};
use crate::event::{Event, EventError};
use crate::recorder::{MessageError, Written, write};
use crate::route::{Record, route};
use crate::start::StartError;
use crate::store::Store;

/// The environment variables this function reads (no data key: the files are plain JSON).
pub const VARIABLES: &[&str] = &[DB_CONNECTION_STRING, ENCRYPTED_DATABASE_PASSWORD];

/// Lines per transaction, and the most line bytes one may hold: memory
/// stays bounded by this, whatever the file's size and its lines' length.
const BATCH: usize = 1_000;
const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// A longer line is rejected without being held in memory.
pub const MAX_LINE: usize = 8 * 1024 * 1024;
/// How much of an overlong line the rejects object keeps.
const KEPT_OF_OVERLONG: usize = 1024;

/// Counts for one file.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Lines read, blank ones included (line numbers are the file's).
    pub lines: u64,
    pub blank: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    S3(#[from] S3Error),
    #[error("reading the file failed at line {line}: {problem}")]
    Read { line: u64, problem: String },
    #[error("the database failed at line {line}; nothing was deleted, a re-run is safe: {error}")]
    Database {
        line: u64,
        #[source]
        error: DbError,
    },
    #[error("writing the rejects failed: {0}")]
    Rejects(std::io::Error),
}

/// Why one line was not stored.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("line is not valid JSON: {0}")]
    NotJson(String),
    #[error("line is not a JSON object with a `document` field")]
    NoDocument,
    #[error("line is longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("line is not UTF-8")]
    NotUtf8,
    #[error(transparent)]
    Message(#[from] MessageError),
}

impl From<EventError> for LineError {
    fn from(e: EventError) -> Self {
        Self::Message(e.into())
    }
}

/// Rejected lines, as JSON lines in a temporary file until they are uploaded.
pub struct Rejects {
    file: tempfile::NamedTempFile,
    count: u64,
}

impl Rejects {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            file: tempfile::NamedTempFile::new()?,
            count: 0,
        })
    }

    fn add(&mut self, line: u64, reason: &LineError, text: &[u8]) -> std::io::Result<()> {
        warn!(line, error = %reason, "line rejected");
        let entry = serde_json::json!({
            "line": line,
            "reason": reason.to_string(),
            "text": String::from_utf8_lossy(text),
        });
        writeln!(self.file, "{entry}")?;
        self.count += 1;
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn path(&mut self) -> std::io::Result<&Path> {
        self.file.as_file_mut().flush()?;
        Ok(self.file.path())
    }
}

/// Imports every line of `reader`; bad lines go to `rejects`.
pub async fn import(
    store: &mut Store,
    mut reader: impl AsyncBufRead + Unpin,
    rejects: &mut Rejects,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    let mut batch: Vec<(u64, Vec<u8>, Record)> = Vec::with_capacity(BATCH);
    let mut batch_bytes = 0;
    let mut buffer = Vec::new();
    loop {
        let line = report.lines + 1;
        let read = read_line(&mut reader, &mut buffer)
            .await
            .map_err(|e| ImportError::Read {
                line,
                problem: e.to_string(),
            })?;
        let Some(complete) = read else { break };
        report.lines = line;
        if complete && buffer.iter().all(u8::is_ascii_whitespace) {
            report.blank += 1;
            continue;
        }
        let parsed = match complete {
            true => parse_line(&buffer),
            false => Err(LineError::TooLong),
        };
        match parsed {
            Ok(record) => {
                batch_bytes += buffer.len();
                batch.push((line, std::mem::take(&mut buffer), record));
            }
            Err(e) => {
                let kept = &buffer[..buffer.len().min(if complete {
                    usize::MAX
                } else {
                    KEPT_OF_OVERLONG
                })];
                rejects.add(line, &e, kept).map_err(ImportError::Rejects)?;
                report.rejected += 1;
            }
        }
        if batch.len() == BATCH || batch_bytes >= BATCH_BYTES {
            flush(store, &mut batch, rejects, &mut report).await?;
            batch_bytes = 0;
        }
    }
    flush(store, &mut batch, rejects, &mut report).await?;
    Ok(report)
}

fn parse_line(line: &[u8]) -> Result<Record, LineError> {
    let text = std::str::from_utf8(line).map_err(|_| LineError::NotUtf8)?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| LineError::NotJson(crate::event::syntax_only(&e)))?;
    let Value::Object(mut root) = value else {
        return Err(LineError::NoDocument);
    };
    let document = root.remove("document").ok_or(LineError::NoDocument)?;
    let event = Event::from_value(document)?;
    Ok(route(event).map_err(MessageError::from)?)
}

async fn flush(
    store: &mut Store,
    batch: &mut Vec<(u64, Vec<u8>, Record)>,
    rejects: &mut Rejects,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let records: Vec<&Record> = batch.iter().map(|(_, _, r)| r).collect();
    let written = write(store, &records).await;
    for ((line, text, record), outcome) in batch.iter().zip(written.results) {
        let event_id = record.event.event_id.as_str();
        match outcome {
            Written::Stored => report.stored += 1,
            // A re-run of a file meets every line it stored before: the
            // object's summary line counts them, each one is DEBUG.
            Written::Duplicate => {
                report.duplicates += 1;
                debug!(line, event_id, "duplicate: already stored, skipped");
            }
            Written::Refused(e) => {
                rejects
                    .add(*line, &LineError::Message(MessageError::Store(e)), text)
                    .map_err(ImportError::Rejects)?;
                report.rejected += 1;
            }
            Written::Failed(error) => {
                return Err(ImportError::Database { line: *line, error });
            }
        }
    }
    batch.clear();
    Ok(())
}

/// Reads one line (without its `\n`, or `\r\n`) into `buffer`. `None` at
/// the end; `Some(false)` when the line was longer than [`MAX_LINE`]: the
/// buffer then holds only its start and the rest is skipped.
async fn read_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    buffer: &mut Vec<u8>,
) -> std::io::Result<Option<bool>> {
    buffer.clear();
    let mut complete = true;
    let mut any = false;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            break;
        }
        any = true;
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1),
            None => (chunk, chunk.len()),
        };
        let found_end = done <= chunk.len() && chunk.get(done - 1) == Some(&b'\n');
        if complete && buffer.len() + part.len() <= MAX_LINE {
            buffer.extend_from_slice(part);
        } else if complete {
            let room = MAX_LINE - buffer.len();
            buffer.extend_from_slice(&part[..room]);
            complete = false;
        }
        reader.consume(done);
        if found_end {
            break;
        }
    }
    if buffer.last() == Some(&b'\r') && complete {
        buffer.pop();
    }
    Ok(any.then_some(complete))
}

/// The function: S3 `ObjectCreated` notifications in, one import per object.
pub struct Function(S3Trigger);

/// The answer to one notification (Lambda ignores it for async invocations;
/// it helps when invoking by hand).
#[derive(Debug, Serialize)]
pub struct Imported {
    pub objects: Vec<ObjectReport>,
}

#[derive(Debug, Serialize)]
pub struct ObjectReport {
    pub bucket: String,
    pub key: String,
    #[serde(flatten)]
    pub report: ImportReport,
    pub rejects_key: Option<String>,
}

impl Function {
    /// Imports each object the notification names, then deletes it; the
    /// deadline is [`S3Trigger::each_object`]'s.
    pub async fn handle(
        &self,
        event: S3Event,
        deadline: std::time::SystemTime,
    ) -> Result<Imported, FunctionError> {
        let import = async |bucket, key| self.import_object(bucket, key).await;
        match self.0.each_object(event, deadline, import).await {
            Ok(outcome) => outcome.map(|objects| Imported { objects }),
            Err(_) => Err(FunctionError::Deadline),
        }
    }

    pub async fn from_env() -> Result<Self, StartError> {
        Ok(Self(S3Trigger::from_env().await?))
    }

    async fn import_object(
        &self,
        bucket: String,
        key: String,
    ) -> Result<ObjectReport, FunctionError> {
        let failed = |e: ImportError| {
            error!(bucket, key, error = %e, "import failed; the object is kept");
            FunctionError::Import(e)
        };
        // On a kept connection found dead, the file is read again on a new one.
        let imported = self
            .0
            .connection
            .run(async |store| {
                let reader = self.0.s3.reader(&bucket, &key).await?;
                let mut rejects = Rejects::new().map_err(ImportError::Rejects)?;
                let report = import(store, reader, &mut rejects).await?;
                Ok((report, rejects))
            })
            .await;
        let (report, mut rejects) = imported.map_err(|e| match e {
            Failure::Work(e) => failed(e),
            Failure::Connect(e) => {
                error!(bucket, key, error = %e, "import failed; the object is kept");
                FunctionError::Unreachable(e)
            }
        })?;
        let rejects_key = match rejects.count() {
            0 => None,
            _ => {
                let rejects_key = format!("error/{key}.rejects.jsonl");
                let path = rejects
                    .path()
                    .map_err(|e| failed(ImportError::Rejects(e)))?;
                self.0
                    .s3
                    .put_file(&bucket, &rejects_key, path)
                    .await
                    .map_err(|e| failed(e.into()))?;
                Some(rejects_key)
            }
        };
        self.0
            .s3
            .delete(&bucket, &key)
            .await
            .map_err(|e| failed(e.into()))?;
        info!(
            bucket,
            key,
            lines = report.lines,
            stored = report.stored,
            duplicates = report.duplicates,
            rejected = report.rejected,
            rejects_key,
            "imported; the object is deleted"
        );
        Ok(ObjectReport {
            bucket,
            key,
            report,
            rejects_key,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("{0}")]
    Import(#[from] ImportError),
    #[error("{0}")]
    Unreachable(ConnectError),
    #[error("the invocation's deadline came before the import finished; the object is kept")]
    Deadline,
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8]) -> Vec<(Vec<u8>, bool)> {
        let mut reader = tokio::io::BufReader::with_capacity(7, input);
        let mut buffer = Vec::new();
        let mut out = Vec::new();
        while let Some(complete) = read_line(&mut reader, &mut buffer).await.unwrap() {
            out.push((buffer.clone(), complete));
        }
        out
    }

    #[tokio::test]
    async fn lines_split_across_reads_and_line_endings() {
        let got = lines(b"first line\r\nsecond, longer than the buffer\n\nlast").await;
        let want: Vec<(Vec<u8>, bool)> = [
            &b"first line"[..],
            b"second, longer than the buffer",
            b"",
            b"last",
        ]
        .iter()
        .map(|l| (l.to_vec(), true))
        .collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn an_overlong_line_is_cut_and_the_next_one_read() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\nnext\n");
        let got = lines(&input).await;
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0.len(), got[0].1), (MAX_LINE, false));
        assert_eq!(got[1], (b"next".to_vec(), true));
    }

    #[test]
    fn each_bad_line_has_its_own_error() {
        assert!(matches!(
            parse_line(b"{not json"),
            Err(LineError::NotJson(_))
        ));
        assert!(matches!(parse_line(b"[1]"), Err(LineError::NoDocument)));
        assert!(matches!(
            parse_line(br#"{"doc": {}}"#),
            Err(LineError::NoDocument)
        ));
        assert!(matches!(parse_line(b"\xff\xfe"), Err(LineError::NotUtf8)));
        let e = parse_line(br#"{"document": {"eventId": "x"}}"#).unwrap_err();
        assert!(e.to_string().contains("eventType"), "{e}");
    }
}
