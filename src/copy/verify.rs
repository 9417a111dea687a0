//! Verifying a replica against its source, from the replica's head, by the identity rule's
//! content comparison.

use aws_sdk_s3::Client;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::types::ChecksumMode;

use super::identity::{Evidence, Facts, Stale, content};
use super::outcome::CopyError;
use crate::config::Config;
use crate::error::{S3Failure, Side, classify};

/// What showed a fresh replica equal to its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Its content: equal checksums or comparable ETags.
    Content(Evidence),
    /// Only its size: neither a checksum nor comparable ETags were available (a KMS side, and
    /// no checksum on the source).
    Size,
}

impl Verified {
    /// How it is named in logs.
    pub fn name(self) -> &'static str {
        match self {
            Verified::Content(evidence) => evidence.name(),
            Verified::Size => "size",
        }
    }
}

/// The head of the replica at `destination_key`, with its checksum.
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
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .map_err(classify)
}

/// Checks the replica against the source from the replica's head: the size always, the content
/// where a checksum or comparable ETags allow.
pub(super) async fn verify(
    destination: &Client,
    config: &Config,
    destination_key: &str,
    source: &Facts,
) -> Result<Verified, CopyError> {
    let replica = head_replica(destination, config, destination_key)
        .await
        .map_err(CopyError::s3("HeadObject", Side::Destination))?;
    let replica = Facts::from_head(&replica);
    if replica.size != source.size {
        return Err(mismatch(Stale::Size, source, &replica));
    }
    match content(source, &replica) {
        Some(Ok(evidence)) => Ok(Verified::Content(evidence)),
        Some(Err(stale)) => Err(mismatch(stale, source, &replica)),
        None => Ok(Verified::Size),
    }
}

/// The verification failure for a replica that differs from its source.
pub(super) fn mismatch(stale: Stale, source: &Facts, replica: &Facts) -> CopyError {
    let checksum = |facts: &Facts| {
        facts.checksum.as_ref().map_or("(none)".to_string(), |c| {
            format!("{} {}", c.algorithm, c.value)
        })
    };
    CopyError::Mismatch(format!(
        "{}: replica {} bytes, ETag {}, checksum {}; source {} bytes, ETag {}, checksum {}",
        stale.name(),
        replica.size,
        replica.etag.as_deref().unwrap_or("(none)"),
        checksum(replica),
        source.size,
        source.etag.as_deref().unwrap_or("(none)"),
        checksum(source),
    ))
}
