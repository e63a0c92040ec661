//! The database connection: libpq-style connection string (TLS options
//! included), TLS through OpenSSL, and the password chosen at start.
//!
//! tokio-postgres knows `sslmode` disable/prefer/require only, so
//! `sslmode` and `sslrootcert` are taken out of the string here and applied
//! as libpq does:
//! - `disable`: no TLS; `prefer` (default): TLS if offered, unverified;
//! - `require`: TLS, unverified, but with `sslrootcert` it verifies the chain;
//! - `verify-ca`: TLS, chain verified; `verify-full`: chain and host name.
//!
//! `sslrootcert` is a PEM file (then only its certificates are trusted), or
//! `system` for OpenSSL's default CA store. It is read only by the modes that
//! verify: `prefer` (even with `sslrootcert`) and a bare `require` read no
//! certificate at all.

mod tls;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use tokio_postgres::Client;
use tokio_postgres::config::{Host, SslMode as WireSslMode};

use crate::config::{ConfigError, DB_CONNECTION_STRING};
use crate::store::Store;
use tls::{MakeTls, Verify};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    File(PathBuf),
    System,
}

/// A parsed `DB_CONNECTION_STRING`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    pub root_cert: Option<RootCert>,
}

/// Unless the connection string sets `connect_timeout`, an unreachable
/// database fails a batch after this long instead of eating the Lambda timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const NEEDS_ROOT_CERT: &str =
    "sslmode=verify-ca and verify-full need sslrootcert (a PEM CA bundle, or `system`)";

fn invalid(problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable: DB_CONNECTION_STRING,
        problem: problem.into(),
    }
}

impl Settings {
    /// Parses a libpq keyword/value string or a `postgres://` URL.
    pub fn parse(value: Option<&str>) -> Result<Self, ConfigError> {
        let value = value.ok_or_else(|| {
            invalid("required; a libpq keyword/value string (host=... dbname=... user=...) or a postgres:// URL")
        })?;
        let (rest, tls) = take_tls_options(value)?;
        // Errors stay generic: the string may hold a password.
        let mut config = tokio_postgres::Config::from_str(&rest)
            .map_err(|_| invalid("not a valid libpq keyword/value string or postgres:// URL"))?;
        if config.get_hosts().is_empty() {
            return Err(invalid("names no host"));
        }
        if config.get_user().is_none() {
            return Err(invalid("names no user"));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        let mut ssl_mode = SslMode::Prefer;
        let mut root_cert = None;
        for (key, value) in tls {
            match (key.as_str(), value.as_str()) {
                ("sslmode", "disable") => ssl_mode = SslMode::Disable,
                ("sslmode", "prefer") => ssl_mode = SslMode::Prefer,
                ("sslmode", "require") => ssl_mode = SslMode::Require,
                ("sslmode", "verify-ca") => ssl_mode = SslMode::VerifyCa,
                ("sslmode", "verify-full") => ssl_mode = SslMode::VerifyFull,
                ("sslmode", other) => {
                    return Err(invalid(format!(
                        "sslmode={other} is not supported; use disable, prefer, require, verify-ca or verify-full"
                    )));
                }
                ("sslrootcert", "system") => root_cert = Some(RootCert::System),
                ("sslrootcert", path) => root_cert = Some(RootCert::File(path.into())),
                _ => unreachable!("only TLS options are taken"),
            }
        }
        if matches!(ssl_mode, SslMode::VerifyCa | SslMode::VerifyFull) && root_cert.is_none() {
            return Err(invalid(NEEDS_ROOT_CERT));
        }
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => WireSslMode::Disable,
            SslMode::Prefer => WireSslMode::Prefer,
            _ => WireSslMode::Require,
        });
        Ok(Self {
            config,
            ssl_mode,
            root_cert,
        })
    }

    /// The TLS set-up for these settings. The CA bundle, if the mode
    /// verifies, is read now.
    pub fn tls(&self) -> Result<MakeTls, ConfigError> {
        // What the server's certificate is checked against, as libpq does it.
        let verify = match (self.ssl_mode, &self.root_cert) {
            (SslMode::VerifyFull, Some(roots)) => Verify::ChainAndHost(roots),
            (SslMode::VerifyCa | SslMode::Require, Some(roots)) => Verify::Chain(roots),
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(invalid(NEEDS_ROOT_CERT));
            }
            (SslMode::Disable | SslMode::Prefer | SslMode::Require, _) => Verify::Nothing,
        };
        MakeTls::new(verify).map_err(invalid)
    }

    pub fn host(&self) -> String {
        match self.config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => String::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.config.get_ports().first().copied().unwrap_or(5432)
    }
}

