//! What a backfill is asked to do, what it reports, and why it stops early.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::copy::FailedObject;
use crate::error::ReplicationError;

/// What a backfill invocation asks for: `{"backfill": {...}}`. Every field has a default, so
/// `{"backfill": {}}` replicates the whole source.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct BackfillRequest {
    /// Only keys under this prefix of the source bucket (within `SOURCE_PREFIX`).
    pub prefix: String,
    /// Resume point: every key up to and including this one is done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_after: Option<String>,
    /// Count what would be copied, and write nothing.
    pub dry_run: bool,
    /// Invoke the function again, asynchronously, with `resume` until the listing is exhausted.
    #[serde(rename = "continue")]
    pub continue_backfill: bool,
    /// Start one backfill (with `continue`) per first-level prefix under `prefix`, and backfill
    /// the keys directly under `prefix` here.
    pub fan_out: bool,
    /// With `fan_out`: the shard prefixes to use instead of the first-level prefixes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<String>,
    /// Only the keys directly under `prefix` (no deeper `/`); what a fan-out keeps for itself.
    pub shallow: bool,
    /// Which hop of a continued backfill this is.
    pub hop: u32,
    /// The chain this hop belongs to (set by its first hop; see the backfill lock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

impl BackfillRequest {
    /// Reads the request from the value under `"backfill"`.
    pub fn from_value(value: &Value) -> Result<Self, String> {
        if value.is_null() {
            return Ok(Self::default());
        }
        serde_json::from_value(value.clone()).map_err(|e| format!("invalid backfill request: {e}"))
    }

    /// The payload that continues this backfill after `key`.
    pub(super) fn resume_after(&self, key: Option<String>) -> Value {
        let mut next = self.clone();
        next.fan_out = false;
        next.shards.clear();
        next.start_after = key.or_else(|| self.start_after.clone());
        next.hop = self.hop + 1;
        json!({ "backfill": next })
    }
}

/// What a backfill invocation did, and how to continue it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BackfillReport {
    /// Source objects examined.
    pub listed: u64,
    /// Objects already in the destination with the same size and ETag.
    pub unchanged: u64,
    /// Objects copied.
    pub copied: u64,
    /// Objects skipped (deleted from the source since the listing, outside `SOURCE_PREFIX`).
    pub skipped: u64,
    /// Objects that failed; a re-run copies them, since the destination still lacks them.
    pub failed: u64,
    /// Objects in an archive storage class or tier: restore them, and their restore events (or
    /// a re-run) copy them.
    pub archived: u64,
    /// Large objects whose copy in parts continues in its own chain of invocations.
    pub handed_off: u64,
    /// The payloads that continue those copies, when the function could not invoke itself
    /// (outside Lambda): invoke the function with each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copies_to_resume: Vec<Value>,
    /// Bytes copied.
    pub bytes: i64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Dry run: objects that would be copied.
    pub planned: u64,
    /// Dry run: bytes that would be copied.
    pub planned_bytes: i64,
    /// The first failures, by key and error.
    pub failures: Vec<FailedObject>,
    /// The first archived objects, by key, with the restore command.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub archived_objects: Vec<FailedObject>,
    /// Fan-out: the shard prefixes a backfill was started for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards_started: Vec<String>,
    /// The payload that continues this backfill, or null when the listing is exhausted.
    pub resume: Option<Value>,
    /// Whether the function was invoked again with `resume`.
    pub continued: bool,
    /// Which hop this was.
    pub hop: u32,
    /// The chain this hop belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Another delivery of this hop ran or runs (an asynchronous invocation delivered twice):
    /// this one copied nothing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// `503 Slow Down` answers S3 gave during this invocation (retries included).
    pub slow_downs: u64,
    /// The lowest concurrency the backfill ran at (after a `503 Slow Down`, or where more
    /// copies at once did not raise the rate).
    pub lowest_concurrency: usize,
    /// The highest concurrency the backfill ran at.
    pub highest_concurrency: usize,
    /// The concurrency when the invocation ended.
    pub concurrency: usize,
}

/// Why a backfill stopped before its listing was exhausted, apart from the deadline.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// The request cannot be run.
    #[error("{0}")]
    InvalidRequest(String),
    /// A bucket could not be listed; the report says what was done before.
    #[error(
        "backfill stopped: {error} (done before stopping: {copied} copied, {failed} failed; resume with {resume})"
    )]
    Listing {
        /// Why the listing failed.
        error: Box<ReplicationError>,
        /// Copies made before.
        copied: u64,
        /// Failures before.
        failed: u64,
        /// The payload that resumes after the last finished key.
        resume: Value,
    },
    /// Objects failed in a backfill that does not continue itself; they are listed, and a
    /// re-run copies them.
    #[error("{failed} objects failed to copy (first: {first}); the report: {report}")]
    ObjectsFailed {
        /// How many failed.
        failed: u64,
        /// The first failure, as `key: error`.
        first: String,
        /// The whole report, as JSON.
        report: Value,
    },
    /// Another backfill over the same prefix is running.
    #[error("{0}")]
    Locked(String),
    /// The backfill lock could not be read or written.
    #[error("the backfill lock could not be read or written: {0}")]
    Lock(Box<ReplicationError>),
    /// The next hop or a shard could not be started.
    #[error(
        "could not invoke the function to continue the backfill: {message}; resume with {resume}"
    )]
    Continuation {
        /// Why the invocation failed.
        message: String,
        /// The payload that resumes the backfill.
        resume: Value,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_with_defaults_and_refuses_unknown_fields() {
        assert_eq!(
            BackfillRequest::from_value(&json!({})).unwrap(),
            BackfillRequest::default()
        );
        let request = BackfillRequest::from_value(
            &json!({"prefix": "a/", "dry_run": true, "continue": true}),
        )
        .unwrap();
        assert!(request.dry_run && request.continue_backfill);
        let error = BackfillRequest::from_value(&json!({"prefx": "a/"})).unwrap_err();
        assert!(error.contains("prefx"), "{error}");
    }

    #[test]
    fn resume_payload_continues_after_the_watermark() {
        let request = BackfillRequest {
            prefix: "a/".into(),
            continue_backfill: true,
            fan_out: true,
            ..Default::default()
        };
        let resume = request.resume_after(Some("a/k".into()));
        assert_eq!(resume["backfill"]["start_after"], "a/k");
        assert_eq!(resume["backfill"]["hop"], 1);
        assert_eq!(resume["backfill"]["fan_out"], false);
        assert_eq!(resume["backfill"]["continue"], true);
    }
}
