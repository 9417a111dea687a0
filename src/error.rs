//! The one place where S3 SDK errors are classified into [`ReplicationError`]: permanent
//! (access denied, invalid input), transient (throttling, 5xx, timeouts), missing objects,
//! and changed-under-us preconditions.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// A boxed error kept as the `#[source]` of a classified failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How a failed S3 call should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The object (or version) does not exist.
    NotFound,
    /// A grant is missing: retrying will not help until a policy changes.
    AccessDenied,
    /// A conditional request's condition no longer holds (the source changed).
    PreconditionFailed,
    /// Throttling, server errors, timeouts, broken connections: worth retrying.
    Transient,
    /// The bucket is in another region than the request was sent to.
    WrongRegion,
    /// The object is in an archive storage class or tier (S3 Glacier Flexible Retrieval, Deep
    /// Archive, an Intelligent-Tiering archive tier) and must be restored before it can be read
    /// or copied; no retry or grant helps until then.
    Archived,
    /// The bucket does not exist (or not where the call was sent).
    NoSuchBucket,
    /// A multipart upload no longer exists: aborted under the copy (by a lifecycle rule, or by
    /// another copy of the same key).
    UploadAborted,
    /// Anything else S3 refused; retrying the same request will fail the same way.
    Permanent,
}

/// A failed S3 call, classified, with S3's error code and message.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct S3Failure {
    /// The classification that decides skip, retry or fail.
    pub class: FailureClass,
    /// S3's error code (`AccessDenied`, `SlowDown`, ...) or the HTTP status when there is none.
    pub code: String,
    /// S3's message, or a description of the transport failure.
    pub message: String,
    /// The bucket's region as S3 reported it (`x-amz-bucket-region`), when it did.
    pub bucket_region: Option<String>,
    /// The SDK error itself.
    #[source]
    pub source: BoxError,
}

/// Classifies any S3 operation's SDK error.
pub fn classify<E>(err: SdkError<E, HttpResponse>) -> S3Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let bucket_region = err
        .raw_response()
        .and_then(|r| r.headers().get("x-amz-bucket-region"))
        .map(str::to_string);
    let (class, code, message) = match &err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let code = inner
                .code()
                .map(str::to_string)
                .unwrap_or_else(|| status.map_or("Unknown".into(), |s| format!("HTTP {s}")));
            let message = inner.message().unwrap_or("no message").to_string();
            (classify_code(&code, status), code, message)
        }
        SdkError::TimeoutError(_) => (
            FailureClass::Transient,
            "Timeout".to_string(),
            "the request timed out".to_string(),
        ),
        SdkError::DispatchFailure(failure) => (
            FailureClass::Transient,
            "DispatchFailure".to_string(),
            format!("the request could not be sent: {failure:?}"),
        ),
        SdkError::ResponseError(_) => (
            FailureClass::Transient,
            "ResponseError".to_string(),
            "the response could not be read".to_string(),
        ),
        SdkError::ConstructionFailure(_) => (
            FailureClass::Permanent,
            "ConstructionFailure".to_string(),
            "the request could not be built".to_string(),
        ),
        _ => (
            FailureClass::Permanent,
            "Unknown".to_string(),
            err.to_string(),
        ),
    };
    S3Failure {
        class,
        code,
        message,
        bucket_region,
        source: Box::new(err),
    }
}

/// Classifies by S3's error code first; the HTTP status only for codes not known here. A 403 is
/// not always a missing grant (an archived object, a skewed clock), and a 404 is a missing object
/// only for the codes that say so.
fn classify_code(code: &str, status: Option<u16>) -> FailureClass {
    match code {
        "NoSuchKey" | "NotFound" | "NoSuchVersion" => FailureClass::NotFound,
        "NoSuchBucket" => FailureClass::NoSuchBucket,
        "NoSuchUpload" => FailureClass::UploadAborted,
        "ObjectNotInActiveTierError" | "InvalidObjectState" => FailureClass::Archived,
        "AccessDenied"
        | "AllAccessDisabled"
        | "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "InvalidToken"
        | "ExpiredToken"
        | "KMS.AccessDeniedException"
        | "AccessDeniedException" => FailureClass::AccessDenied,
        "PreconditionFailed" => FailureClass::PreconditionFailed,
        "PermanentRedirect"
        | "AuthorizationHeaderMalformed"
        | "IllegalLocationConstraintException" => FailureClass::WrongRegion,
        "SlowDown"
        | "Throttling"
        | "ThrottlingException"
        | "RequestTimeout"
        | "RequestTimeTooSkewed"
        | "InternalError"
        | "ServiceUnavailable"
        | "OperationAborted" => FailureClass::Transient,
        _ => match status {
            Some(301) => FailureClass::WrongRegion,
            // A response without a body (a HEAD) has no code: a 404 there is a missing object.
            Some(404) if code == "HTTP 404" => FailureClass::NotFound,
            Some(403) => FailureClass::AccessDenied,
            Some(412) => FailureClass::PreconditionFailed,
            Some(429) | Some(500..=599) => FailureClass::Transient,
            _ => FailureClass::Permanent,
        },
    }
}

