//! Backfill: copy what the destination lacks, decided by merging a listing of the source with a
//! listing of the destination (both come back in the same byte order), with no per-object HEAD.
//!
//! A backfill watches the invocation deadline: it stops starting copies with a safety margin,
//! lets those in flight finish, and reports where to resume. With `continue`, it invokes the
//! function again with that resume payload until the listing is exhausted; with `fan_out`, it
//! starts one such backfill per first-level prefix so that many instances work at once.
//!
//! [`request`] says what a backfill is asked and what it reports; [`listing`] merges the two
//! listings into decisions; [`pacing`] sets how many copies run at once and when to stop;
//! [`fan_out`] starts the shards. This module schedules the copies and ends the hop. It builds
//! on the copy path and the self-invocation; only the entry points call it.

mod fan_out;
mod listing;
pub mod lock;
mod pacing;
mod request;

use std::time::{Instant, SystemTime};

use futures::StreamExt;
use futures::future::{BoxFuture, Either};
use futures::stream::FuturesUnordered;
use serde_json::Value;

use crate::copy::chain::Budget;
use crate::copy::{FailedObject, Outcome, Replicator, copied_in_parts};
use crate::decode::{ObjectEvent, ObjectEventKind};
use crate::error::{S3Failure, Side};
use crate::invoke::SelfInvoker;
use fan_out::fan_out;
use listing::{Decision, Merge, kms_defaults, listing_error};
use lock::{Claim, Taken};
use pacing::{Concurrency, stop_time};
pub use request::{BackfillError, BackfillReport, BackfillRequest};

/// How many failures a report lists by name.
const LISTED_FAILURES: usize = 50;

/// What became of one source object.
enum Finish {
    /// The destination already holds it.
    Unchanged,
    /// Dry run: it would be copied (this many bytes).
    Planned(i64),
    /// It was copied, skipped or failed.
    Done(Outcome),
}

/// The result of one source object, by key, and the connections its copy held.
struct Finished {
    key: String,
    finish: Finish,
    connections: usize,
}

/// Where the copies of one hop stopped.
struct HopEnd {
    /// The last key finished: every key up to it is done.
    watermark: Option<String>,
    /// Whether the listing was read to its end.
    exhausted: bool,
    /// The listing that failed, if one did.
    failed_listing: Option<(Side, S3Failure)>,
}

/// Runs one backfill invocation until the listing is exhausted or `deadline` (less a safety
/// margin) comes, then continues or fans out as asked. The hop holds its chain's lock meanwhile
/// (not a dry run): it refuses to run beside another chain over the same prefix, and copies
/// nothing when it is a duplicate delivery of a hop.
pub async fn run_backfill(
    request: &BackfillRequest,
    replicator: &Replicator,
    deadline: Option<SystemTime>,
    invoker: SelfInvoker<'_>,
) -> Result<BackfillReport, BackfillError> {
    let config = replicator.config();
    let prefix = effective_prefix(&request.prefix, config.source_prefix.as_deref())?;
    let run = (request.run.clone()).unwrap_or_else(|| lock::new_run(invoker.request_id));
    let request = BackfillRequest {
        run: Some(run.clone()),
        ..request.clone()
    };
    // The listings and the buckets' default encryption are read while the lock is taken (they
    // change nothing): the hop's first copy waits for two rounds of requests (the lock's read and
    // write), not five.
    let shallow = request.shallow || request.fan_out;
    let merge = Merge::open(replicator, &prefix, request.start_after.as_deref(), shallow);
    let claim = Claim {
        run: &run,
        hop: request.hop,
        request_id: invoker.request_id,
        deadline,
    };
    let lock = async {
        match request.dry_run {
            true => Ok(None),
            false => lock::take(replicator, &prefix, &claim).await.map(Some),
        }
    };
    let (taken, kms) = tokio::join!(lock, kms_defaults(replicator));
    let held = match taken? {
        None => None,
        Some(Taken::Held(lock)) => Some(lock),
        Some(Taken::Duplicate) => {
            tracing::warn!(run = %run, hop = request.hop, prefix = %prefix,
                "backfill hop delivered twice: this delivery copies nothing");
            return Ok(BackfillReport {
                hop: request.hop,
                run: Some(run),
                duplicate: true,
                ..Default::default()
            });
        }
    };
    let merge = merge.judging_with(kms);
    let result = run_hop(&request, &prefix, merge, replicator, deadline, invoker).await;
    // A hop that continued hands the lock to its continuation; any other end frees it.
    if let Some(lock) = &held
        && !matches!(&result, Ok(report) if report.continued)
    {
        lock::release(replicator, lock).await;
    }
    result
}

