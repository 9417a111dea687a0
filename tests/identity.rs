//! When a replica is current for its source, on the local S3 emulator, whose KMS-encrypted
//! objects get ETags that are not MD5s of their bytes (random on every write), as on S3. Each
//! case runs with KMS by default on the source, on the destination, on both, and on neither:
//! an event copy, a repeated event, a multipart copy and its repeat, a backfill run twice, and
//! metadata-only rewrites; then same-size rollbacks on a versioned source. The requests each
//! costs are counted by the emulator and printed.

mod support;

use std::collections::BTreeMap;

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{
    MetadataDirective, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use s3_replicator::{Replicator, handle_payload};
use serde_json::{Value, json};
use support::{World, WorldOptions, enable_versioning, put_in_parts, report_figures, s3_event};

const MIB: usize = 1024 * 1024;
const SMALL_PARTS: &[(&str, &str)] = &[("MULTIPART_THRESHOLD", "5MiB"), ("PART_CONCURRENCY", "2")];
const KEY_A: &str = "arn:aws:kms:us-east-1:111111111111:key/0a0a0a0a-1111-2222-3333-444444444444";
const KEY_B: &str = "arn:aws:kms:us-east-1:222222222222:key/0b0b0b0b-1111-2222-3333-444444444444";

/// Which buckets encrypt new objects with a KMS key by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Plain,
    KmsSource,
    KmsDestination,
    KmsBoth,
}

impl Setup {
    const ALL: [Setup; 4] = [
        Setup::Plain,
        Setup::KmsSource,
        Setup::KmsDestination,
        Setup::KmsBoth,
    ];

    fn kms_source(self) -> bool {
        matches!(self, Setup::KmsSource | Setup::KmsBoth)
    }

    fn kms_destination(self) -> bool {
        matches!(self, Setup::KmsDestination | Setup::KmsBoth)
    }

    async fn world(self, name: &str) -> World {
        let world = World::new(name, WorldOptions::default()).await;
        if self.kms_source() {
            encrypt_by_default(&world.admin_a, &world.source_bucket, KEY_A).await;
        }
        if self.kms_destination() {
            encrypt_by_default(&world.admin_b, &world.destination_bucket, KEY_B).await;
        }
        world
    }
}

async fn encrypt_by_default(client: &Client, bucket: &str, key: &str) {
    let default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::AwsKms)
        .kms_master_key_id(key)
        .build()
        .unwrap();
    let configuration = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(default)
                .build(),
        )
        .build()
        .unwrap();
    client
        .put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(configuration)
        .send()
        .await
        .unwrap();
}

fn pattern(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u64 * 2654435761 % 251) as u8 ^ seed)
        .collect()
}

fn total(operations: &BTreeMap<String, u64>) -> u64 {
    operations.values().sum()
}

/// Runs an event for `key` and returns its summary and the S3 requests it made.
async fn event(
    world: &World,
    replicator: &Replicator,
    fixture: &str,
    key: &str,
) -> (Value, BTreeMap<String, u64>) {
    let payload = world.s3_event_now(fixture, key).await;
    let (summary, requests) = world
        .operations_during(handle_payload(&payload, replicator))
        .await;
    (summary.unwrap(), requests)
}

async fn replica_metadata(world: &World, key: &str) -> Option<String> {
    let head = world.destination_head(key).await;
    head.metadata().and_then(|m| m.get("stage").cloned())
}

/// Rewrites a source object's metadata in place (a CopyObject onto itself), bytes unchanged.
async fn rewrite_metadata_in_place(world: &World, key: &str, stage: &str) {
    world
        .admin_a
        .copy_object()
        .bucket(&world.source_bucket)
        .key(key)
        .copy_source(format!("{}/{key}", world.source_bucket))
        .metadata_directive(MetadataDirective::Replace)
        .metadata("stage", stage)
        .send()
        .await
        .unwrap();
}

