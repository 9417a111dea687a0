//! The doctor's checks, one function each, run in the order of [`CHECKS`]: a later check uses
//! what an earlier one found (a key to read, an upload to abort).

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{EncodingType, ServerSideEncryption};

use super::cleanup::{destination_lifecycle, list_destination_uploads};
use super::probe::{Found, Probe};
use super::report::{
    Check, IDENTITY_POLICY, first_key, identity_statement, info, outcome, skipped,
};
use super::versions::{
    delete_destination_tags, delete_probe_unsafe, destination_versioning, source_versions,
};
use crate::error::classify;

/// One named check.
#[derive(Debug, Clone, Copy)]
pub(super) enum CheckKind {
    ListSource,
    ReadSourceObject,
    WriteDestination,
    DeleteDestinationTags,
    DestinationVersioning,
    DeleteInDestination,
    ListDestination,
    ReadDestinationHead,
    ListDestinationUploads,
    DestinationLifecycle,
    BucketEncryption,
    InvokeSelf,
    SourceVersions,
    DestinationOwnership,
}

/// Every check, in the order they run.
pub(super) const CHECKS: [CheckKind; 14] = [
    CheckKind::ListSource,
    CheckKind::ReadSourceObject,
    CheckKind::WriteDestination,
    CheckKind::DeleteDestinationTags,
    CheckKind::DestinationVersioning,
    CheckKind::DeleteInDestination,
    CheckKind::ListDestination,
    CheckKind::ReadDestinationHead,
    CheckKind::ListDestinationUploads,
    CheckKind::DestinationLifecycle,
    CheckKind::BucketEncryption,
    CheckKind::InvokeSelf,
    CheckKind::SourceVersions,
    CheckKind::DestinationOwnership,
];

impl CheckKind {
    /// Runs the check; some add two findings (a write and its abort), some none (a delete check
    /// when deletes are not replicated).
    pub(super) async fn run(self, probe: &Probe<'_>, found: &mut Found) -> Vec<Check> {
        match self {
            CheckKind::ListSource => vec![list_source(probe, found).await],
            CheckKind::ReadSourceObject => vec![read_source_object(probe, found).await],
            CheckKind::WriteDestination => write_destination(probe).await,
            CheckKind::DeleteDestinationTags => vec![delete_destination_tags(probe).await],
            CheckKind::DestinationVersioning => vec![destination_versioning(probe, found).await],
            CheckKind::DeleteInDestination => delete_in_destination(probe, found).await,
            CheckKind::ListDestination => vec![list_destination(probe, found).await],
            CheckKind::ReadDestinationHead => vec![read_destination_head(probe, found).await],
            CheckKind::ListDestinationUploads => vec![list_destination_uploads(probe).await],
            CheckKind::DestinationLifecycle => vec![destination_lifecycle(probe).await],
            CheckKind::BucketEncryption => bucket_encryption(probe).await,
            CheckKind::InvokeSelf => vec![invoke_self(probe).await],
            CheckKind::SourceVersions => source_versions(probe, found).await,
            CheckKind::DestinationOwnership => vec![destination_ownership(probe).await],
        }
    }
}

/// Listing the source.
async fn list_source(probe: &Probe<'_>, found: &mut Found) -> Check {
    let listing = probe
        .source
        .list_objects_v2()
        .bucket(&probe.config.source_bucket)
        .prefix(&probe.source_prefix)
        .max_keys(1)
        .encoding_type(EncodingType::Url)
        .send()
        .await;
    found.sample = first_key(&listing);
    outcome(
        "list source",
        vec!["s3:ListBucket"],
        probe.source_bucket_arn.clone(),
        listing.map(|_| None).map_err(classify),
        IDENTITY_POLICY,
        identity_statement(&["s3:ListBucket"], &probe.source_bucket_arn),
    )
}

/// Reading an object of the source: its head and its tags.
async fn read_source_object(probe: &Probe<'_>, found: &Found) -> Check {
    let config = probe.config;
    let objects_arn = format!("{}/{}*", probe.source_bucket_arn, probe.source_prefix);
    let actions = vec!["s3:GetObject", "s3:GetObjectTagging"];
    let Some(key) = &found.sample else {
        return skipped(
            "read source object",
            actions,
            objects_arn,
            "no object under the source prefix to read (or the listing failed)",
        );
    };
    let head = probe
        .source
        .head_object()
        .bucket(&config.source_bucket)
        .key(key)
        .send()
        .await
        .map_err(classify);
    let read = match head {
        Ok(_) => probe
            .source
            .get_object_tagging()
            .bucket(&config.source_bucket)
            .key(key)
            .send()
            .await
            .map(|_| Some(format!("read the head and tags of {key}")))
            .map_err(classify),
        Err(failure) => Err(failure),
    };
    outcome(
        "read source object",
        actions,
        format!("{}/{key}", probe.source_bucket_arn),
        read,
        IDENTITY_POLICY,
        identity_statement(&["s3:GetObject", "s3:GetObjectTagging"], &objects_arn),
    )
}

