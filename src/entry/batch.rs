//! S3 Batch Operations "Invoke AWS Lambda function" jobs: each task names one object (from an
//! S3 Inventory report or a CSV manifest), which is replicated through the same copy path as an
//! event, and answered with the documented result structure.
//!
//! Schema 1.0 names the bucket by ARN (`s3BucketArn`, with or without region and account); 2.0
//! names it (`s3Bucket`) and carries the job's `userArguments`. Keys may arrive URL-encoded, as
//! the manifest holds them: they are tried percent-decoded, then form-decoded, then raw, and the
//! first reading that names an object in the source is copied.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::copy::chain::Budget;
use crate::copy::{Outcome, Replicator, SkipReason};
use crate::decode::{ObjectEvent, ObjectEventKind};
use crate::keys::batch_key_readings;

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
    budget: &Budget,
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
        results.push(run_task(task, replicator, missing_source_code, budget).await);
    }
    Ok(BatchResponse {
        invocation_schema_version: job.invocation_schema_version,
        treat_missing_keys_as: "PermanentFailure",
        invocation_id: job.invocation_id,
        results,
    })
}

/// The bucket an S3 bucket ARN names, in any of its documented forms:
/// `arn:aws:s3:::bucket` and `arn:aws:s3:us-east-1:111122223333:bucket` (and the other
/// partitions). Object, access point and other ARNs name no bucket.
fn bucket_of_arn(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "s3", _region, _account, bucket]
            if !partition.is_empty() && !bucket.is_empty() && !bucket.contains(['/', ':']) =>
        {
            Some(bucket)
        }
        _ => None,
    }
}

async fn run_task(
    task: &Value,
    replicator: &Replicator,
    missing_source_code: &'static str,
    budget: &Budget,
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
        (None, Some(arn)) => match bucket_of_arn(arn) {
            Some(bucket) => bucket.to_string(),
            None => return permanent(format!("s3BucketArn {arn:?} is not a bucket ARN")),
        },
        (None, None) => return permanent("task names no bucket".into()),
    };
    let mut readings = match batch_key_readings(&task.s3_key) {
        Ok(readings) => readings.into_iter(),
        Err(e) => return permanent(format!("undecodable s3Key: {e}")),
    };
    let key = readings.next().unwrap_or_default();
    // A task names a key, not a change: B converges to A's current state of it, as for a
    // removal event (copied if A has it, the replica deleted if not and deletes are
    // replicated); without delete replication a missing key stays a missing source.
    let kind = if replicator.config().replicate_deletes {
        ObjectEventKind::Removed
    } else {
        ObjectEventKind::Created
    };
    let event = ObjectEvent {
        kind,
        event_name: "BatchOperations".into(),
        bucket,
        key,
        alternate_keys: readings.collect(),
        size: None,
        etag: None,
        version_id: task.s3_version_id,
        sequencer: None,
        event_time: None,
        region: None,
    };
    let started = std::time::Instant::now();
    let outcome = replicator.replicate(&event, budget).await;
    outcome.log(&event, started.elapsed());
    let (result_code, result_string) = task_result(
        &outcome,
        &replicator.config().destination_bucket,
        missing_source_code,
    );
    TaskResult {
        task_id: task.task_id,
        result_code,
        result_string,
    }
}

/// A task's result code and string for an object's outcome.
fn task_result(
    outcome: &Outcome,
    destination_bucket: &str,
    missing_source_code: &'static str,
) -> (&'static str, String) {
    match outcome {
        Outcome::Copied {
            destination_key,
            bytes,
            ..
        } => (
            "Succeeded",
            format!(
                "copied {bytes} bytes to s3://{}/{destination_key}",
                destination_bucket
            ),
        ),
        Outcome::Skipped(SkipReason::SourceGone) => {
            (missing_source_code, SkipReason::SourceGone.to_string())
        }
        Outcome::Skipped(reason) => ("Succeeded", format!("skipped: {reason}")),
        Outcome::Deleted { destination_key } => ("Succeeded", format!("deleted {destination_key}")),
        // The chain's failure reaches the function's on-failure destination, not the job.
        Outcome::HandedOff {
            destination_key,
            upload_id,
            resume,
            ..
        } => (
            "Succeeded",
            match resume {
                None => format!(
                    "copy to {destination_key} continues in the function's next invocation (upload {upload_id})"
                ),
                Some(payload) => format!(
                    "copy to {destination_key} continues when the function is invoked with {payload}"
                ),
            },
        ),
        Outcome::Tagged {
            destination_key,
            tags,
        } => (
            "Succeeded",
            format!("replaced the tags of {destination_key} ({tags})"),
        ),
        // S3 does not retry it, and the job's completion report names the restore command.
        Outcome::Archived(error) => ("PermanentFailure", error.to_string()),
        Outcome::Failed(error) if error.is_transient() => ("TemporaryFailure", error.to_string()),
        Outcome::Failed(error) => ("PermanentFailure", error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_documented_bucket_arn_form() {
        assert_eq!(
            bucket_of_arn("arn:aws:s3:::amzn-s3-demo-bucket"),
            Some("amzn-s3-demo-bucket")
        );
        assert_eq!(
            bucket_of_arn("arn:aws:s3:us-east-1:111122223333:amzn-s3-demo-bucket"),
            Some("amzn-s3-demo-bucket")
        );
        assert_eq!(
            bucket_of_arn("arn:aws-cn:s3:::bucket-cn"),
            Some("bucket-cn")
        );
        for refused in [
            "amzn-s3-demo-bucket",
            "arn:aws:s3:::bucket/key.txt",
            "arn:aws:s3:us-east-1:111122223333:accesspoint/ap",
            "arn:aws:lambda:us-east-1:111122223333:function:f",
            "arn:aws:s3:::",
            "arn::s3:::bucket",
        ] {
            assert_eq!(bucket_of_arn(refused), None, "{refused}");
        }
    }
}
