//! Start-up that every function shares: the AWS SDK configuration (loaded
//! only when a secret needs it), the data key, and the database with its
//! password source. Also the one connection an instance keeps.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use aws_config::SdkConfig;
use tokio::sync::{Mutex, MutexGuard, OnceCell};
use tracing::{error, info, warn};

use crate::aws::{self, SecretError};
use crate::config::{
    ConfigError, DB_CONNECTION_STRING, DECRYPTION_KEY_FILE_NAME, DatabaseConfig,
    ENCRYPTED_DATABASE_PASSWORD, ENCRYPTION_KEY, KeySource,
};
use crate::crypto::{DataKey, KeyError};
use crate::database::{ConnectError, Database, Password, SslMode};
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

/// The SDK configuration, loaded on first use.
#[derive(Default)]
pub struct Aws(OnceCell<SdkConfig>);

impl Aws {
    pub async fn config(&self) -> &SdkConfig {
        self.0.get_or_init(aws::sdk_config).await
    }
}

pub async fn resolve_key(source: KeySource, aws: &Aws) -> Result<DataKey, StartError> {
    let (variable, bytes) = match source {
        KeySource::Local(key) => {
            warn!("using LOCAL_DATA_KEY: a plaintext data key is for local runs and tests only");
            return Ok(key);
        }
        KeySource::KmsCiphertext(ciphertext) => (
            ENCRYPTION_KEY,
            aws::kms_decrypt(aws.config().await, ENCRYPTION_KEY, &ciphertext).await?,
        ),
        KeySource::KmsCiphertextInS3 { bucket, key } => {
            let sdk = aws.config().await;
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

/// Runs `first` and `second` at once, with the errors of running them in
/// turn: an error of `first` wins over one of `second`, and ends the wait.
pub async fn overlapped<A, B, E>(
    first: impl Future<Output = Result<A, E>>,
    second: impl Future<Output = Result<B, E>>,
) -> Result<(A, B), E> {
    let (mut first, mut second) = (pin!(first), pin!(second));
    tokio::select! {
        biased;
        a = &mut first => Ok((a?, second.await?)),
        b = &mut second => Ok((first.await?, b?)),
    }
}

/// The database with its password source: `ENCRYPTED_DATABASE_PASSWORD`
/// through KMS, else the connection string's own, else an RDS IAM token.
pub async fn open_database(config: DatabaseConfig, aws: &Aws) -> Result<Database, StartError> {
    let mut settings = config.settings;
    let iam = config.encrypted_password.is_none() && settings.config.get_password().is_none();
    if config.encrypted_password.is_some() || iam {
        credentials_need_tls(settings.ssl_mode, iam)?;
    }
    let password = if let Some(ciphertext) = config.encrypted_password {
        let bytes =
            aws::kms_decrypt(aws.config().await, ENCRYPTED_DATABASE_PASSWORD, &ciphertext).await?;
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
        Password::IamToken(Box::new(aws.config().await.clone()))
    };
    Ok(Database::new(settings, password)?)
}

/// What both S3 functions start with: their database connection (from
/// `DB_CONNECTION_STRING` and `ENCRYPTED_DATABASE_PASSWORD` only) and S3.
pub async fn s3_function() -> Result<(Connection, crate::aws::s3::S3), StartError> {
    let aws = Aws::default();
    let database = open_database(DatabaseConfig::from_env()?, &aws).await?;
    let s3 = crate::aws::s3::S3::new(aws.config().await);
    Ok((Connection::open(database).await?, s3))
}

/// Kept back from Lambda's deadline, to answer it in time.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// The time an invocation may spend before it must answer.
pub fn budget(deadline: std::time::SystemTime) -> Duration {
    deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(DEADLINE_MARGIN)
}

/// How long start-up waits for the database.
pub const START_CONNECT: Duration = Duration::from_secs(4);

/// A KMS-decrypted password or an IAM token must never cross the network
/// in clear: `prefer` (the default) would send it to any server, or anything
/// in the path, that declines TLS.
fn credentials_need_tls(mode: SslMode, iam: bool) -> Result<(), ConfigError> {
    if matches!(mode, SslMode::Disable | SslMode::Prefer) {
        let credential = match iam {
            true => "an RDS IAM token (no password is configured)",
            false => "the password from ENCRYPTED_DATABASE_PASSWORD",
        };
        return Err(ConfigError {
            variable: DB_CONNECTION_STRING,
            problem: format!(
                "{credential} is only sent over TLS: set sslmode to require, verify-ca or \
                 verify-full (it is {}, which allows a connection without TLS)",
                if mode == SslMode::Disable {
                    "disable"
                } else {
                    "prefer, the default,"
                }
            ),
        });
    }
    Ok(())
}

/// The one connection an instance keeps across invocations, replaced when
/// it breaks. A database that cannot be reached is not fatal at start: each
/// invocation tries again.
pub struct Connection {
    database: Database,
    slot: Mutex<Option<Store>>,
}

impl Connection {
    /// Connects now; only a configuration problem (TLS, IAM token) is an
    /// error. Bounded well inside Lambda's 10 s init phase: a database that
    /// does not answer in time is an outage, and each invocation tries again.
    pub async fn open(database: Database) -> Result<Self, StartError> {
        let store = match tokio::time::timeout(START_CONNECT, database.store()).await {
            Err(_) => {
                error!(
                    within_ms = START_CONNECT.as_millis() as u64,
                    "the database did not answer at start; each invocation will try again"
                );
                None
            }
            Ok(Ok(store)) => {
                info!("connected to the database");
                Some(store)
            }
            Ok(Err(e)) if e.is_configuration() => return Err(StartError::Connect(e)),
            Ok(Err(e)) => {
                error!(error = %e, "cannot connect to the database; each invocation will try again");
                None
            }
        };
        Ok(Self {
            database,
            slot: Mutex::new(store),
        })
    }

    /// The live connection, reconnecting first if there is none or it closed.
    pub async fn get(&self) -> Result<StoreGuard<'_>, ConnectError> {
        let mut guard = StoreGuard {
            slot: self.slot.lock().await,
            fresh: false,
        };
        if guard.slot.as_ref().is_none_or(Store::is_closed) {
            self.reconnect(&mut guard).await?;
        }
        Ok(guard)
    }

    /// Drops the connection (a statement may still be running on it); the
    /// next invocation connects anew.
    pub async fn discard(&self) {
        *self.slot.lock().await = None;
    }

    /// Replaces the guarded connection with a new one.
    pub async fn reconnect(&self, guard: &mut StoreGuard<'_>) -> Result<(), ConnectError> {
        *guard.slot = None;
        let store = self.database.store().await.inspect_err(|e| {
            error!(error = %e, "cannot connect to the database");
        })?;
        info!("connected to the database");
        *guard.slot = Some(store);
        guard.fresh = true;
        Ok(())
    }
}

/// Exclusive use of the instance's connection for one invocation.
pub struct StoreGuard<'a> {
    slot: MutexGuard<'a, Option<Store>>,
    fresh: bool,
}

impl StoreGuard<'_> {
    /// True if the connection was made in this invocation: a failure on it
    /// is not a stale connection left from an earlier one.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }
}

