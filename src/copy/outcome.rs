//! The result every object ends with, the failed-object entry that every mode's report lists,
//! and why a copy did not produce a verified replica.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::decode::ObjectEvent;
use crate::error::{ReplicationError, S3Failure, Side, Target};

/// Why an object was deliberately not replicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The key lies outside `SOURCE_PREFIX`.
    OutsideSourcePrefix(String),
    /// The source object no longer exists (deleted after the event was sent).
    SourceGone,
    /// An ObjectRemoved event while `REPLICATE_DELETES` is off.
    DeletesNotReplicated,
    /// An S3 event type that replication does not act on.
    EventTypeNotReplicated(String),
    /// The destination already holds a replica the identity rule shows current (a repeated
    /// event for a large object), by this evidence.
    IdenticalReplica(&'static str),
    /// A removal for a key none of whose readings names a replica in the destination.
    NoReplica,
    /// A copy in parts gave way to a later copy of the same key (one chain per key).
    Superseded,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::OutsideSourcePrefix(prefix) => {
                write!(f, "key is outside SOURCE_PREFIX {prefix:?}")
            }
            SkipReason::SourceGone => f.write_str("source object no longer exists"),
            SkipReason::DeletesNotReplicated => {
                f.write_str("object removal not replicated (REPLICATE_DELETES is false)")
            }
            SkipReason::EventTypeNotReplicated(name) => {
                write!(f, "event type {name:?} is not replicated")
            }
            SkipReason::IdenticalReplica(evidence) => {
                write!(
                    f,
                    "the destination already holds a current replica ({evidence})"
                )
            }
            SkipReason::NoReplica => {
                f.write_str("no reading of the key names a replica in the destination")
            }
            SkipReason::Superseded => {
                f.write_str("a later copy of the key goes on in its place (one chain per key)")
            }
        }
    }
}

/// The one result every object ends with.
#[derive(Debug)]
pub enum Outcome {
    /// The current source object was copied to `destination_key`.
    Copied {
        /// The key written in the destination bucket.
        destination_key: String,
        /// Size of the object copied.
        bytes: i64,
        /// What showed the replica equal to its source: a checksum, the ETag, or its size.
        verified: &'static str,
    },
    /// The replica at `destination_key` was given the source's current tags (a tag change; the
    /// bytes were not copied again).
    Tagged {
        /// The key whose tags were written in the destination bucket.
        destination_key: String,
        /// How many tags it has now.
        tags: usize,
    },
    /// The replica at `destination_key` was deleted.
    Deleted {
        /// The key deleted in the destination bucket.
        destination_key: String,
    },
    /// Some parts of a copy were copied; the copy continues in another invocation, started by
    /// this one, or (outside Lambda) to be started with `resume`.
    HandedOff {
        /// The key the copy writes in the destination bucket.
        destination_key: String,
        /// The multipart upload in B the chain copies into.
        upload_id: String,
        /// The continuation's place in the chain.
        hop: u32,
        /// The payload that continues the copy, when this invocation could not start it.
        resume: Option<serde_json::Value>,
    },
    /// Nothing was written, on purpose.
    Skipped(SkipReason),
    /// The source is archived and must be restored first (the error carries the restore
    /// command). Counted and listed, but not retried: nothing changes until someone restores it,
    /// and its `ObjectRestore:Completed` event then copies it.
    Archived(ReplicationError),
    /// Replication failed; the error says whether a retry can help.
    Failed(ReplicationError),
}

