//! One `CopyObject`: copies objects below `MULTIPART_THRESHOLD`, carrying over metadata, system
//! headers and tags, then checks the replica.

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{MetadataDirective, ServerSideEncryption, TaggingDirective};

use super::outcome::CopyError;
use super::source::{CurrentSource, SourceEndpoint, is_kms};
use super::verify::verify;
use crate::config::Config;
use crate::error::{Side, classify};
use crate::keys::encode_copy_source;

/// One `CopyObject` conditional on the source's ETag, then a check of the replica: its ETag
/// against the source's where both are MD5s, else its size.
pub(super) async fn copy_whole(
    destination: &Client,
    config: &Config,
    source: &SourceEndpoint<'_>,
    current: &CurrentSource,
    destination_key: &str,
) -> Result<(), CopyError> {
    let (key, etag) = (current.key.as_str(), current.etag.as_deref());
    let mut request = destination
        .copy_object()
        .bucket(&config.destination_bucket)
        .key(destination_key)
        .copy_source(encode_copy_source(&config.source_bucket, key))
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .set_copy_source_if_match(etag.map(str::to_string))
        .metadata_directive(MetadataDirective::Copy)
        .tagging_directive(TaggingDirective::Copy)
        .set_acl(config.destination_acl.clone())
        .set_storage_class(config.destination_storage_class.clone());
    if let Some(kms_key) = &config.destination_kms_key_id {
        request = request
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(kms_key);
    }
    let output = request
        .send()
        .await
        .map_err(|e| CopyError::s3("CopyObject", Side::Destination)(classify(e)))?;
    let replica_etag = output
        .copy_object_result()
        .and_then(|r| r.e_tag())
        .map(unquoted);
    let etag = etag.map(unquoted);
    let plain = |e: Option<&str>| e.is_some_and(|e| !e.contains('-'));
    let comparable = config.destination_kms_key_id.is_none()
        && output.server_side_encryption() != Some(&ServerSideEncryption::AwsKms)
        && plain(etag)
        && plain(replica_etag);
    if comparable && replica_etag == etag {
        return Ok(());
    }
    if comparable {
        // An MD5 mismatch is a bad copy, unless the source's ETag was never an MD5 (SSE-KMS).
        let source_kms = match &current.head {
            Some(head) => is_kms(head),
            None => source
                .client
                .head_object()
                .bucket(&config.source_bucket)
                .key(key)
                .send()
                .await
                .map(|h| is_kms(&h))
                .unwrap_or(false),
        };
        if !source_kms {
            return Err(CopyError::Mismatch(format!(
                "replica ETag {} differs from source ETag {}",
                replica_etag.unwrap_or("(none)"),
                etag.unwrap_or("(none)")
            )));
        }
    }
    verify(
        destination,
        config,
        destination_key,
        current.bytes.max(0) as u64,
        None,
    )
    .await
}

/// An ETag without its quotes: listings and heads quote ETags, events do not.
fn unquoted(etag: &str) -> &str {
    etag.trim_matches('"')
}
