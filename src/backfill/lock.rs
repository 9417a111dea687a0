//! One backfill chain per prefix: a lock kept as a small marker object in the destination bucket,
//! taken and handed on with conditional writes (`If-None-Match: *` to create it, `If-Match` on
//! its ETag to change it), so two writers never both win.
//!
//! The marker names the chain (`run`), the hop that may take it next, the invocation holding it
//! and when it expires. Each hop takes it from its predecessor; a hop that finds another hop of
//! its own chain there (a duplicate asynchronous delivery) stops without copying; a start that
//! finds another live chain is refused. A chain that ends releases it; one that dies leaves it to
//! expire (the hop's deadline plus [`GRACE`]). A fan-out reserves the lock of every shard before it
//! starts any, so a second fan-out over the same prefix is refused as a whole.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use super::request::BackfillError;
use crate::copy::Replicator;
use crate::error::{FailureClass, ReplicationError, S3Failure, Side, Target, classify};

/// How long a lock outlives its hop's deadline: room for the continuation's asynchronous
/// invocation to start.
pub const GRACE: Duration = Duration::from_secs(10 * 60);
/// A hop without a deadline (outside Lambda) holds the lock this long.
const UNBOUNDED_HOP: Duration = Duration::from_secs(60 * 60);
/// Conditional writes lost to a concurrent writer before giving up.
const ATTEMPTS: usize = 5;
/// Where the markers live, under `DESTINATION_PREFIX`.
pub const LOCK_FOLDER: &str = ".s3-replicator/backfill-lock/";

/// The marker's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Marker {
    run: String,
    prefix: String,
    /// The hop of `run` that may take the lock next.
    next_hop: u32,
    /// The request id of the invocation holding it; none when a fan-out reserved it.
    holder: Option<String>,
    /// Seconds since the epoch after which anyone may take it.
    expires: u64,
    released: bool,
}

/// What a hop found when it asked for the lock.
#[derive(Debug)]
pub enum Taken {
    /// The hop holds the lock.
    Held(Lock),
    /// Another delivery of this hop, or an older one of the same chain, holds or held it: this
    /// delivery is a duplicate and copies nothing.
    Duplicate,
}

/// A held lock: what the hop needs to release it.
#[derive(Debug, Clone)]
pub struct Lock {
    key: String,
    etag: String,
    marker: Marker,
}

/// Who asks for a lock.
pub struct Claim<'a> {
    /// The chain.
    pub run: &'a str,
    /// The hop of the chain.
    pub hop: u32,
    /// The invocation's request id (a retried asynchronous invocation keeps it).
    pub request_id: Option<&'a str>,
    /// When the hop must stop.
    pub deadline: Option<SystemTime>,
}

fn epoch_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Marker {
    /// The marker `claim` writes over `prefix`, naming `next_hop` as the hop that takes it next.
    fn for_claim(claim: &Claim<'_>, prefix: &str, next_hop: u32) -> Self {
        let until = claim
            .deadline
            .unwrap_or_else(|| SystemTime::now() + UNBOUNDED_HOP);
        Marker {
            run: claim.run.to_string(),
            prefix: prefix.to_string(),
            next_hop,
            holder: claim.request_id.map(str::to_string),
            expires: epoch_secs(until + GRACE),
            released: false,
        }
    }
}

/// A new chain's name: unique enough to tell two starts apart.
pub fn new_run(request_id: Option<&str>) -> String {
    if let Some(id) = request_id {
        return id.to_string();
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}-{:x}", std::process::id())
}

/// The marker's key for a backfill over `prefix`.
pub fn lock_key(destination_prefix: &str, prefix: &str) -> String {
    let name = if prefix.is_empty() {
        "_".to_string()
    } else {
        utf8_percent_encode(prefix, NON_ALPHANUMERIC).to_string()
    };
    format!("{destination_prefix}{LOCK_FOLDER}{name}")
}

/// What the hop decides on finding `current`.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Take,
    Duplicate,
    Refuse,
}

fn decide(current: &Marker, claim: &Claim<'_>, now: u64) -> Decision {
    if current.released || current.expires <= now {
        return Decision::Take;
    }
    if current.run != claim.run {
        return Decision::Refuse;
    }
    let retried = current.next_hop == claim.hop + 1
        && current.holder.is_some()
        && current.holder.as_deref() == claim.request_id;
    if current.next_hop == claim.hop || retried {
        Decision::Take
    } else {
        Decision::Duplicate
    }
}

/// Takes the lock of `prefix` for `claim`, or says why not.
pub async fn take(
    replicator: &Replicator,
    prefix: &str,
    claim: &Claim<'_>,
) -> Result<Taken, BackfillError> {
    let marker = Marker::for_claim(claim, prefix, claim.hop + 1);
    acquire(replicator, prefix, claim, marker).await
}

