//! event-recorder: encrypted audit events from SQS into PostgreSQL rows.
//!
//! Start at [`recorder`]: it is where a message becomes a row.

pub mod aws;
pub mod config;
pub mod crypto;
pub mod database;
pub mod event;
pub mod functions;
pub mod logging;
pub mod metrics;
pub mod recorder;
pub mod route;
pub mod runtime_api;
pub mod schema;
pub mod start;
pub mod store;

pub use crypto::DataKey;
pub use recorder::{BatchReport, Message, MessageError, Recorder};
pub use store::Store;
