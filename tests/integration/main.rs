//! Integration tests against a real PostgreSQL (see support::server for
//! how the server is chosen).

mod support;

mod batch;
mod cli;
mod fraud_csv;
mod harness;
mod kept_connection;
mod lambda;
mod logs;
mod original_db;
mod pooler;
mod s3_import;
mod schema;
mod secrets;
mod tls;
