//! The environment contract, read and checked once at start.
//!
//! Errors name the variable and what was expected, never the value: the
//! connection string may hold a password and the key variables hold keys.

use std::collections::HashMap;

use crate::crypto::DataKey;
use crate::database::Settings;

/// Where the AES data key comes from. Exactly one source may be configured.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `ENCRYPTION_KEY`: base64 KMS ciphertext of the data key.
    KmsCiphertext(String),
    /// `DECRYPTION_KEY_BUCKET_NAME` + `DECRYPTION_KEY_FILE_NAME`: an S3 object
    /// holding that same base64 KMS ciphertext.
    KmsCiphertextInS3 { bucket: String, key: String },
    /// `LOCAL_DATA_KEY`: base64 of the raw key. For local runs and tests only.
    Local(DataKey),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    pub key_source: KeySource,
    pub log_decrypted_events: bool,
    /// `METRICS_NAMESPACE`: the EMF namespace, `none` for no metrics line.
    pub metrics_namespace: Option<String>,
}

/// What the database connection needs; all the CLI's `migrate` reads.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub settings: Settings,
    /// `ENCRYPTED_DATABASE_PASSWORD`: base64 KMS ciphertext of the password.
    /// Without it (and without a password in the connection string) the
    /// password is an RDS IAM token.
    pub encrypted_password: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

fn error(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

pub const DB_CONNECTION_STRING: &str = "DB_CONNECTION_STRING";
pub const ENCRYPTION_KEY: &str = "ENCRYPTION_KEY";
pub const DECRYPTION_KEY_BUCKET_NAME: &str = "DECRYPTION_KEY_BUCKET_NAME";
pub const DECRYPTION_KEY_FILE_NAME: &str = "DECRYPTION_KEY_FILE_NAME";
pub const LOCAL_DATA_KEY: &str = "LOCAL_DATA_KEY";
pub const LOG_DECRYPTED_EVENTS: &str = "LOG_DECRYPTED_EVENTS";
pub const ENCRYPTED_DATABASE_PASSWORD: &str = "ENCRYPTED_DATABASE_PASSWORD";
pub const METRICS_NAMESPACE: &str = "METRICS_NAMESPACE";

/// Every variable the binaries read (the deployment template must match).
pub const VARIABLES: &[&str] = &[
    DB_CONNECTION_STRING,
    ENCRYPTION_KEY,
    DECRYPTION_KEY_BUCKET_NAME,
    DECRYPTION_KEY_FILE_NAME,
    LOCAL_DATA_KEY,
    LOG_DECRYPTED_EVENTS,
    ENCRYPTED_DATABASE_PASSWORD,
    METRICS_NAMESPACE,
];

fn lookup<'a>(vars: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

impl DatabaseConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Ok(Self {
            settings: connection_string(lookup(vars, DB_CONNECTION_STRING))?,
            encrypted_password: lookup(vars, ENCRYPTED_DATABASE_PASSWORD).map(str::to_owned),
        })
    }
}

/// `DB_CONNECTION_STRING`, parsed; its problems named by the variable.
fn connection_string(value: Option<&str>) -> Result<Settings, ConfigError> {
    let invalid = |problem: String| ConfigError {
        variable: DB_CONNECTION_STRING,
        problem,
    };
    let value = value.ok_or_else(|| {
        invalid(
            "required; a libpq keyword/value string (host=... dbname=... user=...) or a postgres:// URL"
                .into(),
        )
    })?;
    Settings::parse(value).map_err(|e| invalid(e.problem))
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// The same rules over a given set of variables (empty counts as unset).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(vars, name);
        Ok(Config {
            database: DatabaseConfig::from_vars(vars)?,
            key_source: key_source(
                get(ENCRYPTION_KEY),
                get(DECRYPTION_KEY_BUCKET_NAME),
                get(DECRYPTION_KEY_FILE_NAME),
                get(LOCAL_DATA_KEY),
            )?,
            log_decrypted_events: flag(LOG_DECRYPTED_EVENTS, get(LOG_DECRYPTED_EVENTS))?,
            metrics_namespace: get(METRICS_NAMESPACE).map(str::to_owned),
        })
    }
}

