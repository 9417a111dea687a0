//! Copies of large objects in parts (`CreateMultipartUpload` + parallel `UploadPartCopy` +
//! `CompleteMultipartUpload`), carrying over everything a single `CopyObject` does, keeping the
//! source's part layout so the replica's ETag equals the source's, copying every part from the
//! same source version, aborting the upload on any failure, and verifying the result. A copy
//! that does not fit in one invocation stops at its [`Clock`] and continues in the next
//! ([`chain`]).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumType, CompletedMultipartUpload, CompletedPart, ServerSideEncryption,
    Tag,
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::chain::{self, Budget, Clock, Continuation, MAX_STALLED_HOPS};
use super::identity::{Checksum, Facts};
use super::outcome::CopyError;
use super::parts::{Part, multipart_part_count, plan_even, plan_from_sizes};
use super::single::copy_settings;
use super::tags::put_replica_tags;
use super::verify::{Verified, verify};
use crate::config::Config;
use crate::error::{FailureClass, Side, classify};
use crate::keys::encode_copy_source;

/// Characters kept as they are in a `Tagging` header value (form encoding of `key=value&...`).
const TAG_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The source object as read just before copying it.
pub struct SourceObject<'a> {
    /// The source bucket's client (its region).
    pub client: &'a Client,
    /// The source bucket.
    pub bucket: &'a str,
    /// The source key.
    pub key: &'a str,
    /// The source bucket's region, when the event named it (carried to continuations).
    pub region: Option<&'a str>,
    /// The source's head: size, ETag, version, system headers, metadata.
    pub head: &'a HeadObjectOutput,
}

/// How a copy in parts ended in this invocation.
pub enum Step {
    /// Completed and verified.
    Copied(Verified),
    /// Parts remain: the next invocation continues from this.
    HandOff(Box<Continuation>),
}

/// An upload in B and what is known of its parts.
struct Upload {
    id: String,
    parts: Vec<Part>,
    done: Vec<CompletedPart>,
    /// The source's tags as the upload was created with them (unknown when resumed).
    tags: Option<Vec<Tag>>,
    hop: u32,
    stalled: u32,
}

/// Copies `source` to `destination_key` in parts (or continues `resuming`, a copy an earlier
/// invocation started), as far as `budget` allows; completes and verifies the replica when every
/// part is copied. Any failure aborts the upload.
pub async fn copy_in_parts(
    destination: &Client,
    config: &Config,
    source: &SourceObject<'_>,
    destination_key: &str,
    resuming: Option<&Continuation>,
    budget: &Budget,
) -> Result<Step, CopyError> {
    let clock = Clock::new(budget, config);
    let upload = match resuming {
        Some(chain) => resume_upload(destination, config, destination_key, chain).await?,
        None => start_upload(destination, config, source, destination_key).await?,
    };
    let done: HashSet<i32> = upload.done.iter().filter_map(|p| p.part_number()).collect();
    let remaining: Vec<Part> = (upload.parts.iter())
        .filter(|part| !done.contains(&part.number))
        .copied()
        .collect();
    let copied = copy_parts(
        destination,
        config,
        source,
        destination_key,
        &upload.id,
        &remaining,
        &clock,
    )
    .await;
    let copied = match copied {
        Ok(copied) => copied,
        Err(error) => {
            abort(destination, config, destination_key, &upload.id).await;
            return Err(error);
        }
    };
    let progressed = !copied.is_empty();
    let mut completed = upload.done.clone();
    completed.extend(copied);
    completed.sort_by_key(|part| part.part_number());
    if completed.len() < upload.parts.len() {
        return hand_off(
            destination,
            config,
            source,
            destination_key,
            &upload,
            progressed,
        )
        .await;
    }
    if chain::superseded(destination, config, destination_key, &upload.id).await {
        abort(destination, config, destination_key, &upload.id).await;
        return Err(CopyError::Superseded);
    }
    if let Err(error) =
        complete_upload(destination, config, destination_key, &upload.id, completed).await
    {
        abort(destination, config, destination_key, &upload.id).await;
        return Err(error);
    }
    finish(destination, config, source, destination_key, upload.tags).await
}

