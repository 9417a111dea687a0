//! Start-up under Lambda: configuration, SDK configuration and clients built once, then every
//! invocation handled with them.

use crate::clients::S3Clients;
use crate::config::{Config, ConfigError};
use crate::copy::Replicator;
use crate::entry::handler::handle;

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