/// The hop itself: the fan-out, the copies (the merge's decisions), and its end.
async fn run_hop(
    request: &BackfillRequest,
    prefix: &str,
    merge: Merge,
    replicator: &Replicator,
    deadline: Option<SystemTime>,
    invoker: SelfInvoker<'_>,
) -> Result<BackfillReport, BackfillError> {
    let mut report = BackfillReport {
        dry_run: request.dry_run,
        hop: request.hop,
        run: request.run.clone(),
        ..Default::default()
    };
    if request.fan_out {
        report.shards_started = fan_out(request, prefix, replicator, invoker, deadline).await?;
    }
    let request = BackfillRequest {
        prefix: prefix.to_string(),
        shallow: request.shallow || request.fan_out,
        ..request.clone()
    };
    // Copies in parts that do not fit in the hop continue in chains of their own.
    let budget = Budget {
        deadline,
        invoker: invoker.owned(),
    };
    let end = schedule_copies(merge, &request, replicator, &budget, &mut report).await;
    log_progress(&report, prefix, &end);
    end_hop(&request, report, end, replicator, invoker).await
}

/// Starts a copy for each decision of the merge, as many at once as the pacing allows, until
/// the listing is exhausted or fails, or `stop_at` comes (each hop starts at least one copy);
/// then lets the copies in flight finish.
async fn schedule_copies(
    mut merge: Merge,
    request: &BackfillRequest,
    replicator: &Replicator,
    budget: &Budget,
    report: &mut BackfillReport,
) -> HopEnd {
    let stop_at = stop_time(budget.deadline);
    let bucket = &replicator.config().source_bucket;
    let slow_downs_before = replicator.clients().slow_downs();
    let mut concurrency = Concurrency::new(
        replicator.config().backfill_concurrency,
        slow_downs_before,
        Instant::now(),
    );
    // Copies finish in any order (one slow copy holds up no other); the hop waits for every
    // copy it started, so at its end the last key started is its watermark.
    let mut in_flight: FuturesUnordered<BoxFuture<'_, Finished>> = FuturesUnordered::new();
    // The connections the copies in flight may hold; the limit bounds these, not the copies.
    let mut connections = 0;
    // The next listed object, until there are connections enough to start its copy.
    let mut waiting: Option<(String, Decision)> = None;
    let mut last_started = None;
    let mut end = HopEnd {
        watermark: None,
        exhausted: false,
        failed_listing: None,
    };
    let mut launched = false;
    loop {
        let open = !end.exhausted
            && end.failed_listing.is_none()
            && !(launched && stop_at.is_some_and(|at| Instant::now() >= at));
        let limit = concurrency.current();
        if open && let Some((key, decision)) = waiting.take() {
            let needs = needed_connections(&decision, request, replicator);
            // A copy that needs more than the limit starts alone.
            if connections + needs <= limit || connections == 0 {
                launched = true;
                report.listed += 1;
                connections += needs;
                last_started = Some(key.clone());
                let copy = start(decision, key, needs, request, replicator, budget);
                in_flight.push(copy);
                continue;
            }
            waiting = Some((key, decision));
        }
        let finished = if open && waiting.is_none() && connections < limit {
            match next_step(merge.next(), &mut in_flight).await {
                Either::Left(finished) => finished,
                Either::Right(Ok(None)) => {
                    end.exhausted = true;
                    continue;
                }
                Either::Right(Err(error)) => {
                    end.failed_listing = Some(error);
                    continue;
                }
                Either::Right(Ok(Some((object, decision)))) => {
                    waiting = Some((object.key, decision));
                    continue;
                }
            }
        } else {
            let Some(finished) = in_flight.next().await else {
                break;
            };
            finished
        };
        connections -= finished.connections;
        record(report, bucket, &finished);
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
    }
    end.watermark = last_started;
    report.slow_downs = replicator.clients().slow_downs() - slow_downs_before;
    report.lowest_concurrency = concurrency.lowest;
    report.highest_concurrency = concurrency.highest;
    report.concurrency = concurrency.current();
    end
}

/// With room for another copy, what the schedule loop takes next: the next listed object if the
/// listing has one ready, or else a finished copy. A free slot is filled first, as a loop of
/// requests fills its slots; taking in every finished copy first left the slots of those that
/// finished together empty until no copy was left to take in (under latency, a quarter of them
/// on average). The copies are polled here, by the one task that drives them all, also while
/// the listing waits for a page: `listed` must be cancel-safe.
async fn next_step<L: Future, F: Future>(
    listed: L,
    in_flight: &mut FuturesUnordered<F>,
) -> Either<F::Output, L::Output> {
    tokio::select! {
        biased;
        listed = listed => Either::Right(listed),
        Some(finished) = in_flight.next(), if !in_flight.is_empty() => Either::Left(finished),
    }
}

/// The hop's one progress line: what it did, the chain, and the last key done (where the next
/// hop starts).
fn log_progress(report: &BackfillReport, prefix: &str, end: &HopEnd) {
    tracing::info!(
        run = report.run.as_deref().unwrap_or_default(),
        hop = report.hop,
        last_key = end.watermark.as_deref().unwrap_or_default(),
        prefix = %prefix,
        listed = report.listed,
        copied = report.copied,
        unchanged = report.unchanged,
        skipped = report.skipped,
        failed = report.failed,
        archived = report.archived,
        bytes = report.bytes,
        planned = report.planned,
        slow_downs = report.slow_downs,
        concurrency = report.concurrency,
        exhausted = end.exhausted,
        "backfill progress"
    );
}

