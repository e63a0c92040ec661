//! AWS emulated on 127.0.0.1: moto in server mode (KMS, S3), one per test
//! process. `EVENT_RECORDER_MOTO_SERVER` names a `moto_server` to use;
//! otherwise the pinned moto is installed into a virtualenv under the
//! target directory on first use (PyPI), then reused.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{cleanup, tools};

/// The moto release the tests are written against.
pub const MOTO: &str = "moto[server]==5.2.5";

pub struct Moto {
    pub endpoint: String,
    pub venv_python: Option<PathBuf>,
    // Stopped at exit (see `cleanup`).
    _child: Child,
}

static SHARED: OnceLock<Moto> = OnceLock::new();

/// The variables that point an AWS SDK (ours, or botocore) at moto.
pub fn aws_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", shared().endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "eu-west-2".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

pub fn shared() -> &'static Moto {
    SHARED.get_or_init(|| {
        start().unwrap_or_else(|e| {
            panic!(
                "moto (the AWS emulator) is needed: {e}. Install it with `pip install '{MOTO}'` and set \
                 EVENT_RECORDER_MOTO_SERVER to its moto_server, or let the tests install it (needs python3 with venv and PyPI)"
            )
        })
    })
}

fn start() -> Result<Moto, String> {
    let (server, venv_python) = match std::env::var_os("EVENT_RECORDER_MOTO_SERVER") {
        Some(path) => (PathBuf::from(path), None),
        None => {
            let venv = install()?;
            (venv.join("bin/moto_server"), Some(venv.join("bin/python")))
        }
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new(&server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", server.display()))?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not listen on port {port} within 30 s",
                server.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("AWS emulator: moto at {endpoint}\n").as_bytes(),
    );
    let pid = child.id();
    cleanup::on_exit(move || cleanup::stop_child(pid, libc::SIGKILL, Duration::ZERO)).keep();
    Ok(Moto {
        endpoint,
        venv_python,
        _child: child,
    })
}

/// A virtualenv with the pinned moto, under the target directory.
fn install() -> Result<PathBuf, String> {
    let version = MOTO.rsplit("==").next().unwrap();
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| e.to_string())?;
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
    };
    tools::install(&tools::dir(), &format!("moto-{version}"), |venv| {
        run(Command::new("python3").arg("-m").arg("venv").arg(venv))?;
        run(Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            MOTO,
        ]))
    })
}
