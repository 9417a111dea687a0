//! Verifying a replica against its source, from the replica's head.

use aws_sdk_s3::Client;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;

use super::outcome::CopyError;
use crate::config::Config;
use crate::error::{S3Failure, Side, classify};

/// The head of the replica at `destination_key`.
pub(super) async fn head_replica(
    destination: &Client,
    config: &Config,
    destination_key: &str,
) -> Result<HeadObjectOutput, S3Failure> {
    destination
        .head_object()
        .bucket(&config.destination_bucket)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .key(destination_key)
        .send()
        .await
        .map_err(classify)
}

/// Checks the replica against the source: the size always, the ETag where it must match.
pub(super) async fn verify(
    destination: &Client,
    config: &Config,
    destination_key: &str,
    size: u64,
    etag: Option<&str>,
) -> Result<(), CopyError> {
    let replica = head_replica(destination, config, destination_key)
        .await
        .map_err(CopyError::s3("HeadObject", Side::Destination))?;
    let replica_size = replica.content_length().unwrap_or(-1);
    if replica_size != size as i64 {
        return Err(CopyError::Mismatch(format!(
            "replica has {replica_size} bytes, source {size}"
        )));
    }
    if let Some(expected) = etag
        && replica.e_tag() != Some(expected)
    {
        return Err(CopyError::Mismatch(format!(
            "replica ETag {} differs from source ETag {expected}",
            replica.e_tag().unwrap_or("(none)")
        )));
    }
    Ok(())
}