/// Writing into the destination, with the configured ACL, tags and KMS key: a multipart
/// upload created and aborted leaves nothing behind.
async fn write_destination(probe: &Probe<'_>) -> Vec<Check> {
    let config = probe.config;
    let mut create = probe
        .destination
        .create_multipart_upload()
        .bucket(&config.destination_bucket)
        .key(&probe.probe_key)
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
    let mut checks = vec![outcome(
        "write destination",
        write_actions,
        probe.probe_arn(),
        created.map(|_| Some("created a multipart upload (aborted next)".into())),
        &probe.bucket_policy_location,
        probe.bucket_statement(0),
    )];
    if let Some(upload_id) = upload_id {
        checks.push(list_upload_parts(probe, &upload_id).await);
        checks.push(abort_destination_upload(probe, &upload_id).await);
    }
    checks
}

/// Listing the parts of the upload the write check created: how a copy in parts continued in a
/// new invocation finds the parts already copied.
async fn list_upload_parts(probe: &Probe<'_>, upload_id: &str) -> Check {
    let config = probe.config;
    let listed = probe
        .destination
        .list_parts()
        .bucket(&config.destination_bucket)
        .key(&probe.probe_key)
        .upload_id(upload_id)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .send()
        .await
        .map(|_| None)
        .map_err(classify);
    outcome(
        "list destination upload parts",
        vec!["s3:ListMultipartUploadParts"],
        probe.probe_arn(),
        listed,
        &probe.bucket_policy_location,
        probe.bucket_statement(0),
    )
}

/// Aborting the upload the write check created.
async fn abort_destination_upload(probe: &Probe<'_>, upload_id: &str) -> Check {
    let config = probe.config;
    let aborted = probe
        .destination
        .abort_multipart_upload()
        .bucket(&config.destination_bucket)
        .key(&probe.probe_key)
        .upload_id(upload_id)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .send()
        .await
        .map(|_| None)
        .map_err(classify);
    outcome(
        "abort destination upload",
        vec!["s3:AbortMultipartUpload"],
        probe.probe_arn(),
        aborted,
        &probe.bucket_policy_location,
        probe.bucket_statement(0),
    )
}

/// Deleting in the destination, when deletes are replicated: a key that does not exist, where
/// that leaves nothing behind (B not versioned).
async fn delete_in_destination(probe: &Probe<'_>, found: &Found) -> Vec<Check> {
    let config = probe.config;
    if !config.replicate_deletes {
        return Vec::new();
    }
    if let Some(why) = delete_probe_unsafe(found) {
        return vec![skipped(
            "delete in destination",
            vec!["s3:DeleteObject"],
            probe.probe_arn(),
            why,
        )];
    }
    let deleted = probe
        .destination
        .delete_object()
        .bucket(&config.destination_bucket)
        .key(&probe.probe_key)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .send()
        .await
        .map(|_| Some("deleted a key that does not exist".into()))
        .map_err(classify);
    vec![outcome(
        "delete in destination",
        vec!["s3:DeleteObject"],
        probe.probe_arn(),
        deleted,
        &probe.bucket_policy_location,
        probe.bucket_statement(0),
    )]
}

/// Listing the destination.
async fn list_destination(probe: &Probe<'_>, found: &mut Found) -> Check {
    let config = probe.config;
    let listed = probe
        .destination
        .list_objects_v2()
        .bucket(&config.destination_bucket)
        .prefix(&config.destination_prefix)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .max_keys(1)
        .encoding_type(EncodingType::Url)
        .send()
        .await;
    found.replica = first_key(&listed);
    outcome(
        "list destination",
        vec!["s3:ListBucket"],
        probe.destination_bucket_arn.clone(),
        listed.map(|_| None).map_err(classify),
        &probe.bucket_policy_location,
        probe.bucket_statement(1),
    )
}

