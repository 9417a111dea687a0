//! The function's configuration: read once from the environment at init and validated there,
//! so a bad value stops the function before it touches any object.

use aws_sdk_s3::types::{ObjectCannedAcl, StorageClass};

/// A configuration value that cannot be used; the message names the variable and what it allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong with it and what is allowed.
    pub problem: String,
}

impl ConfigError {
    fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        Self {
            variable,
            problem: problem.into(),
        }
    }
}

/// Everything the replicator needs to know about where objects come from and go to.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The bucket in account A; events naming any other bucket are refused, so a crafted event
    /// cannot make the function copy from a bucket its role happens to be able to read.
    pub source_bucket: String,
    /// The bucket in account B that receives the replicas.
    pub destination_bucket: String,
    /// Prepended to every key in the destination bucket.
    pub destination_prefix: String,
    /// When set, only keys under it are replicated; others are skipped with that reason.
    pub source_prefix: Option<String>,
    /// Canned ACL sent with each copy. `bucket-owner-full-control` makes B own the replica on
    /// buckets that still honour ACLs and is accepted where ACLs are disabled; `None` sends none.
    pub destination_acl: Option<ObjectCannedAcl>,
    /// Storage class of the replicas; `None` keeps S3's default (STANDARD).
    pub destination_storage_class: Option<StorageClass>,
    /// When set, replicas are encrypted with SSE-KMS under this key of account B.
    pub destination_kms_key_id: Option<String>,
    /// Whether ObjectRemoved events delete the mapped key in the destination.
    pub replicate_deletes: bool,
    /// Path-style addressing, for local S3 emulators.
    pub force_path_style: bool,
    /// `SOURCE_REGION`: where the source bucket lives, when it is not the function's region.
    pub source_region: Option<String>,
    /// `DESTINATION_REGION`: where the destination bucket lives, when it is not the function's
    /// region. Copies are sent there; calls on the source go to the source's region.
    pub destination_region: Option<String>,
    /// `BACKFILL_CONCURRENCY`: the most copies a backfill runs at once; it finds how many pay
    /// below that.
    pub backfill_concurrency: usize,
    /// `MULTIPART_THRESHOLD`: objects of at least this many bytes are copied in parts of this
    /// size (larger where 10,000 parts would not cover the object); smaller ones in one request.
    pub multipart_threshold: u64,
    /// `PART_CONCURRENCY`: how many parts of one object are copied at once.
    pub part_concurrency: usize,
    /// `PARTS_PER_INVOCATION`: the most parts one invocation copies of one object before it hands
    /// the rest to a continuation invocation; unset, only the deadline stops it.
    pub parts_per_invocation: Option<usize>,
    /// `DESTINATION_ACCOUNT_ID`: account B. Every call on the destination bucket states it as the
    /// expected bucket owner, so a same-named bucket owned by anyone else is never written.
    pub destination_account_id: Option<String>,
    /// `FUNCTION_ROLE_ARN`: the function's execution role, named in the grants the doctor and
    /// error messages ask for.
    pub function_role_arn: Option<String>,
    /// `S3_ATTEMPT_TIMEOUT`: the longest one attempt of an S3 call may take (connection, request
    /// and response), so that a stalled request is abandoned and retried instead of eating the
    /// invocation.
    pub attempt_timeout: std::time::Duration,
    /// `S3_MAX_ATTEMPTS`: attempts per S3 call (adaptive retry mode: exponential backoff with
    /// jitter, and a client-side rate limit that slows down when S3 answers SlowDown).
    pub max_attempts: u32,
    /// `S3_RETRY_MODE`: `adaptive` (default: backoff with jitter, and a client-side rate limit
    /// that slows down when S3 answers SlowDown) or `standard` (backoff with jitter only).
    pub adaptive_retry: bool,
}

/// The default `S3_ATTEMPT_TIMEOUT`: long enough for a `CopyObject` or `UploadPartCopy` of
/// 256 MiB, short enough to retry twice within the template's 120-second timeout.
pub const DEFAULT_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The default `S3_MAX_ATTEMPTS`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// The default `MULTIPART_THRESHOLD`: 256 MiB.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 256 * crate::limits::MIB;