/// Splits `sslmode`/`sslrootcert` off a connection string, returning the rest.
fn take_tls_options(value: &str) -> Result<(String, Vec<(String, String)>), ConfigError> {
    let is_tls = |key: &str| key == "sslmode" || key == "sslrootcert";
    let trimmed = value.trim();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        let Some((base, query)) = trimmed.split_once('?') else {
            return Ok((trimmed.to_owned(), Vec::new()));
        };
        let (tls, rest): (Vec<&str>, Vec<&str>) = query
            .split('&')
            .partition(|p| is_tls(p.split('=').next().unwrap_or("")));
        let tls = tls
            .into_iter()
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                Ok((k.to_owned(), percent_decode(v)?))
            })
            .collect::<Result<_, ConfigError>>()?;
        let rest = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        return Ok((rest, tls));
    }
    let mut rest = String::new();
    let mut tls = Vec::new();
    for (key, value) in keyword_pairs(trimmed)? {
        if is_tls(&key) {
            tls.push((key, value));
        } else {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            rest.push_str(&format!("{key}='{quoted}' "));
        }
    }
    Ok((rest, tls))
}

/// libpq keyword/value syntax: `key = value`, values bare or single-quoted
/// with backslash escapes.
fn keyword_pairs(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(invalid(
                "not a valid libpq keyword/value string or postgres:// URL",
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(invalid("has an unterminated quoted value")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

fn percent_decode(value: &str) -> Result<String, ConfigError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or_else(|| invalid("has a malformed %-escape"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid("has a %-escape that is not UTF-8"))
}

/// Where the password comes from, decided once at start.
#[derive(Clone)]
pub enum Password {
    /// In the connection string, or from KMS (already set in the settings).
    Fixed,
    /// A fresh RDS IAM token at every connection (tokens last 15 minutes).
    IamToken(Box<SdkConfig>),
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("TLS with the database failed: {}", describe(.0))]
    Tls(tokio_postgres::Error),
    /// The server (or a pooler in front of it) answered, and said no: wrong
    /// password, unknown database or user, too many connections, `pg_hba.conf`.
    #[error("the database refused the connection: {}", describe(.0))]
    Refused(tokio_postgres::Error),
    /// No answer: network, DNS, timeout, or the connection closed.
    #[error("cannot reach the database: {}", describe(.0))]
    Unreachable(tokio_postgres::Error),
    #[error("cannot make an RDS IAM token: {0}")]
    Token(String),
}

impl ConnectError {
    /// A TLS failure is a configuration problem (wrong CA, wrong host name,
    /// a server without TLS), not an outage: start-up stops on it.
    pub fn is_configuration(&self) -> bool {
        matches!(self, ConnectError::Tls(_) | ConnectError::Token(_))
    }
}

pub struct Database {
    settings: Settings,
    tls: MakeTls,
    password: Password,
}

impl Database {
    pub fn new(settings: Settings, password: Password) -> Result<Self, ConfigError> {
        let tls = settings.tls()?;
        Ok(Self {
            settings,
            tls,
            password,
        })
    }

    pub async fn client(&self) -> Result<Client, ConnectError> {
        let mut config = self.settings.config.clone();
        if let Password::IamToken(sdk) = &self.password {
            config.password(self.iam_token(sdk).await?);
        }
        let (client, connection) = config.connect(self.tls.clone()).await.map_err(classify)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = describe(&e), "database connection ended");
            }
        });
        Ok(client)
    }

    pub async fn store(&self) -> Result<Store, ConnectError> {
        Store::new(self.client().await?).await.map_err(classify)
    }

    async fn iam_token(&self, sdk: &SdkConfig) -> Result<String, ConnectError> {
        let provider = sdk
            .credentials_provider()
            .ok_or_else(|| ConnectError::Token("no AWS credentials are configured".into()))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| ConnectError::Token(format!("AWS credentials: {e}")))?;
        let region = sdk
            .region()
            .ok_or_else(|| ConnectError::Token("AWS_REGION is not set".into()))?;
        let user = self.settings.config.get_user().unwrap_or_default();
        let host = self.settings.host();
        crate::aws::rds_token::generate(
            &credentials,
            region.as_ref(),
            &host,
            self.settings.port(),
            user,
            SystemTime::now(),
        )
        .map_err(ConnectError::Token)
    }
}

