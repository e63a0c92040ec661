//! PgBouncer on 127.0.0.1 (a free port) in front of a PostgreSQL server, in
//! transaction pooling mode: each transaction may run on a different server
//! connection, shared with other clients. Clients log in with SCRAM against
//! an `auth_file`; PgBouncer logs in to the server with the same user and
//! password. Its config, log and pid file live in a temp dir of its own. Run
//! as an unprivileged user when the tests run as root (PgBouncer refuses
//! root). Uses the `pgbouncer` installed on the machine, else fetches
//! Debian's on first use (`fetched_pgbouncer`). Stopped when dropped, and
//! when the test process ends (see `cleanup`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::Config;
use tokio_postgres::config::Host;

use super::cleanup::{self, Registration};
use super::fetched_pgbouncer;
use super::local::{free_port, unprivileged_user};

const HOW_TO_INSTALL: &str = "install it (Debian/Ubuntu: `apt-get install pgbouncer`; \
    Nix: `nix develop`), or put `pgbouncer` on PATH";

pub struct PgBouncer {
    dir: tempfile::TempDir,
    _remove_dir: Registration,
    port: u16,
    user: String,
    password: String,
    child: Option<(Child, Registration)>,
}

impl PgBouncer {
    /// Starts PgBouncer in front of the server `upstream` points at, with
    /// `upstream`'s user and password and at most `pool_size` server
    /// connections per database.
    pub fn start(upstream: &Config, pool_size: u32) -> Result<Self, String> {
        let (bin, lib_dir) = match find_bin() {
            Some(bin) => (bin, None),
            None => {
                let fetched = fetched_pgbouncer::get().map_err(|e| {
                    format!("PgBouncer is needed: none on PATH, and fetching it failed: {e}; {HOW_TO_INSTALL}")
                })?;
                (fetched.bin, Some(fetched.lib_dir))
            }
        };
        let user = upstream
            .get_user()
            .ok_or("the upstream config names no user")?;
        // Without a password (trust auth) clients still need one for SCRAM;
        // the server ignores it.
        let password = upstream
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_else(|| "unused-under-trust".into());
        let server = match upstream.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => return Err("the upstream config names no host".into()),
        };
        let server_port = upstream.get_ports().first().copied().unwrap_or(5432);

        let dir = tempfile::Builder::new()
            .prefix("event-recorder-pgbouncer-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let remove_dir = cleanup::remove_at_exit(dir.path());
        let port = free_port()?;
        let path = |name: &str| dir.path().join(name);
        let quote = |s: &str| s.replace('"', "\"\"");
        write(
            &path("userlist.txt"),
            &format!("\"{}\" \"{}\"\n", quote(user), quote(&password)),
        )?;
        // `*`: any database name, passed on to the server as is.
        let ini = format!(
            "[databases]\n\
             * = host={server} port={server_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = scram-sha-256\n\
             auth_file = {auth}\n\
             pool_mode = transaction\n\
             default_pool_size = {pool_size}\n\
             max_client_conn = 500\n\
             logfile = {log}\n\
             pidfile = {pid}\n",
            auth = path("userlist.txt").display(),
            log = path("pgbouncer.log").display(),
            pid = path("pgbouncer.pid").display(),
        );
        write(&path("pgbouncer.ini"), &ini)?;

        let mut cmd = Command::new(&bin);
        cmd.arg(path("pgbouncer.ini"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(lib_dir) = &lib_dir {
            cmd.env("LD_LIBRARY_PATH", lib_dir);
        }
        if let Some((uid, gid)) = unprivileged_user()? {
            for name in ["", "userlist.txt", "pgbouncer.ini"] {
                std::os::unix::fs::chown(path(name), Some(uid), Some(gid))
                    .map_err(|e| format!("chown: {e}"))?;
            }
            std::os::unix::process::CommandExt::uid(&mut cmd, uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, gid);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let pid = child.id();
        let stop = cleanup::on_exit(move || {
            cleanup::stop_child(pid, libc::SIGTERM, Duration::from_secs(5))
        });
        let mut bouncer = Self {
            dir,
            _remove_dir: remove_dir,
            port,
            user: user.to_owned(),
            password,
            child: Some((child, stop)),
        };
        bouncer.wait_listening()?;
        Ok(bouncer)
    }

    /// A libpq keyword/value string for `dbname` through PgBouncer, as the
    /// Lambda takes it.
    pub fn connection_string(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={} password={} dbname={dbname}",
            self.port, self.user, self.password
        )
    }

    /// The same, for tokio-postgres.
    pub fn config(&self, dbname: &str) -> Config {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(dbname);
        config
    }

    /// PgBouncer's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    /// PgBouncer opens server connections on demand, so listening is ready.
    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|(c, _)| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                return Err(format!(
                    "pgbouncer did not listen on port {} ({exited:?}); its log:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Some((mut child, _stop_at_exit)) = self.child.take() {
            // SIGTERM: immediate shutdown, clients disconnected.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `pgbouncer` on PATH, else where Debian installs it (often not on a
/// non-root PATH); without either, the tests fetch it (`fetched_pgbouncer`).
fn find_bin() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join("pgbouncer"))
        .find(|p| p.is_file())
}
