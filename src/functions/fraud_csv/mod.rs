//! IdP fraud-report upload: a CSV file in S3, tagged with the IdP and the
//! uploader, becomes `idp_data` rows.
//!
//! Invariants:
//! - every row is checked, and every failing one recorded in
//!   `upload_session_validation_failures` (row, field, the rule);
//! - fraud rows are written only if every row passes, in one transaction
//!   that also marks the session passed;
//! - the object then moves to `success/<base name>` or `error/<base name>`;
//!   tags it cannot use (a missing `idp`, say) fail the invocation and leave
//!   the object where it is, with no session;
//! - a retry never writes a file twice: the session's id is put on the
//!   object as the tag `event-recorder-session` before any row is written,
//!   so a retry (after a failed move, say) resumes that session, and only
//!   moves the object if the session is complete.

pub mod idp_data;
pub mod rows;
pub mod tags;
pub mod timestamp;

use aws_lambda_events::event::s3::S3Event;
use serde::Serialize;
use tracing::{error, info, warn};

use crate::aws::s3::{self, S3Error};
use crate::config::{DB_CONNECTION_STRING, ENCRYPTED_DATABASE_PASSWORD};
use crate::database::{ConnectError, DbError, Failure};
use crate::functions::s3_trigger::S3Trigger;
use crate::start::StartError;
use crate::store::Store;
use tags::{TagError, UploadTags};

/// The environment variables this function reads (no data key: the files are plain CSV).
pub const VARIABLES: &[&str] = &[DB_CONNECTION_STRING, ENCRYPTED_DATABASE_PASSWORD];

/// Reports are small; a larger object is refused rather than read.
pub const MAX_FILE: u64 = 64 * 1024 * 1024;

/// The outcome of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadReport {
    pub session_id: i64,
    pub passed: bool,
    /// Fraud rows stored (0 unless passed).
    pub rows: usize,
    /// Failing rows recorded (0 if passed).
    pub failed_rows: usize,
    pub failures: usize,
}

/// The tag that ties an object to its upload session.
pub const SESSION_TAG: &str = "event-recorder-session";

/// A new session for `bytes`, then [`process`].
pub async fn store_file(
    store: &mut Store,
    source_file_name: &str,
    bytes: &[u8],
    tags: &UploadTags,
) -> Result<UploadReport, DbError> {
    let session = new_session(store, source_file_name, tags).await?;
    process(store, session, bytes, tags).await
}

async fn new_session(
    store: &mut Store,
    source_file_name: &str,
    tags: &UploadTags,
) -> Result<i64, DbError> {
    let now = chrono::Utc::now().naive_utc();
    store
        .run(async |client| {
            idp_data::create_session(client, source_file_name, &tags.idp, &tags.username, now).await
        })
        .await
}

/// Checks every row of `bytes` and stores them in `idp_data` under
/// `session` (see the module docs).
pub async fn process(
    store: &mut Store,
    session: i64,
    bytes: &[u8],
    tags: &UploadTags,
) -> Result<UploadReport, DbError> {
    let parsed = rows::parse(bytes, tags);
    let mut failed_rows: Vec<u64> = parsed.failures.iter().map(|f| f.row).collect();
    failed_rows.dedup();
    if parsed.failures.is_empty() {
        store
            .run(async |client| {
                idp_data::store_rows(client, session, &tags.idp, &parsed.rows).await
            })
            .await?;
    } else {
        for failure in &parsed.failures {
            warn!(
                session,
                row = failure.row,
                field = failure.field,
                error = failure.message,
                "row failed validation"
            );
        }
        store
            .run(async |client| idp_data::record_failures(client, session, &parsed.failures).await)
            .await?;
    }
    Ok(UploadReport {
        session_id: session,
        passed: parsed.failures.is_empty(),
        rows: if parsed.failures.is_empty() {
            parsed.rows.len()
        } else {
            0
        },
        failed_rows: failed_rows.len(),
        failures: parsed.failures.len(),
    })
}

enum Resume {
    Database(DbError),
    S3(S3Error),
}

impl From<DbError> for Resume {
    fn from(e: DbError) -> Self {
        Self::Database(e)
    }
}

