//! A throwaway PostgreSQL server from a directory of binaries (the local
//! installation's, or fetched ones: see `fetched`): its own data directory
//! and socket in a temp dir, an OS-assigned port on 127.0.0.1, run as an
//! unprivileged user when the tests run as root (postgres refuses root).
//! Stopped and removed on drop, or when the test process ends (see
//! `cleanup`).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::Config;

use super::cleanup::{self, Registration};

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep PostgreSQL's default durability (fsync, synchronous commit).
    /// Off for tests, on for benchmarks.
    pub durable: bool,
    /// Serve TLS with this certificate and key (PEM), and accept TCP
    /// connections over TLS only (`hostssl`).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The directory with `initdb` and `postgres`; by default the local
    /// installation's (`find_bin_dir`).
    pub bin: Option<PathBuf>,
}

/// The superuser's password; TCP connections authenticate with SCRAM.
pub const PASSWORD: &str = "postgres";

pub struct LocalServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    user: Option<(u32, u32)>,
    options: Options,
    child: Option<(Child, Registration)>,
    _remove_dir: Registration,
}

impl LocalServer {
    pub fn start(options: Options) -> Result<Self, String> {
        let bin = match &options.bin {
            Some(bin) => bin.clone(),
            None => find_bin_dir()
                .ok_or("no initdb/postgres on PATH or under /usr/lib/postgresql/*/bin")?,
        };
        let dir = tempfile::Builder::new()
            .prefix("event-recorder-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let remove_dir = cleanup::remove_at_exit(dir.path());
        let user = unprivileged_user()?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("chown: {e}"))?;
        }
        let port = free_port()?;
        let mut server = Self {
            bin,
            dir,
            port,
            user,
            options,
            child: None,
            _remove_dir: remove_dir,
        };
        server.initdb()?;
        server.resume()?;
        Ok(server)
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Superuser `postgres` on database `postgres`, over TCP.
    pub fn config(&self) -> Config {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .password(PASSWORD)
            .dbname("postgres");
        config
    }

    /// Superuser over the unix socket (trust auth, never TLS).
    pub fn socket_config(&self) -> Config {
        let mut config = Config::new();
        config
            .host_path(self.dir.path())
            .port(self.port)
            .user("postgres")
            .dbname("postgres");
        config
    }

    /// Fast shutdown; the data directory stays for `resume`.
    pub fn pause(&mut self) {
        if let Some((mut child, _stop_at_exit)) = self.child.take() {
            // SIGINT is PostgreSQL's "fast" shutdown: clients are disconnected.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts the server (again) on the same port and waits until it accepts sessions.
    pub fn resume(&mut self) -> Result<(), String> {
        let data = self.dir.path().join("data");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .map_err(|e| format!("log file: {e}"))?;
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"]);
        if let Some((cert, key)) = &self.options.tls {
            cmd.args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!("ssl_cert_file={}", cert.display()))
                .arg("-c")
                .arg(format!("ssl_key_file={}", key.display()));
        }
        if !self.options.durable {
            cmd.args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]);
        }
        cmd.stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let child = cmd.spawn().map_err(|e| format!("spawn postgres: {e}"))?;
        let pid = child.id();
        // SIGINT: a fast shutdown, so the cluster's files can go.
        let stop = cleanup::on_exit(move || {
            cleanup::stop_child(pid, libc::SIGINT, Duration::from_secs(15))
        });
        self.child = Some((child, stop));
        self.wait_ready()
    }

    fn initdb(&self) -> Result<(), String> {
        let pwfile = self.dir.path().join("pwfile");
        std::fs::write(&pwfile, PASSWORD).map_err(|e| e.to_string())?;
        self.give(&pwfile)?;
        let data = self.dir.path().join("data");
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .arg(format!("--pwfile={}", pwfile.display()))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .args(["--encoding=UTF8", "--no-locale", "--no-sync"])
            .output()
            .map_err(|e| match self.user {
                Some(_) => format!(
                    "spawn initdb: {e} (it runs as `nobody`, who must be able to reach {})",
                    self.bin.display()
                ),
                None => format!("spawn initdb: {e}"),
            })?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if let Some((cert, key)) = &self.options.tls {
            // postgres insists on owning a private key no one else can read.
            for file in [cert, key] {
                self.give(file)?;
            }
            std::fs::set_permissions(key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(|e| e.to_string())?;
            let hba = "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n";
            std::fs::write(data.join("pg_hba.conf"), hba).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Hands a file to the user postgres runs as.
    fn give(&self, path: &Path) -> Result<(), String> {
        match self.user {
            Some((uid, gid)) => {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| e.to_string())
            }
            None => Ok(()),
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Over the socket: TCP may demand TLS.
            if runtime
                .block_on(self.socket_config().connect(tokio_postgres::NoTls))
                .is_ok()
            {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|(c, _)| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                return Err(format!(
                    "postgres did not become ready ({exited:?}); its log:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.pause();
    }
}

/// `nobody` when running as root (postgres refuses to run as root).
pub fn unprivileged_user() -> Result<Option<(u32, u32)>, String> {
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let pw = unsafe { libc::getpwnam(c"nobody".as_ptr()) };
    if pw.is_null() {
        return Err("running as root and there is no `nobody` user to run postgres as".into());
    }
    Ok(Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) }))
}

pub fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// A directory holding both `initdb` and `postgres`: PATH first, then the
/// newest `/usr/lib/postgresql/<version>/bin`.
pub fn find_bin_dir() -> Option<PathBuf> {
    let complete = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| {
        std::env::split_paths(&p)
            .filter_map(|d| d.join("initdb").canonicalize().ok())
            .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
            .collect::<Vec<_>>()
    });
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versions.sort();
    on_path
        .chain(versions.into_iter().rev().map(|(_, d)| d))
        .find(|d| complete(d))
}
