//! S3 in moto for the S3 functions' tests: a bucket per test, objects with
//! tags, and the notification Lambda sends when an object is created.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration, Tag, Tagging};
use serde_json::{Value, json};

use super::moto;

/// The test's own SDK config for moto (the functions read the env).
pub async fn sdk() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(event_recorder::aws::http_client())
        .endpoint_url(&moto::shared().endpoint)
        .region(Region::new("eu-west-2"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

pub struct Bucket {
    pub name: String,
    pub client: aws_sdk_s3::Client,
}

impl Bucket {
    pub async fn new() -> Self {
        let sdk = sdk().await;
        let client = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        let name = super::server::unique_name("bucket").replace('_', "-");
        client
            .create_bucket()
            .bucket(&name)
            .create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::EuWest2)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        Self { name, client }
    }

    pub async fn put(&self, key: &str, body: impl Into<Vec<u8>>, tags: &[(&str, &str)]) {
        let mut put = self
            .client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .body(body.into().into());
        if !tags.is_empty() {
            let query: Vec<String> = tags
                .iter()
                .map(|(k, v)| {
                    form_urlencoded::Serializer::new(String::new())
                        .append_pair(k, v)
                        .finish()
                })
                .collect();
            put = put.tagging(query.join("&"));
        }
        put.send().await.unwrap();
    }

    /// The object's body, or None if it does not exist.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let object = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
            .ok()?;
        Some(object.body.collect().await.unwrap().into_bytes().to_vec())
    }

    pub async fn tags(&self, key: &str) -> Vec<(String, String)> {
        let mut tags: Vec<(String, String)> = self
            .client
            .get_object_tagging()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
            .unwrap()
            .tag_set
            .into_iter()
            .map(|t: Tag| (t.key, t.value))
            .collect();
        tags.sort();
        tags
    }

    pub async fn set_tags(&self, key: &str, tags: &[(&str, &str)]) {
        let set = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(*k).value(*v).build().unwrap())
            .collect();
        self.client
            .put_object_tagging()
            .bucket(&self.name)
            .key(key)
            .tagging(Tagging::builder().set_tag_set(Some(set)).build().unwrap())
            .send()
            .await
            .unwrap();
    }

    /// Every key in the bucket, sorted.
    pub async fn keys(&self) -> Vec<String> {
        let listed = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .send()
            .await
            .unwrap();
        let mut keys: Vec<String> = listed
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| o.key)
            .collect();
        keys.sort();
        keys
    }

    /// The `ObjectCreated:Put` notification for `key`, with the key
    /// form-encoded as S3 sends it.
    pub fn created(&self, key: &str) -> Value {
        let encoded: String = form_urlencoded::byte_serialize(key.as_bytes()).collect();
        // S3 leaves `/` as it is.
        let encoded = encoded.replace("%2F", "/");
        json!({
            "Records": [{
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "eu-west-2",
                "eventTime": "2026-11-30T10:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:EXAMPLE"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": "r", "x-amz-id-2": "i"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "tests",
                    "bucket": {
                        "name": self.name,
                        "ownerIdentity": {"principalId": "EXAMPLE"},
                        "arn": format!("arn:aws:s3:::{}", self.name)
                    },
                    "object": {"key": encoded, "size": 1, "eTag": "0", "sequencer": "0"}
                }
            }]
        })
    }
}
