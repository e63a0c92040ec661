//! Bulk import: JSON-lines files of events in S3, each line `{"document": <event>}`.

use crate::config::{DB_CONNECTION_STRING, ENCRYPTED_DATABASE_PASSWORD};

/// The environment variables this function reads (no data key: the files are plain JSON).
pub const VARIABLES: &[&str] = &[DB_CONNECTION_STRING, ENCRYPTED_DATABASE_PASSWORD];

use aws_lambda_events::event::s3::S3Event;

use crate::start::StartError;

pub struct Function {}

impl Function {
    pub async fn from_env() -> Result<Self, StartError> {
        todo!()
    }

    pub async fn handle(&self, _event: S3Event) -> Result<serde_json::Value, StartError> {
        todo!()
    }
}
