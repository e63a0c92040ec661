//! IdP fraud-report upload: CSV files in S3 become `idp_data` rows.

pub mod parse;

use crate::config::{DB_CONNECTION_STRING, ENCRYPTED_DATABASE_PASSWORD};

/// The environment variables this function reads (no data key: the files are plain CSV).
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