/// Reserves the lock of `prefix` for the first hop of `run` (a fan-out shard), held by nobody
/// until that hop takes it. `None`: the shard's first hop of this same chain has taken it already
/// (the fan-out is a retry of one that started it).
pub async fn reserve(
    replicator: &Replicator,
    prefix: &str,
    run: &str,
    deadline: Option<SystemTime>,
) -> Result<Option<Lock>, BackfillError> {
    let claim = Claim {
        run,
        hop: 0,
        request_id: None,
        deadline,
    };
    let marker = Marker::for_claim(&claim, prefix, 0);
    match acquire(replicator, prefix, &claim, marker).await? {
        Taken::Held(lock) => Ok(Some(lock)),
        Taken::Duplicate => Ok(None),
    }
}

/// Writes `marker` as the lock of `prefix` if `claim` may have it: read, decide, conditional
/// write, again while another writer comes first.
async fn acquire(
    replicator: &Replicator,
    prefix: &str,
    claim: &Claim<'_>,
    marker: Marker,
) -> Result<Taken, BackfillError> {
    let key = lock_key(&replicator.config().destination_prefix, prefix);
    for _ in 0..ATTEMPTS {
        let (condition, denied) = match read(replicator, &key).await? {
            Found::Absent => (Condition::Absent, None),
            Found::Denied(failure) => (Condition::Absent, Some(failure)),
            Found::Marker(found, etag) => {
                match decide(&found, claim, epoch_secs(SystemTime::now())) {
                    Decision::Take => (Condition::Unchanged(etag), None),
                    Decision::Duplicate => return Ok(Taken::Duplicate),
                    Decision::Refuse => return Err(locked(&found, prefix)),
                }
            }
        };
        match write(replicator, &key, &marker, condition).await? {
            Some(etag) => return Ok(Taken::Held(Lock { key, etag, marker })),
            None => unreadable(replicator, &key, denied)?,
        }
    }
    Err(contended(prefix))
}

/// Releases a lock the hop holds (or a reservation it made). A lock another chain took over
/// after it expired is left alone.
pub async fn release(replicator: &Replicator, lock: &Lock) {
    let mut marker = lock.marker.clone();
    marker.released = true;
    let condition = Condition::Unchanged(lock.etag.clone());
    match write(replicator, &lock.key, &marker, condition).await {
        Ok(Some(_)) => {}
        Ok(None) => tracing::warn!(
            key = %lock.key,
            "backfill lock changed since this hop took it (expired and taken over): left alone"
        ),
        // The lock expires by itself; a backfill started before then is refused with the
        // time it can start.
        Err(error) => tracing::warn!(key = %lock.key, error = %error, "backfill lock not released"),
    }
}

/// After a conditional create failed: when reading the marker was denied, the marker exists and
/// this role cannot read it (B's policy lacks `s3:GetObject`), which no retry changes.
fn unreadable(
    replicator: &Replicator,
    key: &str,
    denied: Option<S3Failure>,
) -> Result<(), BackfillError> {
    match denied {
        Some(failure) => Err(lock_error(replicator, key, failure)),
        None => Ok(()),
    }
}

fn locked(found: &Marker, prefix: &str) -> BackfillError {
    let expires =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(found.expires));
    BackfillError::Locked(format!(
        "a backfill over prefix {prefix:?} is already running (chain {}, at hop {}); \
         starting another beside it would copy every object twice. Follow it in the logs \
         (\"backfill progress\" lines with chain {}). Its lock expires at {expires} if the chain stops without finishing",
        found.run,
        found.next_hop.saturating_sub(1),
        found.run
    ))
}

fn contended(prefix: &str) -> BackfillError {
    BackfillError::Locked(format!(
        "the backfill lock of prefix {prefix:?} kept changing while this invocation tried to take it: another start is racing this one"
    ))
}

enum Condition {
    Absent,
    Unchanged(String),
}

/// What reading the marker found.
enum Found {
    Marker(Marker, String),
    Absent,
    /// S3 answered 403: the marker is absent, or present and unreadable to this role.
    Denied(S3Failure),
}

async fn read(replicator: &Replicator, key: &str) -> Result<Found, BackfillError> {
    let config = replicator.config();
    let response = replicator
        .clients()
        .destination()
        .get_object()
        .bucket(&config.destination_bucket)
        .key(key)
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .send()
        .await;
    let object = match response {
        Ok(object) => object,
        Err(error) => {
            let failure = classify(error);
            // Without a ListBucket grant that covers the key (B's is limited to
            // DESTINATION_PREFIX by a condition GetObject does not meet), S3 answers a missing
            // key with 403. The conditional write then tells: it fails if the marker exists.
            return match failure.class {
                FailureClass::NotFound => Ok(Found::Absent),
                FailureClass::AccessDenied => Ok(Found::Denied(failure)),
                _ => Err(lock_error(replicator, key, failure)),
            };
        }
    };
    let etag = object.e_tag().unwrap_or_default().to_string();
    let body = object.body.collect().await.map_err(|e| {
        BackfillError::InvalidRequest(format!("reading the backfill lock {key}: {e}"))
    })?;
    // A marker that cannot be read (written by hand, truncated) is treated as expired.
    let marker = serde_json::from_slice(&body.into_bytes()).unwrap_or(Marker {
        released: true,
        ..Default::default()
    });
    Ok(Found::Marker(marker, etag))
}

