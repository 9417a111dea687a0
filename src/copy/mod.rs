//! Replicating one object: decide what B needs for the key an event names, then copy (whole or
//! in parts) or delete, and verify; every object ends in exactly one [`Outcome`].
//!
//! This module holds the decisions: which source object is current, whether a failure means
//! "gone", "changed, try again" or "failed". The mechanics live below it: [`source`] (the
//! source's client and head), [`single`] (one `CopyObject`), [`multipart`] and [`parts`]
//! (copies in parts), [`verify`] (the replica against its source), [`delete`] (removing
//! replicas), and [`outcome`] (the results every mode reports). Built on the decoded events and
//! the clients; the modes (event, backfill, doctor) call it.

pub mod chain;
mod delete;
pub mod identity;
pub mod multipart;
mod outcome;
pub mod parts;
mod single;
mod source;
mod tags;
mod verify;

use crate::clients::S3Clients;
use crate::config::Config;
use crate::decode::{ObjectEvent, ObjectEventKind};
use crate::error::{FailureClass, ReplicationError, Side};
use crate::keys::destination_key;
use crate::limits::MAX_PART_SIZE;
use chain::{Budget, Continuation};
use identity::{AgeAsEvidence, Evidence, Facts, judge};
use multipart::{SourceObject, Step, copy_in_parts};
use outcome::failure_on;
pub use outcome::{CopyError, FailedObject, Outcome, SkipReason};
use source::{CurrentSource, SourceEndpoint, head_readings, head_source};
use verify::{Verified, head_replica};

/// How many times a copy is attempted when the source changes between reading its ETag and
/// copying it; each attempt copies the then-current object.
const COPY_ATTEMPTS: usize = 3;

/// Whether an object of `bytes` whose ETag is `etag` is copied in parts: one that reaches
/// `MULTIPART_THRESHOLD` and was written in parts, or one larger than a `CopyObject` can copy
/// (5 GiB). Any other is copied whole, which keeps a single-part object's MD5 ETag.
pub(crate) fn copied_in_parts(config: &Config, bytes: u64, etag: Option<&str>) -> bool {
    let written_in_parts = etag.is_some_and(|etag| etag.contains('-'));
    bytes >= config.multipart_threshold && (written_in_parts || bytes > MAX_PART_SIZE)
}

/// Replicates objects from the configured source bucket to the destination bucket with the S3
/// clients built once at init.
#[derive(Debug, Clone)]
pub struct Replicator {
    clients: S3Clients,
    config: Config,
}

/// What a copy attempt did.
enum Done {
    /// Wrote the replica, and verified it so.
    Copied(Verified),
    /// Found the replica current already, by this evidence.
    AlreadyCurrent(Evidence),
    /// Copied some parts; the next invocation continues from this.
    HandedOff(Box<Continuation>),
}

/// What to do after one copy attempt failed.
enum Next {
    /// Read the source again and copy what is current now.
    Retry,
    /// Stop with this outcome.
    Stop(Outcome),
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

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
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