impl From<S3Error> for Resume {
    fn from(e: S3Error) -> Self {
        Self::S3(e)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the invocation's deadline came before the upload finished; the object is kept")]
    Deadline,
    #[error("s3://{bucket}/{key}: {error}; the object is left in place")]
    Tags {
        bucket: String,
        key: String,
        error: TagError,
    },
    #[error("{0}")]
    S3(#[from] S3Error),
    #[error("s3://{bucket}/{key}: the database failed: {error}; the object is left in place")]
    Database {
        bucket: String,
        key: String,
        #[source]
        error: DbError,
    },
    #[error("s3://{bucket}/{key}: the database failed: {error}; the object is left in place")]
    Connect {
        bucket: String,
        key: String,
        #[source]
        error: ConnectError,
    },
}

/// The function: S3 `ObjectCreated` notifications in, one upload per object.
pub struct Function(S3Trigger);

#[derive(Debug, Serialize)]
pub struct Uploaded {
    pub bucket: String,
    pub key: String,
    pub moved_to: String,
    #[serde(flatten)]
    pub report: UploadReport,
}

impl Function {
    pub async fn from_env() -> Result<Self, StartError> {
        Ok(Self(S3Trigger::from_env().await?))
    }

    /// Uploads each object the notification names, then moves it; a retry
    /// resumes the object's session. The deadline is
    /// [`S3Trigger::each_object`]'s.
    pub async fn handle(
        &self,
        event: S3Event,
        deadline: std::time::SystemTime,
    ) -> Result<Vec<Uploaded>, UploadError> {
        let upload = async |bucket, key| {
            let outcome = self.upload_object(bucket, key).await;
            if let Err(e) = &outcome {
                error!(error = %e, "upload failed");
            }
            outcome
        };
        match self.0.each_object(event, deadline, upload).await {
            Ok(outcome) => outcome,
            Err(_) => Err(UploadError::Deadline),
        }
    }

    /// The session the object's tag names, if it exists: finished (then only
    /// the move is left) or not (then it is processed again); otherwise a new
    /// session, tagged on the object before any row is written.
    async fn resume_or_process(
        &self,
        store: &mut Store,
        bucket: &str,
        key: &str,
        mut tags: Vec<(String, String)>,
        bytes: &[u8],
        settings: &UploadTags,
    ) -> Result<UploadReport, Resume> {
        let tagged = tags
            .iter()
            .find(|(k, _)| k == SESSION_TAG)
            .and_then(|(_, v)| v.parse::<i64>().ok());
        if let Some(session) = tagged {
            let state = store
                .run(async |client| idp_data::session_state(client, session).await)
                .await?;
            match state {
                Some(state) if state.is_done() => {
                    info!(session, "upload already processed; moving the object");
                    return Ok(UploadReport {
                        session_id: session,
                        passed: state.passed,
                        rows: state.rows as usize,
                        failed_rows: state.failed_rows as usize,
                        failures: state.failures as usize,
                    });
                }
                Some(_) => {
                    info!(session, "resuming the upload's session");
                    return Ok(process(store, session, bytes, settings).await?);
                }
                None => warn!(
                    session,
                    "the object names an unknown session; starting a new one"
                ),
            }
        }
        let session = new_session(store, key, settings).await?;
        tags.retain(|(k, _)| k != SESSION_TAG);
        tags.push((SESSION_TAG.to_owned(), session.to_string()));
        self.0.s3.put_tags(bucket, key, &tags).await?;
        Ok(process(store, session, bytes, settings).await?)
    }

    async fn upload_object(&self, bucket: String, key: String) -> Result<Uploaded, UploadError> {
        let tags = self.0.s3.tags(&bucket, &key).await?;
        let settings = UploadTags::from_tags(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|error| UploadError::Tags {
                bucket: bucket.clone(),
                key: key.clone(),
                error,
            })?;
        let bytes = self.0.s3.bytes(&bucket, &key, MAX_FILE).await?;
        // On a kept connection found dead, once more on a new one. The
        // session tag makes the second attempt resume the first one's
        // session, so it reads the tags again.
        let mut first_tags = Some(tags);
        let attempt = self
            .0
            .connection
            .run(async |store| {
                let tags = match first_tags.take() {
                    Some(tags) => tags,
                    None => self.0.s3.tags(&bucket, &key).await?,
                };
                self.resume_or_process(store, &bucket, &key, tags, &bytes, &settings)
                    .await
            })
            .await;
        let report = attempt.map_err(|e| match e {
            Failure::Work(Resume::Database(error)) => UploadError::Database {
                bucket: bucket.clone(),
                key: key.clone(),
                error,
            },
            Failure::Work(Resume::S3(e)) => UploadError::S3(e),
            Failure::Connect(error) => UploadError::Connect {
                bucket: bucket.clone(),
                key: key.clone(),
                error,
            },
        })?;
        let folder = if report.passed { "success" } else { "error" };
        let moved_to = format!("{folder}/{}", s3::base_name(&key));
        self.0.s3.rename(&bucket, &key, &moved_to).await?;
        info!(
            bucket,
            key,
            session = report.session_id,
            passed = report.passed,
            rows = report.rows,
            failed_rows = report.failed_rows,
            moved_to,
            "upload processed"
        );
        Ok(Uploaded {
            bucket,
            key,
            moved_to,
            report,
        })
    }
}
