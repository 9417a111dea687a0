//! Real S3 inputs handled the way S3 means them, on the emulator: archived objects (the Glacier
//! storage classes and Intelligent-Tiering archive tiers, restores in progress), keys that XML
//! cannot carry, EventBridge's raw keys, Batch Operations bucket ARNs and key encodings, 404s
//! that are not a missing source, and multipart copies that stop at the first failure.

mod support;

use aws_sdk_s3::types::{GlacierJobParameters, RestoreRequest, StorageClass, Tier};
use s3_replicator::backfill::{BackfillError, BackfillRequest, run_backfill};
use s3_replicator::handle_payload;
use s3_replicator::invoke::SelfInvoker;
use serde_json::{Value, json};
use support::{
    World, WorldOptions, batch_job, eventbridge_event, failed_message_ids, result_codes, s3_event,
    sqs_batch,
};

const SMALL_PARTS: &[(&str, &str)] = &[("MULTIPART_THRESHOLD", "5MiB"), ("PART_CONCURRENCY", "1")];

async fn put_in_class(world: &World, key: &str, body: Vec<u8>, class: StorageClass) {
    world
        .admin_a
        .put_object()
        .bucket(&world.source_bucket)
        .key(key)
        .storage_class(class)
        .body(body.into())
        .send()
        .await
        .unwrap();
}