    /// Replicates the object an event names and returns its outcome; a copy in parts that does
    /// not fit in `budget` is handed to a continuation invocation. Only the configured source
    /// bucket is acted on, whatever the event says.
    pub async fn replicate(&self, event: &ObjectEvent, budget: &Budget) -> Outcome {
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
            // The rarer paths are boxed, so that the future of a copy, of which a backfill holds
            // hundreds at once, stays the size of the common path's.
            ObjectEventKind::Removed => Box::pin(self.converge_removed(event, budget)).await,
            ObjectEventKind::Tagged => Box::pin(self.copy_tags(event, budget)).await,
            _ => {
                let known = event.etag.as_deref().zip(event.size);
                self.copy_current(event, Known::Listed(known), budget).await
            }
        }
    }

    /// Copies the object as it is now, so that a late or repeated event converges on the
    /// source's current state: in one `CopyObject` below `MULTIPART_THRESHOLD`, in parts above.
    /// A small object whose ETag and size the event (or a listing) gave is copied on condition
    /// of that ETag with no other request; else its head is read first. If the source changed,
    /// or the copy found no object under that key reading, the head is read and the copy made
    /// again from what is current (a gone source is skipped). The replica is verified.
    async fn copy_current(
        &self,
        event: &ObjectEvent,
        known: Known<'_>,
        budget: &Budget,
    ) -> Outcome {
        let source = match self.source_endpoint(event) {
            Ok(source) => source,
            Err(error) => return Outcome::Failed(error),
        };
        let (mut listed, mut read, mut resuming) = match known {
            Known::Listed(listed) => (listed, None, None),
            Known::Read(current) => (None, Some(*current), None),
            Known::Chain(current, chain) => (None, Some(*current), Some(chain)),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let found = match read.take() {
                Some(current) => Ok(Some(current)),
                None => self.read_current(event, &source, listed.take()).await,
            };
            let current = match found {
                Ok(Some(current)) => current,
                Ok(None) => return Outcome::Skipped(SkipReason::SourceGone),
                Err(error) => return Outcome::Failed(error),
            };
            let destination_key =
                match destination_key(&self.config.destination_prefix, &current.key) {
                    Ok(mapped) => mapped,
                    Err(message) => {
                        return Outcome::Failed(ReplicationError::InvalidEvent(message));
                    }
                };
            let copy = Copy {
                source: &source,
                current: &current,
                destination_key: &destination_key,
                resuming: resuming.take(),
                budget,
            };
            let error = match self.copy_object(copy).await {
                Ok(Done::Copied(verified)) => {
                    return Outcome::Copied {
                        destination_key,
                        bytes: current.bytes,
                        verified: verified.name(),
                    };
                }
                Ok(Done::AlreadyCurrent(evidence)) => {
                    return Outcome::Skipped(SkipReason::IdenticalReplica(evidence.name()));
                }
                Ok(Done::HandedOff(chain)) => {
                    return Box::pin(self.hand_off(*chain, budget)).await;
                }
                Err(error) => error,
            };
            match self.after_failure(error, attempt, &source, &current.key, &destination_key) {
                Next::Retry => tracing::warn!(
                    bucket = %event.bucket, key = %current.key, attempt,
                    "the source changed, went missing or lost its upload during the copy; copying what is current now"
                ),
                Next::Stop(outcome) => return outcome,
            }
        }
    }

    /// Continues a copy in parts an earlier invocation started (a `continue` payload), as far as
    /// `budget` allows. When the source is no longer the object the chain copies, its upload is
    /// aborted and the current object copied instead (or nothing, when it is gone).
    pub async fn resume(&self, chain: &Continuation, budget: &Budget) -> Outcome {
        let event = chain.event();
        if event.bucket != self.config.source_bucket {
            return Outcome::Failed(ReplicationError::ForeignBucket {
                bucket: event.bucket,
                expected: self.config.source_bucket.clone(),
            });
        }
        let source = match self.source_endpoint(&event) {
            Ok(source) => source,
            Err(error) => return Outcome::Failed(error),
        };
        let found = head_source(&self.config, &event, &source).await;
        let current = match found {
            Ok(found) => found.map(CurrentSource::from_head),
            Err(error) => return Outcome::Failed(error),
        };
        let mapped = destination_key(&self.config.destination_prefix, &chain.key);
        let unchanged = current.as_ref().is_some_and(|current| {
            current.etag.as_deref() == Some(chain.etag.as_str())
                && current.head.as_ref().and_then(|h| h.version_id()) == chain.version_id.as_deref()
        }) && mapped.as_deref() == Ok(chain.destination_key.as_str());
        if !unchanged {
            tracing::warn!(
                bucket = %chain.bucket, key = %chain.key, upload_id = %chain.upload_id,
                "the source changed or went away since this copy in parts started: its upload is aborted"
            );
            let destination = self.clients.destination();
            multipart::abort(
                destination,
                &self.config,
                &chain.destination_key,
                &chain.upload_id,
            )
            .await;
        }
        match current {
            None => Outcome::Skipped(SkipReason::SourceGone),
            Some(current) if unchanged => {
                let known = Known::Chain(Box::new(current), chain);
                self.copy_current(&event, known, budget).await
            }
            Some(current) => {
                let known = Known::Read(Box::new(current));
                self.copy_current(&event, known, budget).await
            }
        }
    }

    /// The source object to copy: as the event or a listing showed it (a small object, on the
    /// first attempt), else as its head says now. `Ok(None)` when it no longer exists.
    async fn read_current(
        &self,
        event: &ObjectEvent,
        source: &SourceEndpoint<'_>,
        known: Option<(&str, i64)>,
    ) -> Result<Option<CurrentSource>, ReplicationError> {
        if let Some((etag, size)) = known
            && (size.max(0) as u64) < self.config.multipart_threshold
        {
            return Ok(Some(CurrentSource {
                key: event.key.clone(),
                etag: Some(etag.to_string()),
                bytes: size,
                head: None,
            }));
        }
        let found = head_source(&self.config, event, source).await?;
        Ok(found.map(CurrentSource::from_head))
    }

    /// Copies `current`: in parts when it was written in parts and reaches
    /// `MULTIPART_THRESHOLD`, or exceeds what one `CopyObject` can copy (5 GiB), or continues a
    /// copy in parts; else in one `CopyObject`, which keeps a single-part object's MD5 ETag. An
    /// object of `MULTIPART_THRESHOLD` or more is first compared with its replica, so that a
    /// repeated event does not copy gigabytes again.
    async fn copy_object(&self, copy: Copy<'_>) -> Result<Done, CopyError> {
        let Copy {
            source,
            current,
            destination_key,
            resuming,
            budget,
        } = copy;
        let destination = self.clients.destination();
        let bytes = current.bytes.max(0) as u64;
        match &current.head {
            Some(head) if bytes >= self.config.multipart_threshold || resuming.is_some() => {
                if resuming.is_none() {
                    if let Some(evidence) = self.replica_current(head, destination_key).await {
                        return Ok(Done::AlreadyCurrent(evidence));
                    }
                    if !copied_in_parts(&self.config, bytes, head.e_tag()) {
                        return single::copy_whole(
                            destination,
                            &self.config,
                            source,
                            current,
                            destination_key,
                        )
                        .await
                        .map(Done::Copied);
                    }
                }
                let object = SourceObject {
                    client: source.client,
                    bucket: &self.config.source_bucket,
                    key: &current.key,
                    region: Some(source.region),
                    head,
                };
                let step = Box::pin(copy_in_parts(
                    destination,
                    &self.config,
                    &object,
                    destination_key,
                    resuming,
                    budget,
                ))
                .await?;
                Ok(match step {
                    Step::Copied(verified) => Done::Copied(verified),
                    Step::HandOff(chain) => Done::HandedOff(chain),
                })
            }
            _ => single::copy_whole(destination, &self.config, source, current, destination_key)
                .await
                .map(Done::Copied),
        }
    }

    /// Starts the invocation that continues a copy in parts; outside Lambda, returns its payload
    /// in the outcome instead. When the invocation cannot be started, the upload is aborted and
    /// the object fails (so that its event is retried).
    async fn hand_off(&self, chain: Continuation, budget: &Budget) -> Outcome {
        let payload = chain.payload();
        let resume = if budget.invoker.can_invoke() {
            if let Err(message) = budget.invoker.start(&payload).await {
                multipart::abort(
                    self.clients.destination(),
                    &self.config,
                    &chain.destination_key,
                    &chain.upload_id,
                )
                .await;
                return Outcome::Failed(ReplicationError::Chain {
                    key: chain.destination_key,
                    message: format!(
                        "its continuation invocation could not be started ({message}); the upload was aborted"
                    ),
                });
            }
            None
        } else {
            Some(payload)
        };
        Outcome::HandedOff {
            destination_key: chain.destination_key,
            upload_id: chain.upload_id,
            hop: chain.hop,
            resume,
        }
    }

    /// The evidence that B's replica is current for the source `head`, by the identity rule
    /// from both heads (age is not evidence here); `None` when it is not, or has no replica.
    async fn replica_current(
        &self,
        head: &aws_sdk_s3::operation::head_object::HeadObjectOutput,
        destination_key: &str,
    ) -> Option<Evidence> {
        let replica = head_replica(self.clients.destination(), &self.config, destination_key)
            .await
            .ok()?;
        let verdict = judge(
            &Facts::from_head(head),
            &Facts::from_head(&replica),
            AgeAsEvidence::Refused,
        );
        match verdict {
            Ok(evidence) => Some(evidence),
            Err(stale) => {
                tracing::debug!(
                    destination_key,
                    reason = stale.name(),
                    "replica is not current"
                );
                None
            }
        }
    }

    /// What a failed copy attempt means: the source is gone (skip), it changed under the copy
    /// (try again, a few times), or the copy failed.
    fn after_failure(
        &self,
        error: CopyError,
        attempt: usize,
        source: &SourceEndpoint<'_>,
        key: &str,
        destination_key: &str,
    ) -> Next {
        if let CopyError::S3 {
            operation,
            side,
            failure,
        } = &error
        {
            let copying = matches!(*operation, "CopyObject" | "UploadPartCopy");
            let retry = attempt < COPY_ATTEMPTS;
            let again = match failure.class {
                // The source said it is missing: read it again, and only then call it gone.
                FailureClass::NotFound => (copying || *side == Side::Source) && retry,
                // Changed under the copy, or the upload was aborted under it (or completed by a
                // duplicate of its chain): start again from the current object.
                FailureClass::PreconditionFailed | FailureClass::UploadAborted => retry,
                // A copy names two buckets: reading the source once tells whether it is the
                // missing one; if the copy fails so again, it is the destination.
                FailureClass::NoSuchBucket => copying && attempt == 1,
                _ => false,
            };
            if again {
                return Next::Retry;
            }
        }
        if matches!(error, CopyError::Changed) && attempt < COPY_ATTEMPTS {
            return Next::Retry;
        }
        Next::Stop(self.failure_outcome(error, source, key, destination_key))
    }

    /// The outcome of a failure that is not tried again.
    fn failure_outcome(
        &self,
        error: CopyError,
        source: &SourceEndpoint<'_>,
        key: &str,
        destination_key: &str,
    ) -> Outcome {
        let (operation, side, failure) = match error {
            CopyError::Mismatch(message) => {
                return Outcome::Failed(ReplicationError::Verification {
                    key: destination_key.to_string(),
                    message,
                });
            }
            CopyError::Changed => {
                return Outcome::Failed(ReplicationError::Verification {
                    key: destination_key.to_string(),
                    message: format!(
                        "the source changed after each of {COPY_ATTEMPTS} copies; its next event copies it again"
                    ),
                });
            }
            CopyError::Superseded => return Outcome::Skipped(SkipReason::Superseded),
            CopyError::Stalled(message) => {
                return Outcome::Failed(ReplicationError::Chain {
                    key: destination_key.to_string(),
                    message,
                });
            }
            CopyError::S3 {
                operation,
                side,
                failure,
            } => (operation, side, failure),
        };
        if failure.class == FailureClass::Archived {
            // Whichever call met it, it is the source that must be restored.
            let error = failure_on(
                &self.config,
                Side::Source,
                source.region,
                failure,
                operation,
                key,
            );
            return Outcome::Archived(error);
        }
        let (region, key) = match side {
            Side::Source => (source.region, key),
            Side::Destination => (self.clients.destination_region.as_str(), destination_key),
        };
        Outcome::Failed(failure_on(
            &self.config,
            side,
            region,
            failure,
            operation,
            key,
        ))
    }

    /// A removal event: B converges to A's current state of the key. When A still has a
    /// current object under it (a rollback made an older version current, a delete marker was
    /// removed, or the key was written again since), that object is copied unless the replica is
    /// shown current; when A has none, the replica is deleted if deletes are replicated.
    async fn converge_removed(&self, event: &ObjectEvent, budget: &Budget) -> Outcome {
        let source = match self.source_endpoint(event) {
            Ok(source) => source,
            Err(error) => return Outcome::Failed(error),
        };
        match head_source(&self.config, event, &source).await {
            Ok(Some(found)) => {
                let current = CurrentSource::from_head(found);
                return self
                    .copy_current(event, Known::Read(Box::new(current)), budget)
                    .await;
            }
            Ok(None) => {}
            Err(error) => return Outcome::Failed(error),
        }
        if !self.config.replicate_deletes {
            return Outcome::Skipped(SkipReason::DeletesNotReplicated);
        }
        let deleted = delete::delete_replica(
            self.clients.destination(),
            &self.config,
            &self.clients.destination_region,
            event,
        )
        .await;
        if !matches!(deleted, Outcome::Deleted { .. }) {
            return deleted;
        }
        // The key may have been written again between the read of A and the delete, and its
        // copy made before the delete landed: a delete never removes a newer object for good.
        match head_readings(&self.config, event, &source).await {
            Ok(None) => deleted,
            Ok(Some(found)) => {
                tracing::warn!(
                    bucket = %event.bucket, key = %found.0,
                    "the source was written again while its replica was deleted; copying it again"
                );
                let current = CurrentSource::from_head(found);
                self.copy_current(event, Known::Read(Box::new(current)), budget)
                    .await
            }
            Err(error) => Outcome::Failed(error),
        }
    }
}

