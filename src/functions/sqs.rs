//! The SQS recorder: start-up once per instance, then one call per SQS
//! batch answering with the IDs of the messages that failed
//! (the `ReportBatchItemFailures` contract).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tracing::error;

use crate::config::Config;
use crate::recorder::{Message, Recorder};
use crate::start::{self, Aws, Connection, StartError};

pub use crate::config::VARIABLES;

pub struct App {
    recorder: Recorder,
    connection: Connection,
}

impl App {
    /// Reads the environment, then starts.
    pub async fn from_env() -> Result<Self, StartError> {
        Self::start(Config::from_env()?).await
    }

    /// Resolves the data key and the password, and opens the database
    /// connection. A database that cannot be reached now is not fatal (each
    /// batch tries again); a TLS failure is (it is a configuration problem).
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let aws = Aws::default();
        let key = start::resolve_key(config.key_source, &aws).await?;
        let database = start::open_database(config.database, &aws).await?;
        Ok(Self {
            recorder: Recorder::new(key).print_decrypted_events(config.log_decrypted_events),
            connection: Connection::open(database).await?,
        })
    }

    /// One SQS batch. Fails as a whole (so SQS retries every message) only if a
    /// failed message has no ID to report it by.
    pub async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, MissingMessageId> {
        let messages: Vec<Message> = event
            .records
            .iter()
            .map(|m| Message {
                id: m.message_id.as_deref().unwrap_or_default(),
                body: m.body.as_deref().unwrap_or_default(),
            })
            .collect();

        let failed = match self.connection.get().await {
            Ok(mut store) => {
                self.recorder
                    .record_batch(&mut store, &messages)
                    .await
                    .failed
            }
            Err(_) => {
                error!(
                    count = messages.len(),
                    "database unreachable: every message of the batch failed"
                );
                messages.iter().map(|m| m.id.to_owned()).collect()
            }
        };
        if failed.iter().any(String::is_empty) {
            return Err(MissingMessageId);
        }
        let mut response = SqsBatchResponse::default();
        response.set_failures(failed);
        Ok(response)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a failed SQS message has no messageId; failing the whole batch so it is retried")]
pub struct MissingMessageId;
