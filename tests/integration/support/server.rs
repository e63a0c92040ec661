//! Chooses the PostgreSQL server the tests use, in this order:
//! 1. `EVENT_RECORDER_TEST_DATABASE_URL`;
//! 2. a testcontainers PostgreSQL when a Docker engine answers;
//! 3. a throwaway server from local binaries.
//!
//! `EVENT_RECORDER_TEST_POSTGRES=url|docker|local` pins one source (CI uses it
//! to exercise each path); a pinned source that fails is an error, never a
//! fallback. No source at all fails the tests with instructions.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::runners::SyncRunner;
use testcontainers_modules::testcontainers::{Container, ImageExt};
use tokio_postgres::Config;

use super::local::{LocalServer, Options};

pub const HOW_TO_PROVIDE: &str = "provide PostgreSQL in one of three ways: \
    set EVENT_RECORDER_TEST_DATABASE_URL to a server where the user may CREATE DATABASE; \
    run a Docker engine (image from EVENT_RECORDER_TEST_POSTGRES_IMAGE / _TAG, default postgres:17); \
    or install PostgreSQL's server binaries (initdb, postgres) on PATH or under /usr/lib/postgresql/*/bin";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Url,
    Docker,
    Local,
}

/// The selection rule, kept pure so it can be tested.
pub fn choose(pinned: Option<&str>, url_set: bool, docker_answers: bool) -> Result<Source, String> {
    match pinned {
        Some("url") => Ok(Source::Url),
        Some("docker") => Ok(Source::Docker),
        Some("local") => Ok(Source::Local),
        Some(other) => Err(format!(
            "EVENT_RECORDER_TEST_POSTGRES={other}: expected url, docker or local"
        )),
        None if url_set => Ok(Source::Url),
        None if docker_answers => Ok(Source::Docker),
        None => Ok(Source::Local),
    }
}

pub struct Server {
    admin: Config,
    // Kept for cleanup at process exit.
    _running: Running,
}

enum Running {
    External,
    Container(Mutex<Option<Box<Container<Postgres>>>>),
    Local(Mutex<Option<LocalServer>>),
}

impl Server {
    /// Connection settings for a superuser on the `postgres` database.
    pub fn admin_config(&self) -> Config {
        self.admin.clone()
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
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(stop_shared) };
        server
    })
}

extern "C" fn stop_shared() {
    if let Some(server) = SHARED.get() {
        match &server._running {
            Running::External => {}
            Running::Container(c) => {
                if let Some(c) = c.lock().ok().and_then(|mut c| c.take()) {
                    let _ = c.rm();
                }
            }
            Running::Local(l) => drop(l.lock().ok().and_then(|mut l| l.take())),
        }
    }
}

fn start() -> Server {
    let url = std::env::var("EVENT_RECORDER_TEST_DATABASE_URL").ok();
    let pinned = std::env::var("EVENT_RECORDER_TEST_POSTGRES").ok();
    let docker = docker_answers();
    let source = choose(pinned.as_deref(), url.is_some(), docker).unwrap_or_else(|e| panic!("{e}"));
    let server = match source {
        Source::Url => {
            let url = url.expect("EVENT_RECORDER_TEST_DATABASE_URL must be set for the url source");
            let admin = Config::from_str(&url).unwrap_or_else(|e| {
                panic!("EVENT_RECORDER_TEST_DATABASE_URL is not a valid connection string: {e}")
            });
            announce("the server at EVENT_RECORDER_TEST_DATABASE_URL");
            Server {
                admin,
                _running: Running::External,
            }
        }
        Source::Docker => start_container(),
        Source::Local => {
            let local = LocalServer::start(Options::default()).unwrap_or_else(|e| {
                panic!("local PostgreSQL failed to start: {e}; {HOW_TO_PROVIDE}")
            });
            announce(&format!(
                "local binaries in {}, port {}",
                local.bin_dir().display(),
                local.port()
            ));
            Server {
                admin: local.config(),
                _running: Running::Local(Mutex::new(Some(local))),
            }
        }
    };
    wait_until_ready(&server.admin);
    server
}

fn start_container() -> Server {
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
    announce(&format!(
        "Docker container {name}:{tag} ({}), port {port}",
        &container.id()[..12]
    ));
    Server {
        admin,
        _running: Running::Container(Mutex::new(Some(Box::new(container)))),
    }
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

/// Polls until the server accepts a session (a server may listen before it is ready).
pub fn wait_until_ready(config: &Config) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut last = String::new();
    for _ in 0..300 {
        match runtime.block_on(config.connect(tokio_postgres::NoTls)) {
            Ok(_) => return,
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

#[test]
fn source_order() {
    assert_eq!(choose(None, true, true), Ok(Source::Url));
    assert_eq!(choose(None, false, true), Ok(Source::Docker));
    assert_eq!(choose(None, false, false), Ok(Source::Local));
    assert_eq!(choose(Some("local"), true, true), Ok(Source::Local));
    assert!(choose(Some("podman"), false, false).is_err());
}
