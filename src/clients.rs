//! The S3 clients, built once at init: one per region involved, each signed for its region, and
//! the count of `503` answers they received.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, Region, RuntimeComponents};
use aws_sdk_s3::error::BoxError;

use crate::config::{Config, ConfigError};

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
