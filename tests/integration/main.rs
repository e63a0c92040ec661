//! Integration tests against a real PostgreSQL (see support::server for
//! how the server is chosen).

mod support;

mod batch;
mod cli;
mod lambda;
mod pooler;
mod schema;
mod secrets;
mod tls;
