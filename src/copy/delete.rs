//! Deleting a replica: the destination key of each of the event's key readings.

use aws_sdk_s3::Client;

use super::outcome::{Outcome, failure_on};
use crate::config::Config;
use crate::decode::ObjectEvent;
use crate::error::{ReplicationError, Side, classify};
use crate::keys::destination_key;

/// Deletes the replica of every key reading of `event` from the destination (in `region`).
pub(super) async fn delete_replicas(
    destination: &Client,
    config: &Config,
    region: &str,
    event: &ObjectEvent,
) -> Outcome {
    let mut deleted = None;
    for key in std::iter::once(&event.key).chain(event.alternate_key.as_ref()) {
        let destination_key = match destination_key(&config.destination_prefix, key) {
            Ok(mapped) => mapped,
            Err(message) => return Outcome::Failed(ReplicationError::InvalidEvent(message)),
        };
        let response = destination
            .delete_object()
            .bucket(&config.destination_bucket)
            .set_expected_bucket_owner(config.destination_account_id.clone())
            .key(&destination_key)
            .send()
            .await;
        if let Err(err) = response {
            return Outcome::Failed(failure_on(
                config,
                Side::Destination,
                region,
                classify(err),
                "DeleteObject",
                &destination_key,
            ));
        }
        deleted.get_or_insert(destination_key);
    }
    Outcome::Deleted {
        destination_key: deleted.unwrap_or_default(),
    }
}
