//! The Lambda function: start-up once per instance, then one call per SQS
//! batch answering with the IDs of the messages that failed
//! (the `ReportBatchItemFailures` contract).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tokio::sync::Mutex;
use tracing::{error, info, warn};

use aws_config::SdkConfig;
use tokio::sync::OnceCell;

use crate::aws::{self, SecretError};
use crate::config::{
    Config, ConfigError, DECRYPTION_KEY_FILE_NAME, DatabaseConfig, ENCRYPTED_DATABASE_PASSWORD,
    ENCRYPTION_KEY, KeySource,
};
use crate::crypto::{DataKey, KeyError};
use crate::database::{ConnectError, Database, Password};
use crate::recorder::{Message, Recorder};
use crate::store::Store;

/// What start-up could not do; the process exits and Lambda reports an init error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("{0}: {1}")]
    Key(&'static str, KeyError),
    #[error("DB_CONNECTION_STRING: {0}")]
    Connect(ConnectError),
}

pub struct App {
    recorder: Recorder,
    database: Database,
    /// Reused across invocations; replaced when the connection breaks.
    store: Mutex<Option<Store>>,
}

/// The SDK configuration, loaded only if a secret needs AWS.
#[derive(Default)]
pub struct Aws(OnceCell<SdkConfig>);

impl Aws {
    pub async fn config(&self) -> Result<&SdkConfig, SecretError> {
        self.0.get_or_try_init(aws::sdk_config).await
    }
}

impl App {
    /// Resolves the data key and the password, and opens the database
    /// connection. A database that cannot be reached now is not fatal (each
    /// batch tries again); a TLS failure is (it is a configuration problem).
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let aws = Aws::default();
        let key = resolve_key(config.key_source, &aws).await?;
        let database = open_database(config.database, &aws).await?;
        let store = match database.store().await {
            Ok(store) => {
                info!("connected to the database");
                Some(store)
            }
            Err(e) if e.is_configuration() => return Err(StartError::Connect(e)),
            Err(e) => {
                error!(error = %e, "cannot connect to the database; each batch will try again");
                None
            }
        };
        Ok(Self {
            recorder: Recorder::new(key).print_decrypted_events(config.log_decrypted_events),
            database,
            store: Mutex::new(store),
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

        let mut slot = self.store.lock().await;
        if slot.as_ref().is_none_or(Store::is_closed) {
            *slot = match self.database.store().await {
                Ok(store) => {
                    info!("connected to the database");
                    Some(store)
                }
                Err(e) => {
                    error!(error = %e, "cannot connect to the database");
                    None
                }
            };
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

async fn resolve_key(source: KeySource, aws: &Aws) -> Result<DataKey, StartError> {
    let (variable, bytes) = match source {
        KeySource::Local(key) => {
            warn!("using LOCAL_DATA_KEY: a plaintext data key is for local runs and tests only");
            return Ok(key);
        }
        KeySource::KmsCiphertext(ciphertext) => (
            ENCRYPTION_KEY,
            aws::kms_decrypt(aws.config().await?, ENCRYPTION_KEY, &ciphertext).await?,
        ),
        KeySource::KmsCiphertextInS3 { bucket, key } => {
            let sdk = aws.config().await?;
            let ciphertext = aws::s3_text(sdk, DECRYPTION_KEY_FILE_NAME, &bucket, &key).await?;
            (
                DECRYPTION_KEY_FILE_NAME,
                aws::kms_decrypt(sdk, DECRYPTION_KEY_FILE_NAME, &ciphertext).await?,
            )
        }
    };
    let key = DataKey::new(bytes).map_err(|e| StartError::Key(variable, e))?;
    info!(source = variable, "data key decrypted with KMS");
    Ok(key)
}

/// The database with its password source: `ENCRYPTED_DATABASE_PASSWORD`
/// through KMS, else the connection string's own, else an RDS IAM token.
pub async fn open_database(config: DatabaseConfig, aws: &Aws) -> Result<Database, StartError> {
    let mut settings = config.settings;
    let password = if let Some(ciphertext) = config.encrypted_password {
        let bytes = aws::kms_decrypt(
            aws.config().await?,
            ENCRYPTED_DATABASE_PASSWORD,
            &ciphertext,
        )
        .await?;
        let password = String::from_utf8(bytes).map_err(|_| SecretError {
            source_var: ENCRYPTED_DATABASE_PASSWORD,
            problem: "the decrypted password is not UTF-8".into(),
        })?;
        settings.config.password(password);
        Password::Fixed
    } else if settings.config.get_password().is_some() {
        Password::Fixed
    } else {
        info!("no database password given: using RDS IAM authentication");
        Password::IamToken(Box::new(aws.config().await?.clone()))
    };
    Ok(Database::new(settings, password)?)
}
