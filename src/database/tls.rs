//! TLS to PostgreSQL over OpenSSL, set up with what the connection string
//! asks for and nothing more.
//!
//! The openssl crate's `SslConnector` always loads OpenSSL's default CA
//! store, parsing the whole bundle at start even when nothing is verified,
//! and makes `sslrootcert=<file>` trust the system store as well. So the
//! context is built here from a bare `SslContextBuilder`: roots are loaded
//! only when the chain is verified, and then only the ones named.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::ssl::{
    self, Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslMode, SslOptions,
    SslVerifyMode, SslVersion,
};
use openssl::x509::X509VerifyResult;
use openssl::x509::store::X509Lookup;
use openssl::x509::verify::X509CheckFlags;
use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio_openssl::SslStream;
use tokio_postgres::tls::{self, ChannelBinding, MakeTlsConnect, TlsConnect};

use super::RootCert;

/// What the server's certificate is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify<'a> {
    /// Nothing: the session is encrypted, the server unauthenticated.
    Nothing,
    /// The chain, up to a root in `roots`.
    Chain(&'a RootCert),
    /// The chain, and the host name (or address) connected to.
    ChainAndHost(&'a RootCert),
}

/// Makes one TLS session per connection attempt from a shared context.
#[derive(Clone)]
pub struct MakeTls {
    /// Made at once when it holds roots (a bad CA file is a start-up error);
    /// otherwise at the first handshake, which `disable`, or `prefer` with a
    /// server that declines TLS, never reaches.
    context: Arc<OnceLock<Result<SslContext, ErrorStack>>>,
    verify_host: bool,
}

impl MakeTls {
    pub fn new(verify: Verify<'_>) -> Result<Self, String> {
        let (roots, verify_host) = match verify {
            Verify::Nothing => (None, false),
            Verify::Chain(roots) => (Some(roots), false),
            Verify::ChainAndHost(roots) => (Some(roots), true),
        };
        let context = OnceLock::new();
        if let Some(roots) = roots {
            let mut builder = client_context().map_err(|e| format!("cannot set up TLS: {e}"))?;
            load(&mut builder, roots)?;
            builder.set_verify(SslVerifyMode::PEER);
            let _ = context.set(Ok(builder.build()));
        }
        Ok(Self {
            context: Arc::new(context),
            verify_host,
        })
    }

    /// The context; one that verifies nothing if none was made at start.
    fn context(&self) -> Result<&SslContext, ErrorStack> {
        self.context
            .get_or_init(|| {
                let mut builder = client_context()?;
                builder.set_verify(SslVerifyMode::NONE);
                Ok(builder.build())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// A session for `host`: SNI, and the name check if asked for.
    fn session(&self, host: &str) -> Result<Ssl, ErrorStack> {
        let mut ssl = Ssl::new(self.context()?)?;
        let address = host.parse::<IpAddr>().ok();
        if address.is_none() {
            ssl.set_hostname(host)?; // SNI: proxies route by it
        }
        if self.verify_host {
            let param = ssl.param_mut();
            param.set_hostflags(X509CheckFlags::NO_PARTIAL_WILDCARDS);
            match address {
                Some(ip) => param.set_ip(ip)?,
                None => param.set_host(host)?,
            }
        }
        Ok(ssl)
    }
}

/// What the openssl crate's connector sets, less the default CA store, and
/// with libpq's floor of TLS 1.2.
fn client_context() -> Result<SslContextBuilder, ErrorStack> {
    let mut builder = SslContextBuilder::new(SslMethod::tls_client())?;
    let options = (SslOptions::ALL
        | SslOptions::NO_COMPRESSION
        | SslOptions::NO_SSLV2
        | SslOptions::NO_SSLV3
        | SslOptions::SINGLE_DH_USE
        | SslOptions::SINGLE_ECDH_USE)
        & !SslOptions::DONT_INSERT_EMPTY_FRAGMENTS;
    builder.set_options(options);
    // A retried write may come from a moved buffer: async I/O does that.
    builder.set_mode(
        SslMode::AUTO_RETRY
            | SslMode::ACCEPT_MOVING_WRITE_BUFFER
            | SslMode::ENABLE_PARTIAL_WRITE
            | SslMode::RELEASE_BUFFERS,
    );
    builder.set_cipher_list(
        "DEFAULT:!aNULL:!eNULL:!MD5:!3DES:!DES:!RC4:!IDEA:!SEED:!aDSS:!SRP:!PSK",
    )?;
    builder.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    Ok(builder)
}

fn load(builder: &mut SslContextBuilder, roots: &RootCert) -> Result<(), String> {
    match roots {
        RootCert::File(path) => builder
            .set_ca_file(path)
            .map_err(|e| format!("sslrootcert {} cannot be loaded: {e}", path.display())),
        RootCert::System => load_system(builder),
    }
}

/// The default store as OpenSSL finds it, but strict: a bundle that is
/// there and cannot be read is an error naming it (OpenSSL's own
/// `set_default_verify_paths` ignores it and then trusts nothing).
fn load_system(builder: &mut SslContextBuilder) -> Result<(), String> {
    let (file, dir) = system_paths();
    let has_file = Path::new(&file).exists();
    let dirs: Vec<&str> = dir.split(':').filter(|d| Path::new(d).is_dir()).collect();
    if !has_file && dirs.is_empty() {
        return Err(format!(
            "sslrootcert=system: there is no system CA store (neither {file} nor {dir} exists)"
        ));
    }
    if has_file {
        builder.set_ca_file(&file).map_err(|e| {
            format!("sslrootcert=system: the system CA bundle {file} cannot be loaded: {e}")
        })?;
    }
    if !dirs.is_empty() {
        // Looked up by subject hash at verification time, not read now.
        builder
            .cert_store_mut()
            .add_lookup(X509Lookup::hash_dir())
            .and_then(|lookup| lookup.add_dir(&dirs.join(":"), SslFiletype::PEM))
            .map_err(|e| format!("sslrootcert=system: the CA directory {dir}: {e}"))?;
    }
    Ok(())
}

/// OpenSSL's default CA file and directory, environment overrides first.
fn system_paths() -> (String, String) {
    use std::ffi::CStr;
    // SAFETY: these return pointers to static NUL-terminated strings.
    let text = |f: unsafe extern "C" fn() -> *const std::ffi::c_char| unsafe {
        CStr::from_ptr(f()).to_string_lossy().into_owned()
    };
    let path = |env: String, default: String| {
        std::env::var(env)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or(default)
    };
    (
        path(
            text(openssl_sys::X509_get_default_cert_file_env),
            text(openssl_sys::X509_get_default_cert_file),
        ),
        path(
            text(openssl_sys::X509_get_default_cert_dir_env),
            text(openssl_sys::X509_get_default_cert_dir),
        ),
    )
}

impl<S> MakeTlsConnect<S> for MakeTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = Handshake;
    type Error = Infallible;

    /// Called before the server is asked for TLS, so nothing is made yet.
    fn make_tls_connect(&mut self, host: &str) -> Result<Handshake, Infallible> {
        Ok(Handshake {
            tls: self.clone(),
            host: host.to_owned(),
        })
    }
}

/// A TLS session to be made once the server has agreed to one.
pub struct Handshake {
    tls: MakeTls,
    host: String,
}

impl<S> TlsConnect<S> for Handshake
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = HandshakeError;
    type Future = Pin<Box<dyn Future<Output = Result<TlsStream<S>, HandshakeError>> + Send>>;

    fn connect(self, socket: S) -> Self::Future {
        Box::pin(async move {
            let ssl = self
                .tls
                .session(&self.host)
                .map_err(HandshakeError::Setup)?;
            // OpenSSL reads a record header, then its body: buffered, that is
            // one read from the socket instead of two per record.
            let mut stream = SslStream::new(ssl, BufReader::with_capacity(8192, socket))
                .map_err(HandshakeError::Setup)?;
            match Pin::new(&mut stream).connect().await {
                Ok(()) => Ok(TlsStream(stream)),
                Err(error) => Err(HandshakeError::Failed {
                    error,
                    verify: stream.ssl().verify_result(),
                }),
            }
        })
    }
}

/// Why a handshake failed; the certificate check's verdict is part of it.
#[derive(Debug)]
pub enum HandshakeError {
    Setup(ErrorStack),
    Failed {
        error: ssl::Error,
        verify: X509VerifyResult,
    },
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Setup(e) => write!(f, "{e}"),
            HandshakeError::Failed { error, verify } if *verify != X509VerifyResult::OK => {
                write!(f, "{error}: {verify}")
            }
            HandshakeError::Failed { error, .. } => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandshakeError::Setup(e) => Some(e),
            HandshakeError::Failed { error, .. } => Some(error),
        }
    }
}

/// An established TLS session over the socket.
pub struct TlsStream<S>(SslStream<BufReader<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tls::TlsStream for TlsStream<S> {
    /// `tls-server-end-point` (RFC 5929), for SCRAM-SHA-256-PLUS: the server
    /// certificate's hash, with the digest of its signature (SHA-256 in
    /// place of MD5 and SHA-1). A signature without a separate digest
    /// (Ed25519) gives no binding.
    fn channel_binding(&self) -> ChannelBinding {
        let Some(cert) = self.0.ssl().peer_certificate() else {
            return ChannelBinding::none();
        };
        let digest = cert
            .signature_algorithm()
            .object()
            .nid()
            .signature_algorithms()
            .and_then(|algorithms| match algorithms.digest {
                Nid::MD5 | Nid::SHA1 => Some(MessageDigest::sha256()),
                nid => MessageDigest::from_nid(nid),
            });
        match digest.and_then(|md| cert.digest(md).ok()) {
            Some(hash) => ChannelBinding::tls_server_end_point(hash.to_vec()),
            None => ChannelBinding::none(),
        }
    }
}
