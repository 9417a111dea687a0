//! The two listings a backfill merges: each bucket listed a few pages ahead in a task of its
//! own, and one decision per source object (the replica is current, or copy it).

use std::collections::VecDeque;

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{EncodingType, Object};
use tokio::sync::mpsc;

use crate::copy::Replicator;
use crate::error::{ReplicationError, S3Failure, Side, Target, classify};
use crate::keys::decode_listed_key;

/// Pages of listing fetched ahead of the merge.
const PAGES_AHEAD: usize = 2;

/// The error for a failed listing of one side's bucket.
pub(super) fn listing_error(
    replicator: &Replicator,
    side: Side,
    failure: S3Failure,
    prefix: &str,
) -> ReplicationError {
    let config = replicator.config();
    let (bucket, region) = match side {
        Side::Source => (&config.source_bucket, &replicator.clients().source_region),
        Side::Destination => (
            &config.destination_bucket,
            &replicator.clients().destination_region,
        ),
    };
    ReplicationError::from_s3(
        failure,
        "ListObjectsV2",
        Target {
            side,
            bucket,
            key: prefix,
            region,
        },
    )
}

/// One object of a listing, with its key relative to the replicated key space (the source key;
/// a destination key with `DESTINATION_PREFIX` removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Listed {
    pub(super) key: String,
    pub(super) size: i64,
    pub(super) etag: Option<String>,
    pub(super) last_modified: Option<aws_sdk_s3::primitives::DateTime>,
}

/// What the merge decided for one source object.
#[derive(Debug)]
pub(super) enum Decision {
    Unchanged,
    Copy(Listed),
}

type Page = Result<Vec<Listed>, S3Failure>;

/// Lists a bucket in a background task, a few pages ahead of the consumer, so that the next page
/// is fetched while the current page's copies run.
fn spawn_listing(
    client: Client,
    owner: Option<String>,
    bucket: String,
    prefix: String,
    start_after: Option<String>,
    shallow: bool,
    strip: usize,
) -> mpsc::Receiver<Page> {
    let (sender, receiver) = mpsc::channel(PAGES_AHEAD);
    tokio::spawn(async move {
        let mut pages = client
            .list_objects_v2()
            .bucket(bucket)
            .set_expected_bucket_owner(owner)
            .prefix(prefix)
            .set_start_after(start_after)
            .set_delimiter(shallow.then(|| "/".to_string()))
            .max_keys(1000)
            .encoding_type(EncodingType::Url)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(classify).map(|output| {
                output
                    .contents()
                    .iter()
                    .filter_map(|object| listed(object, strip))
                    .collect()
            });
            let failed = page.is_err();
            if sender.send(page).await.is_err() || failed {
                return;
            }
        }
    });
    receiver
}

fn listed(object: &Object, strip: usize) -> Option<Listed> {
    let key = decode_listed_key(object.key()?);
    Some(Listed {
        key: key.get(strip..)?.to_string(),
        size: object.size().unwrap_or_default(),
        etag: object.e_tag().map(str::to_string),
        last_modified: object.last_modified().copied(),
    })
}

/// Pulls items from a paged listing.
struct Cursor {
    pages: mpsc::Receiver<Page>,
    buffer: VecDeque<Listed>,
    side: Side,
}

impl Cursor {
    async fn peek(&mut self) -> Result<Option<&Listed>, (Side, S3Failure)> {
        while self.buffer.is_empty() {
            match self.pages.recv().await {
                None => return Ok(None),
                Some(Ok(page)) => self.buffer.extend(page),
                Some(Err(failure)) => return Err((self.side, failure)),
            }
        }
        Ok(self.buffer.front())
    }

    async fn next(&mut self) -> Result<Option<Listed>, (Side, S3Failure)> {
        self.peek().await?;
        Ok(self.buffer.pop_front())
    }
}

/// Merges the source and destination listings into one decision per source object.
pub(super) struct Merge {
    source: Cursor,
    destination: Cursor,
    compare_etags: bool,
}

