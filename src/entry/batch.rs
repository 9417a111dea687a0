//! S3 Batch Operations "Invoke AWS Lambda function" jobs: each task names one object (from an
//! S3 Inventory report or a CSV manifest), which is replicated through the same copy path as an
//! event, and answered with the documented result structure.
//!
//! Schema 1.0 names the bucket by ARN (`s3BucketArn`); 2.0 names it (`s3Bucket`) and carries
//! the job's `userArguments`. Keys arrive URL-encoded.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::copy::{Outcome, Replicator, SkipReason};
use crate::decode::{ObjectEvent, ObjectEventKind};
use crate::keys::decode_event_key;

/// Whether `payload` is a Batch Operations invocation.
pub fn is_batch_job(payload: &Value) -> bool {
    payload.get("invocationSchemaVersion").is_some() && payload.get("tasks").is_some()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchJob {
    invocation_schema_version: String,
    invocation_id: String,
    #[serde(default)]
    job: JobInfo,
    tasks: Vec<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobInfo {
    #[serde(default)]
    user_arguments: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchTask {
    task_id: String,
    s3_key: String,
    #[serde(default)]
    s3_bucket_arn: Option<String>,
    #[serde(default)]
    s3_bucket: Option<String>,
    #[serde(default)]
    s3_version_id: Option<String>,
}

/// One task's answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TaskResult {
    /// The task it answers.
    pub task_id: String,
    /// `Succeeded`, `TemporaryFailure` (S3 retries it) or `PermanentFailure`.
    pub result_code: &'static str,
    /// Why, in words; it lands in the job's completion report.
    pub result_string: String,
}

/// The response S3 Batch Operations expects.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    /// Echoes the invocation's schema version.
    pub invocation_schema_version: String,
    /// How S3 treats a task missing from `results`.
    pub treat_missing_keys_as: &'static str,
    /// Echoes the invocation id.
    pub invocation_id: String,
    /// One result per task.
    pub results: Vec<TaskResult>,
}

/// Replicates every task's object and answers each task.
pub async fn run_batch_job(
    payload: &Value,
    replicator: &Replicator,
) -> Result<BatchResponse, String> {
    let job: BatchJob = serde_json::from_value(payload.clone())
        .map_err(|e| format!("malformed S3 Batch Operations invocation: {e}"))?;
    if !matches!(job.invocation_schema_version.as_str(), "1.0" | "2.0") {
        return Err(format!(
            "unsupported S3 Batch Operations invocationSchemaVersion {:?} (1.0 and 2.0 are)",
            job.invocation_schema_version
        ));
    }
    let missing_source_code = match job
        .job
        .user_arguments
        .as_ref()
        .and_then(|args| args.get("treatMissingSourceAs"))
        .and_then(Value::as_str)
    {
        Some("Succeeded") => "Succeeded",
        _ => "PermanentFailure",
    };
    let mut results = Vec::with_capacity(job.tasks.len());
    for task in &job.tasks {
        results.push(run_task(task, replicator, missing_source_code).await);
    }
    Ok(BatchResponse {
        invocation_schema_version: job.invocation_schema_version,
        treat_missing_keys_as: "PermanentFailure",
        invocation_id: job.invocation_id,
        results,
    })
}

async fn run_task(
    task: &Value,
    replicator: &Replicator,
    missing_source_code: &'static str,
) -> TaskResult {
    let task_id = task
        .get("taskId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let permanent = |reason: String| TaskResult {
        task_id: task_id.clone(),
        result_code: "PermanentFailure",
        result_string: reason,
    };
    let task: BatchTask = match serde_json::from_value(task.clone()) {
        Ok(task) => task,
        Err(e) => return permanent(format!("malformed task: {e}")),
    };
    let bucket = match (&task.s3_bucket, &task.s3_bucket_arn) {
        (Some(bucket), _) => bucket.clone(),
        (None, Some(arn)) => match arn.rsplit_once(":::") {
            Some((_, bucket)) => bucket.to_string(),
            None => return permanent(format!("s3BucketArn {arn:?} is not a bucket ARN")),
        },
        (None, None) => return permanent("task names no bucket".into()),
    };
    let key = match decode_event_key(&task.s3_key) {
        Ok(key) => key,
        Err(e) => return permanent(format!("undecodable s3Key: {e}")),
    };
    let event = ObjectEvent {
        kind: ObjectEventKind::Created,
        event_name: "BatchOperations".into(),
        bucket,
        key,
        alternate_key: None,
        size: None,
        version_id: task.s3_version_id,
        sequencer: None,
        event_time: None,
        region: None,
    };
    let started = std::time::Instant::now();
    let outcome = replicator.replicate(&event).await;
    outcome.log(&event, started.elapsed());
    let (result_code, result_string) = match &outcome {
        Outcome::Copied {
            destination_key,
            bytes,
        } => (
            "Succeeded",
            format!(
                "copied {bytes} bytes to s3://{}/{destination_key}",
                replicator.config().destination_bucket
            ),
        ),
        Outcome::Skipped(SkipReason::SourceGone) => {
            (missing_source_code, SkipReason::SourceGone.to_string())
        }
        Outcome::Skipped(reason) => ("Succeeded", format!("skipped: {reason}")),
        Outcome::Deleted { destination_key } => ("Succeeded", format!("deleted {destination_key}")),
        Outcome::Failed(error) if error.is_transient() => ("TemporaryFailure", error.to_string()),
        Outcome::Failed(error) => ("PermanentFailure", error.to_string()),
    };
    TaskResult {
        task_id: task.task_id,
        result_code,
        result_string,
    }
}