/// Reading a replica's head (how replicas are verified): one the listing found.
async fn read_destination_head(probe: &Probe<'_>, found: &Found) -> Check {
    let config = probe.config;
    let Some(key) = &found.replica else {
        return skipped(
            "read destination head",
            vec!["s3:GetObject"],
            format!(
                "{}/{}*",
                probe.destination_bucket_arn, config.destination_prefix
            ),
            "no replica under the destination prefix yet (or the listing failed)",
        );
    };
    let head = probe
        .destination
        .head_object()
        .bucket(&config.destination_bucket)
        .key(key)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .send()
        .await
        .map(|_| Some(format!("read the head of {key}")))
        .map_err(classify);
    outcome(
        "read destination head",
        vec!["s3:GetObject"],
        format!("{}/{key}", probe.destination_bucket_arn),
        head,
        &probe.bucket_policy_location,
        probe.bucket_statement(0),
    )
}

/// Reading both buckets' default encryption, as backfills do to know whether ETags are MD5s
/// (without it, a backfill copies KMS-encrypted objects again on every run).
async fn bucket_encryption(probe: &Probe<'_>) -> Vec<Check> {
    let config = probe.config;
    let read = |client: &Client, bucket: &str, owner: Option<String>| {
        let request = client
            .get_bucket_encryption()
            .bucket(bucket)
            .set_expected_bucket_owner(owner);
        async move {
            match request.send().await {
                Ok(output) => {
                    let algorithms: Vec<String> = output
                        .server_side_encryption_configuration()
                        .map(|c| c.rules())
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|r| r.apply_server_side_encryption_by_default())
                        .map(|d| d.sse_algorithm().to_string())
                        .collect();
                    Ok(Some(format!(
                        "default encryption: {}",
                        algorithms.join(", ")
                    )))
                }
                Err(err) => {
                    let failure = classify(err);
                    if failure.code == "ServerSideEncryptionConfigurationNotFoundError" {
                        Ok(Some("no default encryption".into()))
                    } else {
                        Err(failure)
                    }
                }
            }
        }
    };
    let source = read(probe.source, &config.source_bucket, None).await;
    let destination = read(
        probe.destination,
        &config.destination_bucket,
        config.destination_account_id.clone(),
    )
    .await;
    vec![
        outcome(
            "read source encryption",
            vec!["s3:GetEncryptionConfiguration"],
            probe.source_bucket_arn.clone(),
            source,
            IDENTITY_POLICY,
            identity_statement(&["s3:GetEncryptionConfiguration"], &probe.source_bucket_arn),
        ),
        outcome(
            "read destination encryption",
            vec!["s3:GetEncryptionConfiguration"],
            probe.destination_bucket_arn.clone(),
            destination,
            &probe.bucket_policy_location,
            probe.bucket_statement(2),
        ),
    ]
}

/// Invoking the function itself, as continuing and fanned-out backfills do: a dry run, which
/// Lambda authorizes and then does not run.
async fn invoke_self(probe: &Probe<'_>) -> Check {
    let (Some(lambda), Some(arn)) = (probe.invoker.client, probe.invoker.function_arn) else {
        return skipped(
            "invoke self",
            vec!["lambda:InvokeFunction"],
            "the function".into(),
            "not running as the function (or no --function-arn): only backfills that continue \
             or fan out need it",
        );
    };
    let invoked = lambda
        .invoke()
        .function_name(arn)
        .invocation_type(aws_sdk_lambda::types::InvocationType::DryRun)
        .send()
        .await
        .map(|_| Some("a dry-run invocation was allowed".into()))
        .map_err(classify);
    outcome(
        "invoke self",
        vec!["lambda:InvokeFunction"],
        arn.to_string(),
        invoked,
        IDENTITY_POLICY,
        identity_statement(&["lambda:InvokeFunction"], arn),
    )
}

/// The destination's object ownership, where readable (informational only).
async fn destination_ownership(probe: &Probe<'_>) -> Check {
    let config = probe.config;
    let ownership = probe
        .destination
        .get_bucket_ownership_controls()
        .bucket(&config.destination_bucket)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .send()
        .await;
    info(
        "destination object ownership",
        "s3:GetBucketOwnershipControls",
        probe.destination_bucket_arn.clone(),
        ownership.map(|o| {
            o.ownership_controls()
                .and_then(|c| c.rules().first())
                .map(|rule| format!("{}", rule.object_ownership()))
                .unwrap_or_else(|| "no rule".into())
        }),
    )
}
