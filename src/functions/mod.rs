//! The three Lambda functions of the package. They share the core (parse,
//! route, store) and one `bootstrap`; Lambda's Handler setting, passed to a
//! custom runtime as `_HANDLER`, chooses which one an instance runs.

pub mod fraud_csv;
pub mod s3_import;
pub mod s3_trigger;
pub mod sqs;

use crate::config::ConfigError;

/// The variable Lambda sets from the function's Handler setting.
pub const HANDLER: &str = "_HANDLER";

/// Which function this instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// `bootstrap` (or unset): SQS batches of encrypted events.
    Sqs,
    /// `s3-import`: JSON-lines files of events from S3.
    S3Import,
    /// `idp-fraud-upload`: IdP fraud-report CSV files from S3.
    IdpFraudUpload,
}

impl Handler {
    pub const NAMES: [&'static str; 3] = ["bootstrap", "s3-import", "idp-fraud-upload"];

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::parse(std::env::var(HANDLER).ok().as_deref())
    }

    pub fn parse(value: Option<&str>) -> Result<Self, ConfigError> {
        match value.map(str::trim).unwrap_or_default() {
            "" | "bootstrap" => Ok(Self::Sqs),
            "s3-import" => Ok(Self::S3Import),
            "idp-fraud-upload" => Ok(Self::IdpFraudUpload),
            _ => Err(ConfigError {
                variable: HANDLER,
                problem: format!(
                    "unknown handler; the function's Handler must be one of: {}",
                    Self::NAMES.join(", ")
                ),
            }),
        }
    }

    /// The environment variables this function reads.
    pub fn variables(self) -> &'static [&'static str] {
        match self {
            Self::Sqs => sqs::VARIABLES,
            Self::S3Import => s3_import::VARIABLES,
            Self::IdpFraudUpload => fraud_csv::VARIABLES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_names() {
        assert_eq!(Handler::parse(None), Ok(Handler::Sqs));
        assert_eq!(Handler::parse(Some("bootstrap")), Ok(Handler::Sqs));
        assert_eq!(Handler::parse(Some("s3-import")), Ok(Handler::S3Import));
        assert_eq!(
            Handler::parse(Some("idp-fraud-upload")),
            Ok(Handler::IdpFraudUpload)
        );
        let e = Handler::parse(Some("main.handler")).unwrap_err();
        assert_eq!(e.variable, HANDLER);
        assert!(e.problem.contains("s3-import"), "{e}");
        assert!(!e.problem.contains("main.handler"), "{e}");
    }
}
