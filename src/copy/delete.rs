//! Deleting a replica: of the one key reading that names a replica in B.

use aws_sdk_s3::Client;

use super::outcome::{Outcome, SkipReason, failure_on};
use super::verify::head_replica;
use crate::config::Config;
use crate::decode::ObjectEvent;
use crate::error::{FailureClass, ReplicationError, Side, classify};
use crate::keys::destination_key;

/// Deletes the replica of `event`'s key from the destination (in `region`). With one reading
/// of the key (every S3 notification), that key's replica; with several, the replica of the
/// first reading that names one in B, so that two readings never delete two replicas.
pub(super) async fn delete_replica(
    destination: &Client,
    config: &Config,
    region: &str,
    event: &ObjectEvent,
) -> Outcome {
    let mapped: Result<Vec<String>, String> = event
        .key_readings()
        .map(|key| destination_key(&config.destination_prefix, key))
        .collect();
    let mapped = match mapped {
        Ok(mapped) => mapped,
        Err(message) => return Outcome::Failed(ReplicationError::InvalidEvent(message)),
    };
    let target = if mapped.len() == 1 {
        mapped.into_iter().next()
    } else {
        match first_existing(destination, config, region, mapped).await {
            Ok(found) => found,
            Err(error) => return Outcome::Failed(error),
        }
    };
    let Some(destination_key) = target else {
        return Outcome::Skipped(SkipReason::NoReplica);
    };
    let response = destination
        .delete_object()
        .bucket(&config.destination_bucket)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .key(&destination_key)
        .send()
        .await;
    match response {
        Ok(_) => Outcome::Deleted { destination_key },
        Err(err) => Outcome::Failed(failure_on(
            config,
            Side::Destination,
            region,
            classify(err),
            "DeleteObject",
            &destination_key,
        )),
    }
}

/// The first of `keys` that names a replica in B.
async fn first_existing(
    destination: &Client,
    config: &Config,
    region: &str,
    keys: Vec<String>,
) -> Result<Option<String>, ReplicationError> {
    for key in keys {
        match head_replica(destination, config, &key).await {
            Ok(_) => return Ok(Some(key)),
            Err(failure) if failure.class == FailureClass::NotFound => {}
            Err(failure) => {
                return Err(failure_on(
                    config,
                    Side::Destination,
                    region,
                    failure,
                    "HeadObject",
                    &key,
                ));
            }
        }
    }
    Ok(None)
}
