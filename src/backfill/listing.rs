//! The two listings a backfill merges: each bucket listed a few pages ahead in a task of its
//! own, and one decision per source object (the replica is current, or copy it).

use std::cmp::Ordering;
use std::collections::VecDeque;

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{EncodingType, Object};
use tokio::sync::mpsc;

use crate::copy::Replicator;
use crate::copy::identity::{AgeAsEvidence, Facts, is_kms, judge};
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
}

/// Whether each bucket encrypts new objects with a KMS key by default (their ETags then are no
/// MD5s); `None` where that could not be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct KmsDefaults {
    pub(super) source: Option<bool>,
    pub(super) destination: Option<bool>,
}

/// Reads both buckets' default encryption (`GetBucketEncryption`, one request per bucket and
/// hop, both at once). A bucket whose setting cannot be read is taken as not KMS: its ETags are
/// then compared, which may copy a KMS object again but never leaves a changed one behind; a
/// warning names the missing grant.
pub(super) async fn kms_defaults(replicator: &Replicator) -> KmsDefaults {
    let config = replicator.config();
    let clients = replicator.clients();
    let destination = async {
        match config.destination_kms_key_id {
            Some(_) => Some(true),
            None => {
                let owner = config.destination_account_id.as_deref();
                default_kms(clients.destination(), &config.destination_bucket, owner).await
            }
        }
    };
    let source = default_kms(clients.source(), &config.source_bucket, None);
    let (source, destination) = tokio::join!(source, destination);
    KmsDefaults {
        source,
        destination,
    }
}

async fn default_kms(client: &Client, bucket: &str, owner: Option<&str>) -> Option<bool> {
    let answer = client
        .get_bucket_encryption()
        .bucket(bucket)
        .set_expected_bucket_owner(owner.map(str::to_string))
        .send()
        .await;
    match answer {
        Ok(output) => Some(
            output
                .server_side_encryption_configuration()
                .map(|c| c.rules())
                .unwrap_or_default()
                .iter()
                .filter_map(|rule| rule.apply_server_side_encryption_by_default())
                .any(|default| is_kms(Some(default.sse_algorithm()))),
        ),
        Err(err) => {
            let failure = classify(err);
            if failure.code == "ServerSideEncryptionConfigurationNotFoundError" {
                return Some(false);
            }
            tracing::warn!(
                bucket,
                error = %failure,
                "cannot read the bucket's default encryption (s3:GetEncryptionConfiguration); its ETags are compared as MD5s, so KMS-encrypted objects may be copied again"
            );
            None
        }
    }
}

/// Merges the source and destination listings into one decision per source object.
pub(super) struct Merge {
    source: Cursor,
    destination: Cursor,
    kms: KmsDefaults,
}

impl Merge {
    /// Starts listing both buckets from `start_after` under `prefix` (the destination's under
    /// `DESTINATION_PREFIX`), only the keys directly under `prefix` when `shallow`. Until
    /// [`Merge::judging_with`] says otherwise, neither bucket is taken to encrypt with KMS.
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
            kms: KmsDefaults::default(),
        }
    }

    /// The merge, judging replicas by the buckets' default encryption `kms`.
    pub(super) fn judging_with(self, kms: KmsDefaults) -> Self {
        Merge { kms, ..self }
    }

    /// The next source object and what to do with it. Cancel-safe: it awaits only while
    /// peeking at the listings, and takes items off them once nothing is left to await, so a
    /// caller that drops it (to attend to a finished copy) loses nothing.
    pub(super) async fn next(&mut self) -> Result<Option<(Listed, Decision)>, (Side, S3Failure)> {
        loop {
            let Some(object) = self.source.peek().await? else {
                return Ok(None);
            };
            let order = match self.destination.peek().await? {
                Some(replica) => replica.key.as_bytes().cmp(object.key.as_bytes()),
                None => Ordering::Greater,
            };
            if order == Ordering::Less {
                // A replica whose source is gone (or outside this listing): passed over.
                self.destination.buffer.pop_front();
                continue;
            }
            let Some(object) = self.source.buffer.pop_front() else {
                continue;
            };
            let replica = match order {
                Ordering::Equal => self.destination.buffer.pop_front(),
                _ => None,
            };
            let decision = match replica {
                Some(replica) if is_current(&object, &replica, self.kms) => Decision::Unchanged,
                _ => Decision::Copy(object.clone()),
            };
            return Ok(Some((object, decision)));
        }
    }
}