impl Outcome {
    /// The outcome's name in logs and summaries.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Copied { .. } => "copied",
            Outcome::Tagged { .. } => "tagged",
            Outcome::Deleted { .. } => "deleted",
            Outcome::HandedOff { .. } => "handed_off",
            Outcome::Skipped(_) => "skipped",
            Outcome::Archived(_) => "archived",
            Outcome::Failed(_) => "failed",
        }
    }

    /// Writes the outcome's one structured log line.
    pub fn log(&self, event: &ObjectEvent, duration: Duration) {
        let duration_ms = duration.as_millis() as u64;
        let (bucket, key, event_name) = (&event.bucket, &event.key, &event.event_name);
        match self {
            Outcome::Copied {
                destination_key,
                bytes,
                verified,
            } => tracing::info!(
                bucket,
                key,
                destination_key,
                bytes,
                verified,
                event_name,
                duration_ms,
                outcome = "copied",
                "object replicated"
            ),
            Outcome::Tagged {
                destination_key,
                tags,
            } => tracing::info!(
                bucket,
                key,
                destination_key,
                tags,
                event_name,
                duration_ms,
                outcome = "tagged",
                "replica tags replaced"
            ),
            Outcome::Deleted { destination_key } => tracing::info!(
                bucket,
                key,
                destination_key,
                event_name,
                duration_ms,
                outcome = "deleted",
                "replica deleted"
            ),
            Outcome::HandedOff {
                destination_key,
                upload_id,
                hop,
                resume,
            } => tracing::info!(
                bucket,
                key,
                destination_key,
                upload_id,
                hop,
                started = resume.is_none(),
                event_name,
                duration_ms,
                outcome = "handed_off",
                "copy in parts continues in another invocation"
            ),
            Outcome::Skipped(reason) => tracing::info!(
                bucket, key, event_name, duration_ms, outcome = "skipped",
                reason = %reason, "object skipped"
            ),
            Outcome::Archived(error) => tracing::warn!(
                bucket, key, event_name, duration_ms, outcome = "archived",
                error = %error, "object archived: restore it first"
            ),
            Outcome::Failed(error) => tracing::error!(
                bucket, key, event_name, duration_ms, outcome = "failed",
                error_code = error.code(), transient = error.is_transient(),
                error = %error, "object failed"
            ),
        }
    }
}

/// One failed object, as listed in a summary.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FailedObject {
    /// The bucket the event named.
    pub bucket: String,
    /// The decoded key (empty when the record could not be decoded at all).
    pub key: String,
    /// A short error code.
    pub error_code: String,
    /// The full reason.
    pub error: String,
}

impl FailedObject {
    /// The entry for `key` in `bucket`, which ended with `error`.
    pub fn new(bucket: &str, key: &str, error: &ReplicationError) -> Self {
        Self {
            bucket: bucket.to_string(),
            key: key.to_string(),
            error_code: error.code().to_string(),
            error: error.to_string(),
        }
    }
}

/// Why a copy did not produce a verified replica.
#[derive(Debug)]
pub enum CopyError {
    /// An S3 call failed.
    S3 {
        /// The failed call.
        operation: &'static str,
        /// Which bucket it was on.
        side: Side,
        /// The classified failure.
        failure: S3Failure,
    },
    /// The copy completed but the replica does not match the source.
    Mismatch(String),
    /// The source changed after its copy in parts completed: the current object is copied.
    Changed,
    /// The function started a later upload for the key: this copy in parts gave way to it
    /// (its upload aborted).
    Superseded,
    /// A copy in parts that copied no part in several invocations in a row (its upload aborted).
    Stalled(String),
}

impl CopyError {
    pub(crate) fn s3(operation: &'static str, side: Side) -> impl FnOnce(S3Failure) -> Self {
        move |failure| CopyError::S3 {
            operation,
            side,
            failure,
        }
    }
}

/// The error for a failed call on the source or destination bucket (in `region`).
pub(super) fn failure_on(
    config: &Config,
    side: Side,
    region: &str,
    failure: S3Failure,
    operation: &'static str,
    key: &str,
) -> ReplicationError {
    let bucket = match side {
        Side::Source => &config.source_bucket,
        Side::Destination => &config.destination_bucket,
    };
    ReplicationError::from_s3(
        failure,
        operation,
        Target {
            side,
            bucket,
            key,
            region,
        },
    )
}