/// Ends the hop: fails on a failed listing, continues the backfill when the listing is not
/// exhausted (asked to), and fails a backfill run by hand whose objects failed.
async fn end_hop(
    request: &BackfillRequest,
    mut report: BackfillReport,
    end: HopEnd,
    replicator: &Replicator,
    invoker: SelfInvoker<'_>,
) -> Result<BackfillReport, BackfillError> {
    if let Some((side, failure)) = end.failed_listing {
        let error = listing_error(replicator, side, failure, &request.prefix);
        tracing::error!(error = %error, "backfill listing failed");
        return Err(BackfillError::Listing {
            error: Box::new(error),
            copied: report.copied,
            failed: report.failed,
            resume: request.resume_after(end.watermark),
        });
    }

    if !end.exhausted {
        let resume = request.resume_after(end.watermark);
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

/// The connections the copy `decision` asks for may hold at once: `PART_CONCURRENCY` for a copy
/// in parts (its part copies, or the reads of the source's part layout), one for any other.
fn needed_connections(
    decision: &Decision,
    request: &BackfillRequest,
    replicator: &Replicator,
) -> usize {
    let config = replicator.config();
    match decision {
        Decision::Copy(listed)
            if !request.dry_run
                && copied_in_parts(config, listed.size.max(0) as u64, listed.etag.as_deref()) =>
        {
            config.part_concurrency.max(1)
        }
        _ => 1,
    }
}

fn start<'a>(
    decision: Decision,
    key: String,
    connections: usize,
    request: &BackfillRequest,
    replicator: &'a Replicator,
    budget: &'a Budget,
) -> BoxFuture<'a, Finished> {
    let listed = match decision {
        Decision::Unchanged => {
            let finish = Finish::Unchanged;
            return Box::pin(futures::future::ready(Finished {
                key,
                finish,
                connections,
            }));
        }
        Decision::Copy(listed) if request.dry_run => {
            let finish = Finish::Planned(listed.size);
            return Box::pin(futures::future::ready(Finished {
                key,
                finish,
                connections,
            }));
        }
        Decision::Copy(listed) => listed,
    };
    let event = ObjectEvent {
        kind: ObjectEventKind::Created,
        event_name: "Backfill".into(),
        bucket: replicator.config().source_bucket.clone(),
        key: key.clone(),
        alternate_keys: Vec::new(),
        size: Some(listed.size),
        etag: listed.etag,
        version_id: None,
        sequencer: None,
        event_time: None,
        region: None,
    };
    Box::pin(async move {
        let started = Instant::now();
        let outcome = replicator.replicate(&event, budget).await;
        outcome.log(&event, started.elapsed());
        Finished {
            key,
            finish: Finish::Done(outcome),
            connections,
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
        Finish::Done(Outcome::Deleted { .. } | Outcome::Tagged { .. } | Outcome::Skipped(_)) => {
            report.skipped += 1
        }
        Finish::Done(Outcome::HandedOff { resume, .. }) => {
            report.handed_off += 1;
            report.copies_to_resume.extend(resume.clone());
        }
        Finish::Done(Outcome::Archived(error)) => {
            report.archived += 1;
            if report.archived_objects.len() < LISTED_FAILURES {
                let entry = FailedObject::new(bucket, &finished.key, error);
                report.archived_objects.push(entry);
            }
        }
        Finish::Done(Outcome::Failed(error)) => {
            report.failed += 1;
            if report.failures.len() < LISTED_FAILURES {
                report
                    .failures
                    .push(FailedObject::new(bucket, &finished.key, error));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrows_the_prefix_to_source_prefix() {
        assert_eq!(effective_prefix("", Some("data/")).unwrap(), "data/");
        assert_eq!(effective_prefix("data/x", Some("data/")).unwrap(), "data/x");
        assert_eq!(effective_prefix("logs/", None).unwrap(), "logs/");
        assert!(effective_prefix("logs/", Some("data/")).is_err());
    }

    #[tokio::test]
    async fn fills_a_free_slot_before_taking_in_finished_copies() {
        let mut in_flight: FuturesUnordered<_> = (0..3).map(futures::future::ready).collect();
        // A listed object ready: it goes first, though copies have finished.
        let next = next_step(futures::future::ready("listed"), &mut in_flight).await;
        assert!(matches!(next, Either::Right("listed")));
        assert_eq!(in_flight.len(), 3);
        // The listing waits for a page: the finished copies are taken in meanwhile.
        for _ in 0..3 {
            let next = next_step(futures::future::pending::<&str>(), &mut in_flight).await;
            assert!(matches!(next, Either::Left(_)));
        }
        assert!(in_flight.is_empty());
    }
}
