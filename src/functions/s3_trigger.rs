//! What the two S3-triggered functions share: their start-up (the kept
//! database connection and S3) and the shape of an invocation: each object
//! the notification names, in order, all before the invocation's deadline.

use std::time::SystemTime;

use aws_lambda_events::event::s3::S3Event;
use tracing::error;

use crate::aws::s3::{self, S3};
use crate::config::DatabaseConfig;
use crate::database::{DeadlinePassed, KeptConnection};
use crate::start::{self, Aws, StartError};

pub struct S3Trigger {
    pub connection: KeptConnection,
    pub s3: S3,
}

impl S3Trigger {
    /// The database from `DB_CONNECTION_STRING` and
    /// `ENCRYPTED_DATABASE_PASSWORD` only (no data key), and S3.
    pub async fn from_env() -> Result<Self, StartError> {
        let aws = Aws::default();
        let database = start::open_database(DatabaseConfig::from_env()?, &aws).await?;
        let s3 = S3::new(aws.config().await);
        Ok(Self {
            connection: start::keep(database).await?,
            s3,
        })
    }

    /// `each` on every object of `event`, in order, until one fails. Past
    /// `deadline` (Lambda's, less a margin) the connection is dropped and
    /// the invocation fails, leaving the object where it is for the retry.
    pub async fn each_object<T, E>(
        &self,
        event: S3Event,
        deadline: SystemTime,
        mut each: impl AsyncFnMut(String, String) -> Result<T, E>,
    ) -> Result<Result<Vec<T>, E>, DeadlinePassed> {
        let mut done = Vec::new();
        let all = async {
            for (bucket, key) in s3::objects(event) {
                done.push(each(bucket, key).await?);
            }
            Ok(())
        };
        match self.connection.before(deadline, all).await {
            Ok(outcome) => Ok(outcome.map(|()| done)),
            Err(late) => {
                error!("the invocation's deadline came first; the object is kept");
                Err(late)
            }
        }
    }
}