/// The default `PART_CONCURRENCY`.
pub const DEFAULT_PART_CONCURRENCY: usize = 16;

/// The most connections a backfill's copies hold at once unless `BACKFILL_CONCURRENCY` says
/// otherwise: Lambda's 1,024 file descriptors, less 64 for the function's other connections and
/// files. Under S3's latency more in flight still pays past 512 (docs/benchmarks.md), and the
/// backfill finds its level below this by itself. A function with less than 240 MB of memory
/// gets fewer: [`CONNECTIONS_PER_MB`] per MB.
pub const DEFAULT_BACKFILL_CONCURRENCY: usize = 960;

/// A backfill's default ceiling per MB of the function's memory: 512 at 128 MB. Copies in flight
/// cost memory (a backfill's peak RSS, measured over plain HTTP: 60 MB at 512, 93 MB at 960;
/// TLS adds to it).
const CONNECTIONS_PER_MB: usize = 4;

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, which returns a variable's value if it is set.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let source_bucket = bucket_name("SOURCE_BUCKET", get("SOURCE_BUCKET"))?;
        let destination_bucket = bucket_name("DESTINATION_BUCKET", get("DESTINATION_BUCKET"))?;
        if source_bucket == destination_bucket {
            return Err(ConfigError::new(
                "DESTINATION_BUCKET",
                format!(
                    "must differ from SOURCE_BUCKET ({source_bucket}): replicas written into the source bucket would trigger the function again"
                ),
            ));
        }

        let destination_acl = acl(get("DESTINATION_ACL"))?;
        let destination_storage_class = get("DESTINATION_STORAGE_CLASS")
            .map(|value| {
                known_value(
                    "DESTINATION_STORAGE_CLASS",
                    &value,
                    StorageClass::values(),
                    "",
                )
            })
            .transpose()?;

        Ok(Self {
            source_bucket,
            destination_bucket,
            destination_prefix: policy_prefix("DESTINATION_PREFIX", get("DESTINATION_PREFIX"))?
                .unwrap_or_default(),
            source_prefix: policy_prefix("SOURCE_PREFIX", get("SOURCE_PREFIX"))?,
            destination_acl,
            destination_storage_class,
            destination_kms_key_id: get("DESTINATION_KMS_KEY_ID"),
            replicate_deletes: boolean("REPLICATE_DELETES", get("REPLICATE_DELETES"))?,
            force_path_style: boolean("S3_FORCE_PATH_STYLE", get("S3_FORCE_PATH_STYLE"))?,
            source_region: get("SOURCE_REGION")
                .map(|r| region("SOURCE_REGION", r))
                .transpose()?,
            destination_region: get("DESTINATION_REGION")
                .map(|r| region("DESTINATION_REGION", r))
                .transpose()?,
            backfill_concurrency: count(
                "BACKFILL_CONCURRENCY",
                get("BACKFILL_CONCURRENCY"),
                default_backfill_concurrency(get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")),
                1000,
            )?,
            multipart_threshold: size(
                "MULTIPART_THRESHOLD",
                get("MULTIPART_THRESHOLD"),
                DEFAULT_MULTIPART_THRESHOLD,
            )?,
            part_concurrency: count(
                "PART_CONCURRENCY",
                get("PART_CONCURRENCY"),
                DEFAULT_PART_CONCURRENCY,
                100,
            )?,
            parts_per_invocation: get("PARTS_PER_INVOCATION")
                .map(|value| count("PARTS_PER_INVOCATION", Some(value), 1, 10_000))
                .transpose()?,
            destination_account_id: get("DESTINATION_ACCOUNT_ID").map(account_id).transpose()?,
            function_role_arn: get("FUNCTION_ROLE_ARN"),
            attempt_timeout: attempt_timeout(get("S3_ATTEMPT_TIMEOUT"))?,
            max_attempts: count(
                "S3_MAX_ATTEMPTS",
                get("S3_MAX_ATTEMPTS"),
                DEFAULT_MAX_ATTEMPTS as usize,
                20,
            )? as u32,
            adaptive_retry: adaptive_retry(get("S3_RETRY_MODE"))?,
        })
    }
}

