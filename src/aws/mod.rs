//! AWS: the SDK configured with the OpenSSL HTTP client, and the secrets it
//! fetches at start (KMS Decrypt, S3 GetObject). Endpoints, region and
//! credentials come from the SDK's standard sources (`AWS_ENDPOINT_URL`,
//! `AWS_REGION`, the Lambda role's variables).

mod http;

pub use http::client as http_client;
pub mod rds_token;
pub mod s3;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_types::error::display::DisplayErrorContext;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Why a secret could not be fetched. `source` names the variable it came from.
#[derive(Debug, thiserror::Error)]
#[error("{source_var}: {problem}")]
pub struct SecretError {
    pub source_var: &'static str,
    pub problem: String,
}

fn secret_error(source_var: &'static str, problem: impl Into<String>) -> SecretError {
    SecretError {
        source_var,
        problem: problem.into(),
    }
}

/// Loads the SDK configuration once; every AWS client is built from it.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http::client())
        .load()
        .await
}

/// KMS Decrypt of a base64 ciphertext blob, e.g. `ENCRYPTION_KEY`.
pub async fn kms_decrypt(
    sdk: &SdkConfig,
    source_var: &'static str,
    ciphertext_b64: &str,
) -> Result<Vec<u8>, SecretError> {
    let blob = BASE64
        .decode(ciphertext_b64.trim())
        .map_err(|_| secret_error(source_var, "not valid base64 of a KMS ciphertext"))?;
    let output = aws_sdk_kms::Client::new(sdk)
        .decrypt()
        .ciphertext_blob(aws_smithy_types::Blob::new(blob))
        .send()
        .await
        .map_err(|e| {
            secret_error(
                source_var,
                format!("KMS Decrypt failed: {}", DisplayErrorContext(e)),
            )
        })?;
    output
        .plaintext
        .map(|p| p.into_inner())
        .ok_or_else(|| secret_error(source_var, "KMS Decrypt returned no plaintext"))
}

/// The text of an S3 object (path-style when an endpoint is overridden, as
/// emulators and VPC endpoints need).
pub async fn s3_text(
    sdk: &SdkConfig,
    source_var: &'static str,
    bucket: &str,
    key: &str,
) -> Result<String, SecretError> {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    let object = aws_sdk_s3::Client::from_conf(config)
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            secret_error(
                source_var,
                format!(
                    "S3 GetObject s3://{bucket}/{key} failed: {}",
                    DisplayErrorContext(e)
                ),
            )
        })?;
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|e| {
            secret_error(
                source_var,
                format!("reading s3://{bucket}/{key} failed: {e}"),
            )
        })?
        .into_bytes();
    String::from_utf8(bytes.to_vec())
        .map_err(|_| secret_error(source_var, format!("s3://{bucket}/{key} is not text")))
}
