//! One `CopyObject`: copies objects below `MULTIPART_THRESHOLD`, and single-part objects up to
//! 5 GiB (one copy keeps their MD5 ETag), carrying over metadata, system headers and tags, then
//! checks the replica.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::operation::copy_object::CopyObjectOutput;
use aws_sdk_s3::types::{ChecksumMode, MetadataDirective, ServerSideEncryption, TaggingDirective};

use super::identity::{Checksum, Facts, content, is_kms};
use super::outcome::CopyError;
use super::source::{CurrentSource, SourceEndpoint};
use super::verify::{Verified, mismatch, verify};
use crate::config::Config;
use crate::error::{Side, classify};
use crate::keys::encode_copy_source;
use crate::limits::MIB;

/// The bytes one `S3_ATTEMPT_TIMEOUT` is sized for (its default: a copy of 256 MiB).
const BYTES_PER_ATTEMPT_TIMEOUT: u64 = 256 * MIB;

/// The client settings for one copy request of `bytes`: an attempt timeout of
/// `S3_ATTEMPT_TIMEOUT` for every 256 MiB started, so that a copy of gigabytes in one request is
/// not abandoned half-way. `None` up to 256 MiB: the request is sent with the client's own
/// settings (an override costs every request a layer of configuration built and merged).
pub(super) fn copy_settings(config: &Config, bytes: u64) -> Option<aws_sdk_s3::config::Builder> {
    let units = bytes.div_ceil(BYTES_PER_ATTEMPT_TIMEOUT);
    (units > 1).then(|| {
        aws_sdk_s3::config::Builder::new().timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(config.attempt_timeout * units as u32)
                .build(),
        )
    })
}

/// One `CopyObject` conditional on the source's ETag, then a check of the replica (see
/// [`check_copy`]); returns what the check compared.
pub(super) async fn copy_whole(
    destination: &Client,
    config: &Config,
    source: &SourceEndpoint<'_>,
    current: &CurrentSource,
    destination_key: &str,
) -> Result<Verified, CopyError> {
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
    let sent = match copy_settings(config, current.bytes.max(0) as u64) {
        Some(settings) => request.customize().config_override(settings).send().await,
        None => request.send().await,
    };
    let output = sent.map_err(|e| CopyError::s3("CopyObject", Side::Destination)(classify(e)))?;
    check_copy(
        destination,
        config,
        source,
        current,
        destination_key,
        &output,
    )
    .await
}

/// Checks a fresh replica with as few requests as the source allows: the copy's response
/// already carries the replica's ETag and checksum, which settle it when the source's are
/// comparable (MD5 ETags on both sides, or checksums of one algorithm). When they are not
/// known to be (the source's head was not read, and its ETag may be a KMS one), the source's
/// head is read once; when nothing compares the content, the replica's size is checked.
async fn check_copy(
    destination: &Client,
    config: &Config,
    source: &SourceEndpoint<'_>,
    current: &CurrentSource,
    destination_key: &str,
    output: &CopyObjectOutput,
) -> Result<Verified, CopyError> {
    let result = output.copy_object_result();
    let replica = Facts {
        size: current.bytes,
        etag: result.and_then(|r| r.e_tag()).map(str::to_string),
        kms: Some(
            is_kms(output.server_side_encryption()) || config.destination_kms_key_id.is_some(),
        ),
        checksum: result.and_then(|r| {
            Checksum::from_fields(
                [
                    r.checksum_crc64_nvme(),
                    r.checksum_crc32(),
                    r.checksum_crc32_c(),
                    r.checksum_sha1(),
                    r.checksum_sha256(),
                ],
                r.checksum_type(),
            )
        }),
        ..Facts::default()
    };
    let mut facts = match &current.head {
        Some(head) => Facts::from_head(head),
        None => Facts {
            size: current.bytes,
            etag: current.etag.clone(),
            ..Facts::default()
        },
    };
    match content(&facts, &replica) {
        Some(Ok(evidence)) => return Ok(Verified::Content(evidence)),
        Some(Err(stale)) if current.head.is_some() => {
            return Err(mismatch(stale, &facts, &replica));
        }
        _ => {}
    }
    // The source's head helps when it can show the copy's checksum or ETag equal: not for a
    // KMS replica without a checksum.
    let head_helps = replica.checksum.is_some() || replica.kms != Some(true);
    if current.head.is_none()
        && head_helps
        && let Some(head) = head_unchanged_source(config, source, current).await
    {
        facts = Facts::from_head(&head);
        match content(&facts, &replica) {
            Some(Ok(evidence)) => return Ok(Verified::Content(evidence)),
            Some(Err(stale)) => return Err(mismatch(stale, &facts, &replica)),
            None => {}
        }
    }
    verify(destination, config, destination_key, &facts).await
}

/// An ETag in quotes, as HTTP's conditions write it (events carry ETags without).
fn quoted(etag: &str) -> String {
    format!("\"{}\"", etag.trim_matches('"'))
}

/// The source's head with its checksum, if it still is the object copied (same ETag); `None`
/// if it changed since (a newer event copies the newer object) or cannot be read.
async fn head_unchanged_source(
    config: &Config,
    source: &SourceEndpoint<'_>,
    current: &CurrentSource,
) -> Option<aws_sdk_s3::operation::head_object::HeadObjectOutput> {
    source
        .client
        .head_object()
        .bucket(&config.source_bucket)
        .key(&current.key)
        .set_if_match(current.etag.as_deref().map(quoted))
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_up_to_256_mib_keep_the_client_settings() {
        let buckets = [("SOURCE_BUCKET", "src-a"), ("DESTINATION_BUCKET", "dst-b")];
        let config = Config::from_lookup(|name| {
            let found = buckets.iter().find(|(variable, _)| *variable == name);
            found.map(|(_, value)| value.to_string())
        })
        .unwrap();
        assert!(copy_settings(&config, 0).is_none());
        assert!(copy_settings(&config, BYTES_PER_ATTEMPT_TIMEOUT).is_none());
        let attempt = |bytes| {
            let settings = copy_settings(&config, bytes).expect("settings for a large copy");
            let built = settings.build();
            built
                .timeout_config()
                .and_then(|t| t.operation_attempt_timeout())
        };
        let four = 4 * BYTES_PER_ATTEMPT_TIMEOUT;
        assert_eq!(attempt(four), Some(config.attempt_timeout * 4));
        assert_eq!(attempt(four + 1), Some(config.attempt_timeout * 5));
    }
}
