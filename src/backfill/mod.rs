//! Backfill: copy what the destination lacks, decided by merging a listing of the source with a
//! listing of the destination (both come back in the same byte order), with no per-object HEAD.
//!
//! A backfill watches the invocation deadline: it stops starting copies with a safety margin,
//! lets those in flight finish, and reports where to resume. With `continue`, it invokes the
//! function again with that resume payload until the listing is exhausted; with `fan_out`, it
//! starts one such backfill per first-level prefix so that many instances work at once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::types::Object;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::copy::{FailedObject, Outcome, Replicator};
use crate::decode::{ObjectEvent, ObjectEventKind};
use crate::error::{ReplicationError, S3Failure, Side, Target, classify};
use crate::invoke::SelfInvoker;

/// How many failures a report lists by name.
const LISTED_FAILURES: usize = 50;

/// The longest safety margin kept before the deadline.
const MAX_DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// Pages of listing fetched ahead of the merge.
const PAGES_AHEAD: usize = 2;

/// After lowering its concurrency, a backfill waits this long before lowering it again, so that
/// one burst of `503 Slow Down` (the requests in flight, and their retries) counts once.
const SLOW_DOWN_COOLDOWN: Duration = Duration::from_secs(1);

/// How many copies a backfill runs at once: it starts at `BACKFILL_CONCURRENCY`, halves when S3
/// answers `503 Slow Down` (at most once per [`SLOW_DOWN_COOLDOWN`]), and grows back by one
/// copy for each window of copies finished without one (additive increase, multiplicative
/// decrease).
#[derive(Debug, Clone)]
struct Concurrency {
    limit: usize,
    ceiling: usize,
    /// Copies finished without a `503` since the limit last changed.
    credit: usize,
    slow_downs_seen: u64,
    last_cut: Option<Instant>,
    lowest: usize,
}

impl Concurrency {
    fn new(ceiling: usize, slow_downs: u64) -> Self {
        let ceiling = ceiling.max(1);
        Self {
            limit: ceiling,
            ceiling,
            credit: 0,
            slow_downs_seen: slow_downs,
            last_cut: None,
            lowest: ceiling,
        }
    }

    /// The copies that may run at once now.
    fn current(&self) -> usize {
        self.limit
    }

    /// Takes in the `503` count after a copy finished: halves the limit if it grew (and the
    /// last cut is older than the cooldown); else adds one to the limit once `limit` copies
    /// have finished since it last changed. Returns the new limit when it was halved.
    fn finished(&mut self, slow_downs: u64, now: Instant) -> Option<usize> {
        if slow_downs > self.slow_downs_seen {
            self.slow_downs_seen = slow_downs;
            let cooled = self
                .last_cut
                .is_none_or(|at| now.duration_since(at) >= SLOW_DOWN_COOLDOWN);
            if !cooled {
                return None;
            }
            self.last_cut = Some(now);
            self.limit = (self.limit / 2).max(1);
            self.credit = 0;
            self.lowest = self.lowest.min(self.limit);
            return Some(self.limit);
        }
        if self.limit < self.ceiling {
            self.credit += 1;
            if self.credit >= self.limit {
                self.limit += 1;
                self.credit = 0;
            }
        }
        None
    }
}

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
    fn resume_after(&self, key: Option<String>) -> Value {
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
    /// Fan-out: the shard prefixes a backfill was started for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards_started: Vec<String>,
    /// The payload that continues this backfill, or null when the listing is exhausted.
    pub resume: Option<Value>,
    /// Whether the function was invoked again with `resume`.
    pub continued: bool,
    /// Which hop this was.
    pub hop: u32,
    /// `503 Slow Down` answers S3 gave during this invocation (retries included).
    pub slow_downs: u64,
    /// The lowest concurrency the backfill went down to after a `503 Slow Down`.
    pub lowest_concurrency: usize,
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

/// The error for a failed listing of one side's bucket.
fn listing_error(
    replicator: &Replicator,
    side: Side,
    failure: S3Failure,
    prefix: &str,
) -> ReplicationError {
    let config = replicator.config();
    let (bucket, region) = match side {
        Side::Source => (&config.source_bucket, &replicator.clients().source_region),
        Side::Destination => (
            &config.destination_bucket,
            &replicator.clients().destination_region,
        ),
    };
    ReplicationError::from_s3(
        failure,
        "ListObjectsV2",
        Target {
            side,
            bucket,
            key: prefix,
            region,
        },
    )
}

/// One object of a listing, with its key relative to the replicated key space (the source key;
/// a destination key with `DESTINATION_PREFIX` removed).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    key: String,
    size: i64,
    etag: Option<String>,
    last_modified: Option<aws_sdk_s3::primitives::DateTime>,
}

