//! The doctor's checks for versioned buckets and tag changes: whether A and B are versioned,
//! whether the role can read one version of A's objects (copies in parts do), and removing a
//! replica's tags. Nothing here writes to a versioned bucket.

use aws_sdk_s3::Client;

use super::probe::{Found, Probe};
use super::report::{Check, IDENTITY_POLICY, identity_statement, outcome, skipped};
use crate::error::{FailureClass, S3Failure, classify};

/// Whether `bucket` has versions (versioning enabled, or suspended after being enabled).
async fn versioned(
    client: &Client,
    bucket: &str,
    owner: Option<String>,
) -> Result<bool, S3Failure> {
    let versioning = client
        .get_bucket_versioning()
        .bucket(bucket)
        .set_expected_bucket_owner(owner)
        .send()
        .await
        .map_err(classify)?;
    Ok(versioning.status().is_some())
}

fn describe(versioned: bool) -> String {
    if versioned {
        "versioned".into()
    } else {
        "not versioned".into()
    }
}

/// Reading A's versioning and, when A is versioned, one version of an object the listing found:
/// its head and tags by version id, as copies in parts read them.
pub(super) async fn source_versions(probe: &Probe<'_>, found: &Found) -> Vec<Check> {
    let config = probe.config;
    let bucket_arn = &probe.source_bucket_arn;
    let read = versioned(probe.source, &config.source_bucket, None).await;
    let is_versioned = read.as_ref().ok().copied();
    let mut checks = vec![outcome(
        "read source versioning",
        vec!["s3:GetBucketVersioning"],
        bucket_arn.clone(),
        read.map(|v| Some(describe(v))),
        IDENTITY_POLICY,
        identity_statement(&["s3:GetBucketVersioning"], bucket_arn),
    )];
    if is_versioned != Some(true) {
        return checks;
    }
    let actions = vec!["s3:GetObjectVersion", "s3:GetObjectVersionTagging"];
    let objects_arn = format!("{bucket_arn}/{}*", probe.source_prefix);
    let Some(key) = &found.sample else {
        checks.push(skipped(
            "read source versions",
            actions,
            objects_arn,
            "no object under the source prefix to read (or the listing failed)",
        ));
        return checks;
    };
    let version = read_version(probe, key).await;
    checks.push(outcome(
        "read source versions",
        actions.clone(),
        format!("{bucket_arn}/{key}"),
        version,
        IDENTITY_POLICY,
        identity_statement(&actions, &objects_arn),
    ));
    checks
}

/// The head and tags of the current version of `key`, read by its version id.
async fn read_version(probe: &Probe<'_>, key: &str) -> Result<Option<String>, S3Failure> {
    let bucket = &probe.config.source_bucket;
    let head = probe
        .source
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(classify)?;
    let Some(version) = head.version_id().filter(|v| *v != "null") else {
        return Ok(Some(format!("{key} has no version id yet")));
    };
    probe
        .source
        .head_object()
        .bucket(bucket)
        .key(key)
        .version_id(version)
        .send()
        .await
        .map_err(classify)?;
    probe
        .source
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .version_id(version)
        .send()
        .await
        .map_err(classify)?;
    Ok(Some(format!(
        "read version {version} of {key} and its tags"
    )))
}

/// Reading B's versioning: the delete probe runs only where it leaves nothing behind.
pub(super) async fn destination_versioning(probe: &Probe<'_>, found: &mut Found) -> Check {
    let config = probe.config;
    let read = versioned(
        probe.destination,
        &config.destination_bucket,
        config.destination_account_id.clone(),
    )
    .await;
    found.destination_versioned = read.as_ref().ok().copied();
    outcome(
        "read destination versioning",
        vec!["s3:GetBucketVersioning"],
        probe.destination_bucket_arn.clone(),
        read.map(|v| Some(describe(v))),
        &probe.bucket_policy_location,
        probe.bucket_statement(2),
    )
}

/// Why the delete probe does not run on B, if it must not: on a versioned B it would leave a
/// delete marker, and removing that needs `s3:DeleteObjectVersion`, a grant that could erase B's
/// history and that the function is not given.
pub(super) fn delete_probe_unsafe(found: &Found) -> Option<&'static str> {
    match found.destination_versioned {
        Some(false) => None,
        Some(true) => Some(
            "the destination is versioned: a delete of a missing key would leave a delete marker, \
             and removing it needs s3:DeleteObjectVersion, which the function is not granted",
        ),
        None => Some(
            "the destination's versioning could not be read: a delete of a missing key could \
             leave a delete marker",
        ),
    }
}

/// Removing a replica's tags (a tag change that leaves the source without tags): on a key that
/// does not exist, which S3 answers 404 when the grant is there.
pub(super) async fn delete_destination_tags(probe: &Probe<'_>) -> Check {
    let config = probe.config;
    let deleted = probe
        .destination
        .delete_object_tagging()
        .bucket(&config.destination_bucket)
        .key(&probe.probe_key)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .send()
        .await
        .map_err(classify);
    let result = match deleted {
        Ok(_) => Ok(Some("removed the tags of a key that does not exist".into())),
        Err(failure) if failure.class == FailureClass::NotFound => {
            Ok(Some("allowed (the probe key does not exist)".into()))
        }
        Err(failure) => Err(failure),
    };
    outcome(
        "delete destination tags",
        vec!["s3:DeleteObjectTagging"],
        probe.probe_arn(),
        result,
        &probe.bucket_policy_location,
        probe.bucket_statement(0),
    )
}
