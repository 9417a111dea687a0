//! s3-replicator: an AWS Lambda function that replicates S3 objects from a bucket in one AWS
//! account (A) into a bucket in another account (B).
//!
//! The function runs with an execution role in account A that may read the source bucket;
//! the destination bucket's policy in account B grants that same role write access. One
//! identity can then do a server-side `CopyObject` from A to B, with no object bytes passing
//! through the function, and B owns the replica.
//!
//! # Layout
//! - [`config`]: environment configuration, validated once at init.
//! - [`event`]: decoding every payload shape (S3, SQS, SNS, EventBridge) into object events.
//! - [`keys`]: decoding event keys and encoding `CopySource`.
//! - [`replicate`]: copying or deleting one object, ending in one [`replicate::Outcome`].
//! - [`error`]: classifying S3 errors into typed replication errors.
//! - [`handler`]: the Lambda handler and its responses (summary, error, partial batch response).
//! - [`policy`]: the bucket policy account B attaches to its bucket.
//! - [`cli`]: the commands the binary runs outside Lambda.

pub mod cli;
pub mod config;
pub mod error;
pub mod event;
pub mod handler;
pub mod keys;
pub mod policy;
pub mod replicate;

use aws_sdk_s3::Client;

pub use config::Config;
pub use handler::{handle, handle_payload};
pub use replicate::Replicator;

/// Builds the S3 client from the shared SDK configuration (endpoint, region and credentials from
/// the standard AWS environment), with path-style addressing when configured.
pub fn s3_client(sdk_config: &aws_config::SdkConfig, config: &Config) -> Client {
    let s3_config = aws_sdk_s3::config::Builder::from(sdk_config)
        .force_path_style(config.force_path_style)
        .build();
    Client::from_conf(s3_config)
}

/// Runs the function under the Lambda runtime: configuration and client are built once, then
/// every invocation is handled with them.
pub async fn run_lambda() -> Result<(), lambda_runtime::Error> {
    let config = Config::from_env()?;
    let sdk_config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let replicator = Replicator::new(s3_client(&sdk_config, &config), config);
    lambda_runtime::run(lambda_runtime::service_fn(|event| {
        handle(event, &replicator)
    }))
    .await
}
