//! Copies in parts that span invocations: the time one invocation gives a copy, the small
//! payload that continues it in the next invocation, the parts already done (read back from S3
//! with `ListParts`, not carried), and the rule that keeps one chain per key.
//!
//! The rule: a chain goes on only while its source is the key's current object (else it aborts
//! its upload and copies the current object: the newer version wins), and of two uploads the
//! function has open for the same destination key, the later one (by start time, then upload
//! id) goes on while the earlier aborts itself (checked when a hop starts and before completing).

use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{CompletedPart, EncodingType, MultipartUpload};
use serde::{Deserialize, Serialize};

use super::outcome::CopyError;
use super::parts::{Part, PlanError, plan_from_sizes};
use crate::config::Config;
use crate::decode::{ObjectEvent, ObjectEventKind};
use crate::error::{S3Failure, Side, classify};
use crate::invoke::Invoker;
use crate::keys::decode_listed_key;
use crate::limits::MAX_PARTS;

/// The most time kept back from the deadline for ending a hop (completing the upload, or
/// starting the continuation).
const MAX_RESERVE: Duration = Duration::from_secs(30);

/// How many invocations in a row may end without copying a part before the chain fails: a part
/// that does not fit in the function's time would otherwise hand itself on forever.
pub const MAX_STALLED_HOPS: u32 = 3;

/// What one invocation gives the copies it makes: its deadline, and how to start the next
/// invocation when a copy in parts must continue there.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    /// When Lambda stops the invocation; none means no limit (a command, a test).
    pub deadline: Option<SystemTime>,
    /// How to invoke the function again; outside Lambda the continuation is returned instead.
    pub invoker: Invoker,
}

/// When a hop stops starting parts, and when it gives up the parts in flight.
pub(super) struct Clock {
    /// The time by which the parts in flight must be done; the rest of the time, up to the
    /// deadline, is kept for ending the hop.
    cutoff: Option<Instant>,
    /// The most parts this hop starts (`PARTS_PER_INVOCATION`).
    max_parts: Option<usize>,
}

impl Clock {
    /// The clock of a hop that starts now: it keeps a fifth of the time left (at most 30 s) for
    /// its end.
    pub(super) fn new(budget: &Budget, config: &Config) -> Self {
        let cutoff = budget.deadline.map(|deadline| {
            let left = deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            Instant::now() + left - (left / 5).min(MAX_RESERVE)
        });
        Clock {
            cutoff,
            max_parts: config.parts_per_invocation,
        }
    }

    /// The time by which the parts in flight must be done.
    pub(super) fn cutoff(&self) -> Option<Instant> {
        self.cutoff
    }

    /// Whether another part may start, after `started` parts of which the slowest took
    /// `longest`: the first always does (every hop tries one); a later one only within
    /// `PARTS_PER_INVOCATION` and if a part as slow as the slowest still ends before the cutoff.
    pub(super) fn may_start(&self, started: usize, longest: Duration) -> bool {
        if started == 0 {
            return true;
        }
        if self.max_parts.is_some_and(|max| started >= max) {
            return false;
        }
        self.cutoff
            .is_none_or(|cutoff| Instant::now() + longest < cutoff)
    }
}

/// Everything the next invocation needs to continue a copy in parts; the parts done are read
/// back from S3. Sent as `{"continue": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Continuation {
    /// The source bucket.
    pub bucket: String,
    /// The source key.
    pub key: String,
    /// The source bucket's region, when the event named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The source version copied (versioned buckets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// The source ETag every part is conditional on.
    pub etag: String,
    /// The source's size.
    pub size: u64,
    /// The replica's key.
    pub destination_key: String,
    /// The multipart upload in B.
    pub upload_id: String,
    /// The part plan as runs of `[part size, count]`, in order.
    pub parts: Vec<[u64; 2]>,
    /// This continuation's place in the chain (the first invocation is hop 1).
    pub hop: u32,
    /// How many hops in a row ended without copying a part.
    #[serde(default)]
    pub stalled: u32,
}

impl Continuation {
    /// Reads a `continue` request.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, String> {
        let continuation: Continuation = serde_json::from_value(value.clone())
            .map_err(|e| format!("invalid continue request: {e}"))?;
        continuation
            .plan()
            .map_err(|e| format!("invalid continue request: {e}"))?;
        Ok(continuation)
    }

    /// The object event this continuation stands for (in logs and summaries, and for reading the
    /// source again).
    pub fn event(&self) -> ObjectEvent {
        ObjectEvent {
            kind: ObjectEventKind::Created,
            event_name: format!("Continue (hop {})", self.hop),
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            alternate_keys: Vec::new(),
            size: Some(self.size as i64),
            etag: Some(self.etag.clone()),
            version_id: self.version_id.clone(),
            sequencer: None,
            event_time: None,
            region: self.region.clone(),
        }
    }

    /// The invocation payload that continues this copy.
    pub fn payload(&self) -> serde_json::Value {
        serde_json::json!({ "continue": self })
    }

    /// The part plan, checked against S3's part rules and the object's size.
    pub fn plan(&self) -> Result<Vec<Part>, PlanError> {
        let count: u64 = self.parts.iter().map(|[_, n]| *n).sum();
        if count == 0 || count > MAX_PARTS {
            return Err(PlanError::InvalidLayout(format!(
                "{count} parts (1 to {MAX_PARTS} allowed)"
            )));
        }
        let sizes: Vec<u64> = self
            .parts
            .iter()
            .flat_map(|&[size, n]| std::iter::repeat_n(size, n as usize))
            .collect();
        let total: u64 = sizes.iter().sum();
        if total != self.size {
            return Err(PlanError::InvalidLayout(format!(
                "the parts cover {total} bytes of {}",
                self.size
            )));
        }
        plan_from_sizes(&sizes)
    }
}