impl std::ops::Deref for StoreGuard<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        self.slot.as_ref().expect("a guard holds a connection")
    }
}

impl std::ops::DerefMut for StoreGuard<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        self.slot.as_mut().expect("a guard holds a connection")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseConfig;

    async fn open(conn: &str, encrypted_password: Option<&str>) -> Result<Database, StartError> {
        let config = DatabaseConfig {
            settings: crate::database::Settings::parse(Some(conn)).unwrap(),
            encrypted_password: encrypted_password.map(str::to_owned),
        };
        open_database(config, &Aws::default()).await
    }

    #[tokio::test]
    async fn overlapped_reports_errors_as_if_run_in_turn() {
        use std::future::pending;
        let later = |r: Result<u8, &'static str>| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            r
        };
        assert_eq!(overlapped(later(Ok(1)), async { Ok(2) }).await, Ok((1, 2)));
        // The second fails first, yet the first's error is the one reported.
        assert_eq!(
            overlapped(later(Err("first")), async { Err::<u8, _>("second") }).await,
            Err("first")
        );
        assert_eq!(
            overlapped(later(Ok(1)), async { Err::<u8, _>("second") }).await,
            Err("second")
        );
        // The first's error does not wait for the second.
        assert_eq!(
            overlapped(async { Err::<u8, _>("first") }, pending::<Result<u8, _>>()).await,
            Err("first")
        );
    }

    #[tokio::test]
    async fn credentials_are_only_sent_over_tls() {
        for (conn, kms) in [
            ("host=db user=u", None),
            ("host=db user=u sslmode=prefer", None),
            ("host=db user=u sslmode=disable", Some("Y2lwaGVy")),
            ("host=db user=u", Some("Y2lwaGVy")),
        ] {
            let Err(StartError::Config(e)) = open(conn, kms).await else {
                panic!("{conn}: expected a configuration error");
            };
            assert_eq!(e.variable, DB_CONNECTION_STRING);
            assert!(
                e.problem.contains("sslmode") && e.problem.contains("require"),
                "{e}"
            );
        }
        // A password in the string is the operator's choice: allowed.
        assert!(open("host=db user=u password=p", None).await.is_ok());
    }
}
