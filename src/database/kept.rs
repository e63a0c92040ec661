//! The one connection an instance keeps across invocations, and the policy
//! every function runs its database work under:
//! - get the connection (connecting if there is none, or it closed);
//! - run the work; if it failed because the connection is of no more use,
//!   connect again and run the work once more, when:
//!   - the connection was kept from an earlier invocation and turned out
//!     dead (a NAT or proxy forgot the flow while the instance was frozen, a
//!     backend was killed): that is no outage;
//!   - the server takes no writes (a failover demoted it, or the endpoint
//!     points at a reader): the new connection resolves the host name again
//!     and may reach the new writer. If it is read-only too, the work fails
//!     at once, with that reason;
//! - all of it before the invocation's deadline, past which the connection
//!   is dropped (a statement may still be running on it).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::{Mutex, MutexGuard};
use tracing::{error, info, warn};

use super::{ConnectError, Database, Lost, Store};

/// Kept back from Lambda's deadline, to answer it in time.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// How long start-up waits for the database.
pub const START_CONNECT: Duration = Duration::from_secs(4);

/// The time an invocation may spend before it must answer.
pub fn budget(deadline: SystemTime) -> Duration {
    deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(DEADLINE_MARGIN)
}

/// The instance's connection, replaced when it breaks. A database that
/// cannot be reached is not fatal at start: each invocation tries again.
pub struct KeptConnection {
    database: Database,
    slot: Mutex<Option<Store>>,
    /// Retries on a new connection since the last [`KeptConnection::take_reconnects`].
    dead: AtomicU32,
    read_only: AtomicU32,
}

/// Reconnections to run work again, by cause.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconnects {
    /// A connection kept from an earlier invocation was dead.
    pub dead: u32,
    /// The server took no writes.
    pub read_only: u32,
}

/// Why [`KeptConnection::run`] gave up.
#[derive(Debug)]
pub enum Failure<E> {
    /// No connection could be made.
    Connect(ConnectError),
    /// The work failed: on a live connection, on a fresh one, or on a kept
    /// one that could not be replaced (then its own error is kept).
    Work(E),
}

/// The invocation's deadline came first; the connection was dropped.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the invocation's deadline came first")]
pub struct DeadlinePassed {
    pub budget: Duration,
}

impl KeptConnection {
    /// Connects now; only a configuration problem (TLS, IAM token) is an
    /// error. Bounded well inside Lambda's 10 s init phase: a database that
    /// does not answer in time is an outage, and each invocation tries again.
    pub async fn open(database: Database) -> Result<Self, ConnectError> {
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
            Ok(Err(e)) if e.is_configuration() => return Err(e),
            Ok(Err(e)) => {
                error!(error = %e, "cannot connect to the database; each invocation will try again");
                None
            }
        };
        Ok(Self {
            database,
            slot: Mutex::new(store),
            dead: AtomicU32::new(0),
            read_only: AtomicU32::new(0),
        })
    }

    /// The reconnections made to run work again since the last call.
    pub fn take_reconnects(&self) -> Reconnects {
        Reconnects {
            dead: self.dead.swap(0, Ordering::Relaxed),
            read_only: self.read_only.swap(0, Ordering::Relaxed),
        }
    }

    /// Runs `work` before `deadline` (Lambda's, less [`DEADLINE_MARGIN`]).
    /// Past it the connection is dropped, since a statement may still be
    /// running on it, and the next invocation connects anew.
    pub async fn before<T>(
        &self,
        deadline: SystemTime,
        work: impl Future<Output = T>,
    ) -> Result<T, DeadlinePassed> {
        let budget = budget(deadline);
        match tokio::time::timeout(budget, work).await {
            Ok(done) => Ok(done),
            Err(_) => {
                *self.slot.lock().await = None;
                Err(DeadlinePassed { budget })
            }
        }
    }

    /// Runs `work` on the connection, once more on a new one if it failed
    /// because a connection kept from an earlier invocation was dead, or
    /// because the server takes no writes. The work must be safe to run
    /// twice (what it stored the first time comes back as duplicates, or is
    /// resumed).
    pub async fn run<T, E>(
        &self,
        mut work: impl AsyncFnMut(&mut Store) -> Result<T, E>,
    ) -> Result<T, Failure<E>> {
        let mut guard = self.get().await.map_err(Failure::Connect)?;
        let first = work(guard.store()).await;
        let Err(failed) = first else {
            return first.map_err(Failure::Work);
        };
        let fresh = guard.fresh;
        let store = guard.store();
        let cause = match store.lost() {
            Some(Lost::ReadOnly) => {
                warn!(
                    "the server takes no writes (a failover, or a reader endpoint); reconnecting and trying again"
                );
                &self.read_only
            }
            _ if !fresh && store.is_closed() => {
                warn!("the kept connection was dead; reconnecting and trying again");
                &self.dead
            }
            _ => return Err(Failure::Work(failed)),
        };
        cause.fetch_add(1, Ordering::Relaxed);
        if self.reconnect(&mut guard).await.is_err() {
            return Err(Failure::Work(failed));
        }
        work(guard.store()).await.map_err(Failure::Work)
    }

    /// The live connection, reconnecting first if there is none or it closed.
    async fn get(&self) -> Result<StoreGuard<'_>, ConnectError> {
        let mut guard = StoreGuard {
            slot: self.slot.lock().await,
            fresh: false,
        };
        if guard.slot.as_ref().is_none_or(Store::is_closed) {
            self.reconnect(&mut guard).await?;
        }
        Ok(guard)
    }

    /// Replaces the guarded connection with a new one.
    async fn reconnect(&self, guard: &mut StoreGuard<'_>) -> Result<(), ConnectError> {
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
    /// Made in this invocation: a failure on it is not a stale connection
    /// left from an earlier one.
    fresh: bool,
}

impl StoreGuard<'_> {
    fn store(&mut self) -> &mut Store {
        self.slot.as_mut().expect("a guard holds a connection")
    }
}