/// Ends a hop whose parts are not all copied: the continuation for the next invocation, or,
/// after [`MAX_STALLED_HOPS`] hops in a row without a part copied, the chain's failure.
async fn hand_off(
    destination: &Client,
    config: &Config,
    source: &SourceObject<'_>,
    destination_key: &str,
    upload: &Upload,
    progressed: bool,
) -> Result<Step, CopyError> {
    let stalled = if progressed { 0 } else { upload.stalled + 1 };
    if stalled >= MAX_STALLED_HOPS {
        abort(destination, config, destination_key, &upload.id).await;
        return Err(CopyError::Stalled(format!(
            "{stalled} invocations in a row copied no part of the {} left; a part of up to {} bytes must fit in the function's Timeout: raise it, or lower S3_ATTEMPT_TIMEOUT",
            upload.parts.len() - upload.done.len(),
            upload
                .parts
                .iter()
                .map(Part::size)
                .max()
                .unwrap_or_default(),
        )));
    }
    let head = source.head;
    Ok(Step::HandOff(Box::new(Continuation {
        bucket: source.bucket.to_string(),
        key: source.key.to_string(),
        region: source.region.map(str::to_string),
        version_id: head.version_id().map(str::to_string),
        etag: head.e_tag().unwrap_or_default().to_string(),
        size: head.content_length().unwrap_or_default().max(0) as u64,
        destination_key: destination_key.to_string(),
        upload_id: upload.id.clone(),
        parts: chain::runs(&upload.parts),
        hop: upload.hop + 1,
        stalled,
    })))
}

/// Plans the parts, reads the source's tags, and creates the upload.
async fn start_upload(
    destination: &Client,
    config: &Config,
    source: &SourceObject<'_>,
    destination_key: &str,
) -> Result<Upload, CopyError> {
    let head = source.head;
    let size = head.content_length().unwrap_or_default().max(0) as u64;
    let parts = match source_layout(source, config.part_concurrency).await? {
        Some(parts) => parts,
        None => plan_even(size, config.multipart_threshold)
            .map_err(|e| CopyError::Mismatch(e.to_string()))?,
    };
    let tags = source_tagging(source).await?;
    let id = create_upload(
        destination,
        config,
        head,
        destination_key,
        encode_tags(&tags),
    )
    .await?;
    Ok(Upload {
        id,
        parts,
        done: Vec::new(),
        tags: Some(tags),
        hop: 1,
        stalled: 0,
    })
}

/// The upload an earlier invocation started, with the parts it holds; `Superseded` when the
/// function has started a later upload for the key. A chain that cannot go on ends its upload, unless it is gone already or the failure is transient (Lambda's retry of the
/// invocation goes on with it).
async fn resume_upload(
    destination: &Client,
    config: &Config,
    destination_key: &str,
    chain: &Continuation,
) -> Result<Upload, CopyError> {
    let resumed = read_upload(destination, config, destination_key, chain).await;
    if let Err(error) = &resumed {
        let keep = matches!(error, CopyError::S3 { failure, .. }
            if matches!(failure.class, FailureClass::UploadAborted | FailureClass::Transient));
        if !keep {
            abort(destination, config, destination_key, &chain.upload_id).await;
        }
    }
    resumed
}

/// The part plan a chain carries, and the parts its upload holds.
async fn read_upload(
    destination: &Client,
    config: &Config,
    destination_key: &str,
    chain: &Continuation,
) -> Result<Upload, CopyError> {
    let parts = chain
        .plan()
        .map_err(|e| CopyError::Mismatch(e.to_string()))?;
    let done = chain::parts_done(
        destination,
        config,
        destination_key,
        &chain.upload_id,
        &parts,
    )
    .await?;
    if chain::superseded(destination, config, destination_key, &chain.upload_id).await {
        return Err(CopyError::Superseded);
    }
    Ok(Upload {
        id: chain.upload_id.clone(),
        parts,
        done,
        tags: None,
        hop: chain.hop,
        stalled: chain.stalled,
    })
}