/// What the merge decided for one source object.
#[derive(Debug)]
enum Decision {
    Unchanged,
    Copy(Listed),
}

type Page = Result<Vec<Listed>, S3Failure>;

/// Lists a bucket in a background task, a few pages ahead of the consumer, so that the next page
/// is fetched while the current page's copies run.
fn spawn_listing(
    client: Client,
    owner: Option<String>,
    bucket: String,
    prefix: String,
    start_after: Option<String>,
    shallow: bool,
    strip: usize,
) -> mpsc::Receiver<Page> {
    let (sender, receiver) = mpsc::channel(PAGES_AHEAD);
    tokio::spawn(async move {
        let mut pages = client
            .list_objects_v2()
            .bucket(bucket)
            .set_expected_bucket_owner(owner)
            .prefix(prefix)
            .set_start_after(start_after)
            .set_delimiter(shallow.then(|| "/".to_string()))
            .max_keys(1000)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(classify).map(|output| {
                output
                    .contents()
                    .iter()
                    .filter_map(|object| listed(object, strip))
                    .collect()
            });
            let failed = page.is_err();
            if sender.send(page).await.is_err() || failed {
                return;
            }
        }
    });
    receiver
}

fn listed(object: &Object, strip: usize) -> Option<Listed> {
    let key = object.key()?;
    Some(Listed {
        key: key.get(strip..)?.to_string(),
        size: object.size().unwrap_or_default(),
        etag: object.e_tag().map(str::to_string),
        last_modified: object.last_modified().copied(),
    })
}

/// Pulls items from a paged listing.
struct Cursor {
    pages: mpsc::Receiver<Page>,
    buffer: VecDeque<Listed>,
    side: Side,
}

impl Cursor {
    async fn peek(&mut self) -> Result<Option<&Listed>, (Side, S3Failure)> {
        while self.buffer.is_empty() {
            match self.pages.recv().await {
                None => return Ok(None),
                Some(Ok(page)) => self.buffer.extend(page),
                Some(Err(failure)) => return Err((self.side, failure)),
            }
        }
        Ok(self.buffer.front())
    }

    async fn next(&mut self) -> Result<Option<Listed>, (Side, S3Failure)> {
        self.peek().await?;
        Ok(self.buffer.pop_front())
    }
}

/// Merges the source and destination listings into one decision per source object.
struct Merge {
    source: Cursor,
    destination: Cursor,
    compare_etags: bool,
}

impl Merge {
    async fn next(&mut self) -> Result<Option<(Listed, Decision)>, (Side, S3Failure)> {
        let Some(object) = self.source.next().await? else {
            return Ok(None);
        };
        loop {
            let Some(replica) = self.destination.peek().await? else {
                return Ok(Some((object.clone(), Decision::Copy(object))));
            };
            match replica.key.as_bytes().cmp(object.key.as_bytes()) {
                std::cmp::Ordering::Less => {
                    self.destination.next().await?;
                }
                std::cmp::Ordering::Greater => {
                    return Ok(Some((object.clone(), Decision::Copy(object))));
                }
                std::cmp::Ordering::Equal => {
                    let replica = self
                        .destination
                        .next()
                        .await?
                        .unwrap_or_else(|| object.clone());
                    let decision = if is_current(&object, &replica, self.compare_etags) {
                        Decision::Unchanged
                    } else {
                        Decision::Copy(object.clone())
                    };
                    return Ok(Some((object, decision)));
                }
            }
        }
    }
}