async fn restore(world: &World, key: &str) {
    world
        .admin_a
        .restore_object()
        .bucket(&world.source_bucket)
        .key(key)
        .restore_request(
            RestoreRequest::builder()
                .days(1)
                .glacier_job_parameters(
                    GlacierJobParameters::builder()
                        .tier(Tier::Standard)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
}

fn assert_archived(summary: &Value, key: &str) {
    assert_eq!(
        (summary["archived"].as_u64(), summary["failed"].as_u64()),
        (Some(1), Some(0)),
        "{summary}"
    );
    let listed = &summary["archived_objects"][0];
    assert_eq!(listed["key"], key, "{summary}");
    let error = listed["error"].as_str().unwrap();
    assert!(error.starts_with("archived: restore it first"), "{error}");
    assert!(error.contains("aws s3api restore-object"), "{error}");
}

#[tokio::test]
async fn archived_objects_are_reported_with_the_restore_command_and_copied_once_restored() {
    let world = World::new("archived", WorldOptions::default()).await;
    let key = "cold/backup 2019.tar";
    put_in_class(&world, key, b"old bytes".to_vec(), StorageClass::Glacier).await;
    let replicator = world.replicator().await;
    let src = world.source_bucket.as_str();

    // Through SQS: no batch item failure (a redelivery cannot help), but counted and named.
    let batch = sqs_batch(&[s3_event("s3-put.json", src, key)]);
    let response = handle_payload(&batch, &replicator).await.unwrap();
    assert!(failed_message_ids(&response).is_empty(), "{response}");
    let summary = world.put_event(&replicator, key).await.unwrap();
    assert_archived(&summary, key);

    // A restore in progress leaves it archived; a restore event that comes early changes nothing.
    let object = json!({"bucket": src, "key": key});
    world.emulator.harness("hold-restore", object.clone());
    restore(&world, key).await;
    let restored = s3_event("s3-restore-completed.json", src, key);
    let summary = handle_payload(&restored, &replicator).await.unwrap();
    assert_archived(&summary, key);
    assert!(world.destination_keys().await.is_empty());

    // Once restored, its ObjectRestore:Completed event copies it, into the STANDARD class.
    world.emulator.harness("complete-restore", object);
    let summary = handle_payload(&restored, &replicator).await.unwrap();
    assert_eq!(summary["copied"], 1, "{summary}");
    assert_eq!(world.destination_body(key).await, b"old bytes");
    let head = world.destination_head(key).await;
    assert!(
        matches!(head.storage_class(), None | Some(StorageClass::Standard)),
        "{head:?}"
    );
}

#[tokio::test]
async fn archive_tiers_and_parts_are_archived_too_and_leave_no_upload() {
    let world = World::new("archivetier", WorldOptions::default()).await;
    let src = world.source_bucket.clone();
    put_in_class(
        &world,
        "tiered.bin",
        b"tiered".to_vec(),
        StorageClass::IntelligentTiering,
    )
    .await;
    world.emulator.harness(
        "archive-tier",
        json!({"bucket": src, "key": "tiered.bin", "tier": "DEEP_ARCHIVE_ACCESS"}),
    );
    support::put_in_parts(
        &world.admin_a,
        &src,
        "big-cold.bin",
        &[7u8; 11 * 1024 * 1024],
        5 * 1024 * 1024,
        |create| create.storage_class(StorageClass::DeepArchive),
    )
    .await;
    let replicator = world.replicator_with("us-east-1", SMALL_PARTS).await;

    let summary = world.put_event(&replicator, "tiered.bin").await.unwrap();
    assert_archived(&summary, "tiered.bin");
    // Copied in parts: UploadPartCopy is refused as CopyObject is, and the upload is aborted.
    let summary = world.put_event(&replicator, "big-cold.bin").await.unwrap();
    assert_archived(&summary, "big-cold.bin");
    assert_eq!(world.open_uploads().await, 0);

    // An Intelligent-Tiering restore brings the object back to an access tier.
    restore(&world, "tiered.bin").await;
    let restored = eventbridge_event(
        "eventbridge-object-restore-completed.json",
        &src,
        "tiered.bin",
    );
    let summary = handle_payload(&restored, &replicator).await.unwrap();
    assert_eq!(summary["copied"], 1, "{summary}");
}

#[tokio::test]
async fn backfill_counts_archived_objects_by_key_and_batch_operations_fail_them_for_good() {
    let world = World::new("archivedbackfill", WorldOptions::default()).await;
    world.put_source("mixed/a.txt", b"a").await;
    world.put_source("mixed/c.txt", b"c").await;
    put_in_class(&world, "mixed/b.txt", b"b".to_vec(), StorageClass::Glacier).await;
    let replicator = world.replicator().await;

    let request = BackfillRequest {
        prefix: "mixed/".into(),
        ..Default::default()
    };
    let report = run_backfill(&request, &replicator, None, SelfInvoker::default())
        .await
        .unwrap();
    assert_eq!(
        (report.copied, report.archived, report.failed),
        (2, 1, 0),
        "{report:?}"
    );
    assert_eq!(report.archived_objects[0].key, "mixed/b.txt");

    let src = world.source_bucket.as_str();
    let job = batch_job("batch-operations-v1.json", &[(src, "mixed/b.txt")]);
    let response = handle_payload(&job, &replicator).await.unwrap();
    let results = result_codes(&response);
    assert_eq!(results[0].0, "PermanentFailure", "{results:?}");
    assert!(results[0].1.contains("restore-object"), "{results:?}");
}

#[tokio::test]
async fn backfill_copies_keys_that_xml_cannot_carry() {
    let world = World::new("xmlunsafe", WorldOptions::default()).await;
    let keys = [
        "ctl/\u{4}start.txt",
        "ctl/esc\u{1b}[0m.txt",
        "ctl/a+b c%25.txt",
        "ctl/plain.txt",
    ];
    for key in keys {
        world.put_source(key, key.as_bytes()).await;
    }
    let replicator = world.replicator().await;
    let request = BackfillRequest {
        prefix: "ctl/".into(),
        ..Default::default()
    };
    let backfill = || run_backfill(&request, &replicator, None, SelfInvoker::default());
    let report = backfill().await.unwrap();
    assert_eq!((report.listed, report.copied), (4, 4), "{report:?}");
    for key in keys {
        assert_eq!(world.destination_body(key).await, key.as_bytes(), "{key:?}");
    }
    // The destination's listing is read the same way: a re-run finds every replica current.
    let report = backfill().await.unwrap();
    assert_eq!((report.copied, report.unchanged), (0, 4), "{report:?}");
}

#[tokio::test]
async fn eventbridge_keys_are_read_raw_before_any_decoding() {
    let world = World::new("ebkeys", WorldOptions::default()).await;
    world.put_source("eb/c++ notes/a+b.txt", b"raw").await;
    world.put_source("eb/c   notes/a b.txt", b"decoded").await;
    world.put_source("eb/at 12:00.txt", b"colon").await;
    let replicator = world.replicator().await;
    let src = world.source_bucket.as_str();
    for key in ["eb/c++ notes/a+b.txt", "eb/at 12:00.txt"] {
        let event = eventbridge_event("eventbridge-object-created.json", src, key);
        let summary = handle_payload(&event, &replicator).await.unwrap();
        assert_eq!(summary["copied"], 1, "{summary}");
    }
    let mut keys = world.destination_keys().await;
    keys.sort();
    assert_eq!(keys, vec!["eb/at 12:00.txt", "eb/c++ notes/a+b.txt"]);
    assert_eq!(world.destination_body("eb/c++ notes/a+b.txt").await, b"raw");
}

#[tokio::test]
async fn batch_operations_take_every_bucket_arn_form_and_key_encoding() {
    let world = World::new("batchkeys", WorldOptions::default()).await;
    let objects = ["b/a+b.txt", "b/x y.txt", "b/100%.txt", "b/p%20q.txt"];
    for key in objects {
        world.put_source(key, key.as_bytes()).await;
    }
    let replicator = world.replicator().await;
    let src = world.source_bucket.as_str();
    // The manifest's forms: `+` kept, a space as `+`, a bare `%`, an escaped `%`.
    let mut job = batch_job("batch-operations-v1-regional-arn.json", &[]);
    job["tasks"] = json!(
        ["b/a+b.txt", "b/x+y.txt", "b/100%.txt", "b/p%2520q.txt"]
            .iter()
            .enumerate()
            .map(|(i, s3_key)| json!({
                "taskId": format!("task-{i}"),
                "s3Key": s3_key,
                "s3BucketArn": format!("arn:aws:s3:us-east-1:111111111111:{src}"),
            }))
            .collect::<Vec<_>>()
    );
    let response = handle_payload(&job, &replicator).await.unwrap();
    let results = result_codes(&response);
    assert!(
        results.iter().all(|(code, _)| code == "Succeeded"),
        "{results:?}"
    );
    let mut keys = world.destination_keys().await;
    keys.sort();
    let mut expected = objects.to_vec();
    expected.sort();
    assert_eq!(keys, expected);

    job["tasks"][0]["s3BucketArn"] = json!(format!("arn:aws:s3:us-east-1:111111111111:{src}/b"));
    let response = handle_payload(&job, &replicator).await.unwrap();
    let results = result_codes(&response);
    assert_eq!(results[0].0, "PermanentFailure", "{results:?}");
    assert!(results[0].1.contains("not a bucket ARN"), "{results:?}");
}

#[tokio::test]
async fn an_upload_aborted_under_the_copy_is_a_failure_not_a_missing_source() {
    let world = World::new("nosuchupload", WorldOptions::default()).await;
    world
        .put_source_in_parts("parts/big.bin", &[1u8; 11 * 1024 * 1024], 5 * 1024 * 1024)
        .await;
    let replicator = world.replicator_with("us-east-1", SMALL_PARTS).await;
    world.emulator.harness(
        "fault",
        json!({"path_contains": "parts/big.bin", "method": "PUT", "query_contains": "partNumber=",
               "status": 404, "code": "NoSuchUpload", "count": 100}),
    );
    let summary = world
        .put_event(&replicator, "parts/big.bin")
        .await
        .unwrap_err();
    let error = summary.to_string();
    assert!(error.contains("NoSuchUpload"), "{error}");
    assert!(error.contains("aborted under the copy"), "{error}");
    assert_eq!(world.open_uploads().await, 0);
    assert!(world.destination_keys().await.is_empty());
}

/// The error of an event for `k.txt` after `side`'s bucket was deleted.
async fn error_without_bucket(side: &str) -> String {
    let world = World::new(&format!("nobucket{side}"), WorldOptions::default()).await;
    world.put_source("k.txt", b"k").await;
    let event = world.s3_event_now("s3-put.json", "k.txt").await;
    let replicator = world.replicator().await;
    let (admin, bucket) = if side == "source" {
        world
            .admin_a
            .delete_object()
            .bucket(&world.source_bucket)
            .key("k.txt")
            .send()
            .await
            .unwrap();
        (&world.admin_a, &world.source_bucket)
    } else {
        (&world.admin_b, &world.destination_bucket)
    };
    admin.delete_bucket().bucket(bucket).send().await.unwrap();
    let error = handle_payload(&event, &replicator).await.unwrap_err();
    error.to_string()
}

#[tokio::test]
async fn a_missing_bucket_is_a_clear_failure_on_either_side() {
    let error = error_without_bucket("destination").await;
    assert!(error.contains("does not exist"), "{error}");
    assert!(error.contains("DESTINATION_BUCKET"), "{error}");
    let error = error_without_bucket("source").await;
    assert!(error.contains("does not exist"), "{error}");
    assert!(error.contains("SOURCE_BUCKET"), "{error}");
}

#[tokio::test]
async fn a_multipart_copy_stops_scheduling_parts_at_the_first_final_failure() {
    let world = World::new("failfast", WorldOptions::default()).await;
    world
        .put_source_in_parts("ff/big.bin", &[3u8; 30 * 1024 * 1024], 5 * 1024 * 1024)
        .await;
    let replicator = world.replicator_with("us-east-1", SMALL_PARTS).await;
    world.emulator.harness(
        "fault",
        json!({"path_contains": "ff/big.bin", "method": "PUT", "query_contains": "partNumber=2&",
               "status": 400, "code": "InvalidRequest", "count": 1}),
    );
    let (result, requests) = world
        .operations_during(world.put_event(&replicator, "ff/big.bin"))
        .await;
    let error = result.unwrap_err();
    assert!(error.to_string().contains("InvalidRequest"), "{error}");
    // Six parts, one at a time: the first copied, the second refused, no other started.
    assert_eq!(requests.get("UploadPartCopy"), Some(&2), "{requests:?}");
    assert_eq!(world.open_uploads().await, 0);
}

#[tokio::test]
async fn backfill_of_a_missing_source_bucket_names_it() {
    let world = World::new("nosourcebucket", WorldOptions::default()).await;
    world
        .admin_a
        .delete_bucket()
        .bucket(&world.source_bucket)
        .send()
        .await
        .unwrap();
    let replicator = world.replicator().await;
    let error = run_backfill(
        &BackfillRequest::default(),
        &replicator,
        None,
        SelfInvoker::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, BackfillError::Listing { .. }), "{error}");
    let error = error.to_string();
    assert!(
        error.contains("does not exist") && error.contains("SOURCE_BUCKET"),
        "{error}"
    );
}
