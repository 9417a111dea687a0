//! Replicating one object: a server-side copy (or delete) into the destination bucket, ending
//! in exactly one [`Outcome`].

pub mod multipart;
mod outcome;
pub mod parts;

use aws_sdk_s3::Client;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::types::{MetadataDirective, ServerSideEncryption, TaggingDirective};

use crate::clients::S3Clients;
pub use outcome::{FailedObject, Outcome, SkipReason};

/// Whether an object is encrypted with a KMS key (its ETag is then not an MD5 of its bytes).
fn is_kms(head: &HeadObjectOutput) -> bool {
    matches!(
        head.server_side_encryption(),
        Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
    )
}

use crate::config::Config;
use crate::decode::{ObjectEvent, ObjectEventKind};
use crate::error::{FailureClass, ReplicationError, S3Failure, Side, Target, classify};
use crate::keys::{destination_key, encode_copy_source};
use multipart::{CopyError, PartsCopied, SourceObject, copy_in_parts, verify};

/// How many times a copy is attempted when the source changes between reading its ETag and
/// copying it; each attempt copies the then-current object.
const COPY_ATTEMPTS: usize = 3;

/// Replicates objects from the configured source bucket to the destination bucket with the S3
/// clients built once at init.
#[derive(Debug, Clone)]
pub struct Replicator {
    clients: S3Clients,
    config: Config,
}

/// The source bucket's client and region for one event.
struct SourceEndpoint<'a> {
    client: &'a Client,
    region: &'a str,
}

impl Replicator {
    /// A replicator that makes its calls with `clients` (whose credentials are the function's
    /// execution role in account A).
    pub fn new(clients: S3Clients, config: Config) -> Self {
        Self { clients, config }
    }

    /// The clients in use.
    pub fn clients(&self) -> &S3Clients {
        &self.clients
    }

