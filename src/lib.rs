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
//! - [`multipart`]: copying large objects in parts, and verifying replicas.
//! - [`parts`]: part layouts for multipart copies.
//! - [`replicate`]: copying or deleting one object, ending in one [`replicate::Outcome`].
//! - [`error`]: classifying S3 errors into typed replication errors.
//! - [`backfill`]: copying what the destination lacks, from a merge of both buckets' listings.
//! - [`batch`]: S3 Batch Operations jobs.
//! - [`handler`]: the Lambda handler and its responses (summary, error, partial batch response).
//! - [`policy`]: the bucket policy account B attaches to its bucket.
//! - [`doctor`]: checks every permission the configuration needs and names what is missing.
//! - [`metrics`]: CloudWatch Embedded Metric Format lines.
//! - [`cli`]: the commands the binary runs outside Lambda.

pub mod backfill;
pub mod batch;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod error;
pub mod event;
pub mod handler;
pub mod keys;
pub mod metrics;
pub mod multipart;
pub mod parts;
pub mod policy;
pub mod replicate;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, Region, RuntimeComponents};
use aws_sdk_s3::error::BoxError;

pub use config::{Config, ConfigError};
pub use handler::{InvocationContext, handle, handle_payload, handle_with_context};
pub use replicate::Replicator;

/// The S3 clients the replicator calls, built once at init: one per region involved (the
/// function's, the source bucket's, the destination bucket's), so that each call is signed for
/// and sent to its bucket's region. Buckets in one region share one client.
#[derive(Debug, Clone)]
pub struct S3Clients {
    clients: Vec<(String, Client)>,
    source: Client,
    destination: Client,
    /// The region of the source bucket when an event does not say (`SOURCE_REGION`, else the
    /// function's region).
    pub source_region: String,
    /// The region of the destination bucket (`DESTINATION_REGION`, else the function's region).
    pub destination_region: String,
    slow_downs: SlowDowns,
}

/// Counts the `503` answers (`SlowDown`, `ServiceUnavailable`) S3 gives any of the clients, one
/// per attempt, retries included: the signal a backfill lowers its concurrency on.
#[derive(Debug, Clone, Default)]
pub struct SlowDowns(Arc<AtomicU64>);

impl SlowDowns {
    /// The answers counted so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Intercept for SlowDowns {
    fn name(&self) -> &'static str {
        "SlowDowns"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if context.response().status().as_u16() == 503 {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl S3Clients {
    /// Builds the clients from the shared SDK configuration (endpoint and credentials from the
    /// standard AWS environment), with path-style addressing when configured.
    pub fn new(sdk_config: &aws_config::SdkConfig, config: &Config) -> Result<Self, ConfigError> {
        let function_region = sdk_config.region().map(|r| r.to_string());
        let resolve = |configured: &Option<String>, variable: &'static str| {
            configured
                .clone()
                .or_else(|| function_region.clone())
                .ok_or_else(|| ConfigError {
                    variable,
                    problem: "is required when the function's region (AWS_REGION) is not set"
                        .into(),
                })
        };
        let source_region = resolve(&config.source_region, "SOURCE_REGION")?;
        let destination_region = resolve(&config.destination_region, "DESTINATION_REGION")?;
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(std::time::Duration::from_secs(3))
            .operation_attempt_timeout(config.attempt_timeout)
            .build();
        let retries = if config.adaptive_retry {
            aws_sdk_s3::config::retry::RetryConfig::adaptive()
        } else {
            aws_sdk_s3::config::retry::RetryConfig::standard()
        }
        .with_max_attempts(config.max_attempts);
        let slow_downs = SlowDowns::default();
        let build = |region: &str| {
            let s3_config = aws_sdk_s3::config::Builder::from(sdk_config)
                .region(Region::new(region.to_string()))
                .force_path_style(config.force_path_style)
                .timeout_config(timeouts.clone())
                .retry_config(retries.clone())
                .interceptor(slow_downs.clone())
                .build();
            Client::from_conf(s3_config)
        };
        let source = build(&source_region);
        let mut clients = vec![(source_region.clone(), source.clone())];
        let destination = if destination_region == source_region {
            source.clone()
        } else {
            let client = build(&destination_region);
            clients.push((destination_region.clone(), client.clone()));
            client
        };
        if let Some(region) = function_region
            && !clients.iter().any(|(known, _)| *known == region)
        {
            let client = build(&region);
            clients.push((region, client));
        }
        Ok(Self {
            clients,
            source,
            destination,
            source_region,
            destination_region,
            slow_downs,
        })
    }

    /// The `503` answers the clients have had so far.
    pub fn slow_downs(&self) -> u64 {
        self.slow_downs.count()
    }

    /// The client for `region`, if one was built for it.
    pub fn for_region(&self, region: &str) -> Option<&Client> {
        self.clients
            .iter()
            .find(|(name, _)| name == region)
            .map(|(_, client)| client)
    }

    /// The client for calls on the destination bucket.
    pub fn destination(&self) -> &Client {
        &self.destination
    }

    /// The client for calls on the source bucket when no event names its region.
    pub fn source(&self) -> &Client {
        &self.source
    }

    /// The regions clients were built for.
    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.clients.iter().map(|(region, _)| region.as_str())
    }
}

/// Builds the replicator from the environment: configuration, SDK configuration and clients,
/// once.
pub async fn replicator_from_env() -> Result<(Replicator, aws_config::SdkConfig), ConfigError> {
    let config = Config::from_env()?;
    let sdk_config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let clients = S3Clients::new(&sdk_config, &config)?;
    Ok((Replicator::new(clients, config), sdk_config))
}

/// Runs the function under the Lambda runtime: configuration and clients are built once, then
/// every invocation is handled with them.
pub async fn run_lambda() -> Result<(), lambda_runtime::Error> {
    let (replicator, sdk_config) = replicator_from_env().await?;
    let (config, clients) = (replicator.config(), replicator.clients());
    tracing::info!(
        source_bucket = %config.source_bucket,
        source_region = %clients.source_region,
        destination_bucket = %config.destination_bucket,
        destination_region = %clients.destination_region,
        "replicator ready"
    );
    let lambda = aws_sdk_lambda::Client::new(&sdk_config);
    lambda_runtime::run(lambda_runtime::service_fn(|event| {
        handle(event, &replicator, &lambda)
    }))
    .await
}
