//! Large objects copied in parts, on the local S3 emulator with the multipart threshold lowered
//! to 5 MiB so that the path is exercised with objects of a few MiB.

mod support;

use aws_sdk_s3::Client;
use s3_replicator::handle_payload;
use serde_json::json;
use support::{World, WorldOptions, put_in_parts, upload_in_parts};

const MIB: usize = 1024 * 1024;
const SMALL_PARTS: &[(&str, &str)] = &[("MULTIPART_THRESHOLD", "5MiB"), ("PART_CONCURRENCY", "4")];

fn pattern(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u64 * 2654435761 % 251) as u8 ^ seed)
        .collect()
}

/// Uploads `body` to the source in parts of `part_size`, with the headers and tags of a data
/// pipeline's export.
async fn put_multipart(client: &Client, bucket: &str, key: &str, body: &[u8], part_size: usize) {
    put_in_parts(client, bucket, key, body, part_size, |create| {
        create
            .content_type("application/x-parquet")
            .metadata("pipeline", "nightly")
            .tagging("tier=gold")
    })
    .await;
}

async fn etag(client: &Client, bucket: &str, key: &str) -> String {
    client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_a_large_object_in_parts_with_its_headers_metadata_and_tags() {
    let world = World::new("mpmeta", WorldOptions::default()).await;
    let body = pattern(20 * MIB + 123, 7);
    put_in_parts(
        &world.admin_a,
        &world.source_bucket,
        "big/export 1.bin",
        &body,
        5 * MIB,
        |create| {
            create
                .content_type("application/octet-stream")
                .cache_control("no-cache")
                .content_disposition("attachment; filename=export.bin")
                .metadata("origin", "warehouse")
                .tagging("team=data&retention=90d")
        },
    )
    .await;
    let replicator = world.replicator_with("us-east-1", SMALL_PARTS).await;
    let summary = world
        .put_event(&replicator, "big/export 1.bin")
        .await
        .unwrap();
    assert_eq!(summary["copied"], 1, "{summary}");
    assert_eq!(summary["bytes"], body.len());

    assert_eq!(world.destination_body("big/export 1.bin").await, body);
    let head = world.destination_head("big/export 1.bin").await;
    assert!(
        head.e_tag().unwrap().ends_with("-5\""),
        "{:?}",
        head.e_tag()
    );
    assert_eq!(head.content_type(), Some("application/octet-stream"));
    assert_eq!(head.cache_control(), Some("no-cache"));
    assert_eq!(
        head.content_disposition(),
        Some("attachment; filename=export.bin")
    );
    assert_eq!(
        head.metadata().unwrap().get("origin").map(String::as_str),
        Some("warehouse")
    );
    let tags = world
        .admin_b
        .get_object_tagging()
        .bucket(&world.destination_bucket)
        .key("big/export 1.bin")
        .send()
        .await
        .unwrap();
    let mut tags: Vec<String> = tags
        .tag_set()
        .iter()
        .map(|t| format!("{}={}", t.key(), t.value()))
        .collect();
    tags.sort();
    assert_eq!(tags, vec!["retention=90d", "team=data"]);
    assert_eq!(world.open_uploads().await, 0);

    // A backfill takes the same path for objects over the threshold.
    world
        .put_source_in_parts("big/second.bin", &pattern(11 * MIB, 3), 5 * MIB)
        .await;
    let report = handle_payload(&json!({"backfill": {"prefix": "big/second"}}), &replicator)
        .await
        .unwrap();
    assert_eq!(report["copied"], 1, "{report}");
    assert_eq!(
        world.destination_body("big/second.bin").await,
        pattern(11 * MIB, 3)
    );
    let source = etag(&world.admin_a, &world.source_bucket, "big/second.bin").await;
    let replica = etag(&world.admin_b, &world.destination_bucket, "big/second.bin").await;
    assert_eq!(replica, source);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_part_object_over_the_threshold_is_copied_whole_once() {
    let world = World::new("mpwhole", WorldOptions::default()).await;
    let body = pattern(9 * MIB, 4);
    world.put_source("whole.bin", &body).await;
    let replicator = world.replicator_with("us-east-1", SMALL_PARTS).await;
    let (summary, first) = world
        .operations_during(world.put_event(&replicator, "whole.bin"))
        .await;
    assert_eq!(summary.unwrap()["copied"], 1);
    // One CopyObject keeps the MD5 ETag: no part is copied.
    assert_eq!(first.get("UploadPartCopy"), None, "{first:?}");
    assert_eq!(first.get("CopyObject"), Some(&1), "{first:?}");
    let source = etag(&world.admin_a, &world.source_bucket, "whole.bin").await;
    let replica = etag(&world.admin_b, &world.destination_bucket, "whole.bin").await;
    assert_eq!(replica, source);
    assert_eq!(world.destination_body("whole.bin").await, body);

    // The same event again finds the replica current: nothing is copied.
    let (again, second) = world
        .operations_during(world.put_event(&replicator, "whole.bin"))
        .await;
    let again = again.unwrap();
    assert_eq!(
        (again["skipped"].clone(), again["copied"].clone()),
        (json!(1), json!(0))
    );
    assert_eq!(second.get("CopyObject"), None, "{second:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keeps_the_source_part_layout_so_the_replica_etag_matches() {
    let world = World::new("mplayout", WorldOptions::default()).await;
    let replicator = world.replicator_with("us-east-1", SMALL_PARTS).await;
    for (key, size, part_size) in [
        ("five.parquet", 12 * MIB + 5, 5 * MIB),
        ("eight.parquet", 20 * MIB, 8 * MIB),
    ] {
        let body = pattern(size, part_size as u8);
        put_multipart(&world.admin_a, &world.source_bucket, key, &body, part_size).await;
        let summary = world.put_event(&replicator, key).await.unwrap();
        assert_eq!(summary["copied"], 1, "{key}: {summary}");
        let source = etag(&world.admin_a, &world.source_bucket, key).await;
        let replica = etag(&world.admin_b, &world.destination_bucket, key).await;
        assert_eq!(replica, source, "{key}");
        assert!(source.ends_with("-3\""), "{source}");
        assert_eq!(world.destination_body(key).await, body, "{key}");
        let head = world.destination_head(key).await;
        assert_eq!(head.content_type(), Some("application/x-parquet"));
        assert_eq!(
            head.metadata().unwrap().get("pipeline").map(String::as_str),
            Some("nightly")
        );
    }

    // The same event again: the identical replica is not copied a second time.
    let again = world.put_event(&replicator, "eight.parquet").await.unwrap();
    assert_eq!(
        (again["skipped"].clone(), again["copied"].clone()),
        (json!(1), json!(0))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_overwritten_mid_copy_is_copied_again_whole_and_nothing_is_left_behind() {
    let world = World::new("mprace", WorldOptions::default()).await;
    let first = pattern(20 * MIB, 1);
    put_multipart(
        &world.admin_a,
        &world.source_bucket,
        "moving.bin",
        &first,
        5 * MIB,
    )
    .await;
    // While part 2 is being copied, the source is overwritten with a new 12 MiB object.
    world.emulator.harness(
        "trigger",
        json!({
            "method": "PUT",
            "path_contains": format!("{}/moving.bin", world.destination_bucket),
            "query_contains": "partNumber=2",
            "put": {"account": "a", "bucket": world.source_bucket, "key": "moving.bin",
                    "body": format!("repeat:z:{}", 12 * MIB)},
        }),
    );
    let replicator = world.replicator_with("us-east-1", SMALL_PARTS).await;
    let summary = world.put_event(&replicator, "moving.bin").await.unwrap();
    assert_eq!(summary["copied"], 1, "{summary}");
    assert_eq!(summary["bytes"], 12 * MIB);
    let replica = world.destination_body("moving.bin").await;
    assert_eq!(replica.len(), 12 * MIB);
    assert!(
        replica.iter().all(|b| *b == b'z'),
        "the replica mixes two versions"
    );
    assert_eq!(
        world.open_uploads().await,
        0,
        "an aborted upload was left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_does_not_match_its_source_is_a_failure() {
    let world = World::new("mpverify", WorldOptions::default()).await;
    world
        .put_source_in_parts("checked.bin", &pattern(8 * MIB, 9), 5 * MIB)
        .await;
    // Just before the replica is verified, something else writes the destination key.
    world.emulator.harness(
        "trigger",
        json!({
            "method": "HEAD",
            "path_contains": format!("{}/checked.bin", world.destination_bucket),
            "skip": 1,
            "put": {"account": "b", "bucket": world.destination_bucket, "key": "checked.bin",
                    "body": "short"},
        }),
    );
    let replicator = world.replicator_with("us-east-1", SMALL_PARTS).await;
    let error = world
        .put_event(&replicator, "checked.bin")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("failed verification"), "{error}");
    assert!(error.contains("sizes differ: replica 5 bytes"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn both_copy_paths_apply_the_configured_storage_class_and_kms_key() {
    let world = World::new("mpclass", WorldOptions::default()).await;
    world.put_source("small.txt", b"one request").await;
    world
        .put_source_in_parts("large.bin", &pattern(6 * MIB, 5), 5 * MIB)
        .await;
    let kms_key = "arn:aws:kms:us-east-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let mut env = SMALL_PARTS.to_vec();
    env.extend([
        ("DESTINATION_STORAGE_CLASS", "STANDARD_IA"),
        ("DESTINATION_KMS_KEY_ID", kms_key),
    ]);
    let replicator = world.replicator_with("us-east-1", &env).await;
    for key in ["small.txt", "large.bin"] {
        let summary = world.put_event(&replicator, key).await.unwrap();
        assert_eq!(summary["copied"], 1, "{key}: {summary}");
        let head = world.destination_head(key).await;
        assert_eq!(
            head.storage_class(),
            Some(&aws_sdk_s3::types::StorageClass::StandardIa),
            "{key}"
        );
        assert_eq!(
            head.server_side_encryption(),
            Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms),
            "{key}"
        );
        assert_eq!(head.ssekms_key_id(), Some(kms_key), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_expires_header_on_the_source_does_not_fail_the_copy() {
    let world = World::new("mpexpires", WorldOptions::default()).await;
    let body = pattern(11 * MIB, 6);
    // S3 stores an Expires header that is not an HTTP date as it was sent, and returns it.
    let upload = world
        .admin_a
        .create_multipart_upload()
        .bucket(&world.source_bucket)
        .key("expires.bin")
        .customize()
        .mutate_request(|request| {
            request.headers_mut().insert("expires", "not a date");
        })
        .send()
        .await
        .unwrap();
    upload_in_parts(
        &world.admin_a,
        &world.source_bucket,
        "expires.bin",
        upload.upload_id().unwrap(),
        &body,
        5 * MIB,
    )
    .await;
    let source = world
        .admin_a
        .head_object()
        .bucket(&world.source_bucket)
        .key("expires.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(source.expires_string(), Some("not a date"));
    let replicator = world.replicator_with("us-east-1", SMALL_PARTS).await;
    let summary = world.put_event(&replicator, "expires.bin").await.unwrap();
    assert_eq!(summary["copied"], 1, "{summary}");
    assert_eq!(world.destination_body("expires.bin").await, body);
    // The same event again finds the replica current: the invalid header is not a difference.
    let again = world.put_event(&replicator, "expires.bin").await.unwrap();
    assert_eq!(again["skipped"], 1, "{again}");
}
