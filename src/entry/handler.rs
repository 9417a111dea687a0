//! The Lambda handler: one entry point for every payload shape, turning per-object outcomes
//! into the response each invoker expects (a summary, an error, or an SQS partial batch
//! response).

use std::time::{Instant, SystemTime};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use futures::stream::{self, StreamExt};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;

use crate::backfill::{BackfillError, BackfillRequest, run_backfill};
use crate::copy::chain::{Budget, Continuation};
use crate::copy::{FailedObject, Outcome, Replicator};
use crate::decode::{EventError, Invocation, MessageContent, ObjectEvent, decode_invocation};
use crate::entry::batch::{is_batch_job, run_batch_job};
use crate::invoke::SelfInvoker;
use crate::ops::uploads::{UploadsRequest, stale_uploads};

/// How many objects of one invocation are replicated at the same time.
const OBJECT_CONCURRENCY: usize = 16;

/// How many failures a summary lists by name.
const LISTED_FAILURES: usize = 20;

/// Why an invocation as a whole failed. Returning it makes Lambda retry an asynchronous
/// invocation and, after the retries, hand it to the on-failure destination.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The payload is not an entry shape this function handles; nothing was copied.
    #[error("{0}")]
    UnrecognizedPayload(EventError),
    /// A backfill or Batch Operations request that cannot be run as given.
    #[error("{0}")]
    InvalidRequest(String),
    /// A backfill stopped early (a listing failed, or the next hop could not be started).
    #[error(transparent)]
    Backfill(#[from] BackfillError),
    /// The permission doctor found checks failing: the report, with the statements to add.
    #[error("the permission doctor found {failing} failing check(s):\n{report}")]
    Unhealthy {
        /// How many checks failed.
        failing: usize,
        /// The doctor's report as a table.
        report: String,
    },
    /// Listing B's multipart uploads failed, or some could not be aborted.
    #[error("{0}")]
    Uploads(String),
    /// Some objects failed; the others were replicated.
    #[error("{failed} of {total} objects failed to replicate; first failure: {first}")]
    ObjectsFailed {
        /// How many objects failed.
        failed: usize,
        /// How many objects the payload named.
        total: usize,
        /// The first failure, as `bucket/key: error`.
        first: String,
    },
}

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match error {
            HandlerError::UnrecognizedPayload(_) => "UnrecognizedPayload",
            HandlerError::InvalidRequest(_) => "InvalidRequest",
            HandlerError::Backfill(BackfillError::InvalidRequest(_)) => "InvalidRequest",
            HandlerError::Backfill(BackfillError::Locked(_)) => "BackfillAlreadyRunning",
            HandlerError::Backfill(_) => "BackfillFailed",
            HandlerError::ObjectsFailed { .. } => "ReplicationFailed",
            HandlerError::Unhealthy { .. } => "DoctorFoundProblems",
            HandlerError::Uploads(_) => "UploadsFailed",
        };
        Diagnostic {
            error_type: error_type.to_string(),
            error_message: error.to_string(),
        }
    }
}

/// Counts of outcomes for one invocation, returned to direct invokers and logged.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Objects copied.
    pub copied: usize,
    /// Replicas given their source's changed tags.
    pub tagged: usize,
    /// Replicas deleted.
    pub deleted: usize,
    /// Objects deliberately not replicated.
    pub skipped: usize,
    /// Objects (or undecodable records) that failed.
    pub failed: usize,
    /// Objects that must be restored from an archive tier before they can be copied.
    pub archived: usize,
    /// Copies in parts that continue in another invocation.
    pub handed_off: usize,
    /// Bytes copied.
    pub bytes: i64,
    /// The first failures, by name.
    pub failures: Vec<FailedObject>,
    /// The first archived objects, by name, with the restore command.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub archived_objects: Vec<FailedObject>,
    /// The payloads that continue copies in parts, when the function could not invoke itself
    /// (outside Lambda): invoke the function with each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resume: Vec<Value>,
    /// The longest time from an event to its copy, for the metrics.
    #[serde(skip)]
    pub max_lag_ms: Option<u64>,
}

impl Summary {
    fn total(&self) -> usize {
        self.copied
            + self.tagged
            + self.deleted
            + self.skipped
            + self.archived
            + self.handed_off
            + self.failed
    }