/// `DESTINATION_ACL`: `bucket-owner-full-control` unless set; `none` sends no ACL.
fn acl(value: Option<String>) -> Result<Option<ObjectCannedAcl>, ConfigError> {
    match value.as_deref() {
        None => Ok(Some(ObjectCannedAcl::BucketOwnerFullControl)),
        Some("none") => Ok(None),
        Some(value) => Ok(Some(known_value(
            "DESTINATION_ACL",
            value,
            ObjectCannedAcl::values(),
            "none",
        )?)),
    }
}

/// `DESTINATION_ACCOUNT_ID`: twelve digits.
fn account_id(id: String) -> Result<String, ConfigError> {
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(id)
    } else {
        Err(ConfigError::new(
            "DESTINATION_ACCOUNT_ID",
            format!("{id:?} is not an AWS account id (12 digits)"),
        ))
    }
}

/// `S3_ATTEMPT_TIMEOUT`: a human duration up to 15 minutes.
fn attempt_timeout(value: Option<String>) -> Result<std::time::Duration, ConfigError> {
    let Some(value) = value else {
        return Ok(DEFAULT_ATTEMPT_TIMEOUT);
    };
    humantime::parse_duration(value.trim())
        .ok()
        .filter(|d| !d.is_zero() && *d <= std::time::Duration::from_secs(900))
        .ok_or_else(|| {
            ConfigError::new(
                "S3_ATTEMPT_TIMEOUT",
                format!(
                    "{value:?} is not allowed: use a duration up to 15m, for example 30s or 500ms"
                ),
            )
        })
}

/// `S3_RETRY_MODE`: whether the retry mode is adaptive (the default) rather than standard.
fn adaptive_retry(value: Option<String>) -> Result<bool, ConfigError> {
    match value.as_deref() {
        None | Some("adaptive") => Ok(true),
        Some("standard") => Ok(false),
        Some(other) => Err(ConfigError::new(
            "S3_RETRY_MODE",
            format!("{other:?} is not allowed: use adaptive or standard"),
        )),
    }
}

/// A key prefix that policies name: IAM reads `*` and `?` in a resource as wildcards and `${`
/// as the start of a policy variable, so a prefix with them would grant other keys than its own.
fn policy_prefix(
    variable: &'static str,
    value: Option<String>,
) -> Result<Option<String>, ConfigError> {
    match value {
        Some(prefix) if prefix_problem(&prefix).is_some() => Err(ConfigError::new(
            variable,
            format!("{prefix:?} {}", prefix_problem(&prefix).unwrap_or_default()),
        )),
        other => Ok(other),
    }
}

/// Why a prefix cannot be written into an IAM policy, if it cannot.
pub fn prefix_problem(prefix: &str) -> Option<&'static str> {
    if prefix.contains('*') || prefix.contains('?') {
        Some("contains * or ?, which IAM reads as wildcards in a policy's resource")
    } else if prefix.contains("${") {
        Some("contains ${, which IAM reads as the start of a policy variable")
    } else {
        None
    }
}

fn bucket_name(variable: &'static str, value: Option<String>) -> Result<String, ConfigError> {
    let value = value.ok_or_else(|| ConfigError::new(variable, "is required (a bucket name)"))?;
    let valid_chars = value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let valid_ends = value
        .bytes()
        .next()
        .zip(value.bytes().last())
        .is_some_and(|(first, last)| first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric());
    if !(3..=63).contains(&value.len()) || !valid_chars || !valid_ends {
        return Err(ConfigError::new(
            variable,
            format!(
                "{value:?} is not a bucket name (3-63 characters: lowercase letters, digits, '.' and '-', starting and ending with a letter or digit)"
            ),
        ));
    }
    Ok(value)
}