/// Whether `replica` is a copy of the current `object`: same size and, where ETags are
/// comparable, the same ETag. ETags are not comparable when either is a multipart ETag or the
/// replicas are SSE-KMS encrypted; then a replica older than its source is stale.
fn is_current(object: &Listed, replica: &Listed, compare_etags: bool) -> bool {
    if object.size != replica.size {
        return false;
    }
    if object.etag == replica.etag {
        return true;
    }
    let plain = |etag: &Option<String>| etag.as_deref().is_some_and(|e| !e.contains('-'));
    if compare_etags && plain(&object.etag) && plain(&replica.etag) {
        return false;
    }
    match (object.last_modified, replica.last_modified) {
        (Some(source), Some(copy)) => copy >= source,
        _ => false,
    }
}

/// What became of one source object.
enum Finish {
    /// The destination already holds it.
    Unchanged,
    /// Dry run: it would be copied (this many bytes).
    Planned(i64),
    /// It was copied, skipped or failed.
    Done(Outcome),
}

/// The result of one source object, by key.
struct Finished {
    key: String,
    finish: Finish,
}

/// Runs one backfill invocation until the listing is exhausted or `deadline` (less a safety
/// margin) comes, then continues or fans out as asked.
pub async fn run_backfill(
    request: &BackfillRequest,
    replicator: &Replicator,
    deadline: Option<SystemTime>,
    invoker: SelfInvoker<'_>,
) -> Result<BackfillReport, BackfillError> {
    let config = replicator.config();
    let prefix = effective_prefix(&request.prefix, config.source_prefix.as_deref())?;
    let mut report = BackfillReport {
        dry_run: request.dry_run,
        hop: request.hop,
        ..Default::default()
    };

    if request.fan_out {
        report.shards_started = fan_out(request, &prefix, replicator, invoker).await?;
    }
    let shallow = request.shallow || request.fan_out;
    let request = BackfillRequest {
        prefix: prefix.clone(),
        shallow,
        ..request.clone()
    };

    let stop_at = stop_time(deadline);
    let destination_prefix = &config.destination_prefix;
    let mut merge = Merge {
        source: Cursor {
            pages: spawn_listing(
                replicator.clients().source().clone(),
                None,
                config.source_bucket.clone(),
                prefix.clone(),
                request.start_after.clone(),
                shallow,
                0,
            ),
            buffer: VecDeque::new(),
            side: Side::Source,
        },
        destination: Cursor {
            pages: spawn_listing(
                replicator.clients().destination().clone(),
                config.destination_account_id.clone(),
                config.destination_bucket.clone(),
                format!("{destination_prefix}{prefix}"),
                request
                    .start_after
                    .as_ref()
                    .map(|key| format!("{destination_prefix}{key}")),
                shallow,
                destination_prefix.len(),
            ),
            buffer: VecDeque::new(),
            side: Side::Destination,
        },
        compare_etags: config.destination_kms_key_id.is_none(),
    };

    let shared = Arc::new(replicator.clone());
    let slow_downs_before = replicator.clients().slow_downs();
    let mut concurrency = Concurrency::new(config.backfill_concurrency, slow_downs_before);
    let mut in_flight: FuturesOrdered<BoxFuture<'static, Finished>> = FuturesOrdered::new();
    let mut watermark: Option<String> = None;
    let mut exhausted = false;
    let mut failed_listing = None;
    let mut launched = false;
    loop {
        while !exhausted && failed_listing.is_none() && in_flight.len() < concurrency.current() {
            if launched && stop_at.is_some_and(|at| Instant::now() >= at) {
                break;
            }
            match merge.next().await {
                Ok(None) => exhausted = true,
                Err(error) => failed_listing = Some(error),
                Ok(Some((object, decision))) => {
                    launched = true;
                    report.listed += 1;
                    in_flight.push_back(start(decision, object.key, &request, &shared));
                }
            }
        }
        let Some(finished) = in_flight.next().await else {
            break;
        };
        record(&mut report, &config.source_bucket, &finished);
        // Only copies (requests to S3) count towards growing the concurrency back.
        if matches!(finished.finish, Finish::Done(_)) {
            let slow_downs = replicator.clients().slow_downs();
            if let Some(lowered) = concurrency.finished(slow_downs, Instant::now()) {
                tracing::warn!(
                    concurrency = lowered,
                    slow_downs = slow_downs - slow_downs_before,
                    "S3 asked to slow down: backfill concurrency lowered"
                );
            }
        }
        watermark = Some(finished.key);
    }
    drop(merge);
    report.slow_downs = replicator.clients().slow_downs() - slow_downs_before;
    report.lowest_concurrency = concurrency.lowest;
    report.concurrency = concurrency.current();

    tracing::info!(
        hop = report.hop,
        prefix = %prefix,
        listed = report.listed,
        copied = report.copied,
        unchanged = report.unchanged,
        skipped = report.skipped,
        failed = report.failed,
        bytes = report.bytes,
        planned = report.planned,
        slow_downs = report.slow_downs,
        concurrency = report.concurrency,
        exhausted,
        "backfill progress"
    );

    if let Some((side, failure)) = failed_listing {
        let error = listing_error(replicator, side, failure, &prefix);
        tracing::error!(error = %error, "backfill listing failed");
        return Err(BackfillError::Listing {
            error: Box::new(error),
            copied: report.copied,
            failed: report.failed,
            resume: request.resume_after(watermark),
        });
    }

    if !exhausted {
        let resume = request.resume_after(watermark);
        if request.continue_backfill {
            invoker
                .start(&resume)
                .await
                .map_err(|message| BackfillError::Continuation {
                    message,
                    resume: resume.clone(),
                })?;
            report.continued = true;
            tracing::info!(
                hop = report.hop + 1,
                "backfill continues in a new invocation"
            );
        }
        report.resume = Some(resume);
    }
    // A chain of hops reports failures in its logs and counts: failing the hop would make Lambda
    // retry it and start its continuation twice. A backfill run by hand fails loudly.
    if report.failed > 0 && !request.continue_backfill {
        let first = report
            .failures
            .first()
            .map(|f| format!("{}: {}", f.key, f.error))
            .unwrap_or_default();
        return Err(BackfillError::ObjectsFailed {
            failed: report.failed,
            first,
            report: serde_json::to_value(&report).unwrap_or(Value::Null),
        });
    }
    Ok(report)
}

