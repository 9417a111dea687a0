//! Large objects copied in parts, on the local S3 emulator with the multipart threshold lowered
//! to 5 MiB so that the path is exercised with objects of a few MiB.

mod support;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use s3_replicator::handle_payload;
use serde_json::json;
use support::{World, WorldOptions};

const MIB: usize = 1024 * 1024;
const SMALL_PARTS: &[(&str, &str)] = &[("MULTIPART_THRESHOLD", "5MiB"), ("PART_CONCURRENCY", "4")];

fn pattern(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u64 * 2654435761 % 251) as u8 ^ seed)
        .collect()
}

/// Uploads `body` to the source in parts of `part_size`, as a multipart upload would.
async fn put_multipart(client: &Client, bucket: &str, key: &str, body: &[u8], part_size: usize) {
    let upload = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .content_type("application/x-parquet")
        .metadata("pipeline", "nightly")
        .tagging("tier=gold")
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    let mut parts = Vec::new();
    for (index, chunk) in body.chunks(part_size).enumerate() {
        let number = index as i32 + 1;
        let part = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(part.e_tag().unwrap())
                .build(),
        );
    }
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
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
    world
        .admin_a
        .put_object()
        .bucket(&world.source_bucket)
        .key("big/export 1.bin")
        .body(ByteStream::from(body.clone()))
        .content_type("application/octet-stream")
        .cache_control("no-cache")
        .content_disposition("attachment; filename=export.bin")
        .metadata("origin", "warehouse")
        .tagging("team=data&retention=90d")
        .send()
        .await
        .unwrap();
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
        .put_source("big/second.bin", &pattern(6 * MIB, 3))
        .await;
    let report = handle_payload(&json!({"backfill": {"prefix": "big/second"}}), &replicator)
        .await
        .unwrap();
    assert_eq!(report["copied"], 1, "{report}");
    assert_eq!(
        world.destination_body("big/second.bin").await,
        pattern(6 * MIB, 3)
    );
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
    world.put_source("checked.bin", &pattern(8 * MIB, 9)).await;
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
    assert!(error.contains("replica has 5 bytes"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn both_copy_paths_apply_the_configured_storage_class_and_kms_key() {
    let world = World::new("mpclass", WorldOptions::default()).await;
    world.put_source("small.txt", b"one request").await;
    world.put_source("large.bin", &pattern(6 * MIB, 5)).await;
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