/// After the upload completed: verifies the replica, gives it the source's tags as they are now
/// (they may have changed while the copy ran), and checks that the source is still the object
/// copied: if it changed meanwhile, `Changed` makes the caller copy the current object, so that a
/// newer write copied sooner is never overwritten by this older one for good.
async fn finish(
    destination: &Client,
    config: &Config,
    source: &SourceObject<'_>,
    destination_key: &str,
    tags: Option<Vec<Tag>>,
) -> Result<Step, CopyError> {
    let head = source.head;
    let verified = verify(
        destination,
        config,
        destination_key,
        &Facts::from_head(head),
    )
    .await?;
    let now = source_tagging(source).await?;
    if tags.is_none_or(|tags| tags != now) {
        put_replica_tags(destination, config, destination_key, now).await?;
    }
    let current = source
        .client
        .head_object()
        .bucket(source.bucket)
        .key(source.key)
        .send()
        .await;
    match current {
        Ok(current)
            if current.e_tag() != head.e_tag() || current.version_id() != head.version_id() =>
        {
            Err(CopyError::Changed)
        }
        Ok(_) => Ok(Step::Copied(verified)),
        // Gone since: its removal event converges the replica.
        Err(e) => match classify(e) {
            failure if failure.class == FailureClass::NotFound => Ok(Step::Copied(verified)),
            failure => Err(CopyError::S3 {
                operation: "HeadObject",
                side: Side::Source,
                failure,
            }),
        },
    }
}

/// The checksum algorithm and type the upload is created with: the source's, so that the
/// replica carries a checksum comparable with the source's (a full-object one whatever the
/// layout; a composite one over the same parts).
fn source_checksum(head: &HeadObjectOutput) -> Option<(ChecksumAlgorithm, ChecksumType)> {
    let checksum = Facts::from_head(head).checksum?;
    let Checksum {
        algorithm,
        full_object,
        ..
    } = checksum;
    let kind = if full_object {
        ChecksumType::FullObject
    } else {
        ChecksumType::Composite
    };
    Some((ChecksumAlgorithm::from(algorithm), kind))
}

/// Creates the upload with everything a `CopyObject` would carry over from the source's head,
/// the source's tags, and the configured ACL, storage class and KMS key; returns its id.
async fn create_upload(
    destination: &Client,
    config: &Config,
    head: &HeadObjectOutput,
    destination_key: &str,
    tagging: Option<String>,
) -> Result<String, CopyError> {
    let mut create = destination
        .create_multipart_upload()
        .bucket(&config.destination_bucket)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .key(destination_key)
        .set_content_type(head.content_type().map(str::to_string))
        .set_cache_control(head.cache_control().map(str::to_string))
        .set_content_disposition(head.content_disposition().map(str::to_string))
        .set_content_encoding(head.content_encoding().map(str::to_string))
        .set_content_language(head.content_language().map(str::to_string))
        .set_website_redirect_location(head.website_redirect_location().map(str::to_string))
        .set_metadata(head.metadata().cloned())
        .set_tagging(tagging)
        .set_acl(config.destination_acl.clone())
        .set_storage_class(config.destination_storage_class.clone());
    #[allow(deprecated)]
    match (head.expires(), head.expires_string()) {
        (Some(expires), _) => create = create.expires(*expires),
        (None, Some(invalid)) => tracing::warn!(
            key = destination_key,
            expires = invalid,
            "the source's Expires header is not a valid date; S3 refuses it on writes, so the replica is written without it"
        ),
        (None, None) => {}
    }
    if let Some((algorithm, kind)) = source_checksum(head) {
        create = create.checksum_algorithm(algorithm).checksum_type(kind);
    }
    if let Some(kms_key) = &config.destination_kms_key_id {
        create = create
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(kms_key);
    }
    let upload = create
        .send()
        .await
        .map_err(|e| CopyError::s3("CreateMultipartUpload", Side::Destination)(classify(e)))?;
    Ok(upload.upload_id().unwrap_or_default().to_string())
}