/// A database error with its cause: tokio-postgres' own text is only its kind
/// ("db error"). The server's message is kept, its DETAIL (which may quote
/// row values) is not.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// Sorts a failed connection attempt by what the operator should look at.
fn classify(e: tokio_postgres::Error) -> ConnectError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    let mut tls = e.to_string().contains("TLS");
    let mut cut = false;
    while let Some(s) = source {
        tls |= s.is::<openssl::ssl::Error>() || s.is::<openssl::error::ErrorStack>();
        cut |= cut_short(s);
        source = s.source();
    }
    // A handshake cut by a reset, an EOF or a timeout (a failover, a proxy
    // restarting) is an outage, not a configuration problem.
    if tls && cut {
        return ConnectError::Unreachable(e);
    }
    // A login the client gives up on (a SCRAM exchange whose server proof
    // does not verify, an authentication method it lacks) was answered too.
    let refused = e.as_db_error().is_some() || e.to_string() == "authentication error";
    if tls {
        ConnectError::Tls(e)
    } else if refused {
        ConnectError::Refused(e)
    } else {
        ConnectError::Unreachable(e)
    }
}

/// True if this error is the network ending a connection early.
fn cut_short(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::*;
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return matches!(
            io.kind(),
            ConnectionReset | ConnectionAborted | UnexpectedEof | BrokenPipe | TimedOut
        );
    }
    if let Some(ssl) = e.downcast_ref::<openssl::ssl::Error>() {
        // SYSCALL without an I/O error or a library reason is an EOF.
        return ssl.code() == openssl::ssl::ErrorCode::SYSCALL
            && ssl.io_error().is_none()
            && ssl.ssl_error().is_none();
    }
    if let Some(stack) = e.downcast_ref::<openssl::error::ErrorStack>() {
        return stack
            .errors()
            .iter()
            .any(|e| e.reason().is_some_and(|r| r.contains("unexpected eof")));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Settings, ConfigError> {
        Settings::parse(Some(s))
    }

    #[test]
    fn keyword_form_with_tls_options() {
        let s = parse("host=db.example port=6432 user=writer dbname=events sslmode=verify-full sslrootcert='/opt/rds ca.pem'")
            .unwrap();
        assert_eq!(s.ssl_mode, SslMode::VerifyFull);
        assert_eq!(s.root_cert, Some(RootCert::File("/opt/rds ca.pem".into())));
        assert_eq!((s.host(), s.port()), ("db.example".to_owned(), 6432));
        assert_eq!(s.config.get_dbname(), Some("events"));
        assert_eq!(
            s.config.get_connect_timeout(),
            Some(&DEFAULT_CONNECT_TIMEOUT)
        );
    }

    #[test]
    fn quoted_values_survive() {
        let s = parse(r"host=h user=u password='it\'s a secret' dbname = d").unwrap();
        assert_eq!(s.config.get_password(), Some(b"it's a secret".as_slice()));
        assert_eq!(s.ssl_mode, SslMode::Prefer);
    }

    #[test]
    fn url_form_with_tls_options() {
        let s = parse(
            "postgres://u:p@h:5433/d?sslmode=require&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=2",
        )
        .unwrap();
        assert_eq!(s.ssl_mode, SslMode::Require);
        assert_eq!(s.root_cert, Some(RootCert::File("/etc/ca.pem".into())));
        assert_eq!(
            s.config.get_connect_timeout(),
            Some(&Duration::from_secs(2))
        );
        assert_eq!(s.port(), 5433);
    }

    #[test]
    fn bad_tls_options_are_named() {
        let e = parse("host=h user=u sslmode=allow").unwrap_err();
        assert!(e.problem.contains("sslmode=allow"), "{e}");
        let e = parse("host=h user=u sslmode=verify-full").unwrap_err();
        assert!(e.problem.contains("sslrootcert"), "{e}");
        assert!(parse("host=h user=u password='open").is_err());
        assert!(
            parse("host=h user=u sslmode=verify-ca sslrootcert=/nonexistent.pem")
                .unwrap()
                .tls()
                .is_err()
        );
    }

    #[test]
    fn only_modes_that_verify_read_sslrootcert() {
        let missing = "sslrootcert=/nonexistent/ca.pem";
        for mode in ["disable", "prefer"] {
            let s = parse(&format!("host=h user=u sslmode={mode} {missing}")).unwrap();
            assert!(s.tls().is_ok(), "{mode}");
        }
        for mode in ["require", "verify-ca", "verify-full"] {
            let s = parse(&format!("host=h user=u sslmode={mode} {missing}")).unwrap();
            let e = s.tls().err().unwrap_or_else(|| panic!("{mode}: loaded"));
            assert!(
                e.problem
                    .starts_with("sslrootcert /nonexistent/ca.pem cannot be loaded"),
                "{mode}: {e}"
            );
        }
    }

    #[test]
    fn system_store() {
        let s = parse("host=h user=u sslmode=verify-full sslrootcert=system").unwrap();
        assert_eq!(s.root_cert, Some(RootCert::System));
        assert!(s.tls().is_ok());
    }
}
