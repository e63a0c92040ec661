//! Every S3 call the functions make, on one client. Errors name the
//! operation and the object, never its content.

use aws_lambda_events::event::s3::S3Event;
use std::path::Path;

use aws_config::SdkConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{MetadataDirective, ServerSideEncryption, TaggingDirective};
use aws_smithy_types::error::display::DisplayErrorContext;
use tokio::io::AsyncBufRead;

#[derive(Debug, thiserror::Error)]
#[error("S3 {operation} s3://{bucket}/{key} failed: {problem}")]
pub struct S3Error {
    pub operation: &'static str,
    pub bucket: String,
    pub key: String,
    pub problem: String,
}

#[derive(Clone)]
pub struct S3 {
    client: aws_sdk_s3::Client,
}

impl S3 {
    /// Path-style addressing when an endpoint is overridden, as emulators
    /// and some VPC endpoints need.
    pub fn new(sdk: &SdkConfig) -> Self {
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(config),
        }
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, S3Error> {
        self.client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| error("GetObject", bucket, key, DisplayErrorContext(e)))
    }

    /// The object's body as a stream: memory stays bounded whatever its size.
    pub async fn reader(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<impl AsyncBufRead + Unpin + use<>, S3Error> {
        let object = self.get(bucket, key).await?;
        Ok(tokio::io::BufReader::with_capacity(
            256 * 1024,
            object.body.into_async_read(),
        ))
    }

    /// The whole body, refused if larger than `limit` bytes.
    pub async fn bytes(&self, bucket: &str, key: &str, limit: u64) -> Result<Vec<u8>, S3Error> {
        let object = self.get(bucket, key).await?;
        if object.content_length.unwrap_or(0) as u64 > limit {
            return Err(error(
                "GetObject",
                bucket,
                key,
                format!("larger than the {limit}-byte limit"),
            ));
        }
        let body = object
            .body
            .collect()
            .await
            .map_err(|e| error("GetObject", bucket, key, e))?;
        Ok(body.into_bytes().to_vec())
    }

    pub async fn tags(&self, bucket: &str, key: &str) -> Result<Vec<(String, String)>, S3Error> {
        let output = self
            .client
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| error("GetObjectTagging", bucket, key, DisplayErrorContext(e)))?;
        Ok(output
            .tag_set
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect())
    }

    /// Replaces the object's tag set.
    pub async fn put_tags(
        &self,
        bucket: &str,
        key: &str,
        tags: &[(String, String)],
    ) -> Result<(), S3Error> {
        let set = tags
            .iter()
            .map(|(k, v)| aws_sdk_s3::types::Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error("PutObjectTagging", bucket, key, e))?;
        let tagging = aws_sdk_s3::types::Tagging::builder()
            .set_tag_set(Some(set))
            .build()
            .map_err(|e| error("PutObjectTagging", bucket, key, e))?;
        self.client
            .put_object_tagging()
            .bucket(bucket)
            .key(key)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| error("PutObjectTagging", bucket, key, DisplayErrorContext(e)))?;
        Ok(())
    }

    pub async fn put_file(&self, bucket: &str, key: &str, path: &Path) -> Result<(), S3Error> {
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| error("PutObject", bucket, key, e))?;
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body)
            .content_type("application/x-ndjson")
            .server_side_encryption(ServerSideEncryption::Aes256)
            .send()
            .await
            .map_err(|e| error("PutObject", bucket, key, DisplayErrorContext(e)))?;
        Ok(())
    }

    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| error("DeleteObject", bucket, key, DisplayErrorContext(e)))?;
        Ok(())
    }

    /// Moves an object within its bucket: a copy that keeps its tags and
    /// metadata, encrypted with SSE-S3, then the delete.
    pub async fn rename(&self, bucket: &str, from: &str, to: &str) -> Result<(), S3Error> {
        self.client
            .copy_object()
            .bucket(bucket)
            .key(to)
            .copy_source(format!("{}/{}", encode(bucket), encode(from)))
            .tagging_directive(TaggingDirective::Copy)
            .metadata_directive(MetadataDirective::Copy)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .send()
            .await
            .map_err(|e| error("CopyObject", bucket, to, DisplayErrorContext(e)))?;
        self.delete(bucket, from).await
    }
}

fn error(
    operation: &'static str,
    bucket: &str,
    key: &str,
    problem: impl std::fmt::Display,
) -> S3Error {
    S3Error {
        operation,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        problem: problem.to_string(),
    }
}

/// Percent-encoding for `x-amz-copy-source`: everything but unreserved
/// characters and `/`.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The bucket and (decoded) key of each object a notification names, in order.
pub fn objects(event: S3Event) -> impl Iterator<Item = (String, String)> {
    event.records.into_iter().map(|record| {
        let bucket = record.s3.bucket.name.unwrap_or_default();
        let key = notification_key(record.s3.object.key.as_deref().unwrap_or_default());
        (bucket, key)
    })
}

/// An object key as S3 event notifications carry it: form-encoded, so `+`
/// is a space and `%XX` a byte of UTF-8.
pub fn notification_key(encoded: &str) -> String {
    form_urlencoded::parse(format!("k={encoded}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `dir/name.csv` → `name.csv`.
pub fn base_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_keys_are_decoded() {
        assert_eq!(
            notification_key("import/a+b%2Bc.jsonl"),
            "import/a b+c.jsonl"
        );
        assert_eq!(notification_key("caf%C3%A9/%E2%9C%93.csv"), "café/✓.csv");
        assert_eq!(notification_key("k%3D1%26x"), "k=1&x");
    }

    #[test]
    fn copy_source_is_percent_encoded() {
        assert_eq!(encode("dir/a b+ü.csv"), "dir/a%20b%2B%C3%BC.csv");
    }

    #[test]
    fn base_names() {
        assert_eq!(base_name("idp/2019/report.csv"), "report.csv");
        assert_eq!(base_name("report.csv"), "report.csv");
    }
}