/// Where a missing grant has to be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Reading the source object in account A: the function role's identity policy.
    Source,
    /// Writing into the destination bucket in account B: B's bucket policy (and the role's
    /// identity policy).
    Destination,
}

impl Side {
    /// The variable that names this side's bucket.
    pub fn bucket_variable(self) -> &'static str {
        match self {
            Side::Source => "SOURCE_BUCKET",
            Side::Destination => "DESTINATION_BUCKET",
        }
    }

    /// The variable that sets this side's bucket region.
    pub fn region_variable(self) -> &'static str {
        match self {
            Side::Source => "SOURCE_REGION",
            Side::Destination => "DESTINATION_REGION",
        }
    }
}

/// The bucket a failed call was made on, and where the call was sent.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Which side of the replication the bucket is.
    pub side: Side,
    /// The bucket's name.
    pub bucket: &'a str,
    /// The object key.
    pub key: &'a str,
    /// The region the call was signed for and sent to.
    pub region: &'a str,
}

/// Why an object could not be replicated.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The event names a bucket other than the configured source; nothing is copied.
    #[error(
        "event names bucket {bucket:?}, but this function replicates only {expected:?}: refused"
    )]
    ForeignBucket {
        /// The bucket the event named.
        bucket: String,
        /// The configured source bucket.
        expected: String,
    },
    /// The event (or its key) cannot be used.
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// S3 refused the call for lack of a grant; the hint says which grant and where.
    #[error("access denied on {operation} {resource} ({source}); {hint}")]
    AccessDenied {
        /// The S3 operation refused.
        operation: &'static str,
        /// The bucket or object ARN the operation was on.
        resource: String,
        /// S3's error code.
        code: String,
        /// Which statement is missing, and where it goes.
        hint: String,
        /// The classified S3 error.
        #[source]
        source: Box<S3Failure>,
    },
    /// The bucket is not in the region its calls are sent to.
    #[error("bucket {bucket} is not in region {requested_region} (S3 reports {}): set {variable} to the bucket's region", actual_region.as_deref().unwrap_or("another region"))]
    WrongRegion {
        /// The S3 operation refused.
        operation: &'static str,
        /// The bucket.
        bucket: String,
        /// The region the call went to.
        requested_region: String,
        /// The region S3 named, when it did.
        actual_region: Option<String>,
        /// The variable that sets the region.
        variable: &'static str,
        /// The classified S3 error.
        #[source]
        source: Box<S3Failure>,
    },
    /// The source object is archived: it must be restored before it can be copied. Not retried
    /// (nothing changes until someone restores it); the hint names the restore command.
    #[error(
        "archived: restore it first: {resource} is in an archive storage class or tier ({source}); {hint}"
    )]
    Archived {
        /// The S3 operation refused.
        operation: &'static str,
        /// The object ARN.
        resource: String,
        /// How to restore it; its `ObjectRestore:Completed` event then copies it.
        hint: String,
        /// The classified S3 error.
        #[source]
        source: Box<S3Failure>,
    },
    /// A bucket does not exist where its calls are sent.
    #[error(
        "bucket {bucket} does not exist ({operation}: {source}): check {variable}, and that the bucket was not deleted"
    )]
    NoSuchBucket {
        /// The S3 operation refused.
        operation: &'static str,
        /// The bucket.
        bucket: String,
        /// The variable that names it.
        variable: &'static str,
        /// The classified S3 error.
        #[source]
        source: Box<S3Failure>,
    },
    /// The copy completed, but the replica does not match the source.
    #[error("replica {key} failed verification: {message}")]
    Verification {
        /// The destination key.
        key: String,
        /// What differs.
        message: String,
    },
    /// A failure that may succeed on retry (throttling, 5xx, timeouts, a source that kept changing).
    #[error("transient failure on {operation} {resource}: {source}")]
    Transient {
        /// The S3 operation that failed.
        operation: &'static str,
        /// The bucket or object ARN the operation was on.
        resource: String,
        /// The classified S3 error.
        #[source]
        source: Box<S3Failure>,
    },
    /// A copy in parts that cannot go on across invocations (its continuation could not be
    /// started, or it made no progress in several invocations in a row); its upload was aborted.
    #[error("the copy in parts of {key} stopped: {message}")]
    Chain {
        /// The destination key.
        key: String,
        /// Why.
        message: String,
    },
    /// Any other refusal by S3.
    #[error("S3 refused {operation} {resource}: {source}")]
    S3 {
        /// The S3 operation that failed.
        operation: &'static str,
        /// The bucket or object ARN the operation was on.
        resource: String,
        /// The classified S3 error.
        #[source]
        source: Box<S3Failure>,
    },
}