    fn metrics(&self) -> crate::metrics::InvocationMetrics {
        crate::metrics::InvocationMetrics {
            copied: self.copied as u64,
            skipped: (self.skipped + self.deleted + self.tagged) as u64,
            failed: self.failed as u64,
            archived: self.archived as u64,
            handed_off: self.handed_off as u64,
            bytes: self.bytes,
            max_lag_ms: self.max_lag_ms,
            listed: None,
        }
    }

    fn record_failure(&mut self, failure: FailedObject) {
        self.failed += 1;
        if self.failures.len() < LISTED_FAILURES {
            self.failures.push(failure);
        }
    }

    fn record(&mut self, event: &ObjectEvent, outcome: &Outcome) {
        match outcome {
            Outcome::Copied { bytes, .. } => {
                self.copied += 1;
                self.bytes += bytes;
                let lag = event
                    .event_time
                    .as_deref()
                    .and_then(crate::metrics::lag_since);
                self.max_lag_ms = self.max_lag_ms.max(lag);
            }
            Outcome::Tagged { .. } => self.tagged += 1,
            Outcome::Deleted { .. } => self.deleted += 1,
            Outcome::Skipped(_) => self.skipped += 1,
            Outcome::HandedOff { resume, .. } => {
                self.handed_off += 1;
                self.resume.extend(resume.clone());
            }
            Outcome::Archived(error) => {
                self.archived += 1;
                if self.archived_objects.len() < LISTED_FAILURES {
                    let entry = FailedObject::new(&event.bucket, &event.key, error);
                    self.archived_objects.push(entry);
                }
            }
            Outcome::Failed(error) => {
                self.record_failure(FailedObject::new(&event.bucket, &event.key, error))
            }
        }
    }

    fn record_undecodable(&mut self, error: &EventError) {
        tracing::error!(outcome = "failed", error_code = "InvalidEvent", error = %error, "record could not be decoded");
        self.record_failure(FailedObject {
            bucket: String::new(),
            key: String::new(),
            error_code: "InvalidEvent".to_string(),
            error: error.to_string(),
        });
    }
}

/// What an invocation knows besides its payload.
#[derive(Debug, Clone, Copy, Default)]
pub struct InvocationContext<'a> {
    /// When Lambda stops the invocation; long work stops in time and reports where to resume.
    pub deadline: Option<SystemTime>,
    /// The ARN the function was invoked by, for invoking itself again.
    pub function_arn: Option<&'a str>,
    /// The Lambda client built at init, for invoking itself again.
    pub lambda: Option<&'a aws_sdk_lambda::Client>,
    /// The function's name, the dimension of its metrics; none outside Lambda (no metrics).
    pub function_name: Option<&'a str>,
    /// The invocation's request id (a retried asynchronous invocation keeps it).
    pub request_id: Option<&'a str>,
}

impl InvocationContext<'_> {
    /// What copies get of this invocation: its deadline, and the way to invoke the function
    /// again.
    fn budget(&self) -> Budget {
        Budget {
            deadline: self.deadline,
            invoker: self.invoker().owned(),
        }
    }

    /// How this invocation starts the function again.
    fn invoker(&self) -> SelfInvoker<'_> {
        SelfInvoker {
            client: self.lambda,
            function_arn: self.function_arn,
            request_id: self.request_id,
        }
    }

    /// Writes the invocation's metric line, when running as a Lambda function.
    fn emit_metrics(&self, metrics: &crate::metrics::InvocationMetrics) {
        if let Some(name) = self.function_name {
            crate::metrics::emit(name, metrics);
        }
    }
}

/// Runs the permission doctor as the function; fails when a check fails.
async fn doctor(
    replicator: &Replicator,
    context: &InvocationContext<'_>,
) -> Result<Value, HandlerError> {
    let report = crate::ops::doctor::run_doctor(replicator, context.invoker()).await;
    tracing::info!(healthy = report.healthy, "permission doctor ran");
    // A failing check fails the invocation, so that automation (a deploy pipeline, a
    // scheduled check) sees it.
    if !report.healthy {
        let failing = report
            .checks
            .iter()
            .filter(|c| c.status == crate::ops::doctor::Status::Fail)
            .count();
        return Err(HandlerError::Unhealthy {
            failing,
            report: report.to_table(),
        });
    }
    Ok(serde_json::to_value(&report).unwrap_or(Value::Null))
}