/// Whether `replica` is current for `object`, by the identity rule from listings: sizes, write
/// times and, where comparable, ETags; a replica's age stands in for content that nothing
/// compares (see [`crate::copy::identity`]).
fn is_current(object: &Listed, replica: &Listed, kms: KmsDefaults) -> bool {
    let facts = |listed: &Listed, kms: Option<bool>| Facts {
        size: listed.size,
        etag: listed.etag.clone(),
        kms,
        modified: listed.last_modified,
        ..Facts::default()
    };
    judge(
        &facts(object, kms.source),
        &facts(replica, kms.destination),
        AgeAsEvidence::Accepted,
    )
    .is_ok()
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

    const PLAIN: KmsDefaults = KmsDefaults {
        source: Some(false),
        destination: Some(false),
    };

    fn cursor(side: Side) -> (mpsc::Sender<Page>, Cursor) {
        let (sender, pages) = mpsc::channel(PAGES_AHEAD);
        let buffer = VecDeque::new();
        (
            sender,
            Cursor {
                pages,
                buffer,
                side,
            },
        )
    }

    #[tokio::test]
    async fn a_merge_dropped_while_it_waits_for_a_page_loses_nothing() {
        use futures::FutureExt;
        let (source, source_cursor) = cursor(Side::Source);
        let (destination, destination_cursor) = cursor(Side::Destination);
        let mut merge = Merge {
            source: source_cursor,
            destination: destination_cursor,
            kms: PLAIN,
        };
        let page = vec![object("a", 1, "\"1\"", 10), object("b", 1, "\"2\"", 10)];
        source.send(Ok(page)).await.unwrap();
        // The source has its page, the destination none yet: the merge waits, and is dropped.
        assert!(merge.next().now_or_never().is_none());
        assert!(merge.next().now_or_never().is_none());
        let replicas = vec![object("0", 1, "\"0\"", 20), object("a", 1, "\"1\"", 20)];
        destination.send(Ok(replicas)).await.unwrap();
        drop((source, destination));
        let mut merged = Vec::new();
        while let Some((object, decision)) = merge.next().await.unwrap() {
            merged.push((object.key, matches!(decision, Decision::Copy(_))));
        }
        let expected = [("a".to_string(), false), ("b".to_string(), true)];
        assert_eq!(merged, expected);
    }

    #[test]
    fn equal_size_and_etag_written_after_the_source_is_current() {
        let a = object("k", 5, "\"abc\"", 10);
        assert!(is_current(&a, &object("k", 5, "\"abc\"", 10), PLAIN));
        // The same ETag, but the source was written again since (new metadata, same bytes).
        assert!(!is_current(&a, &object("k", 5, "\"abc\"", 5), PLAIN));
    }

    #[test]
    fn different_size_or_plain_etag_is_stale() {
        let a = object("k", 5, "\"abc\"", 10);
        assert!(!is_current(&a, &object("k", 6, "\"abc\"", 20), PLAIN));
        // A same-size rollback: the replica is newer, its MD5 differs.
        assert!(!is_current(&a, &object("k", 5, "\"abd\"", 20), PLAIN));
    }

    #[test]
    fn incomparable_etags_fall_back_to_the_replica_age() {
        let multipart = object("k", 5, "\"abc-2\"", 10);
        assert!(is_current(
            &multipart,
            &object("k", 5, "\"def\"", 11),
            PLAIN
        ));
        assert!(!is_current(
            &multipart,
            &object("k", 5, "\"def\"", 9),
            PLAIN
        ));
        // A bucket encrypting with KMS by default: plain-looking ETags are no MD5s either.
        let plain = object("k", 5, "\"abc\"", 10);
        let kms_b = KmsDefaults {
            destination: Some(true),
            ..PLAIN
        };
        assert!(is_current(&plain, &object("k", 5, "\"kms\"", 12), kms_b));
        let kms_a = KmsDefaults {
            source: Some(true),
            ..PLAIN
        };
        assert!(is_current(&plain, &object("k", 5, "\"md5\"", 12), kms_a));
        // Unknown defaults are taken as not KMS: the ETags are compared.
        assert!(!is_current(
            &plain,
            &object("k", 5, "\"kms\"", 12),
            KmsDefaults::default()
        ));
    }
}
