//! TLS in front of a plain-TCP server on 127.0.0.1 (moto), so a client
//! makes the HTTPS calls it makes to AWS: certificate checked, name matched.

use std::path::Path;
use std::pin::Pin;

use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod};
use tokio::net::{TcpListener, TcpStream};

/// Serves TLS with `cert` and `key` (PEM) and relays each connection to
/// `upstream`; returns the port it listens on. Runs on the current runtime.
pub async fn start(upstream: u16, cert: &Path, key: &Path) -> u16 {
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acceptor.set_certificate_chain_file(cert).unwrap();
    acceptor
        .set_private_key_file(key, SslFiletype::PEM)
        .unwrap();
    let acceptor = acceptor.build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let ssl = Ssl::new(acceptor.context()).unwrap();
            tokio::spawn(async move {
                let mut tls = tokio_openssl::SslStream::new(ssl, socket).unwrap();
                if Pin::new(&mut tls).accept().await.is_err() {
                    return;
                }
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
            });
        }
    });
    port
}

/// The port of an `http://127.0.0.1:<port>` endpoint.
pub fn port_of(endpoint: &str) -> u16 {
    endpoint.rsplit(':').next().unwrap().parse().unwrap()
}