/// Lists (and aborts, if asked) the function's multipart uploads left open in B; fails when
/// the listing fails or an abort does.
async fn uploads(request: &Value, replicator: &Replicator) -> Result<Value, HandlerError> {
    let request = UploadsRequest::from_value(request).map_err(HandlerError::InvalidRequest)?;
    let report = stale_uploads(replicator, request)
        .await
        .map_err(|e| HandlerError::Uploads(e.to_string()))?;
    if let Some(failure) = report.abort_failure() {
        return Err(HandlerError::Uploads(failure));
    }
    Ok(serde_json::to_value(&report).unwrap_or(Value::Null))
}

/// Continues a copy in parts (a `continue` payload); fails when the object fails, so that
/// Lambda retries the invocation and then hands it to the on-failure destination.
async fn continue_copy(
    request: &Value,
    replicator: &Replicator,
    context: &InvocationContext<'_>,
) -> Result<Value, HandlerError> {
    let chain = Continuation::from_value(request).map_err(HandlerError::InvalidRequest)?;
    let started = Instant::now();
    let outcome = replicator.resume(&chain, &context.budget()).await;
    let event = chain.event();
    outcome.log(&event, started.elapsed());
    let mut summary = Summary::default();
    summary.record(&event, &outcome);
    context.emit_metrics(&summary.metrics());
    if let Some(first) = summary.failures.first() {
        return Err(HandlerError::ObjectsFailed {
            failed: 1,
            total: 1,
            first: format!("{}/{}: {}", first.bucket, first.key, first.error),
        });
    }
    Ok(serde_json::to_value(&summary).unwrap_or(Value::Null))
}

/// The Lambda entry point.
pub async fn handle(
    event: LambdaEvent<Value>,
    replicator: &Replicator,
    lambda: &aws_sdk_lambda::Client,
) -> Result<Value, HandlerError> {
    let context = InvocationContext {
        deadline: Some(event.context.deadline()),
        function_arn: Some(&event.context.invoked_function_arn),
        lambda: Some(lambda),
        function_name: Some(&event.context.env_config.function_name),
        request_id: Some(&event.context.request_id),
    };
    handle_with_context(&event.payload, replicator, context).await
}

/// Handles one invocation payload of any supported shape, with no deadline and no way to
/// invoke the function again.
pub async fn handle_payload(
    payload: &Value,
    replicator: &Replicator,
) -> Result<Value, HandlerError> {
    handle_with_context(payload, replicator, InvocationContext::default()).await
}

/// Handles one invocation payload of any supported shape: a backfill request, an S3 Batch
/// Operations job, or object events.
pub async fn handle_with_context(
    payload: &Value,
    replicator: &Replicator,
    context: InvocationContext<'_>,
) -> Result<Value, HandlerError> {
    if let Some(request) = payload.get("backfill") {
        let request = BackfillRequest::from_value(request).map_err(HandlerError::InvalidRequest)?;
        let report = run_backfill(&request, replicator, context.deadline, context.invoker()).await;
        if let Ok(report) = &report {
            context.emit_metrics(&crate::metrics::InvocationMetrics {
                copied: report.copied,
                skipped: report.skipped,
                failed: report.failed,
                archived: report.archived,
                handed_off: report.handed_off,
                bytes: report.bytes,
                max_lag_ms: None,
                listed: Some(report.listed),
            });
        }
        return Ok(serde_json::to_value(&report?).unwrap_or(Value::Null));
    }
    if payload.get("doctor").is_some() {
        return doctor(replicator, &context).await;
    }
    if let Some(request) = payload.get("uploads") {
        return uploads(request, replicator).await;
    }
    if let Some(request) = payload.get("continue") {
        return continue_copy(request, replicator, &context).await;
    }
    let budget = context.budget();
    if is_batch_job(payload) {
        let response = run_batch_job(payload, replicator, &budget)
            .await
            .map_err(HandlerError::InvalidRequest)?;
        return Ok(serde_json::to_value(&response).unwrap_or(Value::Null));
    }
    let invocation = decode_invocation(payload).map_err(|error| {
        tracing::error!(error = %error, "payload refused");
        HandlerError::UnrecognizedPayload(error)
    })?;
    match invocation {
        Invocation::TestEvent => {
            tracing::info!("s3:TestEvent acknowledged; nothing to replicate");
            Ok(serde_json::to_value(Summary::default()).unwrap_or(Value::Null))
        }
        Invocation::Direct(records) => {
            let summary = replicate_records(records, replicator, &budget).await;
            log_summary(&summary);
            context.emit_metrics(&summary.metrics());
            if let Some(first) = summary.failures.first() {
                return Err(HandlerError::ObjectsFailed {
                    failed: summary.failed,
                    total: summary.total(),
                    first: format!("{}/{}: {}", first.bucket, first.key, first.error),
                });
            }
            Ok(serde_json::to_value(&summary).unwrap_or(Value::Null))
        }
        Invocation::Queue(messages) => {
            let (response, summary) = replicate_queue_batch(messages, replicator, &budget).await;
            context.emit_metrics(&summary.metrics());
            Ok(serde_json::to_value(&response).unwrap_or(Value::Null))
        }
    }
}