fn start(
    decision: Decision,
    key: String,
    request: &BackfillRequest,
    replicator: &Arc<Replicator>,
) -> BoxFuture<'static, Finished> {
    let listed = match decision {
        Decision::Unchanged => {
            let finish = Finish::Unchanged;
            return Box::pin(futures::future::ready(Finished { key, finish }));
        }
        Decision::Copy(listed) if request.dry_run => {
            let finish = Finish::Planned(listed.size);
            return Box::pin(futures::future::ready(Finished { key, finish }));
        }
        Decision::Copy(listed) => listed,
    };
    let replicator = Arc::clone(replicator);
    let event = ObjectEvent {
        kind: ObjectEventKind::Created,
        event_name: "Backfill".into(),
        bucket: replicator.config().source_bucket.clone(),
        key: key.clone(),
        alternate_key: None,
        size: Some(listed.size),
        version_id: None,
        sequencer: None,
        event_time: None,
        region: None,
    };
    // A task of its own, so copies progress while the merge waits for the next page.
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let outcome = match &listed.etag {
            Some(etag) => replicator.copy_listed(&event, etag, listed.size).await,
            None => replicator.replicate(&event).await,
        };
        outcome.log(&event, started.elapsed());
        outcome
    });
    Box::pin(async move {
        let outcome = task.await.unwrap_or_else(|join| {
            Outcome::Failed(ReplicationError::InvalidEvent(format!(
                "copy task ended abnormally: {join}"
            )))
        });
        Finished {
            key,
            finish: Finish::Done(outcome),
        }
    })
}