impl ReplicationError {
    /// Builds the error for a classified S3 failure of `operation` on `bucket`/`key`, naming
    /// the grant to add when access was denied.
    pub fn from_s3(failure: S3Failure, operation: &'static str, target: Target<'_>) -> Self {
        let failure = Box::new(failure);
        let Target {
            side,
            bucket,
            key,
            region,
        } = target;
        let resource = format!("arn:aws:s3:::{bucket}/{key}");
        match failure.class {
            FailureClass::WrongRegion => ReplicationError::WrongRegion {
                operation,
                bucket: bucket.to_string(),
                requested_region: region.to_string(),
                actual_region: failure.bucket_region.clone(),
                variable: side.region_variable(),
                source: failure,
            },
            FailureClass::AccessDenied => ReplicationError::AccessDenied {
                operation,
                hint: access_hint(operation, side, bucket),
                code: failure.code.clone(),
                resource,
                source: failure,
            },
            FailureClass::Transient | FailureClass::PreconditionFailed => {
                ReplicationError::Transient {
                    operation,
                    resource,
                    source: failure,
                }
            }
            FailureClass::Archived => ReplicationError::Archived {
                operation,
                hint: restore_hint(bucket, key),
                resource,
                source: failure,
            },
            FailureClass::NoSuchBucket => ReplicationError::NoSuchBucket {
                operation,
                bucket: bucket.to_string(),
                variable: side.bucket_variable(),
                source: failure,
            },
            FailureClass::UploadAborted => ReplicationError::S3 {
                operation,
                resource: format!(
                    "{resource} (the multipart upload was aborted under the copy: by a lifecycle rule for incomplete uploads, or by another copy of the same key)"
                ),
                source: failure,
            },
            FailureClass::NotFound | FailureClass::Permanent => ReplicationError::S3 {
                operation,
                resource,
                source: failure,
            },
        }
    }

    /// A short machine-readable code for logs and summaries.
    pub fn code(&self) -> &str {
        match self {
            ReplicationError::ForeignBucket { .. } => "ForeignBucket",
            ReplicationError::WrongRegion { .. } => "WrongRegion",
            ReplicationError::Verification { .. } => "VerificationFailed",
            ReplicationError::InvalidEvent(_) => "InvalidEvent",
            ReplicationError::AccessDenied { code, .. } => code,
            ReplicationError::Archived { .. } => "Archived",
            ReplicationError::NoSuchBucket { .. } => "NoSuchBucket",
            ReplicationError::Chain { .. } => "ChainStopped",
            ReplicationError::Transient { source, .. } | ReplicationError::S3 { source, .. } => {
                &source.code
            }
        }
    }

    /// Whether a retry of the same event may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, ReplicationError::Transient { .. })
    }
}

/// The command that restores an archived object (for three days, at the Standard tier; an
/// Intelligent-Tiering archive tier takes an empty restore request instead).
fn restore_hint(bucket: &str, key: &str) -> String {
    format!(
        "restore it with `aws s3api restore-object --bucket {bucket} --key {key:?} --restore-request 'Days=3,GlacierJobParameters={{Tier=Standard}}'` (Intelligent-Tiering archive tiers: `--restore-request '{{}}'`); S3's ObjectRestore:Completed event then copies it"
    )
}