    /// The source bucket's client: for the region the event names, else the configured one.
    fn source_endpoint<'a>(
        &'a self,
        event: &'a ObjectEvent,
    ) -> Result<SourceEndpoint<'a>, ReplicationError> {
        match event.region.as_deref() {
            None => Ok(SourceEndpoint {
                client: self.clients.source(),
                region: &self.clients.source_region,
            }),
            Some(region) => match self.clients.for_region(region) {
                Some(client) => Ok(SourceEndpoint { client, region }),
                None => Err(ReplicationError::InvalidEvent(format!(
                    "the event places bucket {} in region {region}, but the function has clients only for {}: set SOURCE_REGION={region}",
                    event.bucket,
                    self.clients.regions().collect::<Vec<_>>().join(", ")
                ))),
            },
        }
    }

    fn destination_error(
        &self,
        failure: S3Failure,
        operation: &'static str,
        key: &str,
    ) -> ReplicationError {
        ReplicationError::from_s3(
            failure,
            operation,
            Target {
                side: Side::Destination,
                bucket: &self.config.destination_bucket,
                key,
                region: &self.clients.destination_region,
            },
        )
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replicates the object an event names and returns its outcome. Only the configured source
    /// bucket is acted on, whatever the event says.
    pub async fn replicate(&self, event: &ObjectEvent) -> Outcome {
        if event.bucket != self.config.source_bucket {
            return Outcome::Failed(ReplicationError::ForeignBucket {
                bucket: event.bucket.clone(),
                expected: self.config.source_bucket.clone(),
            });
        }
        if event.kind == ObjectEventKind::Other {
            return Outcome::Skipped(SkipReason::EventTypeNotReplicated(event.event_name.clone()));
        }
        if let Some(prefix) = &self.config.source_prefix
            && !event.key.starts_with(prefix.as_str())
        {
            return Outcome::Skipped(SkipReason::OutsideSourcePrefix(prefix.clone()));
        }
        match event.kind {
            ObjectEventKind::Removed => self.delete_replica(event).await,
            _ => self.copy_current(event, None).await,
        }
    }

    /// Copies an object a listing just showed with `etag` and `size`, without reading its head
    /// first: the copy is conditional on that ETag, and if the object changed since the listing
    /// it is copied as it is now.
    pub async fn copy_listed(&self, event: &ObjectEvent, etag: &str, size: i64) -> Outcome {
        self.copy_current(event, Some((etag, size))).await
    }

    /// Copies the object as it is now, so that a late or repeated event converges on the
    /// source's current state: in one `CopyObject` below `MULTIPART_THRESHOLD`, in parts above.
    /// The copy is conditional on the ETag just read (or listed); if the source changes in
    /// between, it is attempted again against the new object. The replica is verified.
    async fn copy_current(&self, event: &ObjectEvent, listed: Option<(&str, i64)>) -> Outcome {
        let source = match self.source_endpoint(event) {
            Ok(source) => source,
            Err(error) => return Outcome::Failed(error),
        };
        let threshold = self.config.multipart_threshold;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut head = None;
            let (key, etag, bytes) = match listed {
                Some((etag, size)) if attempt == 1 && (size.max(0) as u64) < threshold => {
                    (event.key.clone(), Some(etag.to_string()), size)
                }
                _ => match self.head_source(event, &source).await {
                    Ok(Some((key, found))) => {
                        let etag = found.e_tag().map(str::to_string);
                        let size = found.content_length().unwrap_or_default();
                        head = Some(found);
                        (key, etag, size)
                    }
                    Ok(None) => return Outcome::Skipped(SkipReason::SourceGone),
                    Err(error) => return Outcome::Failed(error),
                },
            };
            let destination_key = match destination_key(&self.config.destination_prefix, &key) {
                Ok(mapped) => mapped,
                Err(message) => return Outcome::Failed(ReplicationError::InvalidEvent(message)),
            };
            let copied = match &head {
                Some(head) if bytes.max(0) as u64 >= threshold => {
                    let object = SourceObject {
                        client: source.client,
                        bucket: &self.config.source_bucket,
                        key: &key,
                        head,
                    };
                    copy_in_parts(
                        self.clients.destination(),
                        &self.config,
                        &object,
                        &destination_key,
                    )
                    .await
                    .map(|done| done == PartsCopied::AlreadyIdentical)
                }
                _ => self
                    .copy_whole(
                        &source,
                        &key,
                        &destination_key,
                        etag.as_deref(),
                        bytes,
                        head.as_ref(),
                    )
                    .await
                    .map(|()| false),
            };
            let (operation, side, failure) = match copied {
                Ok(false) => {
                    return Outcome::Copied {
                        destination_key,
                        bytes,
                    };
                }
                Ok(true) => return Outcome::Skipped(SkipReason::IdenticalReplica),
                Err(CopyError::Mismatch(message)) => {
                    return Outcome::Failed(ReplicationError::Verification {
                        key: destination_key,
                        message,
                    });
                }
                Err(CopyError::S3 {
                    operation,
                    side,
                    failure,
                }) => (operation, side, failure),
            };
            let copying = matches!(operation, "CopyObject" | "UploadPartCopy");
            match failure.class {
                FailureClass::NotFound if copying || side == Side::Source => {
                    return Outcome::Skipped(SkipReason::SourceGone);
                }
                FailureClass::PreconditionFailed if attempt < COPY_ATTEMPTS => {
                    tracing::warn!(bucket = %event.bucket, key = %key, attempt, "source changed during copy; copying the new object");
                }
                _ if side == Side::Source => {
                    return Outcome::Failed(ReplicationError::from_s3(
                        failure,
                        operation,
                        Target {
                            side,
                            bucket: &self.config.source_bucket,
                            key: &key,
                            region: source.region,
                        },
                    ));
                }
                _ => {
                    return Outcome::Failed(self.destination_error(
                        failure,
                        operation,
                        &destination_key,
                    ));
                }
            }
        }
    }

    /// One `CopyObject`, then a check of the replica: its ETag against the source's where both
    /// are MD5s, else its size.
    async fn copy_whole(
        &self,
        source: &SourceEndpoint<'_>,
        key: &str,
        destination_key: &str,
        etag: Option<&str>,
        bytes: i64,
        head: Option<&HeadObjectOutput>,
    ) -> Result<(), CopyError> {
        let config = &self.config;
        let destination = self.clients.destination();
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
        let replica_etag = output.copy_object_result().and_then(|r| r.e_tag());
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
            let source_kms = match head {
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
            bytes.max(0) as u64,
            None,
        )
        .await
    }

    /// Reads the source object's head, trying the event's alternate key reading when the first
    /// names nothing. `Ok(None)` means the object does not exist.
    async fn head_source(
        &self,
        event: &ObjectEvent,
        source: &SourceEndpoint<'_>,
    ) -> Result<Option<(String, HeadObjectOutput)>, ReplicationError> {
        for key in std::iter::once(&event.key).chain(event.alternate_key.as_ref()) {
            let response = source
                .client
                .head_object()
                .bucket(&self.config.source_bucket)
                .key(key)
                .send()
                .await;
            match response {
                Ok(head) => return Ok(Some((key.clone(), head))),
                Err(err) => {
                    let failure = classify(err);
                    if failure.class != FailureClass::NotFound {
                        return Err(ReplicationError::from_s3(
                            failure,
                            "HeadObject",
                            Target {
                                side: Side::Source,
                                bucket: &self.config.source_bucket,
                                key,
                                region: source.region,
                            },
                        ));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Deletes the replica of a removed object, but only while the source is really gone: a
    /// late removal event must not delete the replica of an object written since.
    async fn delete_replica(&self, event: &ObjectEvent) -> Outcome {
        if !self.config.replicate_deletes {
            return Outcome::Skipped(SkipReason::DeletesNotReplicated);
        }
        let source = match self.source_endpoint(event) {
            Ok(source) => source,
            Err(error) => return Outcome::Failed(error),
        };
        match self.head_source(event, &source).await {
            Ok(Some(_)) => return Outcome::Skipped(SkipReason::SourceExistsAgain),
            Ok(None) => {}
            Err(error) => return Outcome::Failed(error),
        }
        let mut deleted = None;
        for key in std::iter::once(&event.key).chain(event.alternate_key.as_ref()) {
            let destination_key = match destination_key(&self.config.destination_prefix, key) {
                Ok(mapped) => mapped,
                Err(message) => return Outcome::Failed(ReplicationError::InvalidEvent(message)),
            };
            let response = self
                .clients
                .destination()
                .delete_object()
                .bucket(&self.config.destination_bucket)
                .set_expected_bucket_owner(self.config.destination_account_id.clone())
                .key(&destination_key)
                .send()
                .await;
            if let Err(err) = response {
                return Outcome::Failed(self.destination_error(
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
}