impl Merge {
    /// Starts listing both buckets from `start_after` under `prefix` (the destination's under
    /// `DESTINATION_PREFIX`), only the keys directly under `prefix` when `shallow`.
    pub(super) fn open(
        replicator: &Replicator,
        prefix: &str,
        start_after: Option<&str>,
        shallow: bool,
    ) -> Self {
        let config = replicator.config();
        let destination_prefix = &config.destination_prefix;
        Merge {
            source: Cursor {
                pages: spawn_listing(
                    replicator.clients().source().clone(),
                    None,
                    config.source_bucket.clone(),
                    prefix.to_string(),
                    start_after.map(str::to_string),
                    shallow,
                    0,
                ),
                buffer: VecDeque::new(),
                side: Side::Source,
            },
            destination: Cursor {
                pages: spawn_listing(
                    replicator.clients().destination().clone(),
                    config.destination_account_id.clone(),
                    config.destination_bucket.clone(),
                    format!("{destination_prefix}{prefix}"),
                    start_after.map(|key| format!("{destination_prefix}{key}")),
                    shallow,
                    destination_prefix.len(),
                ),
                buffer: VecDeque::new(),
                side: Side::Destination,
            },
            compare_etags: config.destination_kms_key_id.is_none(),
        }
    }

    pub(super) async fn next(&mut self) -> Result<Option<(Listed, Decision)>, (Side, S3Failure)> {
        let Some(object) = self.source.next().await? else {
            return Ok(None);
        };
        loop {
            let Some(replica) = self.destination.peek().await? else {
                return Ok(Some((object.clone(), Decision::Copy(object))));
            };
            match replica.key.as_bytes().cmp(object.key.as_bytes()) {
                std::cmp::Ordering::Less => {
                    self.destination.next().await?;
                }
                std::cmp::Ordering::Greater => {
                    return Ok(Some((object.clone(), Decision::Copy(object))));
                }
                std::cmp::Ordering::Equal => {
                    let replica = self
                        .destination
                        .next()
                        .await?
                        .unwrap_or_else(|| object.clone());
                    let decision = if is_current(&object, &replica, self.compare_etags) {
                        Decision::Unchanged
                    } else {
                        Decision::Copy(object.clone())
                    };
                    return Ok(Some((object, decision)));
                }
            }
        }
    }
}

/// Whether `replica` is a copy of the current `object`: same size and, where ETags are
/// comparable, the same ETag. ETags are not comparable when either is a multipart ETag or the
/// replicas are SSE-KMS encrypted; then a replica older than its source is stale.
fn is_current(object: &Listed, replica: &Listed, compare_etags: bool) -> bool {
    if object.size != replica.size {
        return false;
    }
    if object.etag == replica.etag {
        return true;
    }
    let plain = |etag: &Option<String>| etag.as_deref().is_some_and(|e| !e.contains('-'));
    if compare_etags && plain(&object.etag) && plain(&replica.etag) {
        return false;
    }
    match (object.last_modified, replica.last_modified) {
        (Some(source), Some(copy)) => copy >= source,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, size: i64, etag: &str, modified: i64) -> Listed {
        Listed {
            key: key.into(),
            size,
            etag: Some(etag.into()),
            last_modified: Some(aws_sdk_s3::primitives::DateTime::from_secs(modified)),
        }
    }

    #[test]
    fn equal_size_and_etag_is_current() {
        let a = object("k", 5, "\"abc\"", 10);
        assert!(is_current(&a, &object("k", 5, "\"abc\"", 5), true));
    }

    #[test]
    fn different_size_or_plain_etag_is_stale() {
        let a = object("k", 5, "\"abc\"", 10);
        assert!(!is_current(&a, &object("k", 6, "\"abc\"", 20), true));
        assert!(!is_current(&a, &object("k", 5, "\"abd\"", 20), true));
    }

    #[test]
    fn incomparable_etags_fall_back_to_modification_time() {
        let multipart = object("k", 5, "\"abc-2\"", 10);
        assert!(is_current(&multipart, &object("k", 5, "\"def\"", 11), true));
        assert!(!is_current(&multipart, &object("k", 5, "\"def\"", 9), true));
        // With SSE-KMS replicas, plain ETags are not MD5s either.
        let plain = object("k", 5, "\"abc\"", 10);
        assert!(is_current(&plain, &object("k", 5, "\"kms\"", 12), false));
    }
}
