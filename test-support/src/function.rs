//! Runs the real `bootstrap` binary as Lambda would: a child process with
//! the Lambda environment, talking to the Runtime API emulator.
//!
//! `EVENT_RECORDER_BOOTSTRAP` selects another binary (the one packaged in the
//! Lambda zip); by default it is the one Cargo built with the running test or
//! bench (see [`bootstrap_path`]).
//! `EVENT_RECORDER_BOOTSTRAP_RUNNER` is a command the binary is run under,
//! split on whitespace: an emulator for another architecture, such as
//! `qemu-aarch64-static -L /usr/aarch64-linux-gnu` for the arm64 zip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::cleanup::{self, Registration};
use super::runtime_api::RuntimeApi;

/// `EVENT_RECORDER_BOOTSTRAP`, else the `bootstrap` cargo built with the
/// running test or bench. `CARGO_BIN_EXE_bootstrap` is only defined when
/// the root package's own targets are compiled, not this library, so the
/// binary is found as cargo lays it out: the test or bench executable is
/// `<target>/<profile>/deps/<name>-<hash>`, the binary
/// `<target>/<profile>/bootstrap` (cargo builds a package's binaries before
/// its integration tests and benches).
pub fn bootstrap_path() -> PathBuf {
    if let Some(path) = std::env::var_os("EVENT_RECORDER_BOOTSTRAP") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the path of the running executable");
    let built = exe
        .parent()
        .filter(|dir| dir.ends_with("deps"))
        .and_then(Path::parent)
        .map(|profile| profile.join(format!("bootstrap{}", std::env::consts::EXE_SUFFIX)));
    match built {
        Some(path) if path.is_file() => path,
        Some(path) => panic!(
            "{} is missing: `cargo test` and `cargo bench` build it, or set \
             EVENT_RECORDER_BOOTSTRAP to a bootstrap binary",
            path.display()
        ),
        None => panic!(
            "{} is not in a cargo deps/ directory, so no bootstrap is known: set \
             EVENT_RECORDER_BOOTSTRAP to a bootstrap binary",
            exe.display()
        ),
    }
}

/// The command that starts `binary`, under the runner if one is set.
fn command(binary: &Path) -> Command {
    let runner = std::env::var("EVENT_RECORDER_BOOTSTRAP_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(words).arg(binary);
            command
        }
        None => Command::new(binary),
    }
}

pub struct Function {
    child: Child,
    dir: tempfile::TempDir,
    /// The process and its output files, should the test process be stopped.
    _at_exit: [Registration; 2],
    pub spawned: Instant,
}

impl Function {
    /// Starts `bootstrap` with only the Lambda variables and `env`.
    pub fn spawn(api: &RuntimeApi, env: &[(&str, String)]) -> Self {
        Self::spawn_binary(&bootstrap_path(), api, env)
    }

    /// The same with another build of `bootstrap`.
    pub fn spawn_binary(binary: &Path, api: &RuntimeApi, env: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = std::fs::File::create(dir.path().join("stdout")).unwrap();
        let err = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let spawned = Instant::now();
        let child = command(binary)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.endpoint())
            .env("AWS_LAMBDA_FUNCTION_NAME", "event-recorder")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/event-recorder")
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/11/28/[$LATEST]0123456789abcdef",
            )
            .env("AWS_REGION", "eu-west-2")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let pid = child.id();
        let at_exit = [
            cleanup::remove_at_exit(dir.path()),
            cleanup::on_exit(move || cleanup::stop_child(pid, libc::SIGKILL, Duration::ZERO)),
        ];
        Self {
            child,
            dir,
            _at_exit: at_exit,
            spawned,
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    /// Everything the process wrote, stdout then stderr.
    pub fn output(&self) -> String {
        let err = std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default();
        format!("{}{err}", self.stdout())
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits without blocking the runtime (the emulator runs on it).
    pub async fn exit_status(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Starts the function with `env`, requires it to fail its init (a non-zero
/// exit and an error posted to the Runtime API), and returns that error's
/// message.
pub async fn init_error(env: &[(&str, String)]) -> String {
    let api = RuntimeApi::start().await;
    let mut function = Function::spawn(&api, env);
    // An upper bound only: a start that fails returns at once.
    let status = function.exit_status(Duration::from_secs(60)).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "{status:?}\n{}",
        function.output()
    );
    let (_, body) = api
        .init_error()
        .unwrap_or_else(|| panic!("no init error reported\n{}", function.output()));
    body["errorMessage"].as_str().unwrap().to_owned()
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