/// An event copy, then the same event again: each one copy request (the event's ETag makes the
/// copy conditional), plus what verification needs where ETags are no MD5s. Returns the
/// requests of each.
async fn small_events(world: &World, replicator: &Replicator, setup: Setup) -> [u64; 2] {
    // The same bytes under two keys: the same MD5 ETag, or two random KMS ones.
    world.put_source("small.txt", b"small object").await;
    world.put_source("twin.txt", b"small object").await;
    let etags = support::etags(&world.admin_a, &world.source_bucket, "").await;
    assert_eq!(
        etags["small.txt"] == etags["twin.txt"],
        !setup.kms_source(),
        "{setup:?}: {etags:?}"
    );
    let (summary, copy) = event(world, replicator, "s3-put.json", "small.txt").await;
    assert_eq!(summary["copied"], 1, "{setup:?}: {summary}");
    assert_eq!(copy.get("CopyObject"), Some(&1), "{setup:?}: {copy:?}");
    assert_eq!(world.destination_body("small.txt").await, b"small object");
    let (summary, repeated) = event(world, replicator, "s3-put.json", "small.txt").await;
    assert_eq!(summary["failed"], 0, "{setup:?}: {summary}");
    [total(&copy), total(&repeated)]
}

/// A multipart copy keeps the layout and the checksum; the same event again finds the replica
/// current by its checksum, whatever the ETags, and copies nothing.
async fn multipart_events(world: &World, replicator: &Replicator, setup: Setup) -> [u64; 2] {
    let body = pattern(11 * MIB, 3);
    put_in_parts(
        &world.admin_a,
        &world.source_bucket,
        "large.bin",
        &body,
        5 * MIB,
        |c| c.metadata("stage", "raw"),
    )
    .await;
    let (summary, copy) = event(world, replicator, "s3-put.json", "large.bin").await;
    assert_eq!(summary["copied"], 1, "{setup:?}: {summary}");
    assert_eq!(world.destination_body("large.bin").await, body);
    let (summary, repeated) = event(world, replicator, "s3-put.json", "large.bin").await;
    assert_eq!(
        (summary["skipped"].clone(), summary["copied"].clone()),
        (json!(1), json!(0)),
        "{setup:?}: {summary}"
    );
    assert_eq!(repeated.get("UploadPartCopy"), None, "{setup:?}");
    assert_eq!(repeated.get("CopyObject"), None, "{setup:?}");
    [total(&copy), total(&repeated)]
}

/// A backfill copies what B lacks; run again over the unchanged buckets, it copies nothing and
/// reads nothing per object: listings (and the two buckets' encryption). Returns the requests
/// of each run.
async fn backfill_twice(world: &World, replicator: &Replicator, setup: Setup) -> [u64; 2] {
    for i in 0..BACKFILLED {
        world
            .put_source(&format!("bf/{i:02}.txt"), format!("object {i}").as_bytes())
            .await;
    }
    let backfill = json!({"backfill": {"prefix": "bf/"}});
    let (report, full) = world
        .operations_during(handle_payload(&backfill, replicator))
        .await;
    let report = report.unwrap();
    assert_eq!(report["copied"], BACKFILLED, "{setup:?}: {report}");
    let (report, no_op) = world
        .operations_during(handle_payload(&backfill, replicator))
        .await;
    let report = report.unwrap();
    assert_eq!(report["copied"], 0, "{setup:?}: {report}");
    // Besides listings and encryption reads, only the hop's lock: one read, one write to take
    // it and one to release it. A per-object request would make 20 or more.
    let other: u64 = no_op
        .iter()
        .filter(|(op, _)| !op.contains("list-type") && !op.contains("encryption"))
        .map(|(_, count)| count)
        .sum();
    assert!(
        other <= 3,
        "{setup:?}: a per-object request in a no-op backfill: {no_op:?}"
    );
    [total(&full), total(&no_op)]
}

/// Metadata-only rewrites reach B: in place through one CopyObject, and by uploading the same
/// bytes in the same parts again (the multipart ETag stays the same without KMS).
async fn metadata_rewrites(world: &World, replicator: &Replicator, setup: Setup) {
    rewrite_metadata_in_place(world, "small.txt", "cleaned").await;
    let (summary, _) = event(world, replicator, "s3-copy.json", "small.txt").await;
    assert_eq!(summary["copied"], 1, "{setup:?}: {summary}");
    assert_eq!(
        replica_metadata(world, "small.txt").await.as_deref(),
        Some("cleaned"),
        "{setup:?}"
    );
    let body = world.destination_body("large.bin").await;
    put_in_parts(
        &world.admin_a,
        &world.source_bucket,
        "large.bin",
        &body,
        5 * MIB,
        |c| c.metadata("stage", "curated"),
    )
    .await;
    let (summary, _) = event(world, replicator, "s3-complete-multipart.json", "large.bin").await;
    assert_eq!(summary["copied"], 1, "{setup:?}: {summary}");
    assert_eq!(
        replica_metadata(world, "large.bin").await.as_deref(),
        Some("curated"),
        "{setup:?}"
    );
    assert_eq!(world.open_uploads().await, 0);
}

