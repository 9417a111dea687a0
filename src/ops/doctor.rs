//! The permission doctor: exercises every permission the configuration needs with harmless calls
//! and, for each that fails, names the statement that is missing and where it goes.
//!
//! Nothing is left behind: the write to B is a multipart upload that is created (with the
//! configured ACL, tags, storage class and KMS key) and aborted; the delete check deletes a key
//! that does not exist; the self-invocation check is a Lambda `DryRun`, which runs nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_s3::types::ServerSideEncryption;
use serde::Serialize;
use serde_json::{Value, json};

use crate::copy::Replicator;
use crate::error::{FailureClass, S3Failure, classify};
use crate::invoke::SelfInvoker;
use crate::ops::policy::DestinationGrant;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The permission works.
    Pass,
    /// The permission is missing; `fix` says what to add where.
    Fail,
    /// Could not be checked (for example, no object to read); not a failure.
    Skip,
    /// A setting worth knowing, read where permitted.
    Info,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// How it ended.
    pub status: Status,
    /// The S3 actions exercised.
    pub actions: Vec<&'static str>,
    /// The bucket or object ARN they were exercised on.
    pub resource: String,
    /// S3's error code, on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// What was found, or why the check was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// On failure: where the missing statement goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix_location: Option<String>,
    /// On failure: the statement to add there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix_statement: Option<Value>,
}

/// The doctor's findings.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// Whether no check failed.
    pub healthy: bool,
    /// Every check, in order.
    pub checks: Vec<Check>,
}

impl DoctorReport {
    /// The report as a table for a terminal.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            let status = match check.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Skip => "SKIP",
                Status::Info => "INFO",
            };
            out.push_str(&format!(
                "{status}  {:<28} {} on {}",
                check.name,
                check.actions.join(", "),
                check.resource
            ));
            if let Some(code) = &check.error_code {
                out.push_str(&format!(" ({code})"));
            }
            if let Some(detail) = &check.detail {
                out.push_str(&format!(": {detail}"));
            }
            out.push('\n');
            if let (Some(location), Some(statement)) = (&check.fix_location, &check.fix_statement) {
                out.push_str(&format!("      add to {location}:\n      {statement}\n"));
            }
        }
        out.push_str(if self.healthy {
            "healthy: every permission the configuration needs works\n"
        } else {
            "NOT healthy: add the statements above\n"
        });
        out
    }
}

const IDENTITY_POLICY: &str = "the function role's identity policy (account A)";