/// Completes the upload from its copied parts.
async fn complete_upload(
    destination: &Client,
    config: &Config,
    destination_key: &str,
    upload_id: &str,
    completed: Vec<CompletedPart>,
) -> Result<(), CopyError> {
    let complete = destination
        .complete_multipart_upload()
        .bucket(&config.destination_bucket)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .key(destination_key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await;
    complete
        .map(|_| ())
        .map_err(|e| CopyError::s3("CompleteMultipartUpload", Side::Destination)(classify(e)))
}

/// The source's own part boundaries, when it was uploaded in parts and they can be read
/// (`HeadObject` with `partNumber`); `None` to choose parts for speed instead.
async fn source_layout(
    source: &SourceObject<'_>,
    concurrency: usize,
) -> Result<Option<Vec<Part>>, CopyError> {
    let Some(count) = source.head.e_tag().and_then(multipart_part_count) else {
        return Ok(None);
    };
    let heads: Vec<_> = (1..=count as i32)
        .map(|number| part_size(source, number, count))
        .collect();
    let sizes: Vec<Result<Option<u64>, CopyError>> = futures::stream::iter(heads)
        .buffered(concurrency)
        .collect()
        .await;
    let mut part_sizes = Vec::with_capacity(sizes.len());
    for size in sizes {
        match size? {
            Some(size) => part_sizes.push(size),
            None => return Ok(None),
        }
    }
    Ok(plan_from_sizes(&part_sizes).ok())
}

/// The size of part `number` of the source, if S3 reports the expected part count with it.
async fn part_size(
    source: &SourceObject<'_>,
    number: i32,
    count: u64,
) -> Result<Option<u64>, CopyError> {
    let part = source
        .client
        .head_object()
        .bucket(source.bucket)
        .key(source.key)
        .part_number(number)
        .set_version_id(source.head.version_id().map(str::to_string))
        .send()
        .await
        .map_err(|e| CopyError::s3("HeadObject", Side::Source)(classify(e)))?;
    let reported = part.parts_count().map(|n| n as u64);
    Ok((reported == Some(count)).then(|| part.content_length().unwrap_or_default().max(0) as u64))
}

/// The source version's tags.
async fn source_tagging(source: &SourceObject<'_>) -> Result<Vec<Tag>, CopyError> {
    let tags = source
        .client
        .get_object_tagging()
        .bucket(source.bucket)
        .key(source.key)
        .set_version_id(source.head.version_id().map(str::to_string))
        .send()
        .await
        .map_err(|e| CopyError::s3("GetObjectTagging", Side::Source)(classify(e)))?;
    Ok(tags.tag_set().to_vec())
}

/// Tags as an `x-amz-tagging` header value (`key=value&...`, form-encoded); `None` for none.
fn encode_tags(tags: &[Tag]) -> Option<String> {
    let encoded: Vec<String> = tags
        .iter()
        .map(|tag| {
            format!(
                "{}={}",
                utf8_percent_encode(tag.key(), TAG_KEEP),
                utf8_percent_encode(tag.value(), TAG_KEEP)
            )
        })
        .collect();
    (!encoded.is_empty()).then(|| encoded.join("&"))
}

/// Copies `parts` from the same source version: by version id where the bucket is versioned,
/// and always on condition that the ETag is still the one read before the copy. Starts parts
/// while `clock` allows, and gives up those still in flight at its cutoff (S3 may still apply
/// them; `ListParts` finds them next time). Returns the parts copied, in any order.
async fn copy_parts(
    destination: &Client,
    config: &Config,
    source: &SourceObject<'_>,
    destination_key: &str,
    upload_id: &str,
    parts: &[Part],
    clock: &Clock,
) -> Result<Vec<CompletedPart>, CopyError> {
    let mut copy_source = encode_copy_source(source.bucket, source.key);
    if let Some(version) = source.head.version_id().filter(|v| *v != "null") {
        copy_source = format!(
            "{copy_source}?versionId={}",
            utf8_percent_encode(version, NON_ALPHANUMERIC)
        );
    }
    let target = PartTarget {
        client: destination,
        config,
        owner: config.destination_account_id.as_deref(),
        bucket: &config.destination_bucket,
        key: destination_key,
        upload_id,
        copy_source: &copy_source,
        etag: source.head.e_tag(),
    };
    let mut pending = parts.iter();
    let mut in_flight = FuturesUnordered::new();
    let mut completed = Vec::with_capacity(parts.len());
    let (mut started, mut longest, mut stopped) = (0, Duration::ZERO, false);
    loop {
        while !stopped && in_flight.len() < config.part_concurrency {
            if !clock.may_start(started, longest) {
                stopped = true;
                break;
            }
            let Some(part) = pending.next() else { break };
            started += 1;
            let target = &target;
            in_flight.push(async move {
                let begun = Instant::now();
                copy_part(target, part)
                    .await
                    .map(|done| (done, begun.elapsed()))
            });
        }
        let next = match clock.cutoff() {
            Some(cutoff) => tokio::time::timeout_at(cutoff.into(), in_flight.next()).await,
            None => Ok(in_flight.next().await),
        };
        // A part's failure is final (the client already retried it): stop scheduling parts, and
        // drop the copies in flight, so that the upload is aborted at once.
        match next {
            Ok(Some(copied)) => {
                let (part, took) = copied?;
                longest = longest.max(took);
                completed.push(part);
            }
            Ok(None) => break,
            Err(_) => {
                tracing::info!(
                    key = destination_key,
                    upload_id,
                    in_flight = in_flight.len(),
                    "the invocation's time is up: parts in flight given up, to be copied by the next"
                );
                break;
            }
        }
    }
    Ok(completed)
}

/// Where the parts of one upload are copied to, and from.
struct PartTarget<'a> {
    client: &'a Client,
    config: &'a Config,
    owner: Option<&'a str>,
    bucket: &'a str,
    key: &'a str,
    upload_id: &'a str,
    copy_source: &'a str,
    etag: Option<&'a str>,
}

