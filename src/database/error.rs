//! What the code knows about PostgreSQL's errors, in one place: which mean
//! the connection is gone, which blame the row, and how an error is told to
//! an operator (the server's message and SQLSTATE, never a row's values).

use std::sync::Arc;

/// An error from the database. Its `Display` is what the logs and reports
/// show; `source()` is tokio-postgres' error. Cheap to clone, so one
/// failure can answer for every record it stopped.
#[derive(Debug, Clone)]
pub struct DbError(Arc<tokio_postgres::Error>);

impl DbError {
    /// The connection is gone, even if the client has not noticed yet:
    /// closed, or the server said so (class 08, connection exception; 57,
    /// the session terminated by an operator or a shutdown).
    pub fn connection_lost(&self) -> bool {
        self.0.is_closed()
            || self
                .class()
                .is_some_and(|class| matches!(class, "08" | "57"))
    }

    /// The database refused the row itself, and will again: a data
    /// exception, an integrity violation, a program limit, or an error
    /// raised by a trigger.
    pub fn blames_the_row(&self) -> bool {
        self.class()
            .is_some_and(|class| matches!(class, "22" | "23" | "54" | "P0"))
    }

    /// The server takes no writes: 25006 (read_only_sql_transaction), what a
    /// hot standby, an Aurora or RDS reader, or a former writer demoted by a
    /// failover answers to an insert. Not the rows' fault, and not this
    /// connection's alone to fix: the endpoint's DNS name has (or will have)
    /// moved to the new writer, so a new connection is the way out. A server
    /// still in recovery refuses new connections with 57P03 instead, which
    /// connecting already treats as an outage.
    pub fn server_read_only(&self) -> bool {
        self.code() == Some(READ_ONLY)
    }

    /// A row clashed with one already there (or written by the same
    /// statement): a unique violation (23505) or an exclusion violation
    /// (23P01), the conflicts `ON CONFLICT DO NOTHING` skips.
    pub fn conflict(&self) -> bool {
        matches!(self.code(), Some("23505" | "23P01"))
    }

    /// The server's SQLSTATE, if the server answered.
    pub fn code(&self) -> Option<&str> {
        self.0.as_db_error().map(|db| db.code().code())
    }

    fn class(&self) -> Option<&str> {
        self.code().and_then(|code| code.get(..2))
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self(Arc::new(e))
    }
}

const READ_ONLY: &str = "25006";

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&describe(&self.0))?;
        if self.server_read_only() {
            f.write_str(": the server takes no writes (a standby or reader, or a writer demoted by a failover)")?;
        }
        Ok(())
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("TLS with the database failed: {0}")]
    Tls(DbError),
    /// The server (or a pooler in front of it) answered, and said no: wrong
    /// password, unknown database or user, too many connections, `pg_hba.conf`.
    #[error("the database refused the connection: {0}")]
    Refused(DbError),
    /// No answer: network, DNS, timeout, or the connection closed.
    #[error("cannot reach the database: {0}")]
    Unreachable(DbError),
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

/// A database error with its cause: tokio-postgres' own text is only its kind
/// ("db error"). The server's message is kept, its DETAIL (which may quote
/// row values) is not.
fn describe(e: &tokio_postgres::Error) -> String {
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
pub(super) fn classify(e: tokio_postgres::Error) -> ConnectError {
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
        return ConnectError::Unreachable(DbError::from(e));
    }
    // A login the client gives up on (a SCRAM exchange whose server proof
    // does not verify, an authentication method it lacks) was answered too.
    let refused = e.as_db_error().is_some() || e.to_string() == "authentication error";
    let e = DbError::from(e);
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
