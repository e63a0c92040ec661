//! The AWS SDK's HTTP client over OpenSSL, so the binary carries one TLS and
//! crypto stack (the SDK's default would add rustls and aws-lc).

use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use hyper_openssl::client::legacy::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::TokioExecutor;
use openssl::error::ErrorStack;
use openssl::ssl::{SslConnector, SslConnectorBuilder, SslMethod};

/// An SDK HTTP client that verifies servers against the system CA store
/// (OpenSSL's default paths: `/etc/pki/tls` on Amazon Linux).
pub fn client() -> Result<SharedHttpClient, ErrorStack> {
    tls()?; // fail here, at start, rather than on the first request
    Ok(SharedHttpClient::new(OpenSslClient))
}

fn tls() -> Result<SslConnectorBuilder, ErrorStack> {
    let mut tls = SslConnector::builder(SslMethod::tls_client())?;
    tls.set_default_verify_paths()?;
    Ok(tls)
}

#[derive(Debug, Clone)]
struct OpenSslClient;

impl HttpClient for OpenSslClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(settings.connect_timeout());
        let https = tls()
            .and_then(|tls| HttpsConnector::with_connector(tcp, tls))
            .expect("the TLS settings were accepted when the client was made");
        let client = Client::builder(TokioExecutor::new()).build(https);
        SharedHttpConnector::new(Connector {
            client,
            read_timeout: settings.read_timeout(),
        })
    }
}

#[derive(Debug)]
struct Connector {
    client: Client<HttpsConnector<TcpConnector>, SdkBody>,
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