async fn replicate_records(
    records: Vec<Result<ObjectEvent, EventError>>,
    replicator: &Replicator,
    budget: &Budget,
) -> Summary {
    let mut summary = Summary::default();
    let mut events = Vec::with_capacity(records.len());
    for record in records {
        match record {
            Ok(event) => events.push(event),
            Err(error) => summary.record_undecodable(&error),
        }
    }
    let outcomes = replicate_all(&events, replicator, budget).await;
    for (event, outcome) in events.iter().zip(&outcomes) {
        summary.record(event, outcome);
    }
    summary
}

async fn replicate_all(
    events: &[ObjectEvent],
    replicator: &Replicator,
    budget: &Budget,
) -> Vec<Outcome> {
    stream::iter(events)
        .map(|event| async move {
            let started = Instant::now();
            let outcome = replicator.replicate(event, budget).await;
            outcome.log(event, started.elapsed());
            outcome
        })
        .buffered(OBJECT_CONCURRENCY)
        .collect()
        .await
}

/// Replicates every object of every message, and names in `batchItemFailures` exactly the
/// messages that must come back: undecodable ones and those with a failed object (a copy handed
/// to its continuation has not failed: the chain carries it on).
async fn replicate_queue_batch(
    messages: Vec<crate::decode::QueueMessage>,
    replicator: &Replicator,
    budget: &Budget,
) -> (SqsBatchResponse, Summary) {
    let mut summary = Summary::default();
    let mut owners = Vec::new();
    let mut events = Vec::new();
    let mut failed_messages = Vec::new();
    for message in &messages {
        match &message.content {
            Err(error) => {
                tracing::error!(message_id = %message.message_id, error = %error, "SQS message could not be decoded");
                summary.record_undecodable(error);
                failed_messages.push(message.message_id.clone());
            }
            Ok(MessageContent::TestEvent) => {
                tracing::info!(message_id = %message.message_id, "s3:TestEvent acknowledged; nothing to replicate");
            }
            Ok(MessageContent::Objects(records)) => {
                for record in records {
                    match record {
                        Ok(event) => {
                            owners.push(message.message_id.clone());
                            events.push(event.clone());
                        }
                        Err(error) => {
                            summary.record_undecodable(error);
                            failed_messages.push(message.message_id.clone());
                        }
                    }
                }
            }
        }
    }
    let outcomes = replicate_all(&events, replicator, budget).await;
    for ((event, outcome), owner) in events.iter().zip(&outcomes).zip(owners) {
        summary.record(event, outcome);
        if matches!(outcome, Outcome::Failed(_)) {
            failed_messages.push(owner);
        }
    }
    log_summary(&summary);
    let mut response = SqsBatchResponse::default();
    for message in &messages {
        if failed_messages.contains(&message.message_id)
            && !response
                .batch_item_failures
                .iter()
                .any(|f| f.item_identifier == message.message_id)
        {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message.message_id.clone();
            response.batch_item_failures.push(failure);
        }
    }
    (response, summary)
}

fn log_summary(summary: &Summary) {
    tracing::info!(
        copied = summary.copied,
        deleted = summary.deleted,
        skipped = summary.skipped,
        failed = summary.failed,
        archived = summary.archived,
        handed_off = summary.handed_off,
        bytes = summary.bytes,
        "invocation summary"
    );
}