/// Runs every check; `invoker` is the function's own ARN and Lambda client when it runs as the
/// function (without them, the self-invocation check is skipped).
pub async fn run_doctor(replicator: &Replicator, invoker: SelfInvoker<'_>) -> DoctorReport {
    let config = replicator.config();
    let clients = replicator.clients();
    let source = clients.source();
    let destination = clients.destination();
    let role = config
        .function_role_arn
        .clone()
        .unwrap_or_else(|| "arn:aws:iam::ACCOUNT_A:role/FUNCTION_ROLE".into());
    let source_bucket_arn = format!("arn:aws:s3:::{}", config.source_bucket);
    let destination_bucket_arn = format!("arn:aws:s3:::{}", config.destination_bucket);
    let source_prefix = config.source_prefix.clone().unwrap_or_default();
    let grant = DestinationGrant {
        role_arn: role.clone(),
        bucket: config.destination_bucket.clone(),
        prefix: config.destination_prefix.clone(),
        sends_acl: config.destination_acl.is_some(),
        replicate_deletes: config.replicate_deletes,
    };
    let bucket_policy_location = format!(
        "the bucket policy of {} (account B), and {IDENTITY_POLICY}",
        config.destination_bucket
    );
    let mut checks = Vec::new();

    // Listing the source.
    let listing = source
        .list_objects_v2()
        .bucket(&config.source_bucket)
        .prefix(&source_prefix)
        .max_keys(1)
        .send()
        .await;
    let sample = first_key(&listing);
    checks.push(outcome(
        "list source",
        vec!["s3:ListBucket"],
        source_bucket_arn.clone(),
        listing.map(|_| None).map_err(classify),
        IDENTITY_POLICY,
        identity_statement(&["s3:ListBucket"], &source_bucket_arn),
    ));

    // Reading an object of the source.
    let objects_arn = format!("{source_bucket_arn}/{source_prefix}*");
    match &sample {
        None => checks.push(skipped(
            "read source object",
            vec!["s3:GetObject", "s3:GetObjectTagging"],
            objects_arn.clone(),
            "no object under the source prefix to read (or the listing failed)",
        )),
        Some(key) => {
            let head = source
                .head_object()
                .bucket(&config.source_bucket)
                .key(key)
                .send()
                .await
                .map_err(classify);
            let read = match head {
                Ok(_) => source
                    .get_object_tagging()
                    .bucket(&config.source_bucket)
                    .key(key)
                    .send()
                    .await
                    .map(|_| Some(format!("read the head and tags of {key}")))
                    .map_err(classify),
                Err(failure) => Err(failure),
            };
            checks.push(outcome(
                "read source object",
                vec!["s3:GetObject", "s3:GetObjectTagging"],
                format!("{source_bucket_arn}/{key}"),
                read,
                IDENTITY_POLICY,
                identity_statement(&["s3:GetObject", "s3:GetObjectTagging"], &objects_arn),
            ));
        }
    }

    // Writing into the destination, with the configured ACL, tags and KMS key: a multipart
    // upload created and aborted leaves nothing behind.
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let probe = format!(
        "{}.s3-replicator-doctor/probe-{stamp}",
        config.destination_prefix
    );
    let probe_arn = format!("{destination_bucket_arn}/{probe}");
    let mut create = destination
        .create_multipart_upload()
        .bucket(&config.destination_bucket)
        .key(&probe)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .tagging("s3-replicator=doctor")
        .set_acl(config.destination_acl.clone())
        .set_storage_class(config.destination_storage_class.clone());
    if let Some(kms_key) = &config.destination_kms_key_id {
        create = create
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(kms_key);
    }
    let mut write_actions = vec!["s3:PutObject", "s3:PutObjectTagging"];
    if config.destination_acl.is_some() {
        write_actions.push("s3:PutObjectAcl");
    }
    let created = create.send().await.map_err(classify);
    let upload_id = created
        .as_ref()
        .ok()
        .and_then(|upload| upload.upload_id())
        .map(str::to_string);
    checks.push(outcome(
        "write destination",
        write_actions,
        probe_arn.clone(),
        created.map(|_| Some("created a multipart upload (aborted next)".into())),
        &bucket_policy_location,
        grant.bucket_policy()["Statement"][0].clone(),
    ));
    if let Some(upload_id) = upload_id {
        let aborted = destination
            .abort_multipart_upload()
            .bucket(&config.destination_bucket)
            .key(&probe)
            .upload_id(&upload_id)
            .set_expected_bucket_owner(config.destination_account_id.clone())
            .send()
            .await
            .map(|_| None)
            .map_err(classify);
        checks.push(outcome(
            "abort destination upload",
            vec!["s3:AbortMultipartUpload"],
            probe_arn.clone(),
            aborted,
            &bucket_policy_location,
            grant.bucket_policy()["Statement"][0].clone(),
        ));
    }

    if config.replicate_deletes {
        let deleted = destination
            .delete_object()
            .bucket(&config.destination_bucket)
            .key(&probe)
            .set_expected_bucket_owner(config.destination_account_id.clone())
            .send()
            .await
            .map(|_| Some("deleted a key that does not exist".into()))
            .map_err(classify);
        checks.push(outcome(
            "delete in destination",
            vec!["s3:DeleteObject"],
            probe_arn.clone(),
            deleted,
            &bucket_policy_location,
            grant.bucket_policy()["Statement"][0].clone(),
        ));
    }

    let listed = destination
        .list_objects_v2()
        .bucket(&config.destination_bucket)
        .prefix(&config.destination_prefix)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .max_keys(1)
        .send()
        .await;
    let replica = first_key(&listed);
    checks.push(outcome(
        "list destination",
        vec!["s3:ListBucket"],
        destination_bucket_arn.clone(),
        listed.map(|_| None).map_err(classify),
        &bucket_policy_location,
        grant.bucket_policy()["Statement"][1].clone(),
    ));

    // Reading a replica's head (how replicas are verified): one the listing found.
    match &replica {
        None => checks.push(skipped(
            "read destination head",
            vec!["s3:GetObject"],
            format!("{destination_bucket_arn}/{}*", config.destination_prefix),
            "no replica under the destination prefix yet (or the listing failed)",
        )),
        Some(key) => {
            let head = destination
                .head_object()
                .bucket(&config.destination_bucket)
                .key(key)
                .set_expected_bucket_owner(config.destination_account_id.clone())
                .send()
                .await
                .map(|_| Some(format!("read the head of {key}")))
                .map_err(classify);
            checks.push(outcome(
                "read destination head",
                vec!["s3:GetObject"],
                format!("{destination_bucket_arn}/{key}"),
                head,
                &bucket_policy_location,
                grant.bucket_policy()["Statement"][0].clone(),
            ));
        }
    }

    // Invoking the function itself, as continuing and fanned-out backfills do: a dry run,
    // which Lambda authorizes and then does not run.
    match (invoker.client, invoker.function_arn) {
        (Some(lambda), Some(arn)) => {
            let invoked = lambda
                .invoke()
                .function_name(arn)
                .invocation_type(aws_sdk_lambda::types::InvocationType::DryRun)
                .send()
                .await
                .map(|_| Some("a dry-run invocation was allowed".into()))
                .map_err(classify);
            checks.push(outcome(
                "invoke self",
                vec!["lambda:InvokeFunction"],
                arn.to_string(),
                invoked,
                IDENTITY_POLICY,
                identity_statement(&["lambda:InvokeFunction"], arn),
            ));
        }
        _ => checks.push(skipped(
            "invoke self",
            vec!["lambda:InvokeFunction"],
            "the function".into(),
            "not running as the function (or no --function-arn): only backfills that continue \
             or fan out need it",
        )),
    }

    // Settings worth knowing, where readable (not granted by default: informational only).
    let versioning = source
        .get_bucket_versioning()
        .bucket(&config.source_bucket)
        .send()
        .await;
    checks.push(info(
        "source versioning",
        "s3:GetBucketVersioning",
        source_bucket_arn,
        versioning.map(|v| match v.status() {
            Some(status) => format!("{status}: parts are copied by version id"),
            None => "never enabled: parts are copied on condition of the ETag".into(),
        }),
    ));
    let ownership = destination
        .get_bucket_ownership_controls()
        .bucket(&config.destination_bucket)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .send()
        .await;
    checks.push(info(
        "destination object ownership",
        "s3:GetBucketOwnershipControls",
        destination_bucket_arn,
        ownership.map(|o| {
            o.ownership_controls()
                .and_then(|c| c.rules().first())
                .map(|rule| format!("{}", rule.object_ownership()))
                .unwrap_or_else(|| "no rule".into())
        }),
    ));

    let healthy = checks.iter().all(|c| c.status != Status::Fail);
    DoctorReport { healthy, checks }
}

