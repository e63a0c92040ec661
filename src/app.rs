//! The Lambda function: start-up once per instance, then one call per SQS
//! batch answering with the IDs of the messages that failed
//! (the `ReportBatchItemFailures` contract).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tokio::sync::Mutex;
use tracing::{error, info, warn};

use crate::config::{Config, KeySource};
use crate::crypto::DataKey;
use crate::recorder::{Message, Recorder};
use crate::store::Store;

/// What start-up could not do; the process exits and Lambda reports an init error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}: KMS-wrapped data keys are not supported by this build; use LOCAL_DATA_KEY")]
    KmsUnsupported(&'static str),
}

pub struct App {
    recorder: Recorder,
    database: tokio_postgres::Config,
    /// Reused across invocations; replaced when the connection breaks.
    store: Mutex<Option<Store>>,
}

impl App {
    /// Resolves the data key and opens the database connection. A database
    /// that cannot be reached now is not fatal: each batch tries again.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let key = resolve_key(config.key_source)?;
        let app = Self {
            recorder: Recorder::new(key).print_decrypted_events(config.log_decrypted_events),
            database: config.database,
            store: Mutex::new(None),
        };
        let mut store = app.store.lock().await;
        *store = connect(&app.database).await;
        drop(store);
        Ok(app)
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

        let mut slot = self.store.lock().await;
        if slot.as_ref().is_none_or(Store::is_closed) {
            *slot = connect(&self.database).await;
        }
        let failed = match slot.as_mut() {
            Some(store) => self.recorder.record_batch(store, &messages).await.failed,
            None => {
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

fn resolve_key(source: KeySource) -> Result<DataKey, StartError> {
    match source {
        KeySource::Local(key) => {
            warn!("using LOCAL_DATA_KEY: a plaintext data key is for local runs and tests only");
            Ok(key)
        }
        KeySource::KmsCiphertext(_) => {
            Err(StartError::KmsUnsupported(crate::config::ENCRYPTION_KEY))
        }
        KeySource::KmsCiphertextInS3 { .. } => Err(StartError::KmsUnsupported(
            crate::config::DECRYPTION_KEY_BUCKET_NAME,
        )),
    }
}

async fn connect(database: &tokio_postgres::Config) -> Option<Store> {
    match Store::connect(database).await {
        Ok(store) => {
            info!("connected to the database");
            Some(store)
        }
        Err(e) => {
            error!(error = %e, "cannot connect to the database");
            None
        }
    }
}
