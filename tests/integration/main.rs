//! Integration tests against a real PostgreSQL (see support::server for
//! how the server is chosen).

// The support code is a crate of its own (test-support/), shared with the
// benches; under this name `crate::support::...` paths reach it.
use event_recorder_test_support as support;

mod batch;
mod cli;
mod copy_path;
mod failover;
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
