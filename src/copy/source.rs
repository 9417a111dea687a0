//! The source side of a copy: which client reaches the source bucket, and the source object's
//! head, read under either of the event's key readings.

use aws_sdk_s3::Client;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::types::ChecksumMode;

use crate::config::Config;
use crate::decode::ObjectEvent;
use crate::error::{FailureClass, ReplicationError, Side, Target, classify};

/// The source bucket's client and region for one event.
pub(super) struct SourceEndpoint<'a> {
    pub(super) client: &'a Client,
    pub(super) region: &'a str,
}

/// Reads the source object's head (with its checksum), trying the event's key readings in order
/// until one names an object. `Ok(None)` means none does, and the bucket exists (a 404 on a
/// missing bucket looks the same to a HEAD, so one listing confirms it).
pub(super) async fn head_source(
    config: &Config,
    event: &ObjectEvent,
    source: &SourceEndpoint<'_>,
) -> Result<Option<(String, HeadObjectOutput)>, ReplicationError> {
    if let Some(found) = head_readings(config, event, source).await? {
        return Ok(Some(found));
    }
    source
        .client
        .list_objects_v2()
        .bucket(&config.source_bucket)
        .prefix(&event.key)
        .max_keys(1)
        .send()
        .await
        .map_err(|err| source_error(config, source, classify(err), "ListObjectsV2", &event.key))?;
    Ok(None)
}

/// As [`head_source`], without confirming the bucket when no reading names an object (for a
/// second look at a bucket just confirmed).
pub(super) async fn head_readings(
    config: &Config,
    event: &ObjectEvent,
    source: &SourceEndpoint<'_>,
) -> Result<Option<(String, HeadObjectOutput)>, ReplicationError> {
    for key in event.key_readings() {
        let response = source
            .client
            .head_object()
            .bucket(&config.source_bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        match response {
            Ok(head) => return Ok(Some((key.clone(), head))),
            Err(err) => {
                let failure = classify(err);
                if failure.class != FailureClass::NotFound {
                    return Err(source_error(config, source, failure, "HeadObject", key));
                }
            }
        }
    }
    Ok(None)
}

fn source_error(
    config: &Config,
    source: &SourceEndpoint<'_>,
    failure: crate::error::S3Failure,
    operation: &'static str,
    key: &str,
) -> ReplicationError {
    ReplicationError::from_s3(
        failure,
        operation,
        Target {
            side: Side::Source,
            bucket: &config.source_bucket,
            key,
            region: source.region,
        },
    )
}

/// The source object a copy is made from, as last read: from its head, or from a listing (then
/// without a head).
pub(super) struct CurrentSource {
    /// The key it was found under (the event's key, or its alternate reading).
    pub(super) key: String,
    /// The ETag the copy is conditional on.
    pub(super) etag: Option<String>,
    /// Its size.
    pub(super) bytes: i64,
    /// Its head, when it was read.
    pub(super) head: Option<HeadObjectOutput>,
}

impl CurrentSource {
    /// The object a head (found under `key`) describes.
    pub(super) fn from_head((key, head): (String, HeadObjectOutput)) -> Self {
        CurrentSource {
            key,
            etag: head.e_tag().map(str::to_string),
            bytes: head.content_length().unwrap_or_default(),
            head: Some(head),
        }
    }
}