async fn copy_part(target: &PartTarget<'_>, part: &Part) -> Result<CompletedPart, CopyError> {
    let request = target
        .client
        .upload_part_copy()
        .bucket(target.bucket)
        .set_expected_bucket_owner(target.owner.map(str::to_string))
        .key(target.key)
        .upload_id(target.upload_id)
        .part_number(part.number)
        .copy_source(target.copy_source)
        .copy_source_range(part.range())
        .set_copy_source_if_match(target.etag.map(str::to_string));
    let sent = match copy_settings(target.config, part.size()) {
        Some(settings) => request.customize().config_override(settings).send().await,
        None => request.send().await,
    };
    let copied =
        sent.map_err(|e| CopyError::s3("UploadPartCopy", Side::Destination)(classify(e)))?;
    let result = copied.copy_part_result();
    let field = |get: fn(&aws_sdk_s3::types::CopyPartResult) -> Option<&str>| {
        result.and_then(get).map(str::to_string)
    };
    Ok(CompletedPart::builder()
        .part_number(part.number)
        .set_e_tag(field(|r| r.e_tag()))
        .set_checksum_crc64_nvme(field(|r| r.checksum_crc64_nvme()))
        .set_checksum_crc32(field(|r| r.checksum_crc32()))
        .set_checksum_crc32_c(field(|r| r.checksum_crc32_c()))
        .set_checksum_sha1(field(|r| r.checksum_sha1()))
        .set_checksum_sha256(field(|r| r.checksum_sha256()))
        .build())
}

/// Aborts an upload so that no parts are left behind in the destination; a failure to abort is
/// logged (B's lifecycle rule for incomplete uploads cleans up after it).
pub(super) async fn abort(destination: &Client, config: &Config, key: &str, upload_id: &str) {
    let aborted = destination
        .abort_multipart_upload()
        .bucket(&config.destination_bucket)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .key(key)
        .upload_id(upload_id)
        .send()
        .await;
    if let Err(e) = aborted {
        tracing::error!(
            bucket = %config.destination_bucket,
            key,
            upload_id,
            error = %classify(e),
            "could not abort the multipart upload; its parts remain until B's lifecycle rule removes them"
        );
    }
}