fn access_hint(operation: &str, side: Side, bucket: &str) -> String {
    match (side, operation) {
        (Side::Source, "ListObjectsV2") => format!(
            "the function's execution role (account A) needs s3:ListBucket on bucket {bucket} in its identity policy"
        ),
        (Side::Source, _) => format!(
            "the function's execution role (account A) needs s3:GetObject, s3:GetObjectTagging and s3:ListBucket on bucket {bucket} in its identity policy, and on a versioned bucket s3:GetObjectVersion and s3:GetObjectVersionTagging (copies in parts read one version)"
        ),
        (Side::Destination, "ListObjectsV2") => format!(
            "bucket {bucket}'s bucket policy (account B) must allow s3:ListBucket to the function's execution role, and the role's identity policy must allow it too"
        ),
        (Side::Destination, "HeadObject") => format!(
            "bucket {bucket}'s bucket policy (account B) must allow s3:GetObject to the function's execution role (it reads replicas' heads to verify them), and the role's identity policy must allow it too"
        ),
        (Side::Destination, "ListParts") => format!(
            "bucket {bucket}'s bucket policy (account B) must allow s3:ListMultipartUploadParts to the function's execution role (a copy in parts continued in a new invocation reads the parts already copied), and the role's identity policy must allow it too"
        ),
        (Side::Destination, "DeleteObject") => format!(
            "bucket {bucket}'s bucket policy (account B) must allow s3:DeleteObject to the function's execution role, and the role's identity policy must allow it too"
        ),
        (Side::Destination, _) => format!(
            "bucket {bucket}'s bucket policy (account B) must allow s3:PutObject, s3:PutObjectAcl and s3:PutObjectTagging to the function's execution role, and the role's identity policy must allow them too (a copy also needs s3:GetObject and s3:GetObjectTagging on the source)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_codes_before_statuses() {
        assert_eq!(
            classify_code("NoSuchKey", Some(404)),
            FailureClass::NotFound
        );
        assert_eq!(
            classify_code("NoSuchBucket", Some(404)),
            FailureClass::NoSuchBucket
        );
        assert_eq!(
            classify_code("NoSuchUpload", Some(404)),
            FailureClass::UploadAborted
        );
        // A 404 that names no missing object is no reason to skip.
        assert_eq!(
            classify_code("NoSuchLifecycleConfiguration", Some(404)),
            FailureClass::Permanent
        );
        // Archived objects answer 403, and no grant helps.
        assert_eq!(
            classify_code("ObjectNotInActiveTierError", Some(403)),
            FailureClass::Archived
        );
        assert_eq!(
            classify_code("InvalidObjectState", Some(403)),
            FailureClass::Archived
        );
        assert_eq!(
            classify_code("AccessDenied", Some(403)),
            FailureClass::AccessDenied
        );
        assert_eq!(
            classify_code("SlowDown", Some(503)),
            FailureClass::Transient
        );
        assert_eq!(
            classify_code("InternalError", Some(500)),
            FailureClass::Transient
        );
        assert_eq!(
            classify_code("PreconditionFailed", Some(412)),
            FailureClass::PreconditionFailed
        );
        assert_eq!(
            classify_code("InvalidRequest", Some(400)),
            FailureClass::Permanent
        );
    }

    #[test]
    fn falls_back_to_status_when_code_is_unknown() {
        // HEAD responses carry no body, so only the status tells.
        assert_eq!(classify_code("HTTP 404", Some(404)), FailureClass::NotFound);
        assert_eq!(
            classify_code("HTTP 403", Some(403)),
            FailureClass::AccessDenied
        );
        assert_eq!(
            classify_code("HTTP 503", Some(503)),
            FailureClass::Transient
        );
        assert_eq!(classify_code("Weird", Some(429)), FailureClass::Transient);
        assert_eq!(classify_code("Weird", Some(400)), FailureClass::Permanent);
        assert_eq!(classify_code("Weird", None), FailureClass::Permanent);
    }

    #[test]
    fn destination_hint_names_bucket_policy_and_actions() {
        let hint = access_hint("CopyObject", Side::Destination, "dst-b");
        assert!(hint.contains("bucket dst-b's bucket policy (account B)"));
        assert!(hint.contains("s3:PutObject"));
        let hint = access_hint("HeadObject", Side::Source, "src-a");
        assert!(hint.contains("identity policy") && hint.contains("src-a"));
    }
}