/// The first key of a listing that succeeded.
fn first_key<E>(
    listing: &Result<aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output, E>,
) -> Option<String> {
    listing
        .as_ref()
        .ok()
        .and_then(|page| page.contents().first())
        .and_then(|object| object.key())
        .map(str::to_string)
}

/// A check that could not be made, and why.
fn skipped(name: &'static str, actions: Vec<&'static str>, resource: String, why: &str) -> Check {
    Check {
        name,
        status: Status::Skip,
        actions,
        resource,
        error_code: None,
        detail: Some(why.to_string()),
        fix_location: None,
        fix_statement: None,
    }
}

fn identity_statement(actions: &[&str], resource: &str) -> Value {
    json!({"Effect": "Allow", "Action": actions, "Resource": resource})
}

fn outcome(
    name: &'static str,
    actions: Vec<&'static str>,
    resource: String,
    result: Result<Option<String>, S3Failure>,
    location: &str,
    statement: Value,
) -> Check {
    match result {
        Ok(detail) => Check {
            name,
            status: Status::Pass,
            actions,
            resource,
            error_code: None,
            detail,
            fix_location: None,
            fix_statement: None,
        },
        Err(failure) => {
            let denied = failure.class == FailureClass::AccessDenied;
            // Where S3 says which kind of policy lacks the grant, name only that one.
            let (location, statement) = if failure.message.contains("no identity-based policy") {
                let mut statement = statement;
                if let Some(fields) = statement.as_object_mut() {
                    fields.remove("Principal");
                }
                (IDENTITY_POLICY, statement)
            } else {
                (location, statement)
            };
            Check {
                name,
                status: Status::Fail,
                actions,
                resource,
                error_code: Some(failure.code.clone()),
                detail: Some(failure.message.clone()),
                fix_location: denied.then(|| location.to_string()),
                fix_statement: denied.then_some(statement),
            }
        }
    }
}

fn info<E>(
    name: &'static str,
    action: &'static str,
    resource: String,
    result: Result<String, aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
) -> Check
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = match result {
        Ok(found) => found,
        Err(err) => format!("not readable ({}); not needed", classify(err).code),
    };
    Check {
        name,
        status: Status::Info,
        actions: vec![action],
        resource,
        error_code: None,
        detail: Some(detail),
        fix_location: None,
        fix_statement: None,
    }
}
