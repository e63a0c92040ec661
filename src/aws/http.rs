//! The AWS SDK's HTTP client over OpenSSL, so the binary carries one TLS and
//! crypto stack (the SDK's default would add rustls and aws-lc).
//!
//! The SDK asks for a connector at every request attempt. One is kept per
//! timeout setting, so requests share a connection pool, and all share one
//! TLS context, made at the first HTTPS connection: parsing the CA store is
//! the costliest step of a start, and an endpoint on plain HTTP (a local
//! emulator) never needs it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use http::Uri;
use http::uri::Scheme;
use hyper_openssl::client::legacy::{HttpsLayer, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssl::ssl::{SslConnector, SslMethod};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use tower_layer::Layer;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An SDK HTTP client that verifies servers against the system CA store
/// (OpenSSL's default paths: `/etc/pki/tls` on Amazon Linux).
pub fn client() -> SharedHttpClient {
    SharedHttpClient::new(OpenSslClient::default())
}

/// A connector's (connect timeout, read timeout).
type Timeouts = (Option<Duration>, Option<Duration>);

#[derive(Debug, Default)]
struct OpenSslClient {
    tls: Arc<LazyTls>,
    connectors: Mutex<HashMap<Timeouts, SharedHttpConnector>>,
}

impl HttpClient for OpenSslClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self
            .connectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connectors
            .entry(key)
            .or_insert_with(|| {
                let mut tcp = TcpConnector::new();
                tcp.enforce_http(false);
                tcp.set_connect_timeout(settings.connect_timeout());
                let connect = Connect {
                    tcp,
                    tls: self.tls.clone(),
                };
                SharedHttpConnector::new(Connector {
                    client: Client::builder(TokioExecutor::new()).build(connect),
                    read_timeout: settings.read_timeout(),
                })
            })
            .clone()
    }
}

/// The TLS context, made once, when first needed, on a blocking thread: the
/// runtime goes on with other start-up work (the database connection)
/// while the CA store is parsed.
#[derive(Default)]
struct LazyTls(OnceCell<HttpsLayer>);

impl LazyTls {
    async fn get(&self) -> Result<&HttpsLayer, BoxError> {
        self.0
            .get_or_try_init(|| async {
                // The builder loads OpenSSL's default CA store.
                let make =
                    || HttpsLayer::with_connector(SslConnector::builder(SslMethod::tls_client())?);
                Ok(tokio::task::spawn_blocking(make).await??)
            })
            .await
    }
}

impl std::fmt::Debug for LazyTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.0.initialized() {
            "made"
        } else {
            "not yet made"
        };
        f.debug_tuple("LazyTls").field(&state).finish()
    }
}

/// TCP, with TLS on top for `https` URIs.
#[derive(Clone)]
struct Connect {
    tcp: TcpConnector,
    tls: Arc<LazyTls>,
}

impl Service<Uri> for Connect {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        if uri.scheme() != Some(&Scheme::HTTPS) {
            let connect = self.tcp.call(uri);
            return Box::pin(async move { Ok(MaybeHttpsStream::Http(connect.await?)) });
        }
        let (tcp, tls) = (self.tcp.clone(), self.tls.clone());
        Box::pin(async move { tls.get().await?.layer(tcp).call(uri).await })
    }
}

#[derive(Debug)]
struct Connector {
    client: Client<Connect, SdkBody>,
    read_timeout: Option<Duration>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::other(e.into(), None))?;
            let call = client.request(request);
            let response = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, call)
                    .await
                    .map_err(|e| ConnectorError::timeout(e.into()))?,
                None => call.await,
            }
            .map_err(|e| {
                if e.is_connect() {
                    ConnectorError::io(e.into())
                } else {
                    ConnectorError::other(e.into(), None)
                }
            })?;
            let response = response.map(SdkBody::from_body_1_x);
            response
                .try_into()
                .map_err(|e: aws_smithy_runtime_api::http::HttpError| {
                    ConnectorError::other(e.into(), None)
                })
        })
    }
}
