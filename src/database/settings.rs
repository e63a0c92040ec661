//! Connection strings: libpq's keyword/value form or a `postgres://` URL,
//! TLS options included.
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

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode as WireSslMode};

use super::tls::{MakeTls, Verify};

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

/// A parsed connection string.
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

/// What is wrong with a connection string. The string itself is never
/// repeated: it may hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct InvalidSettings {
    pub problem: String,
}

fn invalid(problem: impl Into<String>) -> InvalidSettings {
    InvalidSettings {
        problem: problem.into(),
    }
}

impl Settings {
    /// Parses a libpq keyword/value string or a `postgres://` URL.
    pub fn parse(value: &str) -> Result<Self, InvalidSettings> {
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
    pub fn tls(&self) -> Result<MakeTls, InvalidSettings> {
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
fn take_tls_options(value: &str) -> Result<(String, Vec<(String, String)>), InvalidSettings> {
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
            .collect::<Result<_, InvalidSettings>>()?;
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
fn keyword_pairs(text: &str) -> Result<Vec<(String, String)>, InvalidSettings> {
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

fn percent_decode(value: &str) -> Result<String, InvalidSettings> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Settings, InvalidSettings> {
        Settings::parse(s)
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
