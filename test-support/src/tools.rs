//! Test tools installed on first use under `target/test-tools/` (moto's
//! virtualenv, PostgreSQL's binaries), safely when several test processes
//! start at once (cargo nextest runs one per test).
//!
//! One process builds while the others wait on a lock file; the build goes
//! into a directory of its own, and a symlink renamed into place publishes it.
//! A symlink, not the directory itself: a virtualenv keeps its absolute path
//! in its scripts, so it must be built where it stays. An interrupted build
//! is never published, and the next installer removes what it left.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Written into a build once it is complete, before it is published.
const COMPLETE: &str = "installed";

/// `target/test-tools`, following `CARGO_TARGET_DIR` when it is set.
pub fn dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("test-tools")
}

/// The workspace's root, where cargo puts `target/`: this crate is a member
/// one level below it.
fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support is a directory of the workspace")
}

/// `<tools>/<name>`, built by `build` (into the empty directory it is given)
/// unless a complete one is already there.
pub fn install(
    tools: &Path,
    name: &str,
    build: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    let published = tools.join(name);
    if published.join(COMPLETE).exists() {
        return Ok(published);
    }
    std::fs::create_dir_all(tools).map_err(|e| format!("{}: {e}", tools.display()))?;
    let _lock = lock(&tools.join(format!("{name}.lock")))?;
    // Another process may have finished while this one waited.
    if published.join(COMPLETE).exists() {
        return Ok(published);
    }
    remove_leftovers(tools, name)?;

    let started = std::time::Instant::now();
    let building = tools.join(format!("{name}.build-{}", std::process::id()));
    std::fs::create_dir(&building).map_err(|e| format!("{}: {e}", building.display()))?;
    let built = build(&building)
        .and_then(|()| std::fs::write(building.join(COMPLETE), name).map_err(|e| e.to_string()));
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&building);
        return Err(e);
    }
    let link = tools.join(format!("{name}.link-{}", std::process::id()));
    let target = building.file_name().expect("a build directory name");
    std::os::unix::fs::symlink(target, &link)
        .and_then(|()| std::fs::rename(&link, &published))
        .map_err(|e| format!("publishing {}: {e}", published.display()))?;
    // Past the test harness's output capture: first runs are slower, say why.
    let _ = writeln!(
        std::io::stderr(),
        "test tools: installed {} in {:.1} s",
        published.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(published)
}

/// An exclusive lock, held until the file is dropped (or the process dies).
fn lock(path: &Path) -> Result<File, String> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!(
            "lock {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(file)
}

/// What an interrupted install left: a build never published, a link never
/// renamed, an incomplete install at the published name. Called under the lock.
fn remove_leftovers(tools: &Path, name: &str) -> Result<(), String> {
    let published = tools.join(name);
    if let Ok(meta) = std::fs::symlink_metadata(&published) {
        let removed = if meta.is_dir() {
            std::fs::remove_dir_all(&published)
        } else {
            std::fs::remove_file(&published)
        };
        removed.map_err(|e| format!("{}: {e}", published.display()))?;
    }
    let prefixes = [format!("{name}.build-"), format!("{name}.link-")];
    for entry in std::fs::read_dir(tools)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if prefixes.iter().any(|p| file_name.starts_with(p.as_str())) {
            let path = entry.path();
            let removed = match entry.file_type() {
                Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
                _ => std::fs::remove_file(&path),
            };
            removed.map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// Downloads `url` to `to` with python3's urllib (already needed for moto),
/// so no other HTTP client is required.
pub fn download(url: &str, to: &Path) -> Result<(), String> {
    const FETCH: &str = "import shutil, sys, urllib.request\n\
        with urllib.request.urlopen(sys.argv[1], timeout=60) as r, open(sys.argv[2], 'wb') as f:\n\
        \x20   shutil.copyfileobj(r, f)\n";
    let out = Command::new("python3")
        .args(["-c", FETCH, url])
        .arg(to)
        .output()
        .map_err(|e| format!("cannot run python3 to download {url}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("no error output");
        return Err(format!("downloading {url} failed: {last}"));
    }
    Ok(())
}

/// Makes `dir` and every directory below it readable and searchable by
/// all (0755), so that the unprivileged user servers run as can reach what
/// was unpacked there, whatever the umask.
pub fn open_directories(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            open_directories(&entry.path())?;
        }
    }
    Ok(())
}
