//! The one Runtime API call lambda_runtime does not make for us: reporting an
//! error that happens before the handler exists (`/runtime/init/error`).

use lambda_runtime_api_client::body::Body;
use lambda_runtime_api_client::{PooledClient, build_request};

const ERROR_TYPE: &str = "Runtime.ConfigError";

/// Best effort: a failure to report is logged, and the process exits anyway.
pub async fn report_init_error(message: &str) {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        return;
    }
    let body = serde_json::json!({ "errorType": ERROR_TYPE, "errorMessage": message });
    let request = build_request()
        .method("POST")
        .uri("/2018-06-01/runtime/init/error")
        .header("lambda-runtime-function-error-type", ERROR_TYPE)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()));
    let outcome = match request {
        Ok(request) => PooledClient::builder()
            .build()
            .call(request)
            .await
            .map(|_| ()),
        Err(e) => Err(e.into()),
    };
    if let Err(error) = outcome {
        tracing::warn!(%error, "could not report the init error to the Runtime API");
    }
}