/// Writes the marker if `condition` still holds; `None` when another writer came first.
async fn write(
    replicator: &Replicator,
    key: &str,
    marker: &Marker,
    condition: Condition,
) -> Result<Option<String>, BackfillError> {
    let config = replicator.config();
    let body = serde_json::to_vec(marker).unwrap_or_default();
    let mut request = replicator
        .clients()
        .destination()
        .put_object()
        .bucket(&config.destination_bucket)
        .key(key)
        .body(ByteStream::from(body))
        .content_type("application/json")
        .set_expected_bucket_owner(config.destination_account_id.clone())
        .set_acl(config.destination_acl.clone());
    if let Some(kms_key) = &config.destination_kms_key_id {
        request = request
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .ssekms_key_id(kms_key);
    }
    request = match condition {
        Condition::Absent => request.if_none_match("*"),
        Condition::Unchanged(etag) => request.if_match(etag),
    };
    match request.send().await {
        Ok(output) => Ok(Some(output.e_tag().unwrap_or_default().to_string())),
        Err(error) => {
            let failure = classify(error);
            // 412: the condition failed; 409: a concurrent conditional write is in progress.
            if failure.class == FailureClass::PreconditionFailed
                || failure.code == "ConditionalRequestConflict"
            {
                return Ok(None);
            }
            Err(lock_error(replicator, key, failure))
        }
    }
}

fn lock_error(replicator: &Replicator, key: &str, failure: S3Failure) -> BackfillError {
    let config = replicator.config();
    let target = Target {
        side: Side::Destination,
        bucket: &config.destination_bucket,
        key,
        region: &replicator.clients().destination_region,
    };
    let error = ReplicationError::from_s3(failure, "backfill lock", target);
    BackfillError::Lock(Box::new(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(run: &str, next_hop: u32, holder: Option<&str>) -> Marker {
        Marker {
            run: run.into(),
            prefix: "p/".into(),
            next_hop,
            holder: holder.map(str::to_string),
            expires: 1_000,
            released: false,
        }
    }

    fn claim<'a>(run: &'a str, hop: u32, request_id: Option<&'a str>) -> Claim<'a> {
        Claim {
            run,
            hop,
            request_id,
            deadline: None,
        }
    }

    #[test]
    fn a_chain_hands_the_lock_from_hop_to_hop_and_refuses_everyone_else() {
        let held = marker("r", 3, Some("q2"));
        assert_eq!(
            decide(&held, &claim("r", 3, Some("q3")), 10),
            Decision::Take
        );
        // The same invocation retried by Lambda (same request id).
        assert_eq!(
            decide(&held, &claim("r", 2, Some("q2")), 10),
            Decision::Take
        );
        // Another delivery of hop 2, or an older hop.
        assert_eq!(
            decide(&held, &claim("r", 2, Some("q9")), 10),
            Decision::Duplicate
        );
        assert_eq!(decide(&held, &claim("r", 1, None), 10), Decision::Duplicate);
        assert_eq!(decide(&held, &claim("r", 2, None), 10), Decision::Duplicate);
        // Another chain, while the lock lives; anyone once it expired or was released.
        assert_eq!(decide(&held, &claim("s", 0, None), 10), Decision::Refuse);
        assert_eq!(decide(&held, &claim("s", 0, None), 1_000), Decision::Take);
        let released = Marker {
            released: true,
            ..held
        };
        assert_eq!(decide(&released, &claim("s", 0, None), 10), Decision::Take);
        // A reservation made by a fan-out: the shard's first hop takes it.
        let reserved = marker("r", 0, None);
        assert_eq!(
            decide(&reserved, &claim("r", 0, Some("q")), 10),
            Decision::Take
        );
    }

    #[test]
    fn keys_name_the_prefix_unambiguously_under_the_destination_prefix() {
        assert_eq!(lock_key("", ""), ".s3-replicator/backfill-lock/_");
        assert_eq!(lock_key("b/", "_"), "b/.s3-replicator/backfill-lock/%5F");
        assert_eq!(
            lock_key("", "logs/2024"),
            ".s3-replicator/backfill-lock/logs%2F2024"
        );
    }
}
