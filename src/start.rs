//! Start-up that every function shares: the AWS SDK configuration (loaded
//! only when a secret needs it), the data key, and the database with its
//! password source.

use std::future::Future;
use std::pin::pin;

use aws_config::SdkConfig;
use tokio::sync::OnceCell;
use tracing::{info, warn};

use crate::aws::{self, SecretError};
use crate::config::{
    ConfigError, DB_CONNECTION_STRING, DECRYPTION_KEY_FILE_NAME, DatabaseConfig,
    ENCRYPTED_DATABASE_PASSWORD, ENCRYPTION_KEY, KeySource,
};
use crate::crypto::{DataKey, KeyError};
use crate::database::{ConnectError, Database, KeptConnection, Password, SslMode};

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
    Database::new(settings, password).map_err(|e| {
        StartError::Config(ConfigError {
            variable: DB_CONNECTION_STRING,
            problem: e.problem,
        })
    })
}

/// The instance's kept connection, opened now (see [`KeptConnection::open`]).
pub async fn keep(database: Database) -> Result<KeptConnection, StartError> {
    KeptConnection::open(database)
        .await
        .map_err(StartError::Connect)
}

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::DatabaseConfig;

    async fn open(conn: &str, encrypted_password: Option<&str>) -> Result<Database, StartError> {
        let config = DatabaseConfig {
            settings: crate::database::Settings::parse(conn).unwrap(),
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
