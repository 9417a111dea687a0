//! The multipart uploads the function left open in B: listed, and aborted on request.
//!
//! A copy in parts aborts its upload on any failure, so an upload outlives its copy only when the
//! function was stopped in the middle (its deadline, a crash) or the abort itself failed. Its
//! parts are billed until it is aborted. `ListMultipartUploads` gives each upload's key, id,
//! start time and initiator, and nothing the function wrote: the function's uploads are the ones
//! its role started (S3 names a role's session `arn:PARTITION:sts::ACCOUNT:assumed-role/NAME/…`),
//! under `DESTINATION_PREFIX`, and only those older than asked are touched, so that a copy in
//! progress keeps its upload.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::types::MultipartUpload;
use serde::Serialize;

use crate::copy::Replicator;
use crate::copy::chain::{open_uploads, started_by};
use crate::error::{S3Failure, classify};
use crate::keys::decode_listed_key;

/// How old an upload must be to be reported, unless asked otherwise: longer than any copy runs.
pub const DEFAULT_OLDER_THAN_HOURS: f64 = 24.0;

/// What to look for: uploads started at least `older_than` ago, aborted if `abort`.
#[derive(Debug, Clone, Copy)]
pub struct UploadsRequest {
    pub older_than: Duration,
    pub abort: bool,
}

/// The invocation payload's `uploads` object.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadsPayload {
    #[serde(default)]
    older_than_hours: Option<f64>,
    #[serde(default)]
    abort: bool,
}

impl UploadsRequest {
    /// Reads `{"older_than_hours": 24, "abort": false}` (both optional).
    pub fn from_value(value: &serde_json::Value) -> Result<Self, String> {
        let payload: UploadsPayload = serde_json::from_value(value.clone())
            .map_err(|e| format!("invalid uploads request: {e}"))?;
        let hours = payload.older_than_hours.unwrap_or(DEFAULT_OLDER_THAN_HOURS);
        Ok(UploadsRequest {
            older_than: older_than(hours)?,
            abort: payload.abort,
        })
    }
}

/// `hours` as a duration: a finite number, not negative.
pub fn older_than(hours: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(hours * 3600.0)
        .map_err(|_| format!("older_than_hours must be a number of hours, 0 or more: {hours}"))
}