const BACKFILLED: u64 = 20;

#[tokio::test(flavor = "multi_thread")]
async fn each_kms_setup_copies_once_repeats_nothing_and_carries_metadata_rewrites() {
    let mut figures = vec![format!(
        "{:16} {:>10} {:>9} {:>10} {:>9} {:>13} {:>12}",
        "setup",
        "event copy",
        "repeated",
        "multipart",
        "repeated",
        "backfill copy",
        "backfill no-op"
    )];
    for setup in Setup::ALL {
        let world = setup.world("identity").await;
        let replicator = world.replicator_with("us-east-1", SMALL_PARTS).await;
        let [copy, repeated] = small_events(&world, &replicator, setup).await;
        let [multipart, multipart_again] = multipart_events(&world, &replicator, setup).await;
        let [full, no_op] = backfill_twice(&world, &replicator, setup).await;
        metadata_rewrites(&world, &replicator, setup).await;
        figures.push(format!(
            "{:16} {:>10} {:>9} {:>10} {:>9} {:>13.2} {:>12.2}",
            format!("{setup:?}"),
            copy,
            repeated,
            multipart,
            multipart_again,
            full as f64 / BACKFILLED as f64,
            no_op as f64 / BACKFILLED as f64,
        ));
    }
    let table = format!(
        "S3 requests per object by KMS setup (event columns: one object; backfill columns: per object of {BACKFILLED}, listings and encryption reads included; multipart: 11 MiB in 3 parts)\n{}",
        figures.join("\n")
    );
    println!("{table}");
    report_figures(&table);
}

/// Deletes the current version of `key` for good, which makes the previous one current.
async fn roll_back(world: &World, key: &str) {
    let head = world
        .admin_a
        .head_object()
        .bucket(&world.source_bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    world
        .admin_a
        .delete_object()
        .bucket(&world.source_bucket)
        .key(key)
        .version_id(head.version_id().unwrap())
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_same_size_rollback_reaches_b() {
    for setup in [Setup::Plain, Setup::KmsBoth] {
        let world = setup.world("rollback").await;
        enable_versioning(&world.admin_a, &world.source_bucket).await;
        let replicator = world.replicator_with("us-east-1", SMALL_PARTS).await;

        // Small and large objects, each written twice at the same size; B follows.
        let large = [pattern(11 * MIB, 1), pattern(11 * MIB, 2)];
        for (version, body) in large.iter().enumerate() {
            world
                .put_source("small.txt", format!("version {version}").as_bytes())
                .await;
            put_in_parts(
                &world.admin_a,
                &world.source_bucket,
                "large.bin",
                body,
                5 * MIB,
                |c| c,
            )
            .await;
            for key in ["small.txt", "large.bin"] {
                let (summary, _) = event(&world, &replicator, "s3-put.json", key).await;
                assert_eq!(summary["copied"], 1, "{setup:?} {key}: {summary}");
            }
        }
        assert_eq!(world.destination_body("small.txt").await, b"version 1");

        // The newest versions are deleted: the older ones, of the same size, are current again.
        // Their removal events bring B back to them, although B's replicas are newer.
        for key in ["small.txt", "large.bin"] {
            roll_back(&world, key).await;
            let removal = s3_event("s3-delete.json", &world.source_bucket, key);
            let summary = handle_payload(&removal, &replicator).await.unwrap();
            assert_eq!(summary["copied"], 1, "{setup:?} {key}: {summary}");
        }
        assert_eq!(world.destination_body("small.txt").await, b"version 0");
        assert!(
            world.destination_body("large.bin").await == large[0],
            "{setup:?}"
        );

        // A rollback whose event was lost: a backfill finds it where the ETags are MD5s. With
        // KMS on either side and no checksum in a listing, it cannot (the documented limit).
        if setup == Setup::Plain {
            world.put_source("lost.txt", b"first").await;
            world.put_event(&replicator, "lost.txt").await.unwrap();
            world.put_source("lost.txt", b"again").await;
            world.put_event(&replicator, "lost.txt").await.unwrap();
            roll_back(&world, "lost.txt").await;
            let report = handle_payload(&json!({"backfill": {"prefix": "lost"}}), &replicator)
                .await
                .unwrap();
            assert_eq!(report["copied"], 1, "{report}");
            assert_eq!(world.destination_body("lost.txt").await, b"first");
        }
        assert_eq!(world.open_uploads().await, 0);
    }
}