/// A part plan as runs of `[part size, count]`.
pub(super) fn runs(parts: &[Part]) -> Vec<[u64; 2]> {
    let mut runs: Vec<[u64; 2]> = Vec::new();
    for part in parts {
        match runs.last_mut() {
            Some([size, count]) if *size == part.size() => *count += 1,
            _ => runs.push([part.size(), 1]),
        }
    }
    runs
}

/// The parts of `upload_id` already in B that match the plan (number and size), as the
/// completion lists them; any other part is copied again. `NoSuchUpload` when the upload is
/// gone (completed by a duplicate, or aborted).
pub(super) async fn parts_done(
    destination: &Client,
    config: &Config,
    key: &str,
    upload_id: &str,
    plan: &[Part],
) -> Result<Vec<CompletedPart>, CopyError> {
    let mut done = Vec::new();
    let mut marker = None;
    loop {
        let page = destination
            .list_parts()
            .bucket(&config.destination_bucket)
            .set_expected_bucket_owner(config.destination_account_id.clone())
            .key(key)
            .upload_id(upload_id)
            .set_part_number_marker(marker)
            .send()
            .await
            .map_err(|e| CopyError::s3("ListParts", Side::Destination)(classify(e)))?;
        for part in page.parts() {
            let number = part.part_number().unwrap_or_default();
            let planned = usize::try_from(number - 1).ok().and_then(|i| plan.get(i));
            let size = part.size().unwrap_or_default().max(0) as u64;
            if planned.is_none_or(|p| p.size() != size) {
                continue;
            }
            let field = |value: Option<&str>| value.map(str::to_string);
            done.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(field(part.e_tag()))
                    .set_checksum_crc64_nvme(field(part.checksum_crc64_nvme()))
                    .set_checksum_crc32(field(part.checksum_crc32()))
                    .set_checksum_crc32_c(field(part.checksum_crc32_c()))
                    .set_checksum_sha1(field(part.checksum_sha1()))
                    .set_checksum_sha256(field(part.checksum_sha256()))
                    .build(),
            );
        }
        marker = page.next_part_number_marker().map(str::to_string);
        if !page.is_truncated().unwrap_or(false) || marker.is_none() {
            return Ok(done);
        }
    }
}

/// Whether the function has a later upload open for `key` than `upload_id` (by start time,
/// then upload id): then this one is superseded. Without `FUNCTION_ROLE_ARN` the function
/// cannot tell its uploads from others', and no upload is superseded; nor when the listing
/// fails (logged): the rule saves duplicate work, and the checks of the source keep the replica
/// right without it.
pub(super) async fn superseded(
    destination: &Client,
    config: &Config,
    key: &str,
    upload_id: &str,
) -> bool {
    let Some(role_arn) = &config.function_role_arn else {
        return false;
    };
    match later_upload(destination, config, role_arn, key, upload_id).await {
        Ok(later) => later,
        Err(failure) => {
            tracing::warn!(
                key, upload_id, error = %failure,
                "could not list the uploads open for the key; going on as the only chain"
            );
            false
        }
    }
}

async fn later_upload(
    destination: &Client,
    config: &Config,
    role_arn: &str,
    key: &str,
    upload_id: &str,
) -> Result<bool, S3Failure> {
    let ours: Vec<((i64, u32), String)> = open_uploads(destination, config, key)
        .await?
        .iter()
        .filter(|upload| {
            let initiator = upload.initiator().and_then(|i| i.id()).unwrap_or_default();
            decode_listed_key(upload.key().unwrap_or_default()) == key
                && started_by(role_arn, initiator)
        })
        .map(|upload| {
            let at = upload
                .initiated()
                .map(|t| (t.secs(), t.subsec_nanos()))
                .unwrap_or_default();
            (at, upload.upload_id().unwrap_or_default().to_string())
        })
        .collect();
    let Some(this) = ours.iter().find(|(_, id)| id == upload_id) else {
        return Ok(false);
    };
    Ok(ours.iter().any(|other| other > this))
}