impl Replicator {
    /// A tag change: B's replica gets A's current tags, without its bytes copied again. When B
    /// has no replica (its copy may still be running, or its event was lost), the object is
    /// copied instead, which carries the tags; a copy in parts re-reads the source's tags after
    /// completing, so a change made while it ran is not lost either.
    async fn copy_tags(&self, event: &ObjectEvent, budget: &Budget) -> Outcome {
        let source = match self.source_endpoint(event) {
            Ok(source) => source,
            Err(error) => return Outcome::Failed(error),
        };
        let (key, tags) = match tags::source_tags(&self.config, event, &source).await {
            Ok(Some(found)) => found,
            Ok(None) => return Outcome::Skipped(SkipReason::SourceGone),
            Err(error) => return Outcome::Failed(error),
        };
        let destination_key = match destination_key(&self.config.destination_prefix, &key) {
            Ok(mapped) => mapped,
            Err(message) => return Outcome::Failed(ReplicationError::InvalidEvent(message)),
        };
        let count = tags.len();
        let written = tags::put_replica_tags(
            self.clients.destination(),
            &self.config,
            &destination_key,
            tags,
        )
        .await;
        match written {
            Ok(true) => Outcome::Tagged {
                destination_key,
                tags: count,
            },
            Ok(false) => self.copy_current(event, Known::Listed(None), budget).await,
            Err(error) => self.failure_outcome(error, &source, &key, &destination_key),
        }
    }
}

/// What is known of the source object before a copy's first attempt.
enum Known<'a> {
    /// Its ETag and size, from the event or a listing (if they were given).
    Listed(Option<(&'a str, i64)>),
    /// Its head, just read.
    Read(Box<CurrentSource>),
    /// Its head, just read, found unchanged since an earlier invocation started this copy in
    /// parts: the copy continues.
    Chain(Box<CurrentSource>, &'a Continuation),
}

/// One copy attempt: the source object as read, where it goes, and the copy in parts it
/// continues, if any.
struct Copy<'a> {
    source: &'a SourceEndpoint<'a>,
    current: &'a CurrentSource,
    destination_key: &'a str,
    resuming: Option<&'a Continuation>,
    budget: &'a Budget,
}
