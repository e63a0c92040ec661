//! PgBouncer fetched on first use, for machines without it: Debian 12's
//! package, and the one library it links that a Debian 12 machine may lack
//! (c-ares), from Debian's archive. Each `.deb` is checked against the
//! sha256 pinned here (the archive's own `Packages` index lists the same
//! value) before anything in it is used, then its files are unpacked under
//! `target/test-tools/`; no package manager and no root are involved.
//!
//! The other libraries it links (glibc, OpenSSL 3's libssl3, libevent 2.1,
//! PAM, libsystemd) are on every Debian 12 machine and are taken from the
//! host: the fetched binary's `--version` is run once after unpacking, and
//! a missing one is reported then. `EVENT_RECORDER_DEBIAN_MIRROR` names
//! another mirror (once bookworm has moved there: the archive's).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::tools;

const DEFAULT_MIRROR: &str = "https://deb.debian.org/debian";

/// One pinned package: its path under the mirror and its sha256.
struct Deb {
    pool_path: &'static str,
    sha256: &'static str,
}

/// PgBouncer's version, as `pgbouncer --version` prints it.
pub const VERSION: &str = "1.18.0";

const DEBS: &[Deb] = &[
    Deb {
        pool_path: "pool/main/p/pgbouncer/pgbouncer_1.18.0-1+deb12u1_amd64.deb",
        sha256: "b8468c31f94596da0967b1a27980a0a036268eb8e53d3e647651bd7b82b6f65e",
    },
    Deb {
        pool_path: "pool/main/c/c-ares/libc-ares2_1.18.1-3_amd64.deb",
        sha256: "087fd5c2ac883202e1786ab45617cdab7f77bc7f060d58cca177ddf6b6c3fa73",
    },
];

/// A runnable PgBouncer: the binary, and the directory of the libraries
/// fetched with it (for `LD_LIBRARY_PATH`).
pub struct Fetched {
    pub bin: PathBuf,
    pub lib_dir: PathBuf,
}

/// The pinned PgBouncer, installed if need be.
pub fn get() -> Result<Fetched, String> {
    let mirror = std::env::var("EVENT_RECORDER_DEBIAN_MIRROR")
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| DEFAULT_MIRROR.into());
    install(&tools::dir(), &mirror)
}

/// Installs the pinned packages from `mirror` into `tools` (once).
pub fn install(tools: &Path, mirror: &str) -> Result<Fetched, String> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return Err("only x86_64 Linux's PgBouncer is pinned".into());
    }
    let root = tools::install(tools, &format!("pgbouncer-{VERSION}"), |dir| {
        for deb in DEBS {
            let file = dir.join("package.deb");
            let url = format!("{}/{}", mirror.trim_end_matches('/'), deb.pool_path);
            tools::download(&url, &file)?;
            let bytes = std::fs::read(&file).map_err(|e| e.to_string())?;
            verify(deb, &bytes)?;
            unpack_data(&bytes, dir).map_err(|e| format!("{}: {e}", deb.pool_path))?;
            std::fs::remove_file(&file).map_err(|e| e.to_string())?;
        }
        tools::open_directories(dir)?;
        check_version(&paths(dir))
    })?;
    Ok(paths(&root))
}

fn paths(root: &Path) -> Fetched {
    Fetched {
        bin: root.join("usr/sbin/pgbouncer"),
        lib_dir: root.join("usr/lib/x86_64-linux-gnu"),
    }
}

fn verify(deb: &Deb, bytes: &[u8]) -> Result<(), String> {
    let actual: String = openssl::sha::sha256(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if actual != deb.sha256 {
        return Err(format!(
            "{}: sha256 {actual}, not the pinned {}; nothing was installed",
            deb.pool_path, deb.sha256
        ));
    }
    Ok(())
}

/// A `.deb` is an `ar` archive; its files are the `data.tar.*` member,
/// which `tar` unpacks (it recognises the compression itself).
fn unpack_data(deb: &[u8], into: &Path) -> Result<(), String> {
    let (name, data) = ar_members(deb)?
        .into_iter()
        .find(|(name, _)| name.starts_with("data.tar"))
        .ok_or("no data.tar member")?;
    let tarball = into.join(name);
    std::fs::write(&tarball, data).map_err(|e| e.to_string())?;
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(into)
        .output()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    std::fs::remove_file(&tarball).map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "unpacking {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// The members of an `ar` archive: 8-byte magic, then per member a 60-byte
/// header (name 16, mtime 12, uid 6, gid 6, mode 8, size 10, "`\n") and the
/// data, padded to an even length.
fn ar_members(archive: &[u8]) -> Result<Vec<(&str, &[u8])>, String> {
    let mut rest = archive
        .strip_prefix(b"!<arch>\n")
        .ok_or("not an ar archive")?;
    let mut members = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 60 || &rest[58..60] != b"`\n" {
            return Err("truncated ar member header".into());
        }
        let field = |r: std::ops::Range<usize>| {
            std::str::from_utf8(&rest[r])
                .map(str::trim_end)
                .map_err(|_| "ar header is not text".to_string())
        };
        let name = field(0..16)?.trim_end_matches('/');
        let size: usize = field(48..58)?
            .parse()
            .map_err(|_| "ar member size is not a number")?;
        let data = rest
            .get(60..60 + size)
            .ok_or("ar member runs past the end")?;
        members.push((name, data));
        rest = rest.get(60 + size + size % 2..).unwrap_or_default();
    }
    Ok(members)
}

fn check_version(fetched: &Fetched) -> Result<(), String> {
    let out = Command::new(&fetched.bin)
        .arg("--version")
        .env("LD_LIBRARY_PATH", &fetched.lib_dir)
        .output()
        .map_err(|e| format!("cannot run the fetched pgbouncer: {e}"))?;
    let printed = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !printed.contains(&format!("PgBouncer {VERSION}")) {
        return Err(format!(
            "the fetched pgbouncer does not run here (it is Debian 12's; it takes \
             libssl3, libevent-2.1-7, libpam0g and libsystemd0 from the host): {printed}{}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}