/// The default `BACKFILL_CONCURRENCY` for a function of `memory` MB (as Lambda sets
/// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`; none outside Lambda).
fn default_backfill_concurrency(memory: Option<String>) -> usize {
    memory
        .and_then(|mb| mb.trim().parse::<usize>().ok())
        .map_or(DEFAULT_BACKFILL_CONCURRENCY, |mb| {
            (mb * CONNECTIONS_PER_MB).clamp(1, DEFAULT_BACKFILL_CONCURRENCY)
        })
}

/// A whole number from 1 to `max`, or `default` when unset.
fn count(
    variable: &'static str,
    value: Option<String>,
    default: usize,
    max: usize,
) -> Result<usize, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    value
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            ConfigError::new(
                variable,
                format!("{value:?} is not allowed: use a whole number from 1 to {max}"),
            )
        })
}

/// A size in bytes, human sizes accepted (`64MiB`, `1 GiB`, `100MB`, `5242880`), from 5 MiB to
/// 5 GiB, or `default` when unset.
fn size(variable: &'static str, value: Option<String>, default: u64) -> Result<u64, ConfigError> {
    use crate::limits::{MAX_PART_SIZE, MIN_PART_SIZE};
    let Some(value) = value else {
        return Ok(default);
    };
    let bytes = value
        .trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|e| {
            ConfigError::new(
                variable,
                format!("{value:?} is not a size ({e}); use for example 64MiB"),
            )
        })?;
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&bytes) {
        return Err(ConfigError::new(
            variable,
            format!("{value:?} ({bytes} bytes) is not allowed: use a size from 5MiB to 5GiB"),
        ));
    }
    Ok(bytes)
}

/// Accepts names shaped like AWS regions (`eu-west-1`, `us-gov-east-1`, `cn-north-1`).
fn region(variable: &'static str, value: String) -> Result<String, ConfigError> {
    let parts: Vec<&str> = value.split('-').collect();
    let shaped = parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty();
    if !shaped {
        return Err(ConfigError::new(
            variable,
            format!("{value:?} is not an AWS region name (for example eu-west-1)"),
        ));
    }
    Ok(value)
}

fn boolean(variable: &'static str, value: Option<String>) -> Result<bool, ConfigError> {
    match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ConfigError::new(
            variable,
            format!("{other:?} is not allowed: use true or false"),
        )),
    }
}

