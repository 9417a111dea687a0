//! s3-replicator: an AWS Lambda function that replicates S3 objects from a bucket in one AWS
//! account (A) into a bucket in another account (B).
//!
//! The function runs with an execution role in account A that may read the source bucket;
//! the destination bucket's policy in account B grants that same role write access. One
//! identity can then do a server-side `CopyObject` from A to B, with no object bytes passing
//! through the function, and B owns the replica.
//!
//! # Layout
//! An event passes through the stages in this order; each module imports only from the modules
//! listed above it.
//! - Foundations: [`limits`] (S3's size limits), [`config`] (environment, validated at init),
//!   [`error`] (S3 errors classified), [`metrics`] (EMF lines), [`keys`] (event keys and
//!   `CopySource`), [`clients`] (the S3 clients, one per region), [`invoke`] (invoking the
//!   function itself).
//! - [`decode`]: every payload shape (S3, SQS, SNS, EventBridge) into object events.
//! - [`copy`]: one object event into one [`copy::Outcome`]: decide what B needs, copy (whole or
//!   in parts), verify, or delete.
//! - [`backfill`]: the backfill mode: listing merge, pacing, continuation and fan-out.
//! - [`ops`]: the permission doctor and the bucket policy account B attaches.
//! - [`entry`]: the Lambda handler and its responses, Batch Operations jobs, start-up, and the
//!   command line.

pub mod limits;

pub mod config;
pub mod error;
pub mod keys;
pub mod metrics;

pub mod clients;
pub mod invoke;

pub mod decode;

pub mod copy;

pub mod backfill;

pub mod ops;

pub mod entry;

pub use clients::S3Clients;
pub use config::{Config, ConfigError};
pub use copy::Replicator;
pub use entry::handler::{
    HandlerError, InvocationContext, handle, handle_payload, handle_with_context,
};
pub use entry::runtime::{replicator_from_env, run_lambda};
