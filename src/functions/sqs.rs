//! The SQS recorder: start-up once per instance, then one call per SQS
//! batch answering with the IDs of the messages that failed
//! (the `ReportBatchItemFailures` contract).

use std::time::{Instant, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tracing::error;

use crate::config::Config;
use crate::database::{Failure, KeptConnection};
use crate::metrics::{self, Invocation, Metrics};
use crate::recorder::{BatchReport, FailedMessage, Message, Recorder};
use crate::start::{self, Aws, StartError};

pub use crate::config::VARIABLES;

/// The function: SQS batches in, the failed messages' IDs out.
pub struct Function {
    recorder: Recorder,
    connection: KeptConnection,
    metrics: Option<Metrics>,
}

impl Function {
    /// Reads the environment, then starts.
    pub async fn from_env() -> Result<Self, StartError> {
        Self::start(Config::from_env()?).await
    }

    /// Resolves the data key and the password, and opens the database
    /// connection. A database that cannot be reached now is not fatal (each
    /// batch tries again); a TLS failure is (it is a configuration problem).
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let aws = Aws::default();
        // Independent: a key from KMS is fetched while the database connects.
        let (key, connection) =
            start::overlapped(start::resolve_key(config.key_source, &aws), async {
                start::keep(start::open_database(config.database, &aws).await?).await
            })
            .await?;
        let function_name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok();
        Ok(Self {
            recorder: Recorder::new(key).print_decrypted_events(config.log_decrypted_events),
            connection,
            metrics: Metrics::new(
                config.metrics_namespace.as_deref(),
                function_name.as_deref(),
            ),
        })
    }

    /// One SQS batch, answered before `deadline` (Lambda's, less a margin):
    /// if the database has not answered by then, the connection is dropped
    /// and every message of the batch is reported failed (those already
    /// stored come back as duplicates). Fails as a whole (so SQS retries
    /// every message) only if a failed message has no ID to report it by.
    pub async fn handle(
        &self,
        event: SqsEvent,
        deadline: SystemTime,
    ) -> Result<SqsBatchResponse, MissingMessageId> {
        let messages: Vec<Message> = event
            .records
            .iter()
            .map(|m| Message {
                id: m.message_id.as_deref().unwrap_or_default(),
                body: m.body.as_deref().unwrap_or_default(),
            })
            .collect();

        let started = Instant::now();
        let report = match self
            .connection
            .before(deadline, self.record(&messages))
            .await
        {
            Ok(report) => report,
            Err(late) => {
                error!(
                    count = messages.len(),
                    budget_ms = late.budget.as_millis() as u64,
                    "the invocation's deadline came first: every message of the batch is reported failed, and the connection is dropped"
                );
                all_failed(&messages, "the invocation's deadline came first")
            }
        };
        metrics::log_summary(
            &Invocation {
                batch_size: messages.len(),
                stored: report.stored,
                duplicates: report.duplicates,
                failed: report.failed.len(),
                database_time: started.elapsed(),
                reconnects: self.connection.take_reconnects(),
            },
            self.metrics.as_ref(),
        );
        let failed = report.failed;
        if failed.iter().any(String::is_empty) {
            return Err(MissingMessageId);
        }
        let mut response = SqsBatchResponse::default();
        response.set_failures(failed);
        Ok(response)
    }

    /// What became of the messages (see `handle`). A batch with a failed
    /// message is the work failing, so the kept-connection policy retries it
    /// on a new connection if the kept one was dead: messages already stored
    /// come back as duplicates.
    async fn record(&self, messages: &[Message<'_>]) -> BatchReport {
        let recorded = self
            .connection
            .run(async |store| {
                let report = self.recorder.record_batch(store, messages).await;
                match report.failed.is_empty() {
                    true => Ok(report),
                    false => Err(report),
                }
            })
            .await;
        match recorded {
            Ok(report) | Err(Failure::Work(report)) => {
                report.log_failures();
                report
            }
            Err(Failure::Connect(_)) => {
                error!(
                    count = messages.len(),
                    "no database connection: every message of the batch failed"
                );
                all_failed(messages, "no database connection")
            }
        }
    }
}

/// Every message failed for one `reason`, each with its own line (an
/// operator looks a message up by its ID).
fn all_failed(messages: &[Message], reason: &str) -> BatchReport {
    let report = BatchReport {
        failed: messages.iter().map(|m| m.id.to_owned()).collect(),
        failures: messages
            .iter()
            .map(|_| FailedMessage {
                event_id: None,
                error: reason.to_owned(),
            })
            .collect(),
        ..BatchReport::default()
    };
    report.log_failures();
    report
}

#[derive(Debug, thiserror::Error)]
#[error("a failed SQS message has no messageId; failing the whole batch so it is retried")]
pub struct MissingMessageId;