fn key_source(
    kms: Option<&str>,
    bucket: Option<&str>,
    file: Option<&str>,
    local: Option<&str>,
) -> Result<KeySource, ConfigError> {
    let s3 = match (bucket, file) {
        (Some(bucket), Some(key)) => Some(KeySource::KmsCiphertextInS3 {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        }),
        (Some(_), None) => {
            return Err(error(
                DECRYPTION_KEY_FILE_NAME,
                "required with DECRYPTION_KEY_BUCKET_NAME",
            ));
        }
        (None, Some(_)) => {
            return Err(error(
                DECRYPTION_KEY_BUCKET_NAME,
                "required with DECRYPTION_KEY_FILE_NAME",
            ));
        }
        (None, None) => None,
    };
    let local = local
        .map(|v| {
            DataKey::from_base64(v).map(KeySource::Local).map_err(|e| {
                error(
                    LOCAL_DATA_KEY,
                    format!("expected base64 of a raw AES key: {e}"),
                )
            })
        })
        .transpose()?;
    let kms = kms.map(|v| KeySource::KmsCiphertext(v.to_owned()));
    let mut sources = [kms, s3, local].into_iter().flatten();
    match (sources.next(), sources.next()) {
        (Some(source), None) => Ok(source),
        (None, _) => Err(error(
            ENCRYPTION_KEY,
            "no data key configured; set ENCRYPTION_KEY, or DECRYPTION_KEY_BUCKET_NAME with \
             DECRYPTION_KEY_FILE_NAME, or (local runs only) LOCAL_DATA_KEY",
        )),
        (Some(_), Some(_)) => Err(error(
            ENCRYPTION_KEY,
            "more than one data key source configured; set exactly one of ENCRYPTION_KEY, \
             DECRYPTION_KEY_BUCKET_NAME + DECRYPTION_KEY_FILE_NAME, LOCAL_DATA_KEY",
        )),
    }
}

fn flag(variable: &'static str, value: Option<&str>) -> Result<bool, ConfigError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(error(variable, "expected `true` or `false`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn vars(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn variable_of(pairs: &[(&str, &str)]) -> &'static str {
        vars(pairs).unwrap_err().variable
    }

    const DB: (&str, &str) = (
        DB_CONNECTION_STRING,
        "host=db.example dbname=events user=writer port=6432",
    );

    #[test]
    fn minimal_local_config() {
        let c = vars(&[DB, (LOCAL_DATA_KEY, KEY)]).unwrap();
        assert!(matches!(c.key_source, KeySource::Local(_)));
        assert!(!c.log_decrypted_events);
        assert_eq!(c.database.settings.port(), 6432);
        assert_eq!(c.database.encrypted_password, None);
    }

    #[test]
    fn url_form_and_flags() {
        let c = vars(&[
            (
                DB_CONNECTION_STRING,
                "postgres://writer:pw@db.example:5433/events?connect_timeout=2",
            ),
            (ENCRYPTION_KEY, "Y2lwaGVy"),
            (LOG_DECRYPTED_EVENTS, "TRUE"),
            (ENCRYPTED_DATABASE_PASSWORD, "cHc="),
        ])
        .unwrap();
        assert_eq!(c.database.encrypted_password.as_deref(), Some("cHc="));
        assert!(matches!(c.key_source, KeySource::KmsCiphertext(ref v) if v == "Y2lwaGVy"));
        assert!(c.log_decrypted_events);
        assert_eq!(
            c.database.settings.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(2))
        );
    }

    #[test]
    fn s3_source_needs_both_variables() {
        let c = vars(&[
            DB,
            (DECRYPTION_KEY_BUCKET_NAME, "b"),
            (DECRYPTION_KEY_FILE_NAME, "k"),
        ])
        .unwrap();
        assert!(matches!(c.key_source, KeySource::KmsCiphertextInS3 { .. }));
        assert_eq!(
            variable_of(&[DB, (DECRYPTION_KEY_BUCKET_NAME, "b")]),
            DECRYPTION_KEY_FILE_NAME
        );
        assert_eq!(
            variable_of(&[DB, (DECRYPTION_KEY_FILE_NAME, "k")]),
            DECRYPTION_KEY_BUCKET_NAME
        );
    }

    #[test]
    fn each_bad_variable_is_named() {
        assert_eq!(variable_of(&[(LOCAL_DATA_KEY, KEY)]), DB_CONNECTION_STRING);
        assert_eq!(
            variable_of(&[
                (DB_CONNECTION_STRING, "host=x port=notaport"),
                (LOCAL_DATA_KEY, KEY)
            ]),
            DB_CONNECTION_STRING
        );
        assert_eq!(
            variable_of(&[
                (DB_CONNECTION_STRING, "dbname=x user=y"),
                (LOCAL_DATA_KEY, KEY)
            ]),
            DB_CONNECTION_STRING
        );
        assert_eq!(variable_of(&[DB]), ENCRYPTION_KEY);
        assert_eq!(variable_of(&[DB, (LOCAL_DATA_KEY, "AAAA")]), LOCAL_DATA_KEY);
        assert_eq!(
            variable_of(&[DB, (LOCAL_DATA_KEY, KEY), (LOG_DECRYPTED_EVENTS, "yes")]),
            LOG_DECRYPTED_EVENTS
        );
    }

    #[test]
    fn two_key_sources_are_an_error() {
        let e = vars(&[DB, (LOCAL_DATA_KEY, KEY), (ENCRYPTION_KEY, "Y2lwaGVy")]).unwrap_err();
        assert!(e.problem.contains("more than one"), "{e}");
    }

    #[test]
    fn errors_never_echo_values() {
        let secret = "host=x port=p4ssw0rd-secret";
        let e = vars(&[(DB_CONNECTION_STRING, secret), (LOCAL_DATA_KEY, KEY)]).unwrap_err();
        assert!(!e.to_string().contains("p4ssw0rd"), "{e}");
    }
}