fn known_value<T: From<&'static str>>(
    variable: &'static str,
    value: &str,
    allowed: &'static [&'static str],
    extra: &str,
) -> Result<T, ConfigError> {
    match allowed.iter().find(|candidate| **candidate == value) {
        Some(known) => Ok(T::from(known)),
        None => {
            let mut choices: Vec<&str> = allowed.to_vec();
            if !extra.is_empty() {
                choices.push(extra);
            }
            Err(ConfigError::new(
                variable,
                format!(
                    "{value:?} is not allowed: use one of {}",
                    choices.join(", ")
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    const BUCKETS: [(&str, &str); 2] =
        [("SOURCE_BUCKET", "src-a"), ("DESTINATION_BUCKET", "dst-b")];

    #[test]
    fn applies_defaults() {
        let c = config(&BUCKETS).unwrap();
        assert_eq!(c.destination_prefix, "");
        assert_eq!(c.source_prefix, None);
        assert_eq!(
            c.destination_acl,
            Some(ObjectCannedAcl::BucketOwnerFullControl)
        );
        assert_eq!(c.destination_storage_class, None);
        assert!(!c.replicate_deletes);
        assert!(!c.force_path_style);
        assert_eq!(c.backfill_concurrency, DEFAULT_BACKFILL_CONCURRENCY);
    }

    #[test]
    fn sizes_the_backfill_ceiling_to_the_functions_memory() {
        let at = |memory: &str| {
            let vars = [
                BUCKETS[0],
                BUCKETS[1],
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory),
            ];
            config(&vars).unwrap().backfill_concurrency
        };
        assert_eq!(at("128"), 512);
        assert_eq!(at("192"), 768);
        assert_eq!(at("256"), DEFAULT_BACKFILL_CONCURRENCY);
        assert_eq!(at("10240"), DEFAULT_BACKFILL_CONCURRENCY);
        assert_eq!(at("unknown"), DEFAULT_BACKFILL_CONCURRENCY);
        // Set, the variable wins over the memory.
        let vars = [
            BUCKETS[0],
            BUCKETS[1],
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("BACKFILL_CONCURRENCY", "1000"),
        ];
        assert_eq!(config(&vars).unwrap().backfill_concurrency, 1000);
    }

    #[test]
    fn requires_both_buckets() {
        let err = config(&[("SOURCE_BUCKET", "src-a")]).unwrap_err();
        assert_eq!(err.variable, "DESTINATION_BUCKET");
        let err = config(&[("DESTINATION_BUCKET", "dst-b")]).unwrap_err();
        assert_eq!(err.variable, "SOURCE_BUCKET");
    }

    #[test]
    fn refuses_prefixes_iam_would_read_as_wildcards_or_variables() {
        for prefix in ["logs/*", "a?b/", "from-${aws:username}/"] {
            for variable in ["DESTINATION_PREFIX", "SOURCE_PREFIX"] {
                let error = Config::from_lookup(|name| match name {
                    "SOURCE_BUCKET" => Some("source-a".into()),
                    "DESTINATION_BUCKET" => Some("replica-b".into()),
                    n if n == variable => Some(prefix.into()),
                    _ => None,
                })
                .unwrap_err();
                assert!(error.to_string().contains(variable), "{error}");
            }
        }
    }

    #[test]
    fn refuses_same_source_and_destination() {
        let err = config(&[("SOURCE_BUCKET", "same"), ("DESTINATION_BUCKET", "same")]).unwrap_err();
        assert_eq!(err.variable, "DESTINATION_BUCKET");
        assert!(err.to_string().contains("trigger the function again"));
    }

    #[test]
    fn refuses_malformed_bucket_names() {
        for bad in ["UPPER", "ab", "-lead", "has space", "arn:aws:s3:::b"] {
            let err =
                config(&[("SOURCE_BUCKET", bad), ("DESTINATION_BUCKET", "dst-b")]).unwrap_err();
            assert_eq!(err.variable, "SOURCE_BUCKET", "{bad}");
        }
    }

    #[test]
    fn parses_acl_storage_class_and_kms() {
        let mut vars = BUCKETS.to_vec();
        vars.extend([
            ("DESTINATION_ACL", "none"),
            ("DESTINATION_STORAGE_CLASS", "STANDARD_IA"),
            (
                "DESTINATION_KMS_KEY_ID",
                "arn:aws:kms:us-east-1:222222222222:key/k",
            ),
            ("REPLICATE_DELETES", "TRUE"),
            ("S3_FORCE_PATH_STYLE", "true"),
            ("DESTINATION_PREFIX", "from-a/"),
            ("SOURCE_PREFIX", "data/"),
        ]);
        let c = config(&vars).unwrap();
        assert_eq!(c.destination_acl, None);
        assert_eq!(c.destination_storage_class, Some(StorageClass::StandardIa));
        assert_eq!(
            c.destination_kms_key_id.as_deref(),
            Some("arn:aws:kms:us-east-1:222222222222:key/k")
        );
        assert!(c.replicate_deletes && c.force_path_style);
        assert_eq!(c.destination_prefix, "from-a/");
        assert_eq!(c.source_prefix.as_deref(), Some("data/"));
    }

    #[test]
    fn parses_human_sizes_within_the_part_limits() {
        let with = |value: &str| {
            let mut vars = BUCKETS.to_vec();
            vars.push(("MULTIPART_THRESHOLD", value));
            config(&vars)
        };
        assert_eq!(with("64MiB").unwrap().multipart_threshold, 64 * 1024 * 1024);
        assert_eq!(
            with("1 GiB").unwrap().multipart_threshold,
            1024 * 1024 * 1024
        );
        assert_eq!(with("100MB").unwrap().multipart_threshold, 100_000_000);
        assert_eq!(
            with("5242880").unwrap().multipart_threshold,
            5 * 1024 * 1024
        );
        assert_eq!(
            with("5GiB").unwrap().multipart_threshold,
            5 * 1024 * 1024 * 1024
        );
        for bad in ["4MiB", "6GiB", "lots", "-1"] {
            let err = with(bad).unwrap_err();
            assert_eq!(err.variable, "MULTIPART_THRESHOLD", "{bad}");
            assert!(err.problem.contains(bad), "{err}");
        }
        assert_eq!(
            config(&BUCKETS).unwrap().multipart_threshold,
            DEFAULT_MULTIPART_THRESHOLD
        );
        assert_eq!(
            config(&BUCKETS).unwrap().part_concurrency,
            DEFAULT_PART_CONCURRENCY
        );
    }

    #[test]
    fn parses_timeouts_and_attempts() {
        let mut vars = BUCKETS.to_vec();
        vars.extend([("S3_ATTEMPT_TIMEOUT", "1500ms"), ("S3_MAX_ATTEMPTS", "3")]);
        let c = config(&vars).unwrap();
        assert_eq!(c.attempt_timeout, std::time::Duration::from_millis(1500));
        assert_eq!(c.max_attempts, 3);
        assert_eq!(
            config(&BUCKETS).unwrap().attempt_timeout,
            DEFAULT_ATTEMPT_TIMEOUT
        );
        for bad in ["soon", "0s", "1h"] {
            let mut vars = BUCKETS.to_vec();
            vars.push(("S3_ATTEMPT_TIMEOUT", bad));
            assert_eq!(
                config(&vars).unwrap_err().variable,
                "S3_ATTEMPT_TIMEOUT",
                "{bad}"
            );
        }
    }

    #[test]
    fn validates_the_destination_account_id() {
        let mut vars = BUCKETS.to_vec();
        vars.push(("DESTINATION_ACCOUNT_ID", "222222222222"));
        assert_eq!(
            config(&vars).unwrap().destination_account_id.as_deref(),
            Some("222222222222")
        );
        let mut vars = BUCKETS.to_vec();
        vars.push(("DESTINATION_ACCOUNT_ID", "2222-2222"));
        assert_eq!(
            config(&vars).unwrap_err().variable,
            "DESTINATION_ACCOUNT_ID"
        );
    }

    #[test]
    fn validates_regions() {
        let mut vars = BUCKETS.to_vec();
        vars.extend([
            ("SOURCE_REGION", "us-gov-east-1"),
            ("DESTINATION_REGION", "eu-west-1"),
        ]);
        let c = config(&vars).unwrap();
        assert_eq!(c.source_region.as_deref(), Some("us-gov-east-1"));
        assert_eq!(c.destination_region.as_deref(), Some("eu-west-1"));
        for bad in ["europe", "EU-WEST-1", "eu-west", "eu--1", "eu-west-1a"] {
            let mut vars = BUCKETS.to_vec();
            vars.push(("DESTINATION_REGION", bad));
            let err = config(&vars).unwrap_err();
            assert_eq!(err.variable, "DESTINATION_REGION", "{bad}");
        }
    }

    #[test]
    fn names_allowed_values_for_bad_enumerations() {
        let mut vars = BUCKETS.to_vec();
        vars.push(("DESTINATION_ACL", "owner-only"));
        let err = config(&vars).unwrap_err();
        assert_eq!(err.variable, "DESTINATION_ACL");
        assert!(err.problem.contains("bucket-owner-full-control") && err.problem.contains("none"));

        let mut vars = BUCKETS.to_vec();
        vars.push(("DESTINATION_STORAGE_CLASS", "COLD"));
        assert_eq!(
            config(&vars).unwrap_err().variable,
            "DESTINATION_STORAGE_CLASS"
        );

        let mut vars = BUCKETS.to_vec();
        vars.push(("BACKFILL_CONCURRENCY", "0"));
        assert_eq!(config(&vars).unwrap_err().variable, "BACKFILL_CONCURRENCY");

        let mut vars = BUCKETS.to_vec();
        vars.push(("REPLICATE_DELETES", "yes"));
        let err = config(&vars).unwrap_err();
        assert_eq!(err.variable, "REPLICATE_DELETES");
        assert!(err.problem.contains("true or false"));
    }
}