fn record(report: &mut BackfillReport, bucket: &str, finished: &Finished) {
    match &finished.finish {
        Finish::Unchanged => report.unchanged += 1,
        Finish::Planned(bytes) => {
            report.planned += 1;
            report.planned_bytes += bytes;
        }
        Finish::Done(Outcome::Copied { bytes, .. }) => {
            report.copied += 1;
            report.bytes += bytes;
        }
        Finish::Done(Outcome::Deleted { .. } | Outcome::Skipped(_)) => report.skipped += 1,
        Finish::Done(Outcome::Failed(error)) => {
            report.failed += 1;
            if report.failures.len() < LISTED_FAILURES {
                report.failures.push(FailedObject {
                    bucket: bucket.to_string(),
                    key: finished.key.clone(),
                    error_code: error.code().to_string(),
                    error: error.to_string(),
                });
            }
        }
    }
}

/// The listing prefix: the request's prefix, narrowed to `SOURCE_PREFIX` when that is set.
fn effective_prefix(requested: &str, source_prefix: Option<&str>) -> Result<String, BackfillError> {
    match source_prefix {
        None => Ok(requested.to_string()),
        Some(configured) if requested.starts_with(configured) => Ok(requested.to_string()),
        Some(configured) if configured.starts_with(requested) => Ok(configured.to_string()),
        Some(configured) => Err(BackfillError::InvalidRequest(format!(
            "prefix {requested:?} lies outside SOURCE_PREFIX {configured:?}: nothing there is replicated"
        ))),
    }
}

/// When to stop starting copies: the deadline less a margin of a quarter of the time left, at
/// most 30 seconds.
fn stop_time(deadline: Option<SystemTime>) -> Option<Instant> {
    let remaining = deadline?
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Some(Instant::now() + working_time(remaining))
}

/// Of the `remaining` time, how much may be spent starting copies.
fn working_time(remaining: Duration) -> Duration {
    remaining.saturating_sub((remaining / 4).min(MAX_DEADLINE_MARGIN))
}

/// Starts one continued backfill per shard and returns the shard prefixes.
async fn fan_out(
    request: &BackfillRequest,
    prefix: &str,
    replicator: &Replicator,
    invoker: SelfInvoker<'_>,
) -> Result<Vec<String>, BackfillError> {
    let shards = if request.shards.is_empty() {
        first_level_prefixes(replicator, prefix).await?
    } else {
        for shard in &request.shards {
            if !shard.starts_with(prefix) {
                return Err(BackfillError::InvalidRequest(format!(
                    "shard {shard:?} lies outside prefix {prefix:?}"
                )));
            }
        }
        request.shards.clone()
    };
    for shard in &shards {
        let payload = json!({ "backfill": BackfillRequest {
            prefix: shard.clone(),
            dry_run: request.dry_run,
            continue_backfill: true,
            ..Default::default()
        }});
        invoker
            .start(&payload)
            .await
            .map_err(|message| BackfillError::Continuation {
                message,
                resume: payload.clone(),
            })?;
        tracing::info!(shard = %shard, "backfill shard started");
    }
    Ok(shards)
}