/// One upload of the function's, older than asked.
#[derive(Debug, Clone, Serialize)]
pub struct OpenUpload {
    pub key: String,
    pub upload_id: String,
    /// When it was started (RFC 3339).
    pub initiated: String,
    pub initiator: String,
    /// Whether it was aborted (or was gone already); absent when no abort was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aborted: Option<bool>,
    /// Why the abort failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What was found and done.
#[derive(Debug, Clone, Serialize)]
pub struct UploadsReport {
    pub bucket: String,
    pub prefix: String,
    pub role_arn: String,
    pub older_than_hours: f64,
    /// Every upload open under the prefix, whoever started it and whenever.
    pub open: usize,
    /// The function's uploads older than asked.
    pub stale: Vec<OpenUpload>,
    pub aborted: usize,
    pub failed: usize,
}

impl UploadsReport {
    /// What went wrong when some uploads could not be aborted: how many, and the first error.
    pub fn abort_failure(&self) -> Option<String> {
        (self.failed > 0).then(|| {
            let first = self.stale.iter().find_map(|u| u.error.as_deref());
            format!(
                "{} of {} uploads could not be aborted; first: {}",
                self.failed,
                self.stale.len(),
                first.unwrap_or_default()
            )
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadsError {
    #[error(
        "FUNCTION_ROLE_ARN is not set: the function's uploads are told apart from others by the role that started them"
    )]
    NoRole,
    #[error("listing the multipart uploads of {bucket} failed: {failure}")]
    Listing { bucket: String, failure: S3Failure },
}

/// Lists the function's uploads in B older than asked, and aborts them if asked.
pub async fn stale_uploads(
    replicator: &Replicator,
    request: UploadsRequest,
) -> Result<UploadsReport, UploadsError> {
    let config = replicator.config();
    let role_arn = config
        .function_role_arn
        .clone()
        .ok_or(UploadsError::NoRole)?;
    let listed = list_uploads(replicator).await?;
    let cutoff = SystemTime::now()
        .checked_sub(request.older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = UploadsReport {
        bucket: config.destination_bucket.clone(),
        prefix: config.destination_prefix.clone(),
        role_arn: role_arn.clone(),
        older_than_hours: request.older_than.as_secs_f64() / 3600.0,
        open: listed.len(),
        stale: Vec::new(),
        aborted: 0,
        failed: 0,
    };
    for upload in listed {
        let initiator = upload.initiator().and_then(|i| i.id()).unwrap_or_default();
        let initiated = upload
            .initiated()
            .and_then(|t| SystemTime::try_from(*t).ok());
        if !started_by(&role_arn, initiator) || initiated.is_none_or(|at| at > cutoff) {
            continue;
        }
        let mut found = OpenUpload {
            key: decode_listed_key(upload.key().unwrap_or_default()),
            upload_id: upload.upload_id().unwrap_or_default().to_string(),
            initiated: upload
                .initiated()
                .map(|t| t.to_string())
                .unwrap_or_default(),
            initiator: initiator.to_string(),
            aborted: None,
            error: None,
        };
        if request.abort {
            match abort(replicator, &found).await {
                Ok(()) => report.aborted += 1,
                Err(failure) => {
                    report.failed += 1;
                    found.error = Some(failure.to_string());
                }
            }
            found.aborted = Some(found.error.is_none());
        }
        report.stale.push(found);
    }
    tracing::info!(
        bucket = %report.bucket,
        open = report.open,
        stale = report.stale.len(),
        aborted = report.aborted,
        failed = report.failed,
        "multipart uploads in the destination"
    );
    Ok(report)
}

/// Every upload open in B under the destination prefix, all pages.
async fn list_uploads(replicator: &Replicator) -> Result<Vec<MultipartUpload>, UploadsError> {
    let config = replicator.config();
    let client = replicator.clients().destination();
    open_uploads(client, config, &config.destination_prefix)
        .await
        .map_err(|failure| UploadsError::Listing {
            bucket: config.destination_bucket.clone(),
            failure,
        })
}

/// Aborts one upload; one already gone counts as aborted.
async fn abort(replicator: &Replicator, upload: &OpenUpload) -> Result<(), S3Failure> {
    let config = replicator.config();
    let aborted = replicator
        .clients()
        .destination()
        .abort_multipart_upload()
        .bucket(&config.destination_bucket)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .key(&upload.key)
        .upload_id(&upload.upload_id)
        .send()
        .await;
    match aborted.map_err(classify) {
        Err(failure) if failure.code != "NoSuchUpload" => Err(failure),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_request_and_refuses_what_it_cannot_run() {
        let request = UploadsRequest::from_value(&serde_json::json!({})).unwrap();
        assert_eq!(request.older_than, Duration::from_secs(24 * 3600));
        assert!(!request.abort);
        let request = UploadsRequest::from_value(
            &serde_json::json!({"older_than_hours": 0.5, "abort": true}),
        )
        .unwrap();
        assert_eq!(request.older_than, Duration::from_secs(1800));
        assert!(request.abort);
        for bad in [
            serde_json::json!({"older_than_hours": -1}),
            serde_json::json!({"older_than_hours": "24"}),
            serde_json::json!({"abort": "yes"}),
            serde_json::json!({"older_than": 24}),
        ] {
            assert!(UploadsRequest::from_value(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tells_the_roles_sessions_from_other_initiators() {
        let role = "arn:aws:iam::111111111111:role/service-role/s3-replicator";
        assert!(started_by(
            role,
            "arn:aws:sts::111111111111:assumed-role/s3-replicator/s3-replicator-fn"
        ));
        assert!(started_by(role, role));
        for other in [
            "arn:aws:sts::111111111111:assumed-role/s3-replicator-other/s",
            "arn:aws:sts::222222222222:assumed-role/s3-replicator/s",
            "arn:aws-cn:sts::111111111111:assumed-role/s3-replicator/s",
            "arn:aws:iam::111111111111:user/admin",
            "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a",
            "",
        ] {
            assert!(!started_by(role, other), "{other}");
        }
        assert!(!started_by("not-an-arn", "arn:aws:sts::1:assumed-role/x/y"));
    }
}