/// Every upload open in B under `prefix`, all pages (keys as listed: URL-encoded).
pub async fn open_uploads(
    destination: &Client,
    config: &Config,
    prefix: &str,
) -> Result<Vec<MultipartUpload>, S3Failure> {
    let mut uploads = Vec::new();
    let (mut key_marker, mut upload_id_marker) = (None, None);
    loop {
        let page = destination
            .list_multipart_uploads()
            .bucket(&config.destination_bucket)
            .set_expected_bucket_owner(config.destination_account_id.clone())
            .prefix(prefix)
            .encoding_type(EncodingType::Url)
            .set_key_marker(key_marker)
            .set_upload_id_marker(upload_id_marker)
            .send()
            .await
            .map_err(classify)?;
        uploads.extend(page.uploads().iter().cloned());
        // With `EncodingType=url` the markers S3 returns are encoded too.
        key_marker = page.next_key_marker().map(decode_listed_key);
        upload_id_marker = page.next_upload_id_marker().map(str::to_string);
        if !page.is_truncated().unwrap_or(false) || key_marker.is_none() {
            return Ok(uploads);
        }
    }
}

/// Whether an upload's initiator is the role `role_arn`: the role itself, or a session of it
/// (`arn:PARTITION:sts::ACCOUNT:assumed-role/NAME/SESSION`; a role's path is not in it).
pub fn started_by(role_arn: &str, initiator: &str) -> bool {
    if initiator == role_arn {
        return true;
    }
    let fields: Vec<&str> = role_arn.splitn(6, ':').collect();
    let [_, partition, _, _, account, resource] = fields.as_slice() else {
        return false;
    };
    let Some(path) = resource.strip_prefix("role/") else {
        return false;
    };
    let name = path.rsplit('/').next().unwrap_or(path);
    initiator.starts_with(&format!(
        "arn:{partition}:sts::{account}:assumed-role/{name}/"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::parts::plan_even;
    use crate::limits::MIB;

    fn continuation(parts: Vec<[u64; 2]>, size: u64) -> Continuation {
        Continuation {
            bucket: "a".into(),
            key: "k".into(),
            region: None,
            version_id: None,
            etag: "\"e-13\"".into(),
            size,
            destination_key: "k".into(),
            upload_id: "u".into(),
            parts,
            hop: 2,
            stalled: 0,
        }
    }

    #[test]
    fn carries_the_plan_as_runs_and_reads_it_back() {
        let plan = plan_even(64 * MIB, 5 * MIB).unwrap();
        let runs = runs(&plan);
        assert_eq!(runs, vec![[5 * MIB, 12], [4 * MIB, 1]]);
        let chain = continuation(runs, 64 * MIB);
        assert_eq!(chain.plan().unwrap(), plan);
        let read = Continuation::from_value(&chain.payload()["continue"]).unwrap();
        assert_eq!(read, chain);
    }

    #[test]
    fn refuses_a_plan_that_breaks_the_rules_or_the_size() {
        let short = continuation(vec![[5 * MIB, 2]], 11 * MIB);
        assert!(short.plan().is_err(), "the parts must cover the object");
        let small = continuation(vec![[MIB, 3]], 3 * MIB);
        assert!(
            small.plan().is_err(),
            "parts but the last are at least 5 MiB"
        );
        let many = continuation(vec![[5 * MIB, 10_001]], 10_001 * 5 * MIB);
        assert!(many.plan().is_err());
        let mut value = continuation(vec![[5 * MIB, 1]], 5 * MIB).payload()["continue"].clone();
        value["surprise"] = serde_json::json!(1);
        assert!(Continuation::from_value(&value).is_err());
    }

    #[test]
    fn starts_the_first_part_always_and_later_ones_within_the_limits() {
        let clock = Clock {
            cutoff: Some(Instant::now()),
            max_parts: None,
        };
        assert!(clock.may_start(0, Duration::ZERO), "every hop tries a part");
        assert!(!clock.may_start(1, Duration::ZERO), "past the cutoff");
        let clock = Clock {
            cutoff: Some(Instant::now() + Duration::from_secs(3600)),
            max_parts: Some(5),
        };
        assert!(clock.may_start(4, Duration::from_secs(60)));
        assert!(!clock.may_start(5, Duration::ZERO), "PARTS_PER_INVOCATION");
        assert!(
            !clock.may_start(1, Duration::from_secs(7200)),
            "a part as slow as the slowest would end past the cutoff"
        );
    }

    #[test]
    fn keeps_a_fifth_of_the_time_left_for_the_end_of_the_hop() {
        let config = crate::config::Config::from_lookup(|name| match name {
            "SOURCE_BUCKET" => Some("source-a".into()),
            "DESTINATION_BUCKET" => Some("replica-b".into()),
            _ => None,
        })
        .unwrap();
        let budget = Budget {
            deadline: Some(SystemTime::now() + Duration::from_secs(100)),
            invoker: Invoker::default(),
        };
        let left = Clock::new(&budget, &config).cutoff().unwrap() - Instant::now();
        assert!(left <= Duration::from_secs(80), "{left:?}");
        assert!(left > Duration::from_secs(60), "{left:?}");
        let budget = Budget {
            deadline: Some(SystemTime::now() + Duration::from_secs(900)),
            invoker: Invoker::default(),
        };
        let left = Clock::new(&budget, &config).cutoff().unwrap() - Instant::now();
        assert!(
            left <= Duration::from_secs(870),
            "at most 30 s kept: {left:?}"
        );
    }
}
