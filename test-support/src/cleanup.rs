//! Whatever the tests start (clusters, containers, moto, PgBouncer, test
//! databases on a server given by URL) is registered here, and stopped or
//! dropped when the test process ends: at a normal exit, after failed or
//! panicking tests (libtest exits through `exit`, so `atexit` runs), and on
//! SIGINT, SIGTERM or SIGHUP. A signal handler may do almost nothing, so it
//! only wakes a thread, which runs the cleanups and then dies of the same
//! signal. Only SIGKILL leaves things behind.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

type Cleanup = Box<dyn FnOnce() + Send>;

static REGISTERED: Mutex<BTreeMap<u64, Cleanup>> = Mutex::new(BTreeMap::new());
static NEXT: Mutex<u64> = Mutex::new(0);
/// The write end of the pipe the signal handler wakes the watcher through.
static WAKE: AtomicI32 = AtomicI32::new(-1);

/// Removes its cleanup from the registry (without running it) when dropped:
/// the owner has stopped what it started.
pub struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut registered) = REGISTERED.lock() {
            registered.remove(&self.0);
        }
    }
}

/// Runs `cleanup` when the process ends, unless the registration is dropped first.
#[must_use]
pub fn on_exit(cleanup: impl FnOnce() + Send + 'static) -> Registration {
    install();
    let id = {
        let mut next = NEXT.lock().unwrap();
        *next += 1;
        *next
    };
    REGISTERED.lock().unwrap().insert(id, Box::new(cleanup));
    Registration(id)
}

/// Runs every registered cleanup once, the latest first.
pub fn run_all() {
    loop {
        // Taken out before it runs: a cleanup may itself lock the registry.
        let next = REGISTERED
            .lock()
            .ok()
            .and_then(|mut r| r.pop_last().map(|(_, c)| c));
        match next {
            Some(cleanup) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(cleanup));
            }
            None => return,
        }
    }
}

fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        extern "C" fn at_exit() {
            run_all();
        }
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(at_exit) };
        watch_signals();
    });
}

fn watch_signals() {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    let [read, write] = fds;
    WAKE.store(write, Ordering::SeqCst);
    std::thread::spawn(move || {
        let mut signal = 0i32;
        // SAFETY: reads one int the handler wrote.
        let n = unsafe { libc::read(read, (&raw mut signal).cast(), size_of::<i32>()) };
        if n != size_of::<i32>() as isize {
            return;
        }
        // SAFETY: the default action again, so a second signal (an impatient
        // Ctrl-C) stops the process at once; after the cleanups, die of the
        // signal as if none had been caught (the exit status tells which).
        unsafe { libc::signal(signal, libc::SIG_DFL) };
        run_all();
        unsafe { libc::raise(signal) };
    });
    extern "C" fn on_signal(signal: i32) {
        let fd = WAKE.load(Ordering::SeqCst);
        // SAFETY: write(2) is async-signal-safe.
        unsafe { libc::write(fd, (&raw const signal).cast(), size_of::<i32>()) };
    }
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installs a handler that only calls write(2).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(i32) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

impl Registration {
    /// For what lives as long as the process: its cleanup runs at exit.
    pub fn keep(self) {
        std::mem::forget(self);
    }
}

/// Removes a directory at exit, unless the registration is dropped first
/// (by then its `TempDir` has removed it).
pub fn remove_at_exit(dir: &std::path::Path) -> Registration {
    let dir = dir.to_owned();
    on_exit(move || {
        let _ = std::fs::remove_dir_all(dir);
    })
}

/// Sends `signal` to a child process and reaps it, escalating to SIGKILL
/// after `grace`.
pub fn stop_child(pid: u32, signal: i32, grace: std::time::Duration) {
    let pid = pid as libc::pid_t;
    // SAFETY: signals and reaps a process this one started.
    unsafe {
        if libc::kill(pid, signal) != 0 {
            return;
        }
        let deadline = std::time::Instant::now() + grace;
        loop {
            let mut status = 0;
            match libc::waitpid(pid, &mut status, libc::WNOHANG) {
                0 if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                0 => {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                    return;
                }
                _ => return,
            }
        }
    }
}
