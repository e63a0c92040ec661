//! The database: connection strings (`settings`), TLS through OpenSSL
//! (`tls`), the password chosen at start, what PostgreSQL's errors mean
//! (`error`), and the one connection an instance keeps (`kept`).

mod error;
mod kept;
mod settings;
mod tls;

use std::time::SystemTime;

use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use tokio_postgres::Client;

pub use error::{ConnectError, DbError};
pub use kept::{DEADLINE_MARGIN, DeadlinePassed, Failure, KeptConnection, Reconnects, budget};
pub use settings::{InvalidSettings, RootCert, Settings, SslMode};
use tls::MakeTls;
/// Where the password comes from, decided once at start.
#[derive(Clone)]
pub enum Password {
    /// In the connection string, or from KMS (already set in the settings).
    Fixed,
    /// A fresh RDS IAM token at every connection (tokens last 15 minutes).
    IamToken(Box<SdkConfig>),
}

pub struct Database {
    settings: Settings,
    tls: MakeTls,
    password: Password,
}

impl Database {
    pub fn new(settings: Settings, password: Password) -> Result<Self, InvalidSettings> {
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
        let (client, connection) = config
            .connect(self.tls.clone())
            .await
            .map_err(error::classify)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %DbError::from(e), "database connection ended");
            }
        });
        Ok(client)
    }

    pub async fn store(&self) -> Result<Store, ConnectError> {
        Ok(Store::new(self.client().await?))
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

/// A connection through which every statement runs (see [`Store::run`]).
/// The events' statements are in the `store` module.
pub struct Store {
    client: Client,
    /// Set when an error said the connection is of no more use, before the
    /// client itself may have noticed.
    lost: Option<Lost>,
    /// What the events' statements remember between calls (see `store`).
    pub(crate) copy: CopyBackoff,
}

/// Whether the events' next large batch tries the optimistic `COPY` (see
/// `store`): after a `COPY` met a duplicate, only once `needed` large
/// batches in a row were written by the statement without one (a `COPY`
/// would have committed), `needed` doubling with each clash until a `COPY`
/// commits. Kept per connection; a new one starts eager.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CopyBackoff {
    pub(crate) needed: u32,
    pub(crate) clean: u32,
}

/// Why a [`Store`] is of no more use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// Closed, or the server said the session is over (class 08 or 57).
    Gone,
    /// Alive, but the server takes no writes (see [`DbError::server_read_only`]).
    ReadOnly,
}

impl Store {
    /// Wraps a connected client. Nothing is sent to the server.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            lost: None,
            copy: CopyBackoff::default(),
        }
    }

    /// True once the connection is of no more use: the server or the network
    /// dropped it, or the server turned out to take no writes.
    pub fn is_closed(&self) -> bool {
        self.lost.is_some() || self.client.is_closed()
    }

    /// Why the connection is of no more use, if an error said so.
    pub fn lost(&self) -> Option<Lost> {
        self.lost
    }

    /// [`Store::run`] for statements that leave the session inside a
    /// transaction if they stop half-way: until they end, the connection
    /// counts as lost, so if the call is dropped before its end (a deadline),
    /// the connection is replaced, not used again.
    pub(crate) async fn run_to_the_end<T>(
        &mut self,
        statements: impl AsyncFnOnce(&mut Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, DbError> {
        let before = self.lost.replace(Lost::Gone);
        let outcome = statements(&mut self.client).await;
        self.lost = before;
        self.run(async |_| outcome).await
    }

    /// Runs `statements` on the connection. Every statement goes through
    /// here (the events' inserts too), so an error that says the connection
    /// is gone marks it lost at once, before the client itself may notice.
    pub async fn run<T>(
        &mut self,
        statements: impl AsyncFnOnce(&mut Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, DbError> {
        let outcome = statements(&mut self.client).await.map_err(DbError::from);
        if let Err(e) = &outcome {
            if e.server_read_only() {
                self.lost = Some(Lost::ReadOnly);
            } else if e.connection_lost() {
                self.lost = Some(Lost::Gone);
            }
        }
        outcome
    }
}