async fn first_level_prefixes(
    replicator: &Replicator,
    prefix: &str,
) -> Result<Vec<String>, BackfillError> {
    let config = replicator.config();
    let mut pages = replicator
        .clients()
        .source()
        .list_objects_v2()
        .bucket(&config.source_bucket)
        .prefix(prefix)
        .delimiter("/")
        .into_paginator()
        .send();
    let mut shards = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| BackfillError::Listing {
            error: Box::new(listing_error(
                replicator,
                Side::Source,
                classify(err),
                prefix,
            )),
            copied: 0,
            failed: 0,
            resume: json!({ "backfill": { "prefix": prefix, "fan_out": true } }),
        })?;
        shards.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_string)),
        );
    }
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, size: i64, etag: &str, modified: i64) -> Listed {
        Listed {
            key: key.into(),
            size,
            etag: Some(etag.into()),
            last_modified: Some(aws_sdk_s3::primitives::DateTime::from_secs(modified)),
        }
    }

    #[test]
    fn concurrency_halves_on_slow_down_once_per_cooldown() {
        let start = Instant::now();
        let mut concurrency = Concurrency::new(64, 7);
        assert_eq!(concurrency.current(), 64);
        // A finished copy with no new 503: the limit stays at the ceiling.
        assert_eq!(concurrency.finished(7, start), None);
        assert_eq!(concurrency.current(), 64);
        assert_eq!(concurrency.finished(8, start), Some(32));
        // More 503s within the cooldown (the same burst) do not cut again.
        assert_eq!(
            concurrency.finished(12, start + Duration::from_millis(500)),
            None
        );
        assert_eq!(concurrency.current(), 32);
        let later = start + SLOW_DOWN_COOLDOWN;
        assert_eq!(concurrency.finished(13, later), Some(16));
        for step in 2..=6 {
            let at = later + SLOW_DOWN_COOLDOWN * step;
            concurrency.finished(13 + u64::from(step), at);
        }
        // Never below one copy at a time.
        assert_eq!(concurrency.current(), 1);
        assert_eq!(concurrency.lowest, 1);
    }

    #[test]
    fn concurrency_grows_back_by_one_per_window() {
        let start = Instant::now();
        let mut concurrency = Concurrency::new(64, 0);
        concurrency.finished(1, start);
        concurrency.finished(2, start + SLOW_DOWN_COOLDOWN);
        assert_eq!(concurrency.current(), 16);
        // 16 copies finished without a 503 (one window) add one copy, not sixteen.
        for _ in 0..16 {
            assert_eq!(concurrency.finished(2, start), None);
        }
        assert_eq!(concurrency.current(), 17);
        // Back to the ceiling only after many windows, and never above it.
        let mut finished = 16;
        while concurrency.current() < 64 {
            concurrency.finished(2, start);
            finished += 1;
        }
        // 16 + 17 + ... + 63 copies.
        assert_eq!(finished, (16..64).sum::<usize>());
        for _ in 0..1000 {
            concurrency.finished(2, start);
        }
        assert_eq!(concurrency.current(), 64);
        assert_eq!(concurrency.lowest, 16);
    }

    #[test]
    fn equal_size_and_etag_is_current() {
        let a = object("k", 5, "\"abc\"", 10);
        assert!(is_current(&a, &object("k", 5, "\"abc\"", 5), true));
    }

    #[test]
    fn different_size_or_plain_etag_is_stale() {
        let a = object("k", 5, "\"abc\"", 10);
        assert!(!is_current(&a, &object("k", 6, "\"abc\"", 20), true));
        assert!(!is_current(&a, &object("k", 5, "\"abd\"", 20), true));
    }

    #[test]
    fn incomparable_etags_fall_back_to_modification_time() {
        let multipart = object("k", 5, "\"abc-2\"", 10);
        assert!(is_current(&multipart, &object("k", 5, "\"def\"", 11), true));
        assert!(!is_current(&multipart, &object("k", 5, "\"def\"", 9), true));
        // With SSE-KMS replicas, plain ETags are not MD5s either.
        let plain = object("k", 5, "\"abc\"", 10);
        assert!(is_current(&plain, &object("k", 5, "\"kms\"", 12), false));
    }

    #[test]
    fn narrows_the_prefix_to_source_prefix() {
        assert_eq!(effective_prefix("", Some("data/")).unwrap(), "data/");
        assert_eq!(effective_prefix("data/x", Some("data/")).unwrap(), "data/x");
        assert_eq!(effective_prefix("logs/", None).unwrap(), "logs/");
        assert!(effective_prefix("logs/", Some("data/")).is_err());
    }

    #[test]
    fn keeps_a_margin_before_the_deadline() {
        assert_eq!(
            working_time(Duration::from_secs(400)),
            Duration::from_secs(370)
        );
        assert_eq!(working_time(Duration::from_secs(8)), Duration::from_secs(6));
        assert_eq!(working_time(Duration::ZERO), Duration::ZERO);
        assert!(stop_time(None).is_none());
        let past = SystemTime::now() - Duration::from_secs(1);
        assert!(stop_time(Some(past)).unwrap() <= Instant::now());
    }

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
