//! Tag changes: the replica gets the source's current tags, without its bytes copied again.

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{Tag, Tagging};

use super::outcome::CopyError;
use super::source::SourceEndpoint;
use crate::config::Config;
use crate::decode::ObjectEvent;
use crate::error::{FailureClass, ReplicationError, Side, Target, classify};

/// The source's current tags, read under the first of the event's key readings that names an
/// object, with that key; `None` when none does.
pub(super) async fn source_tags(
    config: &Config,
    event: &ObjectEvent,
    source: &SourceEndpoint<'_>,
) -> Result<Option<(String, Vec<Tag>)>, ReplicationError> {
    for key in event.key_readings() {
        let read = source
            .client
            .get_object_tagging()
            .bucket(&config.source_bucket)
            .key(key)
            .send()
            .await;
        match read {
            Ok(tags) => return Ok(Some((key.clone(), tags.tag_set().to_vec()))),
            Err(err) => {
                let failure = classify(err);
                if failure.class != FailureClass::NotFound {
                    let target = Target {
                        side: Side::Source,
                        bucket: &config.source_bucket,
                        key,
                        region: source.region,
                    };
                    return Err(ReplicationError::from_s3(
                        failure,
                        "GetObjectTagging",
                        target,
                    ));
                }
            }
        }
    }
    Ok(None)
}

/// Gives the replica at `destination_key` exactly `tags` (`DeleteObjectTagging` when there are
/// none). `Ok(false)` when B has no replica there.
pub(super) async fn put_replica_tags(
    destination: &Client,
    config: &Config,
    destination_key: &str,
    tags: Vec<Tag>,
) -> Result<bool, CopyError> {
    let owner = config.destination_account_id.clone();
    let written = if tags.is_empty() {
        destination
            .delete_object_tagging()
            .bucket(&config.destination_bucket)
            .key(destination_key)
            .set_expected_bucket_owner(owner)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| ("DeleteObjectTagging", classify(e)))
    } else {
        let tagging = Tagging::builder()
            .set_tag_set(Some(tags))
            .build()
            .map_err(|e| CopyError::Mismatch(e.to_string()))?;
        destination
            .put_object_tagging()
            .bucket(&config.destination_bucket)
            .key(destination_key)
            .set_expected_bucket_owner(owner)
            .tagging(tagging)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| ("PutObjectTagging", classify(e)))
    };
    match written {
        Ok(()) => Ok(true),
        Err((_, failure)) if failure.class == FailureClass::NotFound => Ok(false),
        Err((operation, failure)) => Err(CopyError::s3(operation, Side::Destination)(failure)),
    }
}
