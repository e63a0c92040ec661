//! Test support for the integration tests (`tests/integration/`) and the
//! benches: a real PostgreSQL server per test process, a fresh database per
//! test, builders for encrypted test messages, and the emulators and helper
//! processes the Lambda's binaries run against.

pub mod certs;
pub mod cleanup;
pub mod events;
pub mod fetched;
pub mod fetched_pgbouncer;
pub mod function;
pub mod local;
pub mod moto;
pub mod pgbouncer;
pub mod proxy;
pub mod runtime_api;
pub mod s3;
pub mod server;
pub mod tls_proxy;
pub mod tools;

use event_recorder::{Store, schema};
use tokio_postgres::{Client, Config, NoTls};

/// A database of its own for one test, migrated to the current schema.
pub struct TestDb {
    pub config: Config,
}

impl TestDb {
    pub async fn new() -> Self {
        let db = Self::empty().await;
        schema::migrate(&mut db.client().await)
            .await
            .expect("migrations apply");
        db
    }

    /// Creates the database without applying the schema.
    pub async fn empty() -> Self {
        let server = server::shared();
        let name = server::unique_name("t");
        server.created_database(&name);
        connect(&server.admin_config())
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        let mut config = server.admin_config();
        config.dbname(&name);
        Self { config }
    }

    /// A database as the original service's migrations leave it
    /// (`tests/fixtures/original-schema.sql`), not migrated by us.
    pub async fn original() -> Self {
        let db = Self::empty().await;
        db.client()
            .await
            .batch_execute(include_str!("../../tests/fixtures/original-schema.sql"))
            .await
            .expect("the original-schema fixture applies");
        db
    }

    /// A proxy in front of this database's server, and the connection
    /// string that goes through it.
    pub async fn behind_proxy(&self) -> (proxy::Proxy, String) {
        let port = self.config.get_ports()[0];
        let proxy = proxy::Proxy::start(("127.0.0.1".into(), port)).await;
        let via = self
            .connection_string()
            .replace(&format!("port={port}"), &format!("port={}", proxy.port()));
        (proxy, via)
    }

    /// A libpq keyword/value string for this database, as the Lambda takes it.
    pub fn connection_string(&self) -> String {
        let c = &self.config;
        let host = match &c.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        };
        let s = format!(
            "host={host} port={} user={} dbname={}",
            c.get_ports()[0],
            c.get_user().unwrap(),
            c.get_dbname().unwrap()
        );
        // Always a password: without one the Lambda would use RDS IAM auth.
        // Servers with trust auth (the local one) ignore it.
        let password = c
            .get_password()
            .map(String::from_utf8_lossy)
            .unwrap_or("unused-under-trust".into());
        s + &format!(" password={password}")
    }

    /// A login role with a real password and the Lambda's grants; returns
    /// a connection string for it (without the password) and the password.
    pub async fn role_with_password(&self) -> (String, String) {
        let role = server::unique_name("writer");
        let password = format!("pw-{role}-SECRET");
        server::shared().created_role(&role);
        self.client()
            .await
            .batch_execute(&format!(
                "CREATE ROLE {role} LOGIN PASSWORD '{password}';
                 GRANT USAGE ON SCHEMA audit, billing TO {role};
                 GRANT INSERT, SELECT ON ALL TABLES IN SCHEMA audit, billing TO {role};"
            ))
            .await
            .unwrap();
        let full = self.connection_string();
        let without: Vec<&str> = full
            .split(' ')
            .filter(|p| !p.starts_with("user=") && !p.starts_with("password="))
            .collect();
        (format!("{} user={role}", without.join(" ")), password)
    }

    pub async fn client(&self) -> Client {
        connect(&self.config).await
    }

    pub async fn store(&self) -> Store {
        Store::new(self.client().await)
    }

    /// Rows in the audit, billing and fraud tables.
    pub async fn row_counts(&self) -> [i64; 3] {
        [
            self.count("audit.audit_events").await,
            self.count("billing.billing_events").await,
            self.count("billing.fraud_events").await,
        ]
    }

    /// The stored audit event IDs, sorted.
    pub async fn audit_event_ids(&self) -> Vec<String> {
        self.client()
            .await
            .query(
                "SELECT event_id FROM audit.audit_events ORDER BY event_id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Number of rows in a table.
    pub async fn count(&self, table: &str) -> i64 {
        let row = self
            .client()
            .await
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("count rows");
        row.get(0)
    }
}

pub async fn connect(config: &Config) -> Client {
    let (client, connection) = config.connect(NoTls).await.unwrap_or_else(|e| {
        panic!(
            "cannot connect to the test PostgreSQL ({e}); {}",
            server::HOW_TO_PROVIDE
        )
    });
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Turns a server read-only for every session, open ones at their next
/// transaction (or back, with `on` false), as a failover demotes a writer,
/// and waits until new sessions see it.
pub async fn set_read_only(server: &Config, on: bool) {
    let sql = match on {
        true => "ALTER SYSTEM SET default_transaction_read_only = on",
        false => "ALTER SYSTEM RESET default_transaction_read_only",
    };
    let admin = connect(server).await;
    // Separate statements: ALTER SYSTEM runs outside a transaction block.
    admin.batch_execute(sql).await.unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    // The postmaster signals the sessions once it has read the file; a new
    // session sees the value from then on.
    let want = if on { "on" } else { "off" };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let row = connect(server)
            .await
            .query_one("SHOW default_transaction_read_only", &[])
            .await
            .unwrap();
        if row.get::<_, String>(0) == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server never turned {want}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
